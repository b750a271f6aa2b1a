"""The HH kernels against their targets, measured in ONE run on this machine (ratios).

    python scripts/kernel_report.py [--batch 1024] [--quick]

Prints Markdown tables:
1. forward Euler: the `numba` backend against a straightforward numba kernel
   (`backends.compiled.baseline`: traces outer, time inner, `math.exp`, `prange`, no gate
   output), batched (noise, `--batch`
   traces x 2560 samples) and on one trace, in M neuron-steps/s, with the `numpy` backend
   for scale and the largest |V_numba - V_numpy|;
2. odeint (restarted LSODA, compiled right-hand side) against `odeint-lab` (the lab's way:
   one LSODA call over the trace with a Python right-hand side) on the lab's step, sine and
   noise, with each one's RMS distance to the converged reference;
3. exponential Euler (gates first) against forward Euler: RMS error on the lab's default step
   against the converged reference, and warm time;
4. the operation count of one neuron-step of each step kernel (counted by running it).
All timings use hhbench.timing.measure (cold call apart, warm-up, median of repeats); every
backend is prepared (compiled) before its timing. Targets are those of the performance issue.
"""

from __future__ import annotations

import argparse
import math
import warnings

import numpy as np

from hhbench import metrics, model
from hhbench.backends import get_backend, kernels
from hhbench.backends.compiled.baseline import run_straightforward
from hhbench.environment import describe_machine, one_line
from hhbench.errors import DivergenceWarning
from hhbench.suite import cached_reference, case_stimulus
from hhbench.timing import TimingSettings, measure

SETTINGS = TimingSettings(warmup_calls=1, min_repeats=5, min_time_s=1.0)
QUICK = TimingSettings(warmup_calls=1, min_repeats=3, min_time_s=0.2)


def rms(reference: np.ndarray, v: np.ndarray) -> float:
    """RMS distance in mV (the largest over traces)."""
    return float(np.max(metrics.rmse_mv(reference, v)))


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b| where both are finite (a diverged trace is NaN from its first bad
    sample on in both); inf if they diverge at different samples."""
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return math.inf
    both = np.isfinite(a) & np.isfinite(b)
    return float(np.max(np.abs(a[both] - b[both]))) if both.any() else 0.0


def euler_section(batch: int, settings: TimingSettings) -> None:
    import numba

    numba_b, numpy_b = get_backend("numba"), get_backend("numpy")
    numba_b.prepare()
    threads = numba.config.NUMBA_NUM_THREADS
    print(f"### Forward Euler (threads: {threads})\n")
    print("| case | straightforward numba | `numba` | ratio (target) | `numpy` | "
          "max \\|numba − numpy\\| |")
    print("|---|---|---|---|---|---|")
    for label, n_traces, target in ((f"{batch} noise traces", batch, 3.5), ("one trace", 1, 2.0)):
        stim = case_stimulus("noise", n_traces)
        steps = stim.current_ua.size
        t_base, _ = measure(lambda: run_straightforward(stim.current_ua, stim.dt_ms), settings)
        t_numba, r_numba = measure(lambda: numba_b.run(stim), settings)
        numpy_settings = TimingSettings(warmup_calls=0, min_repeats=1 if n_traces > 1 else 3,
                                        min_time_s=0.0)
        t_numpy, r_numpy = measure(lambda: numpy_b.run(stim), numpy_settings)
        rate = lambda t: f"{steps / t.median_s / 1e6:.3g} M/s"  # noqa: E731
        ratio = t_base.median_s / t_numba.median_s
        print(f"| {label} | {rate(t_base)} | {rate(t_numba)} | **{ratio:.2f}x** (≥ {target}x) | "
              f"{rate(t_numpy)} | {max_abs_diff(r_numba.v_batch, r_numpy.v_batch):.1e} mV |")
    print()


def odeint_section(settings: TimingSettings) -> None:
    fast, lab = get_backend("odeint"), get_backend("odeint-lab")
    fast.prepare()
    print("### odeint (LSODA, rtol = atol = 1.49e-8), one trace\n")
    print("| stimulus | `odeint-lab` | RMS vs converged | `odeint` | RMS vs converged (≤ 0.01) | "
          "speed-up (≥ 10x on step) |")
    print("|---|---|---|---|---|---|")
    once = TimingSettings(warmup_calls=0, min_repeats=1, min_time_s=0.0)
    for kind in ("step", "sine", "noise"):
        stim = case_stimulus(kind, 1)
        ref = cached_reference(kind, 1).v_mv
        t_lab, r_lab = measure(lambda: lab.run(stim), settings if kind == "step" else once)
        t_fast, r_fast = measure(lambda: fast.run(stim), settings)
        print(f"| {kind} | {t_lab.median_s * 1e3:.1f} ms | "
              f"{rms(ref, r_lab.v_mv):.1e} mV | {t_fast.median_s * 1e3:.1f} ms | "
              f"{rms(ref, r_fast.v_mv):.1e} mV | "
              f"**{t_lab.median_s / t_fast.median_s:.2f}x** |")
    print()


def exp_euler_section(settings: TimingSettings) -> None:
    from hhbench.backends import numba_engine

    stim = case_stimulus("step", 1)
    ref = cached_reference("step", 1).v_mv
    rows = []
    for label, name in (("forward Euler (`numba`)", "numba"),
                        ("exponential Euler, gates first (`exp-euler`)", "exp-euler")):
        backend = get_backend(name)
        backend.prepare()
        t, r = measure(lambda: backend.run(stim), settings)
        rows.append((label, rms(ref, r.v_mv), t.median_s))
    rush = numba_engine.integrate(stim.current_ua, stim.dt_ms, "rush-larsen")[0]
    print("### Exponential Euler, the lab's default step (dt = 0.05 ms)\n")
    print("| method | RMS error vs converged | warm time, one trace |")
    print("|---|---|---|")
    for label, err, t in rows:
        print(f"| {label} | {err:.2f} mV | {t * 1e6:.0f} µs |")
    print(f"| Rush-Larsen (former `exp-euler`, engine kernel `rush-larsen`) | "
          f"{rms(ref, rush):.2f} mV | – |")
    print(f"\nexp-euler error / Euler error: **{rows[1][1] / rows[0][1]:.2f}** (target ≤ 1.5)\n")


def operations_section() -> None:
    print("### Operations per neuron-step (counted by running each step kernel)\n")
    print("| kernel | order | exp | div | mul | add | flops |")
    print("|---|---|---|---|---|---|---|")
    lab = model.count_step_operations("euler_step")
    print(f"| lab's forward Euler (`numpy`) | 1 | {lab['exp']} | {lab['div']} | {lab['mul']} | "
          f"{lab['add']} | {lab['flops']} |")
    for name, cls in kernels.kernel_classes().items():
        c = cls.operation_count()
        print(f"| `{name}` | {cls.order} | {c['exp']} | {c['div']} | {c['mul']} | {c['add']} | "
              f"{c['flops']} |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1024, help="traces of the batched case")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke test)")
    args = parser.parse_args()
    settings = QUICK if args.quick else SETTINGS
    warnings.simplefilter("ignore", DivergenceWarning)
    print(f"Machine: {one_line(describe_machine())}\n")
    euler_section(args.batch, settings)
    odeint_section(settings)
    exp_euler_section(settings)
    operations_section()


if __name__ == "__main__":
    main()
