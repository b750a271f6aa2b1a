"""A training phase under Keras 3, for a GPU machine that has JAX or PyTorch but no TensorFlow.

`run_phase` trains the lab's network as `training.train` defines it — the same
`TrainConfig`, the same data (`make_datasets`), the same layers and weight order
(`build_model(keras=keras)`), Adam on mean absolute error — with Keras 3 on whatever
backend `KERAS_BACKEND` names (only the initial weights differ: Keras 3 draws them with its
own generator). Its length is a wall-clock budget rather than a number of
epochs, so the learning rate follows half a cosine over the *time* spent: from
`config.learning_rate` at the start to `config.min_learning_rate` when the budget is used.
An epoch is not started when the epochs so far say it would end past the budget.

After every epoch the phase folder holds, each file replaced atomically, so a phase cut off
at any moment leaves a usable folder:

  best.npz     the weights of the epoch with the lowest validation loss (w000, w001 … in
               `get_weights()` order)
  last.npz     the last epoch's weights, Adam's first and second moments (m000…, v000…, in
               the order of the trainable weights) and its step count
  phase.json   the configuration, per-epoch history, the best epoch, the device

Both npz files carry their epoch, so a folder cut off between two of its files is
recognised. `import_phase` (TensorFlow side) turns that folder into a model folder of
`training.train`: Gmodel.json/Gmodel.h5 from best.npz, a checkpoint of last.npz with the
optimizer's state, train_state.json, and the model card. `hhbench train --resume` continues
from it at the phase's last learning rate, halving it on plateaus (a cosine over a time
budget has no continuation in epochs); `--learning-rate` starts a new phase instead.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from hhbench.cnn.architecture import build_model
from hhbench.cnn.training import (CHECKPOINT_DIR, STATE_FILE, TrainConfig, _write_json,
                                  initial_state, make_datasets)
from hhbench.errors import HHBenchError

BEST_FILE, LAST_FILE, PHASE_FILE = "best.npz", "last.npz", "phase.json"


def _save_npz(path: Path, arrays: dict) -> None:
    from hhbench.atomic import atomic_writer
    with atomic_writer(path, "wb") as fh:
        np.savez(fh, **arrays)


def weight_arrays(weights) -> dict:
    """`get_weights()` as npz entries w000, w001 …"""
    return {f"w{i:03d}": np.asarray(a) for i, a in enumerate(weights)}


def weights_from_npz(npz, prefix: str = "w") -> list:
    """The arrays `prefix`000, `prefix`001 … of an npz file, in order."""
    return [npz[k] for k in sorted(k for k in npz.files if k[0] == prefix and k[1:].isdigit())]


def _adam_state(model) -> dict:
    """Adam's moments in the order of `model.trainable_weights`, and its step count."""
    # `_momentums` / `_velocities` are the slots' names in both Keras 3 and tf_keras, which
    # have no public accessor for them; `import_phase` reads them back the same way
    opt = model.optimizer
    return {**{f"m{i:03d}": np.asarray(v) for i, v in enumerate(opt._momentums)},
            **{f"v{i:03d}": np.asarray(v) for i, v in enumerate(opt._velocities)},
            "iterations": np.asarray(opt.iterations)}


