"""The CNN runner against real Keras: the lab's file format, scaling, windows, devices."""

import json
import os
import shutil

import numpy as np
from pathlib import Path

import pytest

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")

from hhbench import stimuli  # noqa: E402
from hhbench.backends import get_backend  # noqa: E402
from hhbench.cnn import files  # noqa: E402
from hhbench.cnn.architecture import Architecture, build_model, receptive_field_samples  # noqa: E402
from hhbench.cnn.runner import CnnRunner, receptive_field  # noqa: E402
from hhbench.errors import HHBenchError  # noqa: E402


@pytest.fixture(scope="module")
def runner(lab_small):
    return CnnRunner(lab_small, device="cpu")


@pytest.fixture(scope="module")
def keras2_model(lab_small):
    """The same files read by plain tf_keras, as the lab's notebook would."""
    model = tf_keras.models.model_from_json((lab_small / "Gmodel.json").read_text())
    model.load_weights(str(lab_small / "Gmodel.h5"))
    return model


def test_default_architecture_is_the_labs_model():
    model = build_model()
    assert model.count_params() == 1_511_489
    assert model.input_shape == (None, 2560, 1) and model.output_shape == (None, 2048, 1)
    assert model.name == "model_3" and [l.name for l in model.layers][-1] == "model_2"


def test_receptive_field_formula_and_layers_agree():
    # Drakopoulos et al. eq. 4 with k = 16, s = 2: (16 - 1)(2^9 - 1) + 1 = 7666 samples
    assert receptive_field_samples(9, 16, 2) == 7666
    assert receptive_field_samples(2, 16, 2) == 46
    rf = receptive_field(build_model(), 20.0)
    assert rf["samples"] == rf["formula_samples"] == 7666 and rf["ms"] == pytest.approx(383.3)
    two = build_model(Architecture(n_layers=2, window=2560))
    assert receptive_field(two, 20.0)["samples"] == 46


def test_lab_folder_matches_tf_keras_prediction(runner, keras2_model):
    stim = stimuli.step([5.0, 20.0])
    x = stim.current_ua[..., None] * 1e-3
    expected = keras2_model.predict(x, verbose=0)[..., 0]
    out = runner.run(stim.current_ua)
    assert out.v_mv.shape == (2, 2048) and out.first_sample == 256
    # compare before scaling (network units), as the lab's own prediction
    assert np.max(np.abs(out.v_mv * 1e-2 - expected)) < 1e-5
    np.testing.assert_allclose(out.t_ms, (np.arange(2048) + 256) * 0.05)
    assert out.padded_samples == 0 and out.n_windows == 1


def test_tensorflow_counts_the_same_activations_per_window_as_the_plan(runner, lab_small):
    """Catches the TensorFlow runner's memory bound counting another network than it runs
    (a nested model counted as its one output, the input layer's list shape): Keras's
    own leaf layers and hhbench's plan of the same files, read without TensorFlow, count
    the same values per window, but for the nested model's own input layer (a window of
    one channel), which the plan folds into the outer input."""
    import json

    from hhbench.cnn.plan import activation_values, build_plan
    config = json.loads((Path(lab_small) / "Gmodel.json").read_text())
    plan = build_plan(config.get("config", config))
    assert runner.activation_values() - activation_values(plan) == runner.window * 1
    assert activation_values(plan) > 10 * runner.window  # every layer, not the output only


def test_runner_keeps_its_cold_start_apart(lab_small):
    fresh = CnnRunner(lab_small, device="cpu")
    assert fresh.cold_start_s is None
    fresh.warmup(batch=2, calls=2)
    first = fresh.cold_start_s
    assert first > 0
    fresh.run(np.zeros((1, 2560)))
    assert fresh.cold_start_s == first


def test_predict_mode_equals_compiled_mode(lab_small, runner):
    stim = stimuli.white_noise(seed=3, batch=3)
    predicted = CnnRunner(lab_small, device="cpu", mode="predict").run(stim.current_ua)
    np.testing.assert_allclose(predicted.v_mv, runner.run(stim.current_ua).v_mv, atol=1e-4)


def test_scaling_is_overridable(lab_small, runner):
    stim = stimuli.step(10.0)
    base = runner.run(stim.current_ua).v_mv
    # doubling the output scale halves V; the input scale enters the network itself
    half = CnnRunner(lab_small, device="cpu", output_scale=2e-2).run(stim.current_ua).v_mv
    np.testing.assert_allclose(half, base / 2, rtol=1e-6)
    doubled_input = CnnRunner(lab_small, device="cpu", input_scale=2e-3).run(stim.current_ua)
    np.testing.assert_allclose(doubled_input.v_mv, runner.run(2 * stim.current_ua).v_mv, rtol=1e-6)


def test_long_stimulus_is_stitched_from_windows(runner):
    stim = stimuli.white_noise(seed=1, batch=2, n_samples=6000)
    out = runner.run(stim.current_ua)
    # 6000 samples: windows start at 0, 2048 and (moved back to end at 6000) 3440; output
    # index k is stimulus sample k + 256; the last window adds only what is still missing
    assert runner.window_starts(6000) == [0, 2048, 3440]
    assert out.v_mv.shape == (2, 6000 - 512) and out.n_windows == 3
    np.testing.assert_allclose(out.t_ms, (np.arange(5488) + 256) * 0.05)

    def single(start):
        return runner.run(stim.current_ua[:, start:start + 2560]).v_mv

    np.testing.assert_allclose(out.v_mv[:, :2048], single(0), atol=1e-4)
    np.testing.assert_allclose(out.v_mv[:, 2048:4096], single(2048), atol=1e-4)
    np.testing.assert_allclose(out.v_mv[:, 4096:], single(3440)[:, 4096 - 3440:], atol=1e-4)


