"""Question 3: the CNN on the same step, aligned with the HH trace, timed cold and warm.

Alignment is the CNN result's own: its output sample k is stimulus sample
k + `first_sample` (the model's context), at `t_ms`; the HH trace is cut to those samples
(`hhbench.suite.accuracy`), never shifted to fit. Accuracy (RMSE, spike counts, Γ) comes
from `hhbench.suite.accuracy` against the lab reference and the converged reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hhbench import metrics
from hhbench import stimuli as stimlib
from hhbench.lab import q2_step
from hhbench.lab.common import (LabSetup, TimedCall, figure, md_table, num, save_figure,
                                time_backend, window_of, write_section)
from hhbench.suite import accuracy

KEY = "q3"
TITLE = "Q3. The CNN on the same step: aligned, scored and timed"


@dataclass(frozen=True, kw_only=True)
class Score:
    """The CNN against one HH trace on the CNN's output window."""

    against: str
    rmse_mv: float
    mae_mv: float
    gamma: float
    n_spikes_hh: int
    n_spikes_cnn: int
    first_spike_shift_ms: float | None


@dataclass(frozen=True, kw_only=True, eq=False)
class CnnStepAnswer:
    first_sample: int
    output_samples: int
    window_start_ms: float
    window_end_ms: float
    device: str
    cnn: TimedCall
    hh: tuple[TimedCall, ...]
    scores: tuple[Score, ...]
    stimulus: dict
    #: the CNN runtime that ran ("tensorflow" or "jax": `hhbench.backends.cnn`)
    runtime: str = "tensorflow"
    figure_data: dict = field(default_factory=dict, metadata={"json": False}, repr=False)


def compute(setup: LabSetup, done: dict | None = None, progress=None) -> CnnStepAnswer:
    step = (done or {}).get(q2_step.KEY) or q2_step.compute(setup, progress=progress)
    stim = stimlib.step(**setup.stim_kw())
    if progress:
        progress("step: cnn")
    # a fresh backend that loads the model files itself: its cold start is a user's
    cnn = setup.backend("cnn", load_model=True)
    timed, result = time_backend(cnn, stim, setup.settings.timing)
    scores = []
    for name in dict.fromkeys([step.lab_reference, "reference"]):
        if name not in step.results:
            continue
        acc = accuracy(result, step.results[name])
        per = acc["per_trace"]
        shift = per["first_spike_shift_ms"][0]
        scores.append(Score(against=name, rmse_mv=acc["rmse_mv_median"], mae_mv=acc["mae_mv_median"],
                            gamma=acc["gamma_median"], n_spikes_hh=int(per["n_spikes_ref"][0]),
                            n_spikes_cnn=int(per["n_spikes_cmp"][0]),
                            first_spike_shift_ms=None if shift is None or not np.isfinite(shift)
                            else float(shift)))
    n_out = result.v_batch.shape[1]
    return CnnStepAnswer(first_sample=result.first_sample, output_samples=n_out,
                         window_start_ms=float(result.t_ms[0]),
                         window_end_ms=float(result.t_ms[-1]) + stim.dt_ms,
                         device=result.device, cnn=timed,
                         hh=tuple(b.timing for b in step.backends), scores=tuple(scores),
                         stimulus=stim.describe(), runtime=cnn.settings()["runtime"],
                         figure_data={"cnn": result, "hh": step.results[step.lab_reference],
                                      "hh_name": step.lab_reference})


FRAMEWORK = {"tensorflow": "TensorFlow", "jax": "JAX"}
#: what the first call of each runtime does besides computing
FIRST_CALL = {"tensorflow": "traces the network, converts it for TensorFlow Lite (on the "
                            "CPU: `runner.graph` says which graph runs) and chooses its "
                            "kernels",
              "jax": "traces the network and compiles it with XLA (`jax.jit`, once per "
                     "batch size)"}


def headline(a: CnnStepAnswer) -> str:
    s = a.scores[0]
    return (f"against {s.against}: RMSE {num(s.rmse_mv)} mV, Γ {num(s.gamma, 3)}, "
            f"{s.n_spikes_cnn} spikes vs {s.n_spikes_hh}; CNN {num(a.cnn.warm_median_ms)} ms warm, "
            f"{num(a.cnn.cold_ms)} ms cold")


