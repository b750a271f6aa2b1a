"""Timing in fresh processes: the parent's launcher and the worker's entry point.

Each case of a suite is timed in several fresh worker processes (`python -m
hhbench.workers JOB OUT`), one after the other, never two at once (they would compete for
the cores). A worker process gets a job (JSON: the suite's settings, the cases to time,
whether to keep outputs), applies hhbench's threading policy, and for each case does what
`hhbench.suite.run_case` does — set-up, first call, warm-up, timed calls — then writes its
timings, a record of its thread pools and numba's cache use as JSON to OUT. While it works
it prints one progress line per case on stdout.

Cases are grouped so that a heavy import happens once per process: the cases of backends
with a heavy runtime (TensorFlow, JAX, CUDA: what `Backend.runtime_of` declares) form one
group per runtime, every other backend another, and each group is timed in its own process. Repetition r of every group runs before repetition r + 1 of any, so slow
changes of the machine (another job starting) spread over all cases instead of hitting
one. Only the first repetition keeps its outputs (V traces, as .npz) for the accuracy,
which the parent computes once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

PROGRESS = "hhbench-progress"
#: the line a worker prints as it starts a case
STARTING = "hhbench-starting"
#: seconds a worker may go without finishing a case before it is stopped and restarted
#: (the default suite's longest case, the first CNN case with TensorFlow's import, takes
#: about ten)
DEFAULT_CASE_TIMEOUT_S = 600.0
#: the group of the backends that declare no heavy runtime (NumPy, numba)
SIMULATORS = "simulators"


@dataclass(frozen=True, kw_only=True)
class WorkerOutput:
    """What one worker process returned: per case (by index in the job) either a timing
    dict or an error; and the process' record (threads, numba cache, wall time)."""

    group: str
    repetition: int
    cases: dict
    record: dict


def group_cases(cases: list[tuple], options: dict | None = None) -> dict[str, list[int]]:
    """Indices of `cases` (backend, stimulus, batch, device) by worker group (the runtime
    each backend declares for its options), in order."""
    from hhbench.backends import check_name
    options = options or {}
    groups: dict[str, list[int]] = {}
    for i, case in enumerate(cases):
        runtime = check_name(case[0]).runtime_of(options.get(case[0]))
        groups.setdefault(runtime or SIMULATORS, []).append(i)
    return groups


def run_processes(config_dict: dict, cases: list[tuple], processes: int, *, keep_dir: Path,
                  on_case: Callable[[], None] = lambda: None,
                  case_timeout_s: float | None = DEFAULT_CASE_TIMEOUT_S,
                  source: dict | None = None,
                  between: Callable[[], None] = lambda: None) -> list[WorkerOutput]:
    """Time every case in `processes` fresh processes per group; outputs of repetition 0
    are written to `keep_dir` as `<case index>.npz`.

    A worker that dies (exits non-zero, is killed, crashes in native code) or makes no
    progress for `case_timeout_s` seconds costs only the case it was working on (the
    worker says which case it starts): a fresh process is started for the cases still to
    do, that case moved last, so a case that brings its process down once is tried again
    after the others. A case that brings down `MAX_CASE_ATTEMPTS` processes is given up,
    with the error of its own last process (the last line it wrote on stderr, or the
    timeout), and is not started again in later repetitions. Restarts go on while each
    process starts a case; a process that dies before starting any (a broken
    interpreter, a failing import) fails the cases left with its error. The cases a
    worker finished are kept either way, and so is the full report of a worker that
    exits non-zero after writing it (a crash in a GPU runtime's teardown); its record
    says so (`exit_after_report`). The record of a group's last process lists the errors
    of the ones before it (`restarted_after`). `between` is called between one group's
    processes and the next group's, while no worker runs (the calibration's moments)."""
    if source is None:  # what the workers' own hashes must match
        from hhbench.suite import SuiteConfig
        config = SuiteConfig.from_dict(config_dict)
        source = package_source(suite_models(config), backends=config.backends)
    outputs = []
    given_up: dict[int, dict] = {}  # cases that killed or hung MAX_CASE_ATTEMPTS workers
    for rep in range(processes):
        for group, all_indices in group_cases(cases, config_dict.get("options")).items():
            # a case given up is not started again in later repetitions (a hanging one
            # would cost its timeouts in every repetition)
            indices = [i for i in all_indices if i not in given_up]
            for i in all_indices:
                if i in given_up:
                    on_case()
            if not indices:
                outputs.append(WorkerOutput(group=group, repetition=rep,
                                            cases={i: given_up[i] for i in all_indices},
                                            record={"error": "every case given up"}))
                continue
            if outputs:
                between()
            job = {"config": config_dict, "keep_dir": str(keep_dir) if rep == 0 else None,
                   "group": group, "repetition": rep, "source": source}
            done, record = _run_group(job, cases, indices, on_case, case_timeout_s,
                                      given_up)
            outputs.append(WorkerOutput(group=group, repetition=rep,
                                        cases={**done, **{i: given_up[i] for i in all_indices
                                                          if i not in done}},
                                        record=record))
    return outputs


