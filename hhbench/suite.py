"""The benchmark suite: every backend × stimulus × batch size × device, timed and scored.

This module is the one place where a case is set up, timed and scored; `hhbench run`, the
asv suite and the pytest-benchmark suite all call it:
  * `case_stimulus(kind, batch)`: the lab's stimulus for a case (step and sine: the lab's
    default trace tiled to the batch; noise: `batch` independent seeded traces);
  * `reference_run(stimulus, reference)`: the trace accuracy is measured against
    ("converged": the `reference` backend; "lab": forward Euler, the lab's reference);
  * `cached_reference(kind, batch, ...)`: a case's reference, computed once per process and
    kept on disk between runs (`hhbench.reference_cache`);
  * `accuracy(result, reference)`: metrics on the time-aligned traces;
  * `run_case(...)` (set-up and timing), `score_case(...)` (accuracy) and `run_suite(config)`,
    which times every case first and scores them afterwards.
Every case gets a fresh backend object. Its `prepare_s` is that backend's set-up (CNN: model
loading; numba: compilation or on-disk cache load of its step kernel's driver — once per
process and kernel, so the first case of each kernel in a process carries it) and the
timing's cold start is its first call (CNN: tracing, kernel choice, weight upload); both are
kept apart from the warm samples.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import json
import sys
import tempfile
import time
import tomllib
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from hhbench import metrics
from hhbench import stimuli as stimlib
from hhbench.backends import backend_classes, check_name, get_backend
from hhbench.backends.base import SimResult
from hhbench.devices import check_devices, check_gpu_present
from hhbench.environment import describe_machine, machine_state
from hhbench.errors import DivergenceWarning, HHBenchError
from hhbench.failures import NotRun, not_run, words
from hhbench.results import CaseResult, RunResults
from hhbench.timing import (WARMUP_MIN_S, ProcessTiming, TimingSettings,
                            measure)

REFERENCES = {"converged": "reference", "lab": "numba"}

#: per process: warm-up calls for at least 0.05 s (at least one), then timed calls until 2
#: calls and 0.1 s (a fast case gets hundreds, a slow one 2: the evidence for a verdict is
#: the spread between processes, not the samples of one); after a first call over 1 s (the
#: converged reference at batch 16), no warm-up and one timed call. Every case of the
#: default suite costs at least warm-up + timed calls in each of 3 processes, so this time
#: floor weighs most in the default run's time
DEFAULT_TIMING = TimingSettings(warmup_calls=1, warmup_min_s=WARMUP_MIN_S, min_repeats=2,
                                min_time_s=0.1, skip_warmup_after_s=1.0, long_call_repeats=1)
DEFAULT_PROCESSES = 3


def import_backend_module(spec: str) -> None:
    """Import a module that registers extra backends: a dotted name, or a path to a .py file
    (imported under its file name). Used for `extra_backend_modules` in parent and workers."""
    try:
        if spec.endswith(".py"):
            path = Path(spec).resolve()
            name = f"hhbench_extra_{path.stem}"
            if name in sys.modules:
                return
            module_spec = importlib.util.spec_from_file_location(name, path)
            if module_spec is None or not path.is_file():
                raise ImportError(f"no such file {path}")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
        else:
            importlib.import_module(spec)
    except ImportError as exc:
        raise HHBenchError(f"extra backend module {spec!r}: {exc}") from None


@dataclass(frozen=True, kw_only=True)
class SuiteConfig:
    #: None: every registered backend (`all_backends`)
    backends: tuple[str, ...] | None = None
    stimuli: tuple[str, ...] = stimlib.KINDS
    batches: tuple[int, ...] = (1, 16)
    #: device requests (cpu, gpu, gpu:N, gpu:all, auto), for every backend: each backend
    #: resolves them itself; one it cannot run on is a skipped case
    devices: tuple[str, ...] = ("auto",)
    reference: str = "converged"
    model: str | None = None
    #: per backend, the options of its constructor (`Backend.option_defaults`), e.g.
    #: {"cnn": {"precision": "tf32"}, "jax": {"precision": "float32"}}
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    n_samples: int = stimlib.DEFAULT_SAMPLES
    seed: int = 0
    timing: TimingSettings = DEFAULT_TIMING
    #: fresh worker processes that time every case (each: set-up, first call, warm-up, timing)
    processes: int = DEFAULT_PROCESSES
    #: modules (dotted names or .py paths) imported first, in this process and in every
    #: worker, that register more backends (e.g. a synthetic backend for a check)
    extra_backend_modules: tuple[str, ...] = ()
    #: seconds a worker may spend on one case before it is stopped (and restarted once for
    #: the cases it had not finished)
    case_timeout_s: float = 600.0
    #: the suite is every registered backend (`backends` not given): those that cannot run
    #: here on the requested devices are left out of the run, named in one note
    #: (`RunResults.settings["left_out"]`), instead of being skipped cases
    all_backends: bool = False

    def __post_init__(self):
        for spec in self.extra_backend_modules:  # first: they add to the default suite
            import_backend_module(spec)
        if self.backends is None:
            from hhbench.backends import backend_names
            object.__setattr__(self, "backends", tuple(backend_names()))
            object.__setattr__(self, "all_backends", True)
        if int(self.processes) != self.processes or self.processes < 1:
            raise HHBenchError(f"processes must be a positive integer, got {self.processes!r}")
        if not 0 < self.case_timeout_s < float("inf"):
            raise HHBenchError(f"case_timeout_s must be a positive number of seconds, got "
                               f"{self.case_timeout_s!r}")
        for name in self.backends:
            check_name(name)
        for kind in self.stimuli:
            stimlib.check_kind(kind)
        stimlib.check_seed(self.seed)
        if not self.backends or not self.stimuli or not self.batches:
            raise HHBenchError("the suite needs at least one backend, stimulus and batch size")
        for b in self.batches:
            if int(b) != b or b <= 0:
                raise HHBenchError(f"batch sizes must be positive integers, got {b!r}")
        object.__setattr__(self, "devices", check_devices(self.devices))
        for key in ("backends", "stimuli", "batches"):  # a case named twice runs once
            object.__setattr__(self, key, tuple(dict.fromkeys(getattr(self, key))))
        if self.model is not None and any("model" in check_name(b).option_defaults
                                          for b in self.backends):
            from hhbench.model_location import check_model_path
            check_model_path(self.model)  # refused now, not in every worker
        if not isinstance(self.options, Mapping):
            raise HHBenchError("options must be a table of backend name -> options")
        checked = {}
        for name, opts in self.options.items():
            if not isinstance(opts, Mapping):
                raise HHBenchError(f"options of backend {name!r} must be a table")
            checked[name] = check_name(name).check_options(opts, self.devices)
        object.__setattr__(self, "options", checked)
        if self.reference not in REFERENCES:
            raise HHBenchError(f"unknown reference {self.reference!r}; use converged or lab")
        if self.n_samples < 1:
            raise HHBenchError("n_samples must be >= 1")

    def runs(self, name: str, stimulus: str, batch: int) -> bool:
        """Whether `name` runs on `stimulus` at `batch`: always in a suite that names its
        backends; in the default suite (`all_backends`) only within what the backend
        declares for it (`default_batch_limit`, `default_stimuli`: the slow baselines),
        which `default_limit_notes` says."""
        if not self.all_backends:
            return True
        cls = check_name(name)
        return ((cls.default_batch_limit is None or batch <= cls.default_batch_limit)
                and (cls.default_stimuli is None or stimulus in cls.default_stimuli))

    def grid(self) -> list[tuple[str, str, int]]:
        """(backend, stimulus, batch) of every case, in the order they run (stimulus,
        then backend, then batch), those the default suite leaves out dropped (`runs`)."""
        return [(b, s, n) for s in self.stimuli for b in self.backends
                for n in self.batches if self.runs(b, s, n)]

    def default_limit_notes(self) -> dict[str, str]:
        """{"backend on sine, noise and at batch 16": why} for each backend the default
        suite runs on fewer of the requested stimuli or batches than asked for (`runs`):
        the stimuli outside its `default_stimuli` and the batches above its
        `default_batch_limit`; {"backend": why} for one left with no case at all; {} for
        a suite that names its backends."""
        notes = {}
        if not self.all_backends:
            return notes
        advice = "name it in --backends to run it on every stimulus and batch"
        for name in self.backends:
            cls = check_name(name)
            stimuli = [s for s in self.stimuli
                       if cls.default_stimuli is not None and s not in cls.default_stimuli]
            batches = [n for n in self.batches if cls.default_batch_limit is not None
                       and n > cls.default_batch_limit]
            if not any(self.runs(name, s, n) for s in self.stimuli for n in self.batches):
                where = " ".join(filter(None, [
                    cls.default_stimuli and f"on {', '.join(cls.default_stimuli)}",
                    cls.default_batch_limit and f"at batches up to {cls.default_batch_limit}"]))
                notes[name] = (f"run by default only {where}, as too slow per trace, and "
                               f"none of that was asked for; {advice}")
            elif stimuli or batches:
                where = " and ".join(filter(None, [
                    stimuli and f"on {', '.join(stimuli)}",
                    batches and f"at batch {', '.join(map(str, batches))}"]))
                notes[f"{name} {where}"] = f"too slow per trace to run there by default; {advice}"
        return notes

    def backend_options(self, name: str) -> dict:
        """The options `name` is made with: its entry in `options`, and `model` for a
        backend that takes one."""
        return backend_options(name, self.options.get(name), model=self.model)

    @classmethod
    def quick(cls, **overrides) -> "SuiteConfig":
        """The CI-sized suite: batch 1, no warm-up, 3 timed calls per process."""
        return cls(**{"batches": (1,), "timing": TimingSettings(warmup_calls=0, min_repeats=3,
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
            return cls.from_dict(data)
        except TypeError as exc:
            raise HHBenchError(f"{path}: bad suite config ({exc})") from None
        except HHBenchError as exc:  # the user's file, named
            raise HHBenchError(f"{path}: {exc}") from None

    @classmethod
    def from_dict(cls, data: dict) -> "SuiteConfig":
        """Settings from `as_dict()` (or a config file's table); TypeError on unknown keys.
        `cnn_mode` (files written before backends took options) is the cnn's `mode`."""
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)} | {"cnn_mode"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise HHBenchError(f"unknown setting {unknown[0]!r}; the settings are: "
                               f"{', '.join(sorted(known - {'cnn_mode'}))}")
        for key in ("backends", "stimuli", "batches", "devices", "extra_backend_modules"):
            if key in data and not isinstance(data[key], (list, tuple)):
                raise HHBenchError(f"{key} must be a list (e.g. {key} = [...]), got "
                                   f"{data[key]!r}")
        if isinstance(data.get("timing"), dict):
            valid = {f.name for f in dataclasses.fields(TimingSettings)}
            bad = sorted(set(data["timing"]) - valid)
            if bad:
                raise HHBenchError(f"unknown timing setting {bad[0]!r}; the timing settings "
                                   f"are: {', '.join(sorted(valid))}")
        if "cnn_mode" in data:
            legacy = data.pop("cnn_mode")
            data["options"] = {**data.get("options", {}),
                               "cnn": {"mode": legacy, **data.get("options", {}).get("cnn", {})}}
        if isinstance(data.get("timing"), dict):
            data["timing"] = TimingSettings(**data["timing"])
        for key in ("backends", "stimuli", "batches", "devices", "extra_backend_modules"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["options"] = {k: dict(v) for k, v in self.options.items()}
        return d


def case_stimulus(kind: str, batch: int, *, n_samples: int = stimlib.DEFAULT_SAMPLES,
                  seed: int = 0) -> stimlib.Stimulus:
    """The lab's default stimulus of `kind` (`stimuli.make` defaults) for a case of `batch`
    traces: noise draws `batch` independent traces, step and sine tile their one trace."""
    if kind == "noise":
        return stimlib.white_noise(seed=seed, batch=batch, n_samples=n_samples)
    return stimlib.make(kind, n_samples=n_samples).repeat(batch)


#: traces per converged-reference call: each block of this many traces is refined until it
#: meets the tolerance by itself (the default run's batches are one block), and a long
#: accuracy phase advances its progress bar block by block
REFERENCE_BLOCK = 16
#: rough CPU seconds per trace of 2560 samples, for the estimate before a long accuracy
#: phase (converged: noise and steps need 64-256 substeps per sample)
REFERENCE_TRACE_S = {"converged": 0.5, "lab": 0.003}
#: the references of this process: (kind, batch, n_samples, seed, reference) -> SimResult
_REFERENCES: dict[tuple, SimResult] = {}
_REFERENCES_KEPT = 32


def cached_reference(kind: str, batch: int, n_samples: int = stimlib.DEFAULT_SAMPLES,
                     seed: int = 0, reference: str = "converged", *, cache=True,
                     on_traces=None) -> SimResult:
    """The reference run for `case_stimulus(kind, batch, ...)`: computed once per process,
    and kept on disk between runs (`hhbench.reference_cache`).

    cache: True (the user's cache folder), False (computed, nothing read or stored) or a
    `ReferenceCache`. `info["cache"]` of the result says where it came from: "hit" (the
    disk cache), "stored" (computed and stored), "not stored" (computed; the cache folder
    could not take it) or "off". `on_traces(n)` is called as each block of n traces is
    computed (a progress bar).
    Step and sine cases tile one trace to the batch, so their reference is the one-trace
    reference tiled (the same numbers, without integrating the same trace `batch` times)."""
    memo = (kind, batch, n_samples, seed, reference)
    if memo in _REFERENCES and (cache is not False
                                or _REFERENCES[memo].info.get("cache") == "off"):
        return _REFERENCES[memo]
    stim = case_stimulus(kind, batch, n_samples=n_samples, seed=seed)
    if kind == "noise" or batch == 1:
        result = _stored_or_computed(stim, reference, cache, on_traces)
    else:
        one = cached_reference(kind, 1, n_samples, seed, reference, cache=cache,
                               on_traces=on_traces)
        result = dataclasses.replace(one, v_mv=np.repeat(one.v_batch, batch, axis=0),
                                     diverged=np.repeat(one.diverged, batch), stimulus=stim,
                                     gates=None, info={**one.info, "tiled_from_batch": 1})
    _REFERENCES[memo] = result
    while len(_REFERENCES) > _REFERENCES_KEPT:
        del _REFERENCES[next(iter(_REFERENCES))]
    return result


def reference_key(stimulus: stimlib.Stimulus, reference: str = "converged") -> dict:
    """Everything that defines the reference of `stimulus`, JSON-ready: the key of the disk
    cache (stimulus settings and a hash of its current, batch, samples, noise seed, the
    reference backend's settings, the hash of the model equations and step kernels)."""
    from hhbench.backends.numba_cache import sources_hash

    backend = get_backend(REFERENCES[reference])
    simple = {k: v for k, v in vars(backend).items() if isinstance(v, (bool, int, float, str))}
    current = np.ascontiguousarray(stimulus.current_ua, dtype=np.float64)
    return {"reference": reference, "backend": backend.name,
            "kernel": getattr(backend, "kernel", None),
            "backend_settings": {**simple, **backend.settings()},
            "stimulus": stimulus.describe(), "batch": stimulus.batch_size,
            "n_samples": stimulus.n_samples, "seed": stimulus.params.get("seed"),
            "current_sha256": hashlib.sha256(current.tobytes()).hexdigest(),
            "equations_sha256": sources_hash(), "block_traces": REFERENCE_BLOCK}


def _reference_cache(cache):
    from hhbench.reference_cache import ReferenceCache
    if cache is False:
        return None
    return ReferenceCache() if cache is True else cache


def _stored_or_computed(stim: stimlib.Stimulus, reference: str, cache, on_traces
                        ) -> SimResult:
    """The reference of `stim` from the disk cache, else computed block by block (and
    stored)."""
    store = _reference_cache(cache)
    key = reference_key(stim, reference) if store is not None else None
    entry = store.load(key) if store is not None else None
    source = "hit"
    if entry is None:
        start = time.perf_counter()
        entry = _computed_reference(stim, reference, on_traces)
        entry.info["compute_s"] = round(time.perf_counter() - start, 3)
        source = "off" if store is None else \
            ("stored" if store.store(key, entry) else "not stored")
    elif on_traces is not None:
        on_traces(stim.batch_size)
    n_out = entry.v_mv.shape[1]
    t_ms = stim.t_ms[entry.first_sample:entry.first_sample + n_out]
    return SimResult(backend=REFERENCES[reference], v_mv=stim.squeeze(entry.v_mv), t_ms=t_ms,
                     first_sample=entry.first_sample, diverged=entry.diverged, stimulus=stim,
                     info={**entry.info, "cache": source})


def _computed_reference(stim: stimlib.Stimulus, reference: str, on_traces):
    """The reference of `stim`, in blocks of REFERENCE_BLOCK traces; `info` merged over the
    blocks (numbers: the largest, flags: all)."""
    from hhbench.reference_cache import Entry

    parts = []
    for start in range(0, stim.batch_size, REFERENCE_BLOCK):
        rows = stim.current_ua[start:start + REFERENCE_BLOCK]
        block = stimlib.Stimulus(current_ua=rows, fs_khz=stim.fs_khz, kind=stim.kind,
                                 params=stim.params, batched=True)
        parts.append(reference_run(block, reference))
        if on_traces is not None:
            on_traces(len(rows))
    info: dict = {}
    for part in parts:
        for k, v in part.info.items():
            if isinstance(v, bool):
                info[k] = info.get(k, True) and v
            elif isinstance(v, (int, float)):
                info[k] = max(info.get(k, v), v)
            else:
                info.setdefault(k, v)
    return Entry(v_mv=np.concatenate([p.v_batch for p in parts]),
                 diverged=np.concatenate([np.asarray(p.diverged, bool) for p in parts]),
                 first_sample=parts[0].first_sample, info=info)


def prepare_references(config: "SuiteConfig", cases, *, cache=True, progress: bool = True
                       ) -> list[dict]:
    """Make the references of `cases` ((kind, batch) pairs) ready, in this process' memory:
    loaded from the disk cache where they are there, else computed with a progress bar in
    traces (its time left), after a line with an estimate when that is over 10 s. Returns
    one record per reference: stimulus, batch, source ("hit", "stored", "not stored",
    "off"), the substeps it converged at, seconds to compute."""
    from tqdm.auto import tqdm

    store = _reference_cache(cache)
    own = {(k, b if k == "noise" else 1) for k, b in cases}
    todo = []
    for kind, batch in sorted(own, key=lambda kb: kb[1]):
        memo = (kind, batch, config.n_samples, config.seed, config.reference)
        if memo in _REFERENCES:
            continue
        if store is not None:
            stim = case_stimulus(kind, batch, n_samples=config.n_samples, seed=config.seed)
            if store.path(reference_key(stim, config.reference)).exists():
                continue  # loaded (or found damaged and computed) below
        todo.append((kind, batch))
    traces = sum(b for _, b in todo)
    per_trace = REFERENCE_TRACE_S[config.reference] * config.n_samples / stimlib.DEFAULT_SAMPLES
    estimate = 0.0
    if todo:  # the blocks' threads: numba's pool, imported only when there is work
        from hhbench.backends.numba_engine import call_threads
        estimate = sum(per_trace * b / call_threads(min(b, REFERENCE_BLOCK)) for _, b in todo)
    if progress and estimate > 10:
        where = f"; kept in {store.folder} for later runs" if store is not None else ""
        tqdm.write(f"hhbench run: accuracy: {len(todo)} reference(s) to compute "
                   f"({traces} traces), about {_duration(estimate)}{where}", file=sys.stderr)
    bar = tqdm(total=traces, disable=not progress or not todo, unit="trace",
               dynamic_ncols=True, desc="hhbench run: references")
    records = []
    for kind, batch in sorted(set(cases)):
        pending = (kind, batch if kind == "noise" else 1) in todo
        ref = cached_reference(kind, batch, config.n_samples, config.seed, config.reference,
                               cache=cache if store is not None else False,
                               on_traces=bar.update if pending else None)
        records.append({"stimulus": kind, "batch": batch, "reference": config.reference,
                        "source": ref.info.get("cache"),
                        **{k: ref.info[k] for k in ("substeps", "compute_s") if k in ref.info}})
    bar.close()
    return records


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


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


def backend_options(name: str, options: Mapping | None = None, *,
                    model: str | None = None) -> dict:
    """`options` for backend `name`, checked (`Backend.check_options`), with `model` added
    when the backend takes a model and none is given."""
    cls = check_name(name)
    opts = cls.check_options(options)
    if model is not None and "model" in cls.option_defaults:
        opts.setdefault("model", model)
    return opts


def make_backend(name: str, *, device: str = "auto", options: Mapping | None = None,
                 model: str | None = None):
    """A fresh backend instance on `device` (a request, resolved by the backend itself:
    CannotRunHere if it cannot run there) with its options."""
    cls = check_name(name)
    opts = backend_options(name, options, model=model)
    resolved = cls.resolve_device(device, opts)
    if "device" in cls.option_defaults:
        opts["device"] = resolved
    return get_backend(name, **opts)


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
                          error=words(exc), **base), None
    try:  # apart: a device-only timing that fails keeps the round trip measured above
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DivergenceWarning)
            device_only = _device_only(backend, stimulus, timing, kwargs)
    except Exception as exc:
        device_only = {"timed": "host arrays in and out", "device_only_error": words(exc)}
    status = "diverged" if result.any_diverged else "ok"
    settings = {**backend.call_settings(stimulus.batch_size), **device_only}
    return CaseResult(device=result.device, status=status, timing=timed, prepare_s=prepare_s,
                      settings=settings, **base), result


