"""Energy per trace and per neuron-step, from the hardware's own energy counters.

Two counters, each read as cumulative joules:
  * an NVIDIA GPU: NVML's total-energy counter (`nvmlDeviceGetTotalEnergyConsumption`,
    millijoules since the driver loaded; Volta and newer), through `nvidia-ml-py` (module
    `pynvml`, imported here only, optional). Each sample also records the SM clock (MHz),
    the temperature (°C) and the clock-event ("throttle") reasons; a sample is marked
    throttled when a reason other than idle, the application clock setting, sync boost or
    the display clock holds the clock down (power cap, thermal or hardware slowdown);
  * the CPU: Linux RAPL, `/sys/class/powercap/intel-rapl:N/energy_uj` (microjoules, one
    counter per package, wrapping at `max_energy_range_uj`), where readable (often root
    only since 2020).
Where neither can be read the measurement is a record saying why, never an error.

Which counter measures a device is the device's runtime's answer (`Runtime.energy_where`,
`Runtime.energy_j`: `hhbench.runtimes`); the meters are opened once per process and kept
(`read_counter_j`). `EnergyRecorder.for_runtime(runtime, device)` records through it.

Arithmetic (`energy_per_unit`): a window of t seconds around `calls` calls read E₀ and E₁;
the idle power P_idle is measured beside it (the same counter over a window with nothing
running); the work's energy is (E₁ − E₀) − P_idle·t, divided by the calls, the traces per
call and the neuron-steps per call. Windows are at least `MIN_WINDOW_S` = 1 s: NVML's
counter is updated every few tens of milliseconds, so shorter windows are mostly noise.
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass

#: shortest window over which a counter is read (s)
MIN_WINDOW_S = 1.0
#: NVML clock-event reasons that do not slow the work down: GPU idle (0x1), application
#: clocks setting (0x2), sync boost (0x10), display clock setting (0x100)
BENIGN_REASONS = 0x1 | 0x2 | 0x10 | 0x100
#: names of the NVML reason bits, for the record
REASON_NAMES = {0x1: "idle", 0x2: "app_clocks", 0x4: "sw_power_cap", 0x8: "hw_slowdown",
                0x10: "sync_boost", 0x20: "sw_thermal", 0x40: "hw_thermal",
                0x80: "hw_power_brake", 0x100: "display_clocks"}
RAPL_GLOB = "/sys/class/powercap/intel-rapl:[0-9]*"


class EnergyUnavailable(RuntimeError):
    """No energy counter can be read here (the message says why)."""


def throttle_names(mask: int) -> list[str]:
    """The names of the reason bits set in `mask`."""
    return [name for bit, name in REASON_NAMES.items() if mask & bit]


def is_throttled(mask: int) -> bool:
    """Whether a reason that slows the clock down (power, thermal, hardware) is set."""
    return bool(int(mask) & ~BENIGN_REASONS)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def is_uuid(entry: str) -> bool:
    """Whether a CUDA_VISIBLE_DEVICES entry names a GPU or MIG instance by UUID."""
    return entry.startswith(("GPU-", "MIG-"))


def nvml_handle_by_uuid(pynvml, uuid: str):
    """NVML's handle of the GPU or MIG instance `uuid` ("GPU-…", "MIG-…"); CUDA also
    takes a unique prefix of a GPU's UUID, so a prefix is matched against every GPU's."""
    try:
        return pynvml.nvmlDeviceGetHandleByUUID(uuid)
    except pynvml.NVMLError:
        if not uuid.startswith("GPU-"):
            raise
    found = []
    for k in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(k)
        if _text(pynvml.nvmlDeviceGetUUID(handle)).startswith(uuid):
            found.append(handle)
    if len(found) != 1:
        raise EnergyUnavailable(f"NVML: {len(found)} GPUs match CUDA_VISIBLE_DEVICES's "
                                f"{uuid}")
    return found[0]


class NvmlMeter:
    """NVML's energy counter and clocks of one GPU: `gpu` its index as NVML numbers them,
    or its UUID ("GPU-…"; "MIG-…" for a MIG instance, whose parent GPU's counter is read,
    the whole card's, which `note` says)."""

    kind = "nvml"

    def __init__(self, gpu: int | str = 0):
        try:
            import pynvml
        except ImportError:
            raise EnergyUnavailable("nvidia-ml-py (pynvml) is not installed") from None
        self.note = None
        try:
            pynvml.nvmlInit()
            if isinstance(gpu, str) and is_uuid(gpu):
                self._handle = nvml_handle_by_uuid(pynvml, gpu)
                is_mig = getattr(pynvml, "nvmlDeviceIsMigDeviceHandle", None)
                if is_mig is not None and is_mig(self._handle):
                    self._handle = pynvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(
                        self._handle)
                    self.note = "a MIG instance: its GPU's counter, every instance's work"
            else:
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(int(gpu))
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except pynvml.NVMLError as exc:  # no driver, no such GPU, a GPU without the counter
            raise EnergyUnavailable(f"NVML: {exc}") from None
        self._nvml = pynvml
        self.gpu = gpu if isinstance(gpu, str) else int(gpu)
        self.name = _text(pynvml.nvmlDeviceGetName(self._handle))
        try:
            self.uuid = _text(pynvml.nvmlDeviceGetUUID(self._handle))
        except pynvml.NVMLError:
            self.uuid = None

    def read_j(self) -> float:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1e3

    def sample(self) -> dict:
        """SM clock (MHz), temperature (°C), clock-event reasons and whether throttled."""
        n = self._nvml
        out = {}
        try:
            out["sm_clock_mhz"] = n.nvmlDeviceGetClockInfo(self._handle, n.NVML_CLOCK_SM)
            out["temperature_c"] = n.nvmlDeviceGetTemperature(self._handle,
                                                              n.NVML_TEMPERATURE_GPU)
            reasons = getattr(n, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
                n.nvmlDeviceGetCurrentClocksThrottleReasons
            mask = int(reasons(self._handle))
            out.update(reasons=throttle_names(mask), throttled=is_throttled(mask))
        except n.NVMLError as exc:  # one unreadable field: said, the others kept
            out["error"] = str(exc)
        return out


class RaplMeter:
    """The sum of the RAPL package counters of this machine's CPUs."""

    kind = "rapl"
    name = "CPU packages (RAPL)"

    def __init__(self, root_glob: str = RAPL_GLOB):
        zones = sorted(glob.glob(root_glob))
        if not zones:
            raise EnergyUnavailable("RAPL unreadable: no /sys/class/powercap/intel-rapl zone")
        self._zones = []
        for zone in zones:
            try:
                with open(os.path.join(zone, "energy_uj")) as f:
                    int(f.read())
                with open(os.path.join(zone, "max_energy_range_uj")) as f:
                    wrap = int(f.read())
            except (OSError, ValueError) as exc:
                raise EnergyUnavailable(f"RAPL unreadable: {zone}: "
                                        f"{exc.strerror if isinstance(exc, OSError) else exc}"
                                        ) from None
            self._zones.append((zone, wrap))
        self._last = [self._raw(z) for z, _ in self._zones]
        self._total_uj = 0

    @staticmethod
    def _raw(zone: str) -> int:
        with open(os.path.join(zone, "energy_uj")) as f:
            return int(f.read())

    def read_j(self) -> float:
        """Cumulative joules since this meter was made (each counter's wrap undone)."""
        for k, (zone, wrap) in enumerate(self._zones):
            now = self._raw(zone)
            self._total_uj += counter_delta(self._last[k], now, wrap)
            self._last[k] = now
        return self._total_uj / 1e6

    def sample(self) -> dict:
        return {}


def counter_delta(before: int, after: int, wrap: int) -> int:
    """after − before for a counter that wraps to 0 after `wrap` (a wrapped read is
    after + wrap − before)."""
    return after - before if after >= before else after + wrap - before


def open_meter(where: str = "gpu:0"):
    """A meter for "gpu:N" (NVML) or "cpu" (RAPL); EnergyUnavailable saying why not."""
    if where == "cpu":
        return RaplMeter()
    kind, _, index = where.partition(":")
    if is_uuid(index):
        return NvmlMeter(index)
    return NvmlMeter(int(index) if index.isdigit() else 0)


_meters: dict = {}  # "gpu:N" / "cpu" -> its meter, or the EnergyUnavailable saying why not


def _cached_meter(where: str):
    if where not in _meters:
        try:
            _meters[where] = open_meter(where)
        except EnergyUnavailable as exc:
            _meters[where] = exc
    return _meters[where]


def nvml_where(cuda_index: int) -> str:
    """The NVML counter of the GPU a CUDA runtime numbers `cuda_index`: NVML numbers every
    GPU and ignores CUDA_VISIBLE_DEVICES, the runtimes number those it leaves, so index N
    there is the N-th listed: "gpu:M" where it lists GPU numbers, "gpu:GPU-…" /
    "gpu:MIG-…" where it lists UUIDs (NVML finds those by UUID); N itself where it is
    unset (or N is past its list)."""
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
               if v.strip()]
    if cuda_index < len(visible):
        entry = visible[cuda_index]
        if entry.isdigit():
            return f"gpu:{int(entry)}"
        if is_uuid(entry):
            return f"gpu:{entry}"
    return f"gpu:{int(cuda_index)}"


def read_counter_j(where: str) -> float | None:
    """The cumulative joules of counter `where` ("gpu:N": NVML's GPU N; "cpu": RAPL), or
    None where it cannot be read (no NVML, no such GPU, RAPL absent or root only)."""
    meter = _cached_meter(where)
    if isinstance(meter, EnergyUnavailable):
        return None
    try:
        return float(meter.read_j())
    except Exception:  # a read failing now: unreadable, as a counter never opened
        return None


def counter_sample(where: str) -> dict:
    """Clock, temperature and throttle reasons of counter `where` ({} where none)."""
    meter = _cached_meter(where)
    return {} if isinstance(meter, EnergyUnavailable) else meter.sample()


def counter_reason(where: str) -> str | None:
    """Why counter `where` cannot be read (None when it can)."""
    meter = _cached_meter(where)
    return str(meter) if isinstance(meter, EnergyUnavailable) else None


def counter_name(where: str) -> str:
    """"nvml <GPU name>" or "rapl CPU packages (RAPL)" of a readable counter."""
    meter = _cached_meter(where)
    return where if isinstance(meter, EnergyUnavailable) else f"{meter.kind} {meter.name}"


def counter_device(where: str) -> dict:
    """What the counter `where` reads, as its library names it: for NVML the GPU's name
    and UUID (and a note for a MIG instance); {} where none is readable."""
    meter = _cached_meter(where)
    if isinstance(meter, EnergyUnavailable):
        return {}
    out = {"where": where, "name": meter.name}
    for key in ("uuid", "note"):
        if getattr(meter, key, None):
            out[key] = getattr(meter, key)
    return out


class RuntimeMeter:
    """A device's energy counter as its runtime reads it (`Runtime.energy_j`, J)."""

    kind = "runtime"

    def __init__(self, runtime, device: str):
        self.runtime, self.device = runtime, device
        label = runtime.label or str(runtime.name)
        where = runtime.energy_where(device)
        if runtime.energy_j(device) is None:
            why = counter_reason(where) if where else None
            raise EnergyUnavailable(f"{label}: no energy counter readable for {device}"
                                    + (f" ({why})" if why else ""))
        self.name = f"{label} {device}" + (f": {counter_name(where)}" if where else "")
        #: the device the counter reads, as NVML names it (beside the runtime's name)
        self.counter_device = counter_device(where) if where else {}

    def read_j(self) -> float:
        value = self.runtime.energy_j(self.device)
        if value is None:
            raise EnergyUnavailable(f"the energy counter of {self.device} became unreadable")
        return value

    def sample(self) -> dict:
        return self.runtime.energy_sample(self.device)


@dataclass(frozen=True)
class Window:
    """One reading window: joules at its start and end, its seconds, samples inside."""

    e0_j: float
    e1_j: float
    seconds: float
    calls: int = 0
    samples: tuple = ()


def read_window(meter, call=None, *, min_window_s: float = MIN_WINDOW_S,
                clock=time.perf_counter, sleep=time.sleep) -> Window:
    """Read the counter around `call` repeated until at least `min_window_s` has passed
    (None: an idle window of that length), with one clock/throttle sample after each call
    (idle: at its start and end)."""
    samples = [meter.sample()]
    e0, t0 = meter.read_j(), clock()
    calls = 0
    if call is None:
        sleep(min_window_s)
    else:
        while clock() - t0 < min_window_s or calls == 0:
            call()
            calls += 1
            samples.append(meter.sample())
    t1 = clock()
    e1 = meter.read_j()
    samples.append(meter.sample())
    return Window(e0, e1, t1 - t0, calls, tuple(s for s in samples if s))


def idle_power_w(window: Window) -> float:
    return (window.e1_j - window.e0_j) / window.seconds


def energy_per_unit(window: Window, idle_w: float, *, traces_per_call: int,
                    steps_per_call: int | None = None) -> dict:
    """The work's joules in `window` above idle, per call, per trace and per neuron-step
    (see the module docstring); `steps_per_call` None for a surrogate (no neuron-steps)."""
    if window.calls < 1 or window.seconds <= 0:
        raise ValueError("an energy window needs at least one call and a positive length")
    total = window.e1_j - window.e0_j
    net = total - idle_w * window.seconds
    per_call = net / window.calls
    out = {"window_s": window.seconds, "calls": window.calls, "total_j": total,
           "idle_w": idle_w, "net_j": net, "mean_power_w": total / window.seconds,
           "j_per_call": per_call, "j_per_trace": per_call / traces_per_call,
           "throttled_samples": sum(bool(s.get("throttled")) for s in window.samples),
           "samples": list(window.samples)}
    if steps_per_call:
        out["j_per_neuron_step"] = per_call / steps_per_call
    if net <= 0:
        out["note"] = "no energy above idle measured (window too short or counter too coarse)"
    return out


class EnergyRecorder:
    """What a report section uses: a meter opened once (or the reason there is none), the
    idle power measured once (`measure_idle()`, before any work; else at the first
    `measure`, after the work, and said so), and `measure(call, ...)` per case, which
    returns a record, never raises."""

    def __init__(self, where: str = "gpu:0", *, min_window_s: float = MIN_WINDOW_S,
                 meter=None):
        self.where, self.min_window_s = where, min_window_s
        self.idle_w = self.idle_when = self.idle_error = None
        try:
            self.meter = open_meter(where) if meter is None else meter()
            self.reason = None
        except EnergyUnavailable as exc:
            self.meter, self.reason = None, str(exc)

    @classmethod
    def for_runtime(cls, runtime, device: str, *, min_window_s: float = MIN_WINDOW_S
                    ) -> "EnergyRecorder":
        """The recorder of `device` ("cpu", "gpu:N") read through `runtime` (a
        `hhbench.runtimes.Runtime`; its `energy_j`)."""
        return cls(device, min_window_s=min_window_s,
                   meter=lambda: RuntimeMeter(runtime, device))

    @property
    def available(self) -> bool:
        return self.meter is not None

    def measure_idle(self) -> float | None:
        """The idle power (W), measured now (once): call it before any work, while the
        device is cool (measured after the work, a hot GPU's idle power is higher and the
        work's energy is under-counted). None where no counter is readable; never raises."""
        if self.meter is None or self.idle_w is not None:
            return self.idle_w
        try:
            self.idle_w = idle_power_w(read_window(self.meter, None,
                                                   min_window_s=self.min_window_s))
            self.idle_when = "before the work" if self.idle_when is None else self.idle_when
        except Exception as exc:  # recorded by `measure`, which tries again
            self.idle_error = f"{type(exc).__name__}: {exc}"
        return self.idle_w

    def measure(self, call, *, traces_per_call: int, steps_per_call: int | None = None
                ) -> dict:
        if self.meter is None:
            return {"unavailable": self.reason, "counter": self.where}
        try:
            if self.idle_w is None:  # not measured before the work: measured beside it
                self.idle_when = "after work (the device may be warm)"
                self.idle_w = idle_power_w(read_window(self.meter, None,
                                                       min_window_s=self.min_window_s))
            window = read_window(self.meter, call, min_window_s=self.min_window_s)
            device = getattr(self.meter, "counter_device", None) or {}
            return {"counter": f"{self.meter.kind} {self.meter.name}",
                    **({"counter_device": device} if device else {}),
                    "idle_measured": self.idle_when,
                    **energy_per_unit(window, self.idle_w, traces_per_call=traces_per_call,
                                      steps_per_call=steps_per_call)}
        except Exception as exc:  # a counter read failing mid-run is a fact to record
            return {"unavailable": f"{type(exc).__name__}: {exc}", "counter": self.where}


__all__ = ["EnergyUnavailable", "NvmlMeter", "RaplMeter", "RuntimeMeter", "open_meter",
           "read_counter_j", "counter_sample", "counter_reason", "counter_device",
           "nvml_where", "is_uuid", "Window",
           "read_window", "idle_power_w", "energy_per_unit", "EnergyRecorder",
           "counter_delta", "is_throttled", "throttle_names", "MIN_WINDOW_S"]
