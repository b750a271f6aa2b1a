"""How each backend's cost grows with the batch size and with the stimulus length.

`run_scaling(config)` times every backend (a fresh one per backend, prepared once) on the
suite's stimulus (`hhbench.suite.case_stimulus`) over two sweeps:
  * batch: 1, 4, 16, … up to `max_batch` traces of `n_samples` samples;
  * length: `lengths` samples (doubling), one trace;
each point with `hhbench.timing.measure` (its cold first call apart, not used here); on a
GPU the time is the device-only call (`Backend.device_call`), with the round trip beside.
A sweep stops early when the backend has spent `budget_s` seconds on it or when the next
point, extrapolated from the last one, would not fit in what is left, so slow backends
stop early and fast ones go to the end.

For each backend and sweep the growth exponent p is fitted by least squares on
log(time per call) = p·log(size) + c: p = 1 is linear growth (batching does not pay: the
per-trace cost is flat); p < 1 along the batch axis is the share of fixed cost that batching
amortises (per-trace cost ∝ batchᵖ⁻¹). Each point records its spread (interquartile range
/ median of its warm calls); an exponent fitted through a point whose spread is above
`NOISY_SPREAD` is marked, since one slow point bends the fit. The load on the machine is
recorded as `hhbench run` records it (`environment`: its state at the start and the other
work measured while the sweeps ran, `hhbench.busy`), so `scaling` warns as `run` does.
"""

from __future__ import annotations

import csv
import io
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

from hhbench import stimuli as stimlib
from hhbench.devices import check_devices
from hhbench.errors import HHBenchError
from hhbench.failures import not_run
from hhbench.timing import WARMUP_MIN_S, TimingSettings, measure

