"""Question 4: the sine of amplitude 80 µA/cm²: up to which frequency each model spikes.

For each backend: one batched call on a log-spaced sweep of frequencies (`stimuli.sine`
takes an array), the spike count of each trace on the CNN's output window (the same
samples for every backend), then bisection (`hhbench.lab.boundary.bisect_boundary`) on
the bracket between the highest sweep frequency that still spikes and the next one,
to the relative resolution of `LabSettings.rel_tol`. A trace that diverged (forward
Euler overflowing on the negative half-wave) has no spike count: it is reported as
diverged, and if the bracket's end or a bisection step diverges the boundary is
"diverged" too.

Spikes are counted under both named rules of `hhbench.metrics.SPIKE_RULES` (the default
"run-above-0mV" and the lab's own "lab-find-peaks"), each with its own sweep and
bisection (the traces are simulated once per frequency and shared). Where a backend's
output crosses 0 mV at the first frequency without a spike, the section says how often,
how high and for how many samples at most (`ZeroCrossings`): excursions that are not
spikes under the rule.
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
#: the spike rules the boundary is reported under, the default first
RULES = (metrics.DEFAULT_SPIKE_RULE,
         *(r for r in metrics.SPIKE_RULES if r != metrics.DEFAULT_SPIKE_RULE))


@dataclass(frozen=True, kw_only=True)
class ZeroCrossings:
    """How a trace crosses 0 mV: its runs of consecutive samples above 0 mV (`crossings`,
    one per upward crossing, and one for a run the window starts in), its highest V (mV),
    the longest run, and its spike count under each rule (`spikes`, by rule name)."""

    freq_khz: float
    crossings: int
    max_mv: float
    longest_run_samples: int
    spikes: dict = field(default_factory=dict)


def zero_crossings(freq_khz: float, v: np.ndarray) -> ZeroCrossings:
    above = np.asarray(v) > 0.0
    edges = np.diff(np.concatenate(([0], above.astype(np.int8), [0])))
    runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    return ZeroCrossings(freq_khz=float(freq_khz), crossings=int(runs.size),
                         max_mv=float(np.max(v)),
                         longest_run_samples=int(runs.max()) if runs.size else 0,
                         spikes={r: int(metrics.count_spikes(v, r)) for r in metrics.SPIKE_RULES})


@dataclass(frozen=True, kw_only=True)
class SineBoundary:
    """One backend's sweep and boundary (frequencies in kHz).

    counts: spikes in the window per sweep frequency, None where the trace diverged.
    status: "found" (spikes at lo_khz, none at hi_khz), "diverged" (the bracket or a
    bisection step diverged; lo/hi as far as it got), "spikes throughout" (spikes at the
    highest sweep frequency), "no spikes" (at no sweep frequency).
    rule: the spike rule (a name in `metrics.SPIKE_RULES`).
    at_hi: how the trace at hi_khz (no spike under the rule) crosses 0 mV; None without a
    finite trace there.
    crossing_without_spike_khz: sweep frequencies whose trace crosses 0 mV but has no
    spike under the rule.
    """

    backend: str
    rule: str = metrics.DEFAULT_SPIKE_RULE
    counts: tuple[int | None, ...]
    status: str
    lo_khz: float | None
    hi_khz: float | None
    steps: int
    diverged_khz: tuple[float, ...]
    repetitive_up_to_khz: float | None
    at_hi: ZeroCrossings | None = None
    crossing_without_spike_khz: tuple[float, ...] = ()

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
    rules: tuple[str, ...]
    backends: tuple[SineBoundary, ...]
    figure_data: dict = field(default_factory=dict, metadata={"json": False}, repr=False)

    def row(self, name: str, rule: str = metrics.DEFAULT_SPIKE_RULE) -> SineBoundary:
        return next(b for b in self.backends if b.backend == name and b.rule == rule)

    def rows(self, rule: str = metrics.DEFAULT_SPIKE_RULE) -> list[SineBoundary]:
        return [b for b in self.backends if b.rule == rule]


def sweep_frequencies(setup: LabSetup) -> np.ndarray:
    s = setup.settings
    top = s.sweep_max_khz if s.sweep_max_khz is not None else setup.fs_khz / 4
    return np.geomspace(s.sweep_min_khz, top, s.sweep_points)


class SineProbe:
    """Runs one backend on sines of `amplitude_ua` (other stimulus settings: `stim_kw`)
    and counts spikes (under `rule`, or the rule named in the call) on samples
    [first, first + n_out); remembers each trace there, and simulates a frequency once."""

    def __init__(self, backend, *, amplitude_ua: float, stim_kw: dict, first: int, n_out: int,
                 rule: str = metrics.DEFAULT_SPIKE_RULE):
        self.backend, self.amplitude_ua, self.stim_kw = backend, float(amplitude_ua), dict(stim_kw)
        self.first, self.n_out, self.rule = first, n_out, metrics.spike_rule(rule).name
        self.traces: dict[float, np.ndarray] = {}
        self.diverged: dict[float, bool] = {}
        self.fs_khz: float | None = None

    def _simulate(self, freqs) -> None:
        todo = [f for f in dict.fromkeys(float(f) for f in np.atleast_1d(freqs))
                if f not in self.traces]
        if not todo:
            return
        stim = stimlib.sine(np.asarray(todo), amplitude_ua=self.amplitude_ua, **self.stim_kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DivergenceWarning)  # reported per frequency
            result = self.backend.run(stim)
        # HH traces cover the whole stimulus, the CNN its window: cut to the window
        offset = self.first - result.first_sample
        v = result.v_batch[:, offset:offset + self.n_out]
        self.fs_khz = stim.fs_khz
        for f, row, bad in zip(todo, v, result.diverged):
            self.traces[f], self.diverged[f] = row, bool(bad)

    def counts(self, freqs, rule: str | None = None) -> list[int | None]:
        self._simulate(freqs)
        out = []
        for f in np.atleast_1d(freqs):
            f = float(f)
            out.append(None if self.diverged[f] else int(metrics.count_spikes(
                self.traces[f], rule or self.rule, fs_khz=self.fs_khz)))
        return out

    def spikes(self, f: float, rule: str | None = None) -> bool | None:
        n = self.counts([f], rule)[0]
        return None if n is None else n >= 1

    def crossings(self, f: float) -> ZeroCrossings | None:
        f = float(f)
        if f not in self.traces or self.diverged[f]:
            return None
        return zero_crossings(f, self.traces[f])


def sweep_and_bisect(name: str, probe: SineProbe, freqs: np.ndarray, rel_tol: float,
                     rule: str | None = None) -> SineBoundary:
    """One backend's answer under spike rule `rule` (default: the probe's): spike counts on
    the sweep `freqs` (one batched call), then bisection between the highest frequency with
    a spike and the next sweep frequency, to hi/lo − 1 ≤ `rel_tol`. See `SineBoundary` for
    the statuses."""
    rule = metrics.spike_rule(rule or probe.rule).name
    counts = probe.counts(freqs, rule)
    diverged = tuple(float(f) for f, n in zip(freqs, counts) if n is None)
    spiking = [i for i, n in enumerate(counts) if n]
    repetitive = [i for i, n in enumerate(counts) if n and n >= 2]
    rep = float(freqs[max(repetitive)]) if repetitive else None
    quiet_crossing = tuple(float(f) for f, n in zip(freqs, counts)
                           if n == 0 and probe.crossings(f).crossings > 0)
    base = dict(backend=name, rule=rule, counts=tuple(counts), diverged_khz=diverged,
                repetitive_up_to_khz=rep, crossing_without_spike_khz=quiet_crossing)
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
    bracket = bisect_boundary(lambda f: probe.spikes(f, rule), lo, hi, rel_tol=rel_tol,
                              lo_value=True)
    status = "diverged" if bracket.undecided_at is not None else "found"
    return SineBoundary(status=status, lo_khz=bracket.lo, hi_khz=bracket.hi,
                        steps=bracket.steps, at_hi=probe.crossings(bracket.hi), **base)


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
        for rule in RULES:  # the second rule reuses the first one's traces where it can
            row = sweep_and_bisect(name, probe, freqs, s.rel_tol, rule=rule)
            rows.append(row)
            if row.lo_khz is not None and row.hi_khz is not None:
                traces.setdefault(name, {}).update(
                    {f: probe.traces[f] for f in (row.lo_khz, row.hi_khz) if f in probe.traces})
    sample = stimlib.sine(freqs[:1], amplitude_ua=s.sine_amplitude_ua, **setup.stim_kw())
    t_window = (np.arange(n_out) + first) / setup.fs_khz
    return SineAnswer(amplitude_ua=s.sine_amplitude_ua, onset_ms=sample.params["onset_ms"],
                      n_samples=setup.n_samples, fs_khz=setup.fs_khz, first_sample=first,
                      output_samples=n_out, window_start_ms=float(t_window[0]),
                      window_end_ms=float(t_window[-1]) + 1 / setup.fs_khz,
                      sweep_khz=tuple(freqs.tolist()), rel_tol=s.rel_tol, rules=RULES,
                      backends=tuple(rows),
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


def _other_rules(a: SineAnswer, b: SineBoundary) -> str:
    """' (the same under lab-find-peaks)' or ' (lab-find-peaks: …)' for backend b's row."""
    out = []
    for rule in a.rules[1:]:
        other = a.row(b.backend, rule)
        same = (other.status, other.lo_khz, other.hi_khz) == (b.status, b.lo_khz, b.hi_khz)
        out.append(f"the same under {rule}" if same else f"{rule}: {_answer(other)}")
    return f" ({'; '.join(out)})" if out else ""


