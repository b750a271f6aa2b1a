"""The fast 1-D graph against the lab's Keras graph and against a float64 evaluation."""

from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")

from hhbench import stimuli  # noqa: E402
from hhbench.cnn import files  # noqa: E402
from hhbench.cnn.fastgraph import (FastGraphError, build_fast_graph, same_padding,  # noqa: E402
                                   transpose_length)
from hhbench.cnn.litegraph import LiteGraph, flatbuffer  # noqa: E402
from hhbench.cnn.runner import CnnRunner, resolve_mode  # noqa: E402
from hhbench.errors import HHBenchError  # noqa: E402

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "hh-step-cnn"
IMPLS = [("conv1d", False), ("conv1d", True), ("matmul", False)]


def _inputs(loaded, batch=2):
    """The lab's three stimuli (scaled as the network sees them), `batch` traces each."""
    window = int(loaded.keras_model.input_shape[1])
    current = np.concatenate([stimuli.step(20.0).current_ua, stimuli.sine().current_ua,
                              stimuli.white_noise(seed=2, batch=batch).current_ua])[:, :window]
    return tf.constant((current * loaded.meta.input_scale)[..., None], tf.float32)


def _check_against_lab(loaded):
    x = _inputs(loaded)
    lab = loaded.keras_model(x, training=False).numpy()
    truth = build_fast_graph(loaded.keras_model, dtype="float64")(x).numpy()
    lab_err = np.abs(lab - truth).max() / loaded.meta.output_scale   # mV
    for impl, jit in IMPLS:
        fast = build_fast_graph(loaded.keras_model, impl=impl, jit_compile=jit)(x).numpy()
        _assert_float32_rounding_only(fast, lab, truth, lab_err, loaded, (impl, jit))
    lite = LiteGraph(build_fast_graph(loaded.keras_model))(x.numpy())
    _assert_float32_rounding_only(lite, lab, truth, lab_err, loaded, "lite")


def _assert_float32_rounding_only(fast, lab, truth, lab_err, loaded, what):
    assert fast.shape == lab.shape
    err = np.abs(fast - truth).max() / loaded.meta.output_scale
    diff = np.abs(fast - lab).max() / loaded.meta.output_scale
    # float32 rounding only: no further from the float64 evaluation than the lab graph
    # itself (with slack for a different summation order), and close to the lab graph
    assert err <= 2 * lab_err + 1e-5, (what, err, lab_err)
    assert diff <= 3 * lab_err + 1e-5, (what, diff, lab_err)


def test_fast_graph_agrees_on_lab_small(lab_small):
    _check_against_lab(files.load_model(lab_small))


@pytest.mark.skipif(not (SHIPPED / files.WEIGHTS_FILE).exists(), reason="no shipped model")
def test_fast_graph_agrees_on_the_shipped_model():
    _check_against_lab(files.load_model(SHIPPED))


@pytest.mark.skipif(not (SHIPPED / files.WEIGHTS_FILE).exists(), reason="no shipped model")
@pytest.mark.parametrize("mode, jit", [("compiled", False), ("compiled", True), ("lite", False)])
def test_fast_graph_changes_the_accuracy_by_under_1e4_mv(mode, jit):
    """The performance target: the fast graph's accuracy (RMS error against the converged
    reference, on the lab's default step) is the lab graph's to 1e-4 mV, in a tf.function
    (with and without XLA) and through TensorFlow Lite."""
    from hhbench import metrics
    from hhbench.backends import get_backend
    from hhbench.cnn.fastgraph import FastGraphOptions

    stim = stimuli.make("step")
    reference = get_backend("reference").run(stim).v_mv
    errors = []
    for runner in (CnnRunner(SHIPPED, device="cpu", mode="lab-graph"),
                   CnnRunner(SHIPPED, device="cpu", mode=mode,
                             fast_options=FastGraphOptions(jit_compile=jit))):
        out = runner.run(stim.current_ua)
        # the fast graph really ran (a fallback to the lab graph would change nothing)
        assert runner.graph.startswith("lab" if runner.mode == "lab-graph" else "fast")
        ref = reference[out.first_sample:out.first_sample + out.v_mv.shape[1]]
        errors.append(float(metrics.rmse_mv(ref, out.v_mv[0])))
    assert ("TensorFlow Lite" in runner.graph) == (mode == "lite")
    assert errors[0] > 1.0  # a real error to compare (the model is not exact)
    assert abs(errors[1] - errors[0]) < 1e-4


