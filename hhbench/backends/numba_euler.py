"""`numba`: the lab's forward Euler compiled with numba, SIMD over traces, parallel over chunks.

Runs the engine's "euler" step kernel (the model's fused rates: four exponentials per step
with an exponential LLVM vectorises); equal to the `numpy` backend to ~1e-12 mV on the lab's
step, to < 1e-9 mV on the noise traces near threshold, whose dynamics amplify last-bit
differences most.
`substeps` > 1 splits each sample interval into that many Euler steps (for convergence
studies); the default 1 is the lab's method.
"""

from hhbench.backends import numba_engine, register


@register
class NumbaEuler(numba_engine.EngineBackend):
    name = "numba"
    summary = "forward Euler compiled with numba (cache=True), SIMD over traces, parallel"
    kernel = "euler"
