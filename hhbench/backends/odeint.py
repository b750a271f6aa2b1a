"""`odeint`: `scipy.integrate.odeint` (LSODA) on the HH ODE, as the lab used it.

The current is held constant over each sample interval. So that a jump in the current is
not smeared by the multistep history, the time axis is cut where any trace's current
changes and LSODA is restarted on each piece (2 pieces for a step, one per sample for
noise). All traces of a batch are integrated together as one system of 4·batch states.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import odeint

from hhbench import model
from hhbench.backends import register
from hhbench.backends.base import Backend


@register
class Odeint(Backend):
    name = "odeint"
    summary = "scipy.integrate.odeint (LSODA), restarted wherever the current steps"
    requires = ("scipy",)

    def __init__(self, *, rtol: float = 1.49012e-8, atol: float = 1.49012e-8):
        self.rtol, self.atol = float(rtol), float(atol)

    def settings(self):
        return {"rtol": self.rtol, "atol": self.atol}

    def _integrate(self, current_ua, dt_ms, gates):
        derivatives = model.NUMPY_KERNELS.derivatives
        batch, n_samples = current_ua.shape

        def rhs(y, _t, i):
            v, m, h, n = y.reshape(4, batch)
            return np.concatenate(derivatives(v, m, h, n, i))

        out = np.full((4, batch, n_samples), np.nan)
        y = np.repeat([model.V0_MV, model.M0, model.H0, model.N0], batch)
        out[:, :, 0] = y.reshape(4, batch)
        # piece boundaries: sample k starts a new piece when the current differs from k-1
        changes = np.flatnonzero(np.any(np.diff(current_ua[:, :-1], axis=1) != 0, axis=0)) + 1
        starts = np.concatenate(([0], changes))
        ends = np.concatenate((changes, [n_samples - 1]))
        with np.errstate(all="ignore"):
            for start, end in zip(starts, ends):
                if end <= start:
                    continue
                t = np.arange(start, end + 1) * dt_ms
                ys = odeint(rhs, y, t, args=(current_ua[:, start],), rtol=self.rtol,
                            atol=self.atol)
                out[:, :, start + 1:end + 1] = ys[1:].T.reshape(4, batch, -1)
                y = ys[-1]
                if not np.all(np.isfinite(y)):
                    break
        return out[0], ({"m": out[1], "h": out[2], "n": out[3]} if gates else None)
