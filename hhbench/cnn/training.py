"""Training the lab's CNN on forward-Euler HH responses to step currents.

Data: step currents with random amplitude and onset; the target is the lab reference
(forward Euler at dt = 0.05 ms, the `numba` backend) over the central output window.
Traces on which Euler diverges are dropped and counted. Inputs are scaled by
`input_scale` (1e-3) and targets by `output_scale` (1e-2), as SPEC.md says.

Optimisation: Adam at 0.002 on mean absolute error, as the lab did; the learning rate is
halved when the validation loss has not improved for `lr_patience` epochs (the slow,
later spikes of a train need the smaller steps), and training stops early after
`patience` epochs without improvement. XLA compilation roughly halves the time per
epoch on a CPU.

Long-job habits: a tqdm bar over all batches (ETA), a checkpoint of model and optimizer
after every epoch, `resume=True` continues from it, the best weights (lowest validation
loss) are what lands in `Gmodel.h5`, and `max_minutes` ends a sitting cleanly after
the epoch that crosses the limit.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from hhbench import stimuli
from hhbench.cnn import import_tensorflow
from hhbench.cnn.architecture import Architecture, build_model
from hhbench.errors import HHBenchError

import_tensorflow()  # quietly, where installed (see hhbench.cnn)

STATE_FILE = "train_state.json"
LR_SCHEDULES = ("plateau", "cosine")
CHECKPOINT_DIR = "checkpoint"


@dataclass(frozen=True, kw_only=True)
class StepData:
    """How training steps are drawn (amplitudes in µA/cm², onsets in ms)."""

    amplitude_min_ua: float = -10.0
    amplitude_max_ua: float = 40.0
    #: a share of the onsets is drawn early in the window, so that long spike trains
    #: (the hard part to learn) are well represented; the rest anywhere in the window
    early_fraction: float = 0.5
    early_onset_max_ms: float = 25.0
    fs_khz: float = 20.0

    def __post_init__(self):
        if not self.amplitude_min_ua < self.amplitude_max_ua:
            raise HHBenchError("amplitude range is empty")
        if not 0.0 <= self.early_fraction <= 1.0:
            raise HHBenchError("early_fraction must be within [0, 1]")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    arch: Architecture = field(default_factory=Architecture)
    data: StepData = field(default_factory=StepData)
    n_samples: int = 6000
    val_fraction: float = 0.1
    epochs: int = 80
    batch_size: int = 16
    learning_rate: float = 0.002
    lr_factor: float = 0.5
    lr_patience: int = 3
    min_learning_rate: float = 1e-4
    patience: int = 10
    seed: int = 1
    input_scale: float = 1e-3
    output_scale: float = 1e-2
    #: "plateau": halve the rate after `lr_patience` epochs without improvement (down to
    #: `min_learning_rate`); "cosine": decay from `learning_rate` to `min_learning_rate`
    #: along half a cosine over `epochs` (the rate of epoch e is set as it begins)
    lr_schedule: str = "plateau"
    jit_compile: bool = True

    def __post_init__(self):
        if self.n_samples < 2 or not 0 < self.val_fraction < 1:
            raise HHBenchError("need at least 2 samples and 0 < val_fraction < 1")
        if self.epochs < 1 or self.batch_size < 1:
            raise HHBenchError("epochs and batch size must be >= 1")
        if not (self.input_scale > 0 and self.output_scale > 0):
            raise HHBenchError("input and output scales must be > 0")
        if self.lr_schedule not in LR_SCHEDULES:
            raise HHBenchError(f"unknown learning-rate schedule {self.lr_schedule!r}; "
                               f"choose one of: {', '.join(LR_SCHEDULES)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise HHBenchError(f"seed must be a whole number >= 0, got {self.seed!r}")

    def scheduled_rate(self, epoch: int) -> float | None:
        """The cosine schedule's rate for (0-based) `epoch`; None for "plateau"."""
        if self.lr_schedule != "cosine":
            return None
        return self.cosine_rate(epoch / self.epochs)

    def cosine_rate(self, frac: float) -> float:
        """Half a cosine from `learning_rate` (frac 0) to `min_learning_rate` (frac ≥ 1)."""
        frac = min(max(frac, 0.0), 1.0)
        return self.min_learning_rate + 0.5 * (self.learning_rate - self.min_learning_rate) * (
            1.0 + math.cos(math.pi * frac))

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def tiny(cls, **overrides) -> "TrainConfig":
        """A few-second configuration of the same family, for tests: 4 layers of 4 filters,
        a 256-sample window with 32 samples of context, 48 traces, 2 epochs."""
        return cls(**{"arch": Architecture(n_layers=4, filters=4, kernel=8, context=32,
                                           window=256),
                      "n_samples": 48, "epochs": 2, "batch_size": 8, "val_fraction": 0.25,
                      **overrides})

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        return cls(arch=Architecture(**d.pop("arch")), data=StepData(**d.pop("data")), **d)


