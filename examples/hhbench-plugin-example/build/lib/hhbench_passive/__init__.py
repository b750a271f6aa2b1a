"""`passive`: an example hhbench backend from outside hhbench (a plugin).

The Hodgkin-Huxley membrane with its sodium and potassium channels blocked (TTX and TEA
in the lab): only the leak remains,

    C dV/dt = g_L (E_L - V) + I(t),   C = 1 µF/cm², g_L = 0.3 mS/cm², E_L = -54.4 mV,

a linear ODE. With the current held constant over each sample interval (as every hhbench
backend reads its input), it is solved exactly from one sample to the next:

    V[k+1] = V_inf[k] + (V[k] - V_inf[k]) exp(-dt/tau),  V_inf[k] = E_L + I[k]/g_L,
    tau = C/g_L = 3.33 ms,

starting at hhbench's V0 = -70 mV. It never spikes and never diverges; it is here to show
the plugin interface (a `Backend` subclass with `name`, `summary` and `_integrate`,
declared in the entry-point group `hhbench.backends` of this package's pyproject.toml).
"""

from __future__ import annotations

import numpy as np

from hhbench.backends.base import Backend

C_UF = 1.0
G_L_MS = 0.3
E_L_MV = -54.4
V0_MV = -70.0


class PassiveMembrane(Backend):
    name = "passive"
    summary = "example plugin: HH membrane with Na and K blocked (leak only), exact solution"

    def _integrate(self, current_ua, dt_ms, gates):
        decay = np.exp(-dt_ms * G_L_MS / C_UF)
        v_inf = E_L_MV + current_ua / G_L_MS           # (batch, samples)
        v = np.empty_like(current_ua, dtype=np.float64)
        v[:, 0] = V0_MV
        for k in range(current_ua.shape[1] - 1):       # samples k -> k + 1
            v[:, k + 1] = v_inf[:, k] + (v[:, k] - v_inf[:, k]) * decay
        return v, None

    def settings(self):
        return {"g_l_ms": G_L_MS, "e_l_mv": E_L_MV, "c_uf": C_UF}
