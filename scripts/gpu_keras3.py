"""The lab's CNN on a GPU machine that has Keras 3 (JAX or PyTorch) but no TensorFlow.

    python scripts/gpu_keras3.py export OUT.npz [--model FOLDER]      # here, with TensorFlow
    python scripts/gpu_keras3.py figures IN.npz OUT.json               # there
    python scripts/gpu_keras3.py train PHASE_DIR --minutes M [recipe options]   # there
    python scripts/gpu_keras3.py import PHASE_DIR --out models/NAME    # here, with TensorFlow
    python scripts/gpu_keras3.py floor OUT.json [--model FOLDER]       # here: ratios to the floor

`export` writes a model's weights (in `get_weights()` order) with inputs and the lab
graph's float32 outputs on this machine: the lab's default step and a random batch, plus
the converged reference's V on the default step. `figures` measures, on the GPU, the matrix
-multiply rate (float32, TF32, bfloat16; 8192³, median of 10 after 3 warm-ups, in
PyTorch) and the network's warm latency at batches 1 and 64 in float32 and bfloat16
(Keras 3's "mixed_bfloat16" policy; median of 30 jitted calls after warm-up), each with its
accuracy against the lab graph: max |ΔV| on the random batch and the change of RMS error
against the converged reference on the default step, in mV. `train` runs
`hhbench.cnn.keras3_phase.run_phase`; `import` turns its folder into a model folder
(`import_phase`); `floor` prints the figures as multiples of the floor (FLOPs counted
from the model's layers / the measured rate).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np


def cmd_export(args) -> None:
    from hhbench import stimuli
    from hhbench.cnn import files
    from hhbench.cnn.keras3_phase import weight_arrays
    from hhbench.suite import reference_run

    loaded = files.load_model(args.model)
    meta, km = loaded.meta, loaded.keras_model
    step = stimuli.step(n_samples=km.input_shape[1])
    x_step = (step.current_ua * meta.input_scale).astype("float32")[..., None]
    x_rand = (np.random.default_rng(0).normal(size=(64, km.input_shape[1], 1)) * 20.0
              * meta.input_scale).astype("float32")
    ctx = meta.context
    v_ref = reference_run(step, "converged").v_batch[:, ctx:km.input_shape[1] - ctx]
    np.savez(args.out, x_step=x_step, y_step=km.predict(x_step, verbose=0), x_rand=x_rand,
             y_rand=km.predict(x_rand, verbose=0), v_ref=v_ref,
             output_scale=meta.output_scale,
             architecture=json.dumps(loaded.extra.get("architecture", {})),
             **weight_arrays(km.get_weights()))
    print(f"wrote {args.out}")


def _matmul_rates() -> dict:
    import torch

    n, out = 8192, {}
    for label, dtype, tf32 in (("float32", torch.float32, False), ("tf32", torch.float32, True),
                               ("bfloat16", torch.bfloat16, False)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        a = torch.randn(n, n, device="cuda", dtype=dtype)
        b = torch.randn(n, n, device="cuda", dtype=dtype)
        times = []
        for i in range(13):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            a @ b
            torch.cuda.synchronize()
            if i >= 3:
                times.append(time.perf_counter() - t0)
        out[label] = 2 * n ** 3 / statistics.median(times)
    torch.backends.cuda.matmul.allow_tf32 = False
    return {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
            "matmul_flop_per_s": out}


def _latency(model, x, reps: int = 30) -> tuple[float, np.ndarray]:
    """Median seconds of one warm forward pass, and its output (float32)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        fn = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x, training=False)[0])
        tv = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]
        xd = jax.device_put(x)
        call = lambda: fn(tv, ntv, xd).block_until_ready()  # noqa: E731
    else:
        import torch

        xd = torch.as_tensor(x, device="cuda")

        def call():
            with torch.no_grad():
                y = model(xd, training=False)
            torch.cuda.synchronize()
            return y
    for _ in range(5):
        y = call()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), np.asarray(keras.ops.convert_to_numpy(y), dtype="float32")


def cmd_figures(args) -> None:
    import keras

    from hhbench.cnn.architecture import Architecture, build_model
    from hhbench.cnn.keras3_phase import backend_description, weights_from_npz

    if args.precision == "highest":  # true float32 products instead of the GPU's TF32
        if keras.backend.backend() == "jax":
            import jax
            jax.config.update("jax_default_matmul_precision", "highest")
        else:
            import torch
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    d = np.load(args.npz)
    arch = Architecture(**json.loads(str(d["architecture"])))
    scale = float(d["output_scale"])
    report = {"device": backend_description(keras), "keras_backend": keras.backend.backend(),
              "precision": args.precision}
    try:
        report.update(_matmul_rates())
    except Exception as exc:  # the figures below still count
        report["matmul_error"] = repr(exc)[:300]

    def rms(y):
        return float(np.sqrt(np.mean((y[..., 0] / scale - d["v_ref"]) ** 2)))

    rms_lab = rms(d["y_step"])
    report["rms_vs_converged_mv_lab_graph_cpu"] = rms_lab
    rows = []
    for policy in ("float32", "mixed_bfloat16"):
        keras.config.set_dtype_policy(policy)
        model = build_model(arch, keras=keras)
        model.set_weights(weights_from_npz(d))
        _, y_step = _latency(model, d["x_step"], reps=3)
        for batch in (1, 64):
            x = np.repeat(d["x_rand"][:1], batch, 0) if batch == 1 else d["x_rand"][:batch]
            seconds, y = _latency(model, x)
            rows.append({"policy": policy, "batch": batch, "seconds": seconds,
                         "max_abs_diff_mv": float(np.abs(y - d["y_rand"][:batch]).max() / scale),
                         "rms_change_mv": rms(y_step) - rms_lab})
            print(json.dumps(rows[-1]), flush=True)
    report["cnn"] = rows
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)


