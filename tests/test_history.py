"""The history store (SQLite and a real PostgreSQL server) and the change detection.

Each store test runs on both back ends. Series are made by hand or by the generator of
synthetic series with planted changes (`hhbench.history.changes.synthetic_series`)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sqlalchemy", reason="needs the history extra: pip install 'hhbench[history]'")

import sqlalchemy as sa  # noqa: E402

from history_support import case, day, new_database, postgres_server, run, sha  # noqa: E402,F401
from hhbench.errors import HHBenchError  # noqa: E402
from hhbench.history import changes as C  # noqa: E402
from hhbench.history.series import all_changes, order_commits  # noqa: E402
from hhbench.history.store import Store, run_key  # noqa: E402
from hhbench.results import RunResults  # noqa: E402


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "history.db")
    return new_database(request.getfixturevalue("postgres_server"))


def test_a_run_is_recorded_with_machine_commit_cases_processes_and_accuracy(store_url):
    r = run(sha(1), [case("numba", [1e-3, 1.1e-3, 0.9e-3], rmse=2.5, gamma=0.8, count=1.5),
                     case("jax", [2e-3, 2e-3, 2.2e-3], device="gpu:0")],
            gpus=[{"name": "H100", "driver": "550", "memory": "80 GiB"}])
    with Store.open(store_url) as st:
        run_id, new = st.record(r)
        assert new
        assert st.counts() == {"machine": 1, "commit": 1, "run": 1, "case": 2, "result": 2,
                               "mark": 0}
        (m,) = st.machines()
        assert "H100 (driver 550)" in m["description"]
        pts = {p["case_id"]: p for p in st.points()}
        cases = {c["backend"]: c for c in st.cases()}
        numba = pts[cases["numba"]["id"]]
        assert numba["process_medians_s"] == [1e-3, 1.1e-3, 0.9e-3]
        assert numba["median_s"] == 1e-3
        assert (numba["rmse_mv"], numba["gamma"], numba["spike_count_error"]) == (2.5, 0.8, 1.5)
        assert numba["sha"] == sha(1)
        assert cases["jax"]["device"] == "gpu:0"
        # every sample of every process is kept
        with st.engine.connect() as conn:
            procs = json.loads(conn.execute(sa.text(
                "SELECT processes FROM hh_result WHERE case_id = :c"),
                {"c": cases["numba"]["id"]}).scalar_one())
        assert [p["samples_s"] for p in procs] == [list(p.samples_s)
                                                   for p in r.cases[0].processes]
        # calibration: the geometric mean of the kernels' times
        assert st.runs()[0]["calibration_s"] == pytest.approx((0.001 * 0.004) ** 0.5)


def test_recording_the_same_run_twice_gives_one_run(store_url, tmp_path):
    r = run(sha(2), [case("numba", [1e-3, 1e-3, 1e-3])])
    path = tmp_path / "r.json"
    r.save(path)
    again = RunResults.load(path)  # what `history add` reads back from the file
    assert run_key(again) == run_key(r)
    with Store.open(store_url) as st:
        first = st.record(r)
        second = st.record(again)
        assert first[1] and second == (first[0], False)
        assert st.counts()["run"] == 1 and st.counts()["result"] == 1


def test_a_run_is_recorded_whole_or_not_at_all(store_url):
    # the second case's medians are NaN: storing it fails after the run's row and the
    # first case's rows were written, inside the run's transaction
    bad = case("jax", [float("nan")] * 3)
    r = run(sha(3), [case("numba", [1e-3, 1e-3, 1e-3]), bad])
    with Store.open(store_url) as st:
        with pytest.raises(ValueError, match="JSON"):
            st.record(r)
        counts = st.counts()
    assert counts["run"] == 0 and counts["result"] == 0


_WRITER = """
import sys
from history_support import case, run, sha
from hhbench.history.store import Store
url, worker = sys.argv[1], int(sys.argv[2])
with Store.open(url) as st:
    for k in range(5):
        # every writer shares the machine, the commits and the cases: the rows they race for
        st.record(run(sha(k), [case("numba", [1e-3 * (1 + worker), 1e-3, 1e-3]),
                               case("jax", [2e-3, 2e-3, 2e-3 * (1 + k)])],
                      time_utc=f"2026-12-01T00:{worker:02d}:{k:02d}+00:00"))