def draw_steps(data: StepData, arch: Architecture, n: int, rng: np.random.Generator
               ) -> stimuli.Stimulus:
    """`n` step currents of `arch.window` samples with random amplitudes and onsets."""
    window_ms = arch.window / data.fs_khz
    amps = rng.uniform(data.amplitude_min_ua, data.amplitude_max_ua, n)
    early = rng.random(n) < data.early_fraction
    onsets = np.where(early, rng.uniform(0.0, min(data.early_onset_max_ms, window_ms), n),
                      rng.uniform(0.0, window_ms, n))
    return stimuli.step(amps, onset_ms=onsets, n_samples=arch.window, fs_khz=data.fs_khz)


def make_dataset(config: TrainConfig, n: int, seed: int) -> dict:
    """Scaled network inputs/targets for `n` random steps; diverged traces dropped."""
    from hhbench.suite import reference_run

    stim = draw_steps(config.data, config.arch, n, np.random.default_rng(seed))
    res = reference_run(stim, "lab")  # forward Euler, what the lab's CNN learns
    keep = ~res.diverged
    ctx = config.arch.context
    v = res.v_batch[keep, ctx:ctx + config.arch.output_samples]
    return {"x": (stim.current_ua[keep] * config.input_scale).astype("float32")[..., None],
            "y": (v * config.output_scale).astype("float32")[..., None],
            "n_drawn": n, "n_diverged": int((~keep).sum())}


def make_datasets(config: TrainConfig, val_data: StepData | None = None
                  ) -> tuple[dict, dict, dict]:
    """The training and validation sets of `config` (seeds `seed` and `seed` + 10,000), and
    their sizes after dropping diverged traces. `val_data` (default: `config.data`) is the
    validation steps' distribution, which stays that of a run's first phase."""
    train_n = int(round(config.n_samples * (1 - config.val_fraction)))
    data = make_dataset(config, train_n, config.seed)
    val = make_dataset(replace(config, data=val_data or config.data),
                       config.n_samples - train_n, config.seed + 10_000)
    counts = {"train": train_n - data["n_diverged"], "val": len(val["x"]),
              "diverged_dropped": data["n_diverged"] + val["n_diverged"]}
    return data, val, counts


def initial_state(config: TrainConfig) -> dict:
    """train_state.json of a run that has not trained yet."""
    return {"config": config.as_dict(), "epoch": 0, "history": [], "best_val_loss": None,
            "best_epoch": None, "wait": 0, "lr_wait": 0, "lr": config.learning_rate,
            "wall_s": 0.0, "finished": False, "stop_reason": None, "phases": [],
            "val_data": asdict(config.data)}


def _load_state(out: Path) -> dict | None:
    path = out / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _write_json(path: Path, obj) -> None:
    from hhbench.atomic import atomic_write
    atomic_write(path, json.dumps(obj, indent=1))


@dataclass(frozen=True, kw_only=True)
class TrainRun:
    """What `train` leaves: the state (as in train_state.json) and the in-memory model,
    holding the best weights (those written to Gmodel.h5)."""

    state: dict
    model: object


