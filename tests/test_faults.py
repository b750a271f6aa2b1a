"""Faults cost cases, not runs: a backend that kills its own process, hangs, raises, or a
worker killed from outside — each loses at most its own case, the others go on, the results
file is still written. Each test fails if its fault is not handled (the whole group failed,
the run hung, or no results)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hhbench.suite import SuiteConfig, run_suite
from hhbench.timing import TimingSettings

FAULTS = Path(__file__).parent / "data" / "fault_backends.py"
QUICK = TimingSettings(warmup_calls=0, min_repeats=1, min_time_s=0.0)


@pytest.fixture
def fault_dir(tmp_path, monkeypatch):
    folder = tmp_path / "faults"
    folder.mkdir()
    monkeypatch.setenv("HHBENCH_FAULT_DIR", str(folder))
    return folder


def _run(backends, **kw):
    kw.setdefault("processes", 1)
    config = SuiteConfig(backends=backends, stimuli=("step",), batches=(1,),
                         n_samples=200, timing=QUICK, extra_backend_modules=(str(FAULTS),),
                         **kw)
    return {c.backend: c for c in run_suite(config, progress=False).cases}, config


def test_a_worker_that_dies_once_is_restarted_for_what_it_had_not_finished(fault_dir):
    results, _ = _run(("numpy", "fault-kill-once", "numba"))
    assert all(c.status == "ok" for c in results.values()), \
        {k: c.error for k, c in results.items()}


def test_a_case_that_kills_its_worker_twice_fails_alone(fault_dir):
    results, _ = _run(("numpy", "fault-kill", "numba"))
    assert results["fault-kill"].status == "failed"
    assert "status -9" in results["fault-kill"].error
    # the case after it in the same worker ran in the restarted one
    assert results["numpy"].status == "ok" and results["numba"].status == "ok"


def test_faults_ahead_of_a_healthy_case_cost_only_themselves_each_with_its_own_error(
        fault_dir):
    """A case that kills its process and one that hangs, both ahead of numpy in one
    worker group: every restart gives up only the case its process died on, numpy is
    timed, and each fault keeps its own error (not the other's, not "no progress")."""
    results, _ = _run(("fault-kill", "fault-hang", "numpy"), case_timeout_s=3.0)
    assert results["numpy"].status == "ok" and results["numpy"].processes, \
        results["numpy"].error
    assert results["fault-kill"].status == "failed"
    assert "status -9" in results["fault-kill"].error, results["fault-kill"].error
    assert results["fault-hang"].status == "failed"
    assert "no progress for 3 s" in results["fault-hang"].error, results["fault-hang"].error


def test_a_worker_that_crashes_after_writing_its_full_report_keeps_it(fault_dir, tmp_path):
    """A worker whose process crashes at exit (SIGSEGV after its report is complete, as a
    GPU runtime's teardown may): its cases are kept, not failed or timed again, and the
    record says how it exited."""
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from hhbench.cli import main; sys.exit(main())",
         "run", "--no-progress", "--backends", "fault-crash-at-exit,numpy", "--stimuli",
         "step", "--batch", "1", "--processes", "1", "--repeats", "1", "--min-time", "0",
         "--config", str(_config(tmp_path)), "-o", str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert all(c["status"] == "ok" for c in data["cases"]), data["cases"]
    records = data["environment"]["workers"]
    assert len(records) == 1 and "error" not in records[0] and "restarted_after" not in \
        records[0], records
    assert "status -11" in records[0]["exit_after_report"]


def test_a_hanging_case_is_stopped_at_the_case_timeout(fault_dir):
    start = time.perf_counter()
    results, _ = _run(("fault-hang", "numpy"), case_timeout_s=4.0)
    assert time.perf_counter() - start < 60
    assert results["fault-hang"].status == "failed"
    assert "no progress for 4 s" in results["fault-hang"].error
    assert results["numpy"].status == "ok"


def test_a_raising_backend_fails_its_case_only(fault_dir):
    results, _ = _run(("fault-raise", "numpy"))
    assert results["fault-raise"].status == "failed"
    assert "RuntimeError: planted failure" in results["fault-raise"].error
    assert results["numpy"].status == "ok"


def test_a_worker_killed_from_outside_costs_no_case_and_the_file_is_written(fault_dir,
                                                                           tmp_path):
    out = tmp_path / "r.json"

    def killer():
        pid_file = fault_dir / "pid"
        for _ in range(600):
            if pid_file.exists():
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
                return
            time.sleep(0.05)
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from hhbench.cli import main; sys.exit(main())",
         "run", "--no-progress", "--backends", "numpy,fault-killed-from-outside",
         "--stimuli", "step", "--batch", "1", "--processes", "1", "--repeats", "1",
         "--min-time", "0", "--config", str(_config(tmp_path)), "-o", str(out)],
        capture_output=True, text=True, timeout=300)
    thread.join(timeout=1)
    assert proc.returncode == 0, proc.stderr
    cases = {c["backend"]: c for c in json.loads(out.read_text())["cases"]}
    assert cases["fault-killed-from-outside"]["status"] == "ok"
    assert cases["numpy"]["status"] == "ok"
    records = json.loads(out.read_text())["environment"]["workers"]
    assert any("status -9" in r.get("restarted_after", "") for r in records)


