"""How fast this machine's one core is right now: a calibration kernel with its own spread.

The kernel is `np.exp` over 4096 float64 values (32 KiB in, 32 KiB out: it fits in every
L2 cache, so memory bandwidth and other jobs' cache traffic weigh little), called 20 times
per repetition (about 0.1 ms on a 2020s core): single-threaded (NumPy's element-wise
functions use no thread pool), so BLAS threads, core counts and thread placement do not
enter it. It is timed in blocks of `REPS_PER_BLOCK` repetitions, taken at several moments
of a run (`Calibration`): `BLOCKS` at its start, one between each two worker processes,
some in each worker process before its first case, some at the end, each while nothing
else of the run works. On a virtual machine one process' core can run 5-20 % slower, or
2.6x slower for a second or more (another tenant on its sibling), its blocks all slow and
tight: one short calibration cannot tell that from a slower machine; the minimum over
moments and processes spread through the run's minute can.

  * `min_s`: the minimum over all repetitions (seconds per repetition) — the machine's
    speed with the least interference, the value two runs' ratio is taken of;
  * `spread`: (median − smallest) / smallest of the start's `BLOCKS` block minima: how
    much the minimum moved while it was first measured. A quiet machine gives well under
    2 %; a machine whose cores are shared gives more. The median, not the largest: one
    block hit by an interrupt burst moves the largest by 25-30 % on the development
    machine while the median stays near 1 %; sustained interference (another job on the
    core's sibling) moves most blocks, and so the median. The start's blocks only: the
    blocks right after a worker process exits run 10-30 % slow on the development
    machine (its caches and clocks just left by the worker), which says nothing of
    other work. `compare` shows the NEW/OLD ratio of `min_s` only where both sides'
    spread is below `STABLE_SPREAD`.

Its use: the ratio says how much faster one machine (or one moment) runs single-threaded
NumPy code than another, so a case's ratio across machines can be read against it. It is
not a correction factor: backends differ in what limits them (threads, memory, a GPU).
"""

from __future__ import annotations

import time

import numpy as np

KERNEL = "exp_f64_4096_x20"
BLOCKS = 9
REPS_PER_BLOCK = 40
CALLS_PER_REP = 20
#: spread below which a calibration is stable enough for its ratio to be shown
STABLE_SPREAD = 0.03


class Calibration:
    """Blocks of the kernel taken at several moments of a run (`take`), or in other
    processes (`add`), summed up by `result` as the dict of the results file (see the
    module doc)."""

    def __init__(self, reps: int = REPS_PER_BLOCK):
        self.reps = reps
        self.x = np.random.default_rng(0).standard_normal(4096)
        self.out = np.empty_like(self.x)
        self.first: list[float] = []  # the start's blocks: the spread
        self.minima: list[float] = []
        self.medians: list[float] = []
        self.moments = 0

    def take(self, blocks: int = 1) -> None:
        """Time `blocks` blocks now (after a short warm-up of the code path and caches)."""
        x, out, clock = self.x, self.out, time.perf_counter_ns
        for _ in range(CALLS_PER_REP * 5):
            np.exp(x, out=out)
        minima = []
        for _ in range(blocks):
            times = []
            for _ in range(self.reps):
                start = clock()
                for _ in range(CALLS_PER_REP):
                    np.exp(x, out=out)
                times.append((clock() - start) / 1e9)
            minima.append(min(times))
            self.medians.append(float(np.median(times)))
        self.add(minima)

    def add(self, block_minima) -> None:
        """Block minima (s) taken at one moment, here (`take`) or in a worker process."""
        if not self.minima:
            self.first = list(block_minima)
        self.minima.extend(block_minima)
        self.moments += 1

    def result(self) -> dict:
        return {"kernel": KERNEL, "min_s": min(self.minima),
                "median_s": float(np.median(self.medians)), "spread": spread_of(self.first),
                "block_min_s": list(self.minima), "moments": self.moments,
                "repetitions": len(self.minima) * self.reps}


def calibrate(blocks: int = BLOCKS, reps: int = REPS_PER_BLOCK) -> dict:
    """Time the kernel now, `blocks` blocks at one moment (see the module doc); a dict
    for the results file."""
    calibration = Calibration(reps)
    calibration.take(blocks)
    return calibration.result()


def spread_of(block_minima) -> float:
    """(median − smallest) / smallest block minimum (a fraction)."""
    lo = min(block_minima)
    return (float(np.median(block_minima)) - lo) / lo if lo > 0 else float("inf")


def speed_ratio(old: dict | None, new: dict | None) -> dict | None:
    """NEW/OLD of the kernel's minimum time (above 1: NEW's core was slower), with whether
    both spreads are small enough for it to mean something; None when either side has no
    calibration of this kernel (e.g. a results file from before it existed)."""
    if not old or not new or old.get("kernel") != KERNEL or new.get("kernel") != KERNEL:
        return None
    stable = old["spread"] < STABLE_SPREAD and new["spread"] < STABLE_SPREAD
    return {"ratio": new["min_s"] / old["min_s"], "old_spread": old["spread"],
            "new_spread": new["spread"], "stable": stable}