def _device_only(backend, stimulus, timing: TimingSettings, kwargs) -> dict:
    """What a case's time contains, as recorded in its settings: `timed` says the samples
    are round trips from host arrays to host arrays (a GPU backend synchronises before it
    returns); a backend with a `device_call` is timed once more on data already on the
    device, without the copies (`device_only_s`, the median of those samples), waited for
    through the backend's runtime; `device_memory_bytes` is what the runtime reports in use
    on the device after those calls, where it can tell."""
    from hhbench.runtimes import device_memory, device_only_call
    call = device_only_call(backend, stimulus)
    if call is None:
        return {"timed": "host arrays in and out"}
    device_timing, _ = measure(call, timing, cold=False, **kwargs)
    out = {"timed": "host arrays in and out, synchronised (device_only_s: without the "
                    "copies to and from the device)",
           "device_only_s": device_timing.median_s}
    memory = device_memory(backend)
    if memory is not None:
        out["device_memory_bytes"] = memory
    return out


def score_case(case: CaseResult, result: SimResult | None, reference: SimResult) -> CaseResult:
    """`case` with its accuracy against `reference` (unchanged if the case failed)."""
    if result is None:
        return case
    return dataclasses.replace(case, accuracy=accuracy(result, reference))


def suite_cases(config: SuiteConfig) -> list[tuple[str, str, int, str]]:
    """(backend, stimulus, batch, device request) of every case, in the order they run."""
    return [(b, s, n, d) for b, s, n in config.grid() for d in config.devices]


