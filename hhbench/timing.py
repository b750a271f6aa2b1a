"""Measuring how long a call takes: cold start apart from warm time, repeats until enough.

`measure(fn)` follows the usual discipline (pyperf, pytest-benchmark):
  1. the first call is timed on its own as the cold start (numba compilation or cache
     load, TensorFlow tracing and weight upload); it never enters the warm statistics;
  2. `warmup_calls` more calls, untimed, and more until they have taken `warmup_min_s`
     (Google Benchmark's minimum warm-up time: the lab's CNN at batch 1 runs its first
     2–7 warm calls at 7.5–8.5 ms and then settles at 4.5–5.8 ms, so one warm-up call
     left up to a quarter of the timed calls in the slow phase); none of them when
     `skip_warmup_after_s` is set and the first call took longer: a call that long has
     warmed caches and predictors itself, and a warm-up would only add its cost to every
     process;
  3. timed calls until at least `min_repeats` calls and `min_time_s` seconds are done
     (at most `max_repeats` calls); after such a long first call, `long_call_repeats`
     calls suffice when it is set (the evidence is the spread between processes, and a
     second or third call of a seconds-long case only multiplies the cost of a run).
Each timed call includes `finish(result)`, so the clock stops only when the result really
exists: a raw TensorFlow tensor (a bare compiled call, possibly still running on a GPU)
is copied to NumPy; a backend's `SimResult` already holds NumPy arrays, which exist only
once the device has finished, and is touched to make sure. Work left on a device is
waited for by its runtime (`hhbench.runtimes`): a device-only call does so itself
(`device_only_call`), other callers pass the runtime's `synchronize` as `finish`.
The clock is `time.perf_counter_ns` unless another one is passed (tests use a fake clock).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from hhbench.errors import HHBenchError

Clock = Callable[[], int]

#: the minimum warm-up time of hhbench's own timings (`hhbench run`, the lab, scaling): long
#: enough for the CNN's slow first warm calls at batch 1 (step 2 below)
WARMUP_MIN_S = 0.05


def _default_clock() -> int:
    import time
    return time.perf_counter_ns()


@dataclass(frozen=True, kw_only=True)
class TimingSettings:
    warmup_calls: int = 1
    warmup_min_s: float = 0.0
    min_repeats: int = 3
    min_time_s: float = 0.5
    max_repeats: int = 10_000
    skip_warmup_after_s: float | None = None
    long_call_repeats: int | None = None

    def __post_init__(self):
        # the types first: a config file's "x" gets a sentence, not a comparison error
        for name in ("warmup_calls", "min_repeats", "max_repeats", "long_call_repeats"):
            value = getattr(self, name)
            if not (value is None and name == "long_call_repeats") and (
                    isinstance(value, bool) or not isinstance(value, int)):
                raise HHBenchError(f"timing: {name} must be a whole number, got {value!r}")
        for name in ("warmup_min_s", "min_time_s", "skip_warmup_after_s"):
            value = getattr(self, name)
            if not (value is None and name == "skip_warmup_after_s") and (
                    isinstance(value, bool) or not isinstance(value, (int, float))):
                raise HHBenchError(f"timing: {name} must be a number of seconds, got "
                                   f"{value!r}")
        if self.long_call_repeats is not None and not 1 <= self.long_call_repeats <= self.min_repeats:
            raise HHBenchError("timing: long_call_repeats must be within 1 … min_repeats")
        if self.warmup_calls < 0 or self.min_repeats < 1 or self.max_repeats < self.min_repeats:
            raise HHBenchError("timing: need warmup >= 0 and 1 <= min_repeats <= max_repeats")
        if not (0 <= self.min_time_s < math.inf and 0 <= self.warmup_min_s < math.inf):
            raise HHBenchError("timing: min_time_s and warmup_min_s must be finite and >= 0")


@dataclass(frozen=True, kw_only=True)
class Timing:
    """Cold-start time and warm samples, in seconds."""

    cold_s: float | None
    samples_s: tuple[float, ...]

    def __post_init__(self):
        if not self.samples_s:
            raise ValueError("a Timing needs at least one warm sample")
        object.__setattr__(self, "samples_s", tuple(float(s) for s in self.samples_s))

    @property
    def median_s(self) -> float:
        return float(np.median(self.samples_s))

    @property
    def min_s(self) -> float:
        return float(np.min(self.samples_s))

    @property
    def iqr_s(self) -> float:
        q1, q3 = np.percentile(self.samples_s, [25, 75])
        return float(q3 - q1)

    def percentile_s(self, q: float) -> float:
        return float(np.percentile(self.samples_s, q))

    def summary(self) -> dict:
        """Cold, median, IQR, min, p90, p99 and count (seconds), JSON-ready."""
        return {"cold_s": self.cold_s, "median_s": self.median_s, "iqr_s": self.iqr_s,
                "min_s": self.min_s, "p90_s": self.percentile_s(90),
                "p99_s": self.percentile_s(99), "repeats": len(self.samples_s)}


@dataclass(frozen=True, kw_only=True)
class ProcessTiming:
    """One process' measurement of a case: its set-up (`prepare_s`), first call (`cold_s`)
    and warm samples, in seconds."""

    prepare_s: float | None
    cold_s: float | None
    samples_s: tuple[float, ...]

    def __post_init__(self):
        if not self.samples_s:
            raise ValueError("a ProcessTiming needs at least one warm sample")
        object.__setattr__(self, "samples_s", tuple(float(s) for s in self.samples_s))

    @property
    def median_s(self) -> float:
        return float(np.median(self.samples_s))

    def to_dict(self) -> dict:
        return {"prepare_s": self.prepare_s, "cold_s": self.cold_s,
                "samples_s": list(self.samples_s)}


def pooled(processes: "tuple[ProcessTiming, ...]") -> Timing:
    """All processes' warm samples as one Timing (in process order); its cold start is
    the median of the processes' first calls."""
    colds = [p.cold_s for p in processes if p.cold_s is not None]
    return Timing(cold_s=float(np.median(colds)) if colds else None,
                  samples_s=tuple(s for p in processes for s in p.samples_s))