def cmd_train(args) -> None:
    from hhbench.cnn.architecture import Architecture
    from hhbench.cnn.keras3_phase import run_phase
    from hhbench.cnn.training import StepData, TrainConfig

    config = TrainConfig(arch=Architecture(), data=StepData(early_fraction=args.early_fraction),
                         n_samples=args.samples, batch_size=args.batch_size,
                         learning_rate=args.learning_rate,
                         min_learning_rate=args.min_learning_rate, seed=args.seed,
                         input_scale=args.input_scale, lr_schedule="cosine")
    record = run_phase(config, args.phase_dir, minutes=args.minutes)
    print(f"best epoch {record['best_epoch']} of {len(record['history'])}, "
          f"val loss {record['best_val_loss']:.5f}, {record['device']}")


def cmd_import(args) -> None:
    from hhbench.cnn.keras3_phase import import_phase

    state = import_phase(args.phase_dir, args.out)
    print(f"wrote {args.out}: {state['epoch']} epochs, best {state['best_epoch']}")


def cmd_floor(args) -> None:
    from hhbench.cnn import files
    from hhbench.cnn.flops import count_flops

    fig = json.load(open(args.json))
    flops = count_flops(files.load_model(args.model).keras_model)["matmul_flops"]
    rates = fig["matmul_flop_per_s"]
    print(f"precision: {fig.get('precision', 'default')}")
    print(f"{fig['gpu']}: matmul float32 {rates['float32'] / 1e12:.1f}, TF32 "
          f"{rates['tf32'] / 1e12:.1f}, bfloat16 {rates['bfloat16'] / 1e12:.1f} TFLOP/s; "
          f"network {flops / 1e9:.3f} GFLOP per trace; {fig['device']}")
    print("| precision | batch | per trace (µs) | floor (µs) | × floor | max |ΔV| (mV) "
          "| Δ RMS vs converged (mV) |\n|---|---|---|---|---|---|---|")
    # at the default precision a GPU backend multiplies float32 in TF32, so that is its floor
    fp32 = "float32" if fig.get("precision") == "highest" else "tf32"
    for r in fig["cnn"]:
        rate = rates["bfloat16" if "bfloat16" in r["policy"] else fp32]
        per_trace = r["seconds"] / r["batch"]
        label = r["policy"] if "bfloat16" in r["policy"] else fp32
        print(f"| {label} | {r['batch']} | {per_trace * 1e6:.1f} | {flops / rate * 1e6:.2f} "
              f"| {per_trace / (flops / rate):.1f} | {r['max_abs_diff_mv']:.2g} "
              f"| {r['rms_change_mv']:+.2g} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("out")
    e.add_argument("--model", default="models/hh-step-cnn")
    f = sub.add_parser("figures")
    f.add_argument("npz")
    f.add_argument("out")
    f.add_argument("--precision", choices=("default", "highest"), default="default",
                   help="matrix products in float32 as the backend does them on a GPU by "
                        "default (TF32 on recent NVIDIA chips), or at full float32")
    t = sub.add_parser("train")
    t.add_argument("phase_dir")
    t.add_argument("--minutes", type=float, required=True)
    t.add_argument("--samples", type=int, default=30_000)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--learning-rate", type=float, default=2e-3)
    t.add_argument("--min-learning-rate", type=float, default=1e-5)
    t.add_argument("--input-scale", type=float, default=0.025)
    t.add_argument("--early-fraction", type=float, default=0.6)
    t.add_argument("--seed", type=int, default=1)
    i = sub.add_parser("import")
    i.add_argument("phase_dir")
    i.add_argument("--out", required=True)
    fl = sub.add_parser("floor")
    fl.add_argument("json")
    fl.add_argument("--model", default="models/hh-step-cnn")
    args = p.parse_args()
    from hhbench.errors import HHBenchError
    try:
        globals()[f"cmd_{args.cmd}"](args)
    except ModuleNotFoundError as exc:  # Keras 3's backend (KERAS_BACKEND) is not installed
        print(f"error: {exc} (KERAS_BACKEND={os.environ.get('KERAS_BACKEND', 'tensorflow')})",
              file=sys.stderr)
        sys.exit(2)
    except (HHBenchError, OSError, KeyError, ValueError) as exc:  # bad files or arguments
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
