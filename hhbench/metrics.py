"""How close a simulated voltage trace is to a reference one.

Plain functions on NumPy arrays. Conventions throughout:

* Voltages are in mV, times in ms. A trace is sampled at `fs_khz` kHz (default 20 kHz,
  dt = 0.05 ms); sample i lies at t = t0_ms + i / fs_khz.
* A 1-D array is one trace; a 2-D array is a batch of shape (batch, samples). Functions
  that work per trace return a scalar for 1-D input and one value per row for 2-D input.
* A diverged trace holds NaN (or ±inf) samples. Errors (RMSE, MAE ...) of such a trace are
  NaN rather than silently computed on the finite part; spike detection treats non-finite
  samples as "not above threshold". No function emits RuntimeWarnings on such input.
* Bad input (mismatched shapes, a 3-D array, a negative window) raises `HHBenchError`.

Spikes are defined in the open: `SPIKE_RULES` names each definition with its reason
("run-above-0mV", the default, and "lab-find-peaks", the lab's own `find_peaks` call),
every spike function takes `rule=`, and `compare_traces`/`summarise` record it.

Reading order: spike detection (rules first), spike-train statistics, the coincidence factor Γ,
point-wise trace errors, then `compare_traces` and `summarise` that bundle them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from hhbench.errors import HHBenchError
from hhbench.stimuli import DEFAULT_FS_KHZ, check_rate

#: A spike's peak must lie above this voltage (mV), under either spike rule.
DEFAULT_HEIGHT_MV = 0.0
#: ... and it must be at least this many samples wide (where the width is measured is
#: what distinguishes the two rules: see `SPIKE_RULES`).
DEFAULT_MIN_WIDTH_SAMPLES = 10
#: Half-width Δ of the coincidence window for Γ (ms).
DEFAULT_WINDOW_MS = 2.0
#: Slack (ms) on the coincidence window, so that spike times computed as index / fs_khz
#: that are exactly Δ apart count as coincident despite floating-point rounding.
_WINDOW_SLACK_MS = 1e-9


# --------------------------------------------------------------------------- input checks


def _as_traces(v_mv, name: str = "v_mv") -> np.ndarray:
    """`v_mv` as a float64 array that is 1-D (one trace) or 2-D (batch, samples)."""
    arr = np.asarray(v_mv, dtype=np.float64)
    if arr.ndim not in (1, 2):
        raise HHBenchError(f"{name} must be 1-D (one trace) or 2-D (batch, samples); "
                           f"got {arr.ndim}-D shape {arr.shape}")
    return arr


def _same_shape(a, b, names: str = "a and b") -> tuple[np.ndarray, np.ndarray]:
    """Both arrays as float64, checked to have the same non-empty shape."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise HHBenchError(f"{names} must have the same shape; got {a.shape} and {b.shape}")
    if a.size == 0:
        raise HHBenchError(f"{names} are empty (shape {a.shape})")
    return a, b


def _positive(value, name: str) -> float:
    x = float(value)
    if not np.isfinite(x) or x <= 0:
        raise HHBenchError(f"{name} must be a positive number, got {value!r}")
    return x


# --------------------------------------------------------------------------- spike detection


@dataclass(frozen=True, kw_only=True, eq=False)
class SpikeTrain:
    """The spikes found in one trace.

    index: sample index of each peak (int array, increasing).
    times_ms: time of each peak, t0_ms + index / fs_khz (ms).
    amplitudes_mv: V at each peak (mV).

    (eq=False: NumPy arrays make `==` between trains ambiguous; compare the fields.)
    """

    index: np.ndarray
    times_ms: np.ndarray
    amplitudes_mv: np.ndarray

    def __len__(self) -> int:
        return int(self.index.size)


