"""A GPU's elementwise ceilings measured with numba-cuda: the rates the `numba-cuda`
backend's kernels are bound by, through the compiler and driver that run them.

  * exp: evaluations/s of `math.exp`, float64 and float32: each thread runs a chain of
    `CHAIN` dependent exponentials, x ← −exp(x) (bounded in [−1, 0)), on its own element,
    so the rate is the arithmetic's, not the memory's;
  * fma: fused multiply-adds/s (`cuda.fma`), float64 and float32, the same way
    (x ← x·a + b).
numba-cuda has no matrix multiply: the matmul ceilings are left out (None); the HH floor
of a GPU backend needs only exp and fma (`hhbench.floor.hh_floor_s`).
"""

from __future__ import annotations

import functools
import math
import types

import numpy as np

from hhbench.timing import TimingSettings, measure

#: dependent operations per element in one kernel
CHAIN = 64
THREADS_PER_BLOCK = 256
SETTINGS = TimingSettings(min_repeats=5, min_time_s=0.3)


def cuda_module():
    """numba.cuda, ready to compile (`hhbench.runtimes.numba_cuda.module`)."""
    from hhbench.runtimes.numba_cuda import module
    return module()


cuda = None  # numba.cuda in the kernels' copies (`_kernel`): the simulator swaps it there
_A = _B = None  # the fma's operands, typed per precision in the copies


def _exp_chain(x):
    i = cuda.grid(1)
    if i < x.shape[0]:
        v = x[i]
        for _ in range(CHAIN):
            v = -math.exp(v)
        x[i] = v


def _fma_chain(x):
    i = cuda.grid(1)
    if i < x.shape[0]:
        v = x[i]
        for _ in range(CHAIN):
            v = cuda.fma(v, _A, _B)
        x[i] = v


@functools.cache
def _kernel(op: str, precision: str):
    """The chain kernel of `op` for `precision`: a copy whose globals hold numba.cuda and
    the operands in that precision (a float64 constant would promote a float32 chain)."""
    numba_cuda = cuda_module()
    dtype = np.float64 if precision == "float64" else np.float32
    func = {"exp": _exp_chain, "fma": _fma_chain}[op]
    copy = types.FunctionType(func.__code__, dict(globals(), cuda=numba_cuda,
                                                  _A=dtype(0.999), _B=dtype(-0.001)),
                              f"{func.__name__}_{precision}")
    return numba_cuda.jit(copy)


def elementwise_rate(gpu: int, op: str, precision: str, *, n: int = 2 ** 24,
                     settings: TimingSettings = SETTINGS) -> float:
    """Evaluations/s of `op` ("exp" or "fma") in `precision` on GPU `gpu`, CHAIN per
    element over n elements, timed to the end of the kernel (synchronised)."""
    numba_cuda = cuda_module()
    dtype = np.float64 if precision == "float64" else np.float32
    kern = _kernel(op, precision)[-(-n // THREADS_PER_BLOCK), THREADS_PER_BLOCK]
    with numba_cuda.gpus[gpu]:
        x = numba_cuda.to_device(-np.linspace(0.0, 1.0, n, dtype=dtype))

        def call():
            kern(x)
            numba_cuda.synchronize()

        timed, _ = measure(call, settings)
    return n * CHAIN / timed.median_s


def measure_device_ceilings(gpu: int, *, n: int = 2 ** 24,
                            settings: TimingSettings = SETTINGS) -> dict:
    """exp and fma rates in float64 and float32 on GPU `gpu` (`hhbench.floor.Ceilings`
    fields; its matmul fields None)."""
    rate = functools.partial(elementwise_rate, gpu, n=n, settings=settings)
    return {"matmul_f32_flops": None, "matmul_f64_flops": None,
            "exp_f64_per_s": rate("exp", "float64"), "exp_f32_per_s": rate("exp", "float32"),
            "fma_f64_per_s": rate("fma", "float64"), "fma_f32_per_s": rate("fma", "float32")}
