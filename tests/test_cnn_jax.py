"""The CNN through JAX (`hhbench.cnn.jaxgraph`, files read by `hhbench.cnn.h5weights`):
against golden outputs of the lab graph (tests/data/cnn_golden.npz, made with TensorFlow by
scripts/make_cnn_golden.py), against TensorFlow directly where it is installed, and the `cnn`
backend's choice of runtime, precision and refusals."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("h5py")

from hhbench import metrics, stimuli  # noqa: E402
from hhbench.backends import get_backend  # noqa: E402
from hhbench.cnn.h5weights import read_lab_folder  # noqa: E402
from hhbench.cnn.jaxgraph import JaxGraph, JaxRunner, resolve_jax_device  # noqa: E402
from hhbench.cnn_modes import choose_runtime  # noqa: E402
from hhbench.errors import HHBenchError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "hh-step-cnn"
SMALL = Path(__file__).parent / "data" / "lab_small"
GOLDEN = Path(__file__).parent / "data" / "cnn_golden.npz"
MODELS = {"shipped": SHIPPED, "small": SMALL}
KINDS = ("step", "sine", "noise")
#: pointwise agreement asked of float32 JAX with the lab graph (mV); measured on 2026-12-06
#: (AMD EPYC, 2 cores, JAX 0.10.2 CPU): 5.3e-4 mV on the shipped model, 3e-5 on lab_small
GOLDEN_MV = 1e-3


@pytest.fixture(scope="module")
def golden():
    return np.load(GOLDEN)


@pytest.fixture(scope="module")
def runners():
    return {key: JaxRunner(path, device="cpu") for key, path in MODELS.items()}


def _same_model(golden, key):
    digest = hashlib.sha256((MODELS[key] / "Gmodel.h5").read_bytes()).hexdigest()
    # a changed model fails here, not skips: a skip would leave the JAX graph untested
    # against the lab graph without anyone noticing
    assert str(golden[f"{key}_sha256"]) == digest, (
        f"{key} model changed since the golden outputs were made: run "
        "scripts/make_cnn_golden.py")


def _no_tf():
    return "tensorflow" not in sys.modules


@pytest.mark.parametrize("key", ["shipped", "small"])
def test_float32_equals_the_lab_graphs_golden_outputs(golden, runners, key):
    """Scaling, context, window and every layer (padding of the strided and transposed
    convolutions) as the lab graph computes them: a wrong offset or scale is millivolts off."""
    _same_model(golden, key)
    for kind in KINDS:
        out = runners[key].run(stimuli.make(kind).current_ua)
        assert out.first_sample == int(golden["first_sample"])
        expected = golden[f"{key}_{kind}"]
        assert out.v_mv.shape == (1, expected.size)
        diff = np.abs(out.v_mv[0] - expected).max()
        assert diff <= GOLDEN_MV, (key, kind, diff)


def test_accuracy_change_on_the_step_is_under_1e4_mv(golden, runners):
    """The target: the JAX graph's RMS error against the converged reference on the lab's
    default step is the lab graph's to 1e-4 mV."""
    from hhbench.suite import reference_run

    _same_model(golden, "shipped")
    step = stimuli.make("step")
    out = runners["shipped"].run(step.current_ua)
    ref = reference_run(step).v_mv[out.first_sample:out.first_sample + out.v_mv.shape[1]]
    rmse = float(metrics.rmse_mv(ref, out.v_mv[0]))
    lab = float(golden["shipped_step_rmse_mv"])
    assert lab > 1.0  # a real error to compare (the model is not exact)
    assert abs(rmse - lab) <= 1e-4, (rmse, lab)


