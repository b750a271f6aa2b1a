"""The compiled CPU engine shared by the numba-based backends (numba is imported only here,
in `backends.compiled` and in the other compiled drivers: `odeint_rhs`, the right-hand side
odeint calls, and `cuda_engine`, the GPU driver; `numba_cache` keeps numba's on-disk cache
of all of them in step with the sources they inline).

`integrate(current, dt_ms, kernel, substeps, gates)` runs one registered step kernel
(`backends.kernels`, e.g. "euler", "exp-euler", "exp-midpoint") over a (batch, samples)
current. The current is held constant over each sample interval; with `substeps` > 1 each
interval is split into that many equal steps.

Why it is fast:
  * time outer, traces inner: the batch is cut into chunks of up to `LANES` traces, whose
    states live in small contiguous arrays; the innermost loop applies the step to every
    trace of the chunk, so LLVM turns it into SIMD code (8 traces per AVX-512 instruction).
    For that the step must be branch-free and call no libm function: the kernels use the
    model's fused rates and `compiled.vector_exp` (exp, expm1), and are compiled with numba's
    `error_model="numpy"` (no zero-division check, which would be a branch).
  * the chunks run in parallel (`prange`), but a call of one chunk runs it on the calling
    thread without starting a parallel region. A batch of one is one chunk of one lane,
    run with the state in registers (`_advance_lone`), and with its step's four rate
    exponentials as one 4-wide SIMD evaluation (`_step_one`; same bits as the scalar
    ones). A chunk of more than one trace is padded to a multiple of MIN_LANES lanes (the
    loop over lanes then has no scalar remainder: a chunk of 2-7 traces would otherwise
    run unvectorised), and a few traces go one per chunk when each thread gets at most
    two (`chunk_lanes`).
  * time is processed in blocks of `BLOCK` samples: the chunk's current for a block is
    copied (transposed) into a contiguous buffer, and V (and the gates, only when asked
    for) go to block buffers that are copied out afterwards (a lone trace reads its
    current and writes its V in place). Divergence is counted per block, not tested per
    step: while the block is copied out (a lone trace: as it steps, off its dependency
    chain). A diverged trace's first bad sample (non-finite or beyond ±1e4 mV) is then
    found in that block, a chunk whose traces have all diverged stops, and the driver
    sets each diverged trace NaN from that sample and returns the flags. So the
    backends' results need no second pass over V to find divergence (`integrate_marked`).
"""

from __future__ import annotations

import functools
import time
import types
from pathlib import Path
from typing import ClassVar

import numpy as np

from hhbench import interrupts, model, threads
from hhbench.backends import kernels as kernel_registry
from hhbench.backends.base import DIVERGED_ABS_MV, Backend, check_substeps
from hhbench.backends.numba_cache import purge_stale_cache

#: traces per chunk (a multiple of every SIMD width; small enough that a chunk's block
#: buffers stay in the L1 cache)
LANES = 32
#: fewest traces per chunk when a batch is split over threads (one AVX-512 register)
MIN_LANES = 8
#: samples per block (divergence is checked once per block)
BLOCK = 256


prange = range    # replaced by numba.prange when compiled
_step = None      # the step kernel (scalar exponentials: the loop over traces vectorises),
_step_one = None  # the same for a lone trace (its four rate exponentials as one 4-wide
                  # SIMD evaluation, same bits),
_advance = None   # the block loops compiled around them (`_advance_block`,
_advance_one = None  # `_advance_lone`), and
_chunk = None     # a chunk's integration around those: each driver is a copy of `_drive`,
                  # `_run_chunk`, `_advance_block` and `_advance_lone` with these globals
                  # set (see `driver_function`)


def _advance_block(state, nxt, cur, v_blk, g_blk, kn, nb, substeps, h_sub, want_gates):
    """Advance the nb traces of a chunk over kn samples; record V (and gates) before each.

    state/nxt: (4, nb) states (v, m, h, n by rows); each step reads one and writes the
    other, then the two swap (distinct arrays keep LLVM's alias check before the SIMD loop
    short). Returns the arrays in their new roles. A function of its own, so that LLVM
    optimises this loop nest apart from the driver's bookkeeping.
    """
    for t in range(kn):
        for j in range(nb):
            v_blk[t, j] = state[0, j]
        if want_gates:
            for j in range(nb):
                g_blk[0, t, j] = state[1, j]
                g_blk[1, t, j] = state[2, j]
                g_blk[2, t, j] = state[3, j]
        for _ in range(substeps):
            for j in range(nb):  # the SIMD loop: one step of every trace of the chunk
                vj, mj, hj, nj = _step(state[0, j], state[1, j], state[2, j], state[3, j],
                                       cur[t, j], h_sub)
                nxt[0, j] = vj
                nxt[1, j] = mj
                nxt[2, j] = hj
                nxt[3, j] = nj
            state, nxt = nxt, state
    return state, nxt


