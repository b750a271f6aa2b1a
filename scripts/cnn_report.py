"""The CNN against its floor, measured in one run: a Markdown report for the README.

    python scripts/cnn_report.py [--model PATH] [--device cpu|gpu|auto] [--batches 1,64]
                                 [--half] [--variants] [--quick]

In one process (the same TensorFlow, the same device):
1. the floor: the network's matmul FLOPs per trace, counted from its layers
   (`hhbench.cnn.flops`), over TensorFlow's float32 matmul rate measured now
   (`hhbench.floor.matmul_rate`);
2. the graphs, as a bare compiled call on a ready tensor: the lab's Keras graph in a
   tf.function, the fast 1-D graph (`hhbench.cnn.fastgraph`: conv1d, conv1d + XLA, matmul;
   with --half or on a GPU also float16 and bfloat16; on the CPU also through TensorFlow
   Lite, `hhbench.cnn.litegraph`, on a ready NumPy array), per-trace time at each batch,
   × floor, the largest |ΔV| (mV) against the lab graph on the lab's three stimuli, and the
   change in accuracy: |RMSE − RMSE of the lab graph| against the converged reference on
   the lab's default step (the target: at most 1e-4 mV);
3. the runner (`hhbench.cnn.runner`, windows and scaling included) in its modes "lite"
   (the fast graph through TensorFlow Lite, the CPU default), "compiled" (the fast graph
   in a tf.function, the GPU default), "lab-graph" and "predict" (the lab's way).
With --variants, the bare lab graph and fast graph (in a tf.function and, on the CPU,
through TensorFlow Lite, whose thread count follows the intra-op setting) are measured
again in fresh processes under other TensorFlow settings (oneDNN off; one or two intra-op
threads, one inter-op thread), each against the floor measured in that process. All timings: hhbench.timing.measure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

from hhbench.environment import describe_machine, one_line
from hhbench.suite import case_stimulus
from hhbench.timing import TimingSettings, measure

FULL = TimingSettings(warmup_calls=2, min_repeats=10, min_time_s=1.0)
QUICK = TimingSettings(warmup_calls=1, min_repeats=3, min_time_s=0.2)
VARIANTS = [("TensorFlow defaults", {}, None), ("oneDNN off", {"TF_ENABLE_ONEDNN_OPTS": "0"}, None),
            ("2 intra-op, 1 inter-op threads", {}, "2,1"),
            ("1 intra-op, 1 inter-op thread", {}, "1,1")]


def _threads(spec: str | None) -> None:
    if spec:
        import tensorflow as tf
        intra, inter = (int(v) for v in spec.split(","))
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)


def _floor(runner, settings) -> tuple[float, float, int]:
    """(floor seconds per trace, float32 matmul FLOP/s, FLOPs per trace)."""
    from hhbench.cnn.flops import count_flops
    from hhbench.floor import matmul_rate

    flops = count_flops(runner.model)["matmul_flops"]
    rate, _ = matmul_rate("float32", device=runner.tf_device, settings=settings)
    return flops / rate, rate, flops


def _network_input(runner, current_ua: np.ndarray):
    """The first window of each trace of `current_ua`, scaled as the network sees it, as a
    ready (traces, window, 1) float32 tensor on the runner's device."""
    import tensorflow as tf

    with tf.device(runner.tf_device):
        return tf.constant(current_ua[:, :runner.window, None] * runner.input_scale, tf.float32)


def _ready(graph, x):
    """The input as `graph` takes it: a tensor, or a NumPy array for TensorFlow Lite."""
    from hhbench.cnn.litegraph import LiteGraph
    return x.numpy() if isinstance(graph, LiteGraph) else x


def _output(graph, x) -> np.ndarray:
    return np.asarray(graph(_ready(graph, x)))


def _bare(graph, batch: int, runner, settings) -> float:
    """Warm median seconds per trace of graph(x) on a ready (batch, window, 1) input (the
    step stimulus, scaled as the network sees it)."""
    x = _ready(graph, _network_input(runner, case_stimulus("step", batch).current_ua))
    timed, _ = measure(lambda: graph(x), settings)
    return timed.median_s / batch


def _agreement(graph, lab_graph, runner) -> float:
    """Largest |ΔV| in mV between two graphs on the lab's step, sine and noise stimuli."""
    cur = np.concatenate([case_stimulus(k, 2).current_ua for k in ("step", "sine", "noise")])
    x = _network_input(runner, cur)
    diff = np.abs(_output(graph, x) - _output(lab_graph, x)).max()
    return float(diff / runner.output_scale)


