"""numba-cuda: CUDA kernels compiled from Python (the `numba-cuda` backend).

  * available: numba and the numba-cuda package are importable;
  * devices: the GPUs numba-cuda's driver sees (`numba.cuda.gpus`); under
    NUMBA_ENABLE_CUDASIM=1 numba's CUDA simulator plays one GPU. "gpu:N" is
    `numba.cuda.gpus[N]`, numbered as the CUDA driver numbers them after
    CUDA_VISIBLE_DEVICES;
  * process set-up: `module()` returns numba.cuda with NumPy 2.5 made compilable (below);
  * precisions: float64 and float32 (the step kernels' arithmetic);
  * synchronisation: `numba.cuda.synchronize()` on the device's context;
  * ceilings: the elementwise exp and fma rates measured with numba-cuda kernels
    (`hhbench.runtimes.cuda_ceilings`), the rates the backend's own kernels are bound by;
  * memory in use: the device's total minus its free memory (`get_memory_info`);
  * energy: NVML's counter of the GPU (`hhbench.energy`), None where it is unreadable.
"""

from __future__ import annotations

import os
import sys

from hhbench.errors import CannotRunHere
from hhbench.runtimes.base import Runtime


def simulator_enabled() -> bool:
    """Whether numba's CUDA simulator stands in for a GPU (NUMBA_ENABLE_CUDASIM=1, read by
    numba when numba.cuda is first imported)."""
    try:
        from numba import config
        return bool(config.ENABLE_CUDASIM)
    except ImportError:
        return os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def _row_stack(tup, *, dtype=None, casting="same_kind"):
    import numpy as np
    return np.vstack(tup, dtype=dtype, casting=casting)


def numpy_compat() -> None:
    """Make numba-cuda 0.30 compile under NumPy >= 2.5: call before its first compile.

    NumPy 2.5 removed `np.row_stack`, but numba-cuda's array implementations
    (numba.cuda.np.arrayobj, loaded with its typing registries at the first compile) still
    register an overload for it, so every compile raised AttributeError. Upstream declined
    to change it (NVIDIA/numba-cuda#907), so the module is imported once here with a
    stand-in `np.row_stack`, which is removed again at once: NumPy's namespace stays as
    NumPy made it. A no-op with an older NumPy (which has row_stack), under the simulator
    (which compiles nothing), and once the module is loaded."""
    import numpy as np

    if (hasattr(np, "row_stack") or simulator_enabled()
            or "numba.cuda.np.arrayobj" in sys.modules):
        return
    np.row_stack = _row_stack
    try:
        import numba.cuda.np.arrayobj  # noqa: F401  (registers its overloads)
    finally:
        del np.row_stack


def module():
    """numba.cuda, ready to compile (`numpy_compat` applied)."""
    numpy_compat()
    from numba import cuda
    return cuda


class NumbaCudaRuntime(Runtime):
    name = "cuda"
    label = "numba-cuda"
    requires = ("numba", "numba_cuda")
    install_hint = "pip install 'hhbench[cuda]'"
    precisions = ("float64", "float32")
    has_ceilings = True

    def gpu_count(self) -> int:
        """GPUs numba-cuda sees (the simulator's one under NUMBA_ENABLE_CUDASIM=1); 0 when
        numba-cuda is missing or finds no driver."""
        if not self.is_available():
            return 0
        try:
            cuda = module()
            return len(cuda.gpus) if cuda.is_available() else 0
        except Exception:  # a broken driver install: no GPU for this runtime
            return 0

    def native_device(self, device: str):
        """The numba-cuda GPU (`numba.cuda.gpus[N]`, a context manager) of "gpu:N"."""
        return module().gpus[self.gpu_index(device)]

    def synchronize(self, device: str, value=None) -> None:
        """Wait for every kernel and copy queued on GPU N of "gpu:N" (its context)."""
        cuda = module()
        with cuda.gpus[self.gpu_index(device)]:
            cuda.synchronize()

    def memory_info(self, device: str) -> tuple[int, int] | None:
        """(free, total) bytes of GPU N of "gpu:N" as CUDA tells (every process' use
        counted), None under the simulator."""
        if simulator_enabled():
            return None
        cuda = module()
        with cuda.gpus[self.gpu_index(device)]:
            free, total = cuda.current_context().get_memory_info()
        return int(free), int(total)

    def memory_in_use(self, device: str) -> int | None:
        """Bytes in use on the GPU (total − free, every process), None under the simulator."""
        info = self.memory_info(device)
        return None if info is None else info[1] - info[0]

    def memory_capacity(self, device: str) -> int | None:
        """Bytes free on the GPU (CUDA's free memory), None under the simulator; the
        host's for "cpu"."""
        if device == "cpu":
            return super().memory_capacity(device)
        info = self.memory_info(device)
        return None if info is None else info[0]

    def energy_where(self, device: str) -> str | None:
        """NVML's counter of GPU N of "gpu:N" (None under the simulator, which has no GPU,
        and for a GPU numba-cuda does not see)."""
        if simulator_enabled() or not device.startswith("gpu"):
            return None
        return self.nvml_counter(device)

    def ceilings(self, device: str) -> dict:
        if simulator_enabled():  # its kernels run in the Python interpreter: no ceiling
            raise CannotRunHere("numba's CUDA simulator has no arithmetic ceilings (it "
                                "interprets the kernels in Python)")
        from hhbench.runtimes.cuda_ceilings import measure_device_ceilings
        return measure_device_ceilings(self.gpu_index(device))


RUNTIME = NumbaCudaRuntime()
