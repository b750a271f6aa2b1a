"""The benchmark suite: every backend × stimulus × batch size × device, timed and scored.

This module is the one place where a case is set up, timed and scored; `hhbench run`, the
asv suite and the pytest-benchmark suite all call it:
  * `case_stimulus(kind, batch)`: the lab's stimulus for a case (step and sine: the lab's
    default trace tiled to the batch; noise: `batch` independent seeded traces);
  * `reference_run(stimulus, reference)`: the trace accuracy is measured against
    ("converged": the `reference` backend; "lab": forward Euler, the lab's reference);
  * `accuracy(result, reference)`: metrics on the time-aligned traces;
  * `run_case(...)` (set-up and timing), `score_case(...)` (accuracy) and `run_suite(config)`,
    which times every case first and scores them afterwards.
Every case gets a fresh backend object. Its `prepare_s` is that backend's set-up (CNN: model
loading; numba: compilation or on-disk cache load — once per process, shared by the numba,
exp-euler and reference backends, so their first case in a run carries it) and the
timing's cold start is its first call (CNN: tracing, kernel choice, weight upload); both are
kept apart from the warm samples.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import time
import tomllib
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hhbench import metrics
from hhbench import stimuli as stimlib
from hhbench.backends import backend_classes, check_name, get_backend
from hhbench.backends.base import SimResult
from hhbench.environment import describe_machine
from hhbench.errors import DivergenceWarning, HHBenchError
from hhbench.results import CaseResult, RunResults
from hhbench.timing import TimingSettings, calibrate, measure

REFERENCES = {"converged": "reference", "lab": "numba"}


@dataclass(frozen=True, kw_only=True)
class SuiteConfig:
    backends: tuple[str, ...] = ("numpy", "numba", "odeint", "exp-euler", "reference", "cnn")
    stimuli: tuple[str, ...] = stimlib.KINDS
    batches: tuple[int, ...] = (1, 16)
    devices: tuple[str, ...] = ("auto",)   # for the CNN; the simulators run on the CPU
    reference: str = "converged"
    model: str | None = None
    cnn_mode: str = "compiled"
    n_samples: int = stimlib.DEFAULT_SAMPLES
    seed: int = 0
    timing: TimingSettings = field(default_factory=TimingSettings)

    def __post_init__(self):
        for name in self.backends:
            check_name(name)
        for kind in self.stimuli:
            stimlib.check_kind(kind)
        if not self.backends or not self.stimuli or not self.batches:
            raise HHBenchError("the suite needs at least one backend, stimulus and batch size")
        for b in self.batches:
            if int(b) != b or b <= 0:
                raise HHBenchError(f"batch sizes must be positive integers, got {b!r}")
        if self.reference not in REFERENCES:
            raise HHBenchError(f"unknown reference {self.reference!r}; use converged or lab")
        if self.n_samples < 1:
            raise HHBenchError("n_samples must be >= 1")

    @classmethod
    def quick(cls, **overrides) -> "SuiteConfig":
        """The CI-sized suite: batch 1, few repeats (under 30 s on 2 cores)."""
        return cls(**{"batches": (1,), "timing": TimingSettings(warmup_calls=0, min_repeats=2,
                                                                min_time_s=0.0), **overrides})

    @classmethod
    def from_file(cls, path: str | Path, **overrides) -> "SuiteConfig":
        """Settings from a JSON or TOML file (keys as the fields; `timing` a table)."""
        path = Path(path)
        try:
            text = path.read_text()
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (OSError, ValueError) as exc:
            raise HHBenchError(f"{path}: unreadable suite config ({exc})") from None
        if not isinstance(data, dict):
            raise HHBenchError(f"{path}: a suite config must be a table of settings")
        data.update(overrides)
        try:
            if isinstance(data.get("timing"), dict):
                data["timing"] = TimingSettings(**data["timing"])
            for key in ("backends", "stimuli", "batches", "devices"):
                if key in data:
                    data[key] = tuple(data[key])
            return cls(**data)
        except TypeError as exc:
            raise HHBenchError(f"{path}: bad suite config ({exc})") from None

    def as_dict(self) -> dict:
        return asdict(self)


def case_stimulus(kind: str, batch: int, *, n_samples: int = stimlib.DEFAULT_SAMPLES,
                  seed: int = 0) -> stimlib.Stimulus:
    """The lab's default stimulus of `kind` (`stimuli.make` defaults) for a case of `batch`
    traces: noise draws `batch` independent traces, step and sine tile their one trace."""
    if kind == "noise":
        return stimlib.white_noise(seed=seed, batch=batch, n_samples=n_samples)
    return stimlib.make(kind, n_samples=n_samples).repeat(batch)


@functools.lru_cache(maxsize=32)
def cached_reference(kind: str, batch: int, n_samples: int = stimlib.DEFAULT_SAMPLES,
                     seed: int = 0, reference: str = "converged") -> SimResult:
    """The reference run for `case_stimulus(kind, batch, ...)`, computed once per process."""
    stim = case_stimulus(kind, batch, n_samples=n_samples, seed=seed)
    return reference_run(stim, reference)


def reference_run(stimulus: stimlib.Stimulus, reference: str = "converged") -> SimResult:
    """V of the chosen reference ("converged" or "lab") for `stimulus`."""
    if reference not in REFERENCES:
        raise HHBenchError(f"unknown reference {reference!r}; use converged or lab")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)  # recorded as diverged_ref
        return get_backend(REFERENCES[reference]).run(stimulus)


def accuracy(result: SimResult, reference: SimResult) -> dict:
    """Metrics of `result` against `reference` on the samples both cover.

    Returns metrics.summarise(...) plus the max |ΔV| and the per-trace figures.
    """
    first, n_out = result.first_sample, result.v_batch.shape[1]
    v_ref = reference.v_batch[:, first:first + n_out]
    per_trace = metrics.compare_traces(v_ref, result.v_batch, fs_khz=result.stimulus.fs_khz,
                                       t0_ms=float(result.t_ms[0]))
    summary = metrics.summarise(per_trace)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        summary["max_abs_diff_mv"] = float(np.nanmax(np.abs(v_ref - result.v_batch))) \
            if np.isfinite(v_ref - result.v_batch).any() else float("nan")
    summary["per_trace"] = {k: np.asarray(v).tolist() for k, v in per_trace.items()}
    return summary


def make_backend(name: str, *, device: str = "auto", model: str | None = None,
                 cnn_mode: str = "compiled"):
    """A fresh backend instance; the CNN gets its model, device and mode."""
    if name == "cnn":
        return get_backend(name, model=model, device=device, mode=cnn_mode)
    return get_backend(name)


def run_case(backend, stimulus: stimlib.Stimulus, *, timing: TimingSettings,
             reference_name: str, clock=None) -> tuple[CaseResult, SimResult | None]:
    """Prepare and time one backend on one stimulus (accuracy is added by `score_case`).
    Failures become status "failed"."""
    base = dict(backend=backend.name, stimulus=stimulus.kind, batch=stimulus.batch_size,
                n_samples=stimulus.n_samples, dt_ms=stimulus.dt_ms, reference=reference_name,
                stimulus_params=stimulus.describe())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DivergenceWarning)  # recorded in the case status
            start = time.perf_counter()
            backend.prepare()
            prepare_s = time.perf_counter() - start
            kwargs = {} if clock is None else {"clock": clock}
            timed, result = measure(lambda: backend.run(stimulus), timing, **kwargs)
    except Exception as exc:  # a broken backend must not stop the suite
        return CaseResult(device=getattr(backend, "device", "cpu"), status="failed",
                          error=f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
                          if str(exc).strip() else type(exc).__name__, **base), None
    status = "diverged" if result.any_diverged else "ok"
    return CaseResult(device=result.device, status=status, timing=timed, prepare_s=prepare_s,
                      settings=backend.settings(), **base), result


def score_case(case: CaseResult, result: SimResult | None, reference: SimResult) -> CaseResult:
    """`case` with its accuracy against `reference` (unchanged if the case failed)."""
    if result is None:
        return case
    return dataclasses.replace(case, accuracy=accuracy(result, reference))


def suite_cases(config: SuiteConfig) -> list[tuple[str, str, int, str]]:
    """(backend, stimulus, batch, device) of every case, in the order they run."""
    return [(b, s, n, d) for s in config.stimuli for b in config.backends
            for n in config.batches for d in (config.devices if b == "cnn" else ("cpu",))]


def check_memory(config: SuiteConfig) -> int:
    """Refuse (HHBenchError, before anything is allocated) a suite that cannot fit in the
    machine's available memory; the estimate (`hhbench.memory.suite_bytes`) is returned."""
    from hhbench.memory import check_fits, suite_bytes
    cases = [(kind, batch) for _, kind, batch, _ in suite_cases(config)]
    largest = max(config.batches)
    needed = suite_bytes(cases, config.n_samples)
    check_fits(needed, f"this run (largest batch {largest} x {config.n_samples} samples, "
                       f"{len(cases)} cases)")
    return needed