def _accuracy_change(graph, lab_graph, runner) -> float:
    """|RMSE(graph) − RMSE(lab graph)| in mV, each against the converged reference on the lab's
    default step (one window from sample 0): the change in accuracy the target bounds."""
    from hhbench import metrics
    from hhbench.suite import cached_reference

    x = _network_input(runner, case_stimulus("step", 1).current_ua)
    ref = cached_reference("step", 1).v_batch[:, runner.context:runner.context + runner.out_len]
    errors = [metrics.rmse_mv(ref, _output(g, x).reshape(1, -1) / runner.output_scale)[0]
              for g in (graph, lab_graph)]
    return float(abs(errors[0] - errors[1]))


def graphs_table(runner, batches, settings, half: bool) -> tuple[list[str], dict]:
    from hhbench.cnn.fastgraph import build_fast_graph
    from hhbench.cnn.litegraph import LiteGraph

    floor_s, rate, flops = _floor(runner, settings)
    lab = runner.lab_network
    on_gpu = "GPU" in runner.tf_device.upper()
    variants = [("lab graph (Keras, (k, 1) Conv2D)", lab),
                ("fast: conv1d", build_fast_graph(runner.model, device=runner.tf_device)),
                ("fast: conv1d + XLA", build_fast_graph(runner.model, jit_compile=True,
                                                         device=runner.tf_device)),
                ("fast: matmul", build_fast_graph(runner.model, impl="matmul",
                                                  device=runner.tf_device))]
    if not on_gpu:
        variants.insert(2, ("fast: conv1d, TensorFlow Lite",
                            LiteGraph(build_fast_graph(runner.model, device=runner.tf_device))))
    if half or on_gpu:
        for dtype in ("float16", "bfloat16"):
            variants.append((f"fast: conv1d, {dtype}",
                             build_fast_graph(runner.model, dtype=dtype, device=runner.tf_device)))
    lines = [f"Floor on {runner.tf_device}: {flops / 1e9:.3f} GFLOP per trace at "
             f"{rate / 1e9:.0f} GFLOP/s (TensorFlow float32 matmul, this run) = "
             f"{floor_s * 1e3:.2f} ms per trace.", "",
             "| graph (bare call) | "
             + " | ".join(f"batch {b}: per trace, × floor" for b in batches)
             + " | max |ΔV| vs lab graph | Δ accuracy (≤ 1e-4) |",
             "|---|" + "---|" * len(batches) + "---|---|"]
    times = {}
    for name, graph in variants:
        cells = []
        for b in batches:
            t = _bare(graph, b, runner, settings)
            times[(name, b)] = t
            cells.append(f"{t * 1e3:.2f} ms, {t / floor_s:.2f}×")
        agree = "-" if graph is lab else f"{_agreement(graph, lab, runner):.1e} mV"
        change = "-" if graph is lab else f"{_accuracy_change(graph, lab, runner):.1e} mV"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {agree} | {change} |")
    for b in batches:
        lab_t, fast_t = times[(variants[0][0], b)], times[(variants[1][0], b)]
        lines.append(f"\nBatch {b}: the fast graph is {lab_t / fast_t:.2f}× faster than the "
                     f"lab graph" + (f", {fast_t / times[(variants[2][0], b)]:.2f}× faster "
                                     "again through TensorFlow Lite." if not on_gpu else "."))
    return lines, {"floor_s": floor_s}


def runner_table(model, device, batches, settings, floor_s) -> list[str]:
    from hhbench.cnn.runner import CnnRunner

    lines = ["", "| runner mode | " + " | ".join(f"batch {b}: per trace, × floor" for b in batches)
             + " |", "|---|" + "---|" * len(batches)]
    per = {}
    modes = ["lite", "compiled", "lab-graph", "predict"]
    default = CnnRunner(model, device=device).mode
    if default != "lite":  # Lite runs on the CPU only
        modes.remove("lite")
    for mode in modes:
        runner = CnnRunner(model, device=device, mode=mode)
        cells = []
        for b in batches:
            cur = case_stimulus("step", b).current_ua
            timed, _ = measure(lambda: runner.run(cur), settings)
            per[(mode, b)] = t = timed.median_s / b
            cells.append(f"{t * 1e3:.2f} ms, {t / floor_s:.2f}×")
        lines.append(f"| {mode} ({runner.graph}) | " + " | ".join(cells) + " |")
    for b in batches:
        lines.append(f"\nBatch {b}: predict (the lab's way) / runner ({default}, the default) "
                     f"= {per[('predict', b)] / per[(default, b)]:.2f}×; lab graph / fast graph "
                     f"through the runner = {per[('lab-graph', b)] / per[('compiled', b)]:.2f}×"
                     + (f"; tf.function / TensorFlow Lite = "
                        f"{per[('compiled', b)] / per[('lite', b)]:.2f}×." if "lite" in modes
                        else "."))
    return lines


