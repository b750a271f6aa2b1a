"""The interface every simulator shares, and the result it returns.

A backend is an object with three duties:
  * `is_available()` (class method): can it run here (is numba / TensorFlow importable)?
  * `prepare()`: do the one-off work (numba compilation, model loading, graph tracing).
    It is idempotent; the timing harness measures the first call to `run` as cold start.
  * `run(stimulus)`: simulate, returning a `SimResult` with V in mV.

What a backend can do is declared by the backend, never decided elsewhere by its name:
  * `device_kinds`: the kinds of device it runs on ("cpu", "gpu"); `resolve_device(request,
    options)` turns a request ("auto", "cpu", "gpu", "gpu:N", "gpu:all") into the device it
    will run on, through its own runtime (`visible_gpus`), or raises `CannotRunHere`
    (not that kind of device, or a GPU its runtime does not see: the case is skipped,
    with the reason);
  * `runtime_of(options)`: the heavy framework it imports ("tensorflow", "jax", "cuda") or
    None: the worker processes are grouped by it, so each is imported once per process;
  * `option_defaults`: the options a config may set (`check_options` refuses others); a
    backend that takes a `device` option (GPU backends) gets the resolved device there.

Concrete backends implement `_integrate` (current → V on the input's own time grid) or,
like the CNN whose output covers a shorter window, override `run` and call `_result`.
"""

from __future__ import annotations

import warnings
from abc import ABC
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np

from hhbench.devices import nvidia_driver_present, parse_device, pick_gpu
from hhbench.errors import CannotRunHere, DivergenceWarning, HHBenchError
from hhbench.stimuli import Stimulus

#: |V| beyond this (mV) is not physiology but an integrator running away.
DIVERGED_ABS_MV = 1.0e4


@dataclass(frozen=True, kw_only=True)
class SimResult:
    """Voltage traces from one backend for one stimulus.

    v_mv: (batch, samples) or (samples,) for a single-trace stimulus; NaN from the first
          non-finite sample of a diverged trace on.
    t_ms: time of each output sample on the stimulus' clock (the CNN covers a central window).
    first_sample: index of the first output sample in the stimulus.
    diverged: one flag per trace; gates: {"m", "h", "n"} like v_mv, when asked for.
    """

    backend: str
    v_mv: np.ndarray
    t_ms: np.ndarray
    first_sample: int
    diverged: np.ndarray
    stimulus: Stimulus
    device: str = "cpu"
    gates: Mapping[str, np.ndarray] | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.v_mv.shape[-1] != self.t_ms.size:
            raise ValueError(f"v_mv has {self.v_mv.shape[-1]} samples but t_ms {self.t_ms.size}")

    @property
    def v_batch(self) -> np.ndarray:
        """V as (batch, samples) whatever the stimulus shape."""
        return self.v_mv if self.v_mv.ndim == 2 else self.v_mv[np.newaxis]

    @property
    def any_diverged(self) -> bool:
        return bool(np.any(self.diverged))


