"""The GPU engines' data path and device choice, without a GPU.

numba-cuda runs in numba's CUDA simulator in a subprocess of its own (it reads
NUMBA_ENABLE_CUDASIM at import); JAX in a subprocess whose CPU is split into two devices
(`--xla_force_host_platform_device_count=2`), standing in for two GPUs. Each subprocess
computes what the tests assert and hands it back as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.util import find_spec

import pytest

needs_cuda = pytest.mark.skipif(find_spec("numba_cuda") is None,
                                reason="numba-cuda is not installed (pip install 'hhbench[cuda]')")
needs_jax = pytest.mark.skipif(find_spec("jax") is None,
                               reason="JAX is not installed (pip install 'hhbench[jax]')")

CUDA_SCRIPT = textwrap.dedent(r"""
    import json, warnings
    import numpy as np
    from numba import cuda
    from numba.cuda.simulator.cudadrv import devices as simdev
    from hhbench import model, stimuli
    from hhbench.backends import cuda_engine, get_backend, kernels
    from hhbench.errors import DivergenceWarning

    out = {}
    warnings.simplefilter("ignore", DivergenceWarning)
    # 130 traces: more than one block of 128 threads, and partial transpose tiles
    amps = [float(a) for a in np.linspace(-25.0, 40.0, 130)]
    # few samples: the simulator runs each of the 130 threads in Python
    stim = stimuli.step(amps, onset_ms=0.1, n_samples=10)
    ref = get_backend("numpy").run(stim)
    v, div = cuda_engine.integrate_marked(stim.current_ua, stim.dt_ms)
    fin = ~(div | ref.diverged)
    out["grid"] = {"shape": list(v.shape), "c_contiguous": bool(v.flags.c_contiguous),
                   "max_diff": float(np.abs(v[fin] - ref.v_batch[fin]).max()),
                   "flags_equal": bool(np.array_equal(div, ref.diverged)),
                   "distinct_traces": int(len({row.tobytes() for row in ref.v_batch[fin]})),
                   "finite_traces": int(fin.sum())}
    run = cuda_engine.DeviceRun(stim.current_ua, stim.dt_ms)
    run()
    vd, dd = run.result()
    out["device_run_equal"] = bool(np.array_equal(vd, v, equal_nan=True))

    # the tiled transpose kernel itself (the simulator's default is NumPy): partial tiles,
    # and the float64 -> float32 cast
    x = np.arange(37 * 45, dtype=np.float64).reshape(37, 45) / 7.0
    t64 = cuda_engine.device_transpose(cuda.to_device(x), "float64", tiled=True).copy_to_host()
    t32 = cuda_engine.device_transpose(cuda.to_device(x), "float32", tiled=True).copy_to_host()
    out["transpose"] = {"equal": bool(np.array_equal(t64, x.T)),
                        "f32_equal": bool(np.array_equal(t32, x.T.astype(np.float32))),
                        "f32_dtype": str(t32.dtype)}

    # the float32 step at exactly the removable singularities of αm (V = -40 mV) and αn
    # (V = -55 mV), and at rest, against the float64 NumPy step
    res = {}
    for name in ("euler", "exp-euler"):
        step = kernels.get_kernel(name).build(cuda_engine.device_kernels("float32"))

        @cuda.jit
        def apply(v, x, o):
            k = cuda.grid(1)
            if k < v.shape[0]:
                a, b, c, d = step(v[k], x[k], x[k], x[k], np.float32(0.0), np.float32(0.05))
                o[0, k] = a
                o[1, k] = b
                o[2, k] = c
                o[3, k] = d

        vv = np.asarray([-40.0, -55.0, -65.0], np.float32)
        xx = np.asarray([0.05, 0.6, 0.3], np.float32)
        o = np.zeros((4, 3), np.float32)
        apply[1, 32](vv, xx, o)
        step64 = kernels.get_kernel(name).build(model.NUMPY_KERNELS)
        want = np.asarray(step64(vv.astype(np.float64), xx.astype(np.float64),
                                 xx.astype(np.float64), xx.astype(np.float64), 0.0, 0.05))
        res[name] = {"finite": bool(np.isfinite(o).all()),
                     "max_rel": float(np.nanmax(np.abs(o - want) / np.maximum(np.abs(want),
                                                                              1e-3)))}
    out["singular"] = res

    # gpu:N: the simulator has one GPU, so an engine that uses the index refuses gpu 1
    try:
        cuda_engine.integrate_marked(np.zeros((1, 4)), 0.05, gpu=1)
        out["gpu1_of_one"] = "ran"
    except Exception as exc:
        out["gpu1_of_one"] = type(exc).__name__
    # a second simulated GPU, whose contexts record that they were entered
    entered = []

    class Recording(simdev.FakeCUDAContext):
        def __enter__(self):
            entered.append(self.id)

    cuda.gpus.lst = (Recording(0), Recording(1))
    backend = get_backend("numba-cuda", device="gpu:1")
    small = stimuli.step(20.0, n_samples=8)
    r = backend.run(small)
    out["run_entered"] = sorted(set(entered))
    entered.clear()
    call = backend.device_call(small)
    call()
    call.result()
    out["call_entered"] = sorted(set(entered))
    out["device"] = r.device
    cuda.gpus.lst = (simdev.FakeCUDAContext(0),)

    # floor and scaling time a GPU backend device only, with the round trip beside; a
    # GPU whose ceilings JAX cannot measure (JAX sees no GPU here) keeps its timed line
    from hhbench.floor import floor_report
    from hhbench.scaling import ScalingConfig, run_scaling
    from hhbench.timing import TimingSettings
    quick = TimingSettings(warmup_calls=0, min_repeats=2, min_time_s=0.0)
    rep = floor_report(("numba-cuda",), batch=2, device="gpu", n_samples=16, settings=quick,
                       ceilings={})
    line = rep["backends"][0]
    out["floor"] = {"achieved_s": line["achieved_s"], "round_trip_s": line["round_trip_s"],
                    "floor_s": line["floor_s"], "note": line["note"],
                    "ceilings": sorted(rep["ceilings"])}
    res = run_scaling(ScalingConfig(backends=("numba-cuda",), devices=("gpu",), max_batch=2,
                                    n_samples=16, lengths=(16,), budget_s=30.0, timing=quick))
    out["scaling"] = [{"round_trip_ms": p.get("round_trip_ms"), "call_ms": p["call_ms"]}
                      for p in res.rows()]
    print(json.dumps(out))
