"""`exp-euler`: exponential (Rush-Larsen) Euler, stable where forward Euler overflows.

Over one step the rates and conductances are frozen at the current state; each gate then
relaxes exactly to x∞ = α/(α+β) with τ = 1/(α+β), and V relaxes exactly to
E* + I/G with time constant 1/G (G total conductance, E* conductance-weighted reversal).
Every update is a convex combination, so V, m, h, n stay bounded for any step and current.
First order in dt, like forward Euler.
"""

from __future__ import annotations

from hhbench.backends import numba_engine, register
from hhbench.backends.base import Backend, check_substeps


@register
class ExpEuler(Backend):
    name = "exp-euler"
    summary = "exponential (Rush-Larsen) Euler compiled with numba: stable for any current"
    requires = ("numba",)

    def __init__(self, *, substeps: int = 1):
        self.substeps = check_substeps(substeps)

    def prepare(self):
        numba_engine.compile_engine()

    def settings(self):
        return {"threads": numba_engine.thread_count(), "substeps": self.substeps}

    def _integrate(self, current_ua, dt_ms, gates):
        return numba_engine.integrate(current_ua, dt_ms, numba_engine.RUSH_LARSEN, self.substeps,
                                     gates)
