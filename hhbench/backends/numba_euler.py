"""`numba`: the lab's forward Euler compiled with numba, parallel over the batch.

`substeps` > 1 splits each sample interval into that many Euler steps (for convergence
studies); the default 1 is the lab's method.

Same kernels and arithmetic as the `numpy` backend, so the two agree to ~1e-12 mV.
"""

from __future__ import annotations

from hhbench.backends import numba_engine, register
from hhbench.backends.base import Backend, check_substeps


@register
class NumbaEuler(Backend):
    name = "numba"
    summary = "forward Euler compiled with numba (cache=True), parallel over the batch"
    requires = ("numba",)

    def __init__(self, *, substeps: int = 1):
        self.substeps = check_substeps(substeps)

    def prepare(self):
        numba_engine.compile_engine()

    def settings(self):
        return {"threads": numba_engine.thread_count(), "substeps": self.substeps}

    def _integrate(self, current_ua, dt_ms, gates):
        return numba_engine.integrate(current_ua, dt_ms, numba_engine.EULER, self.substeps,
                                     gates)