def write(a: CnnStepAnswer, out_dir: Path) -> list[Path]:
    fig_name = f"{KEY}_cnn_vs_hh_step.png"
    fs = a.stimulus["fs_khz"]
    scores = [[s.against, s.rmse_mv, s.mae_mv, s.n_spikes_hh, s.n_spikes_cnn, s.gamma,
               s.first_spike_shift_ms] for s in a.scores]
    c = a.cnn
    times = [[f"cnn ({a.device})", c.setup_ms, c.first_call_ms, c.cold_ms, c.warm_median_ms,
              c.warm_iqr_ms, c.repeats]]
    times += [[t.backend, t.setup_ms, t.first_call_ms, t.cold_ms, t.warm_median_ms, t.warm_iqr_ms,
               t.repeats] for t in a.hh]
    md = f"""## {TITLE}

**Question.** Run the CNN on the step of Q2, put its output on the HH trace's time axis,
say how close it is, and time it cold and warm next to the HH simulators.

**Alignment.** The CNN's output sample k belongs to input sample k + {a.first_sample}
(the model's context: its input is {a.stimulus['n_samples']} samples, its output
{a.output_samples}), so it covers t = {num(a.window_start_ms)} ms to {num(a.window_end_ms)} ms
at {num(fs)} kHz. The HH trace is compared on exactly those samples; nothing is shifted
by eye or searched for.

**Accuracy on the output window.** RMSE and MAE of V (mV); spikes as in Q2, counted in the
window; Γ is the coincidence factor of Kistler et al. (1997): 1 for the same spike
times within ±2 ms, 0 for chance agreement; the shift is CNN minus HH time of the first
spike.

{md_table(["CNN against", "RMSE (mV)", "MAE (mV)", "HH spikes", "CNN spikes", "Γ", "first-spike shift (ms)"], scores)}

![the CNN's output over the HH trace]({fig_name})

**Time per call (one trace), ms.** Cold = set-up + first call: for the CNN, set-up is
loading the model files ({FRAMEWORK[a.runtime]} itself was already imported) and the first
call {FIRST_CALL[a.runtime]}; warm = median and IQR of the timed calls after an untimed
warm-up. The HH rows are those of Q2.

{md_table(["backend", "set-up (ms)", "first call (ms)", "cold (ms)", "warm median (ms)", "IQR (ms)", "repeats"], times)}
"""
    data = a.figure_data
    cnn, hh = data["cnn"], data["hh"]
    fig = figure(figsize=(10, 5.8))
    ax_i, ax_v = fig.subplots(2, 1, sharex=True, height_ratios=(1, 2.5))
    ax_i.plot(hh.stimulus.t_ms, hh.stimulus.current_ua[0], color="0.25")
    ax_i.set_ylabel("I (µA/cm²)")
    ax_v.plot(hh.t_ms, hh.v_batch[0], color="C0", lw=1.1, label=f"HH ({data['hh_name']})")
    ax_v.plot(cnn.t_ms, cnn.v_batch[0], color="C1", lw=1.1, label=f"CNN ({a.device})")
    for res, color, marker in ((hh, "C0", "v"), (cnn, "C1", "^")):
        v = res.v_batch if res is cnn else window_of(res.v_batch, a.first_sample, a.output_samples)
        train = metrics.detect_spikes(v[0], fs_khz=fs, t0_ms=a.window_start_ms)
        ax_v.plot(train.times_ms, train.amplitudes_mv, marker, color=color, ms=6, ls="none")
    for ax in (ax_i, ax_v):
        ax.axvspan(hh.t_ms[0], a.window_start_ms, color="0.9", zorder=0)
        ax.axvspan(a.window_end_ms, hh.t_ms[-1] + 1 / fs, color="0.9", zorder=0)
        ax.grid(True, alpha=0.3)
    ax_v.set_xlabel("t (ms) — grey: context, outside the CNN's output")
    ax_v.set_ylabel("V (mV)")
    ax_v.legend(fontsize="small", loc="lower right")
    ax_i.set_title("CNN and HH on the same step and the same time axis; spikes marked")
    return write_section(out_dir, KEY, md, a) + [save_figure(fig, out_dir / fig_name)]


__all__ = ["CnnStepAnswer", "Score", "compute", "write", "headline", "KEY", "TITLE"]