def finish(result) -> None:
    """Make sure `result` is on the host: a TensorFlow tensor is copied to NumPy, a
    `SimResult`'s V touched. A device-only call waits for its device itself, through its
    runtime (`hhbench.runtimes.device_only_call`), and returns None; a call returning
    device arrays passes its runtime's wait as `measure`'s `finish`."""
    if hasattr(result, "numpy"):
        result.numpy()
    elif hasattr(result, "v_mv"):
        np.asarray(result.v_mv)


def measure(fn: Callable[[], object], settings: TimingSettings = TimingSettings(), *,
            cold: bool = True, clock: Clock = _default_clock,
            finish: Callable[[object], None] = finish) -> tuple[Timing, object]:
    """Time `fn()` as described above, each call followed by `finish(result)` inside the
    clock; return the Timing and the last result."""
    result, cold_s = None, None
    if cold:
        start = clock()
        result = fn()
        finish(result)
        cold_s = (clock() - start) / 1e9
    long_first = (settings.skip_warmup_after_s is not None and cold_s is not None
                  and cold_s > settings.skip_warmup_after_s)
    if not long_first:
        warm_calls, warm_ns, warm_start = 0, 0, clock()
        while warm_calls < settings.warmup_calls or warm_ns < settings.warmup_min_s * 1e9:
            result = fn()
            finish(result)
            warm_calls += 1
            warm_ns = clock() - warm_start
    samples: list[float] = []
    spent_ns = 0
    min_repeats = settings.min_repeats
    if long_first and settings.long_call_repeats is not None:
        min_repeats = settings.long_call_repeats
    while len(samples) < settings.max_repeats and (
            len(samples) < min_repeats or spent_ns < settings.min_time_s * 1e9):
        start = clock()
        result = fn()
        finish(result)
        elapsed = clock() - start
        spent_ns += elapsed
        samples.append(elapsed / 1e9)
    return Timing(cold_s=cold_s, samples_s=tuple(samples)), result


def throughput(median_s: float, *, batch: int, n_samples: int, dt_ms: float) -> dict:
    """Rates for one call on `batch` traces of `n_samples` steps of `dt_ms`:
    traces/s; neuron-steps/s (batch·samples per second); real-time factor = simulated
    neuron-ms per wall-clock ms (batch·samples·dt over the call's duration)."""
    if median_s <= 0:
        return {"traces_per_s": float("inf"), "neuron_steps_per_s": float("inf"),
                "real_time_factor": float("inf")}
    return {"traces_per_s": batch / median_s,
            "neuron_steps_per_s": batch * n_samples / median_s,
            "real_time_factor": batch * n_samples * dt_ms / (median_s * 1e3)}


def calibrate(settings: TimingSettings = TimingSettings(min_repeats=5, min_time_s=0.1)) -> dict:
    """Time two fixed kernels that say how fast this machine is, so results from different
    machines can be read against each other: a float32 matrix product (512×512 @ 512×512)
    and a vectorised exp over 2**20 float64 values. Medians in seconds."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((512, 512)).astype(np.float32)
    b = rng.standard_normal((512, 512)).astype(np.float32)
    x = rng.standard_normal(2 ** 20)
    matmul, _ = measure(lambda: a @ b, settings)
    vexp, _ = measure(lambda: np.exp(x), settings)
    return {"matmul_f32_512_s": matmul.median_s, "exp_f64_1m_s": vexp.median_s}
