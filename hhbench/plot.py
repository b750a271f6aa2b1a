"""Figures from a results file: cost against batch size, accuracy, and voltage overlays.

`plot_results(results, out_dir)` writes
  * ``cost_vs_batch.png``: warm median time per trace (ms) against batch size, log-log, one
    line per (backend, device), one panel per stimulus;
  * ``accuracy.png``: median RMSE (mV) and median Γ against the reference, grouped bars per
    stimulus, one bar per (backend, device), from the smallest batch that ran;
  * ``overlay_<stimulus>.png``: the injected current and the voltage of the reference and
    of every backend (first trace of the smallest batch), each on its own time axis, so
    the CNN sits in its central window.

Figures are drawn with matplotlib's Agg renderer on `Figure` objects created here (not
through pyplot), so nothing global changes: the matplotlib backend of the caller (a
notebook, a GUI) is left alone and no figure stays registered anywhere after saving.
Every file is written atomically (temporary file in the same folder, then a rename), so
an interrupted plot leaves no broken image.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from pathlib import Path

import numpy as np

from hhbench.atomic import atomic_writer, check_output_path
from hhbench.environment import one_line
from hhbench.errors import HHBenchError
from hhbench.results import CaseResult, RunResults

#: statuses of cases that ran to the end (a diverged case has timings and partial accuracy)
RAN = ("ok", "diverged")


def plot_results(results: RunResults, out_dir: str | os.PathLike, *, fmt: str = "png") -> list[Path]:
    """Write the cost, accuracy and overlay figures of `results` into `out_dir`.

    `out_dir` is created if missing, but only its last level: a missing parent raises
    HHBenchError (nothing is written). HHBenchError too when no case ran successfully or
    `fmt` is not an image format matplotlib can write. Returns the paths written, in the
    order cost, accuracy, then one overlay per stimulus of `results.examples`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fmt = str(fmt).lower().lstrip(".")
    if fmt not in FigureCanvasAgg(Figure()).get_supported_filetypes():
        raise HHBenchError(f"cannot plot to format {fmt!r}; use png, pdf or svg")
    if not any(c.status in RAN for c in results.cases):
        raise HHBenchError("the results hold no successful case: nothing to plot")
    colors = _colors(results)
    figures = []  # (file, drawing): drawn one at a time, as each is written
    if _cost_figure(results, colors, check=True):
        figures.append((f"cost_vs_batch.{fmt}", lambda: _cost_figure(results, colors)))
    figures.append((f"accuracy.{fmt}", lambda: _accuracy_figure(results, colors)))
    for stimulus, example in results.examples.items():
        name = re.sub(r"[^\w.-]", "_", str(stimulus))
        figures.append((f"overlay_{name}.{fmt}",
                        lambda s=stimulus, e=example: _overlay_figure(results, s, e, colors)))
    from hhbench.atomic import write_files
    with folder_for_writing(Path(out_dir)) as out:
        return write_files(*((out / name, lambda p, draw=draw: _save(draw(), p, fmt))
                             for name, draw in figures))


# -- helpers ---------------------------------------------------------------------------------

def _prepare_dir(path: Path) -> Path:
    """`path` as an existing folder that takes new files: created if only its last level
    is missing."""
    from hhbench.atomic import check_writable_folder
    if path.is_dir():
        return check_writable_folder(path)
    if path.exists():
        raise HHBenchError(f"cannot plot into {path}: it exists and is not a folder")
    if not path.parent.is_dir():
        raise HHBenchError(f"cannot plot into {path}: folder {path.parent} does not exist")
    try:
        path.mkdir()
    except OSError as exc:
        raise HHBenchError(f"cannot create {path}: {exc.strerror or exc}") from None
    return path


@contextlib.contextmanager
def folder_for_writing(path: Path):
    """`path` as an existing folder that takes new files (`_prepare_dir`: created if only
    its last level is missing) for a `with` block; a folder created here is removed again
    if the block fails and leaves it empty (a full disk leaves no empty folder)."""
    created = not path.exists()
    folder = _prepare_dir(path)
    try:
        yield folder
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty
        raise


def _save(fig, path: Path, fmt: str) -> Path:
    """Render `fig` with Agg and write it atomically (see hhbench.atomic)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # Agg renderer for this figure only
    try:
        with atomic_writer(path, "wb") as fh:
            fig.savefig(fh, format=fmt, dpi=120)
    finally:
        fig.clear()  # drop the artists now; the figure is not registered with pyplot
    return path


#: the public name, for other report writers (hhbench.lab)
save_figure = _save


def check_plot_path(path: str | os.PathLike) -> Path:
    """A writable path whose suffix names an image format matplotlib writes (before any
    work is done)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = check_output_path(path)
    fmt = path.suffix.lstrip(".").lower()
    supported = FigureCanvasAgg(Figure()).get_supported_filetypes()
    if fmt not in supported:
        raise HHBenchError(f"cannot plot to {path}: unknown image format {fmt!r} "
                           f"(use one of {', '.join(sorted(supported))})")
    return path