def plan_devices(config: SuiteConfig) -> dict[str, list[tuple[str, NotRun | None]]]:
    """Per backend, (device, None) for each distinct device it runs on: each request
    resolved by the backend (through its runtime); (the request, `NotRun`) where it will
    not run: "skipped" when it is not installed here or cannot run there (CannotRunHere,
    e.g. its runtime sees no such GPU), "failed" when resolving raised anything else (a
    broken driver install), with the exception's words (`hhbench.failures`).

    HHBenchError (before any work) only for a GPU asked for on a machine without an
    NVIDIA driver: no backend could run there."""
    check_gpu_present(config.devices)
    plan = {}
    for name in config.backends:
        cls = backend_classes()[name]
        missing = cls.unavailable_reason()
        entries: list[tuple[str, NotRun | None]] = []
        for request in config.devices:
            if missing:
                entry = (request, NotRun("skipped", missing))
            else:
                try:
                    entry = (cls.resolve_device(request, config.backend_options(name)), None)
                except Exception as exc:  # one backend on one device: recorded, not fatal
                    entry = (request, not_run(exc))
            if entry[0] not in [e[0] for e in entries]:
                entries.append(entry)
        plan[name] = entries
    return plan


def planned_cases(config: SuiteConfig, plan: dict | None = None
                  ) -> list[tuple[str, str, int, str, NotRun | None]]:
    """(backend, stimulus, batch, device, why not run) of every case, in the order they
    run, with the devices resolved (`plan_devices`)."""
    plan = plan_devices(config) if plan is None else plan
    return [(b, s, n, d, why) for b, s, n in config.grid() for d, why in plan[b]]