#: settings a resumed run may change (a new phase); recorded in state["phases"]
PHASE_SETTINGS = ("epochs", "learning_rate", "early_fraction", "early_onset_max_ms", "patience")


def _new_phase(config: TrainConfig, state: dict, changes: dict) -> TrainConfig:
    """Apply a resumed run's changes; the validation data keep their first distribution."""
    changes = {k: v for k, v in changes.items() if v is not None}
    unknown = set(changes) - set(PHASE_SETTINGS)
    if unknown:
        raise HHBenchError(f"a resumed run cannot change {', '.join(sorted(unknown))}")
    if not changes:
        return config
    data = replace(config.data, **{k: changes[k] for k in ("early_fraction", "early_onset_max_ms")
                                   if k in changes})
    config = replace(config, data=data, **{k: changes[k] for k in ("epochs", "learning_rate",
                                                                   "patience") if k in changes})
    state["phases"].append({"from_epoch": state["epoch"], "changes": changes})
    state.update(config=config.as_dict(), finished=False, stop_reason=None, wait=0, lr_wait=0)
    if "learning_rate" in changes:
        state["lr"] = float(changes["learning_rate"])
    return config


def train(config: TrainConfig, out: str | Path, *, resume: bool = False, device: str = "auto",
          max_minutes: float | None = None, progress: bool = True, evaluate: bool = True,
          finish: bool = False, **changes) -> TrainRun:
    """Train (or resume training) a model into folder `out`.

    The folder receives Gmodel.json + Gmodel.h5 (best weights so far, lab format),
    train_state.json (config, per-epoch history, counters) and checkpoint/ (model and
    optimizer after the last epoch). When training is finished, the model card is written.
    On resume the stored configuration is used; `changes` (any of PHASE_SETTINGS) start a
    new phase: more epochs, a new learning rate, more or fewer early onsets in the training
    data. The validation data always follow the first phase's distribution, so validation
    losses stay comparable across phases. `finish=True` ends a resumed run where it stands
    (the best weights so far are the model) and writes its model card.
    """
    import tensorflow as tf
    import tf_keras as keras
    from tqdm.auto import tqdm

    from hhbench.cnn import files
    from hhbench.cnn.devices import device_description, resolve_device

    out = Path(out)
    tf_device = resolve_device(device)  # before any file: a missing GPU leaves no folder
    state = _load_state(out)
    if state and not resume:
        raise HHBenchError(f"{out} already holds a training run; pass --resume to continue "
                           "it, or --out a new folder for a new run")
    if resume and not state:
        raise HHBenchError(f"nothing to resume in {out} (no {STATE_FILE})")
    if state:
        config = TrainConfig.from_dict(state["config"])
        state.setdefault("phases", [])
        state.setdefault("val_data", asdict(config.data))
        config = _new_phase(config, state, changes)
        if finish and not state["finished"]:
            state.update(finished=True, stop_reason=f"ended after {state['epoch']} epochs "
                                                    f"(--finish)")
    else:
        if any(v is not None for v in changes.values()) or finish:
            raise HHBenchError("phase changes and --finish apply to a resumed run (--resume)")
        out.mkdir(parents=True, exist_ok=True)
        state = initial_state(config)
    from hhbench.environment import describe_machine, one_line
    state.setdefault("devices", []).append({**device_description(tf_device),
                                            "host": one_line(describe_machine())})

    fitting = not state["finished"] and state["epoch"] < config.epochs
    if fitting:  # a finished run (resumed to --finish or re-card) needs no data
        data, val, state["data"] = make_datasets(config, StepData(**state["val_data"]))

    keras.utils.set_random_seed(config.seed + state["epoch"])
    with tf.device(tf_device):
        model = build_model(config.arch)
        model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="mae",
                      jit_compile=config.jit_compile)
        ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
        manager = tf.train.CheckpointManager(ckpt, str(out / CHECKPOINT_DIR), max_to_keep=1)
        if state["epoch"] > 0 and manager.latest_checkpoint:
            ckpt.restore(manager.latest_checkpoint).expect_partial()
        if state["epoch"] == 0:
            files.save_lab_model(model, out, config=config, best=False)
        model.optimizer.learning_rate.assign(state["lr"])

        if fitting:
            steps = math.ceil(len(data["x"]) / config.batch_size)
            bar = tqdm(total=steps * config.epochs, initial=steps * state["epoch"],
                       unit="batch", disable=not progress, dynamic_ncols=True, desc="training")
            callback = _EpochCallback(config, state, out, manager, bar, time.monotonic(),
                                      max_minutes)
            model.fit(data["x"], data["y"], batch_size=config.batch_size,
                      epochs=config.epochs, initial_epoch=state["epoch"],
                      validation_data=(val["x"], val["y"]), shuffle=True, verbose=0,
                      callbacks=[callback])
            bar.close()
        model.load_weights(str(out / files.WEIGHTS_FILE))  # the best epoch, as saved
    if state["epoch"] >= config.epochs and not state["finished"]:
        state.update(finished=True, stop_reason=state["stop_reason"] or "epochs done")
    _write_json(out / STATE_FILE, state)
    if state["finished"] and evaluate:
        from hhbench.cnn.model_card import write_model_card
        write_model_card(out, state)
    return TrainRun(state=state, model=model)


