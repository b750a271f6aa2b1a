"""Counting (FLOPs from layers, HH operations) and the floor arithmetic."""

import math

import numpy as np
import pytest

from hhbench.errors import HHBenchError
from hhbench.environment import usable_cores
from hhbench.floor import (Ceilings, FloorLine, cnn_floor_s, floor_line, floor_report,
                           format_floor, hh_floor_s, hh_operations, measure_ceilings)
from hhbench.timing import TimingSettings

QUICK = TimingSettings(warmup_calls=0, min_repeats=1, min_time_s=0.0)
CEIL = Ceilings(matmul_f32_flops=2e11, matmul_f64_flops=1e11, exp_f64_per_s=5e8)


def test_hh_floor_takes_the_larger_bound():
    # 3 exps at 5e8/s = 6 ns; 2 + 10 + 8 = 20 flops at 1e11/s = 0.2 ns -> exp-bound
    t, bound = hh_floor_s({"exp": 3, "div": 2, "mul": 10, "add": 8}, CEIL)
    assert bound == "exp" and t == pytest.approx(6e-9)
    # 1 exp = 2 ns; 400 flops (an fma counts 2) = 4 ns -> flop-bound; a "flops" total and
    # comparisons in the count are not added again
    t, bound = hh_floor_s({"exp": 1, "fma": 100, "mul": 200, "flops": 999, "cmp": 7}, CEIL)
    assert bound == "flops" and t == pytest.approx(4e-9)
    with pytest.raises(HHBenchError):
        hh_floor_s({"mul": 1}, CEIL)


def test_cnn_floor_is_flops_over_the_matmul_rate():
    # the lab's network: 0.509 GFLOP at 208 GFLOP/s -> 2.45 ms
    rate = Ceilings(matmul_f32_flops=208e9, matmul_f64_flops=1e11, exp_f64_per_s=1e9)
    assert cnn_floor_s(508_559_360, rate) == pytest.approx(508_559_360 / 208e9)
    assert cnn_floor_s(1000, CEIL, dtype="float64") == pytest.approx(1e-8)


def test_ratio_and_validation():
    line = FloorLine(backend="x", unit="trace", batch=1, floor_s=2e-3, achieved_s=3e-3)
    assert line.ratio == pytest.approx(1.5) and line.as_dict()["ratio"] == pytest.approx(1.5)
    assert FloorLine(backend="x", unit="trace", batch=1).ratio is None
    with pytest.raises(HHBenchError):
        Ceilings(matmul_f32_flops=0, matmul_f64_flops=1, exp_f64_per_s=1)


def test_hh_counts_from_the_model_when_present():
    for backend in ("numpy", "numba", "exp-euler"):
        ops, note = hh_operations(backend)
        # every step evaluates the rates: at least two distinct exponentials, and arithmetic
        assert ops is not None and ops["exp"] >= 2 and ops["mul"] > 0, note
        t, _ = hh_floor_s(ops, CEIL)
        arith = sum(ops.get(k, 0) for k in ("div", "mul", "add", "neg"))
        assert t == pytest.approx(max(ops["exp"] / 5e8, arith / 1e11))


def test_adaptive_backends_have_no_fixed_count():
    for backend in ("odeint", "reference"):
        ops, note = hh_operations(backend)
        assert ops is None and "adaptive" in note


def test_ceilings_are_measured():
    c = measure_ceilings("/CPU:0", n_matmul=128, settings=QUICK)
    # any real machine: between 0.1 GFLOP/s and 1 PFLOP/s, between 1e6 and 1e12 exp/s
    for rate in (c.matmul_f32_flops, c.matmul_f64_flops):
        assert 1e8 < rate < 1e15
    assert 1e6 < c.exp_f64_per_s < 1e12
    # the exp ceiling is the whole machine's, like the matmul ceilings
    assert c.exp_threads == usable_cores() >= 1
    with pytest.raises(HHBenchError, match="exp_threads"):
        Ceilings(matmul_f32_flops=1, matmul_f64_flops=1, exp_f64_per_s=1, exp_threads=0)


def test_bad_floor_input():
    with pytest.raises(HHBenchError, match="batch"):
        floor_report(("numpy",), batch=0)
    with pytest.raises(HHBenchError):
        floor_report(("no-such-backend",))


# -- the CNN's FLOPs, counted by hand --------------------------------------------------

@pytest.fixture
def keras2():
    """tf_keras, for the tests that build models with it (skipped without TensorFlow)."""
    return pytest.importorskip("tf_keras")


@pytest.fixture
def lab_small_any_runtime():
    """The small lab model, for a test that runs the CNN through whichever runtime is
    here: TensorFlow, or JAX reading the files with h5py (the GPU machines)."""
    from conftest import LAB_SMALL

    from hhbench.cnn_modes import stacks_present
    if not any(stacks_present().values()):
        pytest.skip("no CNN runtime here: pip install 'hhbench[jax]' or 'hhbench[cnn]'")
    return LAB_SMALL