def test_float64_graph_is_the_lab_graph_in_float64(lab_small):
    # the float64 evaluation itself must be right: against the Keras graph in float64
    loaded = files.load_model(lab_small)
    text = (lab_small / files.ARCH_FILE).read_text()  # every layer states its dtype
    model64 = tf_keras.models.model_from_json(text.replace('"float32"', '"float64"'))
    model64.set_weights([w.astype(np.float64) for w in loaded.keras_model.get_weights()])
    x = tf.cast(_inputs(loaded), tf.float64)
    expected = model64(x, training=False).numpy()
    assert expected.dtype == np.float64
    got = build_fast_graph(loaded.keras_model, dtype="float64")(tf.cast(x, tf.float32)).numpy()
    # the input is rounded to float32 on the way in: the rest agrees to float64 rounding
    np.testing.assert_allclose(got, expected, atol=1e-9)


def test_half_precision_runs_and_stays_near(lab_small):
    loaded = files.load_model(lab_small)
    x = _inputs(loaded, batch=1)
    lab = loaded.keras_model(x, training=False).numpy()
    half = build_fast_graph(loaded.keras_model, dtype="float16")(x).numpy()
    assert half.dtype == np.float32
    # float16 keeps about 3 significant digits: 1e-2 of the output's range
    assert np.abs(half - lab).max() < 1e-2 * max(1.0, np.abs(lab).max())


def _odd_model():
    """Valid and same padding, strides not dividing kernels, Conv1D and Dense at the end."""
    inp = tf_keras.Input(shape=(37, 1))
    x = tf_keras.layers.Reshape((37, 1, 1))(inp)
    x = tf_keras.layers.Conv2D(3, (5, 1), strides=(2, 1), padding="valid", activation="tanh")(x)
    x = tf_keras.layers.Conv2DTranspose(2, (4, 1), strides=(3, 1), padding="same")(x)
    skip = x
    x = tf_keras.layers.Activation("sigmoid")(x)
    x = tf_keras.layers.Concatenate(axis=-1)([x, skip])
    x = tf_keras.layers.Conv2DTranspose(2, (5, 1), strides=(2, 1), padding="valid")(x)
    x = tf_keras.layers.Reshape((int(x.shape[1]), 2))(x)
    x = tf_keras.layers.Conv1D(3, 3, padding="same", activation="relu")(x)
    x = tf_keras.layers.Dense(1, activation="sigmoid")(x)
    x = tf_keras.layers.Cropping1D((2, 3))(x)
    tf_keras.utils.set_random_seed(3)
    return tf_keras.Model(inp, x)


@pytest.mark.parametrize("impl", ["conv1d", "matmul"])
def test_fast_graph_follows_keras_padding_rules(impl):
    model = _odd_model()
    x = tf.random.stateless_normal((3, 37, 1), seed=(4, 5))
    expected = model(x, training=False).numpy()
    got = build_fast_graph(model, impl=impl)(x).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_padding_helpers_follow_tensorflow():
    # SAME: out = ceil(L/s), total = (out-1)s + k - L; left gets the smaller half
    assert same_padding(2560, 16, 2) == (7, 7)
    assert same_padding(10, 4, 3) == (1, 2)   # out 4: 3*3 + 4 - 10 = 3
    assert same_padding(5, 1, 2) == (0, 0)
    assert transpose_length(5, 16, 2, "same") == 10
    assert transpose_length(5, 5, 2, "valid") == 13


def test_unmappable_model_is_refused_and_runner_keeps_the_lab_graph(tmp_path):
    inp = tf_keras.Input(shape=(64, 1))
    x = tf_keras.layers.Conv1D(2, 3, padding="same")(inp)
    x = tf_keras.layers.LayerNormalization()(x)
    out = tf_keras.layers.Conv1D(1, 3, padding="same")(x)
    model = tf_keras.Model(inp, out)
    with pytest.raises(FastGraphError, match="LayerNormalization"):
        build_fast_graph(model)
    files.save_lab_model(model, tmp_path / "m", meta=files.ModelMeta(context=0))
    runner = CnnRunner(tmp_path / "m", device="cpu")
    assert runner.mode == "lite"  # what "auto" asks for on the CPU, but the lab graph runs
    assert runner.graph.startswith("lab (") and "LayerNormalization" in runner.graph
    out = runner.run(np.ones((1, 64)))
    assert out.v_mv.shape == (1, 64)


