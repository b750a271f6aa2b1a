"""Question 1: load the model, read its input and output layers, time the analytic model.

The model is described by `CnnRunner.describe()`; the analytic model (the lab's forward
Euler in a Python loop, backend `numpy`) is timed on the lab's step through
`hhbench.suite.run_case`: the first call apart (cold), then repeated warm calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hhbench import stimuli as stimlib
from hhbench.lab.common import (LabSetup, TimedCall, figure, md_table, num, save_figure,
                                time_backend, write_section)

KEY = "q1"
TITLE = "Q1. The model's layers, and the time the analytic model takes"
ANALYTIC = "numpy"


@dataclass(frozen=True, kw_only=True)
class ModelAnswer:
    """The model's description and the analytic model's timing (ms)."""

    model: str
    format: str
    parameters: int
    input_layer: str
    output_layer: str
    input_shape: tuple
    output_shape: tuple
    context_samples: int
    fs_khz: float
    input_scale: float
    output_scale: float
    window_ms: float
    output_start_ms: float
    output_end_ms: float
    n_layers: int
    analytic: TimedCall
    stimulus: dict


def compute(setup: LabSetup, done: dict | None = None, progress=None) -> ModelAnswer:
    info = setup.runner.describe()
    stim = stimlib.step(**setup.stim_kw())
    timed, _ = time_backend(setup.backend(ANALYTIC), stim, setup.settings.timing)
    n, ctx, fs = setup.n_samples, setup.context, setup.fs_khz
    return ModelAnswer(
        model=setup.model_name, format=info["format"], parameters=info["parameters"],
        input_layer=info["layers"][0], output_layer=info["layers"][-1],
        input_shape=tuple(info["input_shape"]), output_shape=tuple(info["output_shape"]),
        context_samples=ctx, fs_khz=fs, input_scale=info["input_scale"],
        output_scale=info["output_scale"], window_ms=n / fs, output_start_ms=ctx / fs,
        output_end_ms=(n - ctx) / fs, n_layers=len(info["layers"]), analytic=timed,
        stimulus=stim.describe())


def headline(a: ModelAnswer) -> str:
    return (f"input {a.input_shape}, output {a.output_shape}; the analytic model takes "
            f"{num(a.analytic.warm_median_ms)} ms per trace warm, {num(a.analytic.cold_ms)} ms cold")


def write(a: ModelAnswer, out_dir: Path) -> list[Path]:
    fig_name = f"{KEY}_analytic_timing.png"
    t = a.analytic
    samples = np.asarray(t.samples_ms)
    batch_in, n_in, ch_in = a.input_shape
    _, n_out, ch_out = a.output_shape
    md = f"""## {TITLE}

**Question.** Load the CNN, read the dimensions of its input and output layers and say
what they mean; time the analytic Hodgkin-Huxley model.

**Model.** `{a.model}` ({a.format}), {a.parameters:,} parameters, {a.n_layers} layers
(nested models flattened).

{md_table(["", "layer", "shape", "meaning"], [
    ["input", f"`{a.input_layer}`", f"`{a.input_shape}`",
     f"(batch, samples, channels): any number of traces; {n_in} samples of current at "
     f"{num(a.fs_khz)} kHz = {num(a.window_ms)} ms; {ch_in} channel, the current in µA/cm² "
     f"times {num(a.input_scale)}"],
    ["output", f"`{a.output_layer}`", f"`{a.output_shape}`",
     f"(batch, samples, channels): {n_out} samples of membrane voltage, V in mV times "
     f"{num(a.output_scale)}; {ch_out} channel"],
])}

The output is shorter than the input by {a.context_samples} samples of context on each
side ({num(a.context_samples / a.fs_khz)} ms): output sample k belongs to input sample
k + {a.context_samples}, so the output covers t = {num(a.output_start_ms)} ms to
{num(a.output_end_ms)} ms of the {num(a.window_ms)} ms input window. This alignment is
read from the model's shapes, not searched for.

**Analytic model.** The lab's forward Euler in a Python loop (backend `{t.backend}`,
dt = {num(1 / a.fs_khz)} ms) on the lab's step ({num(a.stimulus['amplitude_ua'])} µA/cm²
from {num(a.stimulus['onset_ms'])} ms, {n_in} samples), timed by hhbench: the first call
apart (cold = set-up + first call), one untimed warm-up call, then {t.repeats} timed calls.

{md_table(["backend", "cold (ms)", "warm median (ms)", "IQR (ms)", "fastest (ms)", "slowest (ms)", "repeats"],
          [[t.backend, t.cold_ms, t.warm_median_ms, t.warm_iqr_ms, t.warm_min_ms,
            float(samples.max()), t.repeats]])}

One call timed by hand is one draw from this spread (and, if it is the first call, it
includes the set-up as well).

![time of each call of the analytic model]({fig_name})
"""
    fig = figure(figsize=(7, 3.6))
    ax = fig.subplots()
    ax.plot(np.arange(1, samples.size + 1), samples, "o-", label="warm calls", ms=4)
    ax.axhline(t.warm_median_ms, color="C1", ls="--", label=f"warm median {num(t.warm_median_ms)} ms")
    ax.plot([0], [t.first_call_ms], "s", color="C3", label=f"first call {num(t.first_call_ms)} ms")
    ax.set_xlabel("call (0 = first call)")
    ax.set_ylabel("time (ms)")
    ax.set_title(f"analytic model ({t.backend}: forward Euler, Python loop), one {num(a.window_ms)} ms step trace")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    written = write_section(out_dir, KEY, md, a)
    return written + [save_figure(fig, out_dir / fig_name)]


__all__ = ["ModelAnswer", "compute", "write", "headline", "KEY", "TITLE"]
