"""hhbench.energy: the counters' arithmetic on hand-made readings, RAPL on a hand-made
powercap tree, and what is recorded where no counter can be read (this machine: no
NVIDIA driver, and RAPL absent or root-only)."""

from __future__ import annotations

import pytest

from hhbench import energy
from hhbench.energy import (EnergyRecorder, RaplMeter, Window, counter_delta,
                            energy_per_unit, is_throttled, read_window)
from hhbench.runtimes import Runtime, register_runtime


def test_energy_per_unit_subtracts_idle_and_divides():
    """Catches idle power not subtracted, or divided by the wrong count: 30 J over 2 s at
    5 W idle is 20 J of work; 4 calls of 10 traces of 100 steps each."""
    w = Window(e0_j=100.0, e1_j=130.0, seconds=2.0, calls=4,
               samples=({"throttled": False}, {"throttled": True}, {"throttled": True}))
    got = energy_per_unit(w, 5.0, traces_per_call=10, steps_per_call=1000)
    assert got["net_j"] == pytest.approx(20.0)
    assert got["j_per_call"] == pytest.approx(5.0)
    assert got["j_per_trace"] == pytest.approx(0.5)
    assert got["j_per_neuron_step"] == pytest.approx(0.005)
    assert got["mean_power_w"] == pytest.approx(15.0)
    assert got["throttled_samples"] == 2
    # a surrogate has no neuron-steps; a window at idle says so
    idle = energy_per_unit(Window(0.0, 10.0, 2.0, 1), 5.0, traces_per_call=1)
    assert "j_per_neuron_step" not in idle and "note" in idle


def test_counter_wrap_and_throttle_reasons():
    """Catches a wrapped counter read as a huge negative step, and benign clock reasons
    (idle, application clocks) taken for throttling or real ones (power cap, thermal)
    missed."""
    assert counter_delta(10, 25, 100) == 15
    assert counter_delta(90, 5, 100) == 15
    assert not is_throttled(0x0) and not is_throttled(0x1 | 0x2 | 0x100)
    assert is_throttled(0x4) and is_throttled(0x20) and is_throttled(0x1 | 0x40)
    assert energy.throttle_names(0x4 | 0x20) == ["sw_power_cap", "sw_thermal"]


def _zone(root, name, uj, wrap):
    zone = root / name
    zone.mkdir(exist_ok=True)
    (zone / "energy_uj").write_text(f"{uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{wrap}\n")


def test_rapl_sums_packages_and_undoes_the_wrap(tmp_path):
    """Catches a meter that reads one package only, or mishandles a wrap: two packages,
    the second wrapping between reads."""
    _zone(tmp_path, "intel-rapl:0", 1_000_000, 10 ** 9)
    _zone(tmp_path, "intel-rapl:1", 999_000_000, 10 ** 9)
    meter = RaplMeter(str(tmp_path / "intel-rapl:[0-9]*"))
    assert meter.read_j() == 0.0
    _zone(tmp_path, "intel-rapl:0", 3_000_000, 10 ** 9)      # +2 J
    _zone(tmp_path, "intel-rapl:1", 500_000, 10 ** 9)        # +1.5 J across the wrap
    assert meter.read_j() == pytest.approx(3.5)


def test_no_counter_is_a_record_not_an_error(tmp_path):
    """Catches an exception (or a made-up figure) where no counter can be read: NVML
    without a driver (or without nvidia-ml-py) and RAPL without the powercap files give a
    record naming why; a machine that has them gives readings."""
    rec = EnergyRecorder("gpu:0", min_window_s=0.05)
    if rec.available:  # a GPU machine: a real reading of a trivial call
        got = rec.measure(lambda: None, traces_per_call=1)
        assert got["window_s"] >= 0.05 and got["total_j"] >= 0
    else:
        assert "NVML" in rec.reason or "nvidia-ml-py" in rec.reason
        assert rec.measure(lambda: None, traces_per_call=1) == {
            "unavailable": rec.reason, "counter": "gpu:0"}
    with pytest.raises(energy.EnergyUnavailable, match="RAPL unreadable"):
        RaplMeter(str(tmp_path / "intel-rapl:[0-9]*"))
    cpu = EnergyRecorder("cpu", min_window_s=0.05)
    if not cpu.available:
        assert cpu.reason.startswith("RAPL unreadable")


