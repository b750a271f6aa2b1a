"""Change points in a series of runs, each confirmed by hhbench's process-level test.

A speed series is one point per commit (in commit order), each point the per-process
median warm times (seconds) of that commit's runs. Changes are found by binary
segmentation and kept only when the evidence holds:

  1. y_i = mean log per-process median at commit i; the case's noise σ is the robust
     spread of the series from commit to commit, 1.4826 · MAD(y_i − y_{i−1}) / √2 (a step
     or an outlier moves one or two differences, not their median);
  2. z = y winsorized around its running median of 3 (each point's distance from the
     running median clipped to ±2.5σ: a single outlying commit is pulled in, a step,
     which the running median follows, is kept where it is); a candidate is the split k
     of the segment [a, b) that maximises the CUSUM statistic of z,
     |mean(left) − mean(right)| · √(n_l n_r / n),
     with at least `min_commits` commits on each side;
  3. a candidate is considered only when that statistic exceeds σ · (√(2 ln n) +
     `cusum_margin`, 0.25): the largest CUSUM of n points of pure noise grows like
     σ √(2 ln n). It is confirmed when
     (a) the step between the means of z on the two sides is beyond the threshold
         t = max(min_effect, exp(noise_factor · σ) − 1), the effect the case's noise can
         resolve, with at least `min_commits` commits on each side beyond the midpoint
         between the sides' median levels; and
     (b) hhbench's process-level test holds between all processes before and all after:
         Welch's (1 − `alpha`) interval on the log per-process medians
         (`hhbench.stats.welch_log_interval_from_moments`, the interval of `hhbench
         compare`, from the moments the store keeps) with
         compare's rule: "slower" when the ratio exceeds 1 + t and the interval lies above
         1, "faster" mirrored.
     Then both sides are searched again; else the segment holds no change.
Marked commits (intended changes) split a series into parts analysed on their own: the
baseline restarts at the mark. Accuracy metrics (RMSE, Γ, spike-count error) are
deterministic: every commit where the value differs from the commit before (beyond
`rtol`) is a change, dated to that commit.

Everything here is a function of arrays; nothing reads the store.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from hhbench.stats import welch_log_interval_from_moments

#: accuracy metrics and the direction that is worse
ACCURACY_WORSE = {"rmse_mv": +1, "gamma": -1, "spike_count_error": +1}


@dataclass(frozen=True, kw_only=True)
class Detection:
    """Settings of the speed-change detection (see the module doc)."""

    alpha: float = 0.01
    noise_factor: float = 1.0
    min_effect: float = 0.0
    min_commits: int = 3
    cusum_margin: float = 0.25
    rtol: float = 1e-9

    def __post_init__(self):
        if not 0 < self.alpha < 1 or self.noise_factor < 0 or self.min_effect < 0:
            raise ValueError("alpha within (0, 1), noise_factor and min_effect >= 0")
        if self.min_commits < 2:
            raise ValueError("a change needs at least 2 commits on each side")


@dataclass(frozen=True, kw_only=True)
class SpeedChange:
    """A confirmed step: `index` is the first point after it."""

    index: int
    ratio: float            # after/before, geometric means of the per-process medians
    ci_low: float
    ci_high: float
    n_before: int           # commits
    n_after: int
    processes: str          # "before/after" processes
    threshold: float        # the effect the case's noise can resolve (fraction)
    noise: float            # σ of log values from commit to commit

    @property
    def slower(self) -> bool:
        return self.ratio > 1


@dataclass(frozen=True, kw_only=True)
class AccuracyChange:
    index: int
    metric: str
    old: float
    new: float

    @property
    def worse(self) -> bool:
        return (self.new - self.old) * ACCURACY_WORSE.get(self.metric, +1) > 0


def noise_sigma(y: np.ndarray) -> float:
    """Robust σ of a log series from commit to commit (see the module doc)."""
    d = np.diff(y)
    if d.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2))


def median3(y: np.ndarray) -> np.ndarray:
    """Running median of 3; the ends use the median of the first (last) three."""
    if y.size < 3:
        return y.copy()
    z = np.median(np.stack([y[:-2], y[1:-1], y[2:]]), axis=0)
    return np.concatenate([[np.median(y[:3])], z, [np.median(y[-3:])]])


def winsorize(y: np.ndarray, sigma: float, k: float = 2.5) -> np.ndarray:
    """y with each point's distance from the running median of 3 clipped to ±k·σ: a single
    outlying commit is pulled in, a step (which the running median follows) is kept."""
    m = median3(y)
    return m + np.clip(y - m, -k * sigma, k * sigma)


def _best_split(z: np.ndarray, m: int) -> tuple[int | None, float]:
    """(split k of z, m <= k <= n − m, maximising the CUSUM statistic; that statistic);
    (None, 0) if z is too short."""
    n = z.size
    if n < 2 * m:
        return None, 0.0
    c = np.concatenate([[0.0], np.cumsum(z)])
    k = np.arange(m, n - m + 1)
    left, right = c[k] / k, (c[n] - c[k]) / (n - k)
    stat = np.abs(left - right) * np.sqrt(k * (n - k) / n)
    best = int(np.argmax(stat))
    return int(k[best]), float(stat[best])


def moments(points: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, mean, sd) of the log per-process medians of each point (sd with ddof 1; 0 for a
    point of one process)."""
    sizes = np.fromiter(map(len, points), dtype=np.int64, count=len(points))
    flat = np.fromiter(itertools.chain.from_iterable(points), dtype=float,
                       count=int(sizes.sum()))
    if sizes.size and (sizes.min() == 0 or not flat.min() > 0):
        raise ValueError("every point needs positive per-process medians")
    logs = np.log(flat)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    mean = np.add.reduceat(logs, starts) / sizes if sizes.size else np.zeros(0)
    ss = np.add.reduceat((logs - np.repeat(mean, sizes)) ** 2, starts) if sizes.size \
        else np.zeros(0)
    sd = np.sqrt(ss / np.maximum(sizes - 1, 1))
    return sizes, mean, sd