def test_runner_modes_agree(lab_small):
    stim = stimuli.white_noise(seed=5, batch=2)
    lite = CnnRunner(lab_small, device="cpu")
    fast = CnnRunner(lab_small, device="cpu", mode="compiled")
    lab = CnnRunner(lab_small, device="cpu", mode="lab-graph")
    assert (lite.mode_request, lite.mode) == ("auto", "lite") and "TensorFlow Lite" in lite.graph
    assert fast.graph == "fast (conv1d, float32)" and lab.graph == "lab"
    expected = lab.run(stim.current_ua).v_mv
    np.testing.assert_allclose(fast.run(stim.current_ua).v_mv, expected, atol=1e-3)
    out = lite.run(stim.current_ua)
    np.testing.assert_allclose(out.v_mv, expected, atol=1e-3)
    assert out.device == "CPU:0"
    with pytest.raises(HHBenchError, match="unknown CNN mode"):
        CnnRunner(lab_small, device="cpu", mode="fast-ish")


def test_bad_options_are_refused(lab_small):
    model = files.load_model(lab_small).keras_model
    with pytest.raises(HHBenchError, match="impl"):
        build_fast_graph(model, impl="fft")
    with pytest.raises(HHBenchError, match="dtype"):
        build_fast_graph(model, dtype="int8")


def test_weights_are_constants_of_the_traced_graph(lab_small):
    """The weights are Const nodes of the traced function, not captured tensors, so that
    TensorFlow folds what is derived from them once instead of on every call."""
    loaded = files.load_model(lab_small)
    for impl in ("conv1d", "matmul"):
        graph = build_fast_graph(loaded.keras_model, impl=impl)
        concrete = graph.concrete_function()  # the one the calls use
        assert concrete.captured_inputs == []
        consts = [op for op in concrete.graph.get_operations() if op.type == "Const"]
        n_weights = sum(int(np.prod(w.shape)) for w in loaded.keras_model.get_weights())
        assert sum(int(np.prod(op.outputs[0].shape)) for op in consts) >= n_weights


def test_wrong_input_shape_is_refused(lab_small):
    loaded = files.load_model(lab_small)
    graph = build_fast_graph(loaded.keras_model)
    window = int(loaded.keras_model.input_shape[1])
    for shape in [(1, window, 2), (3, window), (1, window + 1, 1)]:
        with pytest.raises(HHBenchError, match=rf"expected \(batch, {window}, 1\)"):
            graph(np.zeros(shape, np.float32))
    assert graph(np.zeros((2, window, 1), np.float32)).shape[0] == 2


def test_auto_mode_is_lite_on_the_cpu_only_where_lite_runs():
    from hhbench.cnn.fastgraph import FastGraphOptions
    assert resolve_mode("auto", "/CPU:0", None) == "lite"
    assert resolve_mode("auto", "/GPU:0", None) == "compiled"
    for other in (FastGraphOptions(jit_compile=True), FastGraphOptions(dtype="bfloat16")):
        assert resolve_mode("auto", "/CPU:0", other) == "compiled"
        with pytest.raises(HHBenchError, match="float32 fast graph without XLA"):
            resolve_mode("lite", "/CPU:0", other)
    with pytest.raises(HHBenchError, match="CPU only"):
        resolve_mode("lite", "/GPU:0", None)
    for mode in ("compiled", "lab-graph", "predict"):
        assert resolve_mode(mode, "/GPU:1", None) == mode


def test_lite_batches_equal_single_traces_whatever_the_threads(lab_small):
    """One interpreter, resized between batch sizes, gives each trace what it gives that
    trace alone (a mix-up of windows or a stale buffer would be off by mV), on one thread
    as on two."""
    loaded = files.load_model(lab_small)
    x = _inputs(loaded, batch=3).numpy()                     # 5 traces
    two = LiteGraph(build_fast_graph(loaded.keras_model), num_threads=2)
    batch = two(x)
    singles = np.concatenate([two(x[i:i + 1]) for i in range(len(x))])
    again = two(x[1:4])
    one = LiteGraph(build_fast_graph(loaded.keras_model), num_threads=1)(x)
    mv = 1 / loaded.meta.output_scale
    assert np.abs(batch).max() * mv > 10                     # a real output to compare
    np.testing.assert_allclose(singles * mv, batch * mv, rtol=0, atol=1e-4)
    np.testing.assert_allclose(again * mv, batch[1:4] * mv, rtol=0, atol=1e-4)
    np.testing.assert_allclose(one * mv, batch * mv, rtol=0, atol=1e-4)