def _tiny_model(tf_keras):
    inp = tf_keras.Input(shape=(32, 1))
    x = tf_keras.layers.Reshape((32, 1, 1))(inp)
    x = tf_keras.layers.Conv2D(4, (5, 1), strides=(2, 1), padding="same", activation="tanh")(x)
    x = tf_keras.layers.Conv2DTranspose(3, (4, 1), strides=(2, 1), padding="same")(x)
    x = tf_keras.layers.Reshape((32, 3))(x)
    x = tf_keras.layers.Dense(2, use_bias=False)(x)
    return tf_keras.Model(inp, x)


def test_flops_of_a_tiny_model_by_hand(keras2):
    from hhbench.cnn.flops import count_flops

    counts = count_flops(_tiny_model(keras2))
    # conv: 16 outputs x 4 filters x (5 taps x 1 channel) MACs = 320 MACs = 640 FLOPs
    # transposed conv: 16 inputs x 4 channels x 4 taps x 3 filters = 768 MACs = 1536
    # dense: 32 positions x 3 inputs x 2 units = 192 MACs = 384
    assert [r["matmul_flops"] for r in counts["layers"]] == [640, 1536, 384]
    assert counts["matmul_flops"] == 2560
    assert counts["bias_adds"] == 16 * 4 + 32 * 3        # the dense layer has no bias
    assert counts["activations"] == 16 * 4               # tanh after the convolution