class _Counter:
    """A counter that gains 2 J per clock second and 1 J per call (what read_window sees
    of a device), on a clock the test advances."""

    kind, name = "test", "counter"

    def __init__(self):
        self.t, self.j = 0.0, 0.0

    def clock(self):
        return self.t

    def sleep(self, s):
        self.t += s
        self.j += 2.0 * s

    def call(self):
        self.sleep(0.3)
        self.j += 1.0

    def read_j(self):
        return self.j

    def sample(self):
        return {"throttled": self.t > 0.5}


def test_windows_last_at_least_the_minimum():
    """Catches a window shorter than asked (NVML updates every few tens of ms) or an
    active window with no call: 0.3 s calls fill a 1 s window with 4 calls; the idle
    power comes out at 2 W and the work at 1 J a call."""
    c = _Counter()
    idle = read_window(c, None, min_window_s=1.0, clock=c.clock, sleep=c.sleep)
    assert idle.seconds == pytest.approx(1.0) and idle.calls == 0
    active = read_window(c, c.call, min_window_s=1.0, clock=c.clock, sleep=c.sleep)
    assert active.calls == 4 and active.seconds == pytest.approx(1.2)
    got = energy_per_unit(active, energy.idle_power_w(idle), traces_per_call=2,
                          steps_per_call=None)
    assert got["idle_w"] == pytest.approx(2.0)
    assert got["j_per_call"] == pytest.approx(1.0) and got["j_per_trace"] == pytest.approx(0.5)
    assert got["throttled_samples"] >= 3


# -- through the runtimes ---------------------------------------------------------------------

def test_gpu_runtimes_read_no_counter_here_and_the_recorder_says_so():
    """Catches an energy reading made up (or an exception) where the GPU or NVML is
    absent: on a machine without a GPU the numba-cuda and JAX runtimes read None for
    gpu:0, and a recorder through either is a record of why, never an error; numba's
    CPU runtime reads RAPL exactly where RAPL can be opened."""
    from hhbench.runtimes import get_runtime

    if energy.read_counter_j("gpu:0") is not None:
        pytest.skip("an NVML counter is readable here (a GPU machine)")
    for name in ("cuda", "jax"):
        runtime = get_runtime(name)
        assert runtime.energy_j("gpu:0") is None
        rec = EnergyRecorder.for_runtime(runtime, "gpu:0", min_window_s=0.01)
        assert not rec.available and "no energy counter readable for gpu:0" in rec.reason
        assert rec.measure(lambda: None, traces_per_call=4) == {
            "unavailable": rec.reason, "counter": "gpu:0"}
    try:
        RaplMeter()
        rapl = True
    except energy.EnergyUnavailable:
        rapl = False
    assert (get_runtime(None).energy_j("cpu") is not None) == rapl
    assert get_runtime(None).energy_j("gpu:0") is None


class Rising(Runtime):
    """A runtime whose counter rises 6 J per call of the work and holds still otherwise."""
    name, label = "test-rising", "rising"

    def __init__(self):
        self.joules = 100.0

    def energy_j(self, device):
        return self.joules if device == "gpu:0" else None

    def work(self):
        self.joules += 6.0


def test_a_runtimes_rising_counter_gives_joules_per_trace():
    """Catches energy per trace read from anything but the runtime's counter, or divided
    wrongly: a counter rising 6 J a call, with no rise while idle, gives 6 J a call and
    6 / 3 = 2 J a trace for 3 traces a call (the total over the calls and traces)."""
    runtime = register_runtime(Rising())
    rec = EnergyRecorder.for_runtime(runtime, "gpu:0", min_window_s=0.02)
    assert rec.available and rec.meter.name == "rising gpu:0"
    got = rec.measure(runtime.work, traces_per_call=3, steps_per_call=30)
    assert got["idle_w"] == 0.0 and got["calls"] >= 1
    assert got["total_j"] == pytest.approx(6.0 * got["calls"])
    assert got["j_per_trace"] == pytest.approx(got["total_j"] / got["calls"] / 3) == \
        pytest.approx(2.0)
    assert got["j_per_neuron_step"] == pytest.approx(0.2)
    assert got["counter"] == "runtime rising gpu:0"
    # a device the runtime has no counter for is a record, not an error
    assert not EnergyRecorder.for_runtime(runtime, "gpu:1").available


