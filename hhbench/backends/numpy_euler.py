"""`numpy`: the lab's reference implementation — forward Euler in a Python loop over time.

Each step uses the state and current at sample i to produce sample i+1 (V[0] = −70 mV).
The batch is vectorised with NumPy; overflow of diverging traces is silenced here and
reported once by the base class.
"""

from __future__ import annotations

import numpy as np

from hhbench import model
from hhbench.backends import register
from hhbench.backends.base import Backend


@register
class NumpyEuler(Backend):
    name = "numpy"
    summary = "forward Euler, Python loop over time, NumPy over the batch (the lab's reference)"

    def step_operations(self):
        # the lab's own six-exponential step, as NumPy runs it
        return dict(model.count_step_operations("euler_step")), "step euler_step"

    def _integrate(self, current_ua, dt_ms, gates):
        step = model.NUMPY_KERNELS.euler_step
        batch, n_samples = current_ua.shape
        out = np.empty((4 if gates else 1, batch, n_samples))
        v = np.full(batch, model.V0_MV)
        m = np.full(batch, model.M0)
        h = np.full(batch, model.H0)
        n = np.full(batch, model.N0)
        with np.errstate(all="ignore"):
            for k in range(n_samples):
                out[0, :, k] = v
                if gates:
                    out[1, :, k], out[2, :, k], out[3, :, k] = m, h, n
                v, m, h, n = step(v, m, h, n, current_ua[:, k], dt_ms)
        return out[0], ({"m": out[1], "h": out[2], "n": out[3]} if gates else None)