def _run_peaks(v_mv: np.ndarray, height_mv: float, min_width_samples: int) -> np.ndarray:
    """Rule "run-above-0mV" on one 1-D trace: the argmax of each run of samples above
    `height_mv` that is at least `min_width_samples` long (the first sample on ties)."""
    with np.errstate(invalid="ignore"):
        above = v_mv > height_mv                      # NaN > h is False
    # +1 where a run starts, -1 one past where it ends (padding closes runs at the edges)
    edges = np.diff(np.concatenate(([0], above.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    wide = (stops - starts) >= min_width_samples
    return np.array([s + int(np.argmax(v_mv[s:e])) for s, e in zip(starts[wide], stops[wide])],
                    dtype=np.int64)


def _find_peaks_peaks(v_mv: np.ndarray, height_mv: float, min_width_samples: int) -> np.ndarray:
    """Rule "lab-find-peaks" on one 1-D trace: `scipy.signal.find_peaks(v, height=height_mv,
    width=min_width_samples)` (width at half prominence, scipy's default rel_height=0.5),
    run on each stretch of finite samples separately (a non-finite sample ends a stretch,
    as it ends a run in the other rule; NaN would upset the prominences)."""
    from scipy.signal import find_peaks

    finite = np.isfinite(v_mv)
    if finite.all():
        return find_peaks(v_mv, height=height_mv, width=min_width_samples)[0].astype(np.int64)
    edges = np.diff(np.concatenate(([0], finite.astype(np.int8), [0])))
    found = [s + find_peaks(v_mv[s:e], height=height_mv, width=min_width_samples)[0]
             for s, e in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1))]
    return np.concatenate(found).astype(np.int64) if found else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True, kw_only=True)
class SpikeRule:
    """A named definition of a spike: `name`, what it counts (`definition`) and why it is
    there (`reason`). Both rules take a height (mV) and a minimum width (samples); they
    differ in where the width is measured."""

    name: str
    definition: str
    reason: str
    peaks: Callable[[np.ndarray, float, int], np.ndarray] = field(repr=False)


#: The spike rules by name. The default, "run-above-0mV", is what every figure of
#: `hhbench run` and the lab's sections use unless they say otherwise.
SPIKE_RULES: dict[str, SpikeRule] = {rule.name: rule for rule in (
    SpikeRule(
        name="run-above-0mV",
        definition="a run of at least 10 consecutive samples with V > 0 mV (0.5 ms at "
                   "20 kHz); the spike is the run's highest sample (the first on ties). A run "
                   "cut by either end of the trace counts if it is long enough.",
        reason="the width is measured at the threshold itself, so whether an excursion "
               "counts depends only on how long V stays above 0 mV: a fast oscillation that "
               "crosses 0 mV, however high it goes, is not a spike unless it stays above "
               "for 0.5 ms. It needs no neighbouring samples, so a spike at the edge of a "
               "window (the CNN's output) is not lost.",
        peaks=_run_peaks),
    SpikeRule(
        name="lab-find-peaks",
        definition="scipy.signal.find_peaks(V, height=0, width=10): a local maximum above "
                   "0 mV whose width at half its prominence (scipy's default "
                   "rel_height=0.5) is at least 10 samples; no peak at the first or last "
                   "sample, the middle sample of a flat top.",
        reason="the lab's own rule: its printed spike amplitudes are these peaks. The width "
               "is measured half-way down the peak's prominence, not at 0 mV, so a tall "
               "narrow excursion can count or not depending on its neighbours.",
        peaks=_find_peaks_peaks),
)}
DEFAULT_SPIKE_RULE = "run-above-0mV"


def spike_rule(name: str) -> SpikeRule:
    """The spike rule called `name` (a key of SPIKE_RULES), else HHBenchError listing them."""
    if isinstance(name, SpikeRule):
        return name
    if name not in SPIKE_RULES:
        raise HHBenchError(f"unknown spike rule {name!r}; valid rules: {', '.join(SPIKE_RULES)}")
    return SPIKE_RULES[name]


def rule_label(rule=DEFAULT_SPIKE_RULE, height_mv=DEFAULT_HEIGHT_MV,
               min_width_samples=DEFAULT_MIN_WIDTH_SAMPLES) -> str:
    """The name results record for a spike rule: the rule's name, with its parameters
    appended when they are not the defaults (0 mV, 10 samples) the names stand for."""
    name = spike_rule(rule).name
    if float(height_mv) == DEFAULT_HEIGHT_MV and int(min_width_samples) == DEFAULT_MIN_WIDTH_SAMPLES:
        return name
    return f"{name}(height_mv={float(height_mv):g}, min_width_samples={int(min_width_samples)})"


