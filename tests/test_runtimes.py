"""The runtime layer (`hhbench.runtimes`): one module per runtime, asked by the harness.

No GPU is needed: the runtimes here see none (this machine), or are small runtimes
registered by the test as a plugin would register one, with the NVIDIA driver check
patched where a GPU must be possible at all."""

import pytest

from hhbench import devices
from hhbench.backends import check_name
from hhbench.errors import CannotRunHere, HHBenchError
from hhbench.runtimes import Runtime, get_runtime, process_env, register_runtime


class TwoGpus(Runtime):
    """A runtime that sees two GPUs (a plugin's)."""
    name = "test-two-gpus"
    label = "two-GPU runtime"

    def gpu_count(self):
        return 2


class NoGpus(Runtime):
    """A GPU runtime that is installed but sees no GPU."""
    name = "test-no-gpus"
    label = "empty runtime"


@pytest.fixture
def driver(monkeypatch):
    """Pretend an NVIDIA driver is loaded (the runtime's GPU count still decides)."""
    import hhbench.backends.base as base
    for mod in (devices, base):
        monkeypatch.setattr(mod, "nvidia_driver_present", lambda: True)


def test_a_runtime_with_no_devices_cannot_run_a_gpu_request(driver):
    """Catches a GPU request resolved without asking the runtime (gpu:0 handed out
    anyway): one line naming the runtime, of the one "cannot run here" type."""
    runtime = register_runtime(NoGpus())
    for request in ("gpu", "gpu:0", "gpu:all"):
        with pytest.raises(CannotRunHere, match="empty runtime sees no GPU") as info:
            runtime.resolve_gpu(request)
        assert "\n" not in str(info.value)
    with pytest.raises(CannotRunHere):
        runtime.native_device("gpu:0")
    # numba on the CPU, a runtime of this package, sees none either
    with pytest.raises(CannotRunHere, match="sees no GPU"):
        get_runtime(None).resolve_gpu("gpu:0")


def test_gpu_n_out_of_range_names_what_the_runtime_sees(driver):
    """Catches an off-by-one or an unchecked index: gpu:0 and gpu:1 are the two GPUs,
    gpu:2 is refused saying which exist, gpu:all is all of them."""
    runtime = register_runtime(TwoGpus())
    assert [runtime.resolve_gpu(r) for r in ("gpu", "gpu:0", "gpu:1", "gpu:all")] == [
        "gpu:0", "gpu:0", "gpu:1", "gpu:all"]
    assert runtime.gpu_index("gpu:1") == 1
    with pytest.raises(CannotRunHere, match=r"sees 2 GPUs \(gpu:0 to gpu:1\)"):
        runtime.resolve_gpu("gpu:2")
    with pytest.raises(CannotRunHere, match="not gpu:all"):
        runtime.gpu_index("gpu:all")


def test_without_a_driver_no_runtime_sees_a_gpu(monkeypatch):
    """Catches a runtime trusted over the machine: with no NVIDIA driver even a runtime
    that reports GPUs resolves none."""
    monkeypatch.setattr(devices, "nvidia_driver_present", lambda: False)
    with pytest.raises(CannotRunHere):
        register_runtime(TwoGpus()).resolve_gpu("gpu:0")


def test_backends_ask_their_runtime_for_gpus(driver):
    """Catches a backend that counts GPUs its own way: a GPU backend whose runtime is the
    two-GPU runtime resolves gpu:1 and refuses gpu:2; with the empty runtime it is
    skipped (CannotRunHere), and "auto" falls back to the CPU."""
    from hhbench.backends.base import Backend

    register_runtime(TwoGpus())
    register_runtime(NoGpus())

    class OnTwo(Backend):
        name = "test-on-two"
        device_kinds = ("cpu", "gpu")
        runtime = "test-two-gpus"

    class OnNone(OnTwo):
        name = "test-on-none"
        runtime = "test-no-gpus"

    assert OnTwo.visible_gpus() == 2 and OnTwo.resolve_device("gpu:1") == "gpu:1"
    with pytest.raises(CannotRunHere):
        OnTwo.resolve_device("gpu:2")
    assert OnNone.visible_gpus() == 0 and OnNone.resolve_device("auto") == "cpu"
    with pytest.raises(CannotRunHere):
        OnNone.resolve_device("gpu")