def _config(tmp_path) -> Path:
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"extra_backend_modules": [str(FAULTS)], "n_samples": 200}))
    return path


def test_workers_time_the_package_the_parent_imported_not_the_checkout(tmp_path):
    """A modified copy of hhbench first on PYTHONPATH, run from the checkout's root: the
    workers must import the copy (as the parent did), and the results say so."""
    import shutil
    root = Path(__file__).resolve().parents[1]
    copy = tmp_path / "alt"
    shutil.copytree(root / "hhbench", copy / "hhbench",
                    ignore=shutil.ignore_patterns("__pycache__"))
    marker = "# a modified copy\n"
    init = copy / "hhbench" / "__init__.py"
    init.write_text(init.read_text() + marker)
    out = tmp_path / "r.json"
    env = {**os.environ, "PYTHONPATH": str(copy)}
    # -P: like the `hhbench` console script, the parent does not put the working folder on
    # sys.path, so it imports the copy
    proc = subprocess.run(
        [sys.executable, "-P", "-c", "import sys; from hhbench.cli import main; sys.exit(main())",
         "run", "--no-progress", "--backends", "numpy", "--stimuli", "step", "--batch", "1",
         "--processes", "1", "--repeats", "1", "--min-time", "0", "-o", str(out)],
        cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    parent = data["environment"]["hhbench_source"]
    assert parent["path"] == str(copy / "hhbench")
    workers = [r["source"] for r in data["environment"]["workers"]]
    assert workers and all(w == parent for w in workers)
    assert data["cases"][0]["status"] == "ok"


def test_two_runs_at_once_both_finish_correctly(tmp_path):
    """Both runs find numba's cache stale (the stamp removed) and maintain it at once: under
    the lock one purges, the other waits and finds it current; both time every case."""
    from hhbench.backends import numba_cache
    numba_cache.STAMP_FILE.unlink(missing_ok=True)
    outs = [tmp_path / f"r{i}.json" for i in range(2)]
    procs = [subprocess.Popen(
        [sys.executable, "-c", "import sys; from hhbench.cli import main; sys.exit(main())",
         "run", "--no-progress", "--backends", "numba,exp-euler", "--stimuli", "step",
         "--batch", "1,4", "--processes", "2", "--repeats", "2", "--min-time", "0",
         "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for out in outs]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    for out in outs:
        cases = json.loads(out.read_text())["cases"]
        assert len(cases) == 4 and all(c["status"] == "ok" for c in cases), cases
    assert numba_cache.STAMP_FILE.exists()


@pytest.mark.parametrize("delay_s", [1.5, 4.0])
def test_ctrl_c_inside_a_compiled_kernel_is_interrupted_exit_130(tmp_path, delay_s):
    """SIGINT while the converged reference's numba driver runs (a 400,000-sample trace
    takes seconds): no SystemError, no segmentation fault, no file."""
    out = tmp_path / "v.csv"
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from hhbench.cli import main; sys.exit(main())",
         "simulate", "--backend", "reference", "--samples", "400000", "-o", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay_s)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert err.strip() == "hhbench: interrupted"
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_case_given_up_is_not_started_again_in_later_repetitions(fault_dir):
    start = time.perf_counter()
    results, _ = _run(("fault-hang", "numpy"), case_timeout_s=3.0, processes=3)
    took = time.perf_counter() - start
    assert results["fault-hang"].status == "failed"
    assert results["numpy"].status == "ok" and len(results["numpy"].processes) == 3
    # two timeouts in the first repetition, none after (six would be about 18 s more)
    assert took < 6 * 3.0 + 20, took


def test_a_worker_whose_sources_differ_from_the_parents_fails_its_cases(tmp_path):
    from hhbench.workers import work
    job = {"config": SuiteConfig(backends=("numpy",), stimuli=("step",), batches=(1,),
                                 n_samples=50, timing=QUICK).as_dict(),
           "cases": [["numpy", "step", 1, "cpu"]], "indices": [0], "keep_dir": None,
           "group": "simulators", "repetition": 0,
           "source": {"path": "/elsewhere/hhbench", "sha256": "0" * 64}}
    out = tmp_path / "out.json"
    work(job, out)
    error = json.loads(out.read_text())["cases"]["0"]["error"]
    assert "whose sources differ from the parent's (/elsewhere/hhbench)" in error


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped by its new parent, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_worker_dies_with_its_parent(fault_dir, tmp_path):
    """The parent killed outright (SIGKILL: no handler runs) leaves no worker behind."""
    parent = subprocess.Popen(
        [sys.executable, "-c", "import sys; from hhbench.cli import main; sys.exit(main())",
         "run", "--no-progress", "--backends", "fault-killed-from-outside", "--stimuli",
         "step", "--batch", "1", "--processes", "1", "--config", str(_config(tmp_path)),
         "-o", str(tmp_path / "r.json")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid_file = fault_dir / "pid"
    for _ in range(600):
        if pid_file.exists():
            break
        time.sleep(0.05)
    worker = int(pid_file.read_text())
    parent.kill()
    parent.wait(timeout=30)
    for _ in range(100):  # the kernel delivers the worker's SIGKILL at once
        if not _alive(worker):
            break
        time.sleep(0.05)
    else:
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the worker outlived its parent")
    # a parent killed outright cannot remove its temporary folders: this test does
    import shutil
    import tempfile
    for leftover in Path(tempfile.gettempdir()).glob("hhbench-*"):
        if leftover.name.startswith(("hhbench-outputs-", "hhbench-worker-")):
            shutil.rmtree(leftover, ignore_errors=True)


# -- one failure policy: a recorded line, never a lost section or an aborted command -------

def _floor(names):
    from hhbench.floor import floor_report
    from hhbench.suite import import_backend_module
    import_backend_module(str(FAULTS))
    report = floor_report(names, batch=1, settings=QUICK, n_samples=200)
    return {line["backend"]: line for line in report["backends"]}


def _scaling(names):
    from hhbench.scaling import ScalingConfig, run_scaling
    from hhbench.suite import import_backend_module
    import_backend_module(str(FAULTS))
    config = ScalingConfig(backends=names, max_batch=4, lengths=(100, 200), n_samples=100,
                           budget_s=5.0, timing=QUICK)
    return run_scaling(config)


def test_a_backend_whose_prepare_raises_is_a_failed_line_in_run_floor_and_scaling(fault_dir):
    """Catches a prepare() outside any handler (floor, scaling): the section or command
    would be lost; here only that backend's line fails, with the exception's words, and
    numpy beside it is measured."""
    results, _ = _run(("fault-prepare", "numpy"))
    assert results["fault-prepare"].status == "failed"
    assert results["fault-prepare"].error == "RuntimeError: planted prepare failure"
    assert results["numpy"].status == "ok"
    floor = _floor(("numpy", "fault-prepare"))
    assert floor["fault-prepare"]["status"] == "failed"
    assert floor["fault-prepare"]["note"] == "RuntimeError: planted prepare failure"
    assert floor["numpy"]["status"] == "ok" and floor["numpy"]["achieved_s"] > 0
    scaling = _scaling(("numpy", "fault-prepare"))
    assert scaling.failed == {"fault-prepare@cpu": "RuntimeError: planted prepare failure"}
    assert {p.backend for p in scaling.points} == {"numpy"}
    assert "failed: fault-prepare@cpu: RuntimeError" in scaling.to_markdown()


def test_a_device_resolution_that_raises_a_foreign_error_is_a_failed_line(fault_dir):
    """Catches a resolution caught only for hhbench's own exception type: suite.plan_devices
    turned an OSError from a runtime into an aborted `hhbench run`; floor and scaling lost
    their section. Here: a failed line each, the others measured."""
    results, _ = _run(("fault-resolve", "numpy"))
    assert results["fault-resolve"].status == "failed"
    assert results["fault-resolve"].error == "OSError: planted driver failure"
    assert results["numpy"].status == "ok"
    floor = _floor(("fault-resolve", "numpy"))
    assert (floor["fault-resolve"]["status"], floor["fault-resolve"]["note"]) == (
        "failed", "OSError: planted driver failure")
    assert floor["numpy"]["status"] == "ok"
    scaling = _scaling(("fault-resolve", "numpy"))
    assert scaling.failed == {"fault-resolve@auto": "OSError: planted driver failure"}
    assert {p.backend for p in scaling.points} == {"numpy"}


def test_a_backend_that_cannot_run_here_is_skipped_with_its_reason(fault_dir):
    """Catches "cannot run here" recorded as a failure, or not recorded: a GPU-only backend
    whose runtime sees no GPU is "skipped", saying so, in run, floor and scaling."""
    results, _ = _run(("fault-gpu-only", "numpy"))
    assert results["fault-gpu-only"].status == "skipped"
    assert "runs on GPUs only" in results["fault-gpu-only"].error
    floor = _floor(("fault-gpu-only",))
    assert floor["fault-gpu-only"]["status"] == "skipped"
    assert "runs on GPUs only" in floor["fault-gpu-only"]["note"]
    scaling = _scaling(("fault-gpu-only", "numpy"))
    assert "runs on GPUs only" in scaling.skipped["fault-gpu-only@auto"]
    assert not scaling.failed


def test_a_failing_device_only_timing_keeps_the_round_trip(fault_dir):
    """Catches the device-only measurement inside the round trip's handler: its failure
    threw away a round trip already timed. The case stays ok, timed, and says why it has
    no device-only time."""
    from hhbench.backends import get_backend
    from hhbench.suite import case_stimulus, import_backend_module, run_case
    import_backend_module(str(FAULTS))
    case, result = run_case(get_backend("fault-device-only"), case_stimulus("step", 1,
                            n_samples=200), timing=QUICK, reference_name="converged")
    assert case.status == "ok" and result is not None
    assert case.timing.median_s > 0
    assert case.settings["device_only_error"] == "RuntimeError: planted device-only failure"
    assert "device_only_s" not in case.settings


def test_sigterm_is_handled_as_ctrl_c_and_exits_143(tmp_path):
    """SIGTERM (a `kill`, a scheduler's stop) inside the converged reference's compiled
    driver: no traceback, no file, 'terminated' and exit 143 (128 + 15), as a shell
    reports a process that SIGTERM ended."""
    out = tmp_path / "v.csv"
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from hhbench.cli import main; sys.exit(main())",
         "simulate", "--backend", "reference", "--samples", "400000", "-o", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    assert err.strip() == "hhbench: terminated"
    assert list(tmp_path.iterdir()) == []


def test_install_and_uninstall_put_back_the_callers_handlers():
    """A library user's own SIGINT and SIGTERM handlers are back after `handling()`, and
    after `hhbench.cli.main` (which installs ours for its run)."""
    from hhbench import interrupts
    from hhbench.cli import main

    def mine(signum, frame):
        pass
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for s in before:
            signal.signal(s, mine)
        with interrupts.handling():
            assert interrupts.installed()
            assert signal.getsignal(signal.SIGTERM) is not mine
        assert all(signal.getsignal(s) is mine for s in before)
        assert main(["backends"]) == 0
        assert all(signal.getsignal(s) is mine for s in before)
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def test_ctrl_c_during_a_long_compiled_batch_is_raised_after_the_piece_it_came_in(
        monkeypatch):
    """With interrupts handled (the command line's accuracy phase), the converged
    reference of a noise batch is integrated in pieces of samples (here as small as they
    go), each from the state the last one ended in; SIGINT that arrives inside a piece is
    raised when that piece returns, and no piece starts after it. The bug this catches:
    one compiled call for the whole trace (Ctrl-C waited for all of it: 5-55 s at batch
    256; pieces of whole traces would still take seconds each at 512 substeps)."""
    from hhbench import interrupts
    from hhbench.backends import numba_engine
    from hhbench.backends.reference import Reference
    from hhbench.stimuli import white_noise

    Reference().prepare()  # compiled before the pieces are counted
    monkeypatch.setattr(numba_engine, "SLICE_S", 1e-9)  # every piece as small as it goes
    pieces, at_signal = [], []
    real = numba_engine._drive_once

    def counting(current, *args):
        pieces.append(current.shape[1])
        return real(current, *args)
    monkeypatch.setattr(numba_engine, "_drive_once", counting)

    def interrupter():
        while len(pieces) < 3 or not interrupts._depth:  # inside a compiled piece
            time.sleep(0.0005)
        at_signal.append(len(pieces))
        os.kill(os.getpid(), signal.SIGINT)
    thread = threading.Thread(target=interrupter, daemon=True)
    stim = white_noise(seed=0, batch=16, n_samples=2560)
    with interrupts.handling():
        thread.start()
        with pytest.raises(KeyboardInterrupt):
            Reference().run(stim)
    thread.join(timeout=5)
    assert max(pieces) < stim.n_samples, pieces
    assert len(pieces) == at_signal[0], (len(pieces), at_signal)


def test_pieces_of_samples_give_the_numbers_of_one_call():
    """The pieces (each from the state the last ended in) compute the same steps: V, the
    gates and the diverged flags equal those of one call, bit for bit, also for a trace
    that diverges (NaN from its first bad sample to the end, across pieces)."""
    import numpy as np

    from hhbench import interrupts
    from hhbench.backends import numba_engine
    from hhbench.stimuli import white_noise
    current = white_noise(seed=3, batch=5, n_samples=700).current_ua.copy()
    current[2] -= 60.0  # forward Euler diverges on this one
    for kernel, substeps in (("euler", 1), ("exp-midpoint", 4)):
        whole = numba_engine.integrate_marked(current, 0.05, kernel, substeps, True)
        old = numba_engine.SLICE_S
        numba_engine.SLICE_S = 1e-9
        try:
            with interrupts.handling():
                pieces = numba_engine.integrate_marked(current, 0.05, kernel, substeps, True)
        finally:
            numba_engine.SLICE_S = old
        np.testing.assert_array_equal(pieces[0], whole[0])
        for gate in "mhn":
            np.testing.assert_array_equal(pieces[1][gate], whole[1][gate])
        assert pieces[2].tolist() == whole[2].tolist()
        if kernel == "euler":  # a trace that diverged, so that NaN crossed the pieces
            assert whole[2].tolist() == [False, False, True, False, False]


def test_ctrl_c_caught_by_a_library_caller_still_stops_the_worker(fault_dir):
    """run_suite called from a library, which catches the KeyboardInterrupt: the worker
    that was timing a case is killed, not left running."""
    def interrupter():
        pid_file = fault_dir / "pid"
        for _ in range(600):
            if pid_file.exists():
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)
    thread = threading.Thread(target=interrupter, daemon=True)
    thread.start()
    try:
        _run(("fault-killed-from-outside",))
    except KeyboardInterrupt:
        pass
    else:
        pytest.fail("no KeyboardInterrupt")
    thread.join(timeout=1)
    worker = int((fault_dir / "pid").read_text())
    for _ in range(100):
        if not _alive(worker):
            break
        time.sleep(0.05)
    else:
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the worker outlived the interrupt")


def test_the_sources_hash_follows_every_files_content(tmp_path):
    """The digest that says what code was timed changes when a file's content changes
    with its name kept: in a copy of the package, in a backend module from outside it
    (as a plugin's), and in a model file."""
    import shutil

    from hhbench.suite import import_backend_module
    from hhbench.workers import package_source
    root = Path(__file__).resolve().parents[1]
    copy = tmp_path / "hhbench"
    shutil.copytree(root / "hhbench", copy, ignore=shutil.ignore_patterns("__pycache__"))
    plugin = tmp_path / "faults_copy_for_hash.py"
    plugin.write_text(FAULTS.read_text().replace('name = "fault-', 'name = "hashed-fault-'))
    import_backend_module(str(plugin))
    model = tmp_path / "model"
    model.mkdir()
    (model / "Gmodel.json").write_text("{}")
    (model / "Gmodel.h5").write_bytes(b"\x89HDF weights")

    def digest():
        return package_source([model], root=copy)
    before = digest()
    assert before == digest()  # and nothing else moves it
    edits = [(copy / "stimuli.py", "package_sha256"), (plugin, "backends_sha256"),
             (model / "Gmodel.h5", "model_sha256")]
    for path, part in edits:
        old = digest()
        path.write_bytes(path.read_bytes() + b"\n# edited\n")
        new = digest()
        assert new[part] != old[part] and new["sha256"] != old["sha256"], part
        assert all(new[k] == old[k] for _, k in edits if k != part), part