AXES = ("batch", "length")
#: spread of a point's warm calls (IQR / median) above which its exponents are marked
NOISY_SPREAD = 0.10


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
    #: device requests: every backend runs on each device it can (resolved by the backend;
    #: one it cannot run on is left out with the reason in `skipped`)
    devices: tuple[str, ...] = ("auto",)
    model: str | None = None
    #: per backend, its options (as `SuiteConfig.options`)
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    timing: TimingSettings = field(default_factory=lambda: TimingSettings(
        warmup_calls=1, warmup_min_s=WARMUP_MIN_S, min_repeats=3, min_time_s=0.2))

    def __post_init__(self):
        from hhbench.backends import check_name
        for name in self.backends:
            check_name(name)
        stimlib.check_kind(self.stimulus)
        if isinstance(self.devices, str):
            object.__setattr__(self, "devices", (self.devices,))
        object.__setattr__(self, "devices", check_devices(self.devices))
        object.__setattr__(self, "options", {
            name: check_name(name).check_options(opts, self.devices)
            for name, opts in dict(self.options).items()})
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
    device: str = "cpu"
    batch: int
    n_samples: int
    call_s: float
    #: interquartile range / median of the warm calls (None: not measured)
    spread: float | None = None
    #: a GPU backend's `call_s` is device only (input on the device, synchronised); its
    #: round trip from host arrays to host arrays is kept here
    round_trip_s: float | None = None

    @property
    def size(self) -> int:
        return self.batch if self.axis == "batch" else self.n_samples

    @property
    def series(self) -> str:
        """The backend, with its device where that is not the CPU ("jax@gpu:0")."""
        return self.backend if self.device == "cpu" else f"{self.backend}@{self.device}"

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
    stopped: dict = field(default_factory=dict)   # (series, axis) -> why a sweep ended early
    skipped: dict = field(default_factory=dict)   # "backend@request" -> why it did not run
    #: "backend@device" -> the error that stopped it (its points measured before are kept)
    failed: dict = field(default_factory=dict)
    #: {"state": machine state at the start, "load_during": other work while it ran}
    environment: dict = field(default_factory=dict)

    def noisy(self) -> set:
        """(series, axis) whose exponent was fitted through a point of spread > 10 %."""
        return {(p.series, p.axis) for p in self.points
                if p.spread is not None and p.spread > NOISY_SPREAD}

    def warnings(self) -> list[str]:
        """What `run` would warn about this sweep's machine: its state at the start and the
        other work measured while it ran."""
        from hhbench.busy import busy_reasons
        from hhbench.check import machine_warnings
        out = machine_warnings(self.environment.get("state") or {})
        out += [f"while the sweeps ran: {why}: times are inflated and exponents bent (rerun "
                "on a quiet machine)" for why in busy_reasons(
                    {"load_during": self.environment.get("load_during")})
                if self.environment.get("load_during")]
        if self.noisy():
            n = len(self.noisy())
            out.append(f"{n} exponent{'s' if n > 1 else ''} (marked *) "
                       f"{'are' if n > 1 else 'is'} fitted through points whose warm calls "
                       f"spread more than {NOISY_SPREAD:.0%}: one slow point bends the fit")
        return out

    def series(self) -> list[str]:
        """Every backend@device that ran, in the order they ran."""
        return list(dict.fromkeys(p.series for p in self.points))

    def exponents(self) -> dict[tuple[str, str], float | None]:
        """Growth exponent of the time per call for each (series, axis) that ran."""
        out = {}
        for backend in self.series():
            for axis in AXES:
                pts = [p for p in self.points if p.series == backend and p.axis == axis]
                if pts:
                    out[(backend, axis)] = growth_exponent([p.size for p in pts],
                                                           [p.call_s for p in pts])
        return out

    def rows(self) -> list[dict]:
        return [{"backend": p.backend, "device": p.device, "axis": p.axis, "batch": p.batch,
                 "n_samples": p.n_samples, "call_ms": p.call_s * 1e3,
                 "per_trace_ms": p.per_trace_s * 1e3,
                 "spread_pct": None if p.spread is None else 100 * p.spread,
                 **({} if p.round_trip_s is None else
                    {"round_trip_ms": p.round_trip_s * 1e3})} for p in self.points]

    def break_even(self) -> list[dict]:
        """For each backend that ran on a GPU and on the CPU: the smallest batch from which
        its GPU run costs less per trace than its CPU run (None: never, within the sweep);
        and for each device, at each batch, the per-trace cost of every series there
        relative to the cheapest (the HH/CNN cost ratio on one device)."""
        out = []
        batch_pts = [p for p in self.points if p.axis == "batch"]
        names = list(dict.fromkeys(p.backend for p in batch_pts))
        cpu_names = {p.backend for p in batch_pts if p.device == "cpu"}
        for name in names:
            for gpu in dict.fromkeys(p.device for p in batch_pts
                                     if p.backend == name and p.device != "cpu"):
                gpu_cost = {p.batch: p.per_trace_s for p in batch_pts
                            if p.backend == name and p.device == gpu}
                for cpu_name in ([name] if name in cpu_names else sorted(cpu_names)):
                    cpu_cost = {p.batch: p.per_trace_s for p in batch_pts
                                if p.backend == cpu_name and p.device == "cpu"}
                    common = sorted(set(gpu_cost) & set(cpu_cost))
                    if not common:
                        continue
                    first = next((b for b in common if gpu_cost[b] < cpu_cost[b]), None)
                    out.append({"gpu": f"{name}@{gpu}", "cpu": cpu_name,
                                "overtakes_at_batch": first,
                                "ratio_at_largest": cpu_cost[common[-1]] / gpu_cost[common[-1]],
                                "largest_batch": common[-1]})
        return out

    def to_csv(self) -> str:
        buf = io.StringIO()
        fields = ["backend", "device", "axis", "batch", "n_samples", "call_ms", "per_trace_ms",
                  "spread_pct", "round_trip_ms"]
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", restval="")
        writer.writeheader()
        writer.writerows(self.rows())
        return buf.getvalue()

    def to_markdown(self) -> str:
        """Points and exponents as Markdown tables."""
        lines = ["| backend | sweep | batch | samples | per call | per trace | spread |",
                 "|---|---|---|---|---|---|---|"]
        for p, r in zip(self.points, self.rows()):
            spread = "-" if r["spread_pct"] is None else f"{r['spread_pct']:.0f} %"
            lines.append(f"| {p.series} | {r['axis']} | {r['batch']} | {r['n_samples']} | "
                         f"{r['call_ms']:.3g} ms"
                         + (f" (round trip {r['round_trip_ms']:.3g} ms)"
                            if "round_trip_ms" in r else "")
                         + f" | {r['per_trace_ms']:.3g} ms | {spread} |")
        lines += ["", "| backend | growth exponent, batch | growth exponent, length | "
                      "stopped early |", "|---|---|---|---|"]
        exps, noisy = self.exponents(), self.noisy()
        fmt = lambda key: "-" if exps.get(key) is None else (  # noqa: E731
            f"{exps[key]:.2f}" + ("*" if key in noisy else ""))
        for backend in self.series():
            why = "; ".join(f"{axis}: {self.stopped[(backend, axis)]}" for axis in AXES
                            if (backend, axis) in self.stopped)
            lines.append(f"| {backend} | {fmt((backend, 'batch'))} | "
                         f"{fmt((backend, 'length'))} | {why or '-'} |")
        if noisy:
            lines.append(f"\n\\* fitted through a point whose warm calls spread more than "
                         f"{NOISY_SPREAD:.0%} (interquartile range / median): one slow point "
                         "bends the fit")
        even = self.break_even()
        if even:
            lines += ["", "| on the GPU | against, on the CPU | GPU cheaper per trace from "
                          "batch | CPU/GPU cost at the largest common batch |",
                      "|---|---|---|---|"]
            for e in even:
                lines.append(f"| {e['gpu']} | {e['cpu']} | "
                             f"{e['overtakes_at_batch'] or 'never, within the sweep'} | "
                             f"{e['ratio_at_largest']:.3g}x (batch {e['largest_batch']}) |")
        for key, why in self.skipped.items():
            lines.append(f"\nnot run: {key}: {why}")
        for key, why in self.failed.items():
            lines.append(f"\nfailed: {key}: {why}")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        config = asdict(self.config)
        config["options"] = {k: dict(v) for k, v in self.config.options.items()}
        return {"config": config, "points": self.rows(), "break_even": self.break_even(),
                "skipped": self.skipped, "failed": self.failed,
                "environment": self.environment,
                "exponents": [{"backend": b, "axis": a, "exponent": v}
                              for (b, a), v in self.exponents().items()],
                "stopped": [{"backend": b, "axis": a, "why": w}
                            for (b, a), w in self.stopped.items()]}