def test_cuda_numbering_is_mapped_to_nvmls(monkeypatch):
    """Catches the runtime's gpu:N handed to NVML unmapped: with CUDA_VISIBLE_DEVICES=2,3
    the runtimes' gpu:1 is NVML's GPU 3; without a numeric list the index stands."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert (energy.nvml_where(0), energy.nvml_where(1)) == ("gpu:2", "gpu:3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-5a1b")
    assert energy.nvml_where(1) == "gpu:1"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert energy.nvml_where(0) == "gpu:0"


def test_cuda_visible_devices_uuids_are_mapped_to_nvml_uuids(monkeypatch):
    """Catches a CUDA_VISIBLE_DEVICES of UUIDs handed to NVML as the runtime's index:
    NVML ignores CUDA_VISIBLE_DEVICES, so GPU-…/MIG-… entries are found by UUID."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-5a1b-77, MIG-9c0d")
    assert energy.nvml_where(0) == "gpu:GPU-5a1b-77"
    assert energy.nvml_where(1) == "gpu:MIG-9c0d"
    assert energy.nvml_where(2) == "gpu:2"


class _FakeNvml:
    """pynvml's calls NvmlMeter makes, over two GPUs and one MIG instance of the second."""

    class NVMLError(Exception):
        pass

    def __init__(self):
        self.gpus = {"GPU-aaaa-1111": "NVIDIA H100 80GB HBM3", "GPU-bbbb-2222": "NVIDIA H200"}

    def nvmlInit(self):
        pass

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, k):
        return list(self.gpus)[k]

    def nvmlDeviceGetHandleByUUID(self, uuid):
        if uuid in self.gpus or uuid == "MIG-cccc":
            return uuid
        raise self.NVMLError("Not Found")

    def nvmlDeviceIsMigDeviceHandle(self, handle):
        return handle.startswith("MIG-")

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, handle):
        return "GPU-bbbb-2222"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if handle.startswith("MIG-"):
            raise self.NVMLError("Not Supported")
        return 5000

    def nvmlDeviceGetName(self, handle):
        return self.gpus[handle].encode()

    def nvmlDeviceGetUUID(self, handle):
        return handle


def test_nvml_meter_opens_a_gpu_by_uuid_prefix_or_mig_and_records_its_name(monkeypatch):
    """Catches a UUID (or CUDA's unique UUID prefix, or a MIG instance) not found in NVML,
    or a record that does not say which card NVML read."""
    import sys
    monkeypatch.setitem(sys.modules, "pynvml", _FakeNvml())
    m = energy.open_meter("gpu:GPU-bbbb-2222")
    assert (m.name, m.uuid, m.note) == ("NVIDIA H200", "GPU-bbbb-2222", None)
    assert m.read_j() == 5.0
    assert energy.open_meter("gpu:GPU-aaaa").name == "NVIDIA H100 80GB HBM3"  # a prefix
    mig = energy.open_meter("gpu:MIG-cccc")
    assert mig.uuid == "GPU-bbbb-2222" and "MIG" in mig.note
    assert energy.open_meter("gpu:1").name == "NVIDIA H200"
    with pytest.raises(energy.EnergyUnavailable):
        energy.open_meter("gpu:GPU-ffff")
    monkeypatch.setattr(energy, "_meters", {})
    assert energy.counter_device("gpu:GPU-aaaa-1111") == {
        "where": "gpu:GPU-aaaa-1111", "name": "NVIDIA H100 80GB HBM3",
        "uuid": "GPU-aaaa-1111"}


class _Warming(_Counter):
    """A counter idling at 2 W while cool, at 5 W once work has run (a hot GPU)."""

    def __init__(self):
        super().__init__()
        self.hot = False

    def sleep(self, s):
        self.t += s
        self.j += (5.0 if self.hot else 2.0) * s

    def call(self):
        self.hot = True
        self.sleep(0.3)
        self.j += 1.0


def test_idle_power_is_measured_before_the_work_when_asked(monkeypatch):
    """Catches idle power measured right after the timing loop, on a hot GPU whose idle
    draw is higher: the work's energy above idle comes out too low. `measure_idle()` at
    the start reads the cool 2 W; a recorder never asked measures it after the work and
    says so."""
    c = _Warming()
    monkeypatch.setattr(energy, "read_window", lambda meter, call=None, **kw: read_window(
        meter, call, clock=c.clock, sleep=c.sleep, **kw))
    rec = EnergyRecorder("test", min_window_s=1.0, meter=lambda: c)
    assert rec.measure_idle() == pytest.approx(2.0)
    c.call()  # the section's timing loop: the device is hot now
    got = rec.measure(c.call, traces_per_call=1)
    assert got["idle_w"] == pytest.approx(2.0)
    assert got["idle_measured"] == "before the work"
    late = EnergyRecorder("test", min_window_s=1.0, meter=lambda: c)
    late_got = late.measure(c.call, traces_per_call=1)
    assert late_got["idle_measured"].startswith("after") and late_got["idle_w"] > 4.0