def check_devices(config: SuiteConfig) -> None:
    """Fail early (HHBenchError) when the CNN is asked for a device that is not here."""
    if "cnn" in config.backends and backend_classes()["cnn"].is_available():
        from hhbench.cnn.devices import resolve_device
        for device in config.devices:
            resolve_device(device)


def _example(result: SimResult) -> dict:
    return {"t_ms": np.round(result.t_ms, 4), "v_mv": np.round(result.v_batch[0], 3)}


def run_suite(config: SuiteConfig, *, progress: bool = True) -> RunResults:
    """Run every case of `config`; a failing or diverging case is recorded, not fatal."""
    from tqdm.auto import tqdm

    needed = check_memory(config)
    check_devices(config)
    cases = suite_cases(config)
    if progress and needed > 2**30:  # minutes per case ahead: say so before the first one
        tqdm.write(f"hhbench run: {len(cases)} cases up to batch {max(config.batches)}, "
                   f"about {needed / 2**30:.1f} GiB; large batches take a while per case",
                   file=sys.stderr)
    env = describe_machine()
    calib = calibrate()
    bar = tqdm(cases, disable=not progress, unit="case", dynamic_ncols=True, desc="hhbench run")
    timed = []
    for name, kind, batch, device in bar:
        bar.set_postfix_str(f"{name} {kind} x{batch}")
        stim = case_stimulus(kind, batch, n_samples=config.n_samples, seed=config.seed)
        missing = backend_classes()[name].unavailable_reason()
        if missing:  # not installed here (e.g. the cnn without TensorFlow): skipped, said why
            timed.append((CaseResult(backend=name, stimulus=kind, batch=batch, device=device,
                                     status="skipped", n_samples=stim.n_samples,
                                     dt_ms=stim.dt_ms, reference=config.reference,
                                     error=missing), None))
            continue
        try:
            backend = make_backend(name, device=device, model=config.model,
                                   cnn_mode=config.cnn_mode)
        except HHBenchError as exc:  # e.g. not installed here: recorded, the run goes on
            timed.append((CaseResult(backend=name, stimulus=kind, batch=batch, device=device,
                                     status="failed", n_samples=stim.n_samples,
                                     dt_ms=stim.dt_ms, reference=config.reference,
                                     error=str(exc)), None))
            continue
        timed.append(run_case(backend, stim, timing=config.timing,
                              reference_name=config.reference))
    # accuracy after all timings: the references use the numba engine, which would
    # otherwise be compiled before, and hidden from, the numba backends' cold start
    out, examples = [], {}
    # the references of large batches take long (the converged one most): show them
    scoring = tqdm(timed, disable=not progress, unit="case", dynamic_ncols=True,
                   desc="accuracy")
    for case, result in scoring:
        scoring.set_postfix_str(f"{config.reference} reference {case.stimulus} x{case.batch}")
        ref = cached_reference(case.stimulus, case.batch, config.n_samples, config.seed,
                               config.reference)
        out.append(score_case(case, result, ref))
        if result is not None and case.batch == min(config.batches):
            stim = result.stimulus
            ex = examples.setdefault(case.stimulus, {"t_ms": np.round(stim.t_ms, 4),
                                                     "current_ua": np.round(stim.current_ua[0], 4),
                                                     "reference": np.round(ref.v_batch[0], 3),
                                                     "backends": {}})
            label = f"{case.backend}@{case.device}" if case.backend == "cnn" else case.backend
            ex["backends"][label] = _example(result)
    return RunResults(settings={**config.as_dict(), "schema_note": "times in seconds"},
                      environment=env, calibration=calib, cases=tuple(out), examples=examples)


__all__ = ["SuiteConfig", "case_stimulus", "reference_run", "cached_reference", "accuracy",
           "run_case", "score_case", "run_suite", "make_backend"]
