"""An exponential that LLVM can vectorise, for the compiled step kernels (numba only here).

pip's llvmlite has no SVML, so a loop that calls `math.exp` / `np.exp` stays scalar: every
call goes to libm. `exp` below is plain arithmetic, inlined into the caller, so a loop over
independent traces becomes SIMD code (checked in the tests with `inspect_asm`).

Numerics (double precision, within ~1 ulp of the correctly rounded value):
  * range reduction x = n·ln2 + r with |r| ≤ ln2/2: n is rounded with the 1.5·2^52 shifter
    (no float→int conversion on the critical path), r by Cody-Waite with ln2 split in a
    high part of 32 significant bits (n·LN2_HI is exact) and a low part;
  * e^r by its Taylor polynomial of degree 13, evaluated by Estrin's scheme with fused
    multiply-adds (`fma`, llvm.fmuladd: one instruction and one rounding on FMA hardware;
    numba never fuses a multiply and an add by itself): the truncation error |r|^14/14! < 5e-18 is
    far below half an ulp;
  * 2^n is applied as two factors 2^(n//2)·2^(n−n//2) built from exponent bits, so results
    down to the subnormals and up to overflow (x > 709.78 gives inf) come out right
    without a branch. x is clamped to [−746, 710] first (beyond it the result is 0 or inf
    anyway) and a NaN argument is returned unchanged.
"""

from __future__ import annotations

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_SHIFTER = 6755399441055744.0  # 1.5 * 2**52: x + SHIFTER rounds x to an integer in the low bits
_INV_LN2 = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # ln2 to 32 significant bits: n * LN2_HI is exact for |n| < 2**21
_LN2_LO = 1.9082149292705877e-10  # ln2 - LN2_HI
_SHIFTER_BITS = 0x4338000000000000  # the bit pattern of SHIFTER


@intrinsic
def _float_bits(typingctx, x):
    """The IEEE-754 bit pattern of a float64, as an int64 (a free bitcast)."""
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def _bits_float(typingctx, bits):
    """The float64 whose IEEE-754 bit pattern is `bits` (a free bitcast)."""
    if bits != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@intrinsic
def fma(typingctx, a, b, c):
    """a*b + c as llvm.fmuladd: one fused multiply-add (one rounding) where the CPU has FMA
    (x86 since Haswell / Zen), a multiply and an add elsewhere (never a slow libm call)."""
    if not (a == b == c == types.float64):
        return None

    def codegen(context, builder, signature, args):
        double = ir.DoubleType()
        fnty = ir.FunctionType(double, [double, double, double])
        return builder.call(cgutils.get_or_insert_function(builder.module, fnty,
                                                           "llvm.fmuladd.f64"), args)
    return types.float64(types.float64, types.float64, types.float64), codegen


@numba.njit(inline="always", error_model="numpy")
def exp(x):
    """e**x for a float64 (see the module docstring for the numerics)."""
    xc = x if x < 710.0 else 710.0
    xc = xc if xc > -746.0 else -746.0
    shifted = fma(xc, _INV_LN2, _SHIFTER)
    nf = shifted - _SHIFTER                      # round(x / ln2), as a float
    n = _float_bits(shifted) - _SHIFTER_BITS     # the same, as an integer
    r = fma(nf, -_LN2_LO, fma(nf, -_LN2_HI, xc))
    # e^r = 1 + (r + r² w(r)), w = 1/2! + r/3! + ... + r^11/13!, the small correction
    # r² w added to r before the 1 (so its rounding errors stay small against the result).
    # w by Estrin's scheme: the dependency chain is a few multiply-adds deep instead of
    # thirteen as in Horner's form (latency matters for one trace, whose steps are one chain).
    # Every multiply-add is one fma: half the instructions of separate multiplies and adds,
    # half the latency, and one rounding instead of two.
    r2 = r * r
    r4 = r2 * r2
    q0 = fma(r, 1.0 / 6.0, 1.0 / 2.0)
    q1 = fma(r, 1.0 / 120.0, 1.0 / 24.0)
    q2 = fma(r, 1.0 / 5040.0, 1.0 / 720.0)
    q3 = fma(r, 1.0 / 362880.0, 1.0 / 40320.0)
    q4 = fma(r, 1.0 / 39916800.0, 1.0 / 3628800.0)
    q5 = fma(r, 1.0 / 6227020800.0, 1.0 / 479001600.0)
    w = fma(r4, fma(r4, fma(q5, r2, q4), fma(q3, r2, q2)), fma(q1, r2, q0))
    p = 1.0 + fma(r2, w, r)
    half = n >> 1
    y = p * _bits_float((half + 1023) << 52) * _bits_float((n - half + 1023) << 52)
    return y if x == x else x
