"""Timing logic with a fake clock (exact), and one real measurement against bounds."""

import time

import numpy as np
import pytest

from hhbench.errors import HHBenchError
from hhbench.timing import Timing, TimingSettings, calibrate, measure, throughput


class FakeClock:
    """Each call of the timed function advances time by the next duration in `costs_ns`."""

    def __init__(self, costs_ns):
        self.now, self.costs = 0, list(costs_ns)
        self.calls = 0

    def __call__(self):
        return self.now

    def work(self):
        self.now += self.costs[self.calls]
        self.calls += 1
        return self.calls


def test_cold_call_is_kept_apart_from_warm_samples():
    clock = FakeClock([900_000_000] + [5_000_000] * 100)  # 0.9 s first call, then 5 ms
    timing, last = measure(clock.work, TimingSettings(warmup_calls=2, min_repeats=3,
                                                      min_time_s=0.0), clock=clock)
    assert timing.cold_s == pytest.approx(0.9)
    assert timing.samples_s == (0.005, 0.005, 0.005)
    assert clock.calls == 1 + 2 + 3 and last == 6


def test_warm_up_lasts_its_minimum_time():
    """Warm-up calls go on until `warmup_min_s` has passed (and at least `warmup_calls`):
    a backend whose first calls are slow (here 8 ms, then 5 ms) is timed once settled."""
    settings = TimingSettings(warmup_calls=1, warmup_min_s=0.05, min_repeats=4, min_time_s=0.0)
    clock = FakeClock([100_000_000] + [8_000_000] * 6 + [5_000_000] * 100)
    timing, _ = measure(clock.work, settings, clock=clock)
    # 7 warm-up calls reach 0.05 s (6 × 8 ms = 48 ms, then one of 5 ms)
    assert clock.calls == 1 + 7 + 4 and timing.samples_s == (0.005,) * 4
    clock = FakeClock([100_000_000] + [60_000_000] * 100)  # one call already lasts 0.06 s
    measure(clock.work, settings, clock=clock)
    assert clock.calls == 1 + 1 + 4
    clock = FakeClock([100_000_000] + [8_000_000] * 100)  # without it: one warm-up call
    timing, _ = measure(clock.work, TimingSettings(warmup_calls=1, min_repeats=4,
                                                   min_time_s=0.0), clock=clock)
    assert clock.calls == 1 + 1 + 4
    for bad in (-1.0, float("inf"), float("nan")):  # inf would warm up for ever
        with pytest.raises(HHBenchError, match="warmup_min_s"):
            TimingSettings(warmup_min_s=bad)


def test_warm_up_is_skipped_after_a_long_first_call_only():
    settings = TimingSettings(warmup_calls=2, min_repeats=3, min_time_s=0.0,
                              skip_warmup_after_s=1.0)
    clock = FakeClock([1_500_000_000] + [5_000_000] * 100)  # first call 1.5 s
    measure(clock.work, settings, clock=clock)
    assert clock.calls == 1 + 0 + 3
    clock = FakeClock([900_000_000] + [5_000_000] * 100)  # 0.9 s: warm-up as usual
    measure(clock.work, settings, clock=clock)
    assert clock.calls == 1 + 2 + 3


def test_one_timed_call_suffices_after_a_long_first_call_when_asked():
    settings = TimingSettings(warmup_calls=2, min_repeats=3, min_time_s=0.0,
                              skip_warmup_after_s=1.0, long_call_repeats=1)
    clock = FakeClock([1_500_000_000] * 100)  # every call 1.5 s
    timing, _ = measure(clock.work, settings, clock=clock)
    assert clock.calls == 1 + 0 + 1 and timing.samples_s == (1.5,)
    clock = FakeClock([900_000_000] + [5_000_000] * 100)  # short first call: as usual
    measure(clock.work, settings, clock=clock)
    assert clock.calls == 1 + 2 + 3
    with pytest.raises(HHBenchError):
        TimingSettings(min_repeats=2, long_call_repeats=3)


def test_repeats_until_min_time_and_count():
    clock = FakeClock([1] + [10_000_000] * 1000)  # 10 ms per call
    timing, _ = measure(clock.work, TimingSettings(warmup_calls=0, min_repeats=3,
                                                   min_time_s=0.25), clock=clock)
    assert len(timing.samples_s) == 25  # 25 x 10 ms reaches 0.25 s
    clock = FakeClock([1] * 100)
    timing, _ = measure(clock.work, TimingSettings(warmup_calls=0, min_repeats=7, min_time_s=0.0),
                        clock=clock)
    assert len(timing.samples_s) == 7


def test_max_repeats_caps_the_count():
    clock = FakeClock([1] * 100)
    timing, _ = measure(clock.work, TimingSettings(warmup_calls=0, min_repeats=1,
                                                   min_time_s=10.0, max_repeats=4), clock=clock)
    assert len(timing.samples_s) == 4


def test_statistics_of_known_samples():
    t = Timing(cold_s=None, samples_s=(1.0, 2.0, 3.0, 4.0, 100.0))
    assert t.median_s == 3.0 and t.min_s == 1.0
    assert t.iqr_s == pytest.approx(4.0 - 2.0)
    assert t.percentile_s(90) == pytest.approx(4.0 + 0.6 * 96.0)
    s = t.summary()
    assert s["repeats"] == 5 and s["p99_s"] == pytest.approx(4.0 + 0.96 * 96.0)


def test_throughput_definitions():
    r = throughput(0.5, batch=10, n_samples=2000, dt_ms=0.05)
    assert r["traces_per_s"] == 20.0
    assert r["neuron_steps_per_s"] == 40_000.0
    # 10 neurons x 100 ms simulated in 500 ms of wall time
    assert r["real_time_factor"] == pytest.approx(2.0)


def test_real_clock_on_a_busy_loop_of_known_duration():
    def busy(seconds=0.002):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
    timing, _ = measure(busy, TimingSettings(warmup_calls=0, min_repeats=5, min_time_s=0.0))
    assert len(timing.samples_s) == 5
    # each call lasts at least its 2 ms; the bound above is loose (shared machines)
    assert min(timing.samples_s) >= 0.002 and timing.median_s < 0.5


def test_calibration_kernels_are_timed():
    c = calibrate()
    assert set(c) == {"matmul_f32_512_s", "exp_f64_1m_s"}
    assert all(0 < v < 10 for v in c.values())


def test_bad_settings():
    with pytest.raises(HHBenchError):
        TimingSettings(min_repeats=0)
    with pytest.raises(HHBenchError):
        TimingSettings(min_time_s=-1)
    with pytest.raises(ValueError):
        Timing(cold_s=None, samples_s=())

