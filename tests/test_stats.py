"""Verdicts on synthetic timings of known distributions (seeded, so deterministic).

A synthetic run: `k` processes, each with its own level (the true time times a lognormal
process effect of spread `between`) and `n` samples around that level (lognormal, `within`).
"""

import math

import numpy as np
import pytest
from scipy import stats as sps

from hhbench.stats import (MIN_PROCESSES, compare_processes, process_medians, processes_needed,
                           spread)


def run(rng, *, true_s=0.010, processes=5, samples=50, between=0.02, within=0.05):
    levels = true_s * np.exp(rng.normal(0, between, processes))
    return [lv * np.exp(rng.normal(0, within, samples)) for lv in levels]


def medians(rng, **kw):
    return process_medians(run(rng, **kw))


def test_process_medians_and_spread_of_known_values():
    assert process_medians([[1, 2, 30], [4, 5, 6, 7], []]).tolist() == [2.0, 5.5]
    m = [1.0, 2.0, 3.0]
    assert spread(m) == pytest.approx(1.0 / 2.0)  # sd 1, mean 2
    assert math.isnan(spread([1.0]))


def test_two_samples_never_give_a_verdict():
    # the old --quick: one process with two samples a side, NEW twice as slow
    v = compare_processes([0.010], [0.020])
    assert v.verdict == "inconclusive" and "too few processes" in v.why
    assert v.ratio == pytest.approx(2.0) and v.processes_needed >= MIN_PROCESSES
    v = compare_processes([0.010, 0.011], [0.020, 0.021])
    assert v.verdict == "inconclusive" and "at least 3 per side" in v.why


def test_identical_distributions_are_the_same():
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(20):
        v = compare_processes(medians(rng), medians(rng))
        assert v.verdict == "same", v.why
        covered += v.ci_low < 1 < v.ci_high
    assert covered >= 18  # a 99 % interval misses the true ratio 1 in about 1 % of runs


def test_a_clear_shift_is_slower_and_its_mirror_faster():
    rng = np.random.default_rng(2)
    for _ in range(20):
        old, new = medians(rng), medians(rng, true_s=0.0125)  # 1.25x
        v = compare_processes(old, new)
        assert v.verdict == "slower", v.why
        assert v.ci_low > 1 and v.ci_low < 1.25 < v.ci_high
        assert compare_processes(new, old).verdict == "faster"


def test_three_processes_detect_a_25_percent_slowdown_when_processes_agree():
    rng = np.random.default_rng(3)
    old, new = medians(rng, processes=3, between=0.01), medians(rng, processes=3, true_s=0.0125,
                                                                  between=0.01)
    assert compare_processes(old, new).verdict == "slower"


def test_noisy_processes_are_inconclusive_and_say_how_many_would_do():
    rng = np.random.default_rng(4)
    # processes that disagree by 15 % (a bimodal thread pool, a busy machine)
    old, new = medians(rng, processes=3, between=0.15), medians(rng, processes=3, between=0.15)
    v = compare_processes(old, new)
    assert v.verdict == "inconclusive" and "too wide" in v.why
    assert v.processes_needed is not None and v.processes_needed > 3
    assert f"about {v.processes_needed} processes" in v.why


def test_a_significant_change_that_straddles_the_threshold_is_inconclusive():
    # 10 processes a side, 0.5 % spread, NEW 10 % slower: surely slower, but is it beyond 10 %?
    rng = np.random.default_rng(5)
    old = medians(rng, processes=10, between=0.005, within=0.001)
    new = medians(rng, processes=10, true_s=0.011, between=0.005, within=0.001)
    v = compare_processes(old, new)
    assert v.ci_low > 1 and v.verdict == "inconclusive" and "straddles" in v.why


def test_interval_matches_welch_on_the_log_medians():
    old = np.array([0.010, 0.0102, 0.0099, 0.0101])
    new = np.array([0.0120, 0.0123, 0.0118])
    v = compare_processes(old, new, alpha=0.05)
    a, b = np.log(old), np.log(new)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    half = sps.t.ppf(0.975, df) * math.sqrt(va + vb)
    d = b.mean() - a.mean()
    assert v.ratio == pytest.approx(math.exp(d))
    assert (v.ci_low, v.ci_high) == pytest.approx((math.exp(d - half), math.exp(d + half)))
    assert v.verdict == "slower"


def test_false_alarm_rate_of_identical_runs_stays_below_alpha():
    # 400 A/A comparisons of 3 processes with a noisy 5 % spread: at most a few slower
    rng = np.random.default_rng(6)
    verdicts = [compare_processes(medians(rng, processes=3, between=0.05),
                                  medians(rng, processes=3, between=0.05)).verdict
                for _ in range(400)]
    assert verdicts.count("slower") <= 4  # alpha/2 = 0.5 % one-sided, times 400 = 2 expected
    assert verdicts.count("faster") <= 4


def test_processes_needed_shrinks_with_spread_and_grows_near_the_threshold():
    alpha = 0.01
    small, large = processes_needed(0.01, 0.05, alpha), processes_needed(0.05, 0.05, alpha)
    assert MIN_PROCESSES <= small < large
    n = large  # the interval really is narrow enough at n, and not at n - 1 (if n > 3)
    assert sps.t.ppf(1 - alpha / 2, 2 * n - 2) * 0.05 * math.sqrt(2 / n) < 0.05
    assert sps.t.ppf(1 - alpha / 2, 2 * n - 4) * 0.05 * math.sqrt(2 / (n - 1)) >= 0.05
    assert processes_needed(0.05, 0.0, alpha) > 1000
    assert processes_needed(float("nan"), 0.05, alpha) is None


def test_bad_input():
    with pytest.raises(ValueError):
        compare_processes([], [0.01])
    with pytest.raises(ValueError):
        compare_processes([0.01, 0.0, 0.01], [0.01, 0.01, 0.01])