def backend_description(keras) -> str:
    """Keras, its backend and the device it computes on, in one line."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        dev = jax.devices()[0]
        return f"Keras {keras.__version__} on JAX {jax.__version__}, {dev.device_kind}"
    if backend == "torch":
        import torch
        name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
        return f"Keras {keras.__version__} on PyTorch {torch.__version__}, {name}"
    return f"Keras {keras.__version__} on {backend}"


def next_epoch_fits(epoch_seconds: list[float], elapsed_s: float, budget_s: float) -> bool:
    """Whether another epoch is started: always the first; then only when the last epoch's
    time (which includes its saves) added to the time spent stays within the budget."""
    return not epoch_seconds or elapsed_s + epoch_seconds[-1] <= budget_s


def run_phase(config: TrainConfig, phase_dir: str | Path, *, minutes: float,
              epochs: int | None = None, progress: bool = True, log=print) -> dict:
    """Train `config`'s network from scratch for about `minutes` of wall time (see module),
    or, with `epochs`, for exactly that many epochs (the rate's half cosine then runs over
    the epochs, not the time: the same phase on any machine, whatever its load).

    Returns the phase record (as written to phase.json).
    """
    if minutes <= 0:
        raise HHBenchError("the phase's budget must be > 0 minutes")
    if epochs is not None and (int(epochs) != epochs or epochs < 1):
        raise HHBenchError(f"the phase's epochs must be a whole number >= 1, got {epochs!r}")
    import keras

    if int(keras.__version__.split(".")[0]) < 3:
        raise HHBenchError(f"a Keras 3 phase needs Keras 3 (found {keras.__version__})")
    phase_dir = Path(phase_dir)
    phase_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    data, val, counts = make_datasets(config)
    data_s = time.monotonic() - start
    keras.utils.set_random_seed(config.seed)
    model = build_model(config.arch, keras=keras)
    # Keras 3 compiles with XLA on JAX; on PyTorch jit_compile=True means torch.compile,
    # which is experimental there, so that backend runs eagerly
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="mae",
                  jit_compile=config.jit_compile and keras.backend.backend() != "torch")
    record = {"config": config.as_dict(), "device": backend_description(keras), "minutes": minutes,
              "data": counts, "data_s": data_s, "history": [], "best_epoch": None,
              "best_val_loss": None}
    budget_s, train_start = 60.0 * minutes, time.monotonic()
    while True:
        elapsed = time.monotonic() - train_start
        done = len(record["history"])
        if epochs is not None:
            if done == epochs:
                break
            frac = done / epochs
        else:
            if not next_epoch_fits([h["seconds"] for h in record["history"]], elapsed,
                                   budget_s):
                break
            frac = elapsed / budget_s
        lr = config.cosine_rate(frac)
        model.optimizer.learning_rate.assign(lr)
        t0 = time.monotonic()
        fit = model.fit(data["x"], data["y"], batch_size=config.batch_size, epochs=1,
                        shuffle=True, verbose=0)
        val_loss = float(model.evaluate(val["x"], val["y"], batch_size=256, verbose=0))
        epoch = len(record["history"]) + 1
        record["history"].append({"epoch": epoch, "loss": float(fit.history["loss"][-1]),
                                  "val_loss": val_loss, "lr": lr})
        weights = weight_arrays(model.get_weights())
        if record["best_val_loss"] is None or val_loss < record["best_val_loss"]:
            record.update(best_val_loss=val_loss, best_epoch=epoch)
            _save_npz(phase_dir / BEST_FILE, {**weights, "epoch": epoch})
        _save_npz(phase_dir / LAST_FILE, {**weights, **_adam_state(model), "epoch": epoch})
        # the epoch's time includes its saves: it predicts whether the next one fits
        record["history"][-1]["seconds"] = time.monotonic() - t0
        record["wall_s"] = time.monotonic() - train_start
        _write_json(phase_dir / PHASE_FILE, record)
        if progress:
            log(f"epoch {epoch}: loss {record['history'][-1]['loss']:.4f} val {val_loss:.4f} "
                f"lr {lr:.1e} {record['history'][-1]['seconds']:.1f} s", flush=True)
    return record


def import_phase(phase_dir: str | Path, out: str | Path, *, evaluate: bool = True) -> dict:
    """Make `out` a model folder of `training.train` from a finished phase (TensorFlow side).

    The phase's epochs count as the run's epochs; the run is marked finished (its model card
    is written when `evaluate`), and `hhbench train --resume --epochs N` continues it from the
    last epoch's weights and optimizer state.
    """
    import tensorflow as tf
    import tf_keras as keras

    from hhbench.cnn import files

    phase_dir, out = Path(phase_dir), Path(out)
    try:
        record = json.loads((phase_dir / PHASE_FILE).read_text())
        best, last = np.load(phase_dir / BEST_FILE), np.load(phase_dir / LAST_FILE)
    except (OSError, ValueError) as exc:
        raise HHBenchError(f"{phase_dir}: not a finished Keras 3 phase ({exc})") from None
    if (out / STATE_FILE).exists():
        raise HHBenchError(f"{out} already holds a training run")
    history = record["history"]
    epochs = tuple(int(f["epoch"]) if "epoch" in f.files else None for f in (best, last))
    if epochs != (record["best_epoch"], len(history)):
        raise HHBenchError(f"{phase_dir}: its files are from different epochs (cut off while "
                           f"saving); the last complete epoch cannot be told")
    # resumed by `hhbench train`, the run goes on at the phase's last rate (see module)
    config = replace(TrainConfig.from_dict(record["config"]), epochs=len(history),
                     lr_schedule="plateau")

    with tf.device("/CPU:0"):
        model = build_model(config.arch)
        model.compile(optimizer=keras.optimizers.Adam(history[-1]["lr"]), loss="mae")
        model.set_weights(weights_from_npz(best))
        files.save_lab_model(model, out, config=config, best=True)

        model.set_weights(weights_from_npz(last))
        opt = model.optimizer
        opt.build(model.trainable_variables)
        for slot, key in ((opt._momentums, "m"), (opt._velocities, "v")):
            for var, value in zip(slot, weights_from_npz(last, key), strict=True):
                var.assign(value)
        opt.iterations.assign(int(last["iterations"]))
        ckpt = tf.train.Checkpoint(model=model, optimizer=opt)
        tf.train.CheckpointManager(ckpt, str(out / CHECKPOINT_DIR), max_to_keep=1).save(
            checkpoint_number=len(history))

    state = initial_state(config)
    state.update(epoch=len(history), history=history, best_val_loss=record["best_val_loss"],
                 best_epoch=record["best_epoch"], wait=len(history) - record["best_epoch"],
                 lr=history[-1]["lr"], wall_s=record["wall_s"], finished=True,
                 stop_reason=f"its {record['minutes']:g}-minute budget used",
                 keras3_phase={"minutes": record["minutes"], "device": record["device"],
                               "lr_schedule": "cosine over the time budget"},
                 data=record["data"], devices=[{"kind": "keras3", "host": record["device"]}])
    _write_json(out / STATE_FILE, state)
    if evaluate:
        from hhbench.cnn.model_card import write_model_card
        write_model_card(out, state)
    return state
