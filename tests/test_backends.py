"""The simulators: reference values, properties across backends, divergence, convergence."""

import functools
import itertools
import warnings

import numpy as np
import pytest

from hhbench import metrics, model, stimuli
from hhbench.backends import backend_names, get_backend
from hhbench.errors import DivergenceWarning, HHBenchError

SIMULATORS = ["numpy", "numba", "odeint", "odeint-lab", "exp-euler", "reference"]
STIMULI = {
    "step": lambda: stimuli.step([3.0, 10.0, 20.0]),
    # slower sines of 20 µA/cm² make forward Euler diverge (tested below)
    "sine": lambda: stimuli.sine([0.1, 0.5], amplitude_ua=20.0),
    "noise": lambda: stimuli.white_noise(20.0, seed=1, batch=3),
}


@pytest.fixture(scope="module")
def reference():
    return get_backend("reference")


def test_registry_lists_every_backend():
    assert backend_names() == ["numpy", "numba", "odeint", "odeint-lab", "exp-euler", "reference",
                               "jax", "numba-cuda", "cnn"]


def test_unknown_backend_lists_valid_ones():
    with pytest.raises(HHBenchError, match="valid backends: numpy, numba"):
        get_backend("nest")


# -- reference values ----------------------------------------------------------------------

def test_rate_functions_at_their_removable_singularities():
    # αm is 0/0 at u = 25 (V = -40 mV), αn at u = 10 (V = -55 mV); limits 1 and 0.1
    am, *_ = model.rates(np.array([-40.0, -40.0 + 1e-7, -40.0 - 1e-7]))
    *_, an, _ = model.rates(np.array([-55.0, -55.0 + 1e-7, -55.0 - 1e-7]))
    assert am[0] == 1.0 and an[0] == 0.1
    np.testing.assert_allclose(am[1:], 1.0, atol=1e-7)
    np.testing.assert_allclose(an[1:], 0.1, atol=1e-8)
    # and away from it the textbook expression
    u = 0.0
    assert model.rates(np.array([-65.0]))[0][0] == pytest.approx((2.5 - 0.1 * u) / (np.exp(2.5 - 0.1 * u) - 1))


@pytest.mark.parametrize("name", SIMULATORS)
def test_rest_settles_near_minus_65_mv(name):
    r = get_backend(name).run(stimuli.step(0.0))
    assert r.v_mv[0] == -70.0
    assert r.v_mv[-1] == pytest.approx(-65.0, abs=0.01)
    assert np.ptp(r.v_mv[-400:]) < 0.01  # settled


def test_first_euler_step_by_hand():
    r = get_backend("numpy").run(stimuli.step(0.0))
    u = -5.0
    am = (2.5 - 0.1 * u) / (np.exp(2.5 - 0.1 * u) - 1)
    bm = 4 * np.exp(-u / 18)
    dv = 120 * 0.05 ** 3 * 0.54 * (115 - u) + 36 * 0.34 ** 4 * (-12 - u) + 0.3 * (10.6 - u)
    assert r.v_mv[1] == pytest.approx(-70.0 + 0.05 * dv, abs=1e-12)
    r = get_backend("numpy").run(stimuli.step(0.0), gates=True)
    assert r.gates["m"][1] == pytest.approx(0.05 + 0.05 * (am * 0.95 - bm * 0.05), abs=1e-14)


# Spike counts over the 128 ms window with the step at 17.8 ms, from oracles that share no
# code with hhbench: the lab's ten printed peaks at 20 µA/cm², and for the other amplitudes
# the forward-Euler transcription of the published equations (tests/test_oracles.py) with
# runs above 0 mV counted here by hand. Below threshold nothing, just above it one spike,
# repetitive firing at 10 µA/cm² (HH's class-2 onset is near 6.5).
STEP_AMPLITUDES = [0.0, 2.0, 3.0, 10.0, 20.0]


def _runs_above_0_mv(v, min_samples=10):
    """Runs of at least `min_samples` consecutive samples above 0 mV, counted by hand."""
    runs = [len(list(group)) for above, group in itertools.groupby(x > 0.0 for x in v) if above]
    return sum(n >= min_samples for n in runs)


