"""JAX as hhbench uses it: imported here, set up before its first use in the process.

Every module that runs JAX (the `jax` backend's engine, the CNN's JAX graph, the floor's
ceilings) imports it from here, so the settings below hold whichever of them comes first:
  * the JAX runtime's process set-up (`hhbench.runtimes.jax`: XLA_PYTHON_CLIENT_PREALLOCATE
    false unless set, so that JAX does not take 75 % of a GPU at start-up);
  * one CPU device per usable core (`jax_num_cpu_devices`, unless the user chose a count
    or `XLA_FLAGS` forces one): XLA runs a fusion of a few thousand elements on one thread,
    so a batch on one CPU device uses one core, and sharded over one device per core, as a
    batch over GPUs is, it uses them all (1,024 HH traces × 2,560 samples on 2 cores:
    0.024 s instead of 0.044 s). Code that does not shard runs on the first CPU device as
    before;
  * float64 only where asked for (`x64(precision)`, a context): the process' global x64
    setting is left as it is.
"""

from __future__ import annotations

import contextlib
import os

from hhbench.runtimes import get_runtime  # noqa: E402

get_runtime("jax").setup()  # XLA_PYTHON_CLIENT_PREALLOCATE, before JAX is imported

import jax  # noqa: E402


def _cpu_devices_per_core() -> None:
    chosen = getattr(jax.config, "jax_num_cpu_devices", None)  # None: a JAX without it
    if (chosen is None or chosen != -1
            or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")):
        return
    from hhbench.environment import usable_cores
    try:
        jax.config.update("jax_num_cpu_devices", usable_cores())
    except RuntimeError:  # JAX's backends were initialised before hhbench imported it
        pass


_cpu_devices_per_core()


def x64(precision: str = "float64"):
    """A context in which JAX computes in float64 (for "float64"; else no change)."""
    if precision != "float64":
        return contextlib.nullcontext()
    state = getattr(jax, "enable_x64", None)
    if state is not None:  # JAX >= 0.7: a config state, callable as a context
        return state(True)
    from jax.experimental import enable_x64  # older JAX
    return enable_x64()


def gpu_count() -> int:
    """GPUs JAX sees (0 when its GPU backend is absent or finds none): the JAX runtime's
    count (`hhbench.runtimes.jax`)."""
    return get_runtime("jax").gpu_count()


__all__ = ["jax", "x64", "gpu_count"]