def _make_callback_class():
    import tf_keras as keras

    class EpochCallback(keras.callbacks.Callback):
        """Per batch: advance the bar. Per epoch: history, best weights, learning-rate
        schedule, early stopping, checkpoint, time limit — all recorded in the state file."""

        def __init__(self, config, state, out, manager, bar, sitting_start, max_minutes):
            super().__init__()
            self.config, self.state, self.out = config, state, out
            self.manager, self.bar = manager, bar
            self.sitting_start, self.max_minutes = sitting_start, max_minutes
            self.epoch_start = time.monotonic()

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_start = time.monotonic()
            rate = self.config.scheduled_rate(epoch)
            if rate is not None:
                self.state["lr"] = rate
                self.model.optimizer.learning_rate.assign(rate)

        def on_train_batch_end(self, batch, logs=None):
            self.bar.update(1)

        def on_epoch_end(self, epoch, logs=None):
            from hhbench.cnn import files

            st, cfg = self.state, self.config
            val_loss, loss = float(logs["val_loss"]), float(logs["loss"])
            st["history"].append({"epoch": epoch + 1, "loss": loss, "val_loss": val_loss,
                                  "lr": st["lr"], "seconds": time.monotonic() - self.epoch_start})
            st["wall_s"] += time.monotonic() - self.epoch_start
            st["epoch"] = epoch + 1
            if st["best_val_loss"] is None or val_loss < st["best_val_loss"]:
                st.update(best_val_loss=val_loss, best_epoch=epoch + 1, wait=0, lr_wait=0)
                files.save_lab_model(self.model, self.out, config=cfg, best=True)
            else:
                st["wait"] += 1
                st["lr_wait"] += 1
                if (cfg.lr_schedule == "plateau" and st["lr_wait"] >= cfg.lr_patience
                        and st["lr"] > cfg.min_learning_rate):
                    st["lr"] = max(st["lr"] * cfg.lr_factor, cfg.min_learning_rate)
                    st["lr_wait"] = 0
                    self.model.optimizer.learning_rate.assign(st["lr"])
            if st["wait"] >= cfg.patience:
                st.update(finished=True, stop_reason=f"early stop: no improvement in "
                                                     f"{cfg.patience} epochs")
                self.model.stop_training = True
            elapsed_min = (time.monotonic() - self.sitting_start) / 60
            if self.max_minutes is not None and elapsed_min >= self.max_minutes:
                self.model.stop_training = True
            self.manager.save(checkpoint_number=epoch + 1)
            _write_json(self.out / STATE_FILE, st)
            self.bar.set_postfix(loss=f"{loss:.4f}", val=f"{val_loss:.4f}", lr=f"{st['lr']:.1e}",
                                 refresh=False)

    return EpochCallback


def _EpochCallback(*args):
    return _make_callback_class()(*args)
