"""`exp-euler`: exponential Euler, gates first; stable where forward Euler overflows.

Over one step the rates are frozen at the old V; each gate relaxes exactly to
x∞ = α/(α+β) with τ = 1/(α+β). Then V relaxes exactly to E* + I/G with time constant 1/G,
G the total conductance and E* the conductance-weighted reversal potential of the NEW gates.
Every update is a convex combination, so V, m, h, n stay bounded for any step and current.
First order in dt, like forward Euler, with a much smaller error constant than freezing V
and gates together (Rush-Larsen; the engine's "rush-larsen" kernel).
"""

from hhbench.backends import numba_engine, register


@register
class ExpEuler(numba_engine.EngineBackend):
    name = "exp-euler"
    summary = "exponential Euler compiled with numba: gates exactly, then V; stable for any current"
    kernel = "exp-euler"
