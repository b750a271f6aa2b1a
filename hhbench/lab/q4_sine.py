"""Question 4: the sine of amplitude 80 µA/cm²: up to which frequency each model spikes.

For each backend: one batched call on a log-spaced sweep of frequencies (`stimuli.sine`
takes an array), the spike count of each trace on the CNN's output window (the same
samples for every backend), then bisection (`hhbench.lab.boundary.bisect_boundary`) on
the bracket between the highest sweep frequency that still spikes and the next one,
to the relative resolution of `LabSettings.rel_tol`. A trace that diverged (forward
Euler overflowing on the negative half-wave) has no spike count: it is reported as
diverged, and if the bracket's end or a bisection step diverges the boundary is
"diverged" too.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hhbench import metrics
from hhbench import stimuli as stimlib
from hhbench.errors import DivergenceWarning
from hhbench.lab.boundary import bisect_boundary
from hhbench.lab.common import LabSetup, figure, md_table, num, save_figure, write_section

KEY = "q4"
TITLE = "Q4. Sine of amplitude 80 µA/cm²: the frequency at which spiking stops"
STABLE = ("reference", "exp-euler")


@dataclass(frozen=True, kw_only=True)
class SineBoundary:
    """One backend's sweep and boundary (frequencies in kHz).

    counts: spikes in the window per sweep frequency, None where the trace diverged.
    status: "found" (spikes at lo_khz, none at hi_khz), "diverged" (the bracket or a
    bisection step diverged; lo/hi as far as it got), "spikes throughout" (spikes at the
    highest sweep frequency), "no spikes" (at no sweep frequency).
    """

    backend: str
    counts: tuple[int | None, ...]
    status: str
    lo_khz: float | None
    hi_khz: float | None
    steps: int
    diverged_khz: tuple[float, ...]
    repetitive_up_to_khz: float | None

    @property
    def estimate_khz(self) -> float | None:
        return None if self.lo_khz is None or self.hi_khz is None else float(
            np.sqrt(self.lo_khz * self.hi_khz))


@dataclass(frozen=True, kw_only=True, eq=False)
class SineAnswer:
    amplitude_ua: float
    onset_ms: float
    n_samples: int
    fs_khz: float
    first_sample: int
    output_samples: int
    window_start_ms: float
    window_end_ms: float
    sweep_khz: tuple[float, ...]
    rel_tol: float
    backends: tuple[SineBoundary, ...]
    figure_data: dict = field(default_factory=dict, metadata={"json": False}, repr=False)

    def row(self, name: str) -> SineBoundary:
        return next(b for b in self.backends if b.backend == name)


def sweep_frequencies(setup: LabSetup) -> np.ndarray:
    s = setup.settings
    top = s.sweep_max_khz if s.sweep_max_khz is not None else setup.fs_khz / 4
    return np.geomspace(s.sweep_min_khz, top, s.sweep_points)


class SineProbe:
    """Runs one backend on sines of `amplitude_ua` (other stimulus settings: `stim_kw`)
    and counts spikes on samples [first, first + n_out); remembers each trace there."""

    def __init__(self, backend, *, amplitude_ua: float, stim_kw: dict, first: int, n_out: int):
        self.backend, self.amplitude_ua, self.stim_kw = backend, float(amplitude_ua), dict(stim_kw)
        self.first, self.n_out = first, n_out
        self.traces: dict[float, np.ndarray] = {}

    def counts(self, freqs) -> list[int | None]:
        stim = stimlib.sine(np.asarray(freqs, dtype=float), amplitude_ua=self.amplitude_ua,
                            **self.stim_kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DivergenceWarning)  # reported per frequency
            result = self.backend.run(stim)
        # HH traces cover the whole stimulus, the CNN its window: cut to the window
        offset = self.first - result.first_sample
        v = result.v_batch[:, offset:offset + self.n_out]
        counts = metrics.spike_count(v, fs_khz=stim.fs_khz)
        out = []
        for f, row, n, bad in zip(np.atleast_1d(freqs), v, counts, result.diverged):
            self.traces[float(f)] = row
            out.append(None if bad else int(n))
        return out

    def spikes(self, f: float) -> bool | None:
        n = self.counts([f])[0]
        return None if n is None else n >= 1


def sweep_and_bisect(name: str, probe: SineProbe, freqs: np.ndarray, rel_tol: float) -> SineBoundary:
    """One backend's answer: spike counts on the sweep `freqs` (one batched call), then
    bisection between the highest frequency with a spike and the next sweep frequency,
    to hi/lo − 1 ≤ `rel_tol`. See `SineBoundary` for the statuses."""
    counts = probe.counts(freqs)
    diverged = tuple(float(f) for f, n in zip(freqs, counts) if n is None)
    spiking = [i for i, n in enumerate(counts) if n]
    repetitive = [i for i, n in enumerate(counts) if n and n >= 2]
    rep = float(freqs[max(repetitive)]) if repetitive else None
    base = dict(backend=name, counts=tuple(counts), diverged_khz=diverged,
                repetitive_up_to_khz=rep)
    if not spiking:
        status = "diverged" if all(n is None for n in counts) else "no spikes"
        return SineBoundary(status=status, lo_khz=None, hi_khz=None, steps=0, **base)
    top = max(spiking)
    if top == len(freqs) - 1:
        return SineBoundary(status="spikes throughout", lo_khz=float(freqs[top]), hi_khz=None,
                            steps=0, **base)
    lo, hi = float(freqs[top]), float(freqs[top + 1])
    if counts[top + 1] is None:
        return SineBoundary(status="diverged", lo_khz=lo, hi_khz=hi, steps=0, **base)
    bracket = bisect_boundary(probe.spikes, lo, hi, rel_tol=rel_tol, lo_value=True)
    status = "diverged" if bracket.undecided_at is not None else "found"
    return SineBoundary(status=status, lo_khz=bracket.lo, hi_khz=bracket.hi,
                        steps=bracket.steps, **base)


def compute(setup: LabSetup, done: dict | None = None, progress=None) -> SineAnswer:
    s = setup.settings
    freqs = sweep_frequencies(setup)
    # the CNN's output window, from the model's context: the samples every backend is
    # counted on
    first, n_out = setup.context, setup.n_samples - 2 * setup.context
    rows, traces = [], {}
    for name in s.sine_backends:
        if progress:
            progress(f"sine sweep: {name}")
        backend = setup.backend(name)
        backend.prepare()
        probe = SineProbe(backend, amplitude_ua=s.sine_amplitude_ua, stim_kw=setup.stim_kw(),
                          first=first, n_out=n_out)
        row = sweep_and_bisect(name, probe, freqs, s.rel_tol)
        rows.append(row)
        if row.lo_khz is not None and row.hi_khz is not None:
            traces[name] = {f: probe.traces[f] for f in (row.lo_khz, row.hi_khz)
                            if f in probe.traces}
    sample = stimlib.sine(freqs[:1], amplitude_ua=s.sine_amplitude_ua, **setup.stim_kw())
    t_window = (np.arange(n_out) + first) / setup.fs_khz
    return SineAnswer(amplitude_ua=s.sine_amplitude_ua, onset_ms=sample.params["onset_ms"],
                      n_samples=setup.n_samples, fs_khz=setup.fs_khz, first_sample=first,
                      output_samples=n_out, window_start_ms=float(t_window[0]),
                      window_end_ms=float(t_window[-1]) + 1 / setup.fs_khz,
                      sweep_khz=tuple(freqs.tolist()), rel_tol=s.rel_tol, backends=tuple(rows),
                      figure_data={"t_ms": t_window, "traces": traces})


def _stable(a: SineAnswer) -> SineBoundary | None:
    for name in STABLE:
        if any(b.backend == name for b in a.backends):
            return a.row(name)
    return None


def _answer(b: SineBoundary) -> str:
    if b.status == "found":
        return f"between {num(b.lo_khz)} and {num(b.hi_khz)} kHz"
    if b.status == "spikes throughout":
        return f"spikes up to the highest frequency tried, {num(b.lo_khz)} kHz"
    if b.status == "no spikes":
        return "no spikes at any frequency tried"
    if b.lo_khz is not None:
        return f"diverged near the boundary (spikes at {num(b.lo_khz)} kHz, diverged by {num(b.hi_khz)} kHz)"
    return "diverged at every frequency tried"


def headline(a: SineAnswer) -> str:
    parts = [f"{b.backend}: {_answer(b)}" for b in a.backends]
    return "spiking stops — " + "; ".join(parts)


def _ranges(freqs: np.ndarray, mask: np.ndarray) -> str:
    """'0.0067–0.12 kHz (10 of 30)' for the runs of True in mask."""
    if not mask.any():
        return "none"
    runs, start = [], None
    for i, m in enumerate(list(mask) + [False]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append(f"{num(freqs[start], 3)}–{num(freqs[i - 1], 3)}" if i - 1 > start
                        else num(freqs[start], 3))
            start = None
    return f"{', '.join(runs)} kHz ({int(mask.sum())} of {mask.size})"


def write(a: SineAnswer, out_dir: Path) -> list[Path]:
    counts_fig, traces_fig = f"{KEY}_spikes_vs_frequency.png", f"{KEY}_traces_at_boundary.png"
    freqs = np.asarray(a.sweep_khz)
    stable = _stable(a)
    rows = []
    for b in a.backends:
        c = np.array([np.nan if n is None else n for n in b.counts], dtype=float)
        rows.append([b.backend, _ranges(freqs, c >= 1), _ranges(freqs, np.isnan(c)),
                     num(b.repetitive_up_to_khz), b.status, num(b.lo_khz), num(b.hi_khz),
                     num(b.estimate_khz), b.steps])
    diverging = [b for b in a.backends if b.diverged_khz]
    div_text = ""
    if diverging and stable is not None:
        names = ", ".join(f"`{b.backend}`" for b in diverging)
        at_div = [n for f, n in zip(freqs, stable.counts) if f in set(diverging[0].diverged_khz)]
        spiking_there = [n for n in at_div if n]
        div_text = (f"\n**Divergence.** {names} diverge at some sweep frequencies (column "
                    f"*diverged at*): forward Euler at dt = {num(1 / a.fs_khz)} ms overflows on the "
                    f"negative half-wave (−{num(a.amplitude_ua)} µA/cm²); that is a property of the "
                    f"method, and those traces have no spike count. The stable integrator "
                    f"`{stable.backend}` answers there: at those frequencies it fires "
                    + (f"{min(spiking_there)} to {max(spiking_there)} spikes" if spiking_there
                       else "no spikes") + ". Its boundary is " + _answer(stable) + ".\n")
    top_text = (" (a quarter of the sampling rate, 4 samples per period: the lab swept up "
                "to about 2 kHz, this sweep goes further so that a boundary above 2 kHz is "
                "bracketed too)" if np.isclose(freqs[-1], a.fs_khz / 4) else "")
    onset_text = ""
    if (stable is not None and stable.status == "found" and stable.repetitive_up_to_khz
            and stable.repetitive_up_to_khz < stable.lo_khz):
        onset_text = (f"\nFor `{stable.backend}`, repetitive firing (≥ 2 spikes) ends by "
                      f"{num(stable.repetitive_up_to_khz)} kHz in the sweep; above it a single "
                      f"spike is left, at the start of the sine: a sine that starts at phase 0 "
                      f"charges the membrane on its first half-wave (by about A/(2πf) mV, "
                      f"with C = 1 µF/cm²), and at high frequency that first depolarisation "
                      f"is all that can still make a spike.\n")
    md = f"""## {TITLE}

