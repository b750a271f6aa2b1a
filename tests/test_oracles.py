"""Tests against oracles that share no code with hhbench: the numbers the lab printed, the
model's equations transcribed here from the published formulation in plain Python floats,
and the convergence order each integration method declares.

A wrong rate constant, initial state, onset sample or step in the model or in a backend
changes these numbers; tests that compare the code with itself would not notice.
"""

import math
import warnings

import numpy as np
import pytest
from scipy.signal import find_peaks

from hhbench import metrics, stimuli
from hhbench.backends import get_backend
from hhbench.errors import DivergenceWarning

# -- the lab's printed peaks -----------------------------------------------------------------

#: The spike amplitudes (mV) the lab printed for its default step (20 µA/cm² from 17.8 ms,
#: forward Euler at 20 kHz, 2,560 samples), found with
#: `scipy.signal.find_peaks(V, height=0, width=10)`, as NumPy prints them (8 decimals,
#: trailing zeros dropped). The whole trace has exactly these ten peaks.
LAB_STEP_PEAKS_MV = (42.69361966, 27.85626761, 27.0801995, 26.81374039, 26.98449291,
                     26.85238875, 26.97170415, 26.89795837, 26.95268803, 26.93381838)
#: half a unit in the 8th decimal: what printing to 8 decimals can hide (and a little
#: for the two backends' last-bit differences, ~1e-12 mV)
PRINTED_DIGITS_MV = 5e-9 + 1e-11


@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_the_lab_step_peaks_are_reproduced_to_the_printed_digits(name):
    v = get_backend(name).run(stimuli.make("step")).v_mv
    assert v.shape == (2560,)
    peaks, _ = find_peaks(v, height=0, width=10)
    assert len(peaks) == len(LAB_STEP_PEAKS_MV) == 10
    np.testing.assert_allclose(v[peaks], LAB_STEP_PEAKS_MV, rtol=0, atol=PRINTED_DIGITS_MV)
    # and hhbench's names for the lab's rule and for the default rule find the same peaks
    for rule in metrics.SPIKE_RULES:
        train = metrics.find_spikes(v, rule)
        np.testing.assert_array_equal(train.index, peaks)


# -- the equations, transcribed -----------------------------------------------------------------
# Kramer's formulation of the 1952 squid-axon model, u = V + 65 (mV), C = 1 µF/cm²:
#   dV/dt = 120 m³h (115 − u) + 36 n⁴ (−12 − u) + 0.3 (10.6 − u) + I
#   αm = (2.5 − 0.1u)/(e^(2.5 − 0.1u) − 1)   βm = 4 e^(−u/18)
#   αh = 0.07 e^(−u/20)                      βh = 1/(e^(3 − 0.1u) + 1)
#   αn = (0.1 − 0.01u)/(e^(1 − 0.1u) − 1)    βn = 0.125 e^(−u/80)
# from V = −70, m = 0.05, h = 0.54, n = 0.34; forward Euler at dt = 0.05 ms, the current
# at sample i taking sample i to i + 1. αm and αn are 0/0 at u = 25 and u = 10, where their
# limits are 1 and 0.1; e^x − 1 is math.expm1(x), which keeps its digits near x = 0.

DT_MS = 0.05


def _alpha(numerator: float, x: float, limit: float) -> float:
    """numerator / (e^x − 1), whose 0/0 at x = 0 has the limit `limit`."""
    return limit if x == 0.0 else numerator / math.expm1(x)


def oracle_euler(current_ua) -> tuple[list[float], bool]:
    """V (mV) at every sample from forward Euler, and whether the trace diverged (V
    non-finite, or an exponential overflowed); a diverged trace stops there (NaN after)."""
    v, m, h, n = -70.0, 0.05, 0.54, 0.34
    out = []
    for i in current_ua:
        out.append(v)
        u = v + 65.0
        try:
            am = _alpha(2.5 - 0.1 * u, 2.5 - 0.1 * u, 1.0)
            bm = 4.0 * math.exp(-u / 18.0)
            ah = 0.07 * math.exp(-u / 20.0)
            bh = 1.0 / (math.exp(3.0 - 0.1 * u) + 1.0)
            an = _alpha(0.1 - 0.01 * u, 1.0 - 0.1 * u, 0.1)
            bn = 0.125 * math.exp(-u / 80.0)
        except OverflowError:
            return out + [math.nan] * (len(current_ua) - len(out)), True
        dv = (120.0 * m ** 3 * h * (115.0 - u) + 36.0 * n ** 4 * (-12.0 - u)
              + 0.3 * (10.6 - u) + float(i))
        v, m, h, n = (v + DT_MS * dv, m + DT_MS * (am * (1.0 - m) - bm * m),
                      h + DT_MS * (ah * (1.0 - h) - bh * h), n + DT_MS * (an * (1.0 - n) - bn * n))
        if not math.isfinite(v):
            return out + [math.nan] * (len(current_ua) - len(out)), True
    return out, False


def oracle_step(amplitude_ua, onset_ms=17.8, n_samples=2560):
    """The step, from its definition: 0 before the onset, then the amplitude; sample k is
    at t = k · 0.05 ms, so 17.8 ms is sample 356."""
    onset = round(onset_ms / DT_MS)
    return [0.0] * onset + [float(amplitude_ua)] * (n_samples - onset)