def detect_spikes(v_mv, *, fs_khz=DEFAULT_FS_KHZ, height_mv=DEFAULT_HEIGHT_MV,
                  min_width_samples=DEFAULT_MIN_WIDTH_SAMPLES, t0_ms=0.0,
                  rule=DEFAULT_SPIKE_RULE) -> SpikeTrain | list[SpikeTrain]:
    """Find the spikes of a trace (1-D → `SpikeTrain`) or of each row (2-D → list).

    `rule` names the definition (see `SPIKE_RULES`):

    * "run-above-0mV" (default): a spike is a run of consecutive samples with
      V > `height_mv` (mV) that is at least `min_width_samples` samples long; its peak is
      the sample of largest V in the run (the first one on ties). This is the width of the
      supra-threshold excursion measured exactly at the threshold. A run cut by the start
      or end of the trace counts too, if it is wide enough (its "peak" may then be at the
      edge).
    * "lab-find-peaks": the lab's `scipy.signal.find_peaks(V, height=height_mv,
      width=min_width_samples)`, the width measured at half prominence.

    Non-finite samples (a diverged trace) count as not above the threshold, and split the
    trace for find_peaks. Spike times are t0_ms + index / fs_khz (ms).
    """
    v = _as_traces(v_mv)
    fs = check_rate(fs_khz)
    height = float(height_mv)
    width = int(min_width_samples)
    if width != min_width_samples or width < 1:
        raise HHBenchError(f"min_width_samples must be a positive integer, got {min_width_samples!r}")
    peaks = spike_rule(rule).peaks

    def train(row: np.ndarray) -> SpikeTrain:
        idx = peaks(row, height, width)
        return SpikeTrain(index=idx, times_ms=float(t0_ms) + idx / fs, amplitudes_mv=row[idx])

    return train(v) if v.ndim == 1 else [train(row) for row in v]


def find_spikes(v_mv, rule=DEFAULT_SPIKE_RULE, **detect_kw) -> SpikeTrain | list[SpikeTrain]:
    """The spikes of a trace (or of each row) under the rule called `rule`
    (`detect_spikes` with `rule` as a positional argument)."""
    return detect_spikes(v_mv, rule=rule, **detect_kw)


def count_spikes(v_mv, rule=DEFAULT_SPIKE_RULE, **detect_kw):
    """Number of spikes under the rule called `rule`: int for 1-D, int array for 2-D."""
    return spike_count(v_mv, rule=rule, **detect_kw)


def _per_trace(trains: SpikeTrain | list[SpikeTrain], value, dtype=float):
    """Apply `value` to one train (→ scalar) or to each of a list (→ array of `dtype`)."""
    if isinstance(trains, SpikeTrain):
        return value(trains)
    return np.array([value(t) for t in trains], dtype=dtype)


def spike_count(v_mv, **detect_kw):
    """Number of spikes (see `detect_spikes` for the definition and keyword arguments).

    int for a 1-D trace, int array (one per row) for a 2-D batch.
    """
    return _per_trace(detect_spikes(v_mv, **detect_kw), len, dtype=np.int64)


def spike_amplitudes(v_mv, **detect_kw):
    """Peak voltage of each spike (mV): an array for a 1-D trace, a list of arrays for 2-D."""
    trains = detect_spikes(v_mv, **detect_kw)
    if isinstance(trains, SpikeTrain):
        return trains.amplitudes_mv
    return [t.amplitudes_mv for t in trains]


def _first_time_ms(train: SpikeTrain) -> float:
    """Time of the first spike (ms), NaN if there is none."""
    return float(train.times_ms[0]) if len(train) else float("nan")


def first_spike_latency_ms(v_mv, *, onset_ms, t0_ms=0.0, **detect_kw):
    """Latency of the first spike after the stimulus onset: t_first_spike − onset_ms (ms).

    Spike times are t0_ms + index / fs_khz. NaN when the trace has no spike. The latency
    is negative if the first spike comes before the onset. float for 1-D, array for 2-D.
    """
    trains = detect_spikes(v_mv, t0_ms=t0_ms, **detect_kw)
    return _per_trace(trains, lambda t: _first_time_ms(t) - float(onset_ms))