"""


_SAME = """
import sys, time
from history_support import case, run, sha
from hhbench.history.store import Store
r = run(sha(1), [case("numba", [1e-3, 1.1e-3, 0.9e-3])])
with Store.open(sys.argv[1]) as st:
    time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all start together
    print(st.record(r, repos=[])[1])
"""


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parent), str(Path(__file__).parents[1]),
         os.environ.get("PYTHONPATH", "")])}


def test_eight_processes_recording_the_same_run_at_once_record_it_once(store_url):
    Store.open(store_url).close()
    start = str(time.time() + 15)
    procs = [subprocess.Popen([sys.executable, "-c", _SAME, store_url, start], env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(8)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    assert sorted(o.strip() for o, _ in outs) == ["False"] * 7 + ["True"]
    with Store.open(store_url) as st:
        assert st.counts()["run"] == 1 and st.counts()["result"] == 1


def test_eight_processes_recording_at_once_lose_nothing(store_url):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parent), str(Path(__file__).parents[1]),
         os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, store_url, str(w)], env=env,
                              stderr=subprocess.PIPE, text=True) for w in range(8)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    with Store.open(store_url) as st:
        assert st.counts() == {"machine": 1, "commit": 5, "run": 40, "case": 2,
                               "result": 80, "mark": 0}


def _set_meta(url, key, value):
    with Store.open(url) as st, st.engine.begin() as conn:
        conn.execute(sa.text("UPDATE hh_meta SET value = :v WHERE key = :k"),
                     {"v": value, "k": key})


@pytest.mark.parametrize("key, value, message", [
    ("version", "99", "newer than this hhbench reads"),
    ("version", "0", "cannot migrate"),
    ("schema", "someone-else", "store of another schema"),
])
def test_a_store_of_another_schema_or_version_is_refused(store_url, key, value, message):
    _set_meta(store_url, key, value)
    with pytest.raises(HHBenchError, match=message):
        Store.open(store_url)


def test_a_database_with_other_tables_is_not_taken_for_a_store(store_url):
    engine = sa.create_engine(Store.open(store_url).url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE hh_mark"))
        conn.execute(sa.text("DROP TABLE hh_meta"))
    engine.dispose()
    with pytest.raises(HHBenchError, match="not an hhbench history store"):
        Store.open(store_url)


def test_an_unreachable_database_is_one_line():
    with pytest.raises(HHBenchError, match="cannot open the history store") as exc:
        Store.open("postgresql://nobody@127.0.0.1:1/none")
    assert "\n" not in str(exc.value)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("just some notes, not a database\n" * 100)
    with pytest.raises(HHBenchError, match="cannot open the history store"):
        Store.open(str(path))


# -- series and changes ----------------------------------------------------------------------

def _planted(rng, n, **kw):
    return C.synthetic_series(rng, n, **kw)


@pytest.mark.parametrize("lognormal", [False, True])
def test_a_5_percent_step_in_2_percent_noise_is_found_at_its_commit(lognormal):
    rng = np.random.default_rng(11 + lognormal)
    hits, total = 0, 100
    for _ in range(total):
        at = int(rng.integers(6, 25))
        found = C.speed_changes(_planted(rng, 30, step=0.05, at=at, lognormal=lognormal))
        hits += any(abs(c.index - at) <= 1 and c.slower for c in found)
    assert hits >= 0.9 * total


@pytest.mark.parametrize("n, lognormal", [(100, False), (200, False), (100, True), (200, True)])
def test_single_outliers_at_ten_times_the_noise_are_not_changes(n, lognormal):
    rng = np.random.default_rng(n + lognormal)
    series = 100
    false = sum(len(C.speed_changes(_planted(rng, n, outliers=n // 50, lognormal=lognormal)))
                for _ in range(series))
    assert false <= 0.05 * series


def test_the_interval_from_moments_is_compares_interval():
    from hhbench.stats import (compare_processes, welch_log_interval,
                               welch_log_interval_from_moments)
    old, new = [1.00, 1.04, 0.97, 1.01], [1.21, 1.18, 1.25]
    v = compare_processes(old, new)
    assert welch_log_interval(old, new) == pytest.approx((v.ratio, v.ci_low, v.ci_high))
    lo, ln = np.log(old), np.log(new)
    assert welch_log_interval_from_moments(lo.mean(), lo.std(ddof=1), 4, ln.mean(),
                                           ln.std(ddof=1), 3) == pytest.approx(
        (v.ratio, v.ci_low, v.ci_high))


def test_one_outlying_commit_in_a_flat_series_is_not_a_change():
    # a flat series with one commit twice as slow: no step before and after it
    pts = [np.array([1e-3, 1.01e-3, 0.99e-3]) * (1 + 0.01 * np.sin(i)) for i in range(20)]
    pts[10] = pts[10] * 2
    assert C.speed_changes(pts) == []
    pts[10:] = [p * 2 for p in pts[10:]]  # and the same jump kept: a step
    (change,) = C.speed_changes([*pts[:10], pts[10] / 2, *pts[11:]])
    assert change.index == 10 and change.ratio == pytest.approx(2, rel=0.02)


def test_a_change_needs_three_commits_on_each_side():
    pts = [np.array([1e-3, 1e-3, 1e-3]) * (1 + 0.01 * np.cos(i)) for i in range(12)]
    late = pts[:10] + [p * 3 for p in pts[10:]]  # two slow commits at the end
    assert C.speed_changes(late) == []
    three = pts[:9] + [p * 3 for p in pts[9:]]
    assert [c.index for c in C.speed_changes(three)] == [9]


def test_accuracy_changes_are_exact_and_at_their_commit():
    values = [1.0, 1.0, 1.0, 1.2, 1.2, None, 1.2, 0.9]
    got = C.accuracy_changes(values, "rmse_mv")
    assert [(c.index, c.old, c.new, c.worse) for c in got] == [(3, 1.0, 1.2, True),
                                                                (7, 1.2, 0.9, False)]
    assert C.accuracy_changes(values, "rmse_mv", breaks=[3]) == got[1:]


def test_commits_are_ordered_by_ancestry_before_date():
    # b's committer date is earlier than a's, but a is its parent
    commits = [{"sha": "b", "date_utc": "2026-01-01", "parents": ["a"]},
               {"sha": "a", "date_utc": "2026-02-01", "parents": []},
               {"sha": "c", "date_utc": "2026-01-15", "parents": ["b"]},
               {"sha": "x", "date_utc": "2025-12-01", "parents": []}]
    assert order_commits(commits) == ["x", "a", "b", "c"]


def _history(st, n, *, slow_from=None, machines=("CPU A", "CPU B"), rmse_from=None, seed=0,
             repos=None, shas=None):
    rng = np.random.default_rng(seed)
    for i in range(n):
        for m in machines:
            f = 2.0 if slow_from is not None and i >= slow_from else 1.0
            numba = (1e-3 * f * (1 + 0.01 * rng.normal()) * np.exp(rng.normal(0, 0.003, 3)))
            jax = 3e-3 * (1 + 0.01 * rng.normal()) * np.exp(rng.normal(0, 0.003, 3))
            rmse = 2.0 if rmse_from is not None and i >= rmse_from else 1.0
            st.record(run((shas or {}).get(i, sha(i)),
                          [case("numba", list(numba)), case("jax", list(jax), rmse=rmse)],
                          cpu=m, time_utc=day(i)), repos=repos or [])


def test_a_planted_slowdown_is_found_at_its_commit_on_every_machine(store_url):
    with Store.open(store_url) as st:
        _history(st, 12, slow_from=7, rmse_from=4)
        changes, order, _ = all_changes(st)
        cases = {c["id"]: c["backend"] for c in st.cases()}
    speed = [c for c in changes if c.metric == "time"]
    assert {(cases[c.case_id], c.before, c.after) for c in speed} == {
        ("numba", sha(6), sha(7))}
    assert len(speed) == 2 and all(c.regression for c in speed)  # on both machines
    assert all(c.ratio == pytest.approx(2, rel=0.05) and c.ci_low > 1.8 for c in speed)
    acc = [c for c in changes if c.metric != "time"]
    assert {(cases[c.case_id], c.metric, c.after, c.old, c.new) for c in acc} == {
        ("jax", "rmse_mv", sha(4), 1.0, 2.0)}


def test_a_mark_restarts_the_baseline_and_an_excluded_run_is_left_out(store_url):
    with Store.open(store_url) as st:
        _history(st, 12, slow_from=7, machines=("CPU A",))
        # one run of a commit made 5x slower by a busy machine, excluded
        rid, _ = st.record(run(sha(3), [case("numba", [5e-3] * 3)], cpu="CPU A",
                               time_utc=day(30)))
        st.exclude(rid, "the machine was busy")
        assert st.mark(sha(7)[:8], "the new kernel is exact, and slower") == sha(7)
        changes, _, _ = all_changes(st)
        assert [c for c in changes if c.metric == "time"] == []
        assert {r["id"]: r["excluded_reason"] for r in st.runs()}[rid] == "the machine was busy"
        with pytest.raises(HHBenchError, match="unknown commit"):
            st.mark("deadbeef", "no such commit")
        with pytest.raises(HHBenchError, match="no run 999"):
            st.exclude(999, "no such run")


def test_excluded_runs_are_left_out_of_the_analysis(store_url):
    with Store.open(store_url) as st:
        _history(st, 12, machines=("CPU A",))
        # a busy period: extra runs of commits 6-11, 3x slower
        busy = [st.record(run(sha(i), [case("numba", [3e-3, 3.01e-3, 2.99e-3])], cpu="CPU A",
                              time_utc=day(40 + i)), repos=[])[0] for i in range(6, 12)]
        changes, _, _ = all_changes(st)
        assert [(c.before, c.after) for c in changes if c.metric == "time"] == [(sha(5), sha(6))]
        for rid in busy:
            st.exclude(rid, "another job ran beside it")
        changes, _, _ = all_changes(st)
        assert [c for c in changes if c.metric == "time"] == []
        assert st.counts()["run"] == 12 + 6  # excluded runs are kept


def test_commits_are_ordered_by_the_repository_when_one_is_at_hand(store_url, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git + ["init", "-q", "-b", "main"], check=True)
    shas = {}
    for i in range(8):
        # committer dates run backwards: only ancestry gives the right order
        env = {**os.environ, "GIT_COMMITTER_DATE": f"2026-01-{20 - i:02d}T00:00:00+00:00"}
        subprocess.run(git + ["commit", "-q", "--allow-empty", "-m", f"c{i}"], check=True,
                       env=env)
        shas[i] = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True,
                                 text=True, check=True).stdout.strip()
    with Store.open(store_url) as st:
        _history(st, 8, slow_from=4, machines=("CPU A",), repos=[repo], shas=shas)
        commits = {c["sha"]: c for c in st.commits()}
        assert commits[shas[3]]["parents"] == [shas[2]]
        assert commits[shas[3]]["branch"] == "main"
        changes, order, _ = all_changes(st)
    assert order == [shas[i] for i in range(8)]
    assert [(c.before, c.after) for c in changes if c.metric == "time"] == [(shas[3], shas[4])]
