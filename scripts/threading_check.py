"""Spread between fresh processes of numba's warm time under each threading option.

    python scripts/threading_check.py [--processes 8] [--batches 1,16] [--min-time 0.3]
                                      [--options before,policy,workqueue,...]

For every option (an environment for the child process: numba's threading layer, the
OpenMP wait policy, pinning, the thread count) this starts `--processes` fresh Python
processes one after the other; each prepares the `numba` backend, and times the lab's
step stimulus at each batch size with `hhbench.timing.measure`. Per option and batch it
prints the median of the per-process medians and the spread between processes:
(max − min) / median and the coefficient of variation of the per-process medians.
"before" is numba's and OpenMP's own defaults (`HHBENCH_THREADING=default`); "policy" is
hhbench's threading policy (hhbench.threads). Run it on a quiet machine for the README's
before/after table; on a busy one, the spread says how much the machine's load leaks in.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

# name -> environment of the child (on top of the current one)
OPTIONS = {
    "before": {"HHBENCH_THREADING": "default"},
    "policy": {},
    "omp-active": {"HHBENCH_THREADING": "default", "NUMBA_THREADING_LAYER": "omp",
                   "OMP_WAIT_POLICY": "ACTIVE"},
    "omp-passive": {"HHBENCH_THREADING": "default", "NUMBA_THREADING_LAYER": "omp",
                    "OMP_WAIT_POLICY": "PASSIVE"},
    "omp-bound": {"HHBENCH_THREADING": "default", "NUMBA_THREADING_LAYER": "omp",
                  "OMP_PROC_BIND": "close", "OMP_PLACES": "cores"},
    "workqueue": {"HHBENCH_THREADING": "default", "NUMBA_THREADING_LAYER": "workqueue"},
    "one-thread": {"HHBENCH_THREADING": "default", "NUMBA_NUM_THREADS": "1"},
}

PROBE = """
import json, sys, warnings
from hhbench.backends import get_backend
from hhbench.suite import case_stimulus
from hhbench.threads import describe
from hhbench.timing import TimingSettings, measure
batches, min_time = json.loads(sys.argv[1]), float(sys.argv[2])
backend = get_backend("numba")
backend.prepare()
out = {}
for batch in batches:
    stim = case_stimulus("step", batch)
    timing, _ = measure(lambda: backend.run(stim),
                        TimingSettings(warmup_calls=2, min_repeats=5, min_time_s=min_time))
    out[str(batch)] = timing.median_s
out["numba"] = describe().get("numba", {})
print(json.dumps(out))
"""


def run_option(env_extra: dict, batches: list[int], processes: int, min_time: float) -> list[dict]:
    env = {**os.environ, **env_extra}
    rows = []
    for _ in range(processes):
        done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(batches), str(min_time)],
                              env=env, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"probe failed under {env_extra}:\n{done.stderr[-2000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def spread(medians: np.ndarray) -> tuple[float, float, float]:
    """(median of the per-process medians, (max-min)/median, CV), fractions."""
    mid = float(np.median(medians))
    return mid, float(np.ptp(medians) / mid), float(np.std(medians, ddof=1) / np.mean(medians))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--processes", type=int, default=8)
    p.add_argument("--batches", default="1,16")
    p.add_argument("--min-time", type=float, default=0.3)
    p.add_argument("--options", default=",".join(OPTIONS))
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    names = [n.strip() for n in args.options.split(",")]
    unknown = [n for n in names if n not in OPTIONS]
    if unknown:
        p.error(f"unknown options {unknown}; choose from {', '.join(OPTIONS)}")
    print(f"numba warm time of the lab's step, {args.processes} fresh processes per option; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores\n")
    print("| option | layer | batch | median of process medians | (max-min)/median | CV | "
          "process medians (ms) |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        rows = run_option(OPTIONS[name], batches, args.processes, args.min_time)
        layer = rows[0]["numba"].get("threading_layer", "?")
        for batch in batches:
            med = np.array([r[str(batch)] for r in rows])
            mid, rng, cv = spread(med)
            print(f"| {name} | {layer} | {batch} | {mid * 1e3:.3f} ms | {rng:.1%} | {cv:.1%} | "
                  + " ".join(f"{m * 1e3:.2f}" for m in med) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