**Question.** Inject a sine of amplitude {num(a.amplitude_ua)} µA/cm² (from
{num(a.onset_ms)} ms, {a.n_samples} samples at {num(a.fs_khz)} kHz) and find, for each
model, the frequencies at which it spikes and the frequency at which it stops.

**Method.** *Spikes* are peaks of V above 0 mV in runs of at least 10 samples above
0 mV (`hhbench.metrics.detect_spikes`), counted on the CNN's output window — samples
{a.first_sample} to {a.first_sample + a.output_samples - 1}, t = {num(a.window_start_ms)} to
{num(a.window_end_ms)} ms — for every backend, so all are judged on the same samples.
Each backend runs once on a batch of {freqs.size} log-spaced frequencies from
{num(freqs[0])} to {num(freqs[-1])} kHz{top_text}. The boundary is bracketed by the highest sweep frequency with at least one spike
and the next one above it, and the bracket is halved (geometric midpoint) until
hi/lo − 1 ≤ {num(a.rel_tol)}: *lo* still spikes, *hi* does not. The estimate is √(lo·hi).
`odeint` is left out: it restarts at every sample of a sine (seconds per trace) and agrees
with the converged `reference` to about 0.001 mV.

**Answer.**

{md_table(["backend", "spikes at (sweep)", "diverged at (sweep)", "≥ 2 spikes up to (kHz)",
           "boundary", "lo (kHz)", "hi (kHz)", "estimate (kHz)", "bisection steps"], rows)}
{div_text}{onset_text}

