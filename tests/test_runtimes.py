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