def test_lite_refuses_what_it_cannot_run(lab_small):
    model = files.load_model(lab_small).keras_model
    window = int(model.input_shape[1])
    lite = LiteGraph(build_fast_graph(model))
    with pytest.raises(HHBenchError, match=rf"expected \(batch, {window}, 1\)"):
        lite(np.zeros((1, window + 1, 1), np.float32))
    with pytest.raises(HHBenchError, match="without XLA"):
        LiteGraph(build_fast_graph(model, jit_compile=True))(np.zeros((1, window, 1), np.float32))
    with pytest.raises(HHBenchError, match="num_threads"):
        LiteGraph(build_fast_graph(model), num_threads=0)


def test_conversion_is_shared_by_graphs_of_the_same_weights_only(lab_small):
    """A fresh runner of the same model reuses the process' conversion; other weights get
    their own."""
    first, second, other = (files.load_model(lab_small).keras_model for _ in range(3))
    weights = other.get_weights()
    weights[0] = weights[0] + 1e-3
    other.set_weights(weights)
    a, b, c = (build_fast_graph(m) for m in (first, second, other))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert flatbuffer(a) is flatbuffer(b)
    assert flatbuffer(c) != flatbuffer(a)
    x = _inputs(files.load_model(lab_small), batch=1).numpy()
    assert np.abs(LiteGraph(c)(x) - LiteGraph(a)(x)).max() > 1e-5  # c really runs c


def test_weights_changed_after_a_trace_get_their_own_conversion(lab_small):
    """The memo's key is what the traced graph holds: a graph traced before the model's
    weights changed keeps its fingerprint, and a fresh graph of the changed model runs the
    new weights through TensorFlow Lite too."""
    model = files.load_model(lab_small).keras_model
    x = _inputs(files.load_model(lab_small), batch=1).numpy()
    before = build_fast_graph(model)
    before(tf.constant(x))  # traced: its constants are these weights
    old_out, old_key = LiteGraph(before)(x), before.fingerprint()
    model.set_weights([w * 1.1 for w in model.get_weights()])
    after = build_fast_graph(model)
    assert before.fingerprint() == old_key != after.fingerprint()
    new_out = LiteGraph(after)(x)
    assert np.abs(new_out - old_out).max() > 1e-3
    np.testing.assert_allclose(new_out, after(tf.constant(x)).numpy(), rtol=0, atol=1e-5)


def test_cnn_modes_are_checked_without_tensorflow_work():
    from hhbench.backends.cnn import Cnn
    from hhbench.suite import SuiteConfig
    with pytest.raises(HHBenchError, match="unknown CNN mode 'bogus'"):
        Cnn(mode="bogus")
    with pytest.raises(HHBenchError, match="CPU only"):
        Cnn(mode="lite", device="gpu:1")
    with pytest.raises(HHBenchError, match="CPU only"):
        SuiteConfig(backends=("cnn",), devices=("cpu", "gpu"),
                    options={"cnn": {"mode": "lite"}})
    assert Cnn(mode="lite", device="cpu").options["mode"] == "lite"
    SuiteConfig(backends=("cnn",), devices=("cpu", "gpu"), options={"cnn": {"mode": "auto"}})


def test_the_fast_graphs_dtypes_are_the_tensorflow_runtimes_precisions():
    """Catches a dtype list of the fast graph's own beside the runtime's: it computes in
    exactly TensorFlow's network precisions, and refuses another naming it."""
    from hhbench.cnn.fastgraph import DTYPES, FastGraphOptions
    from hhbench.runtimes import get_runtime
    assert DTYPES is get_runtime("tensorflow").network_precisions
    assert DTYPES == ("float32", "float16", "bfloat16", "float64")
    with pytest.raises(HHBenchError, match="unknown dtype 'tf32'"):
        FastGraphOptions(dtype="tf32")
