"""`odeint`: `scipy.integrate.odeint` (LSODA) on the HH ODE with a compiled right-hand side.

The current is held constant over each sample interval. So that a jump in the current is
not smeared by the multistep history, the time axis is cut where any trace's current
changes and LSODA is restarted on each piece (2 pieces for a step, one per sample for
noise). All traces of a batch are integrated together as one system of 4·batch states.

The right-hand side is the model's `derivatives` compiled with numba
(`odeint_rhs.odeint_functions`): LSODA calls it hundreds to thousands of times per trace,
and a NumPy right-hand side costs ~7 µs per call in interpreter and array overhead. The
compiled one is called through its C entry point (no dispatcher) from a two-line Python
function that hands odeint one reused buffer (an array odeint need not convert; for a single
trace the current is a float): ~0.64 µs per call with odeint's own share. That share is
~0.4 µs (measured with a C-level right-hand side): odeint's callback wrapper and LSODA.
LSODA also gets the Jacobian (forward differences in compiled code; banded for a batch,
whose states are interleaved per neuron) instead of estimating it with 4·batch calls of the
right-hand side. Going below needs LSODA driven from compiled code: odeint accepts no
`scipy.LowLevelCallable`, and SciPy exports no LSODA symbol. `odeint-lab` keeps the lab's
way as the baseline.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import odeint

from hhbench import model
from hhbench.backends import odeint_rhs, register
from hhbench.backends.base import ADAPTIVE_NOTE, Backend
from hhbench.errors import HHBenchError

#: odeint's default tolerances, the lab's
RTOL = ATOL = 1.49012e-8


def check_tolerances(rtol, atol) -> tuple[float, float]:
    """(rtol, atol) as floats if both are finite and > 0, else HHBenchError naming them
    (a zero tolerance makes LSODA fail on every step; a negative one is no tolerance)."""
    for name, value in (("rtol", rtol), ("atol", atol)):
        try:
            ok = 0 < float(value) < float("inf")
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise HHBenchError(f"odeint {name} must be a finite number > 0, got {value!r}")
    return float(rtol), float(atol)


@register
class Odeint(Backend):
    name = "odeint"
    summary = "scipy odeint (LSODA), compiled right-hand side, restarted where the current steps"
    requires = ("scipy", "numba")

    def __init__(self, *, rtol: float = RTOL, atol: float = ATOL):
        self.rtol, self.atol = check_tolerances(rtol, atol)

    def step_operations(self):
        return None, ADAPTIVE_NOTE

    def prepare(self):
        odeint_rhs.compiled_ode(), odeint_rhs.compiled_ode(one_neuron=True)  # compile now

    def settings(self):
        return {"rtol": self.rtol, "atol": self.atol, "rhs": "numba",
                "jacobian": "numba, forward differences (banded for a batch)"}

    def _integrate(self, current_ua, dt_ms, gates):
        batch, n_samples = current_ua.shape
        out = np.full((n_samples, batch, 4), np.nan)
        y = np.tile([model.V0_MV, model.M0, model.H0, model.N0], batch).astype(np.float64)
        out[0] = y.reshape(batch, 4)
        # piece boundaries: sample k starts a new piece when the current differs from k-1
        changes = np.flatnonzero(np.any(np.diff(current_ua[:, :-1], axis=1) != 0, axis=0)) + 1
        starts = np.concatenate(([0], changes))
        ends = np.concatenate((changes, [n_samples - 1]))
        current = np.ascontiguousarray(current_ua, dtype=np.float64)
        rhs, jac, band = odeint_rhs.odeint_functions(batch)
        with np.errstate(all="ignore"):
            for start, end in zip(starts, ends):
                if end <= start:
                    continue
                t = np.arange(start, end + 1) * dt_ms
                args = ((float(current[0, start]),) if batch == 1
                        else (np.ascontiguousarray(current[:, start]),))
                ys = odeint(rhs, y, t, args=args, Dfun=jac, ml=band, mu=band,
                            rtol=self.rtol, atol=self.atol)
                out[start + 1:end + 1] = ys[1:].reshape(-1, batch, 4)
                y = ys[-1]
                if not np.all(np.isfinite(y)):
                    break
        out = out.transpose(2, 1, 0)  # (state, trace, sample), copied to C order below
        v = np.ascontiguousarray(out[0])
        if not gates:
            return v, None
        return v, {g: np.ascontiguousarray(out[k]) for k, g in enumerate("mhn", start=1)}