""")

JAX_SCRIPT = textwrap.dedent(r"""
    import json
    import numpy as np
    from hhbench import stimuli
    from hhbench.backends import jax_engine as je
    import jax

    cpus = jax.devices("cpu")
    assert len(cpus) == 2, cpus
    out = {}
    # two CPU devices standing in for two GPUs: gpu:N is the N-th
    out["gpu:0"] = [d.id for d in je.devices_for("gpu:0", gpus=cpus)]
    out["gpu:1"] = [d.id for d in je.devices_for("gpu:1", gpus=cpus)]
    out["gpu:all"] = [d.id for d in je.devices_for("gpu:all", gpus=cpus)]
    try:
        je.devices_for("gpu:2", gpus=cpus)
        out["gpu:2"] = "accepted"
    except Exception as exc:
        out["gpu:2"] = type(exc).__name__
    # the engine runs where it is told: every array of the call on the second device
    cur = stimuli.step([20.0, 5.0]).current_ua
    v, bad = je.device_call(cur, 0.05, "euler", "float64", je.devices_for("gpu:1", cpus))()
    out["call_on"] = sorted(d.id for d in v.sharding.device_set)
    rt, _, _ = je.integrate(cur, 0.05, "euler", "float64", je.devices_for("gpu:1", cpus))
    out["same_as_round_trip"] = bool(np.array_equal(np.asarray(v).T, rt))
    print(json.dumps(out))
