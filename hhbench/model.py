"""The Hodgkin-Huxley model of SPEC.md (Kramer's formulation of the 1952 squid axon).

Units: V in mV, t in ms, I in µA/cm², conductances in mS/cm², C = 1 µF/cm².
With u = V + 65 (depolarisation from rest):

    dV/dt = gNa·m³·h·(ENa − u) + gK·n⁴·(EK − u) + gL·(EL − u) + I
    dx/dt = αx(u)·(1 − x) − βx(u)·x,  x ∈ {m, h, n}

The kernels are written once, as plain scalar-or-array code, and turned into two engines
by `build_kernels`: called with the identity decorator they work on NumPy arrays (the
batch is vectorised), called with `numba.njit` they become compiled scalar kernels. Both
engines therefore execute the same arithmetic, up to the exponentials and the fused
multiply-adds (one rounding instead of two) of the compiled one: the NumPy and numba
Euler backends agree to ~1e-12 mV on the lab's step, and to < 1e-9 mV on the noise traces
near threshold, where the dynamics amplify exp's last-bit differences most.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

G_NA, E_NA = 120.0, 115.0
G_K, E_K = 36.0, -12.0
G_L, E_L = 0.3, 10.6
V_REST_MV = -65.0

#: Initial state (V, m, h, n) of the lab: slightly off rest, so the first ms is a transient.
V0_MV, M0, H0, N0 = -70.0, 0.05, 0.54, 0.34

# e^0.5: exp(3 - u/10) (in βh) is e^0.5 · exp(2.5 - u/10), whose expm1 αm computes anyway
E_0P5 = float(np.exp(0.5))
#: added to x and to expm1(x) in the fused αm and αn, so that x = 0 gives their limit
TINY = 1e-300
#: the fused rates' four exponents, offset − slope·u: αm's and αn's (their expm1), then
#: −u/80 and −u/18 (their exp)
RATE_EXPONENT_OFFSETS = (2.5, 1.0, 0.0, 0.0)
RATE_EXPONENT_SLOPES = (0.1, 0.1, 1.0 / 80.0, 1.0 / 18.0)


def _identity(func):
    return func


def _multiply_add(a, b, c):
    return a * b + c


def build_kernels(jit=_identity, exp=np.exp, expm1=np.expm1, fma=_multiply_add,
                  rate_exponentials=None) -> SimpleNamespace:
    """Return the model's kernels, each decorated with `jit`.

    `exp` and `expm1` are the exponentials of the fused kernels (`rates_fused` and the steps
    built on it): NumPy's by default; the compiled engine passes ones that LLVM can
    vectorise. `rate_exponentials(u)` = (xm, xn, expm1(xm) + TINY, expm1(xn) + TINY,
    exp(-u/80), exp(-u/18)), the fused rates' exponents and exponentials
    (RATE_EXPONENT_OFFSETS and _SLOPES), one after the other unless given (the engine's
    one-trace path passes a 4-wide SIMD version that gives the same bits). `fma(a, b, c)`
    is a·b + c in the fused kernels: a multiply and an add by default, one fused
    instruction (one rounding) in the compiled engine.

    Kernels (all arguments scalars or broadcastable arrays, float64):
      rates(v) -> (am, bm, ah, bh, an, bn)          opening/closing rates in 1/ms
      rate_exponentials(u)                           the fused rates' exponents and exponentials
      rates_fused(v)                                 the same rates from four exponentials
      derivatives(v, m, h, n, i) -> (dv, dm, dh, dn)  right-hand side, per ms
      euler_step(v, m, h, n, i, dt)                  forward Euler, the lab's method
      euler_step_fused(v, m, h, n, i, dt)            the same on `rates_fused`
      rush_larsen_step(v, m, h, n, i, dt)            exponential Euler, unconditionally stable
      exp_euler_step(v, m, h, n, i, dt)              exponential Euler, gates first (more accurate)
      exp_midpoint_step(v, m, h, n, i, dt)           exponential midpoint, 2nd order, stable
    """

    if rate_exponentials is None:
        (off_m, off_n, _, _), (slope_m, slope_n, slope_80, slope_18) = (
            RATE_EXPONENT_OFFSETS, RATE_EXPONENT_SLOPES)

        @jit
        def rate_exponentials(u):
            xm = off_m - slope_m * u
            xn = off_n - slope_n * u
            # -u/80 and -u/18 by the reciprocal: a division costs ~5 multiplies
            return (xm, xn, expm1(xm) + TINY, expm1(xn) + TINY, exp(-slope_80 * u),
                    exp(-slope_18 * u))

    @jit
    def x_over_expm1(x, limit_scale):
        # scale * x / (e^x - 1); the expression is 0/0 at x = 0 where its limit is `scale`.
        # x == 0 exactly does happen (V = -40 mV gives 2.5 - 0.1*25 == 0.0). Shift such x to
        # 1.0 before dividing, then put the limit back: plain arithmetic, so the same code
        # serves NumPy arrays and numba scalars, and no 0/0 is ever evaluated.
        is_zero = x == 0.0
        safe = x + is_zero
        ratio = limit_scale * safe / np.expm1(safe)
        return ratio + is_zero * (limit_scale - ratio)

    @jit
    def rates(v):
        u = v - V_REST_MV
        am = x_over_expm1(2.5 - 0.1 * u, 1.0)
        bm = 4.0 * np.exp(-u / 18.0)
        ah = 0.07 * np.exp(-u / 20.0)
        bh = 1.0 / (np.exp(3.0 - 0.1 * u) + 1.0)
        an = x_over_expm1(1.0 - 0.1 * u, 0.1)
        bn = 0.125 * np.exp(-u / 80.0)
        return am, bm, ah, bh, an, bn

    @jit
    def rates_fused(v):
        # The six rates from four exponentials instead of six: βh's exp(3 - u/10) is
        # e^0.5 · exp(2.5 - u/10), which αm's expm1 gives, and exp(-u/20) = exp(-u/80)^4.
        # exp(-u/18) stays separate: as a power of a common exp(-u/720) it would carry 40
        # times that exponential's rounding error.
        # αm and αn keep an expm1 of their own argument, as `rates` does: x/(e^x - 1) from an
        # exponential shared with other rates (e^2.5 · exp(-u/10) - 1, say) would carry its
        # rounding error, and that of its argument, amplified by 1/|x| near the removable
        # 0/0 at x = 0 — in the dynamics near threshold that is ~4e-9 mV on a noise trace,
        # against ~1e-12 mV otherwise. Their 0/0 at x = 0 (limit 1) is avoided in fewer
        # operations than x_over_expm1's: TINY is added to x and to expm1(x). x here is 0
        # or at least 1.1e-16 in size (a difference of doubles near 2.5, or near 1), and so
        # is expm1(x), so TINY vanishes in both sums; x = 0 gives TINY/TINY = 1 exactly.
        # (For arbitrary x it would also do for |x| < 1e-284, where the ratio is 1 anyway,
        # but for x = -TINY itself, 0/0.) `rate_exponentials` adds TINY to expm1(x) itself
        # (the one-trace path does it inside expm1's last instruction: a shorter chain).
        xm, xn, em_t, en_t, e80, e18 = rate_exponentials(v - V_REST_MV)
        am = (xm + TINY) / em_t
        an = 0.1 * (xn + TINY) / en_t
        e80_2 = e80 * e80
        bm = 4.0 * e18
        ah = 0.07 * (e80_2 * e80_2)
        # 1/(e^0.5·(expm1(xm) + 1) + 1), the denominator as one fma (TINY in em_t vanishes
        # against e^0.5 + 1)
        bh = 1.0 / fma(E_0P5, em_t, E_0P5 + 1.0)
        bn = 0.125 * e80
        return am, bm, ah, bh, an, bn

    @jit
    def conductances(v, m, h, n):
        # total conductance G and the conductance-weighted reversal E*, so dV/dt = G (E* - u) + I
        g_na = G_NA * m * m * m * h
        g_k = G_K * n * n * n * n
        g_tot = g_na + g_k + G_L
        e_star = (g_na * E_NA + g_k * E_K + G_L * E_L) / g_tot
        return g_tot, e_star

    @jit
    def derivatives(v, m, h, n, i):
        u = v - V_REST_MV
        am, bm, ah, bh, an, bn = rates(v)
        dv = (G_NA * m * m * m * h * (E_NA - u) + G_K * n * n * n * n * (E_K - u)
              + G_L * (E_L - u) + i)
        dm = am * (1.0 - m) - bm * m
        dh = ah * (1.0 - h) - bh * h
        dn = an * (1.0 - n) - bn * n
        return dv, dm, dh, dn

    @jit
    def euler_step(v, m, h, n, i, dt):
        dv, dm, dh, dn = derivatives(v, m, h, n, i)
        return v + dt * dv, m + dt * dm, h + dt * dh, n + dt * dn

    @jit
    def euler_step_fused(v, m, h, n, i, dt):
        # forward Euler as `euler_step`, on the fused rates, with its multiplies and adds
        # paired into fma where the engine has one (fewer instructions and roundings; each
        # driving force as one fma from u); no branch, so a loop of it over independent
        # traces vectorises. In each gate's derivative the product fused is the one with
        # the rate that comes last (am, an and bh: after a division), so that a lone
        # trace's chain of dependent steps is one multiply shorter.
        u = v - V_REST_MV
        am, bm, ah, bh, an, bn = rates_fused(v)
        m2 = m * m
        n2 = n * n
        g_na = m2 * (m * h)
        g_k = n2 * n2
        leak = fma(u, -G_L, G_L * E_L + i)
        dv = fma(g_na, fma(u, -G_NA, G_NA * E_NA), fma(g_k, fma(u, -G_K, G_K * E_K), leak))
        return (fma(dt, dv, v), fma(dt, fma(am, 1.0 - m, -bm * m), m),
                fma(dt, fma(-bh, h, ah * (1.0 - h)), h), fma(dt, fma(an, 1.0 - n, -bn * n), n))

    @jit
    def gate_exact(x, a, b, dt):
        # x relaxes to a/(a+b) with time constant 1/(a+b); exact for frozen rates
        tot = a + b
        x_inf = a / tot
        return x_inf + (x - x_inf) * np.exp(-tot * dt)

    @jit
    def frozen_exp_update(v, m, h, n, i, dt, vf, mf, hf, nf):
        # exact update of (v, m, h, n) over dt with rates and conductances frozen at the
        # state (vf, mf, hf, nf): each gate relaxes to x_inf, V to E* + I/G with rate G.
        # Every result is a convex combination, so it is stable for any dt and current.
        am, bm, ah, bh, an, bn = rates(vf)
        g_tot, e_star = conductances(vf, mf, hf, nf)
        u_inf = e_star + i / g_tot
        u = v - V_REST_MV
        u_new = u_inf + (u - u_inf) * np.exp(-g_tot * dt)
        return (u_new + V_REST_MV, gate_exact(m, am, bm, dt), gate_exact(h, ah, bh, dt),
                gate_exact(n, an, bn, dt))

    @jit
    def gate_relax(x, a, b, dt):
        # gate_exact on the fused kernels' exponential
        tot = a + b
        x_inf = a / tot
        return x_inf + (x - x_inf) * exp(-tot * dt)

    @jit
    def exp_euler_step(v, m, h, n, i, dt):
        # gates first, exactly for rates frozen at the old V; then V exactly for the
        # conductances of the NEW gates (a Gauss-Seidel order: V sees where the gates went
        # this step instead of where they were). Still first order, but the spike-time
        # drift per spike is ~20 times smaller than with V and gates frozen together.
        am, bm, ah, bh, an, bn = rates_fused(v)
        m1 = gate_relax(m, am, bm, dt)
        h1 = gate_relax(h, ah, bh, dt)
        n1 = gate_relax(n, an, bn, dt)
        g_tot, e_star = conductances(v, m1, h1, n1)
        u_inf = e_star + i / g_tot
        u = v - V_REST_MV
        return u_inf + (u - u_inf) * exp(-g_tot * dt) + V_REST_MV, m1, h1, n1

    @jit
    def rush_larsen_step(v, m, h, n, i, dt):
        return frozen_exp_update(v, m, h, n, i, dt, v, m, h, n)

    @jit
    def exp_midpoint_step(v, m, h, n, i, dt):
        # second order: a Rush-Larsen half step predicts the midpoint, whose frozen rates
        # drive the exact update of the initial state over the whole step (stable for the
        # stiff gate rates of strongly hyperpolarised membranes, where explicit RK4 would
        # need dt < 1e-6 ms)
        vm, mm, hm, nm = rush_larsen_step(v, m, h, n, i, 0.5 * dt)
        return frozen_exp_update(v, m, h, n, i, dt, vm, mm, hm, nm)

    return SimpleNamespace(x_over_expm1=x_over_expm1, rates=rates,
                           rate_exponentials=rate_exponentials, rates_fused=rates_fused,
                           conductances=conductances, derivatives=derivatives,
                           euler_step=euler_step, euler_step_fused=euler_step_fused,
                           gate_exact=gate_exact, rush_larsen_step=rush_larsen_step,
                           exp_euler_step=exp_euler_step, exp_midpoint_step=exp_midpoint_step)


#: The NumPy engine: kernels that take arrays (the batch) and broadcast.
NUMPY_KERNELS = build_kernels()
rates = NUMPY_KERNELS.rates
derivatives = NUMPY_KERNELS.derivatives


# -- operation count ------------------------------------------------------------------------

#: what `count_step_operations` tallies: "exp" (exp and expm1), "div", "mul", "add" (additions
#: and subtractions), "neg" (sign flips) and "cmp" (comparisons)
OPERATIONS = ("exp", "div", "mul", "add", "neg", "cmp")


class _Counted:
    """A float that tallies the arithmetic done on it into a shared dict."""

    __slots__ = ("value", "tally")
    __array_priority__ = 1000

    def __init__(self, value, tally):
        self.value, self.tally = float(value), tally

    def _op(self, kind, value):
        self.tally[kind] += 1
        return _Counted(value, self.tally)

    @staticmethod
    def _v(x):
        return x.value if isinstance(x, _Counted) else float(x)

    def __add__(self, o):
        return self._op("add", self.value + self._v(o))

    def __radd__(self, o):
        return self._op("add", self._v(o) + self.value)

    def __sub__(self, o):
        return self._op("add", self.value - self._v(o))

    def __rsub__(self, o):
        return self._op("add", self._v(o) - self.value)

    def __mul__(self, o):
        return self._op("mul", self.value * self._v(o))

    def __rmul__(self, o):
        return self._op("mul", self._v(o) * self.value)

    def __truediv__(self, o):
        return self._op("div", self.value / self._v(o))

    def __rtruediv__(self, o):
        return self._op("div", self._v(o) / self.value)

    def __neg__(self):
        return self._op("neg", -self.value)

    def __eq__(self, o):
        self.tally["cmp"] += 1
        return self.value == self._v(o)

    __hash__ = None

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or ufunc not in (np.exp, np.expm1) or len(inputs) != 1:
            return NotImplemented
        return self._op("exp", float(ufunc(self.value)))


def count_operations(kernel: str, *args: float) -> dict[str, int]:
    """Operations one call of model kernel `kernel` (a name in `build_kernels()`) performs
    on the float arguments `args`, counted by running the NumPy kernel on counting scalars:
    every exp/expm1, division, multiplication, addition or subtraction, negation and
    comparison on argument-dependent values is tallied (operations between constants are
    folded by Python and not counted, as a compiler folds them). Returns {operation: count}
    over `OPERATIONS` plus "flops", their sum without "cmp" (an exp counts as one)."""
    kernels = build_kernels()
    func = getattr(kernels, kernel, None)
    if func is None:
        raise ValueError(f"unknown kernel {kernel!r}; the model has {', '.join(vars(kernels))}")
    tally = dict.fromkeys(OPERATIONS, 0)
    func(*(_Counted(x, tally) for x in args))
    counts = dict(tally)
    counts["flops"] = sum(counts[k] for k in OPERATIONS if k != "cmp")
    return counts


def count_step_operations(kernel: str = "euler_step") -> dict[str, int]:
    """Operations of one neuron-step of step kernel `kernel` (e.g. "euler_step", the lab's
    forward Euler; "euler_step_fused", what the numba backend runs), counted as in
    `count_operations` from the lab's initial state with I = 10 µA/cm², dt = 0.05 ms.
    The step kernels have no data-dependent branches, so the count holds for every state."""
    if "_step" not in kernel:
        raise ValueError(f"{kernel!r} is not a step kernel (their names contain '_step')")
    return count_operations(kernel, V0_MV, M0, H0, N0, 10.0, 0.05)