def test_short_stimulus_is_padded_and_said(runner):
    out = runner.run(stimuli.step(20.0, n_samples=1000).current_ua)
    assert out.padded_samples == 1560 and out.v_mv.shape == (1, 1000 - 512)
    with pytest.raises(HHBenchError, match="too short"):
        runner.run(np.zeros(400))


def test_cnn_backend_runs_like_the_others(lab_small):
    backend = get_backend("cnn", model=lab_small, device="cpu")
    r = backend.run(stimuli.step(20.0))
    assert r.v_mv.shape == (2048,) and r.first_sample == 256
    assert r.t_ms[0] == pytest.approx(12.8) and r.device == "cpu"
    assert backend.settings()["context"] == 256


def test_cpu_really_runs_on_the_cpu(runner):
    runner.run(np.zeros((1, 2560)))
    assert runner.last_device.endswith("CPU:0")


@pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")), reason="machine has a GPU")
@pytest.mark.parametrize("device", ["gpu", "gpu:1"])
def test_gpu_request_without_gpu_fails_cleanly(lab_small, device):
    with pytest.raises(HHBenchError, match="TensorFlow sees no such GPU.*CPU") as info:
        CnnRunner(lab_small, device=device)
    assert "\n" not in str(info.value)


def test_auto_device_picks_what_is_there(lab_small):
    r = CnnRunner(lab_small, device="auto")
    expected = "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
    assert r.tf_device == expected


@pytest.mark.parametrize("device", ["tpu", "cpu:1", "gpu:x", ""])
def test_unknown_device_spelling(lab_small, device):
    with pytest.raises(HHBenchError, match="unknown device"):
        CnnRunner(lab_small, device=device)


# -- bad files -----------------------------------------------------------------------------

@pytest.fixture
def lab_copy(lab_small, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(lab_small, folder)
    return folder


def _error(path) -> str:
    with pytest.raises(HHBenchError) as info:
        files.load_model(path)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_missing_weights_file(lab_copy):
    (lab_copy / "Gmodel.h5").unlink()
    assert "Gmodel.h5: missing" in _error(lab_copy)


def test_missing_folder(tmp_path):
    assert "no such model" in _error(tmp_path / "nowhere")


def test_json_that_is_not_a_model(lab_copy):
    (lab_copy / "Gmodel.json").write_text(json.dumps({"hello": "world"}))
    assert "Gmodel.json: JSON is not a Keras model" in _error(lab_copy)
    (lab_copy / "Gmodel.json").write_text("{not json")
    assert "Gmodel.json: not JSON" in _error(lab_copy)


def test_weights_that_do_not_match(lab_copy, tmp_path):
    other = build_model(Architecture(filters=8))
    other.save_weights(str(lab_copy / "Gmodel.h5"))
    assert "Gmodel.h5: weights do not match" in _error(lab_copy)


def test_keras3_file_loads_and_runs(tmp_path):
    keras = pytest.importorskip("keras")
    # a small Keras 3 model of the same input/output layout, saved as .keras
    inp = keras.Input((2560, 1))
    x = keras.layers.Reshape((2560, 1, 1))(inp)
    model = keras.Model(inp, keras.layers.Cropping1D((256, 256))(
        keras.layers.Reshape((2560, 1))(keras.layers.Conv2D(1, (3, 1), padding="same")(x))))
    path = tmp_path / "tiny.keras"
    model.save(path)
    loaded = files.load_model(path)
    assert loaded.format == "keras3" and loaded.meta.context == 256
    out = CnnRunner(loaded, device="cpu").run(np.ones((1, 2560)))
    expected = model.predict(np.ones((1, 2560, 1)) * 1e-3, verbose=0)[..., 0] / 1e-2
    np.testing.assert_allclose(out.v_mv, expected, rtol=1e-5, atol=1e-5)


def test_broken_keras3_file(tmp_path):
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"not a zip")
    assert "broken.keras: not a loadable Keras 3 model" in _error(bad)


def test_runners_of_one_model_share_its_load_until_its_files_change(lab_small, tmp_path):
    # `hhbench run` makes a runner per case; each read and built the model anew (0.3 s)
    folder = tmp_path / "m"
    shutil.copytree(lab_small, folder)
    first, second = CnnRunner(str(folder)), CnnRunner(str(folder))
    assert second.model is first.model
    assert files.load_model(folder).keras_model is not first.model  # not shared: fresh
    # new weights on disk (another size or time): read again, and the runner runs them
    weights = folder / files.WEIGHTS_FILE
    model = tf_keras.models.model_from_json((folder / files.ARCH_FILE).read_text())
    model.set_weights([w * 0.5 for w in first.model.get_weights()])
    model.save_weights(str(weights))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    third = CnnRunner(str(folder))
    assert third.model is not first.model
    np.testing.assert_allclose(third.model.get_weights()[0], first.model.get_weights()[0] * 0.5)


def test_the_labs_fresh_cnn_reads_its_files_as_a_users_first_run_does(lab_small):
    # the lab's q3 times a CNN whose set-up loads the model files (a user's cold start);
    # a shared load would leave reading and building the model out of that time
    from hhbench.lab.common import LabSetup
    setup = LabSetup(str(lab_small), device="cpu")
    CnnRunner(str(lab_small), device="cpu")  # a run's runner, sharing its load
    fresh = setup.backend("cnn", load_model=True)
    fresh.prepare()
    shared = CnnRunner(str(lab_small), device="cpu")
    assert fresh.runner.model is not shared.model