def _sweep(backend, config: ScalingConfig, axis: str, sizes, clock=time.perf_counter,
           into: list | None = None):
    """Time `backend` over `sizes` along `axis` within the budget; (points, why stopped).
    Each point is also appended to `into` as it is measured (kept if a later one raises)."""
    from hhbench.suite import case_stimulus

    points, start = [], clock()
    for i, size in enumerate(sizes):
        point_start = clock()
        batch, n = (size, config.n_samples) if axis == "batch" else (1, size)
        stim = case_stimulus(config.stimulus, batch, n_samples=n)
        timed, _ = measure(lambda: backend.run(stim), config.timing)
        # the point's first calls (a compile, at the first size): not what a larger size
        # repeats; each stands in below as one warm call of the larger size
        first_calls_s = timed.cold_s or 0.0
        warm_call_s = timed.median_s
        round_trip = None
        # on a GPU the cost compared is the device's: input already there, synchronised
        try:
            from hhbench.runtimes import device_only_call
            call = device_only_call(backend, stim)
            if call is not None:
                device_only, _ = measure(call, config.timing)
                first_calls_s += device_only.cold_s or 0.0
                warm_call_s += device_only.median_s
                round_trip, timed = timed.median_s, device_only
        except Exception as exc:  # the round trip stands as this point's cost, and is said
            from hhbench.failures import not_run
            warnings.warn(f"{backend.name} on {backend.device}, batch {batch} x {n} samples: "
                          f"the device-only timing failed ({not_run(exc).reason}); the "
                          "round trip is this point's cost", RuntimeWarning, stacklevel=2)
        call = None
        points.append(ScalingPoint(backend=backend.name, axis=axis, batch=batch, n_samples=n,
                                   call_s=timed.median_s, device=backend.device,
                                   spread=timed.iqr_s / timed.median_s
                                   if timed.median_s > 0 else None,
                                   round_trip_s=round_trip))
        if into is not None:
            into.append(points[-1])
        if i + 1 == len(sizes):
            return points, None
        spent = clock() - start
        if spent + next_point_s(clock() - point_start, first_calls_s, warm_call_s,
                                sizes[i + 1] / size) > config.budget_s:
            return points, f"after {size} (budget {config.budget_s:g} s)"
    return points, None


