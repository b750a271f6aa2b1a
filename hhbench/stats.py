"""Statistics of timings taken in several processes: spread, ratio with its interval, verdict.

The unit of evidence is the process, not the sample. Samples within one process share
that process' fate (where its threads landed, what the rest of the machine did while it
ran, which code layout and cache state it got), so thousands of samples from one process
say little about the next one; treating them as independent makes any two runs
"significantly" different. Each process is therefore summarised by its median warm time,
and the per-process medians are the observations:

  * spread between processes: the coefficient of variation of the per-process medians;
  * NEW/OLD ratio: exp(mean log median NEW − mean log median OLD) (the ratio of the
    geometric means of the per-process medians), with a (1 − alpha) confidence interval
    from Welch's t on the log medians (unequal spreads and counts allowed). With few
    processes this interval is honest where the alternatives are not: a bootstrap over 3
    processes has only 10 distinct resamples and gives intervals far too narrow, and a rank
    test on 3 + 3 medians can never reach p < 0.05 (its smallest one-sided p is 1/20);
  * verdict (threshold t, e.g. 0.10):
      - "slower": ratio > 1 + t and the interval lies above 1;
      - "faster": ratio < 1/(1 + t) and the interval lies below 1;
      - "same": the interval lies inside [1/(1 + t), 1 + t];
      - "inconclusive" otherwise, or with fewer than `min_processes` per side, with the
        reason and, when the spread is known, about how many processes per side would
        resolve it.
All functions are plain functions of arrays of seconds; nothing here times anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

VERDICTS = ("slower", "faster", "same", "inconclusive")
#: fewest processes per side for a verdict: below this the spread between processes,
#: the very noise the verdict must account for, is not known
MIN_PROCESSES = 3
_MAX_NEEDED = 1000


def process_medians(groups: Sequence[Sequence[float]]) -> np.ndarray:
    """Median of each process' warm samples (seconds); empty processes are skipped."""
    return np.array([float(np.median(g)) for g in groups if len(g)], dtype=float)


def spread(medians: Sequence[float]) -> float:
    """Coefficient of variation of per-process medians (a fraction; NaN below 2 processes)."""
    m = np.asarray(medians, dtype=float)
    if m.size < 2 or not np.all(m > 0):
        return float("nan")
    return float(np.std(m, ddof=1) / np.mean(m))


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """The comparison of one case: NEW/OLD ratio, its interval, verdict and why."""

    ratio: float
    ci_low: float
    ci_high: float
    verdict: str
    why: str
    n_old: int
    n_new: int
    #: processes per side that would likely resolve an inconclusive case (None: unknown)
    processes_needed: int | None = None

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


def _log_sd(logs: np.ndarray) -> float:
    return float(np.std(logs, ddof=1)) if logs.size >= 2 else float("nan")


def _t_quantile(q: float, df: float) -> float:
    from scipy import stats as sps  # here, not at import: `hhbench` itself stays light
    return float(sps.t.ppf(q, df))


def _half_width(sd_old: float, sd_new: float, n_old: int, n_new: int,
                alpha: float) -> tuple[float, float]:
    """(half-width of Welch's interval on the log scale, degrees of freedom)."""
    v_old, v_new = sd_old ** 2 / n_old, sd_new ** 2 / n_new
    se2 = v_old + v_new
    if se2 == 0:
        return 0.0, float("inf")
    df = se2 ** 2 / (v_old ** 2 / (n_old - 1) + v_new ** 2 / (n_new - 1))
    return _t_quantile(1 - alpha / 2, df) * math.sqrt(se2), df


def processes_needed(sd_log: float, margin_log: float, alpha: float) -> int | None:
    """Fewest processes per side for which Welch's interval half-width (equal spread
    `sd_log` of the log medians on both sides) falls below `margin_log`; None when the
    spread is unknown, more than 1000 when the margin is (nearly) zero."""
    if not math.isfinite(sd_log):
        return None
    if sd_log == 0:
        return MIN_PROCESSES
    if margin_log <= 0:
        return _MAX_NEEDED + 1
    for n in range(MIN_PROCESSES, _MAX_NEEDED + 1):
        if _t_quantile(1 - alpha / 2, 2 * n - 2) * sd_log * math.sqrt(2 / n) < margin_log:
            return n
    return _MAX_NEEDED + 1


def welch_processes_needed(sd_old: float, sd_new: float, margin_log: float, alpha: float,
                           start: int) -> int | None:
    """Fewest processes per side, from `start` on, for which Welch's interval half-width
    with these spreads of the log medians falls below `margin_log` (None: spread unknown;
    more than 1000: not within reach)."""
    if not (math.isfinite(sd_old) and math.isfinite(sd_new)):
        return None
    for n in range(max(start, 2), _MAX_NEEDED + 1):
        if _half_width(sd_old, sd_new, n, n, alpha)[0] < margin_log:
            return n
    return _MAX_NEEDED + 1


def resolvable_change(medians: Sequence[float], alpha: float = 0.01) -> float:
    """The smallest relative change (e.g. 0.08 = 8 %) that a comparison of this case
    against a run like it (same spread, same number of processes) can tell from noise:
    Welch's interval half-width at this spread. NaN with fewer than 2 processes."""
    logs = np.log(np.asarray(medians, dtype=float))
    if logs.size < 2:
        return float("nan")
    sd = _log_sd(logs)
    return math.expm1(_half_width(sd, sd, logs.size, logs.size, alpha)[0])


