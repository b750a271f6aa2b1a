"""The `jax` backend: equal to `numpy` (forward Euler) and `exp-euler` in float64, float32
bounded, batch == singles, device resolution and options, sharding over several devices."""

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

pytest.importorskip("jax")

from hhbench import model, stimuli  # noqa: E402
from hhbench.backends import get_backend  # noqa: E402
from hhbench.backends.jax_euler import JaxEuler  # noqa: E402
from hhbench.devices import nvidia_driver_present  # noqa: E402
from hhbench.errors import DivergenceWarning, HHBenchError  # noqa: E402

STIMULI = {
    # the -20 µA/cm² step makes forward Euler diverge
    "step": lambda: stimuli.make("step", amplitude_ua=[3.0, 10.0, 20.0, -20.0]),
    "sine": lambda: stimuli.make("sine", freq_khz=[0.1, 0.5], amplitude_ua=20.0),
    # σ = 5 keeps the traces near threshold, where last-bit differences grow most
    "noise": lambda: stimuli.white_noise(5.0, seed=3, batch=6),
    "noise20": lambda: stimuli.white_noise(20.0, seed=1, batch=3),
}


def _run(name, stim, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)
        return get_backend(name, **options).run(stim)


def _equal_on_finite_traces(a, b, atol_mv):
    """Same traces diverged; every sample of every finite trace within atol_mv."""
    assert a.diverged.tolist() == b.diverged.tolist()
    ok = ~a.diverged
    assert np.all(np.isfinite(b.v_batch[ok]))
    err = np.max(np.abs(a.v_batch[ok] - b.v_batch[ok]))
    assert err < atol_mv, f"max |ΔV| = {err:.3g} mV"
    for row in np.flatnonzero(a.diverged):  # NaN from a first bad sample on, finite before
        bad = np.isnan(b.v_batch[row])
        first = np.flatnonzero(bad)[0]
        assert bad[first:].all() and not bad[:first].any()


@pytest.mark.parametrize("kind", STIMULI)
def test_float64_euler_equals_numpy(kind):
    stim = STIMULI[kind]()
    a = _run("numpy", stim)
    b = _run("jax", stim, device="cpu")
    assert b.v_mv.dtype == np.float64 and b.device == "cpu"
    _equal_on_finite_traces(a, b, 1e-9)
    if kind == "step":
        assert a.diverged.tolist() == [False, False, False, True]


@pytest.mark.parametrize("kind", STIMULI)
def test_float64_exp_euler_equals_the_exp_euler_backend(kind):
    stim = STIMULI[kind]()
    a = _run("exp-euler", stim)
    b = _run("jax", stim, device="cpu", kernel="exp-euler")
    assert not b.any_diverged  # stable where forward Euler overflows
    _equal_on_finite_traces(a, b, 1e-9)


def test_float32_is_close_to_float64():
    # a broken float32 kernel (a constant in the wrong precision, a 0/0 guard rounding to 0)
    # gives NaN or mV-sized errors; measured RMS here: ~1e-4 to 1.2e-3 mV per trace
    stim = stimuli.step([3.0, 10.0, 20.0])
    ref = _run("jax", stim, device="cpu")
    r = _run("jax", stim, device="cpu", precision="float32")
    assert r.v_mv.dtype == np.float32 and not r.any_diverged
    rms = np.sqrt(np.mean((r.v_mv.astype(np.float64) - ref.v_mv) ** 2, axis=1))
    assert np.all(rms < 0.05), rms
    # forward Euler diverges in float32 too, and is flagged
    assert _run("jax", stimuli.step(-20.0), device="cpu", precision="float32").diverged.all()


def test_float32_alpha_removable_singularity():
    # V = -40 mV makes αm's x exactly 0 (and V = -55 mV αn's) in float32 as in float64:
    # the fused rates' 0/0 guard must hold in float32 (model.TINY rounds to 0 there)
    import jax.numpy as jnp

    from hhbench.backends import jax_engine
    step = jax_engine.step_function("euler", "float32")
    v = jnp.asarray([-40.0, -55.0, -65.0], jnp.float32)
    x = jnp.asarray([0.05, 0.6, 0.3], jnp.float32)
    out = step(v, x, x, x, jnp.zeros(3, jnp.float32), 0.05)
    assert all(np.all(np.isfinite(np.asarray(o))) for o in out)
    ref = model.NUMPY_KERNELS.euler_step(np.asarray(v, np.float64), np.asarray(x, np.float64),
                                         np.asarray(x, np.float64), np.asarray(x, np.float64),
                                         0.0, 0.05)
    for got, want in zip(out, ref):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel", ["euler", "exp-euler"])
def test_batch_equals_singles(kernel):
    backend = get_backend("jax", device="cpu", kernel=kernel)
    amps = [3.0, 20.0, 7.0]
    batch = backend.run(stimuli.step(amps))
    for k, a in enumerate(amps):
        single = backend.run(stimuli.step(a))
        assert single.v_mv.shape == (2560,)
        # bit for bit: XLA's code for a batch of one differs (exp-euler by ~3e-12 mV),
        # so a lone trace runs padded (jax_engine.MIN_PER_DEVICE)
        np.testing.assert_array_equal(batch.v_mv[k], single.v_mv)