def test_importing_the_jax_runtime_imports_no_tensorflow():
    code = ("import sys, hhbench.cnn.jaxgraph, hhbench.cnn.h5weights, hhbench.backends.cnn; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_without_tensorflow_the_backend_runs_through_jax():
    """`import tensorflow` failing (sys.modules entry None): "auto" picks JAX, the backend
    is available, runs, and records runtime "jax"."""
    code = f"""
import json, sys
sys.modules['tensorflow'] = None
from hhbench import stimuli
from hhbench.backends import get_backend
from hhbench.backends.cnn import Cnn
assert Cnn.is_available() and Cnn.unavailable_reason() is None
assert Cnn.runtime_of({{}}) == "jax"
b = get_backend("cnn", model={str(SMALL)!r}, device="cpu")
r = b.run(stimuli.make("step"))
s = b.settings()
print(json.dumps({{"runtime": s["runtime"], "precision": s["precision"], "n": r.v_mv.size,
                  "device": r.device}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {"runtime": "jax", "precision": "float32 (highest)", "n": 2048,
                   "device": "cpu"}


def test_runtime_choice():
    assert choose_runtime("auto", {"tensorflow": True, "jax": True}) == "tensorflow"
    assert choose_runtime("auto", {"tensorflow": False, "jax": True}) == "jax"
    assert choose_runtime("auto", {"tensorflow": False, "jax": False}) == "tensorflow"
    assert choose_runtime("jax", {"tensorflow": True, "jax": True}) == "jax"


def test_batch_equals_single_traces(runners):
    runner = runners["shipped"]
    stim = stimuli.white_noise(seed=5, batch=3)
    batch = runner.run(stim.current_ua).v_mv
    for i in range(3):
        single = runner.run(stim.current_ua[i]).v_mv[0]
        # XLA may pick another blocking for another batch size: float32 rounding only
        assert np.abs(batch[i] - single).max() < 1e-4


def test_long_and_short_stimuli_are_windowed_like_the_tensorflow_runner():
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf_keras")
    from hhbench.cnn.runner import CnnRunner

    tf_runner = CnnRunner(SMALL, device="cpu", mode="lab-graph")
    jax_runner = JaxRunner(SMALL, device="cpu", max_windows_per_call=2)
    for n in (5000, 1000):  # 3 windows (the last shifted back) in 2 calls; padded
        current = stimuli.white_noise(seed=1, batch=2, n_samples=n).current_ua
        a, b = tf_runner.run(current), jax_runner.run(current)
        assert (a.n_windows, a.padded_samples, a.first_sample) == \
            (b.n_windows, b.padded_samples, b.first_sample)
        np.testing.assert_array_equal(a.t_ms, b.t_ms)
        assert np.abs(a.v_mv - b.v_mv).max() < 1e-4


def _inputs(meta, window=2560):
    current = np.concatenate([stimuli.step(20.0).current_ua, stimuli.sine().current_ua,
                              stimuli.white_noise(seed=2, batch=2).current_ua])[:, :window]
    return (current * meta.input_scale)[..., None].astype(np.float32)


@pytest.mark.parametrize("key", ["shipped", "small"])
def test_equals_the_lab_graph_and_reads_the_weights_keras_reads(key):
    """Where TensorFlow is installed: h5py gives Keras's weights bit for bit, and the JAX
    graph (both forms of the transposed convolution) gives the lab graph's output."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf_keras")
    from hhbench.cnn import files
    from hhbench.cnn.runner import iter_layers

    loaded, lab = files.load_model(MODELS[key]), read_lab_folder(MODELS[key])
    keras_w, h5_w = loaded.keras_model.get_weights(), lab.get_weights()
    assert len(keras_w) == len(h5_w)
    for a, b in zip(keras_w, h5_w):
        assert a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)
    for layer in iter_layers(loaded.keras_model):
        if layer.weights:
            assert np.array_equal(layer.kernel.numpy(), lab.weights[layer.name]["kernel"])
    assert lab.count_params() == loaded.keras_model.count_params()
    assert lab.meta == loaded.meta
    x = _inputs(loaded.meta)
    expected = loaded.keras_model(x, training=False).numpy()
    for transpose in ("polyphase", "dilated"):
        got = JaxGraph(lab, device="cpu", transpose=transpose)(x)
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() / loaded.meta.output_scale < GOLDEN_MV