def test_every_runtime_is_known_and_sets_up_fresh_processes():
    """Catches a runtime missing from the registry, or a process set-up lost in the
    merge: the four runtimes answer, and a fresh process' environment gets JAX's
    preallocation off and TensorFlow's logging down, without overriding the user's."""
    for name, label in ((None, "numba (CPU)"), ("cuda", "numba-cuda"), ("jax", "JAX"),
                        ("tensorflow", "TensorFlow")):
        assert get_runtime(name).label == label
    assert check_name("numba-cuda").runtime == "cuda"
    env = process_env({"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert env == {"TF_CPP_MIN_LOG_LEVEL": "0", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    with pytest.raises(HHBenchError, match="unknown runtime"):
        get_runtime("no-such-runtime")


def test_jax_sees_no_gpu_here_and_says_so():
    """Catches a JAX device helper that hands out the CPU for a GPU request: on this
    machine (no GPU) the JAX runtime refuses gpu:0 as "cannot run here"."""
    runtime = get_runtime("jax")
    if not runtime.is_available():
        pytest.skip("JAX is not installed (pip install 'hhbench[jax]')")
    if runtime.gpu_count():
        pytest.skip("JAX sees a GPU here")
    assert runtime.native_device("cpu").platform == "cpu"
    with pytest.raises(CannotRunHere):
        runtime.native_device("gpu:0")


# -- precisions, ceilings, synchronisation, memory: declared by the runtime ---------------

def test_backends_take_their_precisions_from_their_runtime():
    """Catches a backend with its own list of precisions beside its runtime's: the `jax`
    and `numba-cuda` backends offer exactly their runtime's precisions (float64 and
    float32), the CNN exactly its runtimes' network precisions; an unknown precision is
    refused, in one line naming the value, by the backend, the runtime and the engine."""
    from hhbench import cnn_modes
    from hhbench.backends import cuda_engine

    for backend, runtime in (("jax", "jax"), ("numba-cuda", "cuda")):
        cls = check_name(backend)
        assert cls.option_choices["precision"] is get_runtime(runtime).precisions
        assert cls.option_choices["precision"] == ("float64", "float32")
        with pytest.raises(HHBenchError, match="'float16'") as info:
            cls.check_options({"precision": "float16"})
        assert "\n" not in str(info.value)
    assert get_runtime("jax").network_precisions == ("float32", "tf32", "bfloat16")
    assert get_runtime("tensorflow").network_precisions == (
        "float32", "float16", "bfloat16", "float64")
    for runtime in ("jax", "tensorflow"):
        assert cnn_modes.PRECISIONS[runtime] is get_runtime(runtime).network_precisions
    with pytest.raises(HHBenchError, match="unknown precision 'float64' for the CNN's jax"):
        cnn_modes.check_precision("jax", "float64")
    # the backend's own check asks for the runtime first: only where JAX is installed does
    # it get to the precision (a core install refuses the runtime itself, tested elsewhere)
    if cnn_modes.stacks_present().get("jax"):
        with pytest.raises(HHBenchError, match="unknown precision 'float64' for the CNN's jax"):
            check_name("cnn").check_options({"runtime": "jax", "precision": "float64"})
    with pytest.raises(HHBenchError, match="unknown precision 'half'"):
        cuda_engine.check_precision("half")
    assert cuda_engine.check_precision("float32") is __import__("numpy").float32
    with pytest.raises(HHBenchError, match="'tf32' for numba-cuda; use float64, float32"):
        get_runtime("cuda").check_precision("tf32")
    assert get_runtime("jax").check_precision("tf32", network=True) == "tf32"


class Ceiled(Runtime):
    """A runtime that declares ceilings of its own."""
    name = "test-ceiled"
    label = "Ceiled"
    has_ceilings = True

    def ceilings(self, device):
        return {"exp_f64_per_s": 1.0}


def test_the_ceilings_source_is_the_runtimes_declaration():
    """Catches ceilings looked for in a runtime that declares none (or ignored in one that
    does): a runtime with `has_ceilings` measures its own; one without (numba on the CPU,
    TensorFlow, the empty test runtime) leaves them to JAX."""
    from hhbench.floor import ceilings_source
    register_runtime(Ceiled())
    register_runtime(NoGpus())
    assert ceilings_source("test-ceiled") == "ceiled"
    assert ceilings_source("test-no-gpus") == "jax"
    assert ceilings_source("tensorflow") == "jax"
    assert get_runtime("cuda").has_ceilings and get_runtime("jax").has_ceilings
    assert not get_runtime(None).has_ceilings and not get_runtime("tensorflow").has_ceilings


class Waiting(Runtime):
    """A GPU runtime that notes every wait it is asked for, and reports 4,096 bytes in use."""
    name = "test-waiting"
    label = "waiting runtime"

    def __init__(self):
        self.waits = []

    def synchronize(self, device, value=None):
        self.waits.append((device, value))

    def memory_in_use(self, device):
        return 4096 if device == "gpu:0" else None


def _on_waiting_gpu():
    """A GPU backend of the waiting runtime whose device-only call returns its call
    number (what a framework returns still on the device)."""
    from hhbench.backends.base import Backend

    class OnWaiting(Backend):
        name = "test-on-waiting"
        device_kinds = ("gpu",)
        runtime = "test-waiting"
        calls = 0

        @property
        def device(self):
            return "gpu:0"

        def _integrate(self, current_ua, dt_ms, gates):
            return current_ua * 0.0 - 65.0, None

        def device_call(self, stimulus):
            def call():
                type(self).calls += 1
                return type(self).calls
            return call

    return OnWaiting()


def test_the_harness_waits_through_the_backends_runtime(monkeypatch):
    """Catches a device-only timing that decides for itself how to wait (or forgets to):
    the suite's case, the floor's line and the scaling sweep each ask the backend's
    runtime to synchronise after every device-only call, with that call's output, and the
    case records the memory the runtime reports in use."""
    from hhbench import floor, scaling, stimuli, suite
    from hhbench.runtimes import device_memory, device_only_call
    from hhbench.timing import TimingSettings

    runtime = register_runtime(Waiting())
    backend = _on_waiting_gpu()
    stim = stimuli.make("step", n_samples=50)
    quick = TimingSettings(warmup_calls=0, min_repeats=3, min_time_s=0)

    call = device_only_call(backend, stim)
    assert call() is None and runtime.waits == [("gpu:0", 1)]
    assert device_memory(backend) == 4096

    runtime.waits.clear()
    type(backend).calls = 0
    case, _ = suite.run_case(backend, stim, timing=quick, reference_name="converged")
    assert case.settings["device_memory_bytes"] == 4096
    assert runtime.waits == [("gpu:0", k) for k in range(1, type(backend).calls + 1)]
    assert type(backend).calls == 3  # cold=False: the three timed calls only

    runtime.waits.clear()
    type(backend).calls = 0
    monkeypatch.setattr(suite, "make_backend", lambda *a, **k: backend)
    line = floor.floor_line("test-on-waiting", None, batch=1, device="gpu", n_samples=50,
                            settings=quick)
    assert line.round_trip_s is not None and "device only" in line.note
    assert len(runtime.waits) == type(backend).calls == 4  # the cold call and three

    runtime.waits.clear()
    type(backend).calls = 0
    config = scaling.ScalingConfig(backends=("numpy",), max_batch=2, n_samples=50,
                                   timing=quick)
    points, _ = scaling._sweep(backend, config, "batch", (1, 2))
    assert [p.round_trip_s is not None for p in points] == [True, True]
    assert len(runtime.waits) == type(backend).calls == 8


def test_a_cpu_backend_has_no_device_only_call():
    """Catches the CPU path sent through a device wait: a CPU backend has no device-only
    call, and numba's CPU runtime waits for nothing and knows no memory in use."""
    from hhbench import stimuli
    from hhbench.backends import get_backend
    from hhbench.runtimes import device_memory, device_only_call

    backend = get_backend("numpy")
    assert device_only_call(backend, stimuli.make("step", n_samples=50)) is None
    assert backend.device_runtime() is get_runtime(None)
    assert device_memory(backend) is None and get_runtime(None).synchronize("cpu") is None
    # a backend whose device-only call also runs on the CPU (JAX) has it where asked for
    if get_runtime("jax").is_available():
        jax_cpu = get_backend("jax", device="cpu")
        stim = stimuli.make("step", n_samples=50)
        assert device_only_call(jax_cpu, stim) is None
        call = device_only_call(jax_cpu, stim, cpu=True)
        assert call is not None and call() is None
        assert jax_cpu.device_runtime() is get_runtime("jax")


@pytest.mark.parametrize("inherited", [
    {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.5"},
    {"XLA_CLIENT_MEM_FRACTION": "0.6", "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.5"}])
def test_no_worker_gets_both_jax_memory_fraction_names(monkeypatch, inherited):
    """Catches a user's shell with the deprecated XLA_PYTHON_CLIENT_MEM_FRACTION reaching
    `hhbench run`'s workers beside XLA_CLIENT_MEM_FRACTION: JAX 0.11's CUDA plugin refuses
    the pair and JAX runs on the CPU only. The new name keeps its value, or takes the old
    one's; jaxlib's own option builder accepts what the worker gets."""
    from hhbench.workers import worker_env
    for name in ("XLA_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_MEM_FRACTION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in inherited.items():
        monkeypatch.setenv(name, value)
    env = worker_env()
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in env
    assert env["XLA_CLIENT_MEM_FRACTION"] == inherited.get("XLA_CLIENT_MEM_FRACTION", "0.5")
    # in this process too (`Runtime.setup`, before JAX's first import)
    get_runtime("jax").setup()
    import os
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in os.environ
    xla_client = pytest.importorskip("jaxlib.xla_client")
    if hasattr(xla_client, "generate_pjrt_gpu_plugin_options"):
        options = xla_client.generate_pjrt_gpu_plugin_options()  # raises for the pair
        assert float(options["memory_fraction"]) == float(env["XLA_CLIENT_MEM_FRACTION"])


def test_jax_memory_figures_never_raise_where_there_is_no_such_device():
    """Catches memory_in_use / memory_capacity raising for a GPU JAX does not see (the CNN
    asks for the capacity while preparing; the harness for the memory after a case):
    None there; on the CPU the host's available memory (psutil's, read again here)."""
    pytest.importorskip("jax")
    import psutil
    jax_runtime = get_runtime("jax")
    if jax_runtime.gpu_count() == 0:
        assert jax_runtime.memory_stats("gpu:0") == {}
        assert jax_runtime.memory_capacity("gpu:0") is None
        assert jax_runtime.memory_in_use("gpu:0") is None
    available = psutil.virtual_memory().available
    assert abs(jax_runtime.memory_capacity("cpu") - available) < 0.2 * available
