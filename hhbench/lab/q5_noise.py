"""Question 5: white noise, 100 seeded trials: spike counts and amplitudes, HH against CNN.

The trials are one batch (`stimuli.white_noise(batch=trials, seed=...)`), run in one call
per backend. Spikes (`hhbench.metrics.detect_spikes`) are counted on the CNN's output
window for both; the HH traces are cut to the CNN result's own `first_sample`. Per-trial
agreement (exact counts, Γ) comes from `hhbench.suite.accuracy`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hhbench import metrics
from hhbench import stimuli as stimlib
from hhbench.errors import DivergenceWarning
from hhbench.lab.common import (LabSetup, figure, md_table, num, save_figure, window_of,
                                write_section)
from hhbench.suite import accuracy

KEY = "q5"
TITLE = "Q5. White noise, 100 trials: spike counts and amplitudes, HH against CNN"


@dataclass(frozen=True, kw_only=True)
class SpikeStats:
    """Spikes of one model over the trials (window of the CNN's output).

    counts: spikes per trial (None for a diverged trial, left out of the statistics);
    count_*: mean, sample sd, min, max and total over the trials that did not diverge;
    amplitude_*: over all spikes of those trials (mV).
    """

    model: str
    counts: tuple[int | None, ...]
    n_diverged: int
    count_total: int
    count_mean: float
    count_sd: float
    count_min: int
    count_max: int
    n_amplitudes: int
    amplitude_mean_mv: float | None
    amplitude_sd_mv: float | None
    amplitude_min_mv: float | None
    amplitude_max_mv: float | None


@dataclass(frozen=True, kw_only=True, eq=False)
class NoiseAnswer:
    sigma_ua: float
    onset_ms: float
    seed: int
    trials: int
    n_samples: int
    fs_khz: float
    window_start_ms: float
    window_end_ms: float
    hh: SpikeStats
    cnn: SpikeStats
    frac_count_exact: float
    frac_count_within_1: float
    count_abs_error_mean: float
    gamma_median: float
    rmse_mv_median: float
    figure_data: dict = field(default_factory=dict, metadata={"json": False}, repr=False)


def spike_stats(model: str, v: np.ndarray, diverged: np.ndarray, fs_khz: float) -> SpikeStats:
    """Spike counts per trace and pooled amplitudes of a (trials, samples) batch."""
    trains = metrics.detect_spikes(v, fs_khz=fs_khz)
    ok = ~np.asarray(diverged, dtype=bool)
    counts = np.array([len(t) for t in trains])
    amps = np.concatenate([t.amplitudes_mv for t, good in zip(trains, ok) if good] or [np.empty(0)])
    c = counts[ok]
    stat = lambda f, x: float(f(x)) if x.size else None  # noqa: E731
    return SpikeStats(model=model, counts=tuple(int(n) if good else None for n, good in zip(counts, ok)),
                      n_diverged=int((~ok).sum()), count_total=int(c.sum()),
                      count_mean=float(c.mean()) if c.size else float("nan"),
                      count_sd=float(c.std(ddof=1)) if c.size > 1 else float("nan"),
                      count_min=int(c.min()) if c.size else 0, count_max=int(c.max()) if c.size else 0,
                      n_amplitudes=int(amps.size), amplitude_mean_mv=stat(np.mean, amps),
                      amplitude_sd_mv=float(amps.std(ddof=1)) if amps.size > 1 else None,
                      amplitude_min_mv=stat(np.min, amps), amplitude_max_mv=stat(np.max, amps))


def compute(setup: LabSetup, done: dict | None = None, progress=None) -> NoiseAnswer:
    s = setup.settings
    stim = stimlib.white_noise(seed=s.noise_seed, batch=s.noise_trials, **setup.stim_kw())
    if progress:
        progress(f"noise: {s.lab_reference} x{s.noise_trials}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)  # counted in n_diverged
        hh = setup.backend(s.lab_reference).run(stim)
    if progress:
        progress(f"noise: cnn x{s.noise_trials}")
    cnn = setup.backend("cnn").run(stim)
    first, n_out = cnn.first_sample, cnn.v_batch.shape[1]
    v_hh = window_of(hh.v_batch, first, n_out)
    hh_stats = spike_stats(s.lab_reference, v_hh, hh.diverged, stim.fs_khz)
    cnn_stats = spike_stats("cnn", cnn.v_batch, cnn.diverged, stim.fs_khz)
    acc = accuracy(cnn, hh)
    return NoiseAnswer(sigma_ua=stim.params["sigma_ua"], onset_ms=stim.params["onset_ms"],
                       seed=s.noise_seed, trials=s.noise_trials, n_samples=stim.n_samples,
                       fs_khz=stim.fs_khz, window_start_ms=float(cnn.t_ms[0]),
                       window_end_ms=float(cnn.t_ms[-1]) + stim.dt_ms, hh=hh_stats, cnn=cnn_stats,
                       frac_count_exact=acc["frac_spike_count_exact"],
                       frac_count_within_1=acc["frac_spike_count_within_1"],
                       count_abs_error_mean=acc["spike_count_abs_error_mean"],
                       gamma_median=acc["gamma_median"], rmse_mv_median=acc["rmse_mv_median"],
                       figure_data={"hh_amplitudes": metrics.spike_amplitudes(v_hh, fs_khz=stim.fs_khz),
                                    "cnn_amplitudes": metrics.spike_amplitudes(cnn.v_batch, fs_khz=stim.fs_khz),
                                    "hh_ok": ~hh.diverged})


def headline(a: NoiseAnswer) -> str:
    return (f"{a.hh.count_total} spikes in total for HH, {a.cnn.count_total} for the CNN "
            f"(per trial {num(a.hh.count_mean, 3)} ± {num(a.hh.count_sd, 3)} vs "
            f"{num(a.cnn.count_mean, 3)} ± {num(a.cnn.count_sd, 3)}); counts equal in "
            f"{num(100 * a.frac_count_exact, 3)} % of trials")


def write(a: NoiseAnswer, out_dir: Path) -> list[Path]:
    counts_fig, amps_fig = f"{KEY}_spike_count_histogram.png", f"{KEY}_spike_amplitude_histogram.png"
    hh_label = f"HH ({a.hh.model})"
    rows = [[label, st.count_total, st.count_mean, st.count_sd, st.count_min, st.count_max,
             st.n_diverged, st.n_amplitudes, st.amplitude_mean_mv, st.amplitude_sd_mv,
             st.amplitude_min_mv, st.amplitude_max_mv]
            for label, st in ((hh_label, a.hh), ("CNN", a.cnn))]
    md = f"""## {TITLE}

**Question.** Inject white noise {a.trials} times with different noise, count the spikes of
the HH model and of the CNN in each trial, collect their amplitudes, and compare them as
histograms.

**Stimulus.** Gaussian white noise of σ = {num(a.sigma_ua)} µA/cm² from {num(a.onset_ms)} ms,
{a.trials} independent trials drawn in one batch from seed {a.seed}, {a.n_samples}
samples at {num(a.fs_khz)} kHz; each model runs once on the whole batch. HH is
`{a.hh.model}` (the lab's forward Euler, what the CNN was trained to reproduce).
Spikes (peaks above 0 mV, runs ≥ 10 samples) are counted on the CNN's output window,
t = {num(a.window_start_ms)} to {num(a.window_end_ms)} ms, for both models.

**Answer.** Spike counts per trial (mean, sample sd, range, total over trials) and
amplitudes pooled over all spikes (mV):

{md_table(["model", "total spikes", "mean per trial", "sd", "min", "max", "diverged trials",
           "amplitudes", "amplitude mean (mV)", "sd (mV)", "min (mV)", "max (mV)"], rows)}

Trial by trial: the CNN's count equals the HH count in {num(100 * a.frac_count_exact, 3)} % of
trials and is within ±1 in {num(100 * a.frac_count_within_1, 3)} % (mean |difference|
{num(a.count_abs_error_mean, 3)}); median Γ {num(a.gamma_median, 3)}; median RMSE
{num(a.rmse_mv_median, 3)} mV.

![histogram of spike counts per trial]({counts_fig})

![histogram of spike amplitudes]({amps_fig})
"""
    hh_c = np.array([n for n in a.hh.counts if n is not None])
    cnn_c = np.array([n for n in a.cnn.counts if n is not None])
    top = int(max(hh_c.max(initial=0), cnn_c.max(initial=0)))
    bins = np.arange(-0.5, top + 1.5)
    fig = figure(figsize=(8, 4.2))
    ax = fig.subplots()
    ax.hist([hh_c, cnn_c], bins=bins, label=[f"{hh_label}: total {a.hh.count_total}",
                                            f"CNN: total {a.cnn.count_total}"],
            color=["C0", "C1"])
    ax.set_xlabel("spikes per trial")
    ax.set_ylabel("trials")
    ax.set_title(f"{a.trials} white-noise trials (σ = {num(a.sigma_ua)} µA/cm²): spikes per trial")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    written = write_section(out_dir, KEY, md, a) + [save_figure(fig, out_dir / counts_fig)]

    data = a.figure_data
    hh_a = np.concatenate([x for x, ok in zip(data["hh_amplitudes"], data["hh_ok"]) if ok]
                          or [np.empty(0)])
    cnn_a = np.concatenate(data["cnn_amplitudes"] or [np.empty(0)])
    both = np.concatenate([hh_a, cnn_a])
    fig = figure(figsize=(8, 4.2))
    ax = fig.subplots()
    if both.size:
        edges = np.histogram_bin_edges(both, bins=30)
        ax.hist([hh_a, cnn_a], bins=edges, color=["C0", "C1"],
                label=[f"{hh_label}: {hh_a.size} spikes", f"CNN: {cnn_a.size} spikes"])
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no spikes", transform=ax.transAxes, ha="center")
    ax.set_xlabel("spike amplitude: peak V (mV)")
    ax.set_ylabel("spikes")
    ax.set_title(f"spike amplitudes over {a.trials} white-noise trials")
    ax.grid(True, axis="y", alpha=0.3)
    return written + [save_figure(fig, out_dir / amps_fig)]


__all__ = ["NoiseAnswer", "SpikeStats", "spike_stats", "compute", "write", "headline", "KEY",
           "TITLE"]