def compare_processes(old: Sequence[float], new: Sequence[float], *, threshold: float = 0.10,
                      alpha: float = 0.01, min_processes: int = MIN_PROCESSES) -> Verdict:
    """Verdict on NEW against OLD from their per-process medians (seconds; see module doc)."""
    if min_processes < 2:
        raise ValueError("a speed verdict needs at least 2 processes per side (a spread)")
    old_m, new_m = np.asarray(old, dtype=float), np.asarray(new, dtype=float)
    if old_m.size == 0 or new_m.size == 0 or not (np.all(old_m > 0) and np.all(new_m > 0)):
        raise ValueError("need at least one positive per-process median on each side")
    lo_old, lo_new = np.log(old_m), np.log(new_m)
    d = float(lo_new.mean() - lo_old.mean())
    ratio = math.exp(d)
    sd_old, sd_new = _log_sd(lo_old), _log_sd(lo_new)
    n_old, n_new = old_m.size, new_m.size
    bound = math.log1p(threshold)
    # the margin the interval must clear: to 1 (slower/faster) when the change is beyond
    # the threshold, else to the threshold (same)
    margin = abs(d) if abs(d) > bound else bound - abs(d)
    sd_pooled = math.sqrt(np.nanmean([sd_old ** 2, sd_new ** 2])) \
        if math.isfinite(sd_old) or math.isfinite(sd_new) else float("nan")
    needed = processes_needed(sd_pooled, margin, alpha)
    common = dict(ratio=ratio, n_old=n_old, n_new=n_new)

    if n_old < min_processes or n_new < min_processes:
        hint = f"; {_fmt_needed(needed)} per side for this spread" if needed else ""
        return Verdict(ci_low=float("nan"), ci_high=float("nan"), verdict="inconclusive",
                       why=f"too few processes ({n_old} old, {n_new} new): a verdict needs "
                           f"at least {min_processes} per side{hint}",
                       processes_needed=max(needed or min_processes, min_processes), **common)
    half, _ = _half_width(sd_old, sd_new, n_old, n_new, alpha)
    lo, hi = math.exp(d - half), math.exp(d + half)
    up, down = 1 + threshold, 1 / (1 + threshold)
    interval = f"{1 - alpha:.0%} interval {lo:.3f}-{hi:.3f}"
    if ratio > up and lo > 1:
        verdict, why, needed = "slower", f"{interval}, above 1; ratio beyond +{threshold:.0%}", None
    elif ratio < down and hi < 1:
        verdict, why, needed = "faster", f"{interval}, below 1; ratio beyond -{threshold:.0%}", None
    elif down <= lo and hi <= up:
        verdict, why, needed = "same", f"{interval} inside ±{threshold:.0%}", None
    else:
        verdict = "inconclusive"
        if lo > 1 or hi < 1:
            what = (f"significantly {'slower' if lo > 1 else 'faster'}, but the {interval} "
                    f"straddles the ±{threshold:.0%} threshold")
        else:
            what = f"{interval} too wide to tell (spread between processes " \
                   f"{spread(old_m):.1%} old, {spread(new_m):.1%} new)"
        # more processes than either side has (these did not resolve it), by Welch's
        # interval at the spreads measured
        needed = welch_processes_needed(sd_old, sd_new, margin, alpha,
                                        max(n_old, n_new) + 1)
        why = f"{what}; {_fmt_needed(needed)} processes per side would resolve it"
    return Verdict(ci_low=lo, ci_high=hi, verdict=verdict, why=why, processes_needed=needed,
                   **common)


def _fmt_needed(n: int | None) -> str:
    """'about 7', 'more than 1000' (never 'about more than'), 'an unknown number of'."""
    if n is None:
        return "an unknown number of"
    return f"more than {_MAX_NEEDED}" if n > _MAX_NEEDED else f"about {n}"


def welch_log_interval(old: Sequence[float], new: Sequence[float], *,
                       alpha: float = 0.01) -> tuple[float, float, float]:
    """(NEW/OLD ratio of the geometric means of the per-process medians, low, high):
    Welch's (1 − alpha) interval on the log medians, the interval `compare_processes`
    gives its verdicts from (at least 2 positive medians per side)."""
    lo_old, lo_new = np.log(np.asarray(old, dtype=float)), np.log(np.asarray(new, dtype=float))
    return welch_log_interval_from_moments(float(lo_old.mean()), _log_sd(lo_old), lo_old.size,
                                           float(lo_new.mean()), _log_sd(lo_new), lo_new.size,
                                           alpha=alpha)


def welch_log_interval_from_moments(mean_old: float, sd_old: float, n_old: int,
                                    mean_new: float, sd_new: float, n_new: int, *,
                                    alpha: float = 0.01) -> tuple[float, float, float]:
    """`welch_log_interval` from each side's mean, standard deviation (ddof 1) and number
    of the log per-process medians, for callers that keep those instead of the medians."""
    if n_old < 2 or n_new < 2:
        raise ValueError("Welch's interval needs at least 2 per-process medians per side")
    d = mean_new - mean_old
    half, _ = _half_width(sd_old, sd_new, n_old, n_new, alpha)
    return math.exp(d), math.exp(d - half), math.exp(d + half)
