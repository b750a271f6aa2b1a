"""JAX (the `jax` backend and the CNN's JAX runtime).

  * devices: `jax.devices("gpu")`; "gpu:N" is the N-th of them, "gpu:all" all of them,
    "cpu" every CPU device (one per usable core: `hhbench.jax_runtime`);
  * process set-up: XLA_PYTHON_CLIENT_PREALLOCATE=false (unless set): JAX on a GPU takes
    75 % of its memory at start-up otherwise, which would starve another runtime in the
    process; the CPU device count is set where JAX is imported (`hhbench.jax_runtime`);
  * precisions: float64 and float32 (the `jax` backend's step); a network's convolutions
    in float32 (at HIGHEST), tf32 or bfloat16 (the CNN's JAX runtime, `hhbench.cnn.jaxgraph`);
  * synchronisation: `block_until_ready` on what a call returns (with nothing returned,
    `jax.effects_barrier()`);
  * ceilings: matmul, exp and fma rates measured with JAX (`hhbench.jax_ceilings`);
  * memory in use: the device's `memory_stats()["bytes_in_use"]` (None where it has none);
  * energy: NVML's counter of a GPU, RAPL's on the CPU (`hhbench.energy`), where readable.
"""

from __future__ import annotations

from hhbench.errors import CannotRunHere
from hhbench.runtimes.base import Runtime


class JaxRuntime(Runtime):
    name = "jax"
    label = "JAX"
    requires = ("jax",)
    install_hint = "pip install 'hhbench[jax]'"
    precisions = ("float64", "float32")
    network_precisions = ("float32", "tf32", "bfloat16")
    has_ceilings = True

    def process_env(self, env: dict) -> None:
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        # JAX 0.11's CUDA plugin refuses to start (and JAX falls back to the CPU, saying so
        # only in a log line) when both memory-fraction names are set: keep the new one
        old = env.pop("XLA_PYTHON_CLIENT_MEM_FRACTION", None)
        if old is not None:
            env.setdefault("XLA_CLIENT_MEM_FRACTION", old)

    def gpu_count(self) -> int:
        """GPUs JAX sees (0 when it is missing, its GPU backend is absent or finds none)."""
        if not self.is_available():
            return 0
        from hhbench.jax_runtime import jax
        try:
            return len(jax.devices("gpu"))
        except RuntimeError:  # no GPU backend (jaxlib without CUDA) or no device
            return 0

    def devices(self, device: str, gpus=None) -> tuple:
        """The JAX devices of a resolved device: "cpu" every CPU device, "gpu:N" one GPU,
        "gpu:all" every GPU; CannotRunHere when JAX does not see it. `gpus`, where given,
        stands in for `jax.devices("gpu")`."""
        from hhbench.jax_runtime import jax
        if device == "cpu":
            return tuple(jax.devices("cpu"))
        if gpus is None:
            resolved = self.resolve_gpu(device)
            gpus = jax.devices("gpu")
        else:
            from hhbench.devices import parse_device, pick_gpu
            resolved = pick_gpu(parse_device(device), len(gpus), self.label)
        return tuple(gpus) if resolved == "gpu:all" else (gpus[int(resolved[4:])],)

    def native_device(self, device: str):
        """The one JAX device of "cpu" (the first CPU device) or "gpu:N"."""
        if device == "gpu:all":
            raise CannotRunHere("JAX: one device wanted, not gpu:all")
        return self.devices(device)[0]

    def synchronize(self, device: str, value=None) -> None:
        """Block until `value` (arrays, or a tree of them) is computed; with no value,
        until JAX's queued effects have run (`jax.effects_barrier`)."""
        from hhbench.jax_runtime import jax
        if value is not None:
            jax.block_until_ready(value)
        else:
            jax.effects_barrier()

    def ceilings(self, device: str) -> dict:
        from hhbench.jax_ceilings import measure_device_ceilings
        return measure_device_ceilings(device)

    def memory_stats(self, device: str) -> dict:
        """The device's `memory_stats()` ({} where it keeps none: the CPU, or a device JAX
        does not see)."""
        try:
            return self.native_device(device).memory_stats() or {}
        except (AttributeError, NotImplementedError, RuntimeError, CannotRunHere):
            return {}

    def memory_in_use(self, device: str) -> int | None:
        """Bytes JAX holds on the device (`memory_stats()["bytes_in_use"]`); None where
        the device keeps no statistics (the CPU) or not that one."""
        stats = self.memory_stats(device)
        return int(stats["bytes_in_use"]) if "bytes_in_use" in stats else None

    def memory_capacity(self, device: str) -> int | None:
        """Bytes JAX may still take on a GPU (`memory_stats()`: bytes_limit − bytes_in_use,
        the pool's cap under XLA's memory fraction); the host's for "cpu"."""
        if device == "cpu":
            return super().memory_capacity(device)
        stats = self.memory_stats(device)
        if "bytes_limit" not in stats:
            return None
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))

    def energy_where(self, device: str) -> str | None:
        """NVML's counter of GPU N of "gpu:N" (None for a GPU JAX does not see); RAPL's
        CPU packages for "cpu"."""
        return "cpu" if device == "cpu" else self.nvml_counter(device)


RUNTIME = JaxRuntime()