def test_keras_padding_rules_on_an_odd_model(tmp_path):
    """valid and same padding, strides that do not divide kernels, Conv1D, Dense, Cropping1D,
    written by tf_keras in the lab's layout and read back by h5py."""
    tf = pytest.importorskip("tensorflow")
    tf_keras = pytest.importorskip("tf_keras")
    from hhbench.cnn import files

    tf_keras.utils.set_random_seed(3)
    inp = tf_keras.Input(shape=(37, 1))
    x = tf_keras.layers.Reshape((37, 1, 1))(inp)
    x = tf_keras.layers.Conv2D(3, (5, 1), strides=(2, 1), padding="valid", activation="tanh")(x)
    x = tf_keras.layers.Conv2DTranspose(2, (4, 1), strides=(3, 1), padding="same")(x)
    skip = x
    x = tf_keras.layers.Activation("sigmoid")(x)
    x = tf_keras.layers.Concatenate(axis=-1)([x, skip])
    x = tf_keras.layers.Conv2DTranspose(2, (5, 1), strides=(2, 1), padding="valid")(x)
    x = tf_keras.layers.Conv2DTranspose(2, (16, 1), strides=(2, 1), padding="same")(x)
    x = tf_keras.layers.Reshape((int(x.shape[1]), 2))(x)
    x = tf_keras.layers.Conv1D(3, 3, padding="same", activation="relu")(x)
    # an even kernel: "same" pads 1 sample on the left and 2 on the right (TensorFlow's rule)
    x = tf_keras.layers.Conv1D(3, 4, padding="same")(x)
    x = tf_keras.layers.Dense(1, activation="sigmoid")(x)
    x = tf_keras.layers.Cropping1D((2, 3))(x)
    model = tf_keras.Model(inp, x)
    files.save_lab_model(model, tmp_path / "odd", meta=files.ModelMeta(context=0))
    x_in = tf.random.stateless_normal((3, 37, 1), seed=(4, 5)).numpy()
    expected = model(x_in, training=False).numpy()
    for transpose in ("polyphase", "dilated"):
        got = JaxGraph(tmp_path / "odd", device="cpu", transpose=transpose)(x_in)
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_elu_softplus_and_swish_as_tf_keras_computes_them(tmp_path):
    """One layer of each activation the plan maps beyond the lab's tanh and sigmoid, on input
    of both signs (elu and selu differ on both sides; softplus and swish are not relu)."""
    tf = pytest.importorskip("tensorflow")
    tf_keras = pytest.importorskip("tf_keras")
    from hhbench.cnn import files

    tf_keras.utils.set_random_seed(5)
    inp = tf_keras.Input(shape=(24, 1))
    x = tf_keras.layers.Conv1D(3, 3, padding="same", activation="elu")(inp)
    x = tf_keras.layers.Conv1D(3, 3, padding="same", activation="softplus")(x)
    x = tf_keras.layers.Conv1D(1, 3, padding="same", activation="swish")(x)
    model = tf_keras.Model(inp, x)
    config = json.loads(model.to_json())["config"]
    assert [layer["config"].get("activation") for layer in config["layers"][1:]] == [
        "elu", "softplus", "swish"]
    files.save_lab_model(model, tmp_path / "acts", meta=files.ModelMeta(context=0))
    x_in = 3 * tf.random.stateless_normal((4, 24, 1), seed=(6, 7)).numpy()
    expected = model(x_in, training=False).numpy()
    hidden = tf_keras.Model(inp, model.layers[1].output)(x_in, training=False).numpy()
    assert (hidden < -0.5).any() and (hidden > 0.5).any()  # elu sees both signs
    got = JaxGraph(tmp_path / "acts", device="cpu")(x_in)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_tf32_on_the_cpu_is_float32():
    lab = read_lab_folder(SMALL)
    x = _inputs(lab.meta)
    f32, tf32 = (JaxGraph(lab, device="cpu", precision=p) for p in ("float32", "tf32"))
    assert f32.precision_applied == "float32 (highest)"
    assert tf32.precision_applied.startswith("float32 (tf32 asked")
    np.testing.assert_array_equal(f32(x), tf32(x))


def test_bfloat16_runs_with_a_bounded_error(golden):
    """bfloat16 (8-bit mantissa) moves spikes: measured on the shipped model (2026-12-06),
    RMS / max difference from float32: step 3.0 / 23 mV, sine 0.63 / 3.5, noise 0.19 / 0.93.
    A cast that did not happen would give 0; one that broke the scaling, far more."""
    _same_model(golden, "shipped")
    runner = JaxRunner(SHIPPED, device="cpu", precision="bfloat16")
    assert runner.graph.precision_applied == "bfloat16"
    out = runner.run(stimuli.make("step").current_ua)
    assert out.v_mv.dtype == np.float64 and np.isfinite(out.v_mv).all()
    expected = golden["shipped_step"]
    rms = float(np.sqrt(np.mean((out.v_mv[0] - expected) ** 2)))
    assert 1e-3 < rms < 15.0, rms
    # the resting potential, where nothing moves, within bfloat16's resolution
    assert abs(np.median(out.v_mv[0][:200]) - np.median(expected[:200])) < 2.0


