"""Scaling sweeps: sizes, the fitted exponent, the budget, files and the CLI (tiny sizes)."""

import json

import numpy as np
import pytest

from hhbench.errors import HHBenchError
from hhbench.scaling import (ScalingConfig, ScalingPoint, ScalingResults, _sweep,
                             growth_exponent, log_spaced, run_scaling, write_scaling)
from hhbench.timing import TimingSettings

QUICK = TimingSettings(warmup_calls=0, min_repeats=1, min_time_s=0.0)


def test_log_spaced_sizes():
    assert log_spaced(4096) == (1, 4, 16, 64, 256, 1024, 4096)
    assert log_spaced(20) == (1, 4, 16, 20)
    assert log_spaced(1) == (1,)


def test_growth_exponent_recovers_a_power_law():
    sizes = np.array([1, 4, 16, 64, 256])
    assert growth_exponent(sizes, 3e-3 * sizes ** 0.75) == pytest.approx(0.75)
    # fixed cost plus linear: the slope lies between 0 and 1
    p = growth_exponent(sizes, 1.0 + 0.01 * sizes)
    assert 0 < p < 1
    assert growth_exponent([5], [1.0]) is None


def test_config_validation():
    with pytest.raises(HHBenchError):
        ScalingConfig(max_batch=0)
    with pytest.raises(HHBenchError):
        ScalingConfig(budget_s=0)
    with pytest.raises(HHBenchError):
        ScalingConfig(backends=("nope",))


class _Fake:
    """A backend whose call 'takes' batch x samples x 1 µs on a fake clock."""
    name = "fake"
    device = "cpu"

    def __init__(self):
        self.now = 0.0

    def run(self, stim):
        self.now += stim.batch_size * stim.n_samples * 1e-6
        return stim

    def clock(self):
        return self.now


def test_budget_stops_a_slow_sweep():
    fake = _Fake()
    config = ScalingConfig(backends=("numpy",), max_batch=4096, n_samples=1000, budget_s=0.5,
                           timing=QUICK)
    points, why = _sweep(fake, config, "batch", config.batches, clock=fake.clock)
    # a call at batch b spends b ms of the fake clock, two calls per size (cold + 1 timed):
    # after 64 the sweep has spent 2·85 ms; 256 would take 2·256 ms more, past 0.5 s: stop
    # (predicted from the point's own wall time, so the budget is not overrun)
    assert [p.batch for p in points] == [1, 4, 16, 64]
    assert why == "after 64 (budget 0.5 s)"
    assert fake.now <= config.budget_s


class _SlowHostFake(_Fake):
    """A GPU-like backend: its round trip (run) costs 100x its device-only call."""
    device = "gpu:0"

    def device_call(self, stim):
        def call():
            self.now += stim.batch_size * stim.n_samples * 1e-8
        return call

    def device_runtime(self):
        class _R:
            def synchronize(self, device, out):
                pass
        return _R()


def test_the_next_point_is_predicted_from_its_wall_time_not_the_device_only_time():
    """Catches a sweep that predicts its next point from the device-only time while the
    point really costs its round trips (and stimulus): the budget was overrun ~100x."""
    fake = _SlowHostFake()
    config = ScalingConfig(backends=("numpy",), max_batch=4096, n_samples=1000, budget_s=0.5,
                           timing=QUICK)
    points, why = _sweep(fake, config, "batch", config.batches, clock=fake.clock)
    assert why is not None and fake.now <= config.budget_s
    assert [p.batch for p in points] == [1, 4, 16, 64]


def test_next_point_s_counts_a_compile_as_one_warm_call():
    from hhbench.scaling import next_point_s
    # 10 s wall of which 9.9 s the first (compiling) call; warm calls 0.01 s
    assert next_point_s(10.0, 9.9, 0.01, 4) == pytest.approx((0.1 + 0.01) * 4)
    assert next_point_s(1.0, 0.0, 0.1, 2) == pytest.approx(2.2)


def test_tiny_run_writes_tables_and_figure(tmp_path):
    config = ScalingConfig(backends=("numpy", "numba"), max_batch=4, n_samples=100,
                           lengths=(100, 200), budget_s=60, timing=QUICK)
    results = run_scaling(config)
    sizes = {(p.backend, p.axis): [] for p in results.points}
    for p in results.points:
        sizes[(p.backend, p.axis)].append(p.size)
        assert p.call_s > 0 and p.per_trace_s == pytest.approx(p.call_s / p.batch)
    assert sizes[("numba", "batch")] == [1, 4] and sizes[("numpy", "length")] == [100, 200]
    exps = results.exponents()
    assert set(exps) == {(b, a) for b in ("numpy", "numba") for a in ("batch", "length")}
    paths = write_scaling(results, tmp_path / "out")
    assert sorted(p.name for p in paths) == ["scaling.csv", "scaling.json", "scaling.md",
                                             "scaling.png"]
    rows = (tmp_path / "out" / "scaling.csv").read_text().splitlines()
    assert rows[0] == ("backend,device,axis,batch,n_samples,call_ms,per_trace_ms,spread_pct,"
                       "round_trip_ms")
    assert len(rows) == 9
    data = json.loads((tmp_path / "out" / "scaling.json").read_text())
    assert len(data["points"]) == 8 and len(data["exponents"]) == 4
    assert (tmp_path / "out" / "scaling.png").read_bytes()[:4] == b"\x89PNG"


