"""The CUDA driver of the `numba-cuda` backend: every registered step kernel on an NVIDIA GPU
(numba-cuda; numba.cuda is imported only when a kernel is built, so importing this module
costs nothing).

One thread per trace, the whole time loop inside the kernel, the state (v, m, h, n) in
registers. The step is the one the CPU engine runs: `model.build_kernels` with
`numba.cuda.jit(device=True, inline="always")` as its `jit`, `math.exp`/`math.expm1` as
exp/expm1 (libdevice's) and `cuda.fma` (one rounding) as fma; the step kernel comes from
the registry `backends.kernels` ("euler", "exp-euler", "exp-midpoint", "rush-larsen").
The model's plain kernels (`rates`, the gates' exact relaxation) call `np.exp`/`np.expm1`,
which numba-cuda does not compile: their copies here see a module `np` whose exp and expm1
are math's (`_retarget`).

Layout: on the device the current and V are (samples, batch), so that at each step the
threads of a warp read and write consecutive addresses (coalesced). The host's
(batch, samples) arrays are copied as they are and transposed on the device
(`device_transpose`: a tiled kernel through shared memory, both sides coalesced, which
also casts the float64 current to float32); V is transposed back on the device and its
copy to the host is the array returned, with no host-side transpose or copy. At most two
batch × samples arrays are on the device at a time (each freed before the next is made).
V[:, 0] is the initial state and each sample's V is recorded before that sample's step,
as on the CPU.

Precision: "float64" or "float32". For float32 the kernels are built from the same Python
functions with every float constant made a float32 (`_retarget`: the model's module
constants, the functions' literal constants and the closure's numbers), so numba types all
their arithmetic float32 (a float64 literal would promote the whole expression to float64,
which a GPU runs at a fraction of the float32 rate); exp and expm1 then resolve to
libdevice's expf and expm1f. The one constant float32 cannot hold, the fused rates' TINY
(1e-300, which added to x and expm1(x) makes 0/0 at x = 0 come out 1), becomes 1e-30:
still far below float32's resolution of x (2.4e-7 near 2.5) and of expm1(x). The current
is copied as float32 and V comes back as float32.

Divergence as on the CPU: a trace whose V is non-finite or beyond ±DIVERGED_ABS_MV at a
sample is NaN from that sample on (the thread stops stepping), and its first bad sample is
returned, so the host gets per-trace flags without a second pass over V.

Entry points: `integrate_marked` is the round trip (host current in, host V out);
`DeviceRun` holds a current already copied to the device and an output there, and its
`__call__` launches the integration without copying anything back ("device only"; the
harness waits through the runtime's `synchronize`).
"""

from __future__ import annotations

import functools
import math
import types

import numpy as np

from hhbench import model
from hhbench.backends import kernels as kernel_registry
from hhbench.backends.base import DIVERGED_ABS_MV
from hhbench.errors import HHBenchError
from hhbench.runtimes.numba_cuda import simulator_enabled

#: threads per block (a multiple of the warp size; 128 keeps several blocks per SM for
#: batches of a few thousand traces)
THREADS_PER_BLOCK = 128
#: precision name -> NumPy dtype of the device arrays and the arithmetic
PRECISIONS = {"float64": np.float64, "float32": np.float32}
#: what the fused rates' TINY (1e-300) becomes in float32 (see the module docstring)
TINY_FLOAT32 = 1e-30


def check_precision(precision: str) -> type:
    """The NumPy dtype of `precision`, one of the numba-cuda runtime's `precisions` (else
    HHBenchError naming it)."""
    from hhbench.runtimes import get_runtime
    return PRECISIONS[get_runtime("cuda").check_precision(precision)]


# -- the kernels, retargeted ---------------------------------------------------------------