def oracle_sine(freq_khz, amplitude_ua=80.0, onset_ms=18.7, n_samples=2560):
    """A·sin(2π f (t − onset)) from the onset (sample 374) on, 0 before."""
    onset = round(onset_ms / DT_MS)
    return [0.0] * onset + [amplitude_ua * math.sin(2 * math.pi * freq_khz * (k * DT_MS - onset_ms))
                            for k in range(onset, n_samples)]


def test_the_transcription_reproduces_the_lab_peaks():
    """The oracle itself against the lab's numbers: its step trace has the lab's peaks."""
    v, diverged = oracle_euler(oracle_step(20.0))
    assert not diverged
    peaks, _ = find_peaks(v, height=0, width=10)
    np.testing.assert_allclose(np.asarray(v)[peaks], LAB_STEP_PEAKS_MV, rtol=0,
                               atol=PRINTED_DIGITS_MV)


def test_the_stimuli_are_their_definitions():
    np.testing.assert_array_equal(stimuli.step([3.0, 20.0]).current_ua,
                                  [oracle_step(3.0), oracle_step(20.0)])
    np.testing.assert_allclose(stimuli.sine([0.1, 0.5, 1.5]).current_ua,
                               [oracle_sine(f) for f in (0.1, 0.5, 1.5)], rtol=0, atol=1e-9)
    # (t computed as k/20 rather than k·0.05: phases of ~1000 rad differ in the last bit)


#: 1e-9 mV is "equal to numpy" (every sample of every finite trace). Noise traces near
#: threshold amplify the last-bit differences of the exponentials most.
EQUAL_MV = 1e-9
CASES = {
    "step": lambda: stimuli.step([3.0, 10.0, 20.0]),
    "sine": lambda: stimuli.sine([0.5, 1.5], amplitude_ua=80.0),
    "slow-sine": lambda: stimuli.sine(0.1, amplitude_ua=20.0),
    "noise": lambda: stimuli.white_noise(20.0, seed=0, batch=3),
}


@pytest.mark.parametrize("kind", CASES)
@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_forward_euler_equals_the_transcription(kind, name):
    stim = CASES[kind]()
    r = get_backend(name).run(stim)
    assert not r.any_diverged
    for row, v in zip(stim.current_ua, r.v_batch):
        expected, diverged = oracle_euler(row)
        assert not diverged
        assert np.max(np.abs(v - expected)) < EQUAL_MV


@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_the_same_sine_diverges_in_the_transcription(name):
    """The lab's sine (80 µA/cm², 0.05 kHz) makes forward Euler overflow: flagged in both,
    within a sample of each other, and equal until V falls below −140 mV (from there
    Euler's gate update is unstable and amplifies every rounding difference ~10x a step)."""
    stim = stimuli.sine(0.05)
    expected, diverged = oracle_euler(stim.current_ua[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)
        r = get_backend(name).run(stim)
    assert diverged and r.diverged.all()
    expected = np.asarray(expected)
    first_bad = [np.flatnonzero(~np.isfinite(x) | (np.abs(x) > 1e4))[0] for x in (expected, r.v_mv)]
    assert abs(first_bad[0] - first_bad[1]) <= 3
    stable = np.flatnonzero(expected < -140.0)[0]
    assert stable > 500
    assert np.max(np.abs(r.v_mv[:stable] - expected[:stable])) < EQUAL_MV


def test_the_kernel_reports_baseline_is_the_same_forward_euler():
    """`backends.compiled.baseline` (the straightforward numba loop the kernel report times
    the `numba` backend against) computes the same trace, so the speed-up it reports is
    for the same work."""
    pytest.importorskip("numba")
    from hhbench.backends.compiled.baseline import run_straightforward

    stim = stimuli.step([3.0, 20.0])
    v = run_straightforward(stim.current_ua, stim.dt_ms)
    for row, trace in zip(stim.current_ua, v):
        assert np.max(np.abs(trace - oracle_euler(row)[0])) < EQUAL_MV


# -- convergence order of every step kernel ------------------------------------------------------


def _kernels():
    from hhbench.backends import kernels
    return kernels.kernel_classes()


@pytest.mark.parametrize("kernel", list(_kernels()))
def test_each_kernel_converges_at_its_declared_order(kernel):
    """Halving the step of a method of order p divides its error by 2^p. On a short
    sub-threshold step (2 µA/cm², 20 ms: smooth, no method diverges, and every method is
    in its asymptotic regime from the lab's dt on), the error of 2, 4 and 8 substeps per
    sample against 512 falls by 2^order per halving: the observed order is within 0.3 of
    the declared one. (On a spiking trace the gates-first exponential Euler, first order,
    shows ~2 over these steps: its first-order error constant is tiny there.)"""
    from hhbench.backends.numba_engine import integrate

    order = _kernels()[kernel].order
    stim = stimuli.step(2.0, n_samples=400)
    fine, _ = integrate(stim.current_ua, stim.dt_ms, kernel, 512)
    errors = [np.max(np.abs(integrate(stim.current_ua, stim.dt_ms, kernel, s)[0] - fine))
              for s in (2, 4, 8)]
    assert min(errors) > 1e-7  # far above rounding, and the fine run's own error
    observed = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    np.testing.assert_allclose(observed, order, atol=0.3)
