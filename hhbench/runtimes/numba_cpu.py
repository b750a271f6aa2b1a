"""numba (and NumPy) on the CPU: the CPU backends' runtime, which sees no GPU.

Its process set-up is the thread count (`hhbench.threads`); its ceilings are the CPU's
(`hhbench.floor.measure_ceilings`: matmul and NumPy's exp on every usable core).
"""

from __future__ import annotations

from hhbench.runtimes.base import Runtime


class NumbaCpuRuntime(Runtime):
    name = None
    label = "numba (CPU)"
    requires = ("numba",)

    def native_device(self, device: str):
        if device != "cpu":
            return super().native_device(device)
        return "cpu"


RUNTIME = NumbaCpuRuntime()
