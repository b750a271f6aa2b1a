"""A training phase under Keras 3 (here on its TensorFlow backend; on a GPU machine JAX or
PyTorch) and its import into a model folder that `hhbench train --resume` continues."""

import json

import numpy as np
import pytest

pytest.importorskip("tf_keras")
keras3 = pytest.importorskip("keras")
if int(keras3.__version__.split(".")[0]) < 3:
    pytest.skip("needs Keras 3", allow_module_level=True)

from hhbench.cnn import files  # noqa: E402
from hhbench.cnn.architecture import Architecture, build_model  # noqa: E402
from hhbench.cnn.keras3_phase import (BEST_FILE, LAST_FILE, PHASE_FILE,  # noqa: E402
                                      import_phase, next_epoch_fits, run_phase)
from hhbench.cnn.training import TrainConfig, train  # noqa: E402
from hhbench.errors import HHBenchError  # noqa: E402

TINY = TrainConfig.tiny(lr_schedule="cosine", min_learning_rate=1e-5)


@pytest.fixture(scope="module")
def phase(tmp_path_factory):
    folder = tmp_path_factory.mktemp("phase")
    # a fixed number of epochs: the same phase however busy the machine (a time budget
    # would fit fewer epochs on a loaded one)
    record = run_phase(TINY, folder, minutes=0.25, epochs=3, progress=False)
    return folder, record


def test_keras3_and_tf_keras_builds_compute_the_same_network():
    """Same layers and weight order: tf_keras weights in a Keras 3 build give its output."""
    arch = Architecture(n_layers=3, filters=4, kernel=8, context=16, window=128)
    k2 = build_model(arch)
    k3 = build_model(arch, keras=keras3)
    assert [w.shape for w in k2.get_weights()] == [tuple(w.shape) for w in k3.get_weights()]
    rng = np.random.default_rng(1)
    k2.set_weights([rng.normal(size=w.shape).astype("float32") * 0.3 for w in k2.get_weights()])
    k3.set_weights(k2.get_weights())
    x = rng.normal(size=(2, 128, 1)).astype("float32")
    np.testing.assert_allclose(np.asarray(k3.predict(x, verbose=0)), k2.predict(x, verbose=0),
                               atol=1e-5)


def test_an_epoch_starts_only_when_the_last_ones_time_still_fits_the_budget():
    assert next_epoch_fits([], elapsed_s=100.0, budget_s=15.0)  # the first always runs
    assert next_epoch_fits([4.0, 5.0], elapsed_s=9.0, budget_s=15.0)      # 9 + 5 <= 15
    assert not next_epoch_fits([4.0, 5.0], elapsed_s=10.5, budget_s=15.0)  # 10.5 + 5 > 15
    assert not next_epoch_fits([12.0], elapsed_s=12.0, budget_s=15.0)


def test_phase_trains_its_epochs_and_records_every_epoch(phase):
    folder, record = phase
    history = record["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["loss"] < history[0]["loss"]
    # the rate follows half a cosine over the epochs: it starts at the configured rate and
    # falls, epoch e at cosine_rate((e - 1) / 3)
    rates = [h["lr"] for h in history]
    assert rates == pytest.approx([TINY.cosine_rate(e / 3) for e in range(3)])
    assert all(b < a for a, b in zip(rates, rates[1:]))
    best = min(history, key=lambda h: h["val_loss"])
    assert record["best_epoch"] == best["epoch"] and record["best_val_loss"] == best["val_loss"]
    assert json.loads((folder / PHASE_FILE).read_text())["history"] == history


def test_import_gives_the_best_weights_and_the_optimizer_state_to_resume(phase, tmp_path):
    folder, record = phase
    out = tmp_path / "model"
    state = import_phase(folder, out, evaluate=False)
    n = len(record["history"])
    assert state["epoch"] == n and state["finished"] and state["best_epoch"] == record["best_epoch"]

    best = np.load(folder / BEST_FILE)
    loaded = files.load_model(out)
    for i, w in enumerate(loaded.keras_model.get_weights()):
        np.testing.assert_array_equal(w, best[f"w{i:03d}"])
    assert loaded.meta.input_scale == TINY.input_scale

    # the checkpoint holds the last epoch's weights and Adam's moments and step count
    import tensorflow as tf
    import tf_keras

    model = build_model(TINY.arch)
    opt = tf_keras.optimizers.Adam()
    opt.build(model.trainable_variables)
    tf.train.Checkpoint(model=model, optimizer=opt).restore(
        tf.train.latest_checkpoint(str(out / "checkpoint"))).expect_partial()
    last = np.load(folder / LAST_FILE)
    np.testing.assert_array_equal(model.get_weights()[0], last["w000"])
    np.testing.assert_array_equal(opt._momentums[3].numpy(), last["m003"])
    last_v = f"v{len(opt._velocities) - 1:03d}"
    np.testing.assert_array_equal(opt._velocities[-1].numpy(), last[last_v])
    assert int(opt.iterations.numpy()) == int(last["iterations"]) > 0

    resumed = train(None, out, resume=True, epochs=n + 1, progress=False, evaluate=False)
    more = resumed.state
    assert more["epoch"] == n + 1 and len(more["history"]) == n + 1
    assert more["history"][:n] == state["history"]
    # it went on from the phase's optimizer step and last rate, not from a fresh optimizer
    # or the start of a schedule
    steps = -(-more["data"]["train"] // TINY.batch_size)
    assert int(resumed.model.optimizer.iterations.numpy()) == int(last["iterations"]) + steps
    assert more["history"][n]["lr"] == pytest.approx(record["history"][-1]["lr"])


def test_bad_phases_are_refused(phase, tmp_path):
    with pytest.raises(HHBenchError, match="not a finished Keras 3 phase"):
        import_phase(tmp_path, tmp_path / "m", evaluate=False)
    # a phase cut off after writing a newer last.npz than its phase.json knows
    import shutil
    cut = tmp_path / "cut"
    shutil.copytree(phase[0], cut)
    record = json.loads((cut / PHASE_FILE).read_text())
    record["history"] = record["history"][:-1]
    (cut / PHASE_FILE).write_text(json.dumps(record))
    with pytest.raises(HHBenchError, match="different epochs"):
        import_phase(cut, tmp_path / "m2", evaluate=False)
    folder, _ = phase
    out = tmp_path / "twice"
    import_phase(folder, out, evaluate=False)
    with pytest.raises(HHBenchError, match="already holds"):
        import_phase(folder, out, evaluate=False)
    with pytest.raises(HHBenchError, match="> 0 minutes"):
        run_phase(TINY, tmp_path / "p", minutes=0, progress=False)
