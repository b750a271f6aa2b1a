"""The `numba-cuda` backend and its CUDA driver (`cuda_engine`), without a GPU.

numba reads NUMBA_ENABLE_CUDASIM when numba.cuda is first imported, and under it every
runtime reports a GPU (`devices.nvidia_driver_present`): so the kernels run in numba's
CUDA simulator in a subprocess of their own, which computes what the tests below assert
and hands it back as JSON (small batches, short traces: the simulator runs each thread in
Python). A second subprocess compiles every kernel to PTX for an H100 (sm_90) where
numba-cuda's compiler (NVVM and libdevice) is installed, which the simulator cannot check:
that the kernels compile for a real GPU at all (with the NumPy installed here: NumPy 2.5
needs `hhbench.runtimes.numba_cuda.numpy_compat`), and that float32 kernels contain no
float64 instruction. It skips only where NVVM is absent; any other error fails it. The
file is skipped where numba-cuda is not installed (the core install).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.util import find_spec

import pytest

from hhbench.backends import check_name
from hhbench.devices import DeviceNotSupported
from hhbench.errors import HHBenchError

pytestmark = pytest.mark.skipif(find_spec("numba_cuda") is None,
                                reason="numba-cuda is not installed (pip install 'hhbench[cuda]')")

#: the simulator's checks; prints one JSON object
SIMULATOR_SCRIPT = textwrap.dedent(r"""
    import json, warnings
    import numpy as np
    from hhbench import stimuli
    from hhbench.backends import check_name, cuda_engine, get_backend, kernels, numba_engine
    from hhbench.errors import DivergenceWarning

    N = 400  # 20 ms at 20 kHz; the stimuli start at 2 ms
    STIMULI = {
        # 20: spikes; 5: subthreshold; -20: forward Euler diverges (SPEC)
        "step": stimuli.step([20.0, 5.0, -20.0], onset_ms=2.0, n_samples=N),
        "sine": stimuli.sine(0.2, amplitude_ua=15.0, onset_ms=2.0, n_samples=N),
        # the lab's 80 µA/cm² sine: its negative half makes forward Euler diverge
        "sine80": stimuli.sine(0.05, amplitude_ua=80.0, onset_ms=2.0, n_samples=N),
        "noise": stimuli.white_noise(20.0, onset_ms=2.0, batch=3, n_samples=N),
    }

    def compare(a, b, div_a, div_b):
        finite = ~(div_a | div_b)
        diff = np.abs(a[finite] - b[finite])
        first_nan = lambda v: [int(np.argmax(np.isnan(row))) if np.isnan(row).any() else -1
                               for row in v]
        return {"max_diff": float(diff.max()) if diff.size else 0.0,
                "flags": [np.asarray(div_a).tolist(), np.asarray(div_b).tolist()],
                "nan_only_where_diverged": bool(not np.isnan(a[finite]).any()),
                "first_nan": [first_nan(a), first_nan(b)],
                # a diverged trace stays NaN from its first NaN to its end
                "nan_to_the_end": [bool(np.isnan(row[k:]).all()) for row, k in
                                   zip(a, first_nan(a)) if k >= 0],
                # |V| of `a` at the sample before its first NaN: a runaway, not physiology
                "v_before_nan": [float(abs(row[k - 1])) for row, k in zip(a, first_nan(a))
                                 if k > 0],
                "max_v": float(np.nanmax(a))}

    out = {"euler": {}, "exp-euler": {}, "kernels": {}, "float32": {}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)
        for name, stim in STIMULI.items():
            ref = get_backend("numpy").run(stim)
            v, div = cuda_engine.integrate_marked(stim.current_ua, stim.dt_ms, "euler")
            out["euler"][name] = compare(v, ref.v_batch, div, ref.diverged)
            out["euler"][name]["dtype"] = str(v.dtype)
            cpu = get_backend("exp-euler").run(stim)
            ve, dive = cuda_engine.integrate_marked(stim.current_ua, stim.dt_ms, "exp-euler")
            out["exp-euler"][name] = compare(ve, cpu.v_batch, dive, cpu.diverged)
            for kernel, v64, d64 in (("euler", v, div), ("exp-euler", ve, dive)):
                v32, d32 = cuda_engine.integrate_marked(stim.current_ua, stim.dt_ms, kernel,
                                                        "float32")
                ok = ~(d64 | d32)
                err = (v32.astype(np.float64) - v64)[ok]
                out["float32"][f"{kernel}/{name}"] = {
                    "dtype": str(v32.dtype), "flags": [d32.tolist(), d64.tolist()],
                    "rms": float(np.sqrt(np.mean(err ** 2))) if err.size else None,
                    "max": float(np.abs(err).max()) if err.size else None}
        # every registered kernel against the CPU engine's, on the step
        stim = STIMULI["step"]
        for kernel in kernels.kernel_classes():
            v, div = cuda_engine.integrate_marked(stim.current_ua, stim.dt_ms, kernel)
            cv, _, cdiv = numba_engine.integrate_marked(stim.current_ua, stim.dt_ms, kernel)
            out["kernels"][kernel] = compare(v, cv, div, cdiv)

    # the backend: device resolution, run (round trip) and device_call (device only)
    cls = check_name("numba-cuda")
    out["visible_gpus"] = cls.visible_gpus()
    out["auto"] = cls.resolve_device("auto")
    for request in ("gpu:1", "gpu:all"):
        try:
            cls.resolve_device(request)
            out[request] = "accepted"
        except Exception as exc:
            out[request] = type(exc).__name__
    backend = get_backend("numba-cuda")
    stim = STIMULI["step"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = backend.run(stim)
    out["run"] = {"device": result.device, "diverged": result.diverged.tolist(),
                  "warnings": [type(w.message).__name__ for w in caught],
                  "shape": list(result.v_batch.shape)}
    call = backend.device_call(stim)
    # V's buffer on the device filled with a sentinel first (device_array leaves it
    # unwritten, possibly holding the run's numbers): a call that writes nothing leaves it
    call.d_v.copy_to_device(np.full(call.d_v.shape, -12345.0, dtype=call.d_v.dtype))
    v_before = call.result()[0].copy()
    returned = call()
    v_dev, div_dev = call.result()
    out["device_call"] = {
        "returns": repr(returned),
        "equal_to_run": bool(np.array_equal(v_dev, result.v_batch, equal_nan=True)),
        "flags": div_dev.tolist(),
        "wrote_output": bool((v_before == -12345.0).all()
                             and not (v_dev == -12345.0).any())}
    out["settings"] = backend.settings()

    # the runtime: its ceilings measured through numba-cuda (tiny: the simulator), and
    # gpu:N as numba-cuda numbers its GPUs
    from hhbench.runtimes import get_runtime
    from hhbench.runtimes import cuda_ceilings
    from hhbench.timing import TimingSettings
    runtime = get_runtime("cuda")
    quick = TimingSettings(warmup_calls=0, min_repeats=1, min_time_s=0.0)
    out["ceilings"] = cuda_ceilings.measure_device_ceilings(0, n=32, settings=quick)
    xs = np.linspace(0.0, 1.0, 32)
    for op, step in (("exp", lambda v: -np.exp(v)), ("fma", lambda v: v * 0.999 - 0.001)):
        x = cuda_ceilings.cuda_module().to_device(-xs)
        cuda_ceilings._kernel(op, "float64")[1, 32](x)
        want = -xs
        for _ in range(cuda_ceilings.CHAIN):
            want = step(want)
        out[f"chain_{op}_max_diff"] = float(np.abs(x.copy_to_host() - want).max())
    out["runtime"] = {"gpus": runtime.gpu_count(), "gpu": runtime.resolve_gpu("gpu"),
                      "index": runtime.gpu_index("gpu:0")}
    try:
        runtime.resolve_gpu("gpu:1")
        out["runtime"]["gpu:1"] = "accepted"
    except Exception as exc:
        out["runtime"]["gpu:1"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(out))
""")

#: compiles every kernel to PTX for sm_90 without a GPU; prints one JSON object. Skips
#: (prints {"skip": why}) only where NVVM is not installed, as numba-cuda's own library
#: finder (cuda.pathfinder) reports it; any other error fails the script, and the test
PTX_SCRIPT = textwrap.dedent(r"""
    import json, re, sys
    from cuda.pathfinder import DynamicLibNotFoundError, load_nvidia_dynamic_lib

    def found(lib):
        try:
            load_nvidia_dynamic_lib(lib)
        except DynamicLibNotFoundError:
            return False
        return True

    if not found("nvvm"):
        print(json.dumps({"skip": "numba-cuda's compiler NVVM is not installed "
                                  "(pip install 'hhbench[cuda]' installs it)"}))
        sys.exit(0)
    from hhbench.runtimes.numba_cuda import module
    cuda = module()  # the NumPy >= 2.5 shim, as the backend applies it
    from numba import float32, float64, int64
    if not found("nvrtc"):
        # numba-cuda asks NVRTC which architectures it supports; where NVVM and libdevice
        # are installed without NVRTC, answer for it (sm_90 is among them)
        from numba.cuda.cudadrv import nvrtc
        nvrtc.get_supported_ccs = lambda: ((7, 5), (8, 0), (8, 6), (8, 9), (9, 0))
    from hhbench.backends import cuda_engine, kernels
    from hhbench.runtimes import cuda_ceilings
    out = {}
    compiled = []
    for precision, ty in (("float64", float64), ("float32", float32)):
        for name in kernels.kernel_classes():
            func = cuda_engine.kernel(name, precision).py_func
            compiled.append((f"{name}/{precision}", func,
                             (ty[:, :], ty[:, :], int64[:], ty, int64)))
        for op in ("exp", "fma"):  # the runtime's ceiling kernels
            compiled.append((f"ceiling-{op}/{precision}",
                             cuda_ceilings._kernel(op, precision).py_func, (ty[:],)))
        # the device transpose: the host's float64 current in, `precision` out
        compiled.append((f"transpose/{precision}",
                         cuda_engine._transpose_kernel(precision).py_func,
                         (float64[:, :], ty[:, :])))
    for case, func, signature in compiled:
        ptx, _ = cuda.compile_ptx(func, signature, cc=(9, 0))
        ops = re.findall(r"^\s*([a-z][a-z0-9_.]*)", ptx, re.M)
        out[case] = {
            "target": re.findall(r"^\.target\s+(\S+)", ptx, re.M),
            # every instruction on float64 values (arithmetic, conversions, loads ...)
            "f64_instructions": sorted({o for o in ops if ".f64" in o}),
            "f64_registers": len(re.findall(r"\.reg\s+\.f64", ptx)),
            "f64_arithmetic": sorted({o for o in ops if o.endswith(".f64")
                                      and not o.startswith(("cvt", "ld", "st", "mov"))}),
            "f32_arithmetic": sorted({o for o in ops if o.endswith(".f32")})[:3],
            "calls": len(re.findall(r"\bcall(\.uni)?\b", ptx))}
    print(json.dumps(out))
""")


def _run_script(script: str, simulator: bool) -> dict:
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if simulator:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def sim():
    return _run_script(SIMULATOR_SCRIPT, simulator=True)


@pytest.fixture(scope="module")
def ptx():
    out = _run_script(PTX_SCRIPT, simulator=False)
    if "skip" in out:
        pytest.skip(out["skip"])
    return out


@pytest.mark.parametrize("stim", ["step", "sine", "sine80", "noise"])
def test_float64_euler_equals_numpy(sim, stim):
    """Catches a wrong equation, state order, time offset (V recorded after instead of
    before the step), transposed layout, or a lost fma/exp: every sample of every finite
    trace within 1e-9 mV of the lab's NumPy Euler, the same traces flagged diverged, NaN
    only in those, and a spike among them (V > 0 mV, where the dynamics amplify errors)."""
    got = sim["euler"][stim]
    assert got["dtype"] == "float64"
    assert got["max_diff"] < 1e-9
    assert got["flags"][0] == got["flags"][1]
    assert got["nan_only_where_diverged"]
    if stim != "sine80":
        assert got["max_v"] > 0.0  # a spike


def test_divergence_is_flagged_and_nan_from_the_first_bad_sample(sim):
    """Catches a driver that misses divergence, flags the wrong trace, or NaNs from the
    wrong place: the −20 µA/cm² step and the 80 µA/cm² sine diverge (SPEC) and only they,
    NaN from about where NumPy's trace goes bad, and just after a sample that was already
    running away. The exponentials' last bits move the crossing of ±1e4 mV by a few
    samples on a runaway trace (measured: 225 here, 223 NumPy, 228 the CPU engine)."""
    step = sim["euler"]["step"]
    assert step["flags"] == [[False, False, True]] * 2
    assert sim["euler"]["sine80"]["flags"] == [[True], [True]]
    for got in (step, sim["euler"]["sine80"]):
        for ours, numpy_first in zip(*got["first_nan"]):
            assert (ours < 0) == (numpy_first < 0)
            assert abs(ours - numpy_first) <= 10
        assert got["nan_to_the_end"] and all(got["nan_to_the_end"])
        assert got["v_before_nan"] and min(got["v_before_nan"]) > 100.0  # beyond any physiology


@pytest.mark.parametrize("stim", ["step", "sine", "sine80", "noise"])
def test_float64_exp_euler_equals_the_cpu_backend(sim, stim):
    """Catches a kernel taken from the wrong registry entry or built differently from the
    CPU engine's: "exp-euler" equals the CPU `exp-euler` backend within 1e-9 mV, and it
    never diverges (not even on the −20 step)."""
    got = sim["exp-euler"][stim]
    assert got["max_diff"] < 1e-9
    assert got["flags"][0] == got["flags"][1] and not any(got["flags"][0])


def test_every_registered_kernel_equals_the_cpu_engine(sim):
    """Catches a kernel that the device build breaks (the plain kernels' np.exp/np.expm1
    swapped for math's): every registered step kernel equals the CPU engine's."""
    assert set(sim["kernels"]) >= {"euler", "exp-euler", "exp-midpoint", "rush-larsen"}
    for name, got in sim["kernels"].items():
        assert got["max_diff"] < 1e-9, name
        assert got["flags"][0] == got["flags"][1], name


def test_float32_is_float32_and_close_to_float64(sim):
    """Catches a float32 kernel that is broken (wrong constants, TINY flushed to 0 giving
    NaN at V = −40 mV) or secretly float64 on the host side: V comes back float32, the
    same traces diverge, and on the others it stays within 0.1 mV RMS of float64
    (measured in the simulator: ≤ 2e-3 mV RMS, ≤ 0.013 mV at worst, over 20 ms)."""
    for case, got in sim["float32"].items():
        assert got["dtype"] == "float32", case
        assert got["flags"][0] == got["flags"][1], case
        if got["rms"] is not None:
            assert got["rms"] < 0.1, case
            assert got["max"] < 1.0, case


def test_backend_run_and_device_call(sim):
    """Catches a backend that loses the diverged flags or the device, warns more or less
    than once, or whose device-only call is not the same integration (or writes nothing,
    or copies back: it returns None and leaves V on the device)."""
    run = sim["run"]
    assert run["device"] == "gpu:0"
    assert run["diverged"] == [False, False, True]
    assert run["warnings"] == ["DivergenceWarning"]
    assert run["shape"] == [3, 400]
    call = sim["device_call"]
    assert call["returns"] == "None"
    assert call["equal_to_run"] and call["wrote_output"]
    assert call["flags"] == [False, False, True]
    settings = sim["settings"]
    assert settings["simulator"] is True and settings["threads_per_block"] in (128, 256)
    assert (settings["kernel"], settings["precision"]) == ("euler", "float64")


def test_device_resolution_under_the_simulator(sim):
    """Catches a GPU count or device resolution that ignores numba-cuda: the simulator is
    one GPU, "auto" picks it, gpu:1 (out of range) and gpu:all (one GPU only) cannot run
    here: the one exception whose case is recorded as skipped."""
    assert sim["visible_gpus"] == 1
    assert sim["auto"] == "gpu:0"
    assert sim["gpu:1"] == "CannotRunHere"
    assert sim["gpu:all"] == "CannotRunHere"


def test_kernels_compile_for_a_gpu_and_float32_stays_float32(ptx):
    """What the simulator cannot see: every registered kernel compiles to PTX for sm_90 in
    both precisions (the simulator runs any Python: np.exp, cuda.fma handed around as a
    value, or numba-cuda meeting NumPy 2.5 only fail here), calls nothing out of line, and
    the float32 kernels contain no float64 instruction or register at all (a float64
    literal would promote a whole expression, a float64 argument add conversions)."""
    from hhbench.backends import kernels
    names = [*kernels.kernel_classes(), "ceiling-exp", "ceiling-fma", "transpose"]
    assert set(ptx) == {f"{k}/{p}" for k in names for p in ("float64", "float32")}
    for case, got in ptx.items():
        assert got["target"] == ["sm_90"], case
        assert got["calls"] == 0, case
        if case.startswith("transpose/"):  # it reads float64 by design and computes nothing
            continue
        if case.endswith("float32"):
            assert got["f64_instructions"] == [] and got["f64_registers"] == 0, case
            assert got["f32_arithmetic"], case
        else:
            assert got["f64_arithmetic"], case


def test_the_runtime_measures_its_ceilings_through_numba_cuda(sim):
    """Catches ceilings of a numba-cuda GPU taken from another runtime, a chain kernel
    that computes something else than it counts (the rate would be of other work), or a
    gpu:N the runtime does not check: the four exp/fma rates come from numba-cuda's own
    kernels (no matmul: None), which compute x ← −exp(x) and x ← 0.999·x − 0.001 CHAIN
    times as NumPy does; the simulator's one GPU is gpu:0 and gpu:1 cannot run here."""
    rates = sim["ceilings"]
    assert rates["matmul_f32_flops"] is None and rates["matmul_f64_flops"] is None
    for key in ("exp_f64_per_s", "exp_f32_per_s", "fma_f64_per_s", "fma_f32_per_s"):
        assert rates[key] > 0, key
    assert sim["chain_exp_max_diff"] < 1e-12 and sim["chain_fma_max_diff"] < 1e-12
    assert sim["runtime"]["gpus"] == 1 and sim["runtime"]["gpu"] == "gpu:0"
    assert sim["runtime"]["index"] == 0
    assert sim["runtime"]["gpu:1"].startswith("CannotRunHere: device 'gpu:1' requested but "
                                              "numba-cuda sees 1 GPU")


def test_cpu_is_refused_and_options_are_checked():
    """Catches a GPU-only backend that accepts the CPU, or options it would fail on later:
    one line each, before any work (no GPU needed)."""
    cls = check_name("numba-cuda")
    assert cls.device_kinds == ("gpu",) and cls.runtime == "cuda"
    with pytest.raises(DeviceNotSupported):
        cls.resolve_device("cpu")
    for options, word in (({"kernel": "rk4"}, "kernel"), ({"precision": "float16"}, "precision"),
                          ({"threads": 2}, "option"), ({"device": "gpu"}, "option")):
        with pytest.raises(HHBenchError, match=word) as info:
            cls.check_options(options)
        assert "\n" not in str(info.value)
    assert cls.check_options({"kernel": "exp-euler", "precision": "float32"}) == {
        "kernel": "exp-euler", "precision": "float32"}


#: numba finds no folder to cache kernels in (every locator refused), real numba-cuda (no
#: simulator, no GPU needed: the cache is set up when a kernel is decorated)
NO_LOCATOR_SCRIPT = textwrap.dedent(r"""
    import importlib, json, warnings
    from hhbench.runtimes.numba_cuda import module
    module()  # NumPy 2.5 made compilable first
    from hhbench.backends import cuda_engine
    caching = importlib.import_module("numba.cuda.core.caching")
    for cls in vars(caching).values():
        if isinstance(cls, type) and "_locator_classes" in vars(cls):
            cls._locator_classes = []
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        kernels = [cuda_engine.kernel("euler", "float64"),
                   cuda_engine._transpose_kernel("float32")]
    print(json.dumps({"types": [type(k).__name__ for k in kernels],
                      "no_cache": cuda_engine._NO_CACHE,
                      "warnings": [str(w.message) for w in got
                                   if issubclass(w.category, RuntimeWarning)]}))
""")


def test_kernels_compile_without_the_cache_where_no_cache_folder_is_writable():
    """Catches `cuda.jit(cache=True)` raising RuntimeError ("no locator available") where
    no cache folder is writable (a read-only checkout and home): every kernel is then
    compiled without the cache, tried once and said once."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", NO_LOCATOR_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["types"] == ["CUDADispatcher", "CUDADispatcher"]
    assert "no locator available" in got["no_cache"]
    assert len(got["warnings"]) == 1 and "compiled without it" in got["warnings"][0]


def test_jit_cached_falls_back_once_and_lets_other_errors_through(monkeypatch):
    from hhbench.backends import cuda_engine
    monkeypatch.setattr(cuda_engine, "_NO_CACHE", None)
    asked = []

    class _Cuda:
        def jit(self, func=None, cache=False):
            asked.append(cache)
            if cache:
                def deco(f):
                    raise RuntimeError("cannot cache function 'f': no locator available "
                                       "for file 'x.py'")
                return deco
            return ("compiled", func)

    def f():
        pass
    with pytest.warns(RuntimeWarning, match="compiled without it"):
        assert cuda_engine.jit_cached(_Cuda(), f) == ("compiled", f)
    assert cuda_engine.jit_cached(_Cuda(), f) == ("compiled", f)
    assert asked == [True, False, False]  # the cache tried once
    monkeypatch.setattr(cuda_engine, "_NO_CACHE", None)

    class _Broken(_Cuda):
        def jit(self, func=None, cache=False):
            raise RuntimeError("something else")
    with pytest.raises(RuntimeError, match="something else"):
        cuda_engine.jit_cached(_Broken(), f)
