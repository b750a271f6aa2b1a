"""Tests of hhbench.metrics on hand-made traces and spike trains with known answers."""

import math
import warnings

import numpy as np
import pytest

from hhbench import metrics
from hhbench.errors import HHBenchError

FS_KHZ = 20.0          # dt = 0.05 ms: 20 samples per ms
REST_MV = -65.0
BUMP_MV = 10.0         # plateau of a hand-made spike
PEAK_MV = 30.0         # its single highest sample


def spiky_trace(n_samples, peaks, width=12):
    """Rest at -65 mV with a square bump `width` samples wide (10 mV, 30 mV at the peak)
    centred on each index in `peaks`."""
    v = np.full(n_samples, REST_MV)
    for p in peaks:
        start = p - width // 2
        v[start:start + width] = BUMP_MV
        v[p] = PEAK_MV
    return v


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# --------------------------------------------------------------------------- detect_spikes


@pytest.mark.parametrize("width, expected", [(12, 1), (10, 1), (9, 0), (5, 0)])
def test_a_spike_must_be_at_least_10_samples_above_0_mv(width, expected):
    v = spiky_trace(400, [200], width=width)
    assert metrics.spike_count(v) == expected


def test_spike_train_has_peak_index_time_and_amplitude():
    v = spiky_trace(1000, [100, 500])
    train = metrics.detect_spikes(v, fs_khz=FS_KHZ, t0_ms=5.0)
    assert isinstance(train, metrics.SpikeTrain)
    np.testing.assert_array_equal(train.index, [100, 500])
    np.testing.assert_allclose(train.times_ms, [5.0 + 100 / 20, 5.0 + 500 / 20])   # 10, 30 ms
    np.testing.assert_array_equal(train.amplitudes_mv, [PEAK_MV, PEAK_MV])
    assert len(train) == 2


def test_threshold_is_strictly_above_height():
    v = np.full(100, REST_MV)
    v[40:60] = 0.0                       # 20 samples exactly at 0 mV: not above it
    assert metrics.spike_count(v) == 0
    assert metrics.spike_count(v, height_mv=-1.0) == 1


def test_nan_trace_has_no_spikes_and_nan_splits_a_bump(no_warnings):
    assert metrics.spike_count(np.full(500, np.nan)) == 0
    v = spiky_trace(400, [200], width=12)
    v[200] = np.nan                      # leaves runs of 6 and 5 samples above 0 mV
    assert metrics.spike_count(v) == 0


def test_bump_cut_by_the_trace_edge_counts_if_wide_enough():
    v = np.full(100, REST_MV)
    v[:12] = BUMP_MV
    v[3] = PEAK_MV
    np.testing.assert_array_equal(metrics.detect_spikes(v).index, [3])


def test_batch_gives_one_result_per_row():
    v = np.stack([spiky_trace(600, []), spiky_trace(600, [100]), spiky_trace(600, [100, 300, 500])])
    trains = metrics.detect_spikes(v)
    assert isinstance(trains, list) and len(trains) == 3
    counts = metrics.spike_count(v)
    np.testing.assert_array_equal(counts, [0, 1, 3])
    assert counts.dtype.kind == "i"
    amps = metrics.spike_amplitudes(v)
    assert [a.tolist() for a in amps] == [[], [PEAK_MV], [PEAK_MV] * 3]


def test_first_spike_latency_from_onset():
    v = np.stack([spiky_trace(1000, [400, 800]), spiky_trace(1000, [])])
    # first peak at sample 400 = 20 ms; onset 17.8 ms
    np.testing.assert_allclose(metrics.first_spike_latency_ms(v[0], onset_ms=17.8), 2.2)
    np.testing.assert_allclose(metrics.first_spike_latency_ms(v[0], onset_ms=17.8, t0_ms=5.0), 7.2)
    lat = metrics.first_spike_latency_ms(v, onset_ms=17.8)
    assert lat[0] == pytest.approx(2.2) and np.isnan(lat[1])


@pytest.mark.parametrize("bad", [np.zeros((2, 2, 5)), 3.0])
def test_detect_spikes_rejects_non_trace_arrays(bad):
    with pytest.raises(HHBenchError, match="1-D"):
        metrics.detect_spikes(bad)