def _cast_constant(value, dtype):
    """A float constant as `dtype` (float64: unchanged); others unchanged."""
    if dtype is np.float64 or type(value) is not float:
        return value
    if value != 0.0 and abs(value) < float(np.finfo(np.float32).tiny):
        return np.float32(math.copysign(TINY_FLOAT32, value))
    return np.float32(value)


@functools.cache
def _device_numpy() -> types.ModuleType:
    """What `np` is to the retargeted kernels: exp and expm1 that numba-cuda compiles."""
    fake = types.ModuleType("hhbench_cuda_np")
    fake.exp, fake.expm1 = math.exp, math.expm1
    return fake


def _retarget(func, dtype):
    """`func` (a kernel from `model.build_kernels`) for the device: `np` its exp/expm1 from
    math, and for float32 every float constant it reads (module globals, literals, closure
    cells) a float32."""
    code = func.__code__
    if dtype is not np.float64:
        code = code.replace(co_consts=tuple(_cast_constant(c, dtype) for c in code.co_consts))
    names = set(code.co_names)
    glob = {k: _cast_constant(v, dtype) for k, v in func.__globals__.items() if k in names}
    glob["__builtins__"] = func.__globals__.get("__builtins__", __builtins__)
    if "np" in names:
        glob["np"] = _device_numpy()
    closure = None if func.__closure__ is None else tuple(
        types.CellType(_cast_constant(c.cell_contents, dtype)) for c in func.__closure__)
    copy = types.FunctionType(code, glob, func.__name__, func.__defaults__, closure)
    copy.__qualname__ = f"{func.__qualname__}_{np.dtype(dtype).name}"
    return copy


@functools.cache
def device_kernels(precision: str = "float64"):
    """The model's kernels as CUDA device functions (or the simulator's) for `precision`."""
    from hhbench.runtimes.numba_cuda import module
    cuda = module()  # NumPy 2.5 made compilable first

    dtype = check_precision(precision)
    device_jit = cuda.jit(device=True, inline="always")

    def jit(func):
        return device_jit(_retarget(func, dtype))

    # cuda.fma is typed only as an attribute of numba.cuda, not as a value handed around:
    # the kernels get it through a device function of their own
    fma = device_jit(types.FunctionType(_fused_multiply_add.__code__,
                                        dict(globals(), cuda=cuda), "_fused_multiply_add"))
    return model.build_kernels(jit, exp=math.exp, expm1=math.expm1, fma=fma)


def _fused_multiply_add(a, b, c):
    # a·b + c with one rounding (the simulator's cuda.fma: a * b + c)
    return cuda.fma(a, b, c)


# -- the driver ----------------------------------------------------------------------------

_step = None  # the step kernel, set in the copies `_kernel` makes
_V0 = _M0 = _H0 = _N0 = _LIMIT = _NAN = None  # typed constants, likewise
cuda = None  # numba.cuda, likewise


def _integrate_traces(current, v_out, first_bad, h_sub, substeps):
    # one thread per trace b; current and v_out are (samples, batch): the threads of a warp
    # touch consecutive addresses at every sample
    b = cuda.grid(1)
    n_samples = current.shape[0]
    if b >= current.shape[1]:
        return
    v = _V0
    m = _M0
    h = _H0
    n = _N0
    for t in range(n_samples):
        if not (abs(v) <= _LIMIT):  # non-finite or beyond the limit: NaN from here on
            first_bad[b] = t
            for k in range(t, n_samples):
                v_out[k, b] = _NAN
            return
        v_out[t, b] = v
        i = current[t, b]
        for _ in range(substeps):
            v, m, h, n = _step(v, m, h, n, i, h_sub)
    first_bad[b] = -1