@functools.cache
def _independent_counts():
    from test_oracles import LAB_STEP_PEAKS_MV, oracle_euler, oracle_step

    counts = {a: _runs_above_0_mv(oracle_euler(oracle_step(a))[0]) for a in STEP_AMPLITUDES}
    assert counts[20.0] == len(LAB_STEP_PEAKS_MV)  # the lab's own count
    assert counts[0.0] == counts[2.0] == 0 and counts[3.0] == 1 and counts[10.0] >= 2
    return counts


@pytest.mark.parametrize("name", ["numpy", "reference"])
def test_spike_counts_follow_threshold_behaviour(name):
    r = get_backend(name).run(stimuli.step(STEP_AMPLITUDES))
    assert dict(zip(STEP_AMPLITUDES, metrics.spike_count(r.v_mv).tolist())) == _independent_counts()


# -- properties ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", STIMULI)
def test_numba_equals_numpy(kind):
    stim = STIMULI[kind]()
    a = get_backend("numpy").run(stim, gates=True)
    b = get_backend("numba").run(stim, gates=True)
    assert not a.any_diverged and not b.any_diverged
    assert np.max(np.abs(a.v_mv - b.v_mv)) < 1e-9
    for g in "mhn":
        assert np.max(np.abs(a.gates[g] - b.gates[g])) < 1e-11


# fixed-step methods give the same numbers; odeint's step control and the reference's
# convergence check see the whole batch, so they agree within their tolerances
@pytest.mark.parametrize("name, atol_mv", [("numpy", 1e-12), ("numba", 1e-12), ("exp-euler", 1e-12),
                                           ("odeint", 0.01), ("odeint-lab", 1e-12),
                                           ("reference", 0.01)])
def test_batch_equals_loop_of_singles(name, atol_mv):
    backend = get_backend(name)
    amps = [3.0, 20.0]
    batch = backend.run(stimuli.step(amps))
    for k, a in enumerate(amps):
        single = backend.run(stimuli.step(a))
        assert single.v_mv.shape == (2560,)
        np.testing.assert_allclose(batch.v_mv[k], single.v_mv, rtol=0, atol=atol_mv)


def test_thousands_of_traces_in_one_batch():
    stim = stimuli.white_noise(10.0, seed=2, batch=2000, n_samples=400)
    r = get_backend("numba").run(stim)
    assert r.v_mv.shape == (2000, 400) and not r.any_diverged
    np.testing.assert_allclose(r.v_mv[1234], get_backend("numba").run(
        stimuli.Stimulus(current_ua=stim.current_ua[1234])).v_mv)


@pytest.mark.parametrize("kind", STIMULI)
@pytest.mark.parametrize("name, rmse_bound_mv, count_tolerance", [("odeint", 0.01, 0),
                                                                  ("exp-euler", 10.0, 1)])
def test_close_to_the_converged_reference(reference, kind, name, rmse_bound_mv, count_tolerance):
    """odeint (LSODA at rtol 1.5e-8, restarted where the current steps) is within 0.01 mV RMS
    of the converged reference, with the same spikes; the first-order exponential Euler at dt = 0.05 ms within 10 mV RMS (spike times drift by
    a fraction of a ms, and a spike is 100 mV tall) and ±1 spike."""
    stim = STIMULI[kind]()
    ref = reference.run(stim)
    r = get_backend(name).run(stim)
    assert np.all(metrics.rmse_mv(ref.v_mv, r.v_mv) < rmse_bound_mv)
    count_error = metrics.spike_count(r.v_mv) - metrics.spike_count(ref.v_mv)
    assert np.all(np.abs(count_error) <= count_tolerance)


@pytest.mark.parametrize("name, substeps, order", [("numba", (8, 16, 32), 1),
                                                   ("exp-euler", (1, 2, 4), 1)])
