"""`reference`: the converged reference of SPEC.md.

The same ODE, current held constant over each sample interval, integrated with the
exponential midpoint method (second order, and stable for the very stiff gate rates of a
strongly hyperpolarised membrane, where explicit RK4 would need steps below 1e-6 ms) on
`substeps` equal steps per sample interval. The step is refined until it is converged:
the run is repeated with twice the substeps, and accepted when the two differ by less than `tol_mv` (default 0.01 mV) at every sample of every trace; the finer run is
returned. `info["substeps"]` and `info["convergence_mv"]` record where it stopped.
"""

from __future__ import annotations

import warnings

import numpy as np

from hhbench.backends import numba_engine, register
from hhbench.backends.base import ADAPTIVE_NOTE, Backend, check_substeps
from hhbench.errors import HHBenchError


@register
class Reference(numba_engine.CompilesDriver, Backend):
    name = "reference"
    summary = "converged reference: exponential midpoint, steps halved until V changes < 0.01 mV"
    requires = ("numba",)
    kernel = "exp-midpoint"  # the engine's step kernel
    # ~85 ms per trace (converged at up to 256 substeps per sample): at batch 16 it would
    # be seconds per process of the default run; named, it runs at any batch
    default_batch_limit = 1

    def __init__(self, *, tol_mv: float = 0.01, start_substeps: int = 32, max_substeps: int = 4096):
        if not 0 < tol_mv < float("inf"):
            raise HHBenchError(f"reference tolerance must be > 0 mV, got {tol_mv!r}")
        start_substeps, max_substeps = check_substeps(start_substeps), check_substeps(max_substeps)
        if max_substeps < 2 * start_substeps:
            raise HHBenchError(f"max_substeps ({max_substeps}) must be at least twice "
                               f"start_substeps ({start_substeps}): one refinement at least")
        self.tol_mv, self.start_substeps, self.max_substeps = tol_mv, start_substeps, max_substeps

    def step_operations(self):
        return None, ADAPTIVE_NOTE

    def prepare(self):
        numba_engine.compile_engine(self.kernel)  # the converged runs use the engine directly

    def settings(self):
        return {"tol_mv": self.tol_mv, "method": "exponential midpoint",
                "start_substeps": self.start_substeps}

    def call_settings(self, batch):
        return {**self.settings(), "call_threads": numba_engine.call_threads(batch)}

    def run(self, stimulus, *, gates=False):
        self.prepare()
        v, g, info = self.converge(stimulus.current_ua, stimulus.dt_ms, gates)
        return self._result(stimulus, v, stimulus.t_ms, 0, g, info)

    def converge(self, current_ua, dt_ms, gates=False):
        """Return (v, gates, info) for the coarsest doubling that meets the tolerance."""
        substeps = self.start_substeps
        method = self.kernel
        coarse, _ = numba_engine.integrate(current_ua, dt_ms, method, substeps)
        while True:
            fine, g = numba_engine.integrate(current_ua, dt_ms, method, 2 * substeps, gates)
            # a run that went non-finite is not converged, whatever its finite part says
            blown_up = not (np.isfinite(fine).all() and np.isfinite(coarse).all())
            change = float(np.max(np.abs(fine - coarse))) if not blown_up else float("inf")
            if change < self.tol_mv or 2 * substeps >= self.max_substeps:
                info = {"substeps": 2 * substeps, "convergence_mv": change,
                        "converged": change < self.tol_mv, "tol_mv": self.tol_mv}
                if not info["converged"]:
                    warnings.warn(f"reference: not converged to {self.tol_mv} mV at "
                                  f"{2 * substeps} substeps (last change {change:.3g} mV)",
                                  RuntimeWarning, stacklevel=3)
                return fine, g, info
            coarse, substeps = fine, 2 * substeps
