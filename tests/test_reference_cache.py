"""The on-disk reference cache: keyed by everything that defines a reference, equal to a fresh
computation, bounded, never trusting a damaged file, safe with two writers at once."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from hhbench import suite
from hhbench.backends import numba_cache
from hhbench.cli import main
from hhbench.errors import HHBenchError
from hhbench.reference_cache import Entry, ReferenceCache, user_cache_dir
from hhbench.suite import cached_reference, case_stimulus, reference_key, reference_run

SMALL = 600  # samples: a converged reference of a few traces takes a fraction of a second


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty cache of its own, and a process that remembers no reference yet."""
    monkeypatch.setattr(suite, "_REFERENCES", {})
    return ReferenceCache(tmp_path / "refs")


def _forget(monkeypatch):
    monkeypatch.setattr(suite, "_REFERENCES", {})


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HHBENCH_CACHE_DIR", str(tmp_path / "mine"))
    assert user_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("HHBENCH_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir() == tmp_path / "xdg" / "hhbench"
    monkeypatch.setenv("HHBENCH_REFERENCE_CACHE_MB", "lots")
    with pytest.raises(HHBenchError, match="HHBENCH_REFERENCE_CACHE_MB .* 'lots'"):
        ReferenceCache()


def test_a_second_call_is_a_hit_and_each_key_component_a_miss(store, monkeypatch):
    base = dict(kind="noise", batch=2, n_samples=SMALL, seed=0, reference="converged")

    def source(**change):
        _forget(monkeypatch)
        args = {**base, **change}
        return cached_reference(args.pop("kind"), args.pop("batch"), **args,
                                cache=store).info["cache"]

    assert source() == "stored"
    assert source() == "hit"
    for change in ({"kind": "sine", "batch": 1}, {"seed": 1}, {"batch": 3},
                   {"n_samples": SMALL + 1}, {"reference": "lab"}):
        assert source(**change) == "stored", change
        assert source(**change) == "hit", change
    # the reference's settings: a tighter tolerance is another reference
    from hhbench.backends.reference import Reference
    monkeypatch.setattr(Reference.__init__, "__kwdefaults__",
                        {**Reference.__init__.__kwdefaults__, "tol_mv": 0.005})
    assert source() == "stored"
    assert source() == "hit"
    assert len(store.entries()) == 7


def test_the_key_holds_the_hash_of_the_model_equations(tmp_path, monkeypatch):
    """An edit of the model (or a step kernel) changes the equations hash, hence the key."""
    copies = []
    for src in numba_cache._kernel_sources():
        copy = tmp_path / f"{len(copies)}_{src.name}"
        copy.write_bytes(src.read_bytes())
        copies.append(copy)
    monkeypatch.setattr(numba_cache, "_kernel_sources", lambda: copies)
    stim = case_stimulus("step", 1, n_samples=SMALL)
    before = reference_key(stim)
    assert copies[0].name.endswith("model.py")
    copies[0].write_text(copies[0].read_text().replace("120.0", "121.0", 1))
    after = reference_key(stim)
    assert after["equations_sha256"] != before["equations_sha256"]
    assert ReferenceCache(tmp_path).path(after) != ReferenceCache(tmp_path).path(before)


def test_a_cached_reference_equals_a_fresh_one_exactly(store, monkeypatch):
    stored = cached_reference("noise", 3, SMALL, 4, cache=store)
    _forget(monkeypatch)
    hit = cached_reference("noise", 3, SMALL, 4, cache=store)
    fresh = reference_run(case_stimulus("noise", 3, n_samples=SMALL, seed=4))
    assert (stored.info["cache"], hit.info["cache"]) == ("stored", "hit")
    assert hit.v_mv.dtype == fresh.v_mv.dtype == np.float64
    np.testing.assert_array_equal(hit.v_mv, fresh.v_mv)
    np.testing.assert_array_equal(hit.t_ms, fresh.t_ms)
    assert hit.diverged.tolist() == fresh.diverged.tolist()
    assert hit.first_sample == fresh.first_sample
    assert hit.info["substeps"] == fresh.info["substeps"]


def test_a_diverged_lab_reference_comes_back_with_its_nan(store, monkeypatch):
    """Forward Euler on the sine diverges: the NaN tail and the flag survive the round trip."""
    cached_reference("sine", 1, SMALL * 2, reference="lab", cache=store)
    _forget(monkeypatch)
    hit = cached_reference("sine", 1, SMALL * 2, reference="lab", cache=store)
    fresh = reference_run(case_stimulus("sine", 1, n_samples=SMALL * 2), "lab")
    assert hit.info["cache"] == "hit" and fresh.diverged.all()
    np.testing.assert_array_equal(hit.v_mv, fresh.v_mv)  # NaN where fresh has NaN
    assert hit.diverged.tolist() == fresh.diverged.tolist()


def _entry(i: int, n: int = 1000) -> Entry:
    return Entry(v_mv=np.full((2, n), float(i)), diverged=np.array([False, i % 2 == 1]),
                 first_sample=0, info={"i": i})


def test_the_least_recently_used_entries_are_evicted_under_the_limit(tmp_path):
    one = ReferenceCache(tmp_path / "probe")
    assert one.store({"i": 0}, _entry(0))
    size = one.size()
    cache = ReferenceCache(tmp_path / "refs", limit=int(3.5 * size))
    import os
    for i in range(3):
        assert cache.store({"i": i}, _entry(i))
        os.utime(cache.path({"i": i}), (1000 + i, 1000 + i))  # distinct times, in order
    assert cache.load({"i": 0}) is not None  # used now: no longer the oldest
    assert cache.store({"i": 3}, _entry(3))
    assert cache.size() <= cache.limit
    assert [cache.load({"i": i}) is not None for i in range(4)] == [True, False, True, True]
    assert not cache.store({"big": 1}, _entry(9, n=10**6))  # larger than the limit: not kept
    assert cache.load({"big": 1}) is None and cache.size() <= cache.limit


def test_a_damaged_file_is_recomputed_not_trusted(store, monkeypatch):
    first = cached_reference("step", 1, SMALL, cache=store)
    (path,) = store.entries()
    data = path.read_bytes()
    # cut in half: not an archive any more
    path.write_bytes(data[:len(data) // 2])
    _forget(monkeypatch)
    again = cached_reference("step", 1, SMALL, cache=store)
    assert again.info["cache"] == "stored"
    np.testing.assert_array_equal(again.v_mv, first.v_mv)
    # a whole archive whose V was changed (its zip checksums made anew): the header's hash
    # of V no longer matches
    with np.load(path) as z:
        parts = {k: z[k] for k in z.files}
    parts["v_mv"] = parts["v_mv"] + 1.0
    np.savez(path, **parts)
    assert store.load(reference_key(case_stimulus("step", 1, n_samples=SMALL))) is None
    assert not path.exists()  # removed, not left to be tried again
    _forget(monkeypatch)
    third = cached_reference("step", 1, SMALL, cache=store)
    assert third.info["cache"] == "stored"
    np.testing.assert_array_equal(third.v_mv, first.v_mv)


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from hhbench.reference_cache import Entry, ReferenceCache
    cache = ReferenceCache(sys.argv[1], limit=2**40)
    bad = 0
    for round in range(6):
        for i in range(8):
            v = np.full((4, 20000), float(i))  # 640 kB: a write takes a while
            cache.store({"i": i}, Entry(v_mv=v, diverged=np.zeros(4, bool), first_sample=0,
                                        info={"i": i}))
            got = cache.load({"i": i})
            bad += got is None or not np.array_equal(got.v_mv, v)
    print(bad)
""")


def test_two_writers_at_once_leave_every_entry_whole(tmp_path):
    folder = tmp_path / "refs"
    env_path = str(Path(suite.__file__).parents[1])
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(folder)],
                              stdout=subprocess.PIPE, text=True,
                              env={**__import__("os").environ, "PYTHONPATH": env_path})
             for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert [int(o) for o in outs] == [0, 0]  # each read back whole what it had stored
    cache = ReferenceCache(folder)
    for i in range(8):
        np.testing.assert_array_equal(cache.load({"i": i}).v_mv, np.full((4, 20000), float(i)))
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_run_records_where_each_reference_came_from(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HHBENCH_CACHE_DIR", str(tmp_path / "cache"))
    _forget(monkeypatch)
    argv = ["run", "--quick", "--no-progress", "--backends", "numpy", "--stimuli", "step",
            "--processes", "1"]

    def sources(*extra):
        _forget(monkeypatch)
        out = tmp_path / "r.json"
        assert main([*argv, *extra, "-o", str(out)]) == 0
        return [r["source"] for r in json.loads(out.read_text())["environment"]["references"]]

    assert sources("--no-reference-cache") == ["off"]
    assert not (tmp_path / "cache").exists()  # nothing kept
    assert sources() == ["stored"]
    assert sources() == ["hit"]
    assert sources("--no-reference-cache") == ["off"]


def test_a_long_accuracy_phase_is_announced_with_an_estimate(store, monkeypatch, capsys):
    monkeypatch.setitem(suite.REFERENCE_TRACE_S, "converged", 100.0)
    config = suite.SuiteConfig(backends=("numpy",), stimuli=("noise",), batches=(2,),
                               n_samples=SMALL)
    records = suite.prepare_references(config, [("noise", 2)], cache=store, progress=True)
    err = capsys.readouterr().err
    assert "1 reference(s) to compute (2 traces), about" in err and str(store.folder) in err
    assert "2/2" in err  # the progress bar, counted in traces
    assert [r["source"] for r in records] == ["stored"]
    _forget(monkeypatch)
    records = suite.prepare_references(config, [("noise", 2)], cache=store, progress=True)
    assert "to compute" not in capsys.readouterr().err  # cached: nothing to announce
    assert [r["source"] for r in records] == ["hit"]