def test_halving_dt_converges_at_the_method_order(reference, name, substeps, order):
    """Halving dt divides the error by 2**order at least. Forward Euler is first order,
    and shows exactly that. Exponential Euler (gates first) is first order too, but its
    first-order error constant is so small that on this trace its error falls ~4x per
    halving over these steps (the second-order term dominates); its steps start at the
    lab's dt so that its error stays far above the reference's 0.01 mV."""
    stim = stimuli.step(10.0, n_samples=600)
    ref = reference.run(stim).v_mv
    errors = [np.max(np.abs(get_backend(name, substeps=k).run(stim).v_mv - ref))
              for k in substeps]
    assert min(errors) > 0.1  # well above the reference's own error
    rates = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    if name == "numba":
        np.testing.assert_allclose(rates, order, atol=0.15)
    else:
        assert np.all(rates > order - 0.15)


def test_exp_euler_error_at_most_1p5_times_euler(reference):
    """At the lab's dt = 0.05 ms on the lab's default step, the gates-first exponential Euler
    is about as accurate as forward Euler (its former, Rush-Larsen update was ~10x worse)."""
    stim = stimuli.step(20.0)
    ref = reference.run(stim).v_mv
    euler = metrics.rmse_mv(ref, get_backend("numba").run(stim).v_mv)
    expo = metrics.rmse_mv(ref, get_backend("exp-euler").run(stim).v_mv)
    assert expo <= 1.5 * euler
    assert expo < 5.0  # mV; Rush-Larsen's update gives ~28 mV here


def test_reference_is_converged_to_0p01_mv(reference):
    stim = stimuli.Stimulus(current_ua=np.vstack([stimuli.step([3.0, 20.0]).current_ua,
                                                   stimuli.sine(0.05).current_ua,
                                                   stimuli.white_noise(seed=5).current_ua]))
    r = reference.run(stim)
    assert r.info["converged"] and r.info["convergence_mv"] < 0.01
    # independently: twice as many substeps moves V by less than 0.01 mV
    from hhbench.backends import numba_engine
    finer, _ = numba_engine.integrate(stim.current_ua, stim.dt_ms, "exp-midpoint",
                                      2 * r.info["substeps"])
    assert np.max(np.abs(finer - r.v_mv)) < 0.01


# -- divergence ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_euler_divergence_is_flagged_once_without_numpy_warnings(name):
    stim = stimuli.step([20.0, -20.0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = get_backend(name).run(stim)
    assert r.diverged.tolist() == [False, True]
    assert [w.category for w in caught] == [DivergenceWarning]
    assert "1 of 2 traces diverged" in str(caught[0].message)
    bad = r.v_mv[1]
    first_nan = np.flatnonzero(np.isnan(bad))[0]
    assert np.all(np.isnan(bad[first_nan:])) and np.all(np.isfinite(bad[:first_nan]))
    assert np.all(np.isfinite(r.v_mv[0]))


@pytest.mark.parametrize("stim", [lambda: stimuli.step(-20.0), lambda: stimuli.sine(0.05),
                                  lambda: stimuli.step(1000.0)])
def test_exp_euler_stays_finite_where_euler_overflows(stim):
    s = stim()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)
        assert get_backend("numba").run(s).diverged.all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = get_backend("exp-euler").run(s)
    assert not r.any_diverged and np.all(np.abs(r.v_mv) < 1000)


def test_gates_come_back_on_request():
    r = get_backend("numba").run(stimuli.step(20.0), gates=True)
    assert set(r.gates) == {"m", "h", "n"}
    assert all(0 <= r.gates[g].min() and r.gates[g].max() <= 1 for g in "mhn")
    assert get_backend("numba").run(stimuli.step(20.0)).gates is None


def test_bad_substeps():
    with pytest.raises(HHBenchError, match="substeps"):
        get_backend("numba", substeps=0)


def test_the_numba_driver_compiles_once_for_writable_and_read_only_currents():
    # a stimulus' current is read-only, a caller's array writable: numba types them apart,
    # and a second compilation of a driver costs seconds in every fresh process
    from hhbench.backends import numba_engine
    stim = stimuli.step([3.0, 20.0])
    writable = np.array(stim.current_ua)
    assert not stim.current_ua.flags.writeable and writable.flags.writeable
    a, _ = numba_engine.integrate(writable, stim.dt_ms, "euler")
    b, _ = numba_engine.integrate(stim.current_ua, stim.dt_ms, "euler")
    np.testing.assert_array_equal(a, b)
    assert len(numba_engine._driver("euler").signatures) == 1