def _label(case: CaseResult) -> str:
    """'numba' for the CPU simulators, 'cnn@GPU:0' for a backend with a device (as in
    `examples`)."""
    return case.backend if case.device == "cpu" else f"{case.backend}@{case.device}"


def _stimuli(results: RunResults) -> list[str]:
    return list(dict.fromkeys(c.stimulus for c in results.cases))


def _colors(results: RunResults) -> dict[str, tuple]:
    """One colour per backend label, the same in every figure."""
    from matplotlib import colormaps

    labels = list(dict.fromkeys(_label(c) for c in results.cases))
    for example in results.examples.values():
        labels += [b for b in example.get("backends", {}) if b not in labels]
    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def _number(value) -> float:
    """A float, NaN for None or anything not a finite number."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def _array(values) -> np.ndarray:
    """A float array from a JSON list (None → NaN)."""
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _title(results: RunResults, what: str) -> str:
    return f"{what}\n{one_line(results.environment)}"


# -- figures ----------------------------------------------------------------------------------

def _cost_figure(results: RunResults, colors: dict, *, check: bool = False):
    """Per-trace warm median (ms) against batch size; None when no case has a timing
    (with `check`: whether there is one, nothing drawn)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    points: dict[str, dict[str, list]] = {}
    for c in results.cases:
        if c.status not in RAN or c.timing is None:
            continue
        per_trace = _number(c.row().get("per_trace_ms"))
        if math.isnan(per_trace) or per_trace <= 0:
            continue
        points.setdefault(c.stimulus, {}).setdefault(_label(c), []).append(
            (c.batch, per_trace, c.status == "diverged"))
    stimuli = [s for s in _stimuli(results) if s in points]
    if not stimuli:
        return None
    if check:
        return True

    fig = Figure(figsize=(4.2 * len(stimuli) + 1.8, 4.2), layout="constrained")
    axes = fig.subplots(1, len(stimuli), sharey=True, squeeze=False)[0]
    handles = {}
    batches = sorted({c.batch for c in results.cases})
    any_diverged = False
    for ax, stimulus in zip(axes, stimuli):
        for label, pts in points[stimulus].items():
            pts.sort()
            x = [p[0] for p in pts]
            y = [p[1] for p in pts]
            (line,) = ax.plot(x, y, marker="o", color=colors[label], label=label)
            handles.setdefault(label, line)
            div = [p for p in pts if p[2]]
            if div:  # hollow markers: this timing comes from a diverged run
                any_diverged = True
                ax.plot([p[0] for p in div], [p[1] for p in div], linestyle="none",
                        marker="o", markersize=9, markerfacecolor="white",
                        markeredgecolor=colors[label])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(FixedLocator(batches))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_locator(NullLocator())
        if len(batches) == 1:
            ax.set_xlim(batches[0] / 2, batches[0] * 2)
        ax.set_title(f"{stimulus} stimulus")
        ax.set_xlabel("batch size (traces per call)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("warm median time per trace (ms)")
    fig.legend(list(handles.values()), list(handles), loc="outside right upper",
               title="backend", fontsize="small")
    what = "Cost per trace against batch size (lower is better)"
    if any_diverged:
        what += "; hollow marker: run diverged"
    fig.suptitle(_title(results, what), fontsize="medium")
    return fig


def _accuracy_cases(results: RunResults) -> dict[tuple[str, str], CaseResult]:
    """Per (label, stimulus): the smallest batch that ran, else the smallest batch (failed)."""
    chosen: dict[tuple[str, str], CaseResult] = {}
    for c in results.cases:
        key = (_label(c), c.stimulus)
        old = chosen.get(key)
        if old is None or ((c.status in RAN, -c.batch) > (old.status in RAN, -old.batch)):
            chosen[key] = c
    return chosen


def _accuracy_figure(results: RunResults, colors: dict):
    """Grouped bars of median RMSE (mV) and median Γ per stimulus and backend."""
    from matplotlib.figure import Figure

    stimuli = _stimuli(results)
    chosen = _accuracy_cases(results)
    labels = list(dict.fromkeys(label for label, _ in chosen))
    width = 0.8 / len(labels)
    reference = results.settings.get("reference") or results.cases[0].reference

    fig = Figure(figsize=(max(7.0, 1.0 + 0.45 * len(labels) * len(stimuli)) + 1.8, 6.6),
                 layout="constrained")
    ax_rmse, ax_gamma = fig.subplots(2, 1, sharex=True)
    metrics = ((ax_rmse, "rmse_mv", "median RMSE (mV)", "{:.3g}"),
               (ax_gamma, "gamma", "median Γ (coincidence factor)", "{:.2f}"))
    any_hatched = False
    for ax, column, ylabel, text_fmt in metrics:
        for i, label in enumerate(labels):
            for j, stimulus in enumerate(stimuli):
                x = j - 0.4 + (i + 0.5) * width
                case = chosen.get((label, stimulus))
                if case is None:
                    continue
                value = _number(case.row().get(column))
                if math.isnan(value):
                    missing = case.status if case.status != "ok" else "n/a"
                    ax.text(x, 0.02, missing, transform=ax.get_xaxis_transform(),
                            rotation=90, ha="center", va="bottom", fontsize="x-small",
                            color=colors[label])
                    continue
                hatch = "//" if case.status == "diverged" else None
                any_hatched |= hatch is not None
                ax.bar(x, value, width=width * 0.92, color=colors[label], hatch=hatch,
                       edgecolor="white" if hatch else None)
                ax.annotate(text_fmt.format(value), (x, value), xytext=(0, 2),
                            textcoords="offset points", ha="center", va="bottom",
                            fontsize="xx-small")
        ax.set_ylabel(ylabel)
        ax.grid(True, axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        ax.margins(y=0.15)
    ax_rmse.set_ylim(bottom=0)
    ax_gamma.set_ylim(0, 1.12)
    ax_gamma.set_xticks(range(len(stimuli)), [f"{s} stimulus" for s in stimuli])
    ax_gamma.set_xlim(-0.5, len(stimuli) - 0.5)
    from matplotlib.patches import Patch
    handles = [Patch(color=colors[label], label=label) for label in labels]
    if any_hatched:
        handles.append(Patch(facecolor="lightgray", hatch="//", edgecolor="white",
                             label="diverged (partial)"))
    fig.legend(handles=handles, loc="outside right upper", title="backend", fontsize="small")
    fig.suptitle(_title(results, f"Accuracy against the {reference} reference "
                                 "(smallest batch that ran)"), fontsize="medium")
    return fig


def _overlay_figure(results: RunResults, stimulus: str, example: dict, colors: dict):
    """Current (top) and voltages of the reference and every backend (bottom)."""
    from matplotlib.figure import Figure

    reference = results.settings.get("reference") or (
        results.cases[0].reference if results.cases else "reference")
    t = _array(example.get("t_ms", []))
    fig = Figure(figsize=(10, 6), layout="constrained")
    ax_i, ax_v = fig.subplots(2, 1, sharex=True, height_ratios=(1, 2.6))

    current = _array(example.get("current_ua", []))
    if t.size and current.size == t.size:
        ax_i.plot(t, current, color="0.25", linewidth=0.9)
    ax_i.set_ylabel("current (µA/cm²)")
    ax_i.grid(True, alpha=0.3)

    v_ref = _array(example.get("reference", []))
    finite = [v_ref[np.isfinite(v_ref)]] if v_ref.size else []
    if t.size and v_ref.size == t.size:
        ax_v.plot(t, v_ref, color="black", linewidth=2.4, alpha=0.45,
                  label=f"{reference} reference", zorder=1)
    for label, trace in example.get("backends", {}).items():
        tb, vb = _array(trace.get("t_ms", [])), _array(trace.get("v_mv", []))
        if not tb.size or tb.size != vb.size:
            continue
        ok = np.isfinite(vb)
        shown = label if ok.all() else f"{label} (diverged)"
        ax_v.plot(tb, vb, color=colors.get(label), linewidth=0.9, label=shown, zorder=2)
        finite.append(vb[ok])
    _voltage_limits(ax_v, v_ref, finite)
    ax_v.set_xlabel("t (ms)")
    ax_v.set_ylabel("membrane potential (mV)")
    ax_v.grid(True, alpha=0.3)
    ax_v.legend(loc="upper left",
                bbox_to_anchor=(1.01, 1.0), fontsize="small", title="trace")
    fig.suptitle(_title(results, f"{stimulus} stimulus: current and voltage (first trace)"),
                 fontsize="medium")
    return fig


def _voltage_limits(ax, v_ref: np.ndarray, finite: list[np.ndarray]) -> None:
    """Y limits around the reference, widened for the backends but not without bound, so a
    trace that blew up before diverging does not flatten everything else."""
    ref = v_ref[np.isfinite(v_ref)]
    values = np.concatenate([f for f in finite if f.size]) if any(f.size for f in finite) \
        else np.empty(0)
    if not values.size:
        return
    if ref.size:
        lo, hi = float(ref.min()), float(ref.max())
        span = max(hi - lo, 10.0)
        lo = max(float(values.min()), lo - span)
        hi = min(float(values.max()), hi + span)
    else:
        lo, hi = float(np.percentile(values, 1)), float(np.percentile(values, 99))
    pad = max(0.05 * (hi - lo), 1.0)
    ax.set_ylim(lo - pad, hi + pad)


def plot_trace(result, path: str | os.PathLike) -> Path:
    """One simulated result (`hhbench simulate --plot`): the current (µA/cm²) above and V (mV)
    below, against t (ms); every trace of a batch is drawn. Written atomically."""
    from matplotlib.figure import Figure

    path = check_plot_path(path)
    stim = result.stimulus
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax_i, ax_v = fig.subplots(2, 1, sharex=True, height_ratios=(1, 2))
    ax_i.plot(stim.t_ms, stim.current_ua.T, lw=0.8)
    ax_i.set_ylabel("I (µA/cm²)")
    v = np.asarray(result.v_batch, dtype=float)
    ax_v.plot(result.t_ms, v.T, lw=0.9)
    ax_v.set_ylabel("V (mV)")
    ax_v.set_xlabel("t (ms)")
    if result.any_diverged:
        _mark_divergence(ax_v, np.asarray(result.t_ms, dtype=float), v)
    state = ", DIVERGED" if result.any_diverged else ""
    ax_i.set_title(f"{result.backend} on {stim.kind} ({result.device}){state}")
    return _save(fig, path, path.suffix.lstrip(".").lower())


#: the voltage range a diverged trace's plot keeps (mV): physiological V lies well inside it,
#: while forward Euler's last finite values before the overflow can be ±1e300
V_RANGE_MV = (-100.0, 60.0)


def diverged_ylim(v: np.ndarray, v_range=V_RANGE_MV, margin: float = 0.05) -> tuple[float, float]:
    """y-limits for traces that may hold NaN/inf or huge values: the finite part of V clipped
    to `v_range`, plus a margin of `margin` x the span on each side."""
    finite = v[np.isfinite(v)]
    lo, hi = v_range
    if finite.size:
        lo = max(lo, float(finite.min()))
        hi = min(hi, float(finite.max()))
        if not lo < hi:  # a flat or wholly out-of-range trace: show the whole range
            lo, hi = v_range
    pad = margin * (hi - lo)
    return lo - pad, hi + pad


def _mark_divergence(ax, t_ms: np.ndarray, v: np.ndarray) -> None:
    """Keep the finite part of diverged traces readable: y-limits from it (clipped to a
    physiological range), and a dashed vertical line labelled "diverged" where the first
    trace stops being finite or leaves that range."""
    ax.set_ylim(*diverged_ylim(v))
    lo, hi = V_RANGE_MV
    bad = ~np.isfinite(v) | (v < lo - 100.0) | (v > hi + 100.0)
    if not bad.any():
        return
    first = int(np.argmax(bad.any(axis=0)))
    t_div = float(t_ms[min(first, t_ms.size - 1)])
    ax.axvline(t_div, color="crimson", ls="--", lw=1.0)
    ax.text(t_div, 0.95, " diverged", transform=ax.get_xaxis_transform(), color="crimson",
            ha="left", va="top", fontsize=9)


def prepare_folder(path: str | os.PathLike) -> Path:
    """`path` as an existing folder (created if only its last level is missing)."""
    return _prepare_dir(Path(path))


def plot_scaling(results, path: str | os.PathLike, *, fmt: str = "png") -> Path:
    """Per-trace cost against batch size and against stimulus length, log-log, one line per
    backend, each labelled with its fitted growth exponent (`hhbench.scaling`)."""
    from matplotlib.figure import Figure

    exps = results.exponents()
    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2)
    for ax, axis, xlabel in ((axes[0], "batch", "batch size (traces)"),
                             (axes[1], "length", "stimulus length (samples), one trace")):
        for backend in results.series():
            pts = [p for p in results.points if p.series == backend and p.axis == axis]
            if not pts:
                continue
            p = exps.get((backend, axis))
            label = backend if p is None else f"{backend} (p = {p:.2f})"
            ax.plot([q.size for q in pts], [q.per_trace_s * 1e3 for q in pts], "o-", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("time per trace (ms)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title("per-trace cost against batch size")
    axes[1].set_title("per-trace cost against stimulus length")
    fig.suptitle("growth exponent p: time per call ∝ sizeᵖ", fontsize=9)
    fig.tight_layout()
    return _save(fig, Path(path), fmt)