def speed_changes(points: Sequence[Sequence[float]], *, breaks: Sequence[int] = (),
                  settings: Detection = Detection()) -> list[SpeedChange]:
    """Confirmed steps in a series of per-process medians (seconds), one entry per commit
    in commit order; `breaks` are indices where a marked commit restarts the baseline."""
    if not len(points):
        return []
    return speed_changes_from_moments(*moments(points), breaks=breaks, settings=settings)


def speed_changes_from_moments(n: np.ndarray, mean: np.ndarray, sd: np.ndarray, *,
                               breaks: Sequence[int] = (),
                               settings: Detection = Detection()) -> list[SpeedChange]:
    """`speed_changes` from each commit's number, mean and standard deviation of the log
    per-process medians (what the store keeps): the pooled moments of any run of commits
    follow from prefix sums, so no per-process median is read."""
    n = np.asarray(n, dtype=float)
    y = np.asarray(mean, dtype=float)
    sd = np.nan_to_num(np.asarray(sd, dtype=float))
    if not y.size:
        return []
    # prefix sums of n, n·mean and the sums of squares about zero, per point
    c_n = np.concatenate([[0.0], np.cumsum(n)])
    c_1 = np.concatenate([[0.0], np.cumsum(n * y)])
    c_2 = np.concatenate([[0.0], np.cumsum((n - 1) * sd ** 2 + n * y ** 2)])
    total = y.size
    bounds = sorted({0, total, *(b for b in breaks if 0 < b < total)})
    found: list[SpeedChange] = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        part = y[a:b]
        sigma = noise_sigma(part)
        if not math.isfinite(sigma):
            continue
        threshold = max(settings.min_effect, math.expm1(settings.noise_factor * sigma))
        seg = _Segment(prefix=(c_n, c_1, c_2), y=y, z=np.concatenate(
            [np.zeros(a), winsorize(part, sigma), np.zeros(total - b)]),
            threshold=threshold, sigma=sigma, settings=settings, found=found)
        seg.search(a, b)
    return sorted(found, key=lambda c: c.index)


