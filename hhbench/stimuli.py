"""The lab's input currents: step, sine and white noise (SPEC.md, "Stimuli").

A `Stimulus` holds the current in µA/cm² as a 2-D array (one row per trace), its sampling
rate, and the parameters that made it, so every result can record them. Sample i is at
t = i / fs_khz ms. "0 before the onset" means samples with t < onset_ms carry zero
current; the first sample with t ≥ onset_ms carries the stimulus.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from hhbench.errors import HHBenchError

DEFAULT_FS_KHZ = 20.0
DEFAULT_SAMPLES = 2560
KINDS = ("step", "sine", "noise")


@dataclass(frozen=True, kw_only=True)
class Stimulus:
    """Currents `current_ua` (µA/cm², shape (batch, samples)) sampled at `fs_khz`.

    `batched` is False when the stimulus was made as a single trace: results then come back
    1-D. `kind` and `params` say how it was made (they go into result files).
    """

    current_ua: np.ndarray
    fs_khz: float = DEFAULT_FS_KHZ
    kind: str = "custom"
    params: Mapping[str, Any] = field(default_factory=dict)
    batched: bool = True

    def __post_init__(self):
        current = check_current(self.current_ua)
        if current.ndim == 1:
            current = current[np.newaxis, :]
            object.__setattr__(self, "batched", False)
        current = current.copy()
        current.flags.writeable = False
        object.__setattr__(self, "current_ua", current)
        object.__setattr__(self, "fs_khz", check_rate(self.fs_khz))
        object.__setattr__(self, "params", dict(self.params))

    @property
    def dt_ms(self) -> float:
        return 1.0 / self.fs_khz

    @property
    def n_samples(self) -> int:
        return self.current_ua.shape[1]

    @property
    def batch_size(self) -> int:
        return self.current_ua.shape[0]

    @functools.cached_property
    def t_ms(self) -> np.ndarray:
        """Sample times in ms (read-only; computed once: every result of this stimulus
        carries it, and for a one-trace call of a fast backend it was ~4 µs of ~60)."""
        t = np.arange(self.n_samples) / self.fs_khz
        t.flags.writeable = False
        return t

    @property
    def duration_ms(self) -> float:
        return self.n_samples / self.fs_khz

    def describe(self) -> dict:
        """Settings of this stimulus, JSON-ready."""
        return {"kind": self.kind, **self.params, "fs_khz": self.fs_khz,
                "n_samples": self.n_samples, "batch": self.batch_size}

    def repeat(self, batch: int) -> "Stimulus":
        """The same stimulus with its batch tiled to `batch` rows (for batch timing)."""
        rows = np.resize(np.arange(self.batch_size), batch)
        return Stimulus(current_ua=self.current_ua[rows], fs_khz=self.fs_khz, kind=self.kind,
                        params={**self.params}, batched=True)

    def squeeze(self, array: np.ndarray) -> np.ndarray:
        """Return `array` (batch, ...) without the batch axis if this stimulus is a single trace."""
        return array if self.batched else array[0]


def check_rate(fs_khz) -> float:
    fs = float(fs_khz)
    if not np.isfinite(fs) or fs <= 0:
        raise HHBenchError(f"sampling rate must be a positive number of kHz, got {fs_khz!r}")
    return fs


def check_current(current) -> np.ndarray:
    """Validate a current array: 1-D or 2-D, non-empty, finite; returned as float64."""
    try:
        arr = np.asarray(current, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise HHBenchError(f"current must be numeric: {exc}") from None
    if arr.ndim not in (1, 2):
        raise HHBenchError(f"current must be 1-D (one trace) or 2-D (batch, samples); "
                           f"got {arr.ndim}-D shape {arr.shape}")
    if arr.size == 0:
        raise HHBenchError(f"current is empty (shape {arr.shape})")
    if not np.all(np.isfinite(arr)):
        raise HHBenchError("current contains NaN or infinite values")
    return arr


def _time_axis(n_samples: int, fs_khz: float) -> np.ndarray:
    if int(n_samples) != n_samples or n_samples <= 0:
        raise HHBenchError(f"number of samples must be a positive integer, got {n_samples!r}")
    return np.arange(int(n_samples)) / check_rate(fs_khz)


def _onset_mask(t_ms: np.ndarray, onset_ms) -> np.ndarray:
    """t ≥ onset for a scalar onset (→ 1-D) or a column of onsets (→ one row each)."""
    onset = np.asarray(onset_ms, dtype=np.float64)
    if not np.all(np.isfinite(onset)):
        raise HHBenchError(f"onset must be finite, got {onset_ms!r}")
    # tolerate rounding of onset*fs (17.8 ms * 20 kHz = 355.99999...)
    return t_ms >= onset - 1e-9


def _column(values, name: str) -> tuple[np.ndarray, bool]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim > 1:
        raise HHBenchError(f"{name} must be a number or a 1-D list of numbers")
    if not np.all(np.isfinite(arr)):
        raise HHBenchError(f"{name} must be finite, got {values!r}")
    return np.atleast_1d(arr)[:, np.newaxis], arr.ndim == 1


def step(amplitude_ua=20.0, *, onset_ms=17.8, n_samples=DEFAULT_SAMPLES,
         fs_khz=DEFAULT_FS_KHZ) -> Stimulus:
    """Step current: 0 before `onset_ms`, then `amplitude_ua` µA/cm².

    A sequence of amplitudes (or onsets) gives a batch, one row each.
    """
    t = _time_axis(n_samples, fs_khz)
    amp, batched_a = _column(amplitude_ua, "amplitude")
    onsets, batched_o = _column(onset_ms, "onset")
    current = amp * _onset_mask(t[np.newaxis, :], onsets)
    return Stimulus(current_ua=current if (batched_a or batched_o) else current[0],
                    fs_khz=fs_khz, kind="step",
                    params={"amplitude_ua": _jsonable(amplitude_ua), "onset_ms": _jsonable(onset_ms)})


def sine(freq_khz=0.05, *, amplitude_ua=80.0, onset_ms=18.7, n_samples=DEFAULT_SAMPLES,
         fs_khz=DEFAULT_FS_KHZ) -> Stimulus:
    """Sine current: 0 before `onset_ms`, then A·sin(2π·f·(t − onset)), f in kHz (t in ms).

    A sequence of frequencies gives a batch (the lab's frequency sweep).
    """
    t = _time_axis(n_samples, fs_khz)
    freq, batched = _column(freq_khz, "frequency")
    if np.any(freq < 0):
        raise HHBenchError(f"frequency must be >= 0 kHz, got {freq_khz!r}")
    amp = float(amplitude_ua)
    if not np.isfinite(amp):
        raise HHBenchError(f"amplitude must be finite, got {amplitude_ua!r}")
    on = _onset_mask(t, onset_ms)
    current = amp * np.sin(2.0 * np.pi * freq * (t - float(onset_ms))) * on
    return Stimulus(current_ua=current if batched else current[0], fs_khz=fs_khz, kind="sine",
                    params={"freq_khz": _jsonable(freq_khz), "amplitude_ua": amp,
                            "onset_ms": float(onset_ms)})


def white_noise(sigma_ua=20.0, *, onset_ms=18.7, seed=0, batch=None, n_samples=DEFAULT_SAMPLES,
                fs_khz=DEFAULT_FS_KHZ) -> Stimulus:
    """Gaussian white noise: 0 before `onset_ms`, then independent N(0, σ²) samples.

    Drawn from `numpy.random.default_rng(seed)` in one call of shape (batch, samples), so a
    given (seed, batch, n_samples) is repeatable bit for bit. `batch=None` gives one trace.
    """
    t = _time_axis(n_samples, fs_khz)
    sigma = float(sigma_ua)
    if not np.isfinite(sigma) or sigma < 0:
        raise HHBenchError(f"sigma must be a finite number >= 0, got {sigma_ua!r}")
    rows = 1 if batch is None else int(batch)
    if rows <= 0:
        raise HHBenchError(f"batch must be a positive integer, got {batch!r}")
    rng = np.random.default_rng(check_seed(seed))
    current = sigma * rng.standard_normal((rows, t.size)) * _onset_mask(t, onset_ms)
    return Stimulus(current_ua=current if batch is not None else current[0], fs_khz=fs_khz,
                    kind="noise", params={"sigma_ua": sigma, "onset_ms": float(onset_ms),
                                          "seed": seed})


def check_seed(seed) -> int:
    """`seed` if it is a whole number >= 0 (what numpy's generators take), else
    HHBenchError naming it."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise HHBenchError(f"seed must be a whole number >= 0, got {seed!r}")
    return int(seed)


def check_kind(kind: str) -> str:
    """`kind` if it names one of the lab's stimuli, else HHBenchError listing them."""
    if kind not in KINDS:
        raise HHBenchError(f"unknown stimulus {kind!r}; choose one of: {', '.join(KINDS)}")
    return kind


def make(kind: str, **params) -> Stimulus:
    """Build a stimulus by name ("step", "sine" or "noise") with keyword parameters; what is
    not given takes the lab's defaults."""
    makers = {"step": step, "sine": sine, "noise": white_noise}
    return makers[check_kind(kind)](**params)


def _jsonable(value):
    arr = np.asarray(value)
    return arr.tolist() if arr.ndim else float(arr)
