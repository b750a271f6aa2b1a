"""The baseline of the kernel targets: a straightforward numba forward Euler, as one writes it
first (traces outer, time inner, `math.exp`, `prange`, no gate output). Not a backend: the
kernel report and the benchmark suites time the `numba` backend against it."""

from __future__ import annotations

import functools
import math

import numpy as np

from hhbench import model, threads


@functools.cache
def straightforward_euler():
    """f(current (batch, samples), dt_ms) -> V (batch, samples), compiled on first use."""
    threads.apply()  # before numba's pool starts: see hhbench.threads
    import numba

    @numba.njit(parallel=True, cache=True)
    def euler(current, dt):
        batch, n_samples = current.shape
        out = np.empty((batch, n_samples))
        for b in numba.prange(batch):
            v, m, h, n = model.V0_MV, model.M0, model.H0, model.N0
            for k in range(n_samples):
                out[b, k] = v
                u = v + 65.0
                am = (2.5 - 0.1 * u) / (math.exp(2.5 - 0.1 * u) - 1.0)
                bm = 4.0 * math.exp(-u / 18.0)
                ah = 0.07 * math.exp(-u / 20.0)
                bh = 1.0 / (math.exp(3.0 - 0.1 * u) + 1.0)
                an = (0.1 - 0.01 * u) / (math.exp(1.0 - 0.1 * u) - 1.0)
                bn = 0.125 * math.exp(-u / 80.0)
                dv = (120.0 * m ** 3 * h * (115.0 - u) + 36.0 * n ** 4 * (-12.0 - u)
                      + 0.3 * (10.6 - u) + current[b, k])
                m += dt * (am * (1.0 - m) - bm * m)
                h += dt * (ah * (1.0 - h) - bh * h)
                n += dt * (an * (1.0 - n) - bn * n)
                v += dt * dv
        return out
    return euler


def run_straightforward(current_ua: np.ndarray, dt_ms: float) -> np.ndarray:
    """V (batch, samples) from the straightforward kernel, under hhbench's thread policy
    (one thread per trace at most)."""
    import numba

    kernel = straightforward_euler()
    numba.set_num_threads(threads.numba_threads(len(current_ua)))
    return kernel(np.ascontiguousarray(current_ua, dtype=np.float64), float(dt_ms))
