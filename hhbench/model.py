"""The Hodgkin-Huxley model of SPEC.md (Kramer's formulation of the 1952 squid axon).

Units: V in mV, t in ms, I in µA/cm², conductances in mS/cm², C = 1 µF/cm².
With u = V + 65 (depolarisation from rest):

    dV/dt = gNa·m³·h·(ENa − u) + gK·n⁴·(EK − u) + gL·(EL − u) + I
    dx/dt = αx(u)·(1 − x) − βx(u)·x,  x ∈ {m, h, n}

The kernels are written once, as plain scalar-or-array code, and turned into two engines
by `build_kernels`: called with the identity decorator they work on NumPy arrays (the
batch is vectorised), called with `numba.njit` they become compiled scalar kernels. Both
engines therefore execute the same arithmetic, which is why the NumPy and numba Euler
backends agree to ~1e-12 mV.
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


def _identity(func):
    return func


def build_kernels(jit=_identity) -> SimpleNamespace:
    """Return the model's kernels, each decorated with `jit`.

    Kernels (all arguments scalars or broadcastable arrays, float64):
      rates(v) -> (am, bm, ah, bh, an, bn)          opening/closing rates in 1/ms
      derivatives(v, m, h, n, i) -> (dv, dm, dh, dn)  right-hand side, per ms
      euler_step(v, m, h, n, i, dt)                  forward Euler, the lab's method
      rush_larsen_step(v, m, h, n, i, dt)            exponential Euler, unconditionally stable
      exp_midpoint_step(v, m, h, n, i, dt)           exponential midpoint, 2nd order, stable
    """

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

    return SimpleNamespace(x_over_expm1=x_over_expm1, rates=rates, conductances=conductances,
                           derivatives=derivatives, euler_step=euler_step,
                           rush_larsen_step=rush_larsen_step,
                           exp_midpoint_step=exp_midpoint_step)


#: The NumPy engine: kernels that take arrays (the batch) and broadcast.
NUMPY_KERNELS = build_kernels()
rates = NUMPY_KERNELS.rates
derivatives = NUMPY_KERNELS.derivatives
