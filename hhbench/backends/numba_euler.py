"""`numba`: the lab's forward Euler compiled with numba, parallel over the batch.

Same kernels and arithmetic as the `numpy` backend, so the two agree to ~1e-12 mV.
`substeps` > 1 splits each sample interval into that many Euler steps (for convergence
studies); the default 1 is the lab's method.
"""

from hhbench.backends import numba_engine, register


@register
class NumbaEuler(numba_engine.EngineBackend):
    name = "numba"
    summary = "forward Euler compiled with numba (cache=True), parallel over the batch"
    method = numba_engine.EULER