def leave_out_unrunnable(config: SuiteConfig) -> tuple[SuiteConfig, dict[str, str]]:
    """For the default suite (`all_backends`): the config without the backends that cannot
    run here on any requested device, and {backend: why} for those (a note, not skipped
    cases), with where a slow baseline is not run by default (`default_limit_notes`).
    Any other config comes back as it is, with {}. When none can run, nothing is left
    out (the skipped cases then say why)."""
    if not config.all_backends:
        return config, {}
    # left out: a backend skipped on every device; one that failed to resolve stays in,
    # to be reported as a failed case
    reasons = {name: "; ".join(dict.fromkeys(why.reason for _, why in entries))
               for name, entries in plan_devices(config).items()
               if all(why is not None and why.status == "skipped" for _, why in entries)}
    if not reasons or len(reasons) == len(config.backends):
        return config, config.default_limit_notes()
    kept = dataclasses.replace(config, backends=tuple(
        b for b in config.backends if b not in reasons))
    return kept, {**reasons, **kept.default_limit_notes()}


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


def _example(result: SimResult) -> dict:
    return {"t_ms": np.round(result.t_ms, 4), "v_mv": np.round(result.v_batch[0], 3)}


def run_suite(config: SuiteConfig, *, progress: bool = True,
              reference_cache=True) -> RunResults:
    """Run every case of `config`: time each in `config.processes` fresh worker processes,
    then score the first process' output against the reference (computed once, here, after
    all timings, or loaded from the disk cache: `reference_cache` as `cached_reference`'s
    `cache`; where each came from is in `environment["references"]`). A failing or
    diverging case is recorded, not fatal; a case that failed in any process is "failed"
    with that process' reason."""
    from tqdm.auto import tqdm

    from hhbench.workers import package_source, run_processes, suite_models

    config, left_out = leave_out_unrunnable(config)
    needed = check_memory(config)
    _reference_cache(reference_cache)  # a bad cache setting is refused before any work
    # a backend not installed here (e.g. the cnn without TensorFlow), or asked for a device
    # it does not run on, is skipped, and says why
    planned = planned_cases(config)
    cases = [c[:4] for c in planned]
    runnable = [i for i, c in enumerate(planned) if not c[4]]
    if progress and needed > 2**30:  # minutes per case ahead: say so before the first one
        tqdm.write(f"hhbench run: {len(cases)} cases up to batch {max(config.batches)}, "
                   f"about {needed / 2**30:.1f} GiB; large batches take a while per case",
                   file=sys.stderr)
    # what the workers must import too
    source = package_source(suite_models(config), backends=config.backends)
    env = {**describe_machine(), "state": machine_state(), "hhbench_source": source}
    # the first run after an install or an edit compiles numba's drivers: side by side,
    # before any timing, rather than one after the other in the first worker
    from hhbench.precompile import compile_ahead
    say = (lambda line: tqdm.write(f"hhbench run: {line}", file=sys.stderr)) if progress \
        else None
    ahead = compile_ahead({name: config.backend_options(name)
                           for name in dict.fromkeys(planned[i][0] for i in runnable)},
                          modules=tuple(config.extra_backend_modules), say=say)
    if ahead:
        env["compiled_ahead"] = ahead
    from hhbench.busy import LoadMeter
    from hhbench.calibration import BLOCKS, Calibration
    calibration = Calibration()
    calibration.take(blocks=BLOCKS)  # then one between workers, some in each, some at the end
    meter = LoadMeter().start()  # other work on the machine while the workers time
    bar = tqdm(total=len(runnable) * config.processes, disable=not progress, unit="case",
               dynamic_ncols=True, desc=f"hhbench run ({config.processes} processes)")
    with tempfile.TemporaryDirectory(prefix="hhbench-outputs-") as keep:
        outputs = run_processes(config.as_dict(), [cases[i] for i in runnable],
                                config.processes, keep_dir=Path(keep),
                                on_case=lambda: bar.update(1),
                                case_timeout_s=config.case_timeout_s, source=source,
                                between=calibration.between)
        bar.close()
        env["load_during"] = meter.stop()
        calibration.take(blocks=3)
        for o in outputs:
            if o.record.get("calibration_block_min_s"):
                calibration.add(o.record["calibration_block_min_s"])
        calib = calibration.result()
        env["workers"] = [o.record for o in outputs]
        out, examples = [], {}
        position = {case_index: k for k, case_index in enumerate(runnable)}
        # the accuracy phase: references (computed once per stimulus and batch, or loaded
        # from the disk cache) and metrics
        env["references"] = prepare_references(
            config, [(planned[i][1], planned[i][2]) for i in runnable],
            cache=reference_cache, progress=progress)
        scoring = tqdm(total=len(planned), disable=not progress, unit="case",
                       dynamic_ncols=True, desc="hhbench run: accuracy")
        for case_index, (name, kind, batch, device, skip) in enumerate(planned):
            scoring.update(1)
            stim = case_stimulus(kind, batch, n_samples=config.n_samples, seed=config.seed)
            if skip:
                out.append(CaseResult(backend=name, stimulus=kind, batch=batch, device=device,
                                      status=skip.status, n_samples=stim.n_samples,
                                      dt_ms=stim.dt_ms, reference=config.reference,
                                      error=skip.reason))
                continue
            index = position[case_index]
            per_process = [o.cases[index] for o in outputs if index in o.cases]
            case = _assemble(name, stim, device, config.reference, per_process)
            result = _load_output(Path(keep) / f"{index}.npz", name, stim, case.device)
            if case.status == "failed":
                result = None
            # accuracy after all timings: the references use the numba engine
            ref = cached_reference(kind, batch, config.n_samples, config.seed, config.reference,
                                   cache=reference_cache)
            out.append(score_case(case, result, ref))
            if result is not None and batch == min(config.batches):
                ex = examples.setdefault(kind, {"t_ms": np.round(stim.t_ms, 4),
                                                "current_ua": np.round(stim.current_ua[0], 4),
                                                "reference": np.round(ref.v_batch[0], 3),
                                                "backends": {}})
                label = name if case.device == "cpu" else f"{name}@{case.device}"
                ex["backends"][label] = _example(result)
        scoring.close()
    return RunResults(settings={**config.as_dict(), "schema_note": "times in seconds",
                                **({"left_out": left_out} if left_out else {})},
                      environment=env, calibration=calib, cases=tuple(out), examples=examples)