def _advance_lone(state, cur, v, g_blk, kn, substeps, h_sub, want_gates):
    """Advance a lone trace over kn samples, its state (4, 1) in registers meanwhile; record
    V in v (kn,) (and the gates in g_blk) before each sample. Returns how many recorded V
    are non-finite or beyond the limit: counted as the steps go, where it costs nothing
    (a lone trace's steps form one dependent chain, which leaves the core idle enough)."""
    v_t, m, h, n = state[0, 0], state[1, 0], state[2, 0], state[3, 0]
    n_bad = 0
    for t in range(kn):
        v[t] = v_t
        n_bad += not (abs(v_t) <= DIVERGED_ABS_MV)
        if want_gates:
            g_blk[0, t, 0] = m
            g_blk[1, t, 0] = h
            g_blk[2, t, 0] = n
        i = cur[t]
        for _ in range(substeps):
            v_t, m, h, n = _step_one(v_t, m, h, n, i, h_sub)
    state[0, 0], state[1, 0], state[2, 0], state[3, 0] = v_t, m, h, n
    return n_bad


def _run_chunk(c, current, lanes, substeps, h_sub, want_gates, v_out, g_out, first_bad,
               init, final):
    """Integrate chunk `c` (traces c·lanes … c·lanes + lanes − 1) into v_out (and g_out);
    a diverged trace gets its first bad sample in first_bad, and NaN from there on.
    init (4, batch): the states (v, m, h, n) to start from, or (4, 0) for the model's
    initial state; final (4, batch): receives the states after the last sample (NaN for a
    diverged trace), or (4, 0) for none: a trace integrated in pieces of samples."""
    batch, n_samples = current.shape
    b0 = c * lanes
    nb = min(lanes, batch - b0)
    # SIMD lanes: the chunk padded to a whole number of MIN_LANES, so that the loop over
    # lanes has no scalar remainder (a chunk of 3 traces would otherwise run unvectorised,
    # at ~3 times the cost per trace); padding lanes rest at zero current, unread. A lone
    # trace reads its current and writes its V in place: it needs no block buffers.
    width = nb if nb == 1 else -(-nb // MIN_LANES) * MIN_LANES
    state = np.empty((4, width))
    nxt = np.empty((4, width))
    state[0, :] = model.V0_MV
    state[1, :] = model.M0
    state[2, :] = model.H0
    state[3, :] = model.N0
    if init.shape[1] > 0:
        for j in range(nb):
            for k in range(4):
                state[k, j] = init[k, b0 + j]
    cur = np.zeros((BLOCK if width > 1 else 0, width))
    v_blk = np.empty((BLOCK if width > 1 else 0, width))
    g_blk = np.empty((3, BLOCK if want_gates else 0, width))
    n_bad = np.zeros(nb, dtype=np.int64)  # per trace, in the current block
    n_dead = 0
    for k0 in range(0, n_samples, BLOCK):
        kn = min(BLOCK, n_samples - k0)
        if n_dead == nb:  # every trace of the chunk diverged: nothing left to compute
            break
        if width == 1:
            n_bad[0] = _advance_one(state, current[b0, k0:k0 + kn], v_out[b0, k0:k0 + kn],
                                    g_blk, kn, substeps, h_sub, want_gates)
        else:
            for j in range(nb):
                for t in range(kn):
                    cur[t, j] = current[b0 + j, k0 + t]
            state, nxt = _advance(state, nxt, cur, v_blk, g_blk, kn, width, substeps, h_sub,
                                  want_gates)
            for j in range(nb):
                # copy out, counting samples that are non-finite or beyond the limit: a
                # count (not a branch) keeps this loop vectorisable
                count = 0
                for t in range(kn):
                    vt = v_blk[t, j]
                    v_out[b0 + j, k0 + t] = vt
                    count += not (abs(vt) <= DIVERGED_ABS_MV)
                n_bad[j] = count
        for j in range(nb):
            b = b0 + j
            if want_gates:
                for t in range(kn):
                    g_out[0, b, k0 + t] = g_blk[0, t, j]
                    g_out[1, b, k0 + t] = g_blk[1, t, j]
                    g_out[2, b, k0 + t] = g_blk[2, t, j]
            if n_bad[j] > 0 and first_bad[b] < 0:
                n_dead += 1
                for t in range(kn):  # rare: find where this trace went bad
                    if not (abs(v_out[b, k0 + t]) <= DIVERGED_ABS_MV):
                        first_bad[b] = k0 + t
                        break
    for b in range(b0, b0 + nb):  # past its first bad sample a trace is NaN
        if first_bad[b] >= 0:
            v_out[b, first_bad[b]:] = np.nan
            if want_gates:
                g_out[:, b, first_bad[b]:] = np.nan
    if final.shape[1] > 0:
        for j in range(nb):
            for k in range(4):
                final[k, b0 + j] = np.nan if first_bad[b0 + j] >= 0 else state[k, j]


def _drive(current, dt, substeps, want_gates, lanes, init, final):
    # compiled with parallel=True: every loop below but the prange is a plain loop, since
    # numba turns array expressions (first_bad >= 0) and np.full into parallel regions
    batch, n_samples = current.shape
    v_out = np.empty((batch, n_samples))
    g_out = np.empty((3, batch if want_gates else 0, n_samples if want_gates else 0))
    h_sub = dt / substeps
    first_bad = np.empty(batch, dtype=np.int64)
    for b in range(batch):
        first_bad[b] = -1
    n_chunks = (batch + lanes - 1) // lanes
    if n_chunks == 1:  # a lone trace, a small batch: no parallel region to start (~1.5 µs)
        _chunk(0, current, lanes, substeps, h_sub, want_gates, v_out, g_out, first_bad, init,
               final)
    else:
        for c in prange(n_chunks):
            _chunk(c, current, lanes, substeps, h_sub, want_gates, v_out, g_out, first_bad,
                   init, final)
    diverged = np.empty(batch, dtype=np.bool_)
    for b in range(batch):
        diverged[b] = first_bad[b] >= 0
    return v_out, g_out, diverged


def jit_options() -> dict:
    """numba options of the kernels and drivers: numpy's error model, so that a division
    gives inf/NaN instead of testing for a zero divisor (a branch that stops SIMD)."""
    return {"error_model": "numpy"}


@functools.cache
def _compiled_kernels(one_trace: bool = False):
    """The model's kernels compiled for the engine; `one_trace`: with the fused rates' four
    exponentials evaluated together in one 4-wide SIMD instruction stream (for the lone
    trace's register path; bit for bit the scalar ones)."""
    threads.apply()  # before numba's pool starts: see hhbench.threads
    import numba

    from hhbench.backends.compiled.vector_exp import exp, expm1, fma

    purge_stale_cache()
    # inline="always": numba inlines the kernels into the driver itself, so LLVM sees one
    # loop body it can vectorise (a call to a separately compiled kernel stays a call)
    return model.build_kernels(numba.njit(inline="always", **jit_options()), exp=exp,
                               expm1=expm1, fma=fma,
                               rate_exponentials=_rate_exponentials4() if one_trace else None)


@functools.cache
def _rate_exponentials4():
    """The fused rates' `rate_exponentials` as one 4-wide SIMD evaluation (same bits)."""
    from hhbench.backends.compiled.vector_exp import affine_exponentials4
    return affine_exponentials4(model.RATE_EXPONENT_OFFSETS, model.RATE_EXPONENT_SLOPES,
                                tiny=model.TINY)


def driver_function(kernel_name: str):
    """The Python function that the driver of one step kernel compiles from.

    Each kernel gets its own copies of `_drive`, `_run_chunk`, `_advance_block` and
    `_advance_lone` whose globals hold that kernel as `_step` (and `_step_one`, its
    lone-trace build):
    numba treats a global function as a compile-time constant, so the step is inlined, and
    the copy's distinct `__qualname__` gives it its own cache entry. (A closure or a function
    argument would also work, but their contents are part of numba's cache key and do not
    pickle the same way twice, so the cache would never be found again.)
    """
    import numba

    kernel = kernel_registry.get_kernel(kernel_name)
    suffix = kernel_name.replace("-", "_")
    njit = numba.njit(**jit_options())
    advance = njit(_copy_function(_advance_block, f"_advance_block_{suffix}",
                                  _step=kernel.build(_compiled_kernels())))
    advance_one = njit(_copy_function(_advance_lone, f"_advance_lone_{suffix}",
                                      _step_one=kernel.build(_compiled_kernels(one_trace=True))))
    chunk = njit(_copy_function(_run_chunk, f"_run_chunk_{suffix}", _advance=advance,
                                _advance_one=advance_one))
    return _copy_function(_drive, driver_qualname(kernel_name), prange=numba.prange,
                          _chunk=chunk)


def driver_qualname(kernel_name: str) -> str:
    """The name one kernel's driver compiles and is cached under ("_drive_exp_euler")."""
    return f"_drive_{kernel_name.replace('-', '_')}"


def _copy_function(func, qualname: str, **module_globals):
    """`func` with its module's globals updated by `module_globals`, named `qualname` (used
    by `odeint_rhs` and `cuda_engine` too: each copy sees the globals of its own module)."""
    copy = types.FunctionType(func.__code__, dict(func.__globals__, **module_globals),
                              func.__name__)
    copy.__qualname__ = qualname
    return copy


@functools.cache
def _driver(kernel_name: str):
    """The compiled driver of one step kernel, loaded from numba's on-disk cache if there."""
    import numba
    return numba.njit(cache=True, parallel=True, **jit_options())(driver_function(kernel_name))


@functools.cache
def compile_engine(kernel_name: str = "euler") -> None:
    """Compile (or load from numba's cache) one kernel's driver for float64, once per process."""
    integrate(np.zeros((1, 2)), 0.05, kernel_name, 1, True)


class CompilesDriver:
    """For a backend whose set-up compiles the driver of step kernel `kernel`: its
    `Backend.compile_ahead` ("numba:KERNEL" while numba's on-disk cache lacks that driver)
    and `compile_now` (the driver compiled under the timed processes' thread policy: numba
    reads the threading layer at its first parallel compile)."""

    kernel: ClassVar[str]

    @classmethod
    def compile_ahead(cls, options=None) -> str | None:
        from hhbench.backends.numba_cache import function_cached
        cached = function_cached(Path(__file__), driver_qualname(cls.kernel))
        return None if cached else f"numba:{cls.kernel}"

    @classmethod
    def compile_now(cls, options=None) -> None:
        threads.apply()
        compile_engine(cls.kernel)


def call_threads(batch: int) -> int:
    """Threads a call over `batch` traces uses: the chunks are the parallel work items, so at
    most one thread per chunk (a batch of one runs on the calling thread alone); the pool
    size and policy are hhbench.threads'."""
    return _call_plan(batch)[1]


@functools.cache
def _call_plan(batch: int) -> tuple[int, int]:
    """(traces per chunk, threads) of a call over `batch` traces; numba's pool size is fixed
    for the process, so this is worked out once per batch size (a one-trace call is ~60 µs,
    and this bookkeeping took ~2 µs of it)."""
    import numba
    lanes = chunk_lanes(batch, numba.config.NUMBA_NUM_THREADS)
    return lanes, threads.numba_threads(-(-batch // lanes))


def integrate(current_ua: np.ndarray, dt_ms: float, kernel: str = "euler", substeps: int = 1,
              gates: bool = False) -> tuple[np.ndarray, dict | None]:
    """V (batch, samples) in mV, and the gates {"m", "h", "n"} if asked for, from step
    kernel `kernel` with `substeps` steps per sample interval; V[:, 0] is the initial state.
    A trace that went non-finite or beyond ±1e4 mV is NaN from that sample on (V and gates).
    """
    v, g, _ = integrate_marked(current_ua, dt_ms, kernel, substeps, gates)
    return v, g


#: seconds of compiled work per call while `hhbench.interrupts` handles Ctrl-C (the
#: command line): a longer integration is cut into pieces of samples of about this length,
#: so that Ctrl-C takes effect within about this long
SLICE_S = 0.25
#: "no state given" / "no state wanted": the driver starts from the model's initial state
_NO_STATE = np.empty((4, 0))


def integrate_marked(current_ua: np.ndarray, dt_ms: float, kernel: str = "euler",
                     substeps: int = 1, gates: bool = False
                     ) -> tuple[np.ndarray, dict | None, np.ndarray]:
    """`integrate`, and the diverged traces (bool, batch): the driver finds them as it goes
    and sets them NaN itself, so no second pass over V is needed (`base.mark_divergence`'s
    job for the other backends).

    Where `hhbench.interrupts` is installed, the samples are integrated in pieces of about
    `SLICE_S` seconds each (sized from the first piece's time), each piece starting from
    the state the last one ended in, between which an interrupt is raised: the same steps
    in the same order, so the same numbers. Elsewhere (the timing workers) it is one
    call."""
    current = np.ascontiguousarray(current_ua, dtype=np.float64)
    if current.shape[1] < 2 or not interrupts.installed():
        v, g, diverged = _drive_once(current, dt_ms, kernel, substeps, gates)
    else:
        v, g, diverged = _drive_sliced(current, dt_ms, kernel, substeps, gates)
    return v, ({"m": g[0], "h": g[1], "n": g[2]} if gates else None), diverged


def _drive_once(current: np.ndarray, dt_ms: float, kernel: str, substeps: int, gates: bool,
                init: np.ndarray = _NO_STATE, final: np.ndarray = _NO_STATE):
    lanes, n_threads = _call_plan(len(current))
    if len(current) > lanes:  # more than one chunk: the parallel region's threads
        import numba
        numba.set_num_threads(n_threads)
    # one type for the current: numba types a read-only array (a stimulus' current) apart
    # from a writable one and would compile the whole driver, seconds, once for each
    current = current.view()
    current.flags.writeable = False
    interrupts.enter()  # Ctrl-C meanwhile is raised when the driver returns
    try:
        return _driver(kernel)(current, float(dt_ms), int(substeps), bool(gates), lanes,
                               init, final)
    finally:
        interrupts.leave()


def _drive_sliced(current: np.ndarray, dt_ms: float, kernel: str, substeps: int,
                  gates: bool):
    """`_drive_once` over pieces of the samples of about `SLICE_S` seconds each, every
    piece starting from the states (v, m, h, n) the one before ended in: the first piece
    2 samples, the others sized from its time per sample."""
    batch, n_samples = current.shape
    pieces, start, size = [], 0, 2
    state = _NO_STATE
    while start < n_samples:
        stop = min(n_samples, start + size)
        final = np.empty((4, batch))
        began = time.perf_counter()
        pieces.append(_drive_once(np.ascontiguousarray(current[:, start:stop]), dt_ms,
                                  kernel, substeps, gates, state, final))
        per_sample = (time.perf_counter() - began) / (stop - start)
        size = max(1, int(SLICE_S / max(per_sample, 1e-12)))
        state, start = final, stop
    if len(pieces) == 1:
        return pieces[0]
    v = np.concatenate([p[0] for p in pieces], axis=1)
    g = np.concatenate([p[1] for p in pieces], axis=2)
    return v, g, np.logical_or.reduce([p[2] for p in pieces])


def chunk_lanes(batch: int, threads: int) -> int:
    """Traces per chunk: LANES, fewer when that leaves threads idle (but not below MIN_LANES,
    where SIMD registers would go part empty), and the whole batch when it is smaller.
    Except for a few traces: when one trace per chunk gives each thread at most two, each
    trace runs alone in registers (~a third of the cost of a SIMD chunk of MIN_LANES lanes,
    which a chunk of 2-7 traces is padded to), and the threads share them."""
    threads = max(1, threads)
    if -(-batch // threads) <= 2:
        return 1
    return max(1, min(batch, LANES, max(MIN_LANES, -(-batch // threads))))


def thread_count() -> int:
    """Threads available to the engine (a call uses at most one per chunk of LANES traces)."""
    import numba
    return numba.config.NUMBA_NUM_THREADS


class EngineBackend(CompilesDriver, Backend):
    """A backend that runs one registered step kernel (`kernel`) of this engine, parallel over
    chunks of the batch; `substeps` > 1 splits each sample interval into that many steps."""

    kernel: ClassVar[str]
    requires = ("numba",)

    def __init__(self, *, substeps: int = 1):
        self.substeps = check_substeps(substeps)

    def prepare(self):
        compile_engine(self.kernel)

    def settings(self):
        return {"threads": thread_count(), "substeps": self.substeps, "kernel": self.kernel,
                "lanes": LANES}

    def call_settings(self, batch):
        # the threads such a call runs on (numba's count is process state, and a call of
        # one chunk, a lone trace, leaves it as it was)
        return {**self.settings(), "call_threads": call_threads(batch)}

    def run(self, stimulus, *, gates=False):
        self.prepare()
        v, gate_arrays, diverged = integrate_marked(stimulus.current_ua, stimulus.dt_ms,
                                                    self.kernel, self.substeps, gates)
        return self._result(stimulus, v, stimulus.t_ms, 0, gate_arrays, diverged=diverged)