def test_gates_and_first_sample():
    r = get_backend("jax", device="cpu").run(stimuli.step(20.0), gates=True)
    g = get_backend("numpy").run(stimuli.step(20.0), gates=True)
    assert r.v_mv[0] == -70.0 and r.gates["m"][0] == 0.05
    for name in "mhn":
        assert np.max(np.abs(r.gates[name] - g.gates[name])) < 1e-11


def test_device_call_runs_on_the_device_and_matches_run():
    backend = get_backend("jax", device="cpu")
    stim = stimuli.step([20.0, -20.0])
    call = backend.device_call(stim)
    v, diverged = call()
    assert not isinstance(v, np.ndarray) and hasattr(v, "block_until_ready")  # a jax.Array
    r = _run("jax", stim, device="cpu")
    # laid out (samples, batch) on the device, as the scan writes it
    assert v.shape == (2560, 2)
    np.testing.assert_array_equal(np.asarray(v).T, r.v_mv)
    assert np.asarray(diverged).tolist() == [False, True]


def test_device_resolution_and_options():
    assert JaxEuler(device="cpu").device == "cpu"
    if not nvidia_driver_present():
        assert JaxEuler.visible_gpus() == 0  # JAX without a GPU backend raises: caught
        assert JaxEuler(device="auto").device == "cpu"
        for request in ("gpu", "gpu:1", "gpu:all"):
            with pytest.raises(HHBenchError, match="sees no GPU") as info:
                JaxEuler(device=request)
            assert "\n" not in str(info.value)
    with pytest.raises(HHBenchError, match="unknown device"):
        JaxEuler(device="tpu")
    with pytest.raises(HHBenchError, match="no kernel 'rk4'"):
        JaxEuler.check_options({"kernel": "rk4"})
    with pytest.raises(HHBenchError, match="no precision 'float16'"):
        JaxEuler.check_options({"precision": "float16"})
    with pytest.raises(HHBenchError, match="no option 'substeps'"):
        JaxEuler.check_options({"substeps": 2})
    with pytest.raises(HHBenchError, match="no kernel"):
        get_backend("jax", device="cpu", kernel="rush-larsen")
    assert JaxEuler.check_options({"kernel": "exp-euler", "precision": "float32"}) == {
        "kernel": "exp-euler", "precision": "float32"}
    s = JaxEuler(device="cpu", precision="float32").settings()
    assert s["precision"] == "float32" and s["platform"] == "cpu" and s["device"] == "cpu"
    assert JaxEuler(device="cpu").call_settings(1)["padded_batch"] == 2  # see MIN_PER_DEVICE
    assert JaxEuler(device="cpu").call_settings(1)["call_devices"] == 1


def test_engine_refuses_kernels_that_call_numpy():
    from hhbench.backends import jax_engine
    with pytest.raises(HHBenchError, match="does not run under jax"):
        jax_engine.step_name("exp-midpoint")


SHARDING_SCRIPT = textwrap.dedent("""
    import warnings
    warnings.simplefilter("ignore")
    import jax, numpy as np
    from hhbench import stimuli
    from hhbench.backends import jax_engine as je
    devices = jax.devices("cpu")
    assert len(devices) == 4, devices
    # 9 traces (padded to 12 over 4 devices), one diverging
    cur = np.vstack([stimuli.step(-20.0).current_ua,
                     stimuli.white_noise(20.0, seed=1, batch=8).current_ua])
    unsharded = {}
    for precision in ("float64", "float32"):
        one, _, bad1 = je.integrate(cur, 0.05, "euler", precision, devices[:1])
        unsharded[precision] = one
        four, _, bad4 = je.integrate(cur, 0.05, "euler", precision, devices)
        assert four.shape == (9, 2560)
        np.testing.assert_array_equal(one, four)
        assert bad1.tolist() == bad4.tolist() == [True] + [False] * 8
    v, bad = je.device_call(cur, 0.05, "euler", "float64", devices)()
    assert {d.id for d in v.sharding.device_set} == {0, 1, 2, 3}
    assert [s.data.shape for s in v.addressable_shards] == [(2560, 3)] * 4
    assert len({s.device.id for s in v.addressable_shards}) == 4
    np.testing.assert_array_equal(np.asarray(v).T[:9], unsharded["float64"])
    assert np.asarray(bad).tolist() == [True] + [False] * 11  # the padding rests
    # a batch too small to give each device two traces runs on fewer devices
    assert len(je.call_devices(devices, 5)) == 2 and len(je.call_devices(devices, 1)) == 1
    print("sharded ok")
""")


def test_sharding_over_four_forced_host_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SHARDING_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sharded ok" in proc.stdout