class Backend(ABC):
    """A Hodgkin-Huxley simulator (or surrogate) behind hhbench's common interface."""

    name: ClassVar[str]
    summary: ClassVar[str]
    #: importable modules this backend needs (checked by `is_available`)
    requires: ClassVar[tuple[str, ...]] = ()
    #: the command that installs what `requires` names (e.g. an extra of hhbench)
    install_hint: ClassVar[str] = ""
    #: kinds of device it runs on; a backend with "gpu" takes a `device` option
    device_kinds: ClassVar[tuple[str, ...]] = ("cpu",)
    #: the heavy framework it imports (its cases get worker processes of their own)
    runtime: ClassVar[str | None] = None
    #: options a config may set (keyword arguments of the constructor), with defaults
    option_defaults: ClassVar[Mapping[str, Any]] = {}
    #: options whose value is one of a fixed few, e.g. {"precision": ("float64", "float32")}
    option_choices: ClassVar[Mapping[str, tuple]] = {}
    #: the largest batch, and the stimuli, the default suite (no backend named) runs it
    #: at and on; None: every one. For a baseline too slow per trace to run everywhere
    #: by default
    default_batch_limit: ClassVar[int | None] = None
    default_stimuli: ClassVar[tuple[str, ...] | None] = None

    @classmethod
    def runtime_of(cls, options: Mapping[str, Any] | None = None) -> str | None:
        """The heavy framework this backend imports with these options (None: numba or
        NumPy only)."""
        return cls.runtime

    @classmethod
    def check_options(cls, options: Mapping[str, Any] | None, devices=()) -> dict:
        """`options` as a dict if every key is one of `option_defaults`, else HHBenchError
        naming the key; `devices` are the requests it will run with. Checked in the parent
        before any work; a backend with option values to check overrides this (and the
        constructor checks them again)."""
        options = dict(options or {})
        for key in options:
            if key not in cls.option_defaults or key == "device":
                valid = ", ".join(k for k in cls.option_defaults if k != "device") or "none"
                raise HHBenchError(f"backend {cls.name!r} has no option {key!r} "
                                   f"(its options: {valid})")
        cls.check_choices(options)
        return options

    @classmethod
    def check_choices(cls, options: Mapping[str, Any]) -> None:
        """HHBenchError naming the value when an option of `option_choices` has another."""
        for key, value in options.items():
            choices = cls.option_choices.get(key)
            if choices is not None and value not in choices:
                raise HHBenchError(f"backend {cls.name!r} has no {key} {value!r} "
                                   f"(choose from: {', '.join(map(str, choices))})")

    @classmethod
    def visible_gpus(cls, options: Mapping[str, Any] | None = None) -> int:
        """GPUs this backend's runtime sees (`hhbench.runtimes`; 0 for a backend that runs
        on the CPU only)."""
        from hhbench.runtimes import get_runtime, runtime_names
        name = cls.runtime_of(options)
        if "gpu" not in cls.device_kinds or name not in runtime_names():
            return 0  # a plugin's runtime that is not registered counts its GPUs itself
        return get_runtime(name).gpu_count()

    @classmethod
    def resolve_device(cls, request: str = "auto",
                       options: Mapping[str, Any] | None = None) -> str:
        """The device ("cpu", "gpu:N", "gpu:all") this backend runs on for `request`.

        "auto" is the first GPU when the backend runs on GPUs and its runtime sees one, else
        the CPU. CannotRunHere when the backend does not run on that kind of device, or
        when a GPU is asked for and its runtime sees none (or not that one)."""
        req = parse_device(request)
        kinds = cls.device_kinds
        if req.kind == "auto":
            if "gpu" in kinds and nvidia_driver_present() and cls.visible_gpus(options) > 0:
                return "gpu:0"
            if "cpu" in kinds:
                return "cpu"
            raise CannotRunHere(f"{cls.name} runs on GPUs only, and none is here")
        if req.kind not in kinds:
            only = " and ".join(k.upper() if k == "cpu" else k.upper() + "s" for k in kinds)
            raise CannotRunHere(f"{cls.name} runs on the {only} only")
        if req.kind == "cpu":
            return "cpu"
        n_gpus = cls.visible_gpus(options) if nvidia_driver_present() else 0
        return pick_gpu(req, n_gpus, cls.runtime_of(options) or cls.name)

    @classmethod
    def is_available(cls) -> bool:
        from importlib.util import find_spec
        return all(find_spec(mod) is not None for mod in cls.requires)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when the backend can run here, else one line: what is missing and how to
        install it."""
        if cls.is_available():
            return None
        from hhbench.runtimes.base import missing_modules_reason
        return missing_modules_reason(cls.requires, cls.install_hint)

    @classmethod
    def compile_ahead(cls, options: Mapping[str, Any] | None = None) -> str | None:
        """What this backend's set-up would compile, seconds of work, that no on-disk cache
        holds yet, as a name that backends compiling the same thing share (e.g.
        "numba:euler"); None (the default) when there is nothing. `hhbench run` compiles
        these before any timing, in fresh processes side by side
        (`hhbench.precompile`), each calling `compile_now`."""
        return None

    @classmethod
    def compile_now(cls, options: Mapping[str, Any] | None = None) -> None:
        """Compile what `compile_ahead` names into its on-disk cache (in a fresh process)."""

    def prepare(self) -> None:
        """One-off work before the first run (compile, load). Idempotent."""

    @property
    def device(self) -> str:
        return "cpu"

    def device_runtime(self):
        """The runtime this backend runs on (`hhbench.runtimes.get_runtime` of
        `runtime_of()`), which the harness asks to wait for the device, for its memory in
        use and for its energy counter; a plugin's runtime that is not registered answers
        as a CPU runtime (nothing to wait for, nothing known)."""
        from hhbench.runtimes import Runtime, get_runtime, runtime_names
        name = self.runtime_of()
        return get_runtime(name) if name in runtime_names() else Runtime()

    def settings(self) -> dict:
        """The backend's settings, JSON-ready (recorded with results)."""
        return {}

    def call_settings(self, batch: int) -> dict:
        """`settings()` as they apply to a call over `batch` traces (what a case records)."""
        return self.settings()

    def step_operations(self) -> tuple[dict | None, str]:
        """The counted operations of one neuron-step of the method this backend runs
        (`hhbench.model.count_step_operations` of its step kernel, `self.kernel`) and a
        note; (None, why) where there is no fixed work per neuron-step (adaptive steps, no
        counted kernel). The floor divides them by the machine's rates."""
        kernel = getattr(self, "kernel", None)
        if kernel is None:
            return None, f"{self.name} runs no counted step kernel"
        from hhbench.backends.kernels import get_kernel
        return dict(get_kernel(kernel).operation_count()), f"step kernel {kernel}"

    def trace_work(self, n_samples: int) -> dict | None:
        """For a surrogate whose work is counted per trace (the floor's unit "trace"): its
        arithmetic for one trace of `n_samples` samples, {"matmul_flops", "bias_adds",
        "activations", "note"}. None (the default) for a simulator, whose work is counted
        per neuron-step from its step kernel."""
        return None

    def device_call(self, stimulus: Stimulus):
        """For a backend on a GPU: a function of no arguments that simulates `stimulus`
        from a current already on the device into device memory (nothing is copied back),
        returning what it made there; the harness waits for it through the runtime
        (`hhbench.runtimes.device_only_call`). `run` is then the round trip from host
        arrays to host arrays. None (the default) when there is no such split."""
        return None

    def run(self, stimulus: Stimulus, *, gates: bool = False) -> SimResult:
        """Simulate `stimulus`; V in mV at the stimulus' sample times (host arrays in and
        out: on a GPU the copies both ways are part of the call)."""
        self.prepare()
        v, gate_arrays = self._integrate(stimulus.current_ua, stimulus.dt_ms, gates)
        return self._result(stimulus, v, stimulus.t_ms, 0, gate_arrays)

    def _integrate(self, current_ua: np.ndarray, dt_ms: float, gates: bool
                   ) -> tuple[np.ndarray, dict | None]:
        """Integrate a (batch, samples) current; return V (batch, samples) and gates or None.
        A backend implements this or overrides `run`."""
        raise NotImplementedError(f"{type(self).__name__} implements neither _integrate nor run")

    def _result(self, stimulus: Stimulus, v: np.ndarray, t_ms: np.ndarray, first_sample: int,
                gate_arrays: dict | None = None, info: Mapping | None = None,
                diverged: np.ndarray | None = None) -> SimResult:
        """The SimResult of V (batch, samples); `diverged` (bool, batch) when the backend has
        already set its diverged traces NaN from their first bad sample, else found here."""
        if diverged is None:
            v, diverged = mark_divergence(v)
        n_diverged = int(np.count_nonzero(diverged))  # cheaper than .any() on a small array
        if n_diverged:
            warnings.warn(f"{self.name}: {n_diverged} of {diverged.size} traces diverged "
                          f"(the integrator overflowed); their V is NaN from that point",
                          DivergenceWarning, stacklevel=3)
        squeeze = stimulus.squeeze
        return SimResult(backend=self.name, v_mv=squeeze(v), t_ms=t_ms, first_sample=first_sample,
                         diverged=diverged, stimulus=stimulus, device=self.device,
                         gates=None if gate_arrays is None
                         else {k: squeeze(a) for k, a in gate_arrays.items()},
                         info=dict(info or {}))


