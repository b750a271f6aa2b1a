"""Every GPU measurement of hhbench in one run on a GPU machine, with that machine's own
packages (no pip: run from a checkout with `PYTHONPATH=.`):

    PYTHONPATH=. python scripts/gpu_report.py OUT_DIR            # the full run, ≤ 8 minutes
    PYTHONPATH=. python scripts/gpu_report.py OUT_DIR --quick    # small sizes (tests it on a CPU)

Sections, each written to OUT_DIR/gpu_report.json as soon as it is done (a run stopped
half-way keeps what it measured), then OUT_DIR/gpu_report.md:
  machine     GPUs, driver, JAX / numba / numba-cuda versions;
  agreement   `numba-cuda` and `jax` (float64: euler and exp-euler) against the CPU's
              `numpy` and `exp-euler` on step, sine and noise traces, one of which
              diverges: max |ΔV| on finite samples and whether the diverged flags agree;
              the float32 variants' RMS difference from float64;
  throughput  neuron-steps/s of `numba-cuda` and `jax` at `--traces` traces × 2,560
              samples (10⁶ by default), float64 and float32, device only (inputs already
              on the GPU, synchronised) and round trip (host arrays in and out);
  cnn         the CNN through JAX on the GPU, float32 exact / TF32 / bfloat16, at batches
              1, 64, 1,024 and 4,096: per-trace time (device only and round trip) and
              its floor (matmul FLOPs / the measured matmul rate of that precision);
  floor       `hhbench floor --device gpu` (ceilings measured with JAX on the GPU);
  scaling     `hhbench scaling --device cpu,gpu` over batches 1 … 10⁶ (per-trace cost of
              every simulator on every device, where the GPU overtakes the CPU) with its
              figure, scaling.png;
  run         `hhbench run --device cpu,gpu` in fresh worker processes (the harness as a
              user runs it), step stimulus, batches 1 and 64: results.json.
Speed is reported as measured in this one run, with the device named. The 10⁶-trace
float64 throughput needs about 45 GB of GPU memory and 90 GB of host memory (an H100 or
H200 machine); a section that runs out says so and the others go on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import numpy as np  # noqa: E402

from hhbench import stimuli  # noqa: E402
from hhbench.errors import DivergenceWarning  # noqa: E402
from hhbench.suite import case_stimulus, make_backend  # noqa: E402
from hhbench.timing import TimingSettings, measure  # noqa: E402

HH_GPU = ("numba-cuda", "jax")
QUICK_TIMING = TimingSettings(warmup_calls=1, min_repeats=3, min_time_s=0.2)


def _device(args, backend: str) -> str:
    """Where a GPU backend runs: `--device` (gpu); one that runs on GPUs only always asks
    for "gpu" (numba-cuda: with NUMBA_ENABLE_CUDASIM=1, numba's simulator plays one, a
    test of this script)."""
    from hhbench.backends import check_name
    return "gpu" if "cpu" not in check_name(backend).device_kinds else args.device


def section_machine(args) -> dict:
    out = {"python": platform.python_version(), "host": platform.node()}
    try:
        out["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        out["nvidia_smi"] = f"unavailable: {exc}"
    for module in ("jax", "numba", "numba_cuda", "scipy", "numpy"):
        try:
            out[module] = __import__(module).__version__
        except Exception as exc:  # a missing package is a fact to report
            out[module] = f"not importable: {type(exc).__name__}"
    try:
        import jax
        out["jax_devices"] = [str(d) for d in jax.devices()]
    except Exception as exc:
        out["jax_devices"] = f"{type(exc).__name__}: {exc}"
    return out


def _agreement_stimulus(n_samples: int) -> stimuli.Stimulus:
    """Step (spiking), sine, noise and a −20 µA/cm² step (forward Euler diverges) in one
    batch of four traces."""
    parts = [stimuli.make("step", n_samples=n_samples),
             stimuli.make("sine", n_samples=n_samples),
             stimuli.white_noise(seed=3, batch=1, n_samples=n_samples),
             stimuli.make("step", n_samples=n_samples, amplitude_ua=-20.0)]
    current = np.concatenate([p.current_ua.reshape(1, -1) for p in parts])
    return stimuli.Stimulus(kind="mixed", current_ua=current, fs_khz=parts[0].fs_khz,
                            params={"parts": "step, sine, noise, step -20"})


def section_agreement(args) -> list[dict]:
    stim = _agreement_stimulus(args.samples)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)
        cpu = {"euler": make_backend("numpy", device="cpu").run(stim),
               "exp-euler": make_backend("exp-euler", device="cpu").run(stim)}
        for name in HH_GPU:
            for kernel in ("euler", "exp-euler"):
                for precision in ("float64", "float32"):
                    try:
                        b = make_backend(name, device=_device(args, name),
                                         options={"kernel": kernel, "precision": precision})
                        r = b.run(stim)
                    except Exception as exc:
                        rows.append({"backend": name, "kernel": kernel, "precision": precision,
                                     "error": f"{type(exc).__name__}: {exc}"[:300]})
                        continue
                    ref = cpu[kernel]
                    both = np.isfinite(ref.v_batch) & np.isfinite(r.v_batch)
                    diff = np.abs(ref.v_batch - r.v_batch)[both]
                    rows.append({"backend": name, "kernel": kernel, "precision": precision,
                                 "device": b.device,
                                 "max_abs_diff_mv": float(diff.max()) if diff.size else None,
                                 "rms_diff_mv": float(np.sqrt(np.mean(diff ** 2)))
                                 if diff.size else None,
                                 "diverged": r.diverged.tolist(),
                                 "diverged_cpu": ref.diverged.tolist(),
                                 "flags_agree": bool(np.array_equal(r.diverged, ref.diverged))})
    return rows


def _timed_pair(backend, stim, settings) -> dict:
    """Round-trip and device-only seconds per call of `backend` on `stim`, in that order,
    each side's arrays freed before the other's are made: at 10⁶ float64 traces the
    current and V are 20 GB each, and the two sides together would not fit an H100."""
    import gc
    out = {"device": backend.device}
    timed, last = measure(lambda: backend.run(stim), TimingSettings(
        warmup_calls=0, min_repeats=1 if stim.batch_size >= 10 ** 5 else 3, min_time_s=0.0))
    out["round_trip_s"] = timed.median_s
    del last
    gc.collect()
    call = backend.device_call(stim)
    if call is not None:
        def timed_call():  # the call's device arrays are dropped at once: no result kept
            call()
        timed, _ = measure(timed_call, settings)
        out["device_only_s"] = timed.median_s
        out["device_only_cold_s"] = timed.cold_s
    call = timed_call = None  # the device's inputs go before the next backend's
    gc.collect()
    return out


def section_throughput(args) -> list[dict]:
    stim = case_stimulus("step", args.traces, n_samples=args.samples)
    steps = stim.batch_size * stim.n_samples
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)
        for name in HH_GPU:
            for precision in ("float64", "float32"):
                row = {"backend": name, "precision": precision, "traces": stim.batch_size,
                       "samples": stim.n_samples}
                try:
                    b = make_backend(name, device=_device(args, name),
                                     options={"precision": precision})
                    b.prepare()
                    row.update(_timed_pair(b, stim, QUICK_TIMING))
                    if "device_only_s" in row:
                        row["neuron_steps_per_s"] = steps / row["device_only_s"]
                    row["round_trip_steps_per_s"] = steps / row["round_trip_s"]
                except Exception as exc:
                    row["error"] = f"{type(exc).__name__}: {exc}"[:300]
                rows.append(row)
                b = None  # the backend's device buffers go before the next one's
                _flush(args)
    return rows


def section_cnn(args) -> list[dict]:
    from hhbench.floor import cnn_floor_s, gpu_ceilings, measure_ceilings
    rows = []
    ceilings = gpu_ceilings("gpu:0") if args.device == "gpu" else measure_ceilings()
    for precision in ("float32", "tf32", "bfloat16"):
        try:
            b = make_backend("cnn", device=args.device, options={"runtime": "jax",
                                                                 "precision": precision})
            b.prepare()
        except Exception as exc:
            rows.append({"precision": precision, "error": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        for batch in args.cnn_batches:
            stim = case_stimulus("step", batch)
            row = {"precision": precision, "batch": batch,
                   "settings": {k: str(v) for k, v in b.settings().items()}}
            try:
                row.update(_timed_pair(b, stim, QUICK_TIMING))
                work = b.trace_work(stim.n_samples)
                if work:
                    floor = cnn_floor_s(work["matmul_flops"], ceilings,
                                        work.get("precision", precision))
                    row["floor_per_trace_s"] = floor
                    per_trace = row.get("device_only_s", row["round_trip_s"]) / batch
                    row["per_trace_s"] = per_trace
                    row["achieved_over_floor"] = per_trace / floor
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"[:300]
            rows.append(row)
            _flush(args)
    return rows


def section_floor(args) -> dict:
    from hhbench.floor import floor_report, format_floor
    report = floor_report(("numba-cuda", "jax", "cnn"), batch=args.floor_batch,
                          device=args.device,
                          settings=QUICK_TIMING,
                          options={"cnn": {"runtime": "jax"}})
    report["markdown"] = format_floor(report)
    return report


def section_scaling(args) -> dict:
    from hhbench.scaling import ScalingConfig, run_scaling, write_scaling
    config = ScalingConfig(backends=("numba", "numba-cuda", "jax", "cnn"),
                           devices=("cpu", args.device), max_batch=args.traces,
                           n_samples=args.scaling_samples, lengths=(args.scaling_samples,),
                           budget_s=args.budget_s, options={"cnn": {"runtime": "jax"}},
                           timing=TimingSettings(warmup_calls=1, min_repeats=2,
                                                 min_time_s=0.05))
    results = run_scaling(config, progress=True)
    write_scaling(results, args.out / "scaling")
    return {**results.as_dict(), "markdown": results.to_markdown()}


def section_run(args) -> dict:
    out = args.out / "results.json"
    cmd = [sys.executable, "-c", "import sys; from hhbench.cli import main; sys.exit(main())",
           "run", "--no-progress", "--stimuli", "step",
           "--backends", "numba,numba-cuda,jax,cnn", "--device", f"cpu,{args.device}",
           "--batch", "1,64", "--processes", "3", "--repeats", "5", "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.run_timeout_s,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              filter(None, [str(Path.cwd()), os.environ.get("PYTHONPATH")]))})
    return {"command": "hhbench " + " ".join(cmd[3:]), "exit": proc.returncode,
            "table": proc.stdout[-6000:], "stderr": proc.stderr[-2000:]}


SECTIONS = {"machine": section_machine, "agreement": section_agreement,
            "throughput": section_throughput, "cnn": section_cnn, "floor": section_floor,
            "scaling": section_scaling, "run": section_run}
REPORT: dict = {}


def _flush(args) -> None:
    tmp = args.out / "gpu_report.json.tmp"
    tmp.write_text(json.dumps(REPORT, indent=1, default=str))
    os.replace(tmp, args.out / "gpu_report.json")


def markdown(report: dict) -> str:
    """The report as Markdown: one table per section."""
    lines = [f"# hhbench on a GPU, {report.get('date', '')}", ""]
    m = report.get("machine", {})
    lines += [f"GPU: {m.get('nvidia_smi', '?')}; JAX {m.get('jax', '?')}, numba "
              f"{m.get('numba', '?')}, numba-cuda {m.get('numba_cuda', '?')}, Python "
              f"{m.get('python', '?')}", ""]
    if report.get("agreement"):
        lines += ["## Agreement with the CPU (float64 equal within 1e-9 mV is the bar)", "",
                  "| backend | kernel | precision | max abs diff (mV) | RMS diff (mV) | "
                  "diverged flags agree |", "|---|---|---|---|---|---|"]
        for r in report["agreement"]:
            lines.append(f"| {r['backend']} | {r['kernel']} | {r['precision']} | "
                         f"{r.get('max_abs_diff_mv', r.get('error', '-'))} | "
                         f"{r.get('rms_diff_mv', '-')} | {r.get('flags_agree', '-')} |")
    if report.get("throughput"):
        lines += ["", "## HH throughput (neuron-steps/s)", "",
                  "| backend | precision | traces x samples | device only | round trip |",
                  "|---|---|---|---|---|"]
        for r in report["throughput"]:
            dev = r.get("neuron_steps_per_s")
            rt = r.get("round_trip_steps_per_s")
            lines.append(f"| {r['backend']} | {r['precision']} | {r['traces']} x "
                         f"{r['samples']} | {f'{dev:.3g}' if dev else r.get('error', '-')} | "
                         f"{f'{rt:.3g}' if rt else '-'} |")
    if report.get("cnn"):
        lines += ["", "## CNN through JAX on the GPU (per trace)", "",
                  "| precision | batch | device only | round trip | floor | achieved/floor |",
                  "|---|---|---|---|---|---|"]
        for r in report["cnn"]:
            if "error" in r and "batch" not in r:
                lines.append(f"| {r['precision']} | - | {r['error']} | | | |")
                continue
            b = r["batch"]
            f = lambda s: "-" if s is None else f"{s / b * 1e3:.3g} ms"  # noqa: E731
            floor = r.get("floor_per_trace_s")
            ratio = r.get("achieved_over_floor")
            lines.append(f"| {r['precision']} | {b} | {f(r.get('device_only_s'))} | "
                         f"{f(r.get('round_trip_s'))} | "
                         f"{'-' if floor is None else f'{floor * 1e3:.3g} ms'} | "
                         f"{'-' if ratio is None else f'{ratio:.2f}x'} |")
    for key in ("floor", "scaling"):
        if report.get(key, {}).get("markdown"):
            lines += ["", f"## {key}", "", report[key]["markdown"]]
    if report.get("run"):
        lines += ["", "## hhbench run --device cpu,gpu", "", "```", report["run"]["table"],
                  "```"]
    for key, why in report.get("errors", {}).items():
        lines += ["", f"section {key} failed: {why}"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="folder for gpu_report.json/.md and figures")
    p.add_argument("--quick", action="store_true", help="small sizes: a test of the script")
    p.add_argument("--device", default="gpu", choices=("gpu", "cpu"),
                   help="where jax and the cnn run (cpu: a test of this script on a machine "
                        "without a GPU, with NUMBA_ENABLE_CUDASIM=1 for numba-cuda)")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated, of {', '.join(SECTIONS)}")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    # quick: numba's CUDA simulator steps every thread in Python, so few samples; the CNN
    # (scaling) needs more than 2 x 256 of context
    args.samples = 64 if args.quick else 2560
    args.scaling_samples = 640 if args.quick else 2560
    args.traces = 4 if args.quick else 10 ** 6
    args.cnn_batches = (1, 8) if args.quick else (1, 64, 1024, 4096)
    args.floor_batch = 16 if args.quick else 4096
    args.budget_s = 2.0 if args.quick else 12.0
    args.run_timeout_s = 300 if args.quick else 150
    REPORT["date"] = time.strftime("%Y-%m-%d")
    REPORT["settings"] = {"quick": args.quick, "traces": args.traces, "samples": args.samples}
    for name in args.sections.split(","):
        start = time.perf_counter()
        print(f"gpu_report: {name} …", flush=True)
        try:
            REPORT[name] = SECTIONS[name](args)
        except Exception as exc:  # one section's failure must not lose the others
            traceback.print_exc()
            REPORT.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"[:500]
        REPORT.setdefault("seconds", {})[name] = round(time.perf_counter() - start, 1)
        _flush(args)
    (args.out / "gpu_report.md").write_text(markdown(REPORT))
    print(f"wrote {args.out / 'gpu_report.json'} and {args.out / 'gpu_report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