def test_backend_jax_settings_and_device_call():
    backend = get_backend("cnn", model=SMALL, runtime="jax", device="cpu")
    stim = stimuli.white_noise(seed=3, batch=2)
    result = backend.run(stim)
    settings = backend.settings()
    assert settings["runtime"] == "jax" and settings["precision"] == "float32 (highest)"
    assert settings["device"] == "cpu" and result.device == "cpu"
    assert result.info["runtime"] == "jax"
    call = backend.device_call(stim)
    assert callable(call)
    outs = call()  # runs and synchronises; the outputs stay on the device
    # the device-only call is the same network on the same windows: copied back and
    # stitched here, it gives run's V (a call that computed nothing, or other windows,
    # would not)
    from hhbench.cnn import windows as winlib
    runner = backend.runner
    y = np.concatenate([np.asarray(o).reshape(len(o), -1) for o in outs], axis=0)
    win = winlib.cut(stim.current_ua, window=runner.window, out_len=runner.out_len,
                     context=runner.context, input_scale=runner.input_scale)
    v, _ = winlib.stitch(y, win, out_len=runner.out_len, context=runner.context,
                         output_scale=runner.output_scale, fs_khz=runner.fs_khz)
    np.testing.assert_allclose(v, result.v_mv, rtol=0, atol=1e-6)
    assert np.ptp(result.v_mv) > 1.0  # a trace that moves: equality means something


def test_refusals_are_one_line(monkeypatch):
    from hhbench import cnn_modes
    from hhbench.backends.cnn import Cnn

    bad = [dict(runtime="torch"), dict(runtime="jax", precision="float16"),
           dict(runtime="jax", mode="lite"), dict(runtime="tensorflow", precision="tf32"),
           dict(runtime="jax", precision="int8"), dict(colour="red")]
    for options in bad:
        with pytest.raises(HHBenchError) as err:
            Cnn.check_options(options, ("cpu",))
        assert "\n" not in str(err.value), options
    # gpu:all is a device the network does not run on: its case is skipped, not refused
    from hhbench.devices import DeviceNotSupported
    with pytest.raises(DeviceNotSupported, match="not gpu:all"):
        Cnn.resolve_device("gpu:all", dict(runtime="jax"))
    # the first GPU index JAX does not see (gpu:0 without a GPU): refused on every machine
    with pytest.raises(HHBenchError, match=r"sees no GPU|sees \d+ GPU") as err:
        resolve_jax_device(f"gpu:{_jax_gpus()}")
    assert "\n" not in str(err.value)
    monkeypatch.setattr(cnn_modes, "stacks_present", lambda: {"tensorflow": True, "jax": False})
    monkeypatch.setattr("hhbench.backends.cnn.stacks_present", cnn_modes.stacks_present)
    with pytest.raises(HHBenchError, match="hhbench\\[jax\\]") as err:
        Cnn.check_options(dict(runtime="jax"), ("cpu",))
    assert "\n" not in str(err.value)
    with pytest.raises(HHBenchError, match="lite"):
        get_backend("cnn", model=SMALL, runtime="jax", mode="lite")


def _jax_gpus():
    from hhbench.cnn.jaxgraph import gpu_count
    return gpu_count()


def test_files_that_do_not_fit_are_refused(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "Gmodel.json").write_text((SMALL / "Gmodel.json").read_text())
    (folder / "Gmodel.h5").write_bytes((SHIPPED / "Gmodel.h5").read_bytes())
    with pytest.raises(HHBenchError, match="kernel has shape") as err:
        JaxGraph(folder, device="cpu")
    assert "\n" not in str(err.value)
    (folder / "Gmodel.json").write_text("[1, 2]")
    with pytest.raises(HHBenchError, match="not a Keras model"):
        read_lab_folder(folder)
    os.remove(folder / "Gmodel.h5")
    with pytest.raises(HHBenchError, match="missing"):
        read_lab_folder(folder)


def test_unavailable_only_without_both_stacks(monkeypatch):
    from hhbench.backends import cnn as cnn_backend
    from hhbench.backends.cnn import Cnn

    monkeypatch.setattr(cnn_backend, "stacks_present",
                        lambda: {"tensorflow": False, "jax": True})
    assert Cnn.is_available() and Cnn.unavailable_reason() is None
    monkeypatch.setattr(cnn_backend, "stacks_present",
                        lambda: {"tensorflow": False, "jax": False})
    monkeypatch.setattr(cnn_backend, "module_found", lambda m: m not in ("tensorflow", "jax"))
    reason = Cnn.unavailable_reason()
    assert reason.startswith("needs tensorflow") and "\n" not in reason
    assert "tensorflow, jax not installed" in reason
    assert "pip install 'hhbench[cnn]'" in reason and "'hhbench[jax]'" in reason