def _assemble(name: str, stim: stimlib.Stimulus, device: str, reference: str,
              per_process: list[dict]) -> CaseResult:
    """One CaseResult from the workers' reports of a case (one dict per process)."""
    base = dict(backend=name, stimulus=stim.kind, batch=stim.batch_size, n_samples=stim.n_samples,
                dt_ms=stim.dt_ms, reference=reference, stimulus_params=stim.describe())
    ran = [p for p in per_process if p.get("samples_s")]
    errors = [p["error"] for p in per_process if p.get("error") and not p.get("samples_s")]
    if errors or not ran:
        n_failed = len(errors) if errors else len(per_process)
        reason = errors[0] if errors else "no worker process reported this case"
        if len(per_process) > 1:
            reason = f"{reason} (in {n_failed} of {len(per_process)} processes)"
        return CaseResult(device=(ran[0]["device"] if ran else device), status="failed",
                          error=reason, processes=tuple(_timing(p) for p in ran), **base)
    statuses = {p["status"] for p in ran}
    return CaseResult(device=ran[0]["device"], status="diverged" if "diverged" in statuses
                      else "ok", processes=tuple(_timing(p) for p in ran),
                      settings=ran[0].get("settings") or {}, **base)


def _timing(report: dict) -> ProcessTiming:
    return ProcessTiming(prepare_s=report.get("prepare_s"), cold_s=report.get("cold_s"),
                         samples_s=tuple(report["samples_s"]))


def _load_output(path: Path, name: str, stim: stimlib.Stimulus, device: str) -> SimResult | None:
    """The first process' output of a case (saved by its worker), as a SimResult."""
    if not path.exists():
        return None
    with np.load(path) as data:
        return SimResult(backend=name, v_mv=data["v"], t_ms=data["t_ms"],
                         first_sample=int(data["first_sample"]), diverged=data["diverged"],
                         stimulus=stim, device=device)


__all__ = ["SuiteConfig", "case_stimulus", "reference_run", "cached_reference", "accuracy",
           "reference_key", "prepare_references",
           "run_case", "score_case", "run_suite", "make_backend", "backend_options",
           "plan_devices", "planned_cases", "leave_out_unrunnable"]