@functools.cache
def kernel(kernel_name: str = "euler", precision: str = "float64"):
    """The CUDA kernel integrating every trace with step kernel `kernel_name` (compiled on
    its first launch, and cached on disk on a real GPU)."""
    from hhbench.runtimes.numba_cuda import module
    numba_cuda = module()  # NumPy 2.5 made compilable first

    from hhbench.backends.numba_cache import purge_stale_cache

    dtype = check_precision(precision)
    step = kernel_registry.get_kernel(kernel_name).build(device_kernels(precision))
    suffix = f"{kernel_name.replace('-', '_')}_{precision}"
    const = functools.partial(_cast_constant, dtype=dtype)
    func = types.FunctionType(
        _integrate_traces.__code__,
        dict(globals(), cuda=numba_cuda, _step=step, _V0=const(model.V0_MV), _M0=const(model.M0),
             _H0=const(model.H0), _N0=const(model.N0), _LIMIT=const(DIVERGED_ABS_MV),
             _NAN=const(math.nan)),
        _integrate_traces.__name__)
    func.__qualname__ = f"_integrate_traces_{suffix}"
    if simulator_enabled():
        return numba_cuda.jit(func)
    purge_stale_cache()
    return jit_cached(numba_cuda, func)


#: why numba-cuda's disk cache cannot be used here (None: not found unusable so far)
_NO_CACHE: str | None = None


def jit_cached(numba_cuda, func):
    """`numba_cuda.jit(cache=True)(func)`; where numba finds no folder to cache in (a
    read-only checkout and home: RuntimeError "no locator available"), `func` compiled
    without the cache, and every later kernel too, tried once and said once (a
    RuntimeWarning)."""
    global _NO_CACHE
    if _NO_CACHE is None:
        try:
            return numba_cuda.jit(cache=True)(func)
        except RuntimeError as exc:
            if "no locator available" not in str(exc):
                raise
            _NO_CACHE = str(exc)
            import warnings
            warnings.warn(f"numba-cuda's kernel cache is unusable here ({exc}); kernels are "
                          "compiled without it, at every process' first launch",
                          RuntimeWarning, stacklevel=2)
    return numba_cuda.jit(func)


#: the transpose's tile (TILE × TILE elements through shared memory) and its block of
#: TILE × TILE_ROWS threads, each moving TILE / TILE_ROWS elements
TILE, TILE_ROWS = 32, 8


def _transpose_tile(src, dst):
    # dst[j, i] = src[i, j]: a block reads a TILE × TILE tile of src along its rows
    # (coalesced), and writes it transposed along dst's rows (coalesced); the +1 column
    # keeps the threads of a warp on distinct shared-memory banks
    tile = cuda.shared.array(shape=_SHAPE, dtype=_DTYPE)  # (TILE, TILE + 1)
    row0 = cuda.blockIdx.x * _TILE
    col0 = cuda.blockIdx.y * _TILE
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    rows = src.shape[0]
    cols = src.shape[1]
    for k in range(0, _TILE, _TILE_ROWS):
        r = row0 + ty + k
        c = col0 + tx
        if r < rows and c < cols:
            tile[ty + k, tx] = src[r, c]
    cuda.syncthreads()
    for k in range(0, _TILE, _TILE_ROWS):
        r = col0 + ty + k  # a row of dst: a column of src
        c = row0 + tx
        if r < cols and c < rows:
            dst[r, c] = tile[tx, ty + k]


_TILE = _TILE_ROWS = _SHAPE = _DTYPE = None  # set in the copies `_transpose_kernel` makes


@functools.cache
def _transpose_kernel(precision: str):
    """The tiled transpose into a `precision` array (the source may be float64)."""
    from hhbench.runtimes.numba_cuda import module
    numba_cuda = module()  # NumPy 2.5 made compilable first
    from numba import float32, float64

    func = types.FunctionType(
        _transpose_tile.__code__,
        dict(globals(), cuda=numba_cuda, _TILE=TILE, _TILE_ROWS=TILE_ROWS,
             _SHAPE=(TILE, TILE + 1),
             _DTYPE=float64 if precision == "float64" else float32),
        _transpose_tile.__name__)
    func.__qualname__ = f"_transpose_tile_{precision}"
    return numba_cuda.jit(func) if simulator_enabled() else jit_cached(numba_cuda, func)