def test_detect_spikes_on_a_hodgkin_huxley_trace():
    from hhbench import stimuli
    from hhbench.backends import get_backend
    v = get_backend("numpy").run(stimuli.step(20.0)).v_mv
    upward_crossings = int(np.sum((v[:-1] <= 0.0) & (v[1:] > 0.0)))
    assert upward_crossings > 0
    assert metrics.spike_count(v) == upward_crossings
    amps = metrics.spike_amplitudes(v)
    assert np.all((amps > 20.0) & (amps < 60.0))


# --------------------------------------------------------------------------- spike rules


def test_the_rules_are_named_and_explained():
    assert list(metrics.SPIKE_RULES) == ["run-above-0mV", "lab-find-peaks"]
    assert metrics.DEFAULT_SPIKE_RULE == "run-above-0mV"
    for name, rule in metrics.SPIKE_RULES.items():
        assert rule.name == name and len(rule.definition) > 40 and len(rule.reason) > 40
    with pytest.raises(HHBenchError, match="valid rules: run-above-0mV, lab-find-peaks"):
        metrics.count_spikes(np.zeros(50), "threshold")


def test_a_hump_wide_at_half_prominence_but_brief_above_0_mv():
    """-65 mV + a Gaussian of 67 mV and σ = 20/√2 samples: above 0 mV only while
    e^(-x²/400) > 65/67, 7 samples (|x| ≤ 3); 10 or more samples wide at half prominence
    (33 samples: e^(-x²/400) ≥ 1/2 for |x| ≤ 16). A spike for the lab's find_peaks only."""
    x = np.arange(400) - 200.0
    v = REST_MV + 67.0 * np.exp(-x * x / 400.0)
    assert int(np.sum(v > 0)) == 7
    assert metrics.count_spikes(v, "run-above-0mV") == 0
    train = metrics.find_spikes(v, "lab-find-peaks")
    assert train.index.tolist() == [200] and train.amplitudes_mv.tolist() == [2.0]


def test_a_run_cut_by_the_start_of_the_trace():
    """V falls from +30 mV through 0 mV at sample 15: a run of 15 samples, counted by the
    run rule (its peak at sample 0); find_peaks finds no local maximum at an edge."""
    v = 30.0 - 2.0 * np.arange(300.0)
    v[16:] = REST_MV
    assert metrics.find_spikes(v, "run-above-0mV").index.tolist() == [0]
    assert metrics.count_spikes(v, "lab-find-peaks") == 0


def test_both_rules_agree_on_square_spikes_away_from_the_edges():
    """A 12-sample square bump is 12 samples wide at 0 mV and at half prominence; find_peaks
    puts the peak of a flat top in its middle, the run rule on its first sample: here the
    single 30 mV sample is the top of each."""
    v = np.stack([spiky_trace(1000, [100, 500, 900]), spiky_trace(1000, [])])
    for rule in metrics.SPIKE_RULES:
        assert metrics.count_spikes(v, rule).tolist() == [3, 0]
        assert metrics.find_spikes(v[0], rule).index.tolist() == [100, 500, 900]
    narrow = spiky_trace(400, [200], width=9)
    assert [metrics.count_spikes(narrow, r) for r in metrics.SPIKE_RULES] == [0, 0]


def test_find_peaks_rule_on_a_trace_that_diverged(no_warnings):
    """A NaN tail ends the search (no warning, no peak at the last finite sample), and NaN
    inside a bump splits it in both rules."""
    v = spiky_trace(1000, [100, 500])
    v[700:] = np.nan
    assert metrics.find_spikes(v, "lab-find-peaks").index.tolist() == [100, 500]
    v[500] = np.nan
    assert metrics.find_spikes(v, "lab-find-peaks").index.tolist() == [100]
    assert metrics.count_spikes(np.full(50, np.nan), "lab-find-peaks") == 0


