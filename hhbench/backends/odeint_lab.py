"""`odeint-lab`: `scipy.integrate.odeint` the way the lab used it, the baseline of `odeint`.

One call per trace over the whole time axis, with a Python right-hand side (the model's
NumPy `derivatives` on the four scalars) that looks the current up at the time LSODA asks
for: i(t) = current[floor(t/dt)], held over each sample interval. LSODA's step control
does not know where the current jumps, so a step's onset is smeared over LSODA's steps;
and every right-hand side call pays the interpreter. Same tolerances as `odeint`.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import odeint

from hhbench import model
from hhbench.backends import register
from hhbench.backends.base import ADAPTIVE_NOTE, Backend
from hhbench.backends.odeint import ATOL, RTOL, check_tolerances


@register
class OdeintLab(Backend):
    name = "odeint-lab"
    summary = "the lab's odeint: Python right-hand side, one LSODA call per trace (baseline)"
    requires = ("scipy",)
    # 1.3-1.5 s per trace on the lab's sine and noise (a Python call per right-hand side,
    # LSODA's steps following every spike): there, and at batch 16 anywhere, it alone would
    # take most of the default run; named, it runs everywhere
    default_batch_limit = 1
    default_stimuli = ("step",)

    def __init__(self, *, rtol: float = RTOL, atol: float = ATOL):
        self.rtol, self.atol = check_tolerances(rtol, atol)

    def step_operations(self):
        return None, ADAPTIVE_NOTE

    def settings(self):
        return {"rtol": self.rtol, "atol": self.atol, "rhs": "python"}

    def _integrate(self, current_ua, dt_ms, gates):
        derivatives = model.NUMPY_KERNELS.derivatives
        batch, n_samples = current_ua.shape
        t = np.arange(n_samples) * dt_ms
        y0 = [model.V0_MV, model.M0, model.H0, model.N0]
        out = np.empty((4, batch, n_samples))
        with np.errstate(all="ignore"):
            for b in range(batch):
                trace = current_ua[b]

                def rhs(y, t_ms):
                    # the sample interval t lies in (a hair of slack for t = k·dt in floats)
                    k = min(int(t_ms / dt_ms + 1e-9), n_samples - 1)
                    return derivatives(y[0], y[1], y[2], y[3], trace[k])

                out[:, b, :] = odeint(rhs, y0, t, rtol=self.rtol, atol=self.atol).T
        return out[0], ({"m": out[1], "h": out[2], "n": out[3]} if gates else None)