def headline(a: SineAnswer) -> str:
    parts = [f"{b.backend}: {_answer(b)}{_other_rules(a, b)}" for b in a.rows()]
    return f"spiking stops ({a.rules[0]}) — " + "; ".join(parts)


def _crossing_text(b: SineBoundary) -> str | None:
    """'`cnn` at 1.11 kHz crosses 0 mV 81 times, up to +69.6 mV, in runs of at most 9
    samples' for a row whose first frequency without a spike still crosses 0 mV."""
    c = b.at_hi
    if c is None or c.crossings == 0:
        return None
    times = "once" if c.crossings == 1 else f"{c.crossings} times"
    others = ", ".join(f"{n} under {r}" for r, n in c.spikes.items() if r != b.rule)
    return (f"`{b.backend}` at {num(c.freq_khz)} kHz crosses 0 mV {times}, up to "
            f"{c.max_mv:+.1f} mV, in runs of at most {c.longest_run_samples} samples: "
            f"no spike under {b.rule}" + (f" ({others})" if others else ""))


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


def _rule_text(rule: str) -> str:
    return {"run-above-0mV": "a run of at least 10 consecutive samples above 0 mV (its "
                             "highest sample is the spike)",
            "lab-find-peaks": "the lab's `scipy.signal.find_peaks(V, height=0, width=10)`: a "
                              "peak above 0 mV at least 10 samples wide at half its "
                              "prominence"}.get(rule, metrics.spike_rule(rule).definition)