# --------------------------------------------------------------------------- coincidence factor


def _spike_times(train) -> np.ndarray:
    """Spike times (ms) of a `SpikeTrain` or of a sequence of times, checked and sorted."""
    times = train.times_ms if isinstance(train, SpikeTrain) else train
    arr = np.asarray(times, dtype=np.float64)
    if arr.ndim != 1 or not np.all(np.isfinite(arr)):
        raise HHBenchError("spike times must be a 1-D sequence of finite numbers (ms)")
    return np.sort(arr)


def matched_reference_spikes(ref_ms, cmp_ms, window_ms: float = DEFAULT_WINDOW_MS) -> np.ndarray:
    """For each reference spike (in time order), whether a compared spike lies within
    ±window_ms (ms), matched one-to-one (bool array).

    Greedy in time order: each reference spike takes the earliest still unused compared
    spike within its window. Because all windows have the same width, this greedy choice
    gives the largest possible one-to-one matching. Inputs: `SpikeTrain`s or spike times.
    """
    ref, cmp_ = _spike_times(ref_ms), _spike_times(cmp_ms)
    matched = np.zeros(ref.size, dtype=bool)
    j = 0
    reach = window_ms + _WINDOW_SLACK_MS
    for k, t in enumerate(ref):
        while j < cmp_.size and cmp_[j] < t - reach:   # too early for this and later refs
            j += 1
        if j < cmp_.size and cmp_[j] <= t + reach:
            matched[k] = True
            j += 1
    return matched


def coincidence_factor(times_ref_ms, times_cmp_ms, *, window_ms=DEFAULT_WINDOW_MS,
                       duration_ms) -> float:
    """Coincidence factor Γ of Kistler et al. (1997) between two spike trains.

        Γ = (N_coinc − ⟨N_coinc⟩) / (½ (N_ref + N_cmp)) · 1/𝒩

    N_ref, N_cmp: spike counts; N_coinc: reference spikes with a compared spike within
    ±Δ = ±window_ms (ms), each compared spike used at most once (see `matched_reference_spikes`);
    ν = N_cmp / duration_ms: rate of the compared train (1/ms);
    ⟨N_coinc⟩ = 2 ν Δ N_ref: coincidences expected by chance from a Poisson train of rate ν;
    𝒩 = 1 − 2 ν Δ: normalisation so that identical trains give Γ = 1.

    Γ = 1 for identical trains, ≈ 0 for independent ones, < 0 for fewer coincidences than
    chance. It is not symmetric in ref and cmp (ν is the compared train's rate).
    Edge cases: both trains empty → 1.0 (perfect agreement); exactly one empty → 0.0;
    𝒩 ≤ 0 (ν so high that chance coincidence is certain) → NaN.

    The trains are `SpikeTrain`s or sequences of spike times (ms), in any order.
    """
    ref, cmp_ = _spike_times(times_ref_ms), _spike_times(times_cmp_ms)
    window = _positive(window_ms, "window_ms")
    duration = _positive(duration_ms, "duration_ms")
    n_ref, n_cmp = ref.size, cmp_.size
    if n_ref == 0 and n_cmp == 0:
        return 1.0
    if n_ref == 0 or n_cmp == 0:
        return 0.0
    rate = n_cmp / duration
    norm = 1.0 - 2.0 * rate * window
    if norm <= 0:
        return float("nan")
    expected = 2.0 * rate * window * n_ref
    n_coinc = int(matched_reference_spikes(ref, cmp_, window).sum())
    return float((n_coinc - expected) / (0.5 * (n_ref + n_cmp)) / norm)


def coincidence_factors(trains_ref, trains_cmp, *, window_ms=DEFAULT_WINDOW_MS,
                        duration_ms) -> np.ndarray:
    """Γ (see `coincidence_factor`) for each pair (trains_ref[i], trains_cmp[i]); float array."""
    trains_ref, trains_cmp = list(trains_ref), list(trains_cmp)
    if len(trains_ref) != len(trains_cmp):
        raise HHBenchError(f"need as many compared trains as reference trains; "
                           f"got {len(trains_ref)} and {len(trains_cmp)}")
    return np.array([coincidence_factor(r, c, window_ms=window_ms, duration_ms=duration_ms)
                     for r, c in zip(trains_ref, trains_cmp)], dtype=np.float64)