def test_results_say_which_rule_counted():
    x = np.arange(400) - 200.0
    hump = REST_MV + 67.0 * np.exp(-x * x / 400.0)
    rest = np.full(400, REST_MV)
    default = metrics.summarise(metrics.compare_traces(rest, hump))
    lab = metrics.summarise(metrics.compare_traces(rest, hump, rule="lab-find-peaks"))
    assert default["spike_rule"] == "run-above-0mV" and default["spike_count_abs_error_mean"] == 0
    assert lab["spike_rule"] == "lab-find-peaks" and lab["spike_count_abs_error_mean"] == 1
    custom = metrics.compare_traces(rest, hump, height_mv=-1.0)
    assert custom["spike_rule"] == "run-above-0mV(height_mv=-1, min_width_samples=10)"


# --------------------------------------------------------------------------- coincidence factor

TRAIN_MS = np.array([10.0, 30.0, 50.0, 70.0, 90.0])


def test_gamma_of_identical_trains_is_one():
    assert metrics.coincidence_factor(TRAIN_MS, TRAIN_MS, duration_ms=100.0) == pytest.approx(1.0)


# N = 5 spikes in 100 ms: ν = 0.05/ms; Δ = 2 ms: 2νΔ = 0.2, chance coincidences 2νΔN = 1.
# All 5 coincide: Γ = (5 - 1) / (5 * 0.8) = 1.  None coincide: Γ = (0 - 1) / (5 * 0.8) = -0.25.
@pytest.mark.parametrize("shift_ms, expected", [(1.0, 1.0), (-1.5, 1.0), (3.0, -0.25)])
def test_gamma_of_shifted_train(shift_ms, expected):
    gamma = metrics.coincidence_factor(TRAIN_MS, TRAIN_MS + shift_ms, window_ms=2.0,
                                       duration_ms=100.0)
    assert gamma == pytest.approx(expected)


def test_gamma_chance_correction_on_a_small_example():
    # ref 3 spikes, cmp 2 spikes, one coincidence (10 ↔ 11 ms); 100 ms, Δ = 2 ms.
    # ν = 0.02/ms, 2νΔ = 0.08, chance = 0.08 * 3 = 0.24, Γ = 0.76 / (2.5 * 0.92) = 0.76 / 2.3
    gamma = metrics.coincidence_factor([10.0, 40.0, 70.0], [55.0, 11.0], duration_ms=100.0)
    assert gamma == pytest.approx(0.76 / 2.3)


def test_each_compared_spike_coincides_at_most_once():
    # two ref spikes near one cmp spike: N_coinc = 1. ν = 0.01, 2νΔ = 0.04, chance 0.08
    gamma = metrics.coincidence_factor([10.0, 11.0], [10.5], duration_ms=100.0)
    assert gamma == pytest.approx((1 - 0.08) / (1.5 * 0.96))


def test_matching_finds_the_largest_one_to_one_pairing():
    # 12.5 is nearest to 11.8, but pairing 10↔11.8 and 12.5↔14.0 matches both
    gamma = metrics.coincidence_factor([10.0, 12.5], [11.8, 14.0], duration_ms=100.0)
    assert gamma == pytest.approx(1.0)


def test_gamma_accepts_spike_trains():
    v = spiky_trace(2000, [200, 800, 1400])
    train = metrics.detect_spikes(v)
    assert metrics.coincidence_factor(train, train, duration_ms=100.0) == pytest.approx(1.0)


@pytest.mark.parametrize("ref, cmp_, expected", [
    ([], [], 1.0),
    ([10.0], [], 0.0),
    ([], [10.0, 20.0], 0.0),
])
def test_gamma_with_empty_trains(ref, cmp_, expected):
    assert metrics.coincidence_factor(ref, cmp_, duration_ms=100.0) == expected


def test_gamma_is_nan_when_chance_coincidence_is_certain():
    # ν = 3 / 10 ms, 2νΔ = 1.2 > 1
    assert np.isnan(metrics.coincidence_factor([1.0, 5.0], [2.0, 4.0, 8.0], duration_ms=10.0))


def test_gamma_of_independent_poisson_trains_is_near_zero():
    duration, rate = 2000.0, 0.02
    gammas = []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        a, b = (rng.uniform(0.0, duration, rng.poisson(rate * duration)) for _ in range(2))
        gammas.append(metrics.coincidence_factor(a, b, duration_ms=duration))
    assert np.mean(np.abs(gammas)) < 0.15
    assert abs(np.mean(gammas)) < 0.1