def test_flops_of_the_labs_architecture_by_formula(keras2):
    from hhbench.cnn.architecture import Architecture, build_model
    from hhbench.cnn.flops import count_flops

    a = Architecture()
    k, f, n, w = a.kernel, a.filters, a.n_layers, a.window
    # encoder layer i (1..n) writes w/2^i positions from c_in channels (1, then f)
    enc = sum(2 * k * (1 if i == 1 else f) * f * w // 2 ** i for i in range(1, n + 1))
    # decoder layer j (1..n) reads w/2^(n-j+1) positions of f (j = 1) or 2f channels and
    # writes f channels (1 for the last)
    dec = sum(2 * k * (f if j == 1 else 2 * f) * (1 if j == n else f) * w // 2 ** (n - j + 1)
              for j in range(1, n + 1))
    assert count_flops(build_model(a))["matmul_flops"] == enc + dec
    assert math.isclose(enc + dec, 0.509e9, rel_tol=2e-3)


def test_flops_of_the_shipped_model_from_its_config_without_keras():
    # the JAX runtime's count (its plan, read from Gmodel.json with h5py) against the
    # architecture's formula above: the two counters share no code
    pytest.importorskip("h5py")
    from hhbench.cnn.architecture import Architecture
    from hhbench.cnn.flops import plan_flops
    from hhbench.cnn.h5weights import read_lab_folder
    from hhbench.cnn.plan import build_plan
    from hhbench.model_location import locate_model

    a = Architecture()
    k, f, n, w = a.kernel, a.filters, a.n_layers, a.window
    enc = sum(2 * k * (1 if i == 1 else f) * f * w // 2 ** i for i in range(1, n + 1))
    dec = sum(2 * k * (f if j == 1 else 2 * f) * (1 if j == n else f) * w // 2 ** (n - j + 1)
              for j in range(1, n + 1))
    lab = read_lab_folder(locate_model().path)
    counts = plan_flops(build_plan(lab.config, lab.weights))
    assert counts["matmul_flops"] == enc + dec
    # tanh after each of the 9 encoder layers, sigmoid after 8 decoder layers
    assert counts["activations"] == (sum(f * w // 2 ** i for i in range(1, n + 1))
                                     + sum(f * w // 2 ** (n - j) for j in range(1, n)))


def test_cnn_floor_line_counts_the_windows(lab_small):
    from hhbench.cnn import files
    from hhbench.cnn.flops import count_flops

    per_window = count_flops(files.load_model(lab_small).keras_model)["matmul_flops"]
    line = floor_line("cnn", CEIL, batch=2, device="cpu", model=str(lab_small), settings=QUICK,
                      n_samples=5000)   # 5000 samples: windows at 0, 2048 and 2440
    assert line.operations["matmul_flops"] == 3 * per_window
    assert line.floor_s == pytest.approx(3 * per_window / CEIL.matmul_f32_flops)
    assert line.achieved_s > 0 and line.note.startswith("fast")
    text = format_floor({"ceilings": {"cpu": {**CEIL.__dict__}}, "batch": 2,
                         "backends": [line.as_dict()]})
    assert "| cnn | trace |" in text and f"{line.ratio:.2f}x" in text


def test_floor_cli(tmp_path, lab_small_any_runtime, capsys):
    lab_small = lab_small_any_runtime
    import json

    from hhbench.cli import main

    out = tmp_path / "floor.json"
    assert main(["floor", "--backends", "numpy,cnn", "--batch", "1", "--device", "cpu",
                 "--model", str(lab_small), "--repeats", "1", "--min-time", "0",
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [b["backend"] for b in report["backends"]] == ["numpy", "cnn"]
    assert list(report["ceilings"]) == ["cpu"]
    assert report["ceilings"]["cpu"]["matmul_f32_flops"] > 0
    assert np.isfinite(report["backends"][1]["ratio"])
    assert main(["floor", "--batch", "0"]) == 2
    assert "batch" in capsys.readouterr().err


def test_a_gpu_floor_uses_the_rates_of_the_backends_precision():
    # a made-up GPU: exp 1e12/s (float64) and 4e12/s (float32); fma 5e12/s and 1e14/s
    gpu = Ceilings(matmul_f32_flops=5e13, matmul_f64_flops=5e13, exp_f64_per_s=1e12,
                   exp_f32_per_s=4e12, fma_f64_per_s=5e12, fma_f32_per_s=1e14,
                   matmul_tf32_flops=4e14, matmul_bf16_flops=8e14, matmul_source="jax",
                   device="gpu:0")
    ops = {"exp": 4, "mul": 31, "add": 25, "div": 3, "neg": 3, "cmp": 7, "flops": 66}
    t64, bound64 = hh_floor_s(ops, gpu, "float64")
    # 62 operations (mul, add, div, neg) at 2 per fma: 6.2e-12 s > 4 exps: 4e-12 s
    assert (t64, bound64) == (pytest.approx(62 / (2 * 5e12)), "flops")
    t32, bound32 = hh_floor_s(ops, gpu, "float32")  # 3.1e-13 s of flops < 1e-12 s of exp
    assert (t32, bound32) == (pytest.approx(4 / 4e12), "exp")
    assert cnn_floor_s(1e9, gpu, "tf32") == pytest.approx(1e9 / 4e14)
    assert cnn_floor_s(1e9, gpu, "bfloat16") == pytest.approx(1e9 / 8e14)
    assert cnn_floor_s(1e9, gpu, "float32") == pytest.approx(1e9 / 5e13)
    # the CPU's ceilings have no fma rate: the flop bound is the float64 matmul rate
    assert hh_floor_s({"exp": 0, "mul": 10}, CEIL)[0] == pytest.approx(10 / CEIL.matmul_f64_flops)


def test_jax_measures_every_ceiling_of_a_device():
    pytest.importorskip("jax")
    from hhbench.jax_ceilings import elementwise_rate, measure_device_ceilings
    rates = measure_device_ceilings("cpu")
    assert set(rates) == {"matmul_f32_flops", "matmul_tf32_flops", "matmul_bf16_flops",
                          "matmul_f64_flops", "exp_f64_per_s", "exp_f32_per_s",
                          "fma_f64_per_s", "fma_f32_per_s"}
    assert all(np.isfinite(v) and v > 0 for v in rates.values())
    # a rate, not a time: twice the elements take about twice as long (the chain is the
    # arithmetic, not a fixed launch cost): within a factor 3 of each other
    small = elementwise_rate("cpu", "fma", "float64", n=2 ** 14)
    large = elementwise_rate("cpu", "fma", "float64", n=2 ** 16)
    assert 1 / 3 < large / small < 3
    from hhbench.errors import CannotRunHere
    with pytest.raises(CannotRunHere, match="'gpu:7' requested but JAX sees"):
        elementwise_rate("gpu:7", "exp", "float32")


def test_a_line_faster_than_its_floor_is_flagged_not_passed_off():
    """Catches an achieved/floor under 1 reported as a plain result: it means a ceiling
    was measured too low, and the line says so in its status and in the table."""
    fast = FloorLine(backend="numba", unit="neuron-step", batch=1, floor_s=2e-9,
                     achieved_s=1e-9)
    slow = FloorLine(backend="numba", unit="neuron-step", batch=1, floor_s=1e-9,
                     achieved_s=3e-9)
    assert (fast.ratio, fast.status) == (pytest.approx(0.5), "ceiling too low")
    assert (slow.ratio, slow.status) == (pytest.approx(3.0), "ok")
    text = format_floor({"ceilings": {"cpu": {**CEIL.__dict__}}, "batch": 1,
                         "backends": [fast.as_dict(), slow.as_dict()]})
    assert "0.50x (ceiling too low)" in text and "| 3.00x |" in text


def test_a_gpu_measured_without_matmul_bounds_hh_by_exp_and_fma_only():
    """Catches ceilings of a runtime without a matrix multiply (numba-cuda) refused, or
    used for a CNN floor they cannot give: the HH floor comes from exp and fma; a CNN
    floor says it cannot be computed there; without fma, matmul stays required."""
    cuda = Ceilings(matmul_f32_flops=None, matmul_f64_flops=None, exp_f64_per_s=1e12,
                    exp_f32_per_s=4e12, fma_f64_per_s=5e12, fma_f32_per_s=1e14,
                    matmul_source="numba-cuda", device="gpu:0")
    assert hh_floor_s({"exp": 4, "mul": 62}, cuda, "float64") == (
        pytest.approx(62 / (2 * 5e12)), "flops")
    from hhbench.errors import CannotRunHere
    with pytest.raises(CannotRunHere, match="no matmul ceiling"):
        cnn_floor_s(1e9, cuda)
    with pytest.raises(HHBenchError, match="matmul_f32_flops"):
        Ceilings(matmul_f32_flops=None, matmul_f64_flops=1e11, exp_f64_per_s=5e8)
