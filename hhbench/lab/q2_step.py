"""Question 2: the HH step response: spikes and their amplitudes, and each HH backend's
time (cold and warm).

Spikes are those of `hhbench.metrics.detect_spikes` (peaks of V above 0 mV in runs at
least 10 samples wide) over the whole simulated trace. The amplitudes listed are the
peak voltages of the lab reference (forward Euler, what the lab computed); every other
backend's count and amplitudes are in the table beside its timing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hhbench import metrics
from hhbench import stimuli as stimlib
from hhbench.lab.common import (LabSetup, TimedCall, figure, md_table, num, save_figure,
                                time_backend, write_section)

KEY = "q2"
TITLE = "Q2. The step response: spikes, their amplitudes, and the time each simulator takes"


@dataclass(frozen=True, kw_only=True)
class StepBackend:
    """One HH backend on the step: its spikes (whole trace) and its timing (ms)."""

    backend: str
    diverged: bool
    n_spikes: int
    first_amplitude_mv: float | None
    later_mean_mv: float | None
    later_sd_mv: float | None
    timing: TimedCall


@dataclass(frozen=True, kw_only=True, eq=False)
class StepAnswer:
    """The lab reference's spikes on the step, and every HH backend's row."""

    stimulus: dict
    lab_reference: str
    spike_times_ms: tuple[float, ...]
    spike_amplitudes_mv: tuple[float, ...]
    backends: tuple[StepBackend, ...]
    #: whether the lab's own rule ("lab-find-peaks") finds the same peaks on that trace
    lab_rule_agrees: bool = True
    #: SimResults by backend name, for q3 and the figure (not in the JSON)
    results: dict = field(default_factory=dict, metadata={"json": False}, repr=False)

    def row(self, name: str) -> StepBackend:
        return next(b for b in self.backends if b.backend == name)


def _amplitude_stats(amps: np.ndarray) -> tuple:
    first = float(amps[0]) if amps.size else None
    later = amps[1:]
    return (first, float(later.mean()) if later.size else None,
            float(later.std(ddof=1)) if later.size > 1 else None)


def compute(setup: LabSetup, done: dict | None = None, progress=None) -> StepAnswer:
    stim = stimlib.step(**setup.stim_kw())
    names = list(dict.fromkeys([*setup.settings.step_backends, setup.settings.lab_reference]))
    rows, results = [], {}
    for name in names:
        if progress:
            progress(f"step: {name}")
        timed, result = time_backend(setup.backend(name), stim, setup.settings.timing)
        train = metrics.detect_spikes(result.v_batch[0], fs_khz=stim.fs_khz,
                                      t0_ms=float(result.t_ms[0]))
        first, later_mean, later_sd = _amplitude_stats(train.amplitudes_mv)
        rows.append(StepBackend(backend=name, diverged=result.any_diverged, n_spikes=len(train),
                                first_amplitude_mv=first, later_mean_mv=later_mean,
                                later_sd_mv=later_sd, timing=timed))
        results[name] = result
    ref = results[setup.settings.lab_reference]
    train = metrics.detect_spikes(ref.v_batch[0], fs_khz=stim.fs_khz, t0_ms=float(ref.t_ms[0]))
    lab_rule = metrics.find_spikes(ref.v_batch[0], "lab-find-peaks")
    return StepAnswer(stimulus=stim.describe(), lab_reference=setup.settings.lab_reference,
                      spike_times_ms=tuple(train.times_ms.tolist()),
                      spike_amplitudes_mv=tuple(train.amplitudes_mv.tolist()),
                      backends=tuple(rows), results=results,
                      lab_rule_agrees=bool(np.array_equal(lab_rule.index, train.index)))


def headline(a: StepAnswer) -> str:
    amps = a.spike_amplitudes_mv
    if not amps:
        return "no spikes on the step"
    later = f", the later ones {num(np.mean(amps[1:]))} mV on average" if len(amps) > 1 else ""
    return f"{len(amps)} spikes; the first peaks at {num(amps[0])} mV{later}"


def write(a: StepAnswer, out_dir: Path) -> list[Path]:
    fig_name = f"{KEY}_step_response.png"
    s = a.stimulus
    ref = a.row(a.lab_reference)
    amps = np.asarray(a.spike_amplitudes_mv)
    amp_rows = [[i + 1, a.spike_times_ms[i], a.spike_amplitudes_mv[i]] for i in range(amps.size)]
    first = f" The first peaks at {num(ref.first_amplitude_mv)} mV." if amps.size else ""
    later = ""
    if amps.size > 1:
        lower = ref.later_mean_mv < ref.first_amplitude_mv
        later = (f"The later {amps.size - 1} peak at {num(ref.later_mean_mv)} mV on average "
                 f"(sd {num(ref.later_sd_mv)} mV, from {num(amps[1:].min())} to "
                 f"{num(amps[1:].max())} mV), {'lower' if lower else 'higher'} than the first"
                 + (": the first spike starts from the initial state, the later ones from "
                    "the state a spike leaves behind (sodium channels partly inactivated)."
                    if lower else "."))
    table = [[b.backend + (" (lab reference)" if b.backend == a.lab_reference else ""),
              "diverged" if b.diverged else "ok", b.n_spikes, b.first_amplitude_mv,
              b.later_mean_mv, b.timing.cold_ms, b.timing.warm_median_ms, b.timing.warm_iqr_ms,
              b.timing.repeats] for b in a.backends]
    md = f"""## {TITLE}

