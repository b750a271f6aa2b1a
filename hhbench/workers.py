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
                  on_case: Callable[[], None] = lambda: None) -> list[WorkerOutput]:
    """Time every case in `processes` fresh processes per group; outputs of repetition 0
    are written to `keep_dir` as `<case index>.npz`. A worker that dies leaves its cases'
    errors (the last line it wrote on stderr)."""
    outputs = []
    for rep in range(processes):
        for group, indices in group_cases(cases, config_dict.get("options")).items():
            job = {"config": config_dict, "cases": [list(cases[i]) for i in indices],
                   "indices": indices, "keep_dir": str(keep_dir) if rep == 0 else None,
                   "group": group, "repetition": rep}
            outputs.append(_launch(job, on_case))
    return outputs


def _launch(job: dict, on_case) -> WorkerOutput:
    with tempfile.TemporaryDirectory(prefix="hhbench-worker-") as tmp:
        job_path, out_path, err_path = (Path(tmp) / n for n in ("job.json", "out.json", "err"))
        job_path.write_text(json.dumps(job))
        with open(err_path, "w") as err:
            proc = subprocess.Popen([sys.executable, "-m", "hhbench.workers", str(job_path),
                                     str(out_path)], stdout=subprocess.PIPE, stderr=err,
                                    text=True, env=_worker_env())
            for line in proc.stdout:
                if line.startswith(PROGRESS):
                    on_case()
            code = proc.wait()
        if code == 0 and out_path.exists():
            data = json.loads(out_path.read_text())
            return WorkerOutput(group=job["group"], repetition=job["repetition"],
                                cases={int(k): v for k, v in data["cases"].items()},
                                record=data["record"])
        lines = [ln for ln in err_path.read_text().splitlines() if ln.strip()]
        reason = f"worker process exited with status {code}" + (f": {lines[-1][:300]}"
                                                                  if lines else "")
        done = json.loads(out_path.read_text())["cases"] if out_path.exists() else {}
        cases = {i: done.get(str(i), {"error": reason}) for i in job["indices"]}
        return WorkerOutput(group=job["group"], repetition=job["repetition"], cases=cases,
                            record={"error": reason})


def _worker_env() -> dict:
    """The parent's environment; the worker imports this very copy of hhbench."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # JAX takes 75 % of a GPU's memory at its first use unless told not to: a worker
    # allocates what its case needs
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    return env


# -- the worker ----------------------------------------------------------------------------

def work(job: dict, out_path: Path) -> None:
    """Time the job's cases in this process and write the result to `out_path`."""
    from hhbench import threads
    threads.apply()  # before any thread pool starts
    started = time.perf_counter()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    import warnings

    from hhbench.errors import HHBenchError
    from hhbench.suite import SuiteConfig, case_stimulus, make_backend, run_case

    config = SuiteConfig.from_dict(job["config"])
    keep = Path(job["keep_dir"]) if job["keep_dir"] else None
    results = {}
    for index, (name, kind, batch, device) in zip(job["indices"], job["cases"]):
        stim = case_stimulus(kind, batch, n_samples=config.n_samples, seed=config.seed)
        try:
            backend = make_backend(name, device=device, options=config.backend_options(name))
        except HHBenchError as exc:  # e.g. not installed here
            results[index] = {"error": str(exc)}
        else:
            case, result = run_case(backend, stim, timing=config.timing,
                                    reference_name=config.reference)
            results[index] = {"status": case.status, "error": case.error, "device": case.device,
                              "prepare_s": case.prepare_s, "settings": case.settings,
                              "cold_s": None if case.timing is None else case.timing.cold_s,
                              "samples_s": None if case.timing is None
                              else list(case.timing.samples_s)}
            if keep is not None and result is not None:
                np.savez(keep / f"{index}.npz", v=result.v_batch, t_ms=result.t_ms,
                         first_sample=result.first_sample, diverged=result.diverged)
        print(f"{PROGRESS} {index}", flush=True)
        # partial results survive a crash in a later case
        out_path.write_text(json.dumps({"cases": results, "record": {}}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        record = {"group": job["group"], "repetition": job["repetition"], "pid": os.getpid(),
                  "load_average_start": load, "wall_s": time.perf_counter() - started,
                  "threads": threads.describe(), "numba_cache": threads.numba_cache_stats()}
    out_path.write_text(json.dumps({"cases": results, "record": record}, default=str))


def main(argv: list[str] | None = None) -> int:
    job_path, out_path = (argv or sys.argv[1:])[:2]
    work(json.loads(Path(job_path).read_text()), Path(out_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