def test_coincidence_factors_per_pair():
    gammas = metrics.coincidence_factors([TRAIN_MS, TRAIN_MS, []], [TRAIN_MS, TRAIN_MS + 3.0, []],
                                         duration_ms=100.0)
    np.testing.assert_allclose(gammas, [1.0, -0.25, 1.0])
    with pytest.raises(HHBenchError, match="as many"):
        metrics.coincidence_factors([TRAIN_MS], [], duration_ms=100.0)


@pytest.mark.parametrize("kw", [dict(window_ms=0.0, duration_ms=100.0),
                                dict(window_ms=2.0, duration_ms=-1.0)])
def test_gamma_rejects_bad_window_or_duration(kw):
    with pytest.raises(HHBenchError, match="positive"):
        metrics.coincidence_factor(TRAIN_MS, TRAIN_MS, **kw)


# --------------------------------------------------------------------------- trace errors


def test_rmse_of_constant_offset_and_mae_of_alternating_difference():
    a = np.linspace(-70.0, 30.0, 200)
    assert metrics.rmse_mv(a, a + 3.0) == pytest.approx(3.0)
    alternating = np.tile([2.0, -2.0], 100)
    assert metrics.mae_mv(a, a + alternating) == pytest.approx(2.0)


def test_errors_distinguish_rmse_mae_and_max():
    a = np.zeros(4)
    b = np.array([0.0, 0.0, 0.0, 4.0])
    assert metrics.rmse_mv(a, b) == pytest.approx(2.0)       # sqrt(16 / 4)
    assert metrics.mae_mv(a, b) == pytest.approx(1.0)        # 4 / 4
    assert metrics.max_abs_diff_mv(a, b) == pytest.approx(4.0)


def test_errors_are_per_trace_and_nan_for_non_finite_traces(no_warnings):
    a = np.zeros((4, 6))
    b = np.full((4, 6), 1.0)
    a[1, 2] = np.nan
    b[2, 5] = np.inf
    a[3, 0] = b[3, 0] = np.inf            # inf - inf
    for fn in (metrics.rmse_mv, metrics.mae_mv):
        result = fn(a, b)
        assert result[0] == pytest.approx(1.0)
        assert np.all(np.isnan(result[1:]))
    assert np.isnan(metrics.max_abs_diff_mv(a, b))
    np.testing.assert_array_equal(metrics.diverged(a), [False, True, False, True])
    np.testing.assert_array_equal(metrics.diverged(b), [False, False, True, True])
    assert metrics.diverged(a[1]) is True and metrics.diverged(a[0]) is False


def test_shape_mismatch_is_a_one_line_error():
    with pytest.raises(HHBenchError, match=r"same shape; got \(3, 10\) and \(3, 9\)") as info:
        metrics.rmse_mv(np.zeros((3, 10)), np.zeros((3, 9)))
    assert "\n" not in str(info.value)
    with pytest.raises(HHBenchError, match="same shape"):
        metrics.compare_traces(np.zeros((2, 10)), np.zeros((3, 10)))


# --------------------------------------------------------------------------- compare / summarise

N = 2000                                   # 100 ms
REF_PEAKS = [200, 800, 1400]


@pytest.fixture
def comparison():
    ref = np.stack([spiky_trace(N, REF_PEAKS)] * 4)
    cmp_ = np.stack([
        spiky_trace(N, REF_PEAKS),                         # identical
        spiky_trace(N, [p + 20 for p in REF_PEAKS]),       # 1 ms late
        spiky_trace(N, REF_PEAKS + [1800]),                # one extra spike
        spiky_trace(N, REF_PEAKS),                         # diverges at 50 ms
    ])
    cmp_[3, 1000:] = np.nan
    return ref, cmp_


