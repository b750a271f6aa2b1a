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
  * `spread`: (lower quartile − smallest) / smallest of the block minima taken at the
    run's start, its end and in its workers: how far the minimum is from what the
    machine gave most of the time. A quiet machine gives well under 3 %; sustained
    interference (another job on a core's sibling) slows most blocks, and so the
    quartile. The lower quartile, not the median or the largest: one block hit by an
    interrupt burst moves the largest by 25-30 % on the development machine, and one of
    a run's moments caught in a slow second moves a median of few blocks. The blocks
    between worker processes are left out of it: right after a worker exits they run
    10-30 % slow there (its caches and clocks just left by the worker), which says
    nothing of other work. `compare` shows the NEW/OLD ratio of `min_s` only where both
    sides' spread is below `STABLE_SPREAD`.

Its use: the ratio says how much faster one machine (or one moment) runs single-threaded
NumPy code than another, so a case's ratio across machines can be read against it; on one
kind of machine, a run whose core ran more than 5 % slower than the other's has its
slowdowns discounted by `compare` (`slower_run`). It is not a correction factor: backends
differ in what limits them (threads, memory, a GPU).
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
#: two stable calibrations on the same kind of machine, one more than this much slower than
#: the other (NEW/OLD above 1 + this or below 1/(1 + this)): the machine itself ran at
#: another speed in one of the runs (quiet back-to-back runs on one machine stay within it)
SAME_MACHINE_TOLERANCE = 0.05


class Calibration:
    """Blocks of the kernel taken at several moments of a run (`take`), or in other
    processes (`add`), summed up by `result` as the dict of the results file (see the
    module doc)."""

    def __init__(self, reps: int = REPS_PER_BLOCK):
        self.reps = reps
        self.x = np.random.default_rng(0).standard_normal(4096)
        self.out = np.empty_like(self.x)
        self.clean: list[float] = []  # the blocks the spread is taken of
        self.minima: list[float] = []
        self.medians: list[float] = []
        self.moments = 0

    def take(self, blocks: int = 1, *, clean: bool = True) -> None:
        """Time `blocks` blocks now (after a short warm-up of the code path and caches);
        `clean=False`: right after a worker process, left out of the spread."""
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
        self.add(minima, clean=clean)

    def between(self) -> None:
        """One block between two worker processes (`run_processes`' `between`)."""
        self.take(1, clean=False)

    def add(self, block_minima, *, clean: bool = True) -> None:
        """Block minima (s) taken at one moment, here (`take`) or in a worker process."""
        if clean:
            self.clean.extend(block_minima)
        self.minima.extend(block_minima)
        self.moments += 1

    def result(self) -> dict:
        return {"kernel": KERNEL, "min_s": min(self.minima),
                "median_s": float(np.median(self.medians)), "spread": spread_of(self.clean),
                "block_min_s": list(self.minima), "moments": self.moments,
                "repetitions": len(self.minima) * self.reps}


def calibrate(blocks: int = BLOCKS, reps: int = REPS_PER_BLOCK) -> dict:
    """Time the kernel now, `blocks` blocks at one moment (see the module doc); a dict
    for the results file."""
    calibration = Calibration(reps)
    calibration.take(blocks)
    return calibration.result()


def spread_of(block_minima) -> float:
    """(lower quartile − smallest) / smallest block minimum (a fraction; see the module
    doc)."""
    lo = min(block_minima)
    return (float(np.percentile(block_minima, 25)) - lo) / lo if lo > 0 else float("inf")


def speed_ratio(old: dict | None, new: dict | None) -> dict | None:
    """NEW/OLD of the kernel's minimum time (above 1: NEW's core was slower), with whether
    both spreads are small enough for it to mean something; None when either side has no
    calibration of this kernel (e.g. a results file from before it existed)."""
    if not old or not new or old.get("kernel") != KERNEL or new.get("kernel") != KERNEL:
        return None
    stable = old["spread"] < STABLE_SPREAD and new["spread"] < STABLE_SPREAD
    return {"ratio": new["min_s"] / old["min_s"], "old_spread": old["spread"],
            "new_spread": new["spread"], "stable": stable}


def slower_run(ratio: dict | None) -> tuple[str, str] | None:
    """("NEW" or "OLD", why) when, by `speed_ratio`'s stable ratio of two runs on the same
    kind of machine, one run's core ran more than SAME_MACHINE_TOLERANCE slower than the
    other's: its timings may be slower for that alone (another tenant on the host, a clock
    that changed); None otherwise. The caller checks that the machines are the same
    kind: between two kinds the ratio is the hardware's difference, not interference."""
    if not ratio or not ratio["stable"]:
        return None
    r = ratio["ratio"]
    by = "by the calibration kernel"
    if r > 1 + SAME_MACHINE_TOLERANCE:
        return "NEW", f"its core ran {r - 1:.0%} slower than OLD's, {by}"
    if r < 1 / (1 + SAME_MACHINE_TOLERANCE):
        return "OLD", f"its core ran {1 / r - 1:.0%} slower than NEW's, {by}"
    return None