#: blocks of the calibration kernel each worker process times before its first case
WORKER_CALIBRATION_BLOCKS = 3
#: processes a case may bring down (kill, crash, hang) before it is given up
MAX_CASE_ATTEMPTS = 2


def _run_group(job: dict, cases: list[tuple], indices: list[int], on_case,
               case_timeout_s: float | None, given_up: dict[int, dict]
               ) -> tuple[dict[int, dict], dict]:
    """Time `indices` in as many fresh processes as it takes (see `run_processes`): the
    reports of the cases, and the record of the last process. Cases given up are added to
    `given_up`."""
    done: dict[int, dict] = {}
    attempts: dict[int, int] = {}
    pending = list(indices)
    earlier: list[str] = []  # the errors of the processes before the current one
    while True:
        out = _launch({**job, "indices": pending, "cases": [list(cases[i]) for i in pending]},
                      on_case, case_timeout_s)
        done.update({i: r for i, r in out.cases.items() if not r.get("died")})
        left = [i for i in pending if out.cases.get(i, {}).get("died")]
        if "error" not in out.record or not left:
            break
        culprit = out.record.get("died_on")
        if culprit is None:  # died before starting a case: a restart would do the same
            done.update({i: out.cases[i] for i in left})
            break
        attempts[culprit] = attempts.get(culprit, 0) + 1
        left.remove(culprit)
        if attempts[culprit] >= MAX_CASE_ATTEMPTS:
            report = {k: v for k, v in out.cases[culprit].items() if k != "died"}
            given_up[culprit] = done[culprit] = {**report, "given_up": True}
            on_case()  # done with, for the progress bar
        else:
            left.append(culprit)  # after the others: a case that kills twice costs itself
        if not left:
            break
        earlier.append(out.record["error"])
        pending = left
    record = dict(out.record)
    if earlier:
        record["restarted_after"] = "; ".join(earlier)
    return done, record


def _launch(job: dict, on_case, case_timeout_s: float | None = None) -> WorkerOutput:
    """Run one worker process on `job`; its cases' reports, or for a worker that died or
    hung, the reports it had written and an error (`died`) for the rest; the record of a
    worker that died names the case it was working on (`died_on`; absent when it died
    before starting one)."""
    import queue
    import threading

    with tempfile.TemporaryDirectory(prefix="hhbench-worker-") as tmp:
        job_path, out_path, err_path = (Path(tmp) / n for n in ("job.json", "out.json", "err"))
        job_path.write_text(json.dumps(job))
        hung = None
        started = None  # the case the worker works on now
        with open(err_path, "w") as err:
            # -P: the working folder is not put on sys.path, so the worker imports the
            # package the parent imported (first on PYTHONPATH), not a checkout it runs in
            proc = subprocess.Popen([sys.executable, "-P", "-m", "hhbench.workers",
                                     str(job_path), str(out_path)], stdout=subprocess.PIPE,
                                    stderr=err, text=True, encoding="utf-8",
                                    errors="replace", env=worker_env(),
                                    start_new_session=True)
            lines: queue.Queue = queue.Queue()

            def read():
                try:
                    for line in proc.stdout:
                        lines.put(line)
                finally:  # the end, however reading stopped
                    lines.put(None)
            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            try:
                while True:
                    try:
                        line = lines.get(timeout=case_timeout_s)
                    except queue.Empty:
                        hung = f"no progress for {case_timeout_s:g} s (--case-timeout)"
                        _kill(proc)
                        break
                    if line is None:
                        break
                    if line.startswith(STARTING):
                        started = int(line.split()[1])
                    elif line.startswith(PROGRESS):
                        started = None
                        on_case()
            except BaseException:  # Ctrl-C: the worker goes with the parent
                _kill(proc)
                raise
            code = proc.wait()
            reader.join(timeout=5)
        data = _read_report(out_path)
        if hung is None and data is not None and data.get("record"):
            record = data["record"]
            if code != 0:  # e.g. a GPU runtime crashing at exit: the report is complete
                record = {**record, "exit_after_report": _reason(code, err_path)}
            return WorkerOutput(group=job["group"], repetition=job["repetition"],
                                cases={int(k): v for k, v in data["cases"].items()},
                                record=record)
        reason = hung or _reason(code, err_path)
        done = (data or {}).get("cases", {})
        cases = {i: done.get(str(i), {"error": reason, "died": True}) for i in job["indices"]}
        record = {"error": reason}
        if started is not None and str(started) not in done:
            record["died_on"] = started
        return WorkerOutput(group=job["group"], repetition=job["repetition"], cases=cases,
                            record=record)


