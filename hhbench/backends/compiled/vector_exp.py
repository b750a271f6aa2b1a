"""An exponential (and its expm1) that LLVM can vectorise, for the compiled step kernels
(numba only here).

pip's llvmlite has no SVML, so a loop that calls `math.exp` / `np.exp` stays scalar: every
call goes to libm. `exp` below is plain arithmetic, inlined into the caller, so a loop over
independent traces becomes SIMD code (checked in the tests with `inspect_asm`).

Numerics (double precision: exp within 1 ulp of the correctly rounded value, expm1 within 2):
  * range reduction x = n·ln2 + r with |r| ≤ ln2/2: n is rounded with the 1.5·2^52 shifter
    (no float→int conversion on the critical path), r by Cody-Waite with ln2 split in a
    high part of 32 significant bits (n·LN2_HI is exact) and a low part;
  * e^r − 1 = r + r²·w(r) with w a polynomial of degree 9, economized from w's Taylor
    series (`economized_w`: its error on e^r − 1 is < 1.3e-17, far below half an ulp),
    evaluated by Estrin's scheme with fused multiply-adds (`fma`, llvm.fmuladd: one
    instruction and one rounding on FMA hardware; numba never fuses a multiply and an add
    by itself);
  * 2^n is applied as two factors 2^(n//2)·2^(n−n//2) built from exponent bits, so results
    down to the subnormals and up to overflow (x > 709.78 gives inf) come out right
    without a branch. x is clamped to [−746, 710] first (beyond it the result is 0 or inf
    anyway); a NaN argument gives NaN.
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


def economized_w(degree: int = 9, taylor_degree: int = 22) -> tuple[tuple[float, ...], float]:
    """Coefficients of w(r) ≈ (e^r − 1 − r)/r² of degree `degree` on |r| ≤ ln2/2 (slightly
    wider), and a bound on |w(r) − its approximation| there.

    Chebyshev economization in exact rational arithmetic: w's Taylor series to
    `taylor_degree` (truncation ~1e-40), then, from the top degree down, the multiple of
    the Chebyshev polynomial T_k(r/a) that cancels the r^k term is subtracted; the bound is
    the sum of the multiples' sizes (|T_k| ≤ 1). Degree 9 gives a bound of 1.04e-16 on w,
    so ≤ 1.3e-17 on e^r − 1 = r + r²w: far below half an ulp of e^r, with two coefficients
    fewer than the Taylor polynomial of the same accuracy (degree 11 in w).
    """
    from fractions import Fraction
    from math import factorial, log

    a = Fraction(log(2) / 2) + Fraction(1, 10**6)
    coef = [Fraction(1, factorial(k + 2)) * a**k for k in range(taylor_degree + 1)]  # in r/a
    cheb = [[Fraction(1)], [Fraction(0), Fraction(1)]]
    while len(cheb) <= taylor_degree:  # T_(k+1) = 2t T_k − T_(k−1)
        nxt = [Fraction(0)] + [2 * c for c in cheb[-1]]
        for i, c in enumerate(cheb[-2]):
            nxt[i] -= c
        cheb.append(nxt)
    bound = Fraction(0)
    for k in range(taylor_degree, degree, -1):
        multiple = coef[k] / cheb[k][k]
        bound += abs(multiple)
        for i, c in enumerate(cheb[k]):
            coef[i] -= multiple * c
    return tuple(float(coef[k] / a**k) for k in range(degree + 1)), float(bound)


#: w's coefficients c0..c9 (see economized_w)
_W = economized_w()[0]


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
def _reduce(x, lowest):
    """(n, e^r - 1) for x = n·ln2 + r, |r| <= ln2/2 (n an integer, int64), x clamped to
    [lowest, 710] first (beyond, the callers' results no longer change). The clamps let a
    NaN through (a comparison with NaN is false), and NaN then propagates to the result."""
    xc = 710.0 if x > 710.0 else x
    xc = lowest if xc < lowest else xc
    shifted = fma(xc, _INV_LN2, _SHIFTER)
    nf = shifted - _SHIFTER                      # round(x / ln2), as a float
    n = _float_bits(shifted) - _SHIFTER_BITS     # the same, as an integer
    r = fma(nf, -_LN2_LO, fma(nf, -_LN2_HI, xc))
    # e^r - 1 = r + r² w(r), w of degree 9 (economized_w): the small correction r² w is
    # added to r, and the 1 is left out, so that its rounding errors stay small against
    # the result (exp adds the 1 afterwards; expm1 never does, which keeps it accurate
    # near x = 0). w by Estrin's scheme: the dependency chain is a few multiply-adds deep
    # instead of nine as in Horner's form (latency matters for one trace, whose steps
    # are one chain). Every multiply-add is one fma: half the instructions of separate
    # multiplies and adds, half the latency, and one rounding instead of two.
    r2 = r * r
    r4 = r2 * r2
    q0 = fma(r, _W[1], _W[0])
    q1 = fma(r, _W[3], _W[2])
    q2 = fma(r, _W[5], _W[4])
    q3 = fma(r, _W[7], _W[6])
    q4 = fma(r, _W[9], _W[8])
    w = fma(r4, fma(r4, q4, fma(q3, r2, q2)), fma(q1, r2, q0))
    return n, fma(r2, w, r)


@numba.njit(inline="always", error_model="numpy")
def _scaled(p, n):
    """p·2^n, as two factors 2^(n//2)·2^(n−n//2) built from exponent bits, so that results
    down to the subnormals and up to overflow come out right without a branch."""
    half = n >> 1
    return p * _bits_float((half + 1023) << 52) * _bits_float((n - half + 1023) << 52)


@numba.njit(inline="always", error_model="numpy")
def exp(x):
    """e**x for a float64 (see the module docstring for the numerics)."""
    n, em1_r = _reduce(x, -746.0)
    return _scaled(1.0 + em1_r, n)


@numba.njit(inline="always", error_model="numpy")
def expm1(x):
    """e**x − 1 for a float64, accurate where it is small (near x = 0) as well, which e**x − 1
    computed from `exp` is not (it loses |log2 x| bits there).

    With x = n·ln2 + r and s = 2^n: e^x − 1 = s·(e^r − 1) + (s − 1), one fused multiply-add
    (one rounding; s − 1 is exact for |n| ≤ 53, and beyond, the bits it loses are below
    half an ulp of the result): within 2 ulp of the correctly rounded value, 1 ulp but for
    ln2/2 < x < ln1.5 (0.347–0.405), where n = 1 and s·(e^r − 1) and s − 1 cancel in
    part. n = 0 gives e^r − 1 itself. x is clamped to [−40, 710] first (below −37.5 the
    result is −1 as rounded), so 2^n is a normal number. s is at most 2^1023: for n = 1024
    (709.43 < x ≤ 709.78) the result is doubled after the fused multiply-add, so it
    overflows only where e^x does.
    """
    n, em1_r = _reduce(x, -40.0)
    n_s = n if n < 1023 else 1023
    s = _bits_float((n_s + 1023) << 52)
    return fma(s, em1_r, s - 1.0) * _bits_float((n - n_s + 1023) << 52)


def affine_exponentials4(offsets, slopes, tiny=0.0):
    """An intrinsic f(u) -> (x0, x1, expm1(x0) + tiny, expm1(x1) + tiny, exp(x2), exp(x3)),
    with x_k = offsets[k] − slopes[k]·u, as ONE 4-wide SIMD evaluation: bit for bit what
    the scalar `offsets[k] - slopes[k] * u`, `expm1(x) + tiny` and `exp(x)` give one at a
    time (the same operations in the same order, per lane). In the exp lanes (2, 3) a zero
    offset may be left out of the scalar exponent (-slopes[k] * u): that changes only the
    sign of a zero exponent, and e^(±0) = 1. `tiny` must be in [0, 2^-60): small enough
    that s − 1 and the results of n ≠ 0 absorb it (see below).

    For a lone trace, whose steps form one dependent chain with no second trace to fill
    the SIMD lanes: the four exponentials of a step (the model's fused rates') then cost
    about one. numba has no vector types, so this is written in LLVM IR; a batch of traces
    keeps the scalar `exp`/`expm1`, which the loop over traces vectorises across traces
    instead. Two things shorten the chain from u to the results, measured on one trace:
    the exponents are computed 4-wide from u broadcast (not packed from four scalars), and
    `tiny` is added inside expm1's last fused multiply-add, to s − 1 (the same bits as
    adding it afterwards: for n = 0, fma(1, e^r − 1, tiny) is that sum rounded once; for
    n ≠ 0, |s − 1| ≥ 0.29 and |e^x − 1| ≥ 0.29 absorb a tiny below half their ulp).
    """
    offsets, slopes, tiny = tuple(map(float, offsets)), tuple(map(float, slopes)), float(tiny)
    if len(offsets) != 4 or len(slopes) != 4:
        raise ValueError("affine_exponentials4 takes four offsets and four slopes")
    if not 0.0 <= tiny < 2.0**-60:
        raise ValueError(f"affine_exponentials4: tiny must be in [0, 2^-60), got {tiny!r}")

    @intrinsic
    def exponentials4(typingctx, u):
        if u != types.float64:
            return None

        def codegen(context, builder, signature, args):
            dbl, i32, i64 = ir.DoubleType(), ir.IntType(32), ir.IntType(64)
            v4, v4i = ir.VectorType(dbl, 4), ir.VectorType(i64, 4)

            def splat(value):
                return ir.Constant(v4, [float(value)] * 4)

            def splat_i(value):
                return ir.Constant(v4i, [int(value)] * 4)

            fmuladd = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(v4, [v4, v4, v4]), "llvm.fmuladd.v4f64")

            def fma4(p, q, r):
                return builder.call(fmuladd, [p, q, r])

            def bits_float(n):
                return builder.bitcast(n, v4)

            u4 = builder.insert_element(ir.Constant(v4, ir.Undefined), args[0],
                                        ir.Constant(i32, 0))
            u4 = builder.shuffle_vector(u4, u4, ir.Constant(ir.VectorType(i32, 4), [0] * 4))
            x = builder.fsub(ir.Constant(v4, list(offsets)),
                             builder.fmul(ir.Constant(v4, list(slopes)), u4))
            # _reduce, lane by lane: expm1's lanes clamp below at -40, exp's at -746
            top = splat(710.0)
            xc = builder.select(builder.fcmp_ordered(">", x, top), top, x)
            lowest = ir.Constant(v4, [-40.0, -40.0, -746.0, -746.0])
            xc = builder.select(builder.fcmp_ordered("<", xc, lowest), lowest, xc)
            shifted = fma4(xc, splat(_INV_LN2), splat(_SHIFTER))
            nf = builder.fsub(shifted, splat(_SHIFTER))
            n = builder.sub(builder.bitcast(shifted, v4i), splat_i(_SHIFTER_BITS))
            r = fma4(nf, splat(-_LN2_LO), fma4(nf, splat(-_LN2_HI), xc))
            r2 = builder.fmul(r, r)
            r4 = builder.fmul(r2, r2)
            q = [fma4(r, splat(_W[2 * k + 1]), splat(_W[2 * k])) for k in range(5)]
            w = fma4(r4, fma4(r4, q[4], fma4(q[3], r2, q[2])), fma4(q[1], r2, q[0]))
            em1_r = fma4(r2, w, r)
            # expm1's finish, with tiny added to s - 1
            cap = splat_i(1023)
            n_s = builder.select(builder.icmp_signed("<", n, cap), n, cap)
            s = bits_float(builder.shl(builder.add(n_s, cap), splat_i(52)))
            over = bits_float(builder.shl(builder.add(builder.sub(n, n_s), cap), splat_i(52)))
            s_m1 = builder.fadd(builder.fsub(s, splat(1.0)), splat(tiny))
            y_m1 = builder.fmul(fma4(s, em1_r, s_m1), over)
            # exp's finish (_scaled)
            half = builder.ashr(n, splat_i(1))
            lo = bits_float(builder.shl(builder.add(half, cap), splat_i(52)))
            hi = bits_float(builder.shl(builder.add(builder.sub(n, half), cap), splat_i(52)))
            y_exp = builder.fmul(builder.fmul(builder.fadd(splat(1.0), em1_r), lo), hi)
            y = builder.shuffle_vector(y_m1, y_exp,
                                       ir.Constant(ir.VectorType(i32, 4), [0, 1, 6, 7]))
            out = [builder.extract_element(x, ir.Constant(i32, k)) for k in range(2)]
            out += [builder.extract_element(y, ir.Constant(i32, k)) for k in range(4)]
            return context.make_tuple(builder, signature.return_type, out)

        return types.UniTuple(types.float64, 6)(u), codegen

    return exponentials4