![spike count against frequency]({counts_fig})

![traces on both sides of the boundary]({traces_fig})
"""
    fig = figure(figsize=(9, 4.8))
    ax = fig.subplots()
    for i, b in enumerate(a.backends):
        c = np.array([np.nan if n is None else n for n in b.counts], dtype=float)
        (line,) = ax.plot(freqs, c, "o-", ms=3.5, lw=1, label=b.backend, color=f"C{i}")
        bad = np.isnan(c)
        if bad.any():
            ax.plot(freqs[bad], np.full(bad.sum(), -0.7 - 0.35 * i), "x", color=line.get_color(),
                    ms=6, label=f"{b.backend}: diverged")
        if b.estimate_khz is not None and b.status == "found":
            ax.axvline(b.estimate_khz, color=line.get_color(), ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("sine frequency (kHz)")
    ax.set_ylabel(f"spikes in {num(a.window_start_ms)}–{num(a.window_end_ms)} ms")
    ax.set_title(f"sine of {num(a.amplitude_ua)} µA/cm²: spikes per trace; dotted: boundary "
                 f"(×: diverged)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="x-small", ncols=2)
    written = write_section(out_dir, KEY, md, a) + [save_figure(fig, out_dir / counts_fig)]

    traces = a.figure_data.get("traces", {})
    t = a.figure_data["t_ms"]
    names = list(traces) or ["(none)"]
    fig = figure(figsize=(9, 1.9 * len(names) + 0.8))
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, names):
        for f, v in sorted(traces.get(name, {}).items()):
            b = a.row(name)
            side = "spikes" if f == b.lo_khz else "no spike"
            ax.plot(t, v, lw=0.9, label=f"{num(f)} kHz ({side})")
        ax.set_ylabel(f"{name}\nV (mV)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small", loc="upper right")
    axes[-1].set_xlabel("t (ms), the CNN's output window")
    axes[0].set_title("the two ends of each backend's final bracket")
    return written + [save_figure(fig, out_dir / traces_fig)]


__all__ = ["SineAnswer", "SineBoundary", "SineProbe", "sweep_and_bisect", "compute", "write", "headline", "sweep_frequencies",
           "KEY", "TITLE"]