def device_transpose(d_src, precision: str = "float64", tiled: bool | None = None):
    """A new device array (cols, rows) in `precision`: the transpose of the device array
    `d_src` (rows, cols), made on the device (asynchronous) by the tiled kernel. Under the
    simulator (`tiled` None) NumPy stands in for it: the simulator runs the kernel's 256
    threads a block as Python threads, seconds for a few thousand elements; the kernel
    itself is tested there with `tiled=True`."""
    from hhbench.runtimes.numba_cuda import module
    cuda = module()  # NumPy 2.5 made compilable first

    dtype = check_precision(precision)
    rows, cols = d_src.shape
    if tiled is None:
        tiled = not simulator_enabled()
    if not tiled:
        return cuda.to_device(np.ascontiguousarray(d_src.copy_to_host().T, dtype=dtype))
    d_dst = cuda.device_array((cols, rows), dtype=dtype)
    if rows and cols:
        # rows on the grid's x (up to 2³¹ − 1 tiles), columns on y (up to 65,535 tiles)
        grid = (-(-rows // TILE), -(-cols // TILE))
        if grid[1] > 65535:
            raise HHBenchError(f"numba-cuda transposes at most {65535 * TILE:,} traces or "
                               f"samples a call on the device, not {cols:,}")
        _transpose_kernel(precision)[grid, (TILE, TILE_ROWS)](d_src, d_dst)
    return d_dst


def _to_device_transposed(current: np.ndarray, precision: str):
    """The host current (batch, samples) as a device array (samples, batch) in `precision`:
    copied as it is, transposed (and cast) on the device."""
    from hhbench.runtimes.numba_cuda import module
    cuda = module()  # NumPy 2.5 made compilable first

    d_in = cuda.to_device(np.ascontiguousarray(current))
    d_current = device_transpose(d_in, precision)
    del d_in  # freed before V's buffer is made: two arrays at a time
    return d_current


def _v_to_host(d_v, precision: str) -> np.ndarray:
    """V (samples, batch) on the device as a host (batch, samples) array: transposed on
    the device, then one copy (the array copied is the one returned)."""
    d_vt = device_transpose(d_v, precision)
    return d_vt.copy_to_host()


def _blocks(batch: int) -> int:
    return -(-batch // THREADS_PER_BLOCK)


def _gpu_context(gpu: int):
    from hhbench.runtimes.numba_cuda import module
    cuda = module()  # NumPy 2.5 made compilable first
    return cuda.gpus[gpu]


def launch(d_current, d_v, d_first_bad, dt_ms: float, kernel_name: str = "euler",
           precision: str = "float64", substeps: int = 1) -> None:
    """Launch the integration of a device current (samples, batch) into d_v (the same shape
    and dtype) and d_first_bad (int64, batch); asynchronous (the caller synchronises)."""
    batch = d_current.shape[1]
    if batch == 0 or d_current.shape[0] == 0:
        return
    dtype = check_precision(precision)
    kern = kernel(kernel_name, precision)
    kern[_blocks(batch), THREADS_PER_BLOCK](d_current, d_v, d_first_bad,
                                            dtype(dt_ms / substeps), int(substeps))


def integrate_marked(current_ua: np.ndarray, dt_ms: float, kernel_name: str = "euler",
                     precision: str = "float64", substeps: int = 1, gpu: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """V (batch, samples) in mV on the host (float64 or float32 as `precision`) and the
    diverged traces (bool, batch), from a host current (batch, samples): the round trip
    (copy in, integrate, copy out). A diverged trace is NaN from its first bad sample on."""
    from hhbench.runtimes.numba_cuda import module
    cuda = module()  # NumPy 2.5 made compilable first

    dtype = check_precision(precision)
    current = np.asarray(current_ua)
    batch, n_samples = current.shape
    if not (batch and n_samples):
        return np.empty((batch, n_samples), dtype), np.zeros(batch, dtype=bool)
    with _gpu_context(gpu):
        # (samples, batch) on the device: coalesced loads and stores
        d_current = _to_device_transposed(current, precision)
        d_v = cuda.device_array((n_samples, batch), dtype=dtype)
        d_first_bad = cuda.device_array(batch, dtype=np.int64)
        launch(d_current, d_v, d_first_bad, dt_ms, kernel_name, precision, substeps)
        del d_current
        v = _v_to_host(d_v, precision)
        first_bad = d_first_bad.copy_to_host()
    return v, first_bad >= 0


class DeviceRun:
    """A current already copied to the device and V's buffer there; calling it launches the
    integration (asynchronous: the caller waits through the runtime,
    `hhbench.runtimes.numba_cuda`'s `synchronize`), copying nothing back: the "device
    only" time. `result()` copies V (batch, samples) and the diverged flags back."""

    def __init__(self, current_ua: np.ndarray, dt_ms: float, kernel_name: str = "euler",
                 precision: str = "float64", substeps: int = 1, gpu: int = 0):
        from hhbench.runtimes.numba_cuda import module
        cuda = module()  # NumPy 2.5 made compilable first

        dtype = check_precision(precision)
        current = np.asarray(current_ua)
        self.batch, self.n_samples = current.shape
        self.dt_ms, self.kernel_name, self.precision = float(dt_ms), kernel_name, precision
        self.substeps, self.gpu = int(substeps), int(gpu)
        with _gpu_context(self.gpu):
            self.d_current = (_to_device_transposed(current, precision)
                              if self.batch and self.n_samples else
                              cuda.device_array((self.n_samples, self.batch), dtype=dtype))
            self.d_v = cuda.device_array((self.n_samples, self.batch), dtype=dtype)
            self.d_first_bad = cuda.device_array(self.batch, dtype=np.int64)
        # the configured kernel and its arguments, made once: a call is a launch (its type
        # dispatch included)
        self._empty = self.batch == 0 or self.n_samples == 0
        self._kernel = (None if self._empty else
                        kernel(kernel_name, precision)[_blocks(self.batch), THREADS_PER_BLOCK])
        self._args = (self.d_current, self.d_v, self.d_first_bad,
                      dtype(self.dt_ms / self.substeps), self.substeps)

    def __call__(self) -> None:
        with _gpu_context(self.gpu):
            if not self._empty:
                self._kernel(*self._args)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        with _gpu_context(self.gpu):
            if self._empty:
                return (np.empty((self.batch, self.n_samples), self.d_v.dtype),
                        np.zeros(self.batch, dtype=bool))
            v = _v_to_host(self.d_v, self.precision)
            first_bad = self.d_first_bad.copy_to_host()
        return v, first_bad >= 0


def compile_kernel(kernel_name: str = "euler", precision: str = "float64", gpu: int = 0) -> None:
    """Compile (or load from the cache) one kernel for one precision, by a launch on one
    trace of two samples."""
    integrate_marked(np.zeros((1, 2)), 0.05, kernel_name, precision, 1, gpu)


def device_name(gpu: int = 0) -> str:
    """The GPU's name ("CUDA simulator" under the simulator)."""
    if simulator_enabled():
        return "CUDA simulator"
    from hhbench.runtimes.numba_cuda import module
    cuda = module()  # NumPy 2.5 made compilable first
    with _gpu_context(gpu):
        name = cuda.get_current_device().name
    return name.decode() if isinstance(name, bytes) else str(name)


__all__ = ["THREADS_PER_BLOCK", "PRECISIONS", "DeviceRun", "integrate_marked", "launch",
           "device_transpose", "jit_cached",
           "kernel", "device_kernels", "compile_kernel", "device_name", "simulator_enabled"]
