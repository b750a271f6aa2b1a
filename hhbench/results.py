"""Result files: what `hhbench run` measured, with its settings and environment.

A `RunResults` holds one `CaseResult` per (backend, stimulus, batch, device): status,
every raw timing sample of every worker process (`processes`: set-up, first call and warm
samples per process; `timing` pools them), the accuracy summary against the stated
reference, the backend's settings. It round-trips through JSON (schema tag
"hhbench-results/2"; files of schema 1, timed in one process, still load as one process
each), is written
atomically (temporary file, then rename, so an interrupted run leaves no broken file),
and turns into a table (pandas) for printing, CSV and notebooks.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hhbench.atomic import atomic_write
from hhbench.errors import HHBenchError
from hhbench.stats import spread
from hhbench.timing import ProcessTiming, Timing, pooled, throughput

SCHEMA = "hhbench-results/2"
#: older schemas that still load (schema 1: one process per case)
READABLE_SCHEMAS = (SCHEMA, "hhbench-results/1")
STATUSES = ("ok", "diverged", "failed", "skipped")


@dataclass(frozen=True, kw_only=True)
class CaseResult:
    """One backend on one stimulus at one batch size, on one device."""

    backend: str
    stimulus: str
    batch: int
    device: str
    status: str
    n_samples: int
    dt_ms: float
    reference: str
    #: all warm samples pooled over processes (cold: the median first call); derived from
    #: `processes` when not given
    timing: Timing | None = None
    #: median one-off set-up before the first call (compile, load) over processes, seconds
    prepare_s: float | None = None
    #: one entry per worker process that timed this case
    processes: tuple[ProcessTiming, ...] = ()
    accuracy: dict = field(default_factory=dict)
    error: str | None = None
    settings: dict = field(default_factory=dict)
    stimulus_params: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.batch < 1:
            raise ValueError("batch must be >= 1")
        procs = tuple(self.processes)
        if procs and self.timing is None:
            object.__setattr__(self, "timing", pooled(procs))
        if procs and self.prepare_s is None:
            prep = [p.prepare_s for p in procs if p.prepare_s is not None]
            object.__setattr__(self, "prepare_s", float(np.median(prep)) if prep else None)
        if not procs and self.timing is not None:  # timed in one process (schema 1, tests)
            procs = (ProcessTiming(prepare_s=self.prepare_s, cold_s=self.timing.cold_s,
                                   samples_s=self.timing.samples_s),)
        object.__setattr__(self, "processes", procs)

    def process_medians(self) -> np.ndarray:
        """Median warm time of each process (seconds)."""
        return np.array([p.median_s for p in self.processes])

    @property
    def short_reason(self) -> str | None:
        """The error's first clause, short enough for a table cell."""
        if not self.error:
            return None
        text = self.error.strip().splitlines()[0].removeprefix("HHBenchError: ")
        return text if len(text) <= 60 else text[:57] + "..."
    @property
    def key(self) -> tuple:
        return (self.backend, self.stimulus, self.batch, self.device)

    def row(self) -> dict:
        """The table row: times in ms, accuracy summary, throughput."""
        row = {"backend": self.backend, "stimulus": self.stimulus, "batch": self.batch,
               "device": self.device, "status": self.status}
        if self.timing is not None:
            t = self.timing.summary()
            setup_ms = _ms(self.prepare_s) or 0.0
            # per process first, then the median over processes: the process is the unit
            colds = [(p.prepare_s or 0.0) + p.cold_s for p in self.processes
                     if p.cold_s is not None]
            medians = self.process_medians()
            warm_s = float(np.median(medians))
            row.update(cold_ms=_ms(float(np.median(colds))) if colds else None,
                       setup_ms=setup_ms, first_call_ms=_ms(t["cold_s"]),
                       warm_median_ms=_ms(warm_s), processes=len(self.processes),
                       spread_pct=100 * spread(medians),
                       warm_iqr_ms=_ms(t["iqr_s"]), warm_min_ms=_ms(t["min_s"]),
                       p90_ms=_ms(t["p90_s"]), p99_ms=_ms(t["p99_s"]), repeats=t["repeats"],
                       per_trace_ms=_ms(warm_s / self.batch),
                       # a GPU case timed once more on data already on the device
                       device_only_ms=_ms(self.settings.get("device_only_s")),
                       **throughput(warm_s, batch=self.batch, n_samples=self.n_samples,
                                    dt_ms=self.dt_ms))
        acc = self.accuracy
        row.update(rmse_mv=acc.get("rmse_mv_median"), mae_mv=acc.get("mae_mv_median"),
                   spike_count_error=acc.get("spike_count_abs_error_mean"),
                   gamma=acc.get("gamma_median"), diverged=acc.get("frac_diverged"),
                   reference=self.reference, error=self.error, reason=self.short_reason)
        return row

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("backend", "stimulus", "batch", "device", "status",
                                           "n_samples", "dt_ms", "reference", "accuracy", "prepare_s",
                                           "error", "settings", "stimulus_params")}
        d["timing"] = None if self.timing is None else {
            "cold_s": self.timing.cold_s, "samples_s": list(self.timing.samples_s)}
        d["processes"] = [p.to_dict() for p in self.processes]
        return _clean(d)

    @classmethod
    def from_dict(cls, d: dict) -> "CaseResult":
        d = dict(d)
        timing = d.pop("timing", None)
        procs = tuple(ProcessTiming(prepare_s=p.get("prepare_s"), cold_s=p.get("cold_s"),
                                    samples_s=tuple(p["samples_s"]))
                      for p in d.pop("processes", None) or ())
        if procs:  # the pooled timing is derived from them
            return cls(processes=procs, **d)
        return cls(timing=None if timing is None else Timing(cold_s=timing["cold_s"],
                                                             samples_s=tuple(timing["samples_s"])),
                   **d)


