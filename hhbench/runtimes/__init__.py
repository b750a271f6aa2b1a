"""Device runtimes, one module each: numba on the CPU (`numba_cpu`), numba-cuda
(`numba_cuda`), JAX (`jax`) and TensorFlow (`tensorflow`).

A backend names its runtime (`Backend.runtime_of(options)`: None, "cuda", "jax" or
"tensorflow"); the harness asks that runtime, through `get_runtime`, whether it is here,
which GPUs it sees and what "gpu:N" means, the precisions it computes in, how a fresh
process is set up, how to wait for the device (`device_only_call`), its ceilings, its
memory in use (`device_memory`) and its energy counter (see
`hhbench.runtimes.base.Runtime`).
Adding a runtime is adding one module with a `RUNTIME` object and its name below (or
`register_runtime` from a plugin). No framework is imported until a runtime is asked
something that needs it.
"""

from __future__ import annotations

import importlib

from hhbench.errors import HHBenchError
from hhbench.runtimes.base import Runtime

#: runtime name (as backends declare it; None: numba/NumPy on the CPU) -> its module
MODULES = {None: "hhbench.runtimes.numba_cpu", "cuda": "hhbench.runtimes.numba_cuda",
           "jax": "hhbench.runtimes.jax", "tensorflow": "hhbench.runtimes.tensorflow"}
_extra: dict[str, Runtime] = {}


def register_runtime(runtime: Runtime) -> Runtime:
    """Add a runtime defined outside hhbench (a plugin's), under `runtime.name`."""
    if not isinstance(runtime, Runtime) or not runtime.name:
        raise HHBenchError("a runtime is a named hhbench.runtimes.Runtime")
    _extra[runtime.name] = runtime
    return runtime


def get_runtime(name: str | None) -> Runtime:
    """The runtime called `name` (None: numba/NumPy on the CPU); HHBenchError if unknown."""
    if name in _extra:
        return _extra[name]
    if name not in MODULES:
        known = ", ".join(sorted([*(k for k in MODULES if k), *_extra]))
        raise HHBenchError(f"unknown runtime {name!r} (known: {known})")
    return importlib.import_module(MODULES[name]).RUNTIME


def runtime_names() -> list[str | None]:
    return [*MODULES, *_extra]


def device_only_call(backend, stimulus, *, cpu: bool = False):
    """None where `backend` has no device-only call (or runs on the CPU, unless `cpu`),
    else a function of no arguments: `backend.device_call(stimulus)`'s call (its input
    already on the device, put there now), then its runtime's `synchronize(device,
    output)`; it returns None (the output is dropped). What the harness times as "device
    only"."""
    call = backend.device_call(stimulus) if cpu or backend.device != "cpu" else None
    if call is None:
        return None
    runtime, device = backend.device_runtime(), backend.device

    def synchronized() -> None:
        runtime.synchronize(device, call())
    return synchronized


def device_memory(backend) -> int | None:
    """Bytes in use on `backend`'s device as its runtime tells (None: not known, or the
    runtime could not say)."""
    try:
        return backend.device_runtime().memory_in_use(backend.device)
    except Exception:  # a device without statistics, a runtime not set up: not known
        return None


def process_env(env: dict, names=None) -> dict:
    """`env` with what every runtime in `names` (default: all) needs in a fresh process."""
    for name in (runtime_names() if names is None else names):
        get_runtime(name).process_env(env)
    return env


__all__ = ["Runtime", "get_runtime", "register_runtime", "runtime_names", "process_env",
           "device_only_call", "device_memory", "MODULES"]