def _reason(code: int, err_path: Path) -> str:
    """'worker process exited with status N: <its last line on stderr>'."""
    lines_err = [ln for ln in err_path.read_text(errors="replace").splitlines() if ln.strip()]
    return (f"worker process exited with status {code}"
            + (f": {lines_err[-1][:300]}" if lines_err else ""))


def _die_with_parent() -> None:
    """In the worker, first thing: ask Linux to kill it when its parent dies (a parent
    killed by SIGKILL cannot stop it; the worker runs in a session of its own, away from
    the terminal's Ctrl-C, which the parent handles), and end at once if the parent is
    already gone. Done here rather than between fork and exec, where running Python in a
    multithreaded parent's child can deadlock. Elsewhere than Linux nothing."""
    parent = os.environ.get("HHBENCH_PARENT_PID")
    try:
        import ctypes
        import signal
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent and os.getppid() != int(parent):  # the parent died before the prctl
        os._exit(1)


def _kill(proc) -> None:
    """Stop a worker and whatever it started (its own session), at once."""
    import signal
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, AttributeError):
        proc.kill()


def _read_report(path: Path) -> dict | None:
    """A worker's report, or None where there is none or it is unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def package_source(models=(), *, root: Path | None = None, backends=None) -> dict:
    """What the code timed is: where this process imported hhbench from (`path`), and
    SHA-256 digests (each over relative names and contents, in sorted order) of
      * `package_sha256`: every .py file under the hhbench package (`root`);
      * `backends_sha256`: the source file of the module of each backend named in
        `backends` (None: every registered one) that lies outside the package (plugins'
        entry points, `extra_backend_modules`), by module name;
      * `model_sha256`: the files of each model in `models` (a .keras file, or the files
        directly in a model folder: Gmodel.json, Gmodel.h5, its metadata), by position;
        a model that is not there is recorded as missing;
    and `sha256`, the digest of these three together: what a worker's sources must
    match. Not covered: compiled extensions, data files other than the models, and the
    installed dependencies (their versions are in the results' environment)."""
    import hashlib
    root = Path(root or Path(__file__).resolve().parent)
    package = _digest((str(p.relative_to(root)), p) for p in sorted(root.rglob("*.py")))
    backends = _digest(sorted(_backend_module_files(root, backends).items()))
    model_files = []
    for k, model in enumerate(models):
        path = Path(model)
        files = [path] if path.is_file() else sorted(p for p in path.glob("*") if p.is_file())
        model_files += [(f"{k}/{p.name}", p) for p in files] or [(f"{k}/missing", None)]
    model = _digest(model_files)
    total = hashlib.sha256(f"{package}\0{backends}\0{model}".encode()).hexdigest()
    return {"path": str(root), "sha256": total, "package_sha256": package,
            "backends_sha256": backends, "model_sha256": model,
            "models": [str(m) for m in models]}


def suite_models(config) -> list[str]:
    """The model files each backend of a suite that takes a model loads (`--model`,
    options, else HHBENCH_MODEL or the shipped model), once each."""
    from hhbench.backends import check_name
    from hhbench.errors import HHBenchError
    from hhbench.model_location import locate_model
    models = []
    for name in config.backends:
        if "model" in check_name(name).option_defaults:
            try:
                path = str(locate_model(config.backend_options(name).get("model")).path)
            except HHBenchError:  # none here: the case reports it
                continue
            if path not in models:
                models.append(path)
    return models


def _digest(named_files) -> str:
    """SHA-256 over (name, content) pairs; a file that cannot be read counts as missing."""
    import hashlib
    digest = hashlib.sha256()
    for name, path in named_files:
        try:
            content = b"\1" + Path(path).read_bytes() if path is not None else b"\0"
        except OSError:
            content = b"\0"
        digest.update(name.encode() + b"\0" + content + b"\0")
    return digest.hexdigest()


def _backend_module_files(root: Path, names=None) -> dict[str, Path]:
    """Module name -> source file of each registered backend class outside `root` (of the
    backends in `names` only, where given: a backend registered in the parent that the
    run does not use is not imported by its workers)."""
    from hhbench.backends import backend_classes
    files = {}
    for name, cls in backend_classes().items():
        if names is not None and name not in names:
            continue
        module = sys.modules.get(cls.__module__)
        source = getattr(module, "__file__", None)
        if source and not Path(source).resolve().is_relative_to(root):
            files[cls.__module__] = Path(source)
    return files


def worker_env() -> dict:
    """The parent's environment; the worker imports this very copy of hhbench."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    # each runtime's process set-up (TensorFlow's logging, JAX's memory preallocation off:
    # a worker allocates what its case needs)
    from hhbench.runtimes import process_env
    process_env(env)
    env["HHBENCH_PARENT_PID"] = str(os.getpid())
    return env


# -- the worker ----------------------------------------------------------------------------

def work(job: dict, out_path: Path) -> None:
    """Time the job's cases in this process and write the result to `out_path`."""
    from hhbench import threads
    threads.apply()  # before any thread pool starts
    started = time.perf_counter()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    import warnings

    from hhbench.failures import words
    from hhbench.suite import SuiteConfig, case_stimulus, make_backend, run_case

    config = SuiteConfig.from_dict(job["config"])
    keep = Path(job["keep_dir"]) if job["keep_dir"] else None
    results = {}
    mine = package_source(suite_models(config), backends=config.backends)
    parents = job.get("source")
    # the machine's single-core speed from this process too: another process may sit on
    # a faster or slower core (`hhbench.calibration`); before any case, so nothing of the
    # run competes
    from hhbench.calibration import calibrate
    calibration = calibrate(blocks=WORKER_CALIBRATION_BLOCKS)["block_min_s"]
    for index, (name, kind, batch, device) in zip(job["indices"], job["cases"]):
        print(f"{STARTING} {index}", flush=True)
        stim = case_stimulus(kind, batch, n_samples=config.n_samples, seed=config.seed)
        if parents and parents["sha256"] != mine["sha256"]:
            differ = [what for what, key in (("hhbench", "package_sha256"),
                                              ("backend plugins", "backends_sha256"),
                                              ("model files", "model_sha256"))
                      if parents.get(key) != mine[key]]
            results[index] = {"error": f"the worker imported hhbench from {mine['path']}, "
                                       f"whose sources differ from the parent's "
                                       f"({parents['path']}): not the code asked for "
                                       f"(differing: {', '.join(differ) or 'all'})"}
            _write_json(out_path, {"cases": results, "record": {}})
            print(f"{PROGRESS} {index}", flush=True)
            continue
        try:
            backend = make_backend(name, device=device, options=config.backend_options(name))
        except Exception as exc:  # e.g. not installed here: recorded, the others go on
            results[index] = {"error": words(exc)}
        else:
            case, result = run_case(backend, stim, timing=config.timing,
                                    reference_name=config.reference)
            results[index] = {"status": case.status, "error": case.error, "device": case.device,
                              "prepare_s": case.prepare_s, "settings": case.settings,
                              "cold_s": None if case.timing is None else case.timing.cold_s,
                              "samples_s": None if case.timing is None
                              else list(case.timing.samples_s)}
            if keep is not None and result is not None:
                tmp = keep / f".{index}.npz.tmp"
                with open(tmp, "wb") as fh:
                    np.savez(fh, v=result.v_batch, t_ms=result.t_ms,
                             first_sample=result.first_sample, diverged=result.diverged)
                os.replace(tmp, keep / f"{index}.npz")
        # partial results survive a crash in a later case; progress only once written
        _write_json(out_path, {"cases": results, "record": {}})
        print(f"{PROGRESS} {index}", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        record = {"group": job["group"], "repetition": job["repetition"], "pid": os.getpid(),
                  "load_average_start": load, "wall_s": time.perf_counter() - started,
                  "threads": threads.describe(), "numba_cache": threads.numba_cache_stats(),
                  "source": mine, "calibration_block_min_s": calibration}
    _write_json(out_path, {"cases": results, "record": record})


def _write_json(path: Path, data: dict) -> None:
    """`data` as JSON in `path`, atomically: a worker killed while writing leaves the
    previous version, never half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, default=str))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    _die_with_parent()
    job_path, out_path = (argv or sys.argv[1:])[:2]
    work(json.loads(Path(job_path).read_text()), Path(out_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
