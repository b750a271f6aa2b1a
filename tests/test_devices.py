"""Devices as a capability of every backend: requests parsed without a framework, resolved
by each backend through its own runtime, refused or skipped in one line before any work.

The GPU-capable backends here are made-up subclasses whose runtime "sees" as many GPUs as
the test says (`visible_gpus`), with the NVIDIA driver check patched: the logic under test
is hhbench's, not a framework's."""

import pytest

from hhbench import devices
from hhbench.backends.base import Backend
from hhbench.cli import main
from hhbench.devices import DeviceNotSupported, check_devices, parse_device
from hhbench.errors import HHBenchError
from hhbench.suite import SuiteConfig, make_backend, plan_devices, run_case
from hhbench import stimuli


def _gpu_backend(kinds, n_gpus):
    class Fake(Backend):
        name = "fake-gpu"
        summary = "test"
        device_kinds = kinds
        runtime = "fakert"
        option_defaults = {"device": "auto"}

        @classmethod
        def visible_gpus(cls, options=None):
            return n_gpus
    return Fake


@pytest.fixture
def driver(monkeypatch):
    """Pretend an NVIDIA driver is loaded (the runtime's GPU count still decides)."""
    import hhbench.backends.base as base
    for mod in (devices, base):
        monkeypatch.setattr(mod, "nvidia_driver_present", lambda: True)


@pytest.mark.parametrize("text, kind, index", [
    ("cpu", "cpu", None), ("GPU", "gpu", None), (" gpu:3 ", "gpu", 3), ("gpu:all", "gpu", "all"),
    ("auto", "auto", None)])
def test_requests_parse(text, kind, index):
    assert parse_device(text) == devices.DeviceRequest(kind, index)


@pytest.mark.parametrize("text", ["tpu", "cpu:0", "gpu:x", "", "auto:1", "gpu:-1"])
def test_unknown_requests_are_refused_naming_the_value(text):
    with pytest.raises(HHBenchError, match=f"unknown device {text!r}"):
        parse_device(text)


def test_duplicate_requests_are_dropped_in_order():
    assert check_devices(["auto", "AUTO", "cpu", "gpu:0", "gpu:0"]) == ("auto", "cpu", "gpu:0")


def test_a_cpu_backend_runs_on_the_cpu_and_refuses_a_gpu():
    from hhbench.backends import check_name
    numba = check_name("numba")
    assert numba.resolve_device("auto") == numba.resolve_device("cpu") == "cpu"
    for request in ("gpu", "gpu:1", "gpu:all"):
        with pytest.raises(DeviceNotSupported, match="numba runs on the CPU only"):
            numba.resolve_device(request)


def test_a_gpu_backend_resolves_through_its_runtime(driver):
    two = _gpu_backend(("cpu", "gpu"), 2)
    assert two.resolve_device("auto") == "gpu:0"
    assert two.resolve_device("cpu") == "cpu"
    assert two.resolve_device("gpu") == "gpu:0"
    assert two.resolve_device("gpu:1") == "gpu:1"
    assert two.resolve_device("gpu:all") == "gpu:all"
    with pytest.raises(HHBenchError, match="'gpu:2' requested but fakert sees 2 GPUs"):
        two.resolve_device("gpu:2")
    none = _gpu_backend(("cpu", "gpu"), 0)
    assert none.resolve_device("auto") == "cpu"  # auto falls back; an explicit gpu does not
    with pytest.raises(HHBenchError, match="'gpu' requested but fakert sees no GPU"):
        none.resolve_device("gpu")


def test_a_gpu_only_backend_without_a_gpu_is_skipped_not_run_on_the_cpu(driver):
    only = _gpu_backend(("gpu",), 0)
    with pytest.raises(DeviceNotSupported, match="runs on GPUs only"):
        only.resolve_device("auto")
    with pytest.raises(DeviceNotSupported, match="runs on the GPUs only"):
        _gpu_backend(("gpu",), 1).resolve_device("cpu")


def test_no_driver_means_no_gpu_without_asking_the_runtime(monkeypatch):
    class Loud(_gpu_backend(("cpu", "gpu"), 1)):
        @classmethod
        def visible_gpus(cls, options=None):
            raise AssertionError("the runtime was imported on a machine without a driver")
    import hhbench.backends.base as base
    monkeypatch.setattr(base, "nvidia_driver_present", lambda: False)
    assert Loud.resolve_device("auto") == "cpu"
    with pytest.raises(HHBenchError, match="sees no GPU"):
        Loud.resolve_device("gpu")


def test_options_are_checked_by_the_backend_in_the_parent():
    with pytest.raises(HHBenchError, match="backend 'numba' has no option 'precision'"):
        SuiteConfig(backends=("numba",), options={"numba": {"precision": "float32"}})
    with pytest.raises(HHBenchError, match="unknown backend 'nope'"):
        SuiteConfig(backends=("numba",), options={"nope": {}})
    with pytest.raises(HHBenchError, match="unknown device 'tpu'"):
        SuiteConfig(backends=("numba",), devices=("tpu",))


