"""A backend of known cost, registered only where this module is imported (the verdict check,
`scripts/verdict_check.py`, names it in its suite's `extra_backend_modules`).

`synthetic` spins for HHBENCH_SYNTHETIC_US microseconds (default 2000) times the square root
of the batch per call — wall-clock time, read when the module is imported, so every worker
process of a run burns the same — and returns the resting potential. It simulates nothing:
it exists so that a slowdown of exactly known size (e.g. 1.25x) can be planted.
`numba-planted` is `numba` run HHBENCH_PLANTED_CALLS times per call (default 1): a planted
slowdown in real simulation code, which a loaded machine slows as it slows `numba`.
"""

import os
import time

import numpy as np

from hhbench.backends import register
from hhbench.backends.base import Backend
from hhbench.backends.numba_euler import NumbaEuler

COST_US = float(os.environ.get("HHBENCH_SYNTHETIC_US", "2000"))


@register
class Synthetic(Backend):
    name = "synthetic"
    summary = "burns HHBENCH_SYNTHETIC_US µs x sqrt(batch) per call; V stays at rest (checks only)"

    def settings(self):
        # the planted cost stands for a code change, which no setting records: recorded,
        # it would make `compare` discount the slowdown as "settings differ"
        return {}

    def _integrate(self, current_ua, dt_ms, gates):
        end = time.perf_counter() + COST_US * 1e-6 * np.sqrt(current_ua.shape[0])
        while time.perf_counter() < end:
            pass
        return np.full(current_ua.shape, -65.0), None


PLANTED_CALLS = int(os.environ.get("HHBENCH_PLANTED_CALLS", "1"))


@register
class NumbaPlanted(NumbaEuler):
    """`numba`, run HHBENCH_PLANTED_CALLS times per call: a slowdown of known size (2x for 2)
    planted in real, CPU-bound simulation code, so it feels a loaded machine as numba does."""
    name = "numba-planted"
    summary = "numba's forward Euler, HHBENCH_PLANTED_CALLS times per call (checks only)"

    def run(self, stimulus, *, gates=False):
        for _ in range(PLANTED_CALLS - 1):
            super().run(stimulus, gates=gates)
        return super().run(stimulus, gates=gates)