def write(a: SineAnswer, out_dir: Path) -> list[Path]:
    counts_fig, traces_fig = f"{KEY}_spikes_vs_frequency.png", f"{KEY}_traces_at_boundary.png"
    freqs = np.asarray(a.sweep_khz)
    stable = _stable(a)
    default_rows = a.rows()
    rows = []
    for b in a.backends:
        c = np.array([np.nan if n is None else n for n in b.counts], dtype=float)
        quiet = np.isin(freqs, b.crossing_without_spike_khz)
        rows.append([b.backend, b.rule, _ranges(freqs, c >= 1), _ranges(freqs, np.isnan(c)),
                     _ranges(freqs, quiet), num(b.repetitive_up_to_khz), b.status,
                     num(b.lo_khz), num(b.hi_khz), num(b.estimate_khz), b.steps])
    diverging = [b for b in default_rows if b.diverged_khz]
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
    rules_text = "; ".join(f"*{r}*{' (the default)' if i == 0 else ''}: {_rule_text(r)}"
                           for i, r in enumerate(a.rules))
    agree = [b.backend for b in default_rows
             if all((a.row(b.backend, r).status, a.row(b.backend, r).lo_khz,
                     a.row(b.backend, r).hi_khz) == (b.status, b.lo_khz, b.hi_khz)
                    for r in a.rules[1:])]
    agree_text = ("Both rules give the same boundary for " + ", ".join(f"`{n}`" for n in agree)
                  if agree else "The rules give different boundaries for every backend")
    differ = [b.backend for b in default_rows if b.backend not in agree]
    agree_text += (f"; they differ for {', '.join(f'`{n}`' for n in differ)}." if differ
                   else ".")
    crossings = [t for t in (_crossing_text(b) for b in a.backends) if t]
    cross_text = ""
    if crossings:
        cross_text = ("\n**Crossing 0 mV without a spike.** At the first frequency without a "
                      "spike under a rule (each bracket's *hi*) a trace can still cross 0 mV, "
                      "in excursions that rule does not count: "
                      + "; ".join(crossings) + ". Column *crosses 0 mV, no spike* lists the "
                      "sweep frequencies where that happens; the lower figure shows the "
                      "traces at both ends of each bracket, with the 0 mV line.\n")
    md = f"""## {TITLE}

**Question.** Inject a sine of amplitude {num(a.amplitude_ua)} µA/cm² (from
{num(a.onset_ms)} ms, {a.n_samples} samples at {num(a.fs_khz)} kHz) and find, for each
model, the frequencies at which it spikes and the frequency at which it stops.

**Method.** Spikes are counted under two named rules (`hhbench.metrics.SPIKE_RULES`):
{rules_text}. Each is counted on the CNN's output window — samples
{a.first_sample} to {a.first_sample + a.output_samples - 1}, t = {num(a.window_start_ms)} to
{num(a.window_end_ms)} ms — for every backend, so all are judged on the same samples.
Each backend runs once on a batch of {freqs.size} log-spaced frequencies from
{num(freqs[0])} to {num(freqs[-1])} kHz{top_text}. Under each rule, the boundary is
bracketed by the highest sweep frequency with at least one spike and the next one above it, and the bracket is halved (geometric midpoint) until
hi/lo − 1 ≤ {num(a.rel_tol)}: *lo* still spikes, *hi* does not. The estimate is √(lo·hi).
`odeint` is left out: it restarts at every sample of a sine (seconds per trace) and agrees
with the converged `reference` to about 0.001 mV.

**Answer.** {agree_text}

{md_table(["backend", "spike rule", "spikes at (sweep)", "diverged at (sweep)",
           "crosses 0 mV, no spike (sweep)", "≥ 2 spikes up to (kHz)", "boundary", "lo (kHz)",
           "hi (kHz)", "estimate (kHz)", "bisection steps"], rows)}
{div_text}{cross_text}{onset_text}

![spike count against frequency]({counts_fig})

![traces on both sides of the boundary]({traces_fig})
"""
    fig = figure(figsize=(9, 4.8))
    ax = fig.subplots()
    names = list(dict.fromkeys(b.backend for b in a.backends))
    for b in a.backends:
        i = names.index(b.backend)
        default = b.rule == a.rules[0]
        c = np.array([np.nan if n is None else n for n in b.counts], dtype=float)
        ax.plot(freqs, c, "o-" if default else "s--", ms=3.5 if default else 2.5,
                lw=1 if default else 0.8, color=f"C{i}", alpha=1 if default else 0.7,
                label=b.backend if default else f"{b.backend} ({b.rule})")
        bad = np.isnan(c)
        if bad.any() and default:
            ax.plot(freqs[bad], np.full(bad.sum(), -0.7 - 0.35 * i), "x", color=f"C{i}",
                    ms=6, label=f"{b.backend}: diverged")
        if b.estimate_khz is not None and b.status == "found":
            ax.axvline(b.estimate_khz, color=f"C{i}", ls=":" if default else "-.", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("sine frequency (kHz)")
    ax.set_ylabel(f"spikes in {num(a.window_start_ms)}–{num(a.window_end_ms)} ms")
    ax.set_title(f"sine of {num(a.amplitude_ua)} µA/cm²: spikes per trace ({a.rules[0]}: "
                 f"solid; {', '.join(a.rules[1:])}: dashed); vertical: boundary (×: diverged)",
                 fontsize="small")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="x-small", ncols=2)
    written = write_section(out_dir, KEY, md, a) + [save_figure(fig, out_dir / counts_fig)]

    traces = a.figure_data.get("traces", {})
    t = a.figure_data["t_ms"]
    names = list(traces) or ["(none)"]
    fig = figure(figsize=(9, 1.9 * len(names) + 0.8))
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, names):
        spiking = {r: a.row(name, r) for r in a.rules} if name in traces else {}
        for f, v in sorted(traces.get(name, {}).items()):
            sides = [f"{'spikes' if f == b.lo_khz else 'no spike'} ({r})"
                     for r, b in spiking.items() if f in (b.lo_khz, b.hi_khz)]
            c = zero_crossings(f, v)
            label = f"{num(f)} kHz: {', '.join(sides)}"
            if c.crossings and f not in [b.lo_khz for b in spiking.values()]:
                label += (f"; crosses 0 mV {c.crossings}×, max {c.max_mv:+.1f} mV, "
                          f"runs ≤ {c.longest_run_samples} samples; spikes: "
                          + ", ".join(f"{n} ({r})" for r, n in c.spikes.items()))
            ax.plot(t, v, lw=0.9, label=label)
        ax.axhline(0.0, color="k", lw=0.6, ls="--")
        ax.set_ylabel(f"{name}\nV (mV)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="xx-small", loc="upper right")
    axes[-1].set_xlabel("t (ms), the CNN's output window")
    axes[0].set_title("the two ends of each backend's final bracket, under each rule "
                      "(dashed: 0 mV)")
    return written + [save_figure(fig, out_dir / traces_fig)]


__all__ = ["SineAnswer", "SineBoundary", "SineProbe", "ZeroCrossings", "zero_crossings",
           "RULES", "sweep_and_bisect", "compute", "write", "headline", "sweep_frequencies",
           "KEY", "TITLE"]