def test_markdown_lists_exponents():
    config = ScalingConfig(backends=("numpy",), timing=QUICK)
    pts = tuple(ScalingPoint(backend="numpy", axis="batch", batch=b, n_samples=10,
                             call_s=1e-3 * b) for b in (1, 4, 16))
    text = ScalingResults(config=config, points=pts, stopped={("numpy", "length"): "x"}).to_markdown()
    assert "| numpy | 1.00 | - | length: x |" in text


def test_scaling_cli(tmp_path, capsys):
    from hhbench.cli import main

    assert main(["scaling", "-o", str(tmp_path / "s"), "--backends", "numba", "--max-batch", "2",
                 "--lengths", "600,1200", "--budget-s", "30", "--no-progress"]) == 0
    assert (tmp_path / "s" / "scaling.png").exists()
    assert "growth exponent" in capsys.readouterr().out
    assert main(["scaling", "-o", str(tmp_path / "no" / "such" / "dir")]) == 2
    assert main(["scaling", "--max-batch", "0", "-o", str(tmp_path / "t")]) == 2


def test_break_even_finds_where_the_gpu_overtakes_the_cpu():
    from hhbench.scaling import ScalingPoint, ScalingResults
    # per trace: the CPU flat at 10 µs; the GPU a fixed 1 ms per call plus 0.1 µs a trace,
    # cheaper per trace from 1 ms / (10 - 0.1) µs ≈ 101 traces on: first at batch 256
    batches = (1, 4, 16, 64, 256, 1024)
    points = [ScalingPoint(backend="sim", axis="batch", batch=b, n_samples=100,
                           call_s=10e-6 * b, device="cpu") for b in batches]
    points += [ScalingPoint(backend="sim", axis="batch", batch=b, n_samples=100,
                            call_s=1e-3 + 0.1e-6 * b, device="gpu:0") for b in batches]
    results = ScalingResults(config=ScalingConfig(backends=("numpy",)), points=tuple(points))
    (row,) = results.break_even()
    assert row["gpu"] == "sim@gpu:0" and row["cpu"] == "sim"
    assert row["overtakes_at_batch"] == 256
    assert row["ratio_at_largest"] == pytest.approx(10e-6 * 1024 / (1e-3 + 0.1e-6 * 1024))
    assert results.series() == ["sim", "sim@gpu:0"]
    assert "| sim@gpu:0 | sim | 256 |" in results.to_markdown()


def test_a_backend_asked_for_a_device_it_cannot_use_is_left_out_with_the_reason():
    config = ScalingConfig(backends=("numpy",), devices=("cpu", "gpu"), max_batch=1,
                           n_samples=50, lengths=(50,), budget_s=5, timing=QUICK)
    import hhbench.devices as devices
    if not devices.nvidia_driver_present():  # no GPU here: the request itself is refused
        with pytest.raises(HHBenchError, match="'gpu' requested but this machine has no"):
            run_scaling(config)
        return
    results = run_scaling(config)
    assert results.skipped == {"numpy@gpu": "numpy runs on the CPU only"}
    assert {p.device for p in results.points} == {"cpu"}


def test_a_backend_not_installed_is_left_out_and_the_sweep_goes_on(monkeypatch):
    from hhbench.backends import check_name
    cls = check_name("numba")
    monkeypatch.setattr(cls, "unavailable_reason", classmethod(lambda c: "needs a thing"))
    config = ScalingConfig(backends=("numba", "numpy"), devices=("cpu",), max_batch=1,
                           n_samples=50, lengths=(50,), budget_s=5, timing=QUICK)
    results = run_scaling(config)
    assert results.skipped == {"numba": "needs a thing"}
    assert {p.backend for p in results.points} == {"numpy"}


def test_an_exponent_through_a_noisy_point_is_marked_and_load_is_warned():
    config = ScalingConfig(backends=("numba",), timing=QUICK)
    # batch 4 timed while another job ran: 8 ms against 0.046 ms at batch 1, spread 60 %
    pts = tuple(ScalingPoint(backend="numba", axis="batch", batch=b, n_samples=10, call_s=c,
                             spread=s) for b, c, s in ((1, 4.6e-5, 0.02), (4, 8e-3, 0.6),
                                                       (16, 2e-4, 0.03)))
    loaded = {"state": {"logical_cores": 2, "load_average": [2.4, 2, 2]},
              "load_during": {"other_cores": 1.3, "logical_cores": 2, "steal_fraction": 0.0}}
    results = ScalingResults(config=config, points=pts, environment=loaded)
    text = results.to_markdown()
    assert f"| numba | {growth_exponent([1, 4, 16], [4.6e-5, 8e-3, 2e-4]):.2f}* |" in text
    assert "| numba | batch | 4 | 10 | 8 ms | 2 ms | 60 % |" in text
    warned = " ".join(results.warnings())
    assert "load average 2.40 on 2" in warned and "other work on 1.3 of 2 cores" in warned
    assert "1 exponent (marked *) is fitted" in warned
    quiet = ScalingResults(config=config, points=tuple(
        ScalingPoint(backend="numba", axis="batch", batch=b, n_samples=10, call_s=1e-4 * b,
                     spread=0.01) for b in (1, 4)))
    assert "*" not in quiet.to_markdown() and quiet.warnings() == []