@dataclass(frozen=True, kw_only=True)
class RunResults:
    settings: dict
    environment: dict
    calibration: dict
    cases: tuple[CaseResult, ...]
    #: per stimulus: current, reference and one trace per backend, for overlay plots
    examples: dict = field(default_factory=dict)

    def table(self):
        """One row per case (a pandas DataFrame)."""
        import pandas as pd
        return pd.DataFrame([c.row() for c in self.cases])

    def case(self, backend: str, stimulus: str, batch: int, device: str | None = None):
        for c in self.cases:
            if c.key[:3] == (backend, stimulus, batch) and device in (None, c.device):
                return c
        raise KeyError((backend, stimulus, batch, device))

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "settings": _clean(self.settings),
                "environment": _clean(self.environment), "calibration": _clean(self.calibration),
                "cases": [c.to_dict() for c in self.cases], "examples": _clean(self.examples)}

    def save(self, path: str | os.PathLike, *, csv: str | os.PathLike | None = None) -> None:
        """Write JSON (and the table as CSV) atomically."""
        atomic_write(path, json.dumps(self.to_dict(), indent=1, allow_nan=False))
        if csv is not None:
            self.save_table(csv)

    def save_table(self, csv: str | os.PathLike) -> None:
        """Write the table as CSV atomically."""
        atomic_write(csv, self.table().to_csv(index=False))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RunResults":
        """Read a results file; HHBenchError for a missing, unreadable or foreign file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise HHBenchError(f"{path}: no such results file") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise HHBenchError(f"{path}: not a readable JSON results file ({exc})") from None
        if not isinstance(data, dict) or data.get("schema") not in READABLE_SCHEMAS:
            raise HHBenchError(f"{path}: not an hhbench results file (expected schema {SCHEMA})")
        try:
            return cls(settings=data["settings"], environment=data["environment"],
                       calibration=data["calibration"],
                       cases=tuple(CaseResult.from_dict(c) for c in data["cases"]),
                       examples=data.get("examples", {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise HHBenchError(f"{path}: malformed hhbench results file ({exc!r})") from None


def load_results(path: str | os.PathLike):
    """A results file as a pandas DataFrame: one row per case, the table's columns plus the
    machine (cpu, gpu) and the git commit, for analysis in notebooks."""
    res = RunResults.load(path)
    df = res.table()
    env = res.environment
    df["cpu"] = env.get("cpu")
    df["gpu"] = ", ".join(g.get("name", "") for g in env.get("gpus", [])) or None
    df["commit"] = (env.get("git") or {}).get("commit")
    df["time_utc"] = env.get("time_utc")
    return df


def _ms(seconds):
    return None if seconds is None else seconds * 1e3


def _clean(obj: Any):
    """JSON-safe copy: NaN/inf → None, NumPy scalars and arrays → Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "tolist"):
        return _clean(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def trace_table(result) -> "pandas.DataFrame":
    """One simulated trace as a table with columns t_ms, current, v_mV (the current at the
    output samples: for the CNN, its central window)."""
    import pandas as pd

    if result.v_batch.shape[0] != 1:
        raise HHBenchError("a trace table holds one trace; this result has "
                           f"{result.v_batch.shape[0]}")
    first, n = result.first_sample, result.t_ms.size
    return pd.DataFrame({"t_ms": np.round(result.t_ms, 6),
                         "current": result.stimulus.current_ua[0, first:first + n],
                         "v_mV": result.v_batch[0]})


def write_trace_csv(result, path: str | os.PathLike) -> None:
    atomic_write(path, trace_table(result).to_csv(index=False))
