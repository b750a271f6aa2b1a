"""What every device runtime answers (`Runtime`); one subclass per runtime module.

A runtime is the framework that puts a backend's work on a device (numba on the CPU,
numba-cuda, JAX, TensorFlow). The harness asks a backend's runtime, never the framework:
  * `is_available()` / `unavailable_reason()`: whether its modules are importable;
  * `gpu_count()` and `resolve_gpu(request)`: its GPUs, and the "gpu:N" a request means
    (`CannotRunHere` when it sees none, or not that one);
  * `native_device("gpu:N")`: the framework's own device object for it;
  * `process_env(env)`: environment variables a fresh process needs before the framework
    is imported (memory, CPU device count); `setup()`: the same in this process;
  * `precisions` / `network_precisions`: the precisions its code computes in (a
    simulator's step: "float64", "float32"), and those a network's matrix products and
    convolutions may compute in ("tf32", "bfloat16", ...); `check_precision(value)`;
  * `synchronize(device, value)`: wait until the device has finished its queued work
    (and `value`, what a call returned, exists);
  * `ceilings(device)`: the device's arithmetic rates measured through this runtime (a
    dict of `hhbench.floor.Ceilings` fields), where `has_ceilings`;
  * `memory_in_use(device)`: bytes in use on the device, or None where unknown;
  * `energy_where(device)`: which `hhbench.energy` counter measures the device ("gpu:N"
    NVML's numbering, "cpu" RAPL's) or None; `energy_j(device)`: that counter's
    cumulative reading in J, or None (no counter readable here); `energy_sample(device)`:
    clocks and throttle reasons beside a reading ({} where none).
"""

from __future__ import annotations

from typing import ClassVar

from hhbench.devices import parse_device, pick_gpu
from hhbench.errors import CannotRunHere, HHBenchError


def missing_modules_reason(requires, install_hint: str = "") -> str | None:
    """None when every module in `requires` is importable, else one line naming those
    that are not and how to install them (backends and runtimes say it alike)."""
    from importlib.util import find_spec
    missing = [mod for mod in requires if find_spec(mod) is None]
    if not missing:
        return None
    hint = f"; install with: {install_hint}" if install_hint else ""
    verb = "is" if len(missing) == 1 else "are"
    return f"needs {', '.join(missing)}, which {verb} not installed{hint}"


class Runtime:
    """A device runtime; the defaults describe one that runs on the CPU only."""

    #: the name backends declare (`Backend.runtime`); None for numba/NumPy on the CPU
    name: ClassVar[str | None] = None
    #: how it is named to a person ("numba-cuda", "JAX")
    label: ClassVar[str] = ""
    #: importable modules it needs
    requires: ClassVar[tuple[str, ...]] = ()
    install_hint: ClassVar[str] = ""
    #: precisions its code computes in (what a simulator's `precision` option takes)
    precisions: ClassVar[tuple[str, ...]] = ("float64",)
    #: precisions a network's matrix products and convolutions may compute in through it
    #: (a surrogate's `precision` option); () where it runs no network
    network_precisions: ClassVar[tuple[str, ...]] = ()
    #: whether it measures a device's ceilings itself (`ceilings`); where not, a GPU's
    #: are measured through JAX (`hhbench.floor.gpu_ceilings`)
    has_ceilings: ClassVar[bool] = False

    def is_available(self) -> bool:
        return missing_modules_reason(self.requires) is None

    def unavailable_reason(self) -> str | None:
        """None when it can run here, else one line: what is missing and how to install it."""
        return missing_modules_reason(self.requires, self.install_hint)

    def gpu_count(self) -> int:
        """GPUs this runtime sees here (0: none, or it runs on the CPU only)."""
        return 0

    def resolve_gpu(self, request: str) -> str:
        """"gpu:N" or "gpu:all" for a GPU request ("gpu", "gpu:N", "gpu:all");
        CannotRunHere when this runtime sees no GPU, or not that one."""
        from hhbench.devices import nvidia_driver_present
        n = self.gpu_count() if nvidia_driver_present() else 0
        return pick_gpu(parse_device(request), n, self.label or str(self.name))

    def gpu_index(self, device: str) -> int:
        """N of "gpu:N" (0 for "gpu"), checked against what this runtime sees."""
        resolved = self.resolve_gpu(device)
        if resolved == "gpu:all":
            raise CannotRunHere(f"{self.label}: one device wanted, not gpu:all")
        return int(resolved.split(":", 1)[1])

    def native_device(self, device: str):
        """The framework's device object for "cpu" or "gpu:N"."""
        raise CannotRunHere(f"{self.label or 'this runtime'} has no device {device!r}")

    def process_env(self, env: dict) -> None:
        """Set, in `env` (a fresh process' environment), what this runtime needs before it
        is imported there; values already set are kept (a runtime may remove a setting
        its framework refuses)."""

    def setup(self) -> None:
        """`process_env` applied to this process (before the framework's first import)."""
        import os
        env = dict(os.environ)
        self.process_env(env)
        for key in [k for k in os.environ if k not in env]:
            del os.environ[key]
        for key, value in env.items():
            os.environ.setdefault(key, value)

    def check_precision(self, precision: str, *, network: bool = False) -> str:
        """`precision` if this runtime computes in it (`network`: in a network's matrix
        products, `network_precisions`; else `precisions`), else HHBenchError naming it."""
        choices = self.network_precisions if network else self.precisions
        if precision not in choices:
            raise HHBenchError(f"unknown precision {precision!r} for "
                               f"{self.label or self.name}; use {', '.join(choices)}")
        return precision

    def synchronize(self, device: str, value=None) -> None:
        """Wait until `device` has finished the work queued on it, and `value` (what a call
        returned, None for nothing) exists; nothing queues on a CPU."""

    def ceilings(self, device: str) -> dict | None:
        """The device's rates (`hhbench.floor.Ceilings` fields) where `has_ceilings`."""
        return None

    def memory_in_use(self, device: str) -> int | None:
        """Bytes in use on `device`, or None where this runtime cannot tell."""
        return None

    def energy_where(self, device: str) -> str | None:
        """The `hhbench.energy` counter of `device`: "gpu:N" (NVML's GPU N), "cpu" (RAPL),
        or None where this runtime knows of none."""
        return None

    def nvml_counter(self, device: str) -> str | None:
        """NVML's counter of GPU N of "gpu:N", N as this runtime numbers its GPUs (None
        for one it does not see): what a GPU runtime's `energy_where` gives for a GPU."""
        from hhbench.energy import nvml_where
        try:
            return nvml_where(self.gpu_index(device))
        except CannotRunHere:
            return None

    def memory_capacity(self, device: str) -> int | None:
        """Bytes free for a computation on `device`: the host's available memory (psutil)
        for "cpu"; None where this runtime cannot tell (a GPU, unless it says)."""
        if device == "cpu":
            import psutil
            return int(psutil.virtual_memory().available)
        return None

    def energy_j(self, device: str) -> float | None:
        """The device's cumulative energy counter in J (None: no counter readable here)."""
        where = self.energy_where(device)
        if where is None:
            return None
        from hhbench.energy import read_counter_j
        return read_counter_j(where)

    def energy_sample(self, device: str) -> dict:
        """The counter's clock, temperature and throttle reasons now ({} where none)."""
        where = self.energy_where(device)
        if where is None:
            return {}
        from hhbench.energy import counter_sample
        return counter_sample(where)