def test_the_legacy_cnn_mode_key_is_the_cnn_mode_option():
    """The old top-level key reaches the CNN's mode option. "lab-graph" is a TensorFlow
    mode: where the CNN runs through JAX (no TensorFlow: the GPU machines), the CNN's own
    check refuses it by name, which it can only do if the key reached the option."""
    from hhbench.backends import check_name

    data = SuiteConfig(backends=("numba",)).as_dict()
    data["cnn_mode"] = "lab-graph"
    if check_name("cnn").runtime_of({}) != "jax":
        assert SuiteConfig.from_dict(data).options["cnn"]["mode"] == "lab-graph"
    else:
        with pytest.raises(HHBenchError, match="CNN mode 'lab-graph'"):
            SuiteConfig.from_dict(data)


def test_the_plan_skips_what_cannot_run_there_and_merges_what_resolves_alike(driver):
    config = SuiteConfig(backends=("numpy", "numba"), devices=("cpu", "auto", "gpu"))
    plan = plan_devices(config)
    for name in ("numpy", "numba"):
        assert plan[name][0] == ("cpu", None)      # cpu and auto: one case on the CPU
        assert plan[name][1][0] == "gpu" and "runs on the CPU only" in plan[name][1][1].reason
        assert plan[name][1][1].status == "skipped"
        assert len(plan[name]) == 2


def test_a_gpu_asked_for_on_a_machine_without_one_is_one_line_exit_2(capsys, monkeypatch,
                                                                     tmp_path):
    monkeypatch.setattr(devices, "nvidia_driver_present", lambda: False)
    out = tmp_path / "r.json"
    assert main(["run", "--backends", "numba", "--device", "gpu", "--no-progress",
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'gpu' requested but this machine has no NVIDIA GPU" in err
    assert not out.exists()


@pytest.mark.parametrize("argv, words", [
    (["run", "--device", "tpu"], "unknown device 'tpu'"),
    (["run", "--option", "numba.substeps=2"], "backend 'numba' has no option 'substeps'"),
    (["run", "--option", "precision"], "--option 'precision': write BACKEND.KEY=VALUE"),
    (["simulate", "--backend", "numba", "--device", "gpu"], "numba runs on the CPU only"),
    (["simulate", "--backend", "numba", "--option", "kernel=x"],
     "backend 'numba' has no option 'kernel'"),
    (["simulate", "--backend", "numba", "--model", "m"], "backend 'numba' takes no model"),
])
def test_device_and_option_refusals(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and "Traceback" not in err, err


def test_make_backend_gives_a_device_taking_backend_its_resolved_device(driver, monkeypatch):
    import hhbench.suite as suite
    fake = _gpu_backend(("cpu", "gpu"), 1)
    made = {}

    def get_backend(name, **options):
        made.update(options)
        return object()
    monkeypatch.setattr(suite, "check_name", lambda name: fake)
    monkeypatch.setattr(suite, "get_backend", get_backend)
    make_backend("fake-gpu", device="auto")
    assert made == {"device": "gpu:0"}


class _OnDevice(Backend):
    """A backend 'on a GPU' whose device-only call is counted."""
    name = "on-device"
    summary = "test"
    device_kinds = ("gpu",)
    calls = 0

    @property
    def device(self):
        return "gpu:0"

    def _integrate(self, current_ua, dt_ms, gates):
        return current_ua * 0.0 - 65.0, None

    def device_call(self, stimulus):
        def call():
            type(self).calls += 1
        return call


def test_a_gpu_case_records_its_device_only_time_beside_the_round_trip():
    from hhbench.timing import TimingSettings
    case, _ = run_case(_OnDevice(), stimuli.make("step", n_samples=50),
                       timing=TimingSettings(warmup_calls=0, min_repeats=3, min_time_s=0),
                       reference_name="converged")
    assert case.status == "ok" and case.device == "gpu:0"
    assert _OnDevice.calls >= 3 and case.settings["device_only_s"] > 0
    assert "synchronised" in case.settings["timed"]
    assert case.row()["device_only_ms"] == pytest.approx(case.settings["device_only_s"] * 1e3)


def test_a_cpu_case_says_it_is_timed_from_host_arrays():
    from hhbench.backends import get_backend
    from hhbench.timing import TimingSettings
    case, _ = run_case(get_backend("numpy"), stimuli.make("step", n_samples=50),
                       timing=TimingSettings(warmup_calls=0, min_repeats=1, min_time_s=0),
                       reference_name="converged")
    assert case.settings["timed"] == "host arrays in and out"
    assert "device_only_s" not in case.settings


def test_listing_the_backends_imports_no_framework():
    # the engines (jax_engine, cuda_engine) import JAX / CUDA when loaded: the registry must
    # not load them, or `hhbench backends` and every refusal would wait for JAX or CUDA
    import subprocess
    import sys
    code = ("import sys; from hhbench.backends import backend_classes; "
            "names = list(backend_classes()); "
            "print(names, [m for m in ('jax', 'tensorflow', 'numba_cuda', 'numba.cuda') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120).stdout
    assert out.strip().endswith("[]"), out
    assert "'jax'" in out and "'numba-cuda'" in out and "'cnn'" in out


def test_backends_says_where_each_runs_and_what_options_it_takes(capsys):
    from hhbench.backends import backend_classes
    assert main(["backends"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    for name, cls in backend_classes().items():
        kinds = ", ".join(cls.device_kinds)
        assert f"({kinds}" in lines[name], lines[name]
        for option in set(cls.option_defaults) - {"device"}:  # the device is --device
            assert option in lines[name], (name, option)
    assert "(cpu)" in lines["numba"] and "(gpu; options kernel, precision)" in lines["numba-cuda"]