def mark_divergence(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flag traces (rows) that went non-finite or beyond ±1e4 mV, and NaN them from there on.

    Returns (v, diverged) where v is a copy only if something diverged.
    """
    if v.size == 0:
        return v, np.zeros(v.shape[0], dtype=bool)
    # two row reductions find the diverged rows without temporaries the size of v (NaN
    # propagates through max and min, so a NaN row fails both tests); only those rows are
    # then searched for their first bad sample
    with np.errstate(invalid="ignore"):
        diverged = ~((v.max(axis=1) <= DIVERGED_ABS_MV) & (v.min(axis=1) >= -DIVERGED_ABS_MV))
    if not diverged.any():
        return v, diverged
    first_bad = np.full(v.shape[0], -1)
    with np.errstate(invalid="ignore"):
        first_bad[diverged] = np.argmax(~(np.abs(v[diverged]) <= DIVERGED_ABS_MV), axis=1)
    v = v.copy()
    nan_from(v, first_bad)
    return v, diverged


def nan_from(a: np.ndarray, first_bad: np.ndarray) -> None:
    """Set a[..., b, k:] = NaN, in place, for every trace b with first_bad[b] = k ≥ 0 (a's
    last two axes are traces and samples: V, or gates stacked in front)."""
    for row in np.flatnonzero(first_bad >= 0):
        a[..., row, first_bad[row]:] = np.nan


#: the note of a backend whose steps adapt to the solution (`step_operations`)
ADAPTIVE_NOTE = "adaptive steps: no fixed work per neuron-step"


def check_substeps(substeps) -> int:
    """Steps per sample interval (dt = 1/(fs·substeps)); 1 is the lab's method."""
    if int(substeps) != substeps or substeps < 1:
        raise HHBenchError(f"substeps must be a positive integer, got {substeps!r}")
    return int(substeps)