def next_point_s(wall_s: float, first_calls_s: float, warm_call_s: float,
                 ratio: float) -> float:
    """The predicted seconds of the next point of a sweep, `ratio` times larger: this
    point's wall time (its stimulus built, every call timed: on a GPU several round trips
    and the device-only calls, not the device-only time alone) scaled by `ratio`, its
    first (cold) calls, `first_calls_s`, counted as one warm call each, `warm_call_s`,
    so that a compile at the first size does not stop the sweep."""
    steady = max(wall_s - first_calls_s, 0.0) + warm_call_s
    return steady * ratio


def run_scaling(config: ScalingConfig, *, progress: bool = False) -> ScalingResults:
    """Both sweeps for every backend of `config` (see the module docstring)."""

    from hhbench.errors import DivergenceWarning
    from hhbench.suite import make_backend

    from hhbench.devices import check_gpu_present
    check_gpu_present(config.devices)
    from hhbench.busy import LoadMeter
    from hhbench.environment import machine_state
    state = machine_state()
    meter = LoadMeter().start()
    points, stopped, skipped, failed = [], {}, {}, {}
    from hhbench.backends import check_name
    for name in config.backends:
        missing = check_name(name).unavailable_reason()
        if missing:  # not installed here: said, and the other backends go on
            skipped[name] = missing
            continue
        done = set()
        for request in config.devices:
            try:
                backend = make_backend(name, device=request, model=config.model,
                                       options=config.options.get(name))
            except Exception as exc:  # one backend on one device: said, the others go on
                why = not_run(exc)
                (skipped if why.status == "skipped" else failed)[f"{name}@{request}"] = \
                    why.reason
                continue
            if backend.device in done:  # two requests resolved to one device
                continue
            done.add(backend.device)
            pts: list = []
            try:
                backend.prepare()
                for axis, sizes in (("batch", config.batches),
                                    ("length", tuple(config.lengths))):
                    if progress:
                        print(f"scaling: {name} on {backend.device}, {axis} …", flush=True)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", DivergenceWarning)  # cost, not accuracy
                        pts, why = _sweep(backend, config, axis, sizes, into=points)
                    if why:
                        stopped[(pts[0].series if pts else name, axis)] = why
            except Exception as exc:  # its points so far are kept (`into`), and said
                why = not_run(exc)
                (skipped if why.status == "skipped" else failed)[
                    f"{name}@{backend.device}"] = why.reason
    return ScalingResults(config=config, points=tuple(points), stopped=stopped,
                          skipped=skipped, failed=failed,
                          environment={"state": state, "load_during": meter.stop()})


def write_scaling(results: ScalingResults, folder) -> list:
    """scaling.json, scaling.csv, scaling.md and scaling.png in `folder` (created if only
    its last level is missing; removed again if nothing could be written into it), the
    JSON first (it holds everything); returns the paths written. A file that cannot be
    written (a full disk): HHBenchError naming it, what was written and what was not."""
    import json
    from pathlib import Path

    from hhbench.atomic import atomic_write, write_files
    from hhbench.plot import folder_for_writing, plot_scaling

    with folder_for_writing(Path(folder)) as out:
        return write_files(
            (out / "scaling.json",
             lambda p: atomic_write(p, json.dumps(results.as_dict(), indent=1))),
            (out / "scaling.csv", lambda p: atomic_write(p, results.to_csv())),
            (out / "scaling.md", lambda p: atomic_write(p, results.to_markdown() + "\n")),
            (out / "scaling.png", lambda p: plot_scaling(results, p)))
