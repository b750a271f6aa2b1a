"""How each backend's cost grows with the batch size and with the stimulus length.

`run_scaling(config)` times every backend (a fresh one per backend, prepared once) on the
suite's stimulus (`hhbench.suite.case_stimulus`) over two sweeps:
  * batch: 1, 4, 16, … up to `max_batch` traces of `n_samples` samples;
  * length: `lengths` samples (doubling), one trace;
each point with `hhbench.timing.measure` (its cold first call apart, not used here). A sweep
stops early when the backend has spent `budget_s` seconds on it or when the next point,
extrapolated from the last one, would not fit in what is left, so slow backends stop
early and fast ones go to the end.

For each backend and sweep the growth exponent p is fitted by least squares on
log(time per call) = p·log(size) + c: p = 1 is linear growth (batching does not pay: the
per-trace cost is flat); p < 1 along the batch axis is the share of fixed cost that batching
amortises (per-trace cost ∝ batchᵖ⁻¹).
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from hhbench import stimuli as stimlib
from hhbench.errors import HHBenchError
from hhbench.timing import WARMUP_MIN_S, TimingSettings, measure

AXES = ("batch", "length")


def log_spaced(top: int, factor: int = 4) -> tuple[int, ...]:
    """1, factor, factor², … up to top, with top itself as the last size."""
    sizes, size = [], 1
    while size < top:
        sizes.append(size)
        size *= factor
    return tuple(sizes + [int(top)])


@dataclass(frozen=True, kw_only=True)
class ScalingConfig:
    backends: tuple[str, ...] = ("numpy", "numba", "odeint", "exp-euler", "reference", "cnn")
    stimulus: str = "step"
    max_batch: int = 4096
    n_samples: int = stimlib.DEFAULT_SAMPLES
    lengths: tuple[int, ...] = (1280, 2560, 5120, 10240, 20480, 40960)
    budget_s: float = 30.0
    device: str = "auto"
    model: str | None = None
    cnn_mode: str = "auto"
    timing: TimingSettings = field(default_factory=lambda: TimingSettings(
        warmup_calls=1, warmup_min_s=WARMUP_MIN_S, min_repeats=3, min_time_s=0.2))

    def __post_init__(self):
        from hhbench.backends import check_name
        for name in self.backends:
            check_name(name)
        stimlib.check_kind(self.stimulus)
        if "cnn" in self.backends:
            from hhbench.cnn_modes import check_mode
            check_mode(self.cnn_mode, (self.device,))
        if not self.backends:
            raise HHBenchError("scaling needs at least one backend")
        if int(self.max_batch) != self.max_batch or self.max_batch < 1:
            raise HHBenchError("max_batch must be a positive integer")
        if self.n_samples < 1 or not self.lengths or min(self.lengths) < 1:
            raise HHBenchError("sample counts must be positive")
        if not self.budget_s > 0:
            raise HHBenchError("budget_s must be > 0")

    @property
    def batches(self) -> tuple[int, ...]:
        return log_spaced(self.max_batch)


@dataclass(frozen=True, kw_only=True)
class ScalingPoint:
    """One timed size: warm median seconds per call and per trace."""

    backend: str
    axis: str
    batch: int
    n_samples: int
    call_s: float

    @property
    def size(self) -> int:
        return self.batch if self.axis == "batch" else self.n_samples

    @property
    def per_trace_s(self) -> float:
        return self.call_s / self.batch


def growth_exponent(sizes, times) -> float | None:
    """Least-squares slope p of log(time) against log(size); None with fewer than two sizes."""
    sizes, times = np.asarray(sizes, float), np.asarray(times, float)
    if len(set(sizes.tolist())) < 2:
        return None
    return float(np.polyfit(np.log(sizes), np.log(times), 1)[0])


@dataclass(frozen=True, kw_only=True)
class ScalingResults:
    config: ScalingConfig
    points: tuple[ScalingPoint, ...]
    stopped: dict = field(default_factory=dict)   # (backend, axis) -> why a sweep ended early

    def exponents(self) -> dict[tuple[str, str], float | None]:
        """Growth exponent of the time per call for each (backend, axis) that ran."""
        out = {}
        for backend in self.config.backends:
            for axis in AXES:
                pts = [p for p in self.points if p.backend == backend and p.axis == axis]
                if pts:
                    out[(backend, axis)] = growth_exponent([p.size for p in pts],
                                                           [p.call_s for p in pts])
        return out

    def rows(self) -> list[dict]:
        return [{"backend": p.backend, "axis": p.axis, "batch": p.batch,
                 "n_samples": p.n_samples, "call_ms": p.call_s * 1e3,
                 "per_trace_ms": p.per_trace_s * 1e3} for p in self.points]

    def to_csv(self) -> str:
        buf = io.StringIO()
        fields = ["backend", "axis", "batch", "n_samples", "call_ms", "per_trace_ms"]
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows())
        return buf.getvalue()

    def to_markdown(self) -> str:
        """Points and exponents as Markdown tables."""
        lines = ["| backend | sweep | batch | samples | per call | per trace |",
                 "|---|---|---|---|---|---|"]
        for r in self.rows():
            lines.append(f"| {r['backend']} | {r['axis']} | {r['batch']} | {r['n_samples']} | "
                         f"{r['call_ms']:.3g} ms | {r['per_trace_ms']:.3g} ms |")
        lines += ["", "| backend | growth exponent, batch | growth exponent, length | "
                      "stopped early |", "|---|---|---|---|"]
        exps = self.exponents()
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        for backend in self.config.backends:
            why = "; ".join(f"{axis}: {self.stopped[(backend, axis)]}" for axis in AXES
                            if (backend, axis) in self.stopped)
            lines.append(f"| {backend} | {fmt(exps.get((backend, 'batch')))} | "
                         f"{fmt(exps.get((backend, 'length')))} | {why or '-'} |")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"config": asdict(self.config), "points": self.rows(),
                "exponents": [{"backend": b, "axis": a, "exponent": v}
                              for (b, a), v in self.exponents().items()],
                "stopped": [{"backend": b, "axis": a, "why": w}
                            for (b, a), w in self.stopped.items()]}


def _sweep(backend, config: ScalingConfig, axis: str, sizes, clock=time.perf_counter):
    """Time `backend` over `sizes` along `axis` within the budget; (points, why stopped)."""
    from hhbench.suite import case_stimulus

    points, start = [], clock()
    for i, size in enumerate(sizes):
        batch, n = (size, config.n_samples) if axis == "batch" else (1, size)
        stim = case_stimulus(config.stimulus, batch, n_samples=n)
        timed, _ = measure(lambda: backend.run(stim), config.timing)
        points.append(ScalingPoint(backend=backend.name, axis=axis, batch=batch, n_samples=n,
                                   call_s=timed.median_s))
        if i + 1 == len(sizes):
            return points, None
        spent = clock() - start
        # the next point: at least min_repeats + warm-up + cold calls of a larger size, and
        # the warm-up's minimum time
        calls = config.timing.min_repeats + config.timing.warmup_calls + 1
        next_s = timed.median_s * sizes[i + 1] / size * calls + config.timing.warmup_min_s
        if spent + next_s > config.budget_s:
            return points, f"after {size} (budget {config.budget_s:g} s)"
    return points, None


def run_scaling(config: ScalingConfig, *, progress: bool = False) -> ScalingResults:
    """Both sweeps for every backend of `config` (see the module docstring)."""
    import warnings

    from hhbench.errors import DivergenceWarning
    from hhbench.suite import make_backend

    points, stopped = [], {}
    for name in config.backends:
        backend = make_backend(name, device=config.device, model=config.model,
                               cnn_mode=config.cnn_mode)
        backend.prepare()
        for axis, sizes in (("batch", config.batches), ("length", tuple(config.lengths))):
            if progress:
                print(f"scaling: {name}, {axis} …", flush=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DivergenceWarning)  # cost, not accuracy, here
                pts, why = _sweep(backend, config, axis, sizes)
            points += pts
            if why:
                stopped[(name, axis)] = why
    return ScalingResults(config=config, points=tuple(points), stopped=stopped)


def write_scaling(results: ScalingResults, folder) -> list:
    """scaling.csv, scaling.md, scaling.json and scaling.png in `folder` (created if only its
    last level is missing); returns the paths written."""
    import json
    from pathlib import Path

    from hhbench.atomic import atomic_write
    from hhbench.plot import plot_scaling, prepare_folder

    folder = prepare_folder(Path(folder))
    paths = [folder / "scaling.csv", folder / "scaling.md", folder / "scaling.json"]
    atomic_write(paths[0], results.to_csv())
    atomic_write(paths[1], results.to_markdown() + "\n")
    atomic_write(paths[2], json.dumps(results.as_dict(), indent=1))
    paths.append(plot_scaling(results, folder / "scaling.png"))
    return paths
