"""`odeint`: `scipy.integrate.odeint` (LSODA) on the HH ODE with a compiled right-hand side.

The current is held constant over each sample interval. So that a jump in the current is
not smeared by the multistep history, the time axis is cut where any trace's current
changes and LSODA is restarted on each piece (2 pieces for a step, one per sample for
noise). All traces of a batch are integrated together as one system of 4·batch states.

The right-hand side is the model's `derivatives` compiled with numba
(`numba_engine.compiled_rhs`): LSODA calls it hundreds to thousands of times per trace, and
a NumPy right-hand side costs ~7 µs per call in interpreter and array overhead against
~0.5 µs for the compiled one, which writes into one reused buffer instead of allocating.
What is left is odeint's own: measured with a C-level right-hand side, odeint (its callback
wrapper and LSODA) costs ~0.4 µs per right-hand-side call here, so with ~7,500 calls on the
lab's step its floor is ~3 ms whatever the right-hand side. Going below needs LSODA driven
from compiled code: odeint accepts no `scipy.LowLevelCallable`, and SciPy exports no LSODA
symbol. `odeint-lab` keeps the lab's way as the baseline.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import odeint

from hhbench import model
from hhbench.backends import register
from hhbench.backends.base import Backend

#: odeint's default tolerances, the lab's
RTOL = ATOL = 1.49012e-8


@register
class Odeint(Backend):
    name = "odeint"
    summary = "scipy odeint (LSODA), compiled right-hand side, restarted where the current steps"
    requires = ("scipy", "numba")

    def __init__(self, *, rtol: float = RTOL, atol: float = ATOL):
        self.rtol, self.atol = float(rtol), float(atol)

    def prepare(self):
        from hhbench.backends import numba_engine
        self._rhs = numba_engine.compiled_rhs()

    def settings(self):
        return {"rtol": self.rtol, "atol": self.atol, "rhs": "numba"}

    def _integrate(self, current_ua, dt_ms, gates):
        rhs = self._rhs
        batch, n_samples = current_ua.shape
        out = np.full((4, batch, n_samples), np.nan)
        y = np.repeat([model.V0_MV, model.M0, model.H0, model.N0], batch).astype(np.float64)
        out[:, :, 0] = y.reshape(4, batch)
        # piece boundaries: sample k starts a new piece when the current differs from k-1
        changes = np.flatnonzero(np.any(np.diff(current_ua[:, :-1], axis=1) != 0, axis=0)) + 1
        starts = np.concatenate(([0], changes))
        ends = np.concatenate((changes, [n_samples - 1]))
        current = np.ascontiguousarray(current_ua, dtype=np.float64)
        dy = np.empty(4 * batch)  # the right-hand side's output, reused by every call
        with np.errstate(all="ignore"):
            for start, end in zip(starts, ends):
                if end <= start:
                    continue
                t = np.arange(start, end + 1) * dt_ms
                ys = odeint(rhs, y, t, args=(np.ascontiguousarray(current[:, start]), dy),
                            rtol=self.rtol, atol=self.atol)
                out[:, :, start + 1:end + 1] = ys[1:].T.reshape(4, batch, -1)
                y = ys[-1]
                if not np.all(np.isfinite(y)):
                    break
        return out[0], ({"m": out[1], "h": out[2], "n": out[3]} if gates else None)