**Question.** Inject the lab's step current; find the spikes, list their amplitudes, and
time the computation.

**Stimulus.** Step of {num(s['amplitude_ua'])} µA/cm² from {num(s['onset_ms'])} ms,
{s['n_samples']} samples at {num(s['fs_khz'])} kHz ({num(s['n_samples'] / s['fs_khz'])} ms).
A *spike* is a peak of V above 0 mV in a run of at least 10 samples above 0 mV
(`hhbench.metrics.detect_spikes`, rule `run-above-0mV`), searched over the whole trace;
the lab's own `find_peaks(V, height=0, width=10)` (`lab-find-peaks`) finds
{"the same peaks" if a.lab_rule_agrees else "other peaks"} on the lab reference's trace.

**Answer.** The lab reference (`{a.lab_reference}`: forward Euler at dt = {num(1 / s['fs_khz'])} ms)
fires {amps.size} spikes.{first} {later}

{md_table(["spike", "time (ms)", "peak V (mV)"], amp_rows)}

![step current, voltage and detected spikes]({fig_name})

**Every HH simulator on this step.** Spikes over the whole trace; times in ms per call
(one trace): cold = set-up (compilation or loading its cache, where there is one) + first
call; warm = median and interquartile range of the timed calls after an untimed warm-up.
Each numba-compiled backend (`numba`, `exp-euler`, `reference`) compiles its own step
kernel, or loads it from numba's on-disk cache, once per process: that is in its cold time.

{md_table(["backend", "status", "spikes", "first peak (mV)", "later peaks, mean (mV)",
           "cold (ms)", "warm median (ms)", "IQR (ms)", "repeats"], table)}
"""
    fig = figure(figsize=(9, 5.5))
    ax_i, ax_v = fig.subplots(2, 1, sharex=True, height_ratios=(1, 2.5))
    res = a.results[a.lab_reference]
    ax_i.plot(res.stimulus.t_ms, res.stimulus.current_ua[0], color="0.25")
    ax_i.set_ylabel("I (µA/cm²)")
    ax_v.plot(res.t_ms, res.v_batch[0], color="C0", lw=1,
              label=f"{a.lab_reference} (lab reference)")
    if "reference" in a.results and a.lab_reference != "reference":
        conv = a.results["reference"]
        ax_v.plot(conv.t_ms, conv.v_batch[0], color="0.3", lw=0.8, ls="--",
                  label="reference (converged)")
    ax_v.plot(a.spike_times_ms, a.spike_amplitudes_mv, "v", color="C3", ms=7,
              label=f"spikes ({amps.size})")
    for t, v in zip(a.spike_times_ms, a.spike_amplitudes_mv):
        ax_v.annotate(f"{v:.1f}", (t, v), xytext=(0, 6), textcoords="offset points",
                      ha="center", fontsize="x-small")
    ax_v.axhline(0, color="0.6", lw=0.7, ls=":")
    ax_v.set_xlabel("t (ms)")
    ax_v.set_ylabel("V (mV)")
    ax_v.legend(fontsize="small", loc="lower right")
    for ax in (ax_i, ax_v):
        ax.grid(True, alpha=0.3)
    ax_i.set_title("step response of the HH model; peaks of V above 0 mV (≥ 10 samples wide) marked")
    return write_section(out_dir, KEY, md, a) + [save_figure(fig, out_dir / fig_name)]


__all__ = ["StepAnswer", "StepBackend", "compute", "write", "headline", "KEY", "TITLE"]