# --------------------------------------------------------------------------- trace errors


def _nan_where_nonfinite(result: np.ndarray, a: np.ndarray, b: np.ndarray, axis) -> np.ndarray:
    """`result` with NaN wherever `a` or `b` has a non-finite sample along `axis`."""
    bad = ~(np.all(np.isfinite(a), axis=axis) & np.all(np.isfinite(b), axis=axis))
    return np.where(bad, np.nan, result)


def _error_stat(a, b, axis, reduce):
    """`reduce(a − b)` along `axis`, NaN for traces with a non-finite sample, no warnings."""
    a, b = _same_shape(a, b)
    with np.errstate(invalid="ignore", over="ignore"):
        result = reduce(a - b, axis)
    result = _nan_where_nonfinite(result, a, b, axis)
    return float(result) if result.ndim == 0 else result


def rmse_mv(a, b, axis=-1):
    """Root-mean-square difference sqrt(mean((a − b)²)) along `axis` (mV).

    NaN for any trace where a or b has a non-finite sample (a diverged trace).
    """
    return _error_stat(a, b, axis, lambda d, ax: np.sqrt(np.mean(d * d, axis=ax)))


def mae_mv(a, b, axis=-1):
    """Mean absolute difference mean(|a − b|) along `axis` (mV); NaN as for `rmse_mv`."""
    return _error_stat(a, b, axis, lambda d, ax: np.mean(np.abs(d), axis=ax))


def max_abs_diff_mv(a, b, axis=None):
    """Largest absolute difference max(|a − b|) (mV), over all samples unless `axis` is given.

    NaN if a or b has a non-finite sample (in that trace, when `axis` is given).
    """
    return _error_stat(a, b, axis, lambda d, ax: np.max(np.abs(d), axis=ax))


def diverged(v_mv):
    """True for a trace with any non-finite (NaN or ±inf) sample: bool, or bool array for 2-D."""
    bad = ~np.all(np.isfinite(_as_traces(v_mv)), axis=-1)
    return bool(bad) if bad.ndim == 0 else bad


# --------------------------------------------------------------------------- bundles


def compare_traces(v_ref, v_cmp, *, fs_khz=DEFAULT_FS_KHZ, t0_ms=0.0,
                   window_ms=DEFAULT_WINDOW_MS, height_mv=DEFAULT_HEIGHT_MV,
                   min_width_samples=DEFAULT_MIN_WIDTH_SAMPLES,
                   rule=DEFAULT_SPIKE_RULE) -> dict[str, np.ndarray | str]:
    """All per-trace metrics of `v_cmp` against `v_ref` (mV, same shape, already aligned).

    Inputs are (batch, samples); a 1-D trace is treated as a batch of one. Returns a dict
    of arrays with one entry per trace:

      rmse_mv, mae_mv         point-wise errors (mV)
      n_spikes_ref/_cmp       spike counts under spike rule `rule` (see `detect_spikes`;
                              of the finite part of a diverged trace)
      spike_count_error       n_spikes_cmp − n_spikes_ref (float)
      gamma                   coincidence factor Γ (window ±window_ms, duration = samples / fs_khz)
      first_spike_shift_ms    first cmp spike time − first ref spike time (ms), NaN if either has none
      diverged_ref/_cmp       any non-finite sample

and "spike_rule", the one string: which rule counted the spikes (`rule_label`).

    Where either trace diverged, the comparison figures (rmse_mv, mae_mv, spike_count_error,
    gamma, first_spike_shift_ms) are NaN: a trace that stops half-way says nothing about
    the spikes it never produced.

    `t0_ms` (time of sample 0) shifts all spike times equally, so it does not change
    these numbers; it is accepted so callers can pass their time base unchanged.
    """
    ref, cmp_ = _same_shape(v_ref, v_cmp, "v_ref and v_cmp")
    ref, cmp_ = np.atleast_2d(_as_traces(ref, "v_ref")), np.atleast_2d(_as_traces(cmp_, "v_cmp"))
    detect_kw = dict(fs_khz=fs_khz, t0_ms=t0_ms, height_mv=height_mv,
                     min_width_samples=min_width_samples, rule=rule)
    trains_ref, trains_cmp = detect_spikes(ref, **detect_kw), detect_spikes(cmp_, **detect_kw)
    n_ref = _per_trace(trains_ref, len, dtype=np.int64)
    n_cmp = _per_trace(trains_cmp, len, dtype=np.int64)
    div_ref, div_cmp = diverged(ref), diverged(cmp_)
    undefined = div_ref | div_cmp
    gamma = coincidence_factors(trains_ref, trains_cmp, window_ms=window_ms,
                                duration_ms=ref.shape[1] / check_rate(fs_khz))
    shift = _per_trace(trains_cmp, _first_time_ms) - _per_trace(trains_ref, _first_time_ms)
    return {
        "rmse_mv": rmse_mv(ref, cmp_),
        "mae_mv": mae_mv(ref, cmp_),
        "n_spikes_ref": n_ref,
        "n_spikes_cmp": n_cmp,
        "spike_count_error": np.where(undefined, np.nan, (n_cmp - n_ref).astype(np.float64)),
        "gamma": np.where(undefined, np.nan, gamma),
        "first_spike_shift_ms": np.where(undefined, np.nan, shift),
        "diverged_ref": div_ref,
        "diverged_cmp": div_cmp,
        "spike_rule": rule_label(rule, height_mv, min_width_samples),
    }


