"""Training on a tiny configuration of the lab's family: seconds, not hours."""

import json

import numpy as np
import pytest

pytest.importorskip("tf_keras")

from hhbench.cli import main  # noqa: E402
from hhbench.cnn import files  # noqa: E402
from hhbench.cnn.runner import CnnRunner  # noqa: E402
from hhbench.cnn.training import TrainConfig, draw_steps, make_dataset, train  # noqa: E402
from hhbench.errors import HHBenchError  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "model"
    run = train(TrainConfig.tiny(epochs=3), out, progress=False)
    return out, run


def test_training_reduces_the_loss(trained):
    _, run = trained
    losses = [h["loss"] for h in run.state["history"]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert run.state["finished"] and run.state["best_epoch"] >= 1


def test_saved_folder_loads_back_and_predicts_like_the_model(trained):
    out, run = trained
    assert {"Gmodel.json", "Gmodel.h5", "hhbench_model.json"} <= {p.name for p in out.iterdir()}
    loaded = files.load_model(out)
    x = np.random.default_rng(0).normal(size=(3, 256, 1)).astype("float32") * 0.02
    np.testing.assert_allclose(loaded.keras_model.predict(x, verbose=0),
                               run.model.predict(x, verbose=0), atol=1e-6)
    runner = CnnRunner(out, device="cpu")
    assert runner.context == 32 and runner.input_scale == 1e-3


def test_model_card_written_with_quality_figures(trained):
    out, _ = trained
    card = json.loads((out / "model_card.json").read_text())
    steps = card["quality"]["steps_supra"]
    assert set(steps["bars"]) == {"gamma_median", "frac_spike_count_within_1",
                                  "frac_spike_count_exact", "frac_first_spike_within_0p5ms"}
    assert 0 <= steps["frac_spike_count_exact"] <= 1 and steps["mae_mv_mean"] > 0
    assert card["training"]["epochs_run"] == 3 and card["hardware"]["cpu"]
    assert "median Γ" in (out / "MODEL_CARD.md").read_text()


def test_resume_continues_instead_of_restarting(tmp_path):
    out = tmp_path / "m"
    first = train(TrainConfig.tiny(epochs=1), out, progress=False, evaluate=False).state
    assert first["epoch"] == 1 and first["finished"]
    with pytest.raises(HHBenchError, match="--resume"):
        train(TrainConfig.tiny(), out, progress=False, evaluate=False)
    run = train(TrainConfig.tiny(), out, resume=True, epochs=3, progress=False, evaluate=False)
    more = run.state
    assert [h["epoch"] for h in more["history"]] == [1, 2, 3]
    assert more["history"][0] == first["history"][0]  # the first epoch was kept, not redone
    # the optimizer's state came back from the checkpoint: 3 epochs of steps, not 2
    steps_per_epoch = -(-more["data"]["train"] // TrainConfig.tiny().batch_size)
    assert int(run.model.optimizer.iterations.numpy()) == 3 * steps_per_epoch


def test_a_resumed_phase_changes_rate_and_data_but_not_validation(tmp_path):
    out = tmp_path / "m"
    first = train(TrainConfig.tiny(epochs=1), out, progress=False, evaluate=False).state
    second = train(TrainConfig.tiny(), out, resume=True, epochs=2, learning_rate=5e-4,
                   early_fraction=0.9, progress=False, evaluate=False).state
    assert second["phases"] == [{"from_epoch": 1, "changes": {"epochs": 2, "learning_rate": 5e-4,
                                                              "early_fraction": 0.9}}]
    assert second["history"][1]["lr"] == 5e-4 and second["config"]["data"]["early_fraction"] == 0.9
    assert second["val_data"]["early_fraction"] == 0.5 and second["data"]["val"] == first["data"]["val"]
    with pytest.raises(HHBenchError, match="cannot change"):
        train(TrainConfig.tiny(), out, resume=True, batch_size=4, progress=False)
    with pytest.raises(HHBenchError, match="resumed run"):
        train(TrainConfig.tiny(), tmp_path / "new", learning_rate=1e-3, progress=False)
    with pytest.raises(HHBenchError, match="resumed run"):
        train(TrainConfig.tiny(), tmp_path / "new", finish=True, progress=False)
    assert not (tmp_path / "new").exists()


def test_max_minutes_ends_a_sitting_after_one_epoch_and_finish_ends_the_run(tmp_path):
    out = tmp_path / "m"
    state = train(TrainConfig.tiny(epochs=5), out, max_minutes=0.0, progress=False,
                  evaluate=False).state
    assert state["epoch"] == 1 and not state["finished"]
    assert not (out / "model_card.json").exists()
    state = train(TrainConfig.tiny(), out, resume=True, finish=True, progress=False).state
    assert state["epoch"] == 1 and state["finished"] and "--finish" in state["stop_reason"]
    assert (out / "model_card.json").exists()


def test_resume_without_a_run_is_an_error(tmp_path):
    with pytest.raises(HHBenchError, match="nothing to resume"):
        train(TrainConfig.tiny(), tmp_path / "none", resume=True, progress=False)


def test_data_covers_onsets_across_the_window_and_drops_diverged():
    cfg = TrainConfig.tiny()
    stim = draw_steps(cfg.data, cfg.arch, 400, np.random.default_rng(1))
    onsets = np.array(stim.params["onset_ms"])
    window_ms = cfg.arch.window / 20.0
    assert onsets.min() < 0.1 * window_ms and onsets.max() > 0.9 * window_ms
    amps = np.array(stim.params["amplitude_ua"])
    assert amps.min() >= -10 and amps.max() <= 40
    # a range reaching far into hyperpolarisation makes Euler diverge: those are dropped
    from dataclasses import replace
    harsh = replace(cfg, data=replace(cfg.data, amplitude_min_ua=-60.0, amplitude_max_ua=-40.0),
                    arch=replace(cfg.arch, window=2560, context=256, n_layers=4))
    data = make_dataset(harsh, 20, seed=3)
    assert data["n_diverged"] > 0 and len(data["x"]) == 20 - data["n_diverged"]
    assert np.all(np.isfinite(data["y"]))


def test_cli_tiny_training(tmp_path, capsys):
    assert main(["train", "--tiny", "--epochs", "1", "--out", str(tmp_path / "cli"),
                 "--no-progress"]) == 0
    assert "1 epochs" in capsys.readouterr().out


def test_cosine_schedule_runs_from_the_rate_to_its_floor():
    cfg = TrainConfig.tiny(epochs=10, lr_schedule="cosine", learning_rate=2e-3,
                           min_learning_rate=1e-4)
    assert cfg.scheduled_rate(0) == pytest.approx(2e-3)
    assert cfg.scheduled_rate(5) == pytest.approx(0.5 * (2e-3 + 1e-4))  # half-way: the mean
    assert cfg.scheduled_rate(10) == pytest.approx(1e-4)
    assert TrainConfig.tiny().scheduled_rate(3) is None  # "plateau": no fixed schedule
    with pytest.raises(HHBenchError, match="schedule"):
        TrainConfig.tiny(lr_schedule="linear")


def test_scales_are_stored_with_the_model_and_used_by_the_runner(tmp_path):
    out = tmp_path / "scaled"
    run = train(TrainConfig.tiny(epochs=1, input_scale=0.025, output_scale=0.02,
                                 lr_schedule="cosine"), out, progress=False, evaluate=False)
    meta = json.loads((out / "hhbench_model.json").read_text())["meta"]
    assert meta["input_scale"] == 0.025 and meta["output_scale"] == 0.02
    runner = CnnRunner(out, device="cpu")
    current = np.random.default_rng(2).normal(0, 10, (2, 256))
    expected = run.model.predict((current * 0.025)[..., None].astype("float32"),
                                 verbose=0)[..., 0] / 0.02
    np.testing.assert_allclose(runner.run(current).v_mv, expected, rtol=1e-5, atol=1e-4)
    assert run.state["history"][0]["lr"] == pytest.approx(2e-3)  # cosine starts at the rate


def test_a_run_resumes_from_its_folder_moved_elsewhere(tmp_path):
    # what a fresh clone on another machine sees: the committed folder at another path
    import shutil
    first = tmp_path / "here" / "m"
    train(TrainConfig.tiny(epochs=1), first, progress=False, evaluate=False)
    moved = tmp_path / "elsewhere" / "m"
    shutil.copytree(first, moved)
    shutil.rmtree(first)
    run = train(TrainConfig.tiny(), moved, resume=True, epochs=2, progress=False, evaluate=False)
    steps_per_epoch = -(-run.state["data"]["train"] // TrainConfig.tiny().batch_size)
    assert run.state["epoch"] == 2
    assert int(run.model.optimizer.iterations.numpy()) == 2 * steps_per_epoch
