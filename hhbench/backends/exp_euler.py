"""`exp-euler`: exponential (Rush-Larsen) Euler, stable where forward Euler overflows.

Over one step the rates and conductances are frozen at the current state; each gate then
relaxes exactly to x∞ = α/(α+β) with τ = 1/(α+β), and V relaxes exactly to
E* + I/G with time constant 1/G (G total conductance, E* conductance-weighted reversal).
Every update is a convex combination, so V, m, h, n stay bounded for any step and current.
First order in dt, like forward Euler.
"""

from hhbench.backends import numba_engine, register


@register
class ExpEuler(numba_engine.EngineBackend):
    name = "exp-euler"
    summary = "exponential (Rush-Larsen) Euler compiled with numba: stable for any current"
    method = numba_engine.RUSH_LARSEN
