"""The detection rates of `hhbench history` on synthetic series with planted changes.

    python scripts/history_rates.py [--series 500] [--seed 0]

Series come from `hhbench.history.changes.synthetic_series` (each commit's level with
2 % noise, normal or log-normal, 3 processes per commit scattered by 0.5 % around it):
  * detection: a 5 % step at a random commit within the middle 60 % of 30 commits; found
    when a slowdown is reported within ±1 commit of it;
  * false changes: 100 and 200 commits with no step but single outlying commits at 10x
    the noise (one per 50 commits), every change reported counts.
Prints one line per setting with the rate and its 95 % Wilson interval, and the time spent
per series.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hhbench.history.changes import speed_changes, synthetic_series  # noqa: E402


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--series", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    n = args.series
    print(f"{n} series per setting, seed {args.seed}")
    for lognormal in (False, True):
        noise = "log-normal" if lognormal else "normal"
        t0, hits, late = time.perf_counter(), 0, 0
        for _ in range(n):
            at = int(rng.integers(6, 25))
            found = speed_changes(synthetic_series(rng, 30, step=0.05, at=at,
                                                   lognormal=lognormal))
            hit = any(abs(c.index - at) <= 1 and c.slower for c in found)
            hits += hit
        lo, hi = wilson(hits, n)
        print(f"5% step, 2% {noise} noise, 30 commits: found within ±1 commit in "
              f"{hits / n:.1%} (95% {lo:.1%}-{hi:.1%}); "
              f"{(time.perf_counter() - t0) / n * 1e3:.2f} ms per series")
        for length in (100, 200):
            t0, false = time.perf_counter(), 0
            for _ in range(n):
                false += len(speed_changes(synthetic_series(
                    rng, length, outliers=length // 50, lognormal=lognormal)))
            print(f"no step, {length // 50} outlier(s) at 10x the noise, {length} commits, "
                  f"{noise}: {false / n:.3f} false changes per series ({false} in {n}); "
                  f"{(time.perf_counter() - t0) / n * 1e3:.2f} ms per series")
    return 0


if __name__ == "__main__":
    sys.exit(main())