@dataclass
class _Segment:
    """Binary segmentation of one part of a series (between marks)."""

    prefix: tuple           # prefix sums of n, n·mean, sum of squares of the log medians
    y: np.ndarray           # per point: mean log per-process median
    z: np.ndarray           # y winsorized (within this part)
    threshold: float
    sigma: float
    settings: Detection
    found: list

    def pooled(self, a: int, b: int) -> tuple[float, float, int]:
        """(mean, sd, n) of all log per-process medians of points a..b-1."""
        c_n, c_1, c_2 = self.prefix
        n = c_n[b] - c_n[a]
        mean = (c_1[b] - c_1[a]) / n
        var = max((c_2[b] - c_2[a]) - n * mean ** 2, 0.0) / (n - 1) if n > 1 else float("nan")
        return mean, math.sqrt(var), int(round(n))

    def search(self, a: int, b: int) -> None:
        s, y, z = self.settings, self.y, self.z
        k, stat = _best_split(z[a:b], s.min_commits)
        # the largest of n − 2m + 1 statistics of pure noise grows like σ·√(2 ln n)
        if k is None or stat <= self.sigma * (math.sqrt(2 * math.log(b - a)) + s.cusum_margin):
            return
        k += a
        # (a) the step between the sides' winsorized means: robust to an outlier on either
        # side, and beyond the case's noise
        if abs(float(z[k:b].mean() - z[a:k].mean())) <= math.log1p(self.threshold):
            return
        # ... shown by at least min_commits commits on each side: each side has that many
        # on its own side of the midpoint between the two levels (two slow commits at the
        # end and one before them are not three commits of a change)
        lo, hi = (y[a:k], y[k:b]) if z[k:b].mean() > z[a:k].mean() else (y[k:b], y[a:k])
        mid = (np.median(lo) + np.median(hi)) / 2
        if min(int(np.sum(lo < mid)), int(np.sum(hi > mid))) < s.min_commits:
            return
        # (b) hhbench's own test on the processes before against those after: Welch's
        # interval on the log per-process medians, and compare's rule for slower/faster
        m0, s0, n0 = self.pooled(a, k)
        m1, s1, n1 = self.pooled(k, b)
        ratio, ci_low, ci_high = welch_log_interval_from_moments(m0, s0, n0, m1, s1, n1,
                                                                 alpha=s.alpha)
        t = self.threshold
        if not ((ratio > 1 + t and ci_low > 1) or (ratio < 1 / (1 + t) and ci_high < 1)):
            return
        self.found.append(SpeedChange(index=k, ratio=ratio, ci_low=ci_low, ci_high=ci_high,
                                      n_before=k - a, n_after=b - k, processes=f"{n0}/{n1}",
                                      threshold=t, noise=self.sigma))
        self.search(a, k)
        self.search(k, b)


def accuracy_changes(values: Sequence[float | None], metric: str, *,
                     breaks: Sequence[int] = (), rtol: float = 1e-9) -> list[AccuracyChange]:
    """Every commit whose value differs from the previous commit's (None: not measured,
    skipped); a marked commit (`breaks`) restarts the comparison."""
    out, prev, breaks = [], None, set(breaks)
    for i, v in enumerate(values):
        if i in breaks:
            prev = None
        if v is None or not math.isfinite(v):
            continue
        if prev is not None and abs(v - prev) > rtol * max(1.0, abs(prev)):
            out.append(AccuracyChange(index=i, metric=metric, old=prev, new=float(v)))
        prev = float(v)
    return out


# -- synthetic series for tests and the detection benchmark -----------------------------------

def synthetic_series(rng: np.random.Generator, n: int, *, noise: float = 0.02,
                     step: float = 0.0, at: int | None = None, outliers: int = 0,
                     outlier_size: float = 10.0, lognormal: bool = False,
                     processes: int = 3, within: float = 0.005,
                     base_s: float = 1e-3) -> list[np.ndarray]:
    """A speed series of `n` commits: each commit's level is base · (1 + step after `at`)
    times its noise (normal: 1 + N(0, noise); lognormal: exp(N(0, noise))), and each of
    its `processes` per-process medians scatters around that level by exp(N(0, within)).
    `outliers` single commits (not adjacent, not at `at`) are off by `outlier_size` ·
    noise, up or down."""
    level = np.full(n, base_s)
    if step and at is not None:
        level[at:] *= 1 + step
    eps = rng.normal(0.0, noise, n)
    level = level * (np.exp(eps) if lognormal else np.clip(1 + eps, 0.5, None))
    if outliers:
        free = [i for i in range(1, n - 1) if at is None or abs(i - at) > 1]
        chosen: list[int] = []
        for i in rng.permutation(free):
            if all(abs(i - j) > 2 for j in chosen):
                chosen.append(int(i))
            if len(chosen) == outliers:
                break
        for i in chosen:
            level[i] *= 1 + rng.choice([-1, 1]) * outlier_size * noise
    return [lv * np.exp(rng.normal(0.0, within, processes)) for lv in level]