def probe(args) -> None:
    """One variant (run in a fresh process): JSON with the floor and the bare graph times."""
    _threads(args.threads)
    from hhbench.cnn.fastgraph import build_fast_graph
    from hhbench.cnn.litegraph import LiteGraph
    from hhbench.cnn.runner import CnnRunner

    settings = QUICK if args.quick else FULL
    runner = CnnRunner(args.model, device=args.device, mode="lab-graph")
    floor_s, _, _ = _floor(runner, settings)
    fast = build_fast_graph(runner.model, device=runner.tf_device)
    lite = LiteGraph(fast) if "CPU" in runner.tf_device.upper() else None
    out = {"floor_s": floor_s}
    for b in args.batch_list:
        out[f"lab_{b}"] = _bare(runner.lab_network, b, runner, settings)
        out[f"fast_{b}"] = _bare(fast, b, runner, settings)
        out[f"lite_{b}"] = _bare(lite, b, runner, settings) if lite else None
    print("PROBE " + json.dumps(out))


def variants_table(args) -> list[str]:
    lines = ["", "| TensorFlow setting (fresh process) | floor | " + " | ".join(
        f"b{b} lab × floor | b{b} fast × floor | b{b} fast, Lite × floor"
        for b in args.batch_list) + " |",
        "|---|---|" + "---|---|---|" * len(args.batch_list)]
    for name, env, threads in VARIANTS:
        batches = ",".join(map(str, args.batch_list))
        cmd = [sys.executable, __file__, "--probe", "--device", args.device, "--batches", batches] \
            + (["--model", args.model] if args.model else []) \
            + (["--threads", threads] if threads else []) + (["--quick"] if args.quick else [])
        proc = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
        found = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE ")]
        if proc.returncode or not found:
            lines.append(f"| {name} | failed: {proc.stderr.strip().splitlines()[-1:]} |")
            continue
        r = json.loads(found[-1][6:])
        cells = [f"{r[f'lab_{b}'] / r['floor_s']:.2f}× | {r[f'fast_{b}'] / r['floor_s']:.2f}× | "
                 + (f"{r[f'lite_{b}'] / r['floor_s']:.2f}×" if r[f"lite_{b}"] else "-")
                 for b in args.batch_list]
        lines.append(f"| {name} | {r['floor_s'] * 1e3:.2f} ms | " + " | ".join(cells) + " |")
    return lines


def _batch_list(text: str) -> list[int]:
    """'1,64' → [1, 64]; anything else is an argparse error (one line, exit 2)."""
    try:
        batches = [int(b) for b in text.split(",")]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1:
        raise argparse.ArgumentTypeError(f"expected batch sizes like 1,64, got {text!r}")
    return batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batches", default="1,64", type=_batch_list,
                        help="comma-separated batch sizes, each at least 1")
    parser.add_argument("--half", action="store_true", help="float16/bfloat16 rows on a CPU too")
    parser.add_argument("--variants", action="store_true",
                        help="TensorFlow settings, in fresh processes")
    parser.add_argument("--quick", action="store_true", help="few repeats (a check, not figures)")
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.batch_list = args.batches
    from hhbench.cnn.runner import CnnRunner  # imports TensorFlow quietly
    if args.probe:
        probe(args)
        return
    settings = QUICK if args.quick else FULL
    print(f"Machine: {one_line(describe_machine())}\n")
    runner = CnnRunner(args.model, device=args.device, mode="lab-graph")
    lines, info = graphs_table(runner, args.batch_list, settings, args.half)
    lines += runner_table(args.model, args.device, args.batch_list, settings, info["floor_s"])
    if args.variants:
        lines += variants_table(args)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