def _finite_stat(reduce, values) -> float:
    """`reduce` over the finite entries of `values`; NaN (and no warning) if there are none."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    arr = arr[np.isfinite(arr)]
    return float(reduce(arr)) if arr.size else float("nan")


def summarise(per_trace: dict) -> dict[str, float]:
    """Scalar summary of a `compare_traces` result.

      n_traces                     number of traces
      frac_diverged                fraction where the reference or the compared trace diverged
      rmse_mv_median, _mean        median and mean RMSE (mV) over traces where it is defined
      mae_mv_median, _mean         median and mean MAE (mV) over traces where it is defined
      spike_count_abs_error_mean   mean |n_spikes_cmp − n_spikes_ref|
      frac_spike_count_exact       fraction of traces with equal spike counts
      frac_spike_count_within_1    fraction with counts differing by at most 1
      gamma_median                 median Γ
      spike_rule                   the rule that counted the spikes (a string, from
                                   compare_traces; None if the dict does not say)

    Every statistic but `frac_diverged` is taken over the traces where it is defined
    (neither trace diverged; Γ not NaN) — `frac_diverged` says how many were skipped —
    and is NaN when nothing is left.
    """
    keys = ("rmse_mv", "mae_mv", "spike_count_error", "gamma", "diverged_ref", "diverged_cmp")
    missing = [k for k in keys if k not in per_trace]
    if missing:
        raise HHBenchError(f"per-trace metrics lack {', '.join(missing)}; "
                           f"pass the dict returned by compare_traces")
    abs_count_error = np.abs(np.asarray(per_trace["spike_count_error"], dtype=np.float64))
    counted = np.isfinite(abs_count_error)
    either_diverged = (np.asarray(per_trace["diverged_ref"], dtype=bool)
                       | np.asarray(per_trace["diverged_cmp"], dtype=bool))
    return {
        "n_traces": int(abs_count_error.size),
        "frac_diverged": _finite_stat(np.mean, either_diverged),
        "rmse_mv_median": _finite_stat(np.median, per_trace["rmse_mv"]),
        "rmse_mv_mean": _finite_stat(np.mean, per_trace["rmse_mv"]),
        "mae_mv_median": _finite_stat(np.median, per_trace["mae_mv"]),
        "mae_mv_mean": _finite_stat(np.mean, per_trace["mae_mv"]),
        "spike_count_abs_error_mean": _finite_stat(np.mean, abs_count_error),
        "frac_spike_count_exact": _finite_stat(np.mean, abs_count_error[counted] == 0),
        "frac_spike_count_within_1": _finite_stat(np.mean, abs_count_error[counted] <= 1),
        "gamma_median": _finite_stat(np.median, per_trace["gamma"]),
        "spike_rule": per_trace.get("spike_rule"),
    }
