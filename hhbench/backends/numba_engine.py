"""The compiled engine shared by the numba-based backends (numba is imported only here).

`integrate(current, dt_ms, method, substeps, gates)` runs one of the model's step kernels
(`model.build_kernels` compiled with `numba.njit`) over a (batch, samples) current,
in parallel over the batch. The current is held constant over each sample interval; with
`substeps` > 1 each interval is split into that many equal steps. A trace that goes
non-finite stops there (NaN afterwards) instead of burning time on NaNs.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import ClassVar

import numpy as np

from hhbench import model, threads
from hhbench.backends.base import DIVERGED_ABS_MV, Backend, check_substeps

EULER, RUSH_LARSEN, EXP_MIDPOINT = 0, 1, 2


def _purge_stale_cache() -> None:
    """Drop numba's on-disk cache when model.py or this file changed.

    numba checks only the timestamp of the cached function's own file, but `drive` inlines
    the kernels of model.py: an edit there would otherwise run stale machine code.
    """
    sources = [Path(model.__file__), Path(__file__)]
    stamp = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()
    stamp_file = Path(__file__).parent / "__pycache__" / "hhbench-numba.stamp"
    try:
        if stamp_file.exists() and stamp_file.read_text() == stamp:
            return
        for src in sources:
            for cached in (src.parent / "__pycache__").glob(f"{src.stem}.*.nb[ci]"):
                cached.unlink(missing_ok=True)
        stamp_file.parent.mkdir(exist_ok=True)
        stamp_file.write_text(stamp)
    except OSError:  # a read-only install: numba falls back to its own cache locations
        pass


# the step kernels, set by _compiled(); module globals (not closure cells) so that numba's
# on-disk cache of `_drive` is found again by the next process (closure contents are part
# of numba's cache key and do not pickle the same way twice)
_euler = _rush_larsen = _exp_midpoint = None


def _drive(current, dt, method, substeps, want_gates):
    batch, n_samples = current.shape
    v_out = np.full((batch, n_samples), np.nan)
    g_rows = batch if want_gates else 0
    g_out = np.full((3, g_rows, n_samples if want_gates else 0), np.nan)
    h_sub = dt / substeps
    for b in prange(batch):
        v, m, h, n = model.V0_MV, model.M0, model.H0, model.N0
        for k in range(n_samples):
            if not np.isfinite(v) or abs(v) > DIVERGED_ABS_MV:
                break
            v_out[b, k] = v
            if want_gates:
                g_out[0, b, k] = m
                g_out[1, b, k] = h
                g_out[2, b, k] = n
            i = current[b, k]
            for _ in range(substeps):
                if method == EULER:
                    v, m, h, n = _euler(v, m, h, n, i, h_sub)
                elif method == RUSH_LARSEN:
                    v, m, h, n = _rush_larsen(v, m, h, n, i, h_sub)
                else:
                    v, m, h, n = _exp_midpoint(v, m, h, n, i, h_sub)
    return v_out, g_out


prange = range  # replaced by numba.prange when compiled


@functools.cache
def _compiled():
    global _euler, _rush_larsen, _exp_midpoint, prange
    threads.apply()  # before numba's pool starts: see hhbench.threads
    import numba

    _purge_stale_cache()
    kern = model.build_kernels(numba.njit)
    _euler, _rush_larsen, _exp_midpoint = (kern.euler_step, kern.rush_larsen_step,
                                           kern.exp_midpoint_step)
    prange = numba.prange
    return numba.njit(cache=True, parallel=True)(_drive)


@functools.cache
def compile_engine() -> None:
    """Compile (or load from numba's cache) the engine for float64 inputs, once per process."""
    integrate(np.zeros((1, 2)), 0.05, EULER, 1, True)


def integrate(current_ua: np.ndarray, dt_ms: float, method: int, substeps: int = 1,
              gates: bool = False) -> tuple[np.ndarray, dict | None]:
    import numba

    drive = _compiled()
    numba.set_num_threads(threads.numba_threads(len(current_ua)))  # policy: hhbench.threads
    v, g = drive(np.ascontiguousarray(current_ua, dtype=np.float64), float(dt_ms),
                 int(method), int(substeps), bool(gates))
    return v, ({"m": g[0], "h": g[1], "n": g[2]} if gates else None)


def thread_count() -> int:
    """Threads available to the engine (a call uses at most one per trace)."""
    import numba
    return numba.config.NUMBA_NUM_THREADS


class EngineBackend(Backend):
    """A backend that runs one step kernel of this engine (`method`), parallel over the
    batch; `substeps` > 1 splits each sample interval into that many steps."""

    method: ClassVar[int]
    requires = ("numba",)

    def __init__(self, *, substeps: int = 1):
        self.substeps = check_substeps(substeps)

    def prepare(self):
        compile_engine()

    def settings(self):
        return {"threads": thread_count(), "substeps": self.substeps}

    def _integrate(self, current_ua, dt_ms, gates):
        return integrate(current_ua, dt_ms, self.method, self.substeps, gates)
