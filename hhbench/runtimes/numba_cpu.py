"""numba (and NumPy) on the CPU: the CPU backends' runtime, which sees no GPU.

Its process set-up is the thread count (`hhbench.threads`); its ceilings are the CPU's
(`hhbench.floor.measure_ceilings`: matmul and NumPy's exp on every usable core). It
computes in float64; its energy counter is the CPU packages' RAPL counter, where readable
(`hhbench.energy`).
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

    def energy_where(self, device: str) -> str | None:
        """RAPL's CPU packages (read where readable: often root only)."""
        return "cpu" if device == "cpu" else None


RUNTIME = NumbaCpuRuntime()