""")


def _run(script: str, env_extra: dict) -> dict:
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    env.update(env_extra)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cuda_sim():
    return _run(CUDA_SCRIPT, {"NUMBA_ENABLE_CUDASIM": "1"})


@pytest.fixture(scope="module")
def jax_two():
    return _run(JAX_SCRIPT, {"XLA_FLAGS": "--xla_force_host_platform_device_count=2",
                             "JAX_PLATFORMS": "cpu"})


@needs_cuda
def test_cuda_grid_covers_every_trace(cuda_sim):
    """Catches a grid rounded down (traces past the first block never run) or a transpose
    that drops a partial tile: 130 different traces, each equal to numpy's within 1e-9 mV,
    the same ones diverged, returned C-contiguous (batch, samples)."""
    g = cuda_sim["grid"]
    assert g["shape"] == [130, 10] and g["c_contiguous"]
    assert g["finite_traces"] > 100 and g["distinct_traces"] == g["finite_traces"]
    assert g["max_diff"] < 1e-9 and g["flags_equal"]
    assert cuda_sim["device_run_equal"]


@needs_cuda
def test_cuda_tiled_transpose(cuda_sim):
    """Catches a tile index swapped, a bound check off by one (37 × 45: partial tiles on
    both axes) or a cast that is lost."""
    t = cuda_sim["transpose"]
    assert t["equal"] and t["f32_equal"] and t["f32_dtype"] == "float32"


@needs_cuda
@pytest.mark.parametrize("kernel", ["euler", "exp-euler"])
def test_cuda_float32_step_at_the_removable_singularities(cuda_sim, kernel):
    """Catches TINY flushed to 0 in the float32 kernels (αm's 0/0 at V = −40 mV, αn's at
    −55 mV give NaN): the float32 step there is finite and equals float64's to 1e-5."""
    got = cuda_sim["singular"][kernel]
    assert got["finite"]
    assert got["max_rel"] < 1e-5


@needs_cuda
def test_cuda_gpu_index_is_the_one_used(cuda_sim):
    """Catches gpu:N silently running on GPU 0: the engine refuses GPU 1 of a one-GPU
    simulator, and with a second simulated GPU the backend's run and device-only call
    enter GPU 1's context and no other."""
    assert cuda_sim["gpu1_of_one"] == "IndexError"
    assert cuda_sim["run_entered"] == [1]
    assert cuda_sim["call_entered"] == [1]
    assert cuda_sim["device"] == "gpu:1"


@needs_jax
def test_jax_gpu_index_is_the_one_used(jax_two):
    """Catches gpu:N mapped to the first device: with two devices standing in for GPUs,
    gpu:1 is the second, gpu:all both, gpu:2 refused, and the call's arrays live on the
    device asked for (and equal the round trip's V)."""
    assert jax_two["gpu:0"] == [0] and jax_two["gpu:1"] == [1]
    assert jax_two["gpu:all"] == [0, 1]
    assert jax_two["gpu:2"] == "CannotRunHere"  # an HHBenchError
    assert jax_two["call_on"] == [1]
    assert jax_two["same_as_round_trip"]


@needs_cuda
def test_floor_and_scaling_time_a_gpu_backend_device_only(cuda_sim):
    """Catches floor or scaling timing a GPU backend's host round trip as its device time
    (the round trip is kept beside), and a GPU without ceilings losing the timed line."""
    f = cuda_sim["floor"]
    assert f["achieved_s"] > 0 and f["round_trip_s"] > 0
    assert "device only" in f["note"] and "no floor" in f["note"] and f["floor_s"] is None
    assert f["ceilings"] == ["gpu:0"]  # the CPU's were not measured for a GPU-only report
    assert len(cuda_sim["scaling"]) == 3  # batch 1 and 2, length 16
    assert all(p["round_trip_ms"] is not None and p["call_ms"] > 0 for p in cuda_sim["scaling"])