def test_compare_traces(comparison, no_warnings):
    out = metrics.compare_traces(*comparison, fs_khz=FS_KHZ)
    np.testing.assert_array_equal(out["n_spikes_ref"], [3, 3, 3, 3])
    np.testing.assert_array_equal(out["n_spikes_cmp"], [3, 3, 4, 2])
    # the diverged row (3) has no defined comparison figures
    np.testing.assert_array_equal(out["spike_count_error"], [0, 0, 1, np.nan])
    # each non-overlapping bump differs from rest by 75 mV on 11 samples and 95 mV on one
    per_bump_sq, per_bump_abs = 11 * 75.0**2 + 95.0**2, 11 * 75.0 + 95.0
    rmse = [0.0, math.sqrt(6 * per_bump_sq / N), math.sqrt(per_bump_sq / N), np.nan]
    np.testing.assert_allclose(out["rmse_mv"], rmse)
    np.testing.assert_allclose(out["mae_mv"], [0.0, 6 * per_bump_abs / N, per_bump_abs / N, np.nan])
    # row 2: ν = 4/100, 2νΔ = 0.16, chance = 0.48: Γ = 2.52 / (3.5 * 0.84) = 6/7
    np.testing.assert_allclose(out["gamma"], [1.0, 1.0, 6 / 7, np.nan])
    np.testing.assert_allclose(out["first_spike_shift_ms"], [0.0, 1.0, 0.0, np.nan], atol=1e-12)
    np.testing.assert_array_equal(out["diverged_ref"], [False] * 4)
    np.testing.assert_array_equal(out["diverged_cmp"], [False, False, False, True])


def test_first_spike_shift_is_nan_without_spikes():
    ref = spiky_trace(N, REF_PEAKS)
    out = metrics.compare_traces(ref, np.full(N, REST_MV))
    assert out["n_spikes_cmp"].tolist() == [0]
    assert np.isnan(out["first_spike_shift_ms"][0])
    assert out["gamma"].tolist() == [0.0]


def test_summarise(comparison, no_warnings):
    s = metrics.summarise(metrics.compare_traces(*comparison))
    per_bump_sq = 11 * 75.0**2 + 95.0**2
    rmse_1, rmse_2 = math.sqrt(6 * per_bump_sq / N), math.sqrt(per_bump_sq / N)
    expected = {
        "n_traces": 4,
        "frac_diverged": 0.25,
        "rmse_mv_median": rmse_2,                 # of 0, rmse_2, rmse_1 (row 3 is NaN)
        "rmse_mv_mean": (rmse_1 + rmse_2) / 3,
        "mae_mv_median": 920.0 / N,               # one bump: (11*75 + 95) / 2000
        "mae_mv_mean": 7 * 920.0 / N / 3,         # of 0, one bump, six bumps
        "spike_count_abs_error_mean": 1 / 3,      # |0|, |0|, |1| (row 3 diverged)
        "frac_spike_count_exact": 2 / 3,
        "frac_spike_count_within_1": 1.0,
        "gamma_median": 1.0,                      # of 1, 1, 6/7
        "spike_rule": "run-above-0mV",
    }
    assert s.keys() == expected.keys()
    for key, value in expected.items():
        assert s[key] == (value if isinstance(value, str) else pytest.approx(value)), key


def test_summarise_all_nan_is_nan_without_warning(no_warnings):
    per_trace = {"rmse_mv": np.array([np.nan, np.nan]), "mae_mv": np.array([np.nan, np.nan]),
                 "spike_count_error": np.array([0, 2]), "gamma": np.array([np.nan, np.nan]),
                 "diverged_ref": np.array([True, False]), "diverged_cmp": np.array([True, True])}
    s = metrics.summarise(per_trace)
    assert np.isnan(s["rmse_mv_median"]) and np.isnan(s["gamma_median"])
    assert s["frac_diverged"] == 1.0
    assert s["frac_spike_count_within_1"] == 0.5


def test_summarise_rejects_incomplete_input():
    with pytest.raises(HHBenchError, match="lack"):
        metrics.summarise({"rmse_mv": np.zeros(2)})


def test_matched_reference_spikes_marks_which_reference_spikes_are_reproduced():
    # ref spikes at 10, 20, 30, 40 ms; cmp reproduces the 1st (1 ms late), the 3rd (2 ms
    # early: on the window's edge) and has one spike far from any reference spike
    matched = metrics.matched_reference_spikes([10.0, 20.0, 30.0, 40.0], [11.0, 28.0, 55.0],
                                               window_ms=2.0)
    assert matched.tolist() == [True, False, True, False]
    # one compared spike serves one reference spike only
    assert metrics.matched_reference_spikes([10.0, 11.0], [10.5]).tolist() == [True, False]