@pytest.mark.parametrize("chunk", [None, 4])
def test_the_chunk_follows_the_batch_unless_set_and_is_recorded(chunk):
    """Catches a chunk fixed at some size whatever the batch (256 windows a call for batch
    4,096), or one not recorded: 5 traces of 5,000 samples are 3 windows each (2,560-sample
    windows, 2,048 outputs: starts 0, 2,048 and 2,440), 15 in all: one network call of 15
    by default, ceil(15 / 4) = 4 calls of up to 4 with chunk 4; the settings (and the
    results' info) say so, and V is the same either way."""
    backend = get_backend("cnn", model=SMALL, runtime="jax", device="cpu", chunk=chunk)
    stim = stimuli.white_noise(seed=4, batch=5, n_samples=5000)
    backend.prepare()
    graph = backend.runner.graph
    sizes = []
    apply = graph.apply

    def counted(x):  # the network's own call, its batch of windows noted
        sizes.append(int(x.shape[0]))
        return apply(x)

    graph.apply = counted
    result = backend.run(stim)
    expected_chunk, expected_calls = (15, 1) if chunk is None else (4, 4)
    assert sizes == ([15] if chunk is None else [4, 4, 4, 3])
    settings = backend.settings()
    assert settings["chunk"] == ("batch" if chunk is None else 4)
    assert (settings["windows_per_call"], settings["network_calls"]) == \
        (expected_chunk, expected_calls)
    assert (result.info["windows_per_call"], result.info["network_calls"]) == \
        (expected_chunk, expected_calls)
    # a case of the suite records it with its results
    from hhbench.suite import run_case
    from hhbench.timing import TimingSettings
    case, _ = run_case(backend, stim, reference_name="converged",
                       timing=TimingSettings(warmup_calls=0, min_repeats=1, min_time_s=0))
    assert (case.settings["chunk"], case.settings["windows_per_call"]) == \
        (settings["chunk"], expected_chunk)
    # the same network on the same windows: one trace at a time gives the same V (XLA may
    # block another batch size differently: float32 rounding only)
    single = get_backend("cnn", model=SMALL, runtime="jax", device="cpu", chunk=1)
    np.testing.assert_allclose(result.v_batch, single.run(stim).v_batch, atol=1e-4, rtol=0)
    with pytest.raises(HHBenchError, match="chunk .* got 0"):
        get_backend("cnn", model=SMALL, runtime="jax", device="cpu", chunk=0)


def test_no_network_call_takes_more_windows_than_a_quarter_of_the_memory_holds(monkeypatch):
    """Catches the chunk following the batch into memory the device does not have (10⁶
    traces in one call): the bound is a quarter of the free memory over 8 bytes per
    activation value, the values counted from the layers' shapes by hand here; a device
    with room for 6 windows runs 15 windows as calls of 6, 6, 3, and says so."""
    from hhbench.cnn import windows as winlib
    from hhbench.cnn.plan import activation_values
    from hhbench.runtimes import get_runtime

    backend = get_backend("cnn", model=SMALL, runtime="jax", device="cpu")
    backend.prepare()
    plan = backend.runner.graph.plan
    by_hand = sum(step.shape[0] * step.shape[1] for step in plan.steps)
    assert activation_values(plan) == backend.runner.activation_values() == by_hand
    assert winlib.memory_chunk(by_hand, 6 * 4 * 8 * by_hand) == 6
    assert winlib.memory_chunk(by_hand, 7 * 4 * 8 * by_hand - 1) == 6
    assert winlib.memory_chunk(by_hand, 1) == 1                      # at least one window
    assert winlib.memory_chunk(by_hand, None) == \
        winlib.UNKNOWN_CAPACITY_BYTES // 4 // (8 * by_hand)
    assert winlib.call_cap(None, 6) == 6 and winlib.call_cap(4, 6) == 4
    assert winlib.call_cap(None, None) is None
    # the backend asks its runtime for the device's free memory
    runtime = type(get_runtime("jax"))
    monkeypatch.setattr(runtime, "memory_capacity",
                        lambda self, device: 6 * 4 * 8 * by_hand if device == "cpu" else None)
    small = get_backend("cnn", model=SMALL, runtime="jax", device="cpu")
    small.prepare()
    sizes = []
    apply = small.runner.graph.apply

    def counted(x):
        sizes.append(int(x.shape[0]))
        return apply(x)

    small.runner.graph.apply = counted
    small.run(stimuli.white_noise(seed=4, batch=5, n_samples=5000))
    assert sizes == [6, 6, 3]
    settings = small.settings()
    assert (settings["chunk"], settings["memory_chunk"], settings["windows_per_call"],
            settings["network_calls"]) == ("batch", 6, 6, 3)
