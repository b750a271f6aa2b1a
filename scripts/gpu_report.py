"""Every GPU figure of hhbench from one run of one script, under one deadline.

Run from a checkout with the GPU machine's own packages (no pip: `PYTHONPATH=.`):

    PYTHONPATH=. python scripts/gpu_report.py OUT_DIR                  # full run, 360 s
    PYTHONPATH=. python scripts/gpu_report.py OUT_DIR --deadline-s 60 --quick --device cpu

What runs, in this order (the most valuable figures per second first), each section in a
process of its own, all under one deadline (`--deadline-s`, output included: the sections
see it 7 s early, time to stop one that overruns and write the report) that every section
checks between rows:
  probe       (first, at most 30 s) the GPU, driver and CUDA; versions of jax, jaxlib, the
              jax CUDA plugin and PJRT packages, numba, numba-cuda, cuda-bindings; where
              NVVM and libdevice were found; the host's memory fill rate (1 GiB allocated
              and filled, GB/s); one numba-cuda kernel compiled and run, one JAX function
              run.
              With `--device gpu`, where neither GPU runtime works the run stops there
              and says why;
  agreement   numba-cuda and jax (euler and exp-euler, float64 and float32) against the
              CPU's numpy and exp-euler on step, sine, noise and a diverging step: max
              |ΔV| and RMS over the traces that diverged on neither side (before a
              blow-up one-ulp differences grow to hundreds of mV); each side's diverged
              traces and first bad sample, and whether they agree (within 3 samples);
  throughput  neuron-steps/s of numba-cuda and jax at 10⁶ traces × 2,560 samples, float64
              and float32, device only (input already on the GPU, synchronised) and round
              trip (host arrays in and out), with energy per trace and per neuron-step;
  cnn         the CNN through JAX, float32 / TF32 / bfloat16, batches 1, 64, 1,024 and
              4,096 (the windows per call follow the batch and are recorded): per-trace
              time, device only and round trip, its floor, energy per trace;
  floor       `hhbench floor` for numba-cuda, jax and the CNN (device-only times for GPU
              backends, the round trip beside; the GPU ceilings the cnn section measured);
  run         `hhbench run --device cpu,gpu` (the harness as a user runs it), with a case
              timeout set from the time left (less 60 s, or a third, kept for scaling
              when it follows); whatever it printed is kept;
  scaling     per-trace cost over batches 1 … 10⁶ on the CPU and the GPU, scaling.png
              (its table and figure rewritten after each series).

Output, in OUT_DIR, at most six files and a log: gpu_report.json and gpu_report.md
(rewritten after every measured row, so a run stopped at any point keeps what it
measured), run.json and run.csv (`hhbench run`), scaling.png, and gpu_report.log (every
section's own output and tracebacks). The terminal gets one line per section. The exit
status is 0 when every section finished or was cut short by the deadline, 1 when one
failed (or no GPU runtime works), 2 for bad arguments.

Energy: NVML's total-energy counter (nvidia-ml-py) over windows of at least 1 s, the idle
power measured once at the section's start (before any work warms the GPU) and
subtracted; the SM clock, temperature and throttle reasons at every sample
(`hhbench.energy`). NVML ignores CUDA_VISIBLE_DEVICES: gpu:N is mapped through it (GPU
numbers, or GPU-…/MIG-… UUIDs found by UUID), and the GPU NVML read is recorded by name
and UUID beside each figure. On the CPU, RAPL where readable; otherwise recorded as
unreadable.

Memory at 10⁶ traces × 2,560 samples: one float64 array is 20.5 GB (10.2 GB float32).
numba-cuda holds two arrays on the GPU at a time (41 GB in float64); JAX's device-only
call two (41 GB), its round trip three (61 GB, the input donated). The throughput and
scaling sections run with JAX's memory fraction raised to 0.95 (`XLA_CLIENT_MEM_FRACTION`
only: jaxlib refuses it beside the deprecated `XLA_PYTHON_CLIENT_MEM_FRACTION`, which no
section gets; each section is a process of its own, so no later section inherits what JAX
holds), so
all of these fit an H100 (80 GB: 76 GB usable) and an H200 (141 GB: 134 GB usable); a
case whose estimate does not fit the card is recorded as too big, with the memory it
needed. The host holds the current and V (41 GB in float64; both machines have 128 GB).

`--device cpu` tests the script on a machine without a GPU: JAX and the CNN on the CPU,
numba-cuda on numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1 is set for the sections).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SECTIONS = ("agreement", "throughput", "cnn", "floor", "run", "scaling")
HH_GPU = ("numba-cuda", "jax")
REPORT_JSON, REPORT_MD, LOG = "gpu_report.json", "gpu_report.md", "gpu_report.log"
PROBE_S = 30.0
#: seconds a section's process gets past its deadline to write its last row and exit
GRACE_S = 3.0
#: seconds `_stop` waits after SIGTERM, and after SIGKILL
TERM_WAIT_S, KILL_WAIT_S = 1.0, 1.0
#: seconds the parent takes for its last write of the report
WRITE_S = 1.0
#: the sections' deadline is this much before --deadline-s: a section cut at its deadline
#: plus GRACE_S, stopped (SIGTERM, SIGKILL), the report written and the background
#: compile killed all end within --deadline-s
END_MARGIN_S = GRACE_S + TERM_WAIT_S + KILL_WAIT_S + WRITE_S + KILL_WAIT_S
#: JAX's memory fraction in the throughput section (its 10⁶-trace float64 cases)
MEM_FRACTION = 0.95
#: arrays of batch × samples on the device at once (see the docstring): device only, round
#: trip
DEVICE_ARRAYS = {"numba-cuda": (2, 2), "jax": (2, 3)}
#: test-only: "SECTION:raise|die|hang[,SECTION:...]" plants a fault in SECTION after its
#: first row
FAULT_ENV = "HHBENCH_GPU_REPORT_FAULT"


# -- the report file: read, one row added, both files rewritten ------------------------------

def write_report(out: Path, report: dict) -> None:
    """gpu_report.json and gpu_report.md, each replaced atomically."""
    for name, text in ((REPORT_JSON, json.dumps(report, indent=1, default=str)),
                       (REPORT_MD, markdown(report))):
        tmp = out / (name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, out / name)


def read_report(out: Path) -> dict:
    return json.loads((out / REPORT_JSON).read_text())


class Section:
    """A section's handle on the report: `emit(row)` appends a row and rewrites both files;
    `left()` is the seconds to the deadline."""

    def __init__(self, name: str, args):
        self.name, self.args, self.out = name, args, args.out
        self.report = read_report(self.out)
        self.state = self.report["sections"][name]
        self.state.setdefault("rows", [])
        self._fault = os.environ.get(FAULT_ENV, "")

    def left(self) -> float:
        return self.args.deadline_at - time.time()

    def has_time(self, needed_s: float = 0.0) -> bool:
        return self.left() > needed_s

    def set(self, key: str, value) -> None:
        self.state[key] = value
        write_report(self.out, self.report)

    def emit(self, row: dict) -> None:
        self.state["rows"].append(row)
        write_report(self.out, self.report)
        print(f"{self.name}: {json.dumps(row, default=str)[:300]}", flush=True)
        self._planted_fault()

    def skip_rest(self, what: str) -> None:
        self.emit({"what": what, "skipped": f"deadline ({self.left():.0f} s left)"})

    def _planted_fault(self) -> None:
        faults = dict(f.partition(":")[::2] for f in self._fault.split(",") if f)
        kind = faults.get(self.name)
        if kind == "raise":
            raise RuntimeError("planted fault (test)")
        if kind == "die":
            os._exit(9)
        if kind == "hang":
            time.sleep(10 ** 6)


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


# -- the probe -----------------------------------------------------------------------------

def _version(module: str) -> str:
    from importlib import metadata
    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return "not installed"


#: the packages whose versions the probe records (JAX's CUDA support comes as a plugin and
#: a PJRT package, one of each per CUDA major version)
VERSIONS_OF = ("numpy", "jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda13-plugin",
               "jax-cuda12-pjrt", "jax-cuda13-pjrt", "numba", "numba-cuda", "cuda-bindings",
               "cuda-python", "nvidia-ml-py", "cupy-cuda12x", "cupy-cuda13x", "scipy",
               "tensorflow")


def probe(args) -> dict:
    """What the machine is, and whether each GPU runtime compiles and runs one function."""
    out = {"python": platform.python_version(), "host": platform.node(),
           "simulator": os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                              "--format=csv,noheader,nounits"], capture_output=True,
                             text=True, timeout=10)
        out["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
        if smi.returncode == 0 and out["nvidia_smi"]:
            out.update(parse_smi(out["nvidia_smi"].splitlines()[0]))
        cuda = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=10)
        for token in cuda.stdout.split("|"):
            if "CUDA Version" in token:
                out["cuda_driver_version"] = token.split("CUDA Version:")[-1].strip()
    except (OSError, subprocess.SubprocessError) as exc:
        out["nvidia_smi"] = f"unavailable: {error_text(exc)}"
    out["versions"] = {m: _version(m) for m in VERSIONS_OF}
    out["host_fill"] = host_fill_rate(2 ** 26 if args.quick else 2 ** 30)
    out["numba_cuda"] = _probe_numba_cuda()
    total = out["numba_cuda"].get("memory_total_bytes")
    if total:  # the CUDA driver's own figure, where numba-cuda runs on a real GPU
        out["gpu_memory_bytes"], out["gpu_memory_from"] = int(total), "numba-cuda"
    out["jax"] = _probe_jax(args)
    return out


def host_fill_rate(nbytes: int = 2 ** 30) -> dict:
    """GB/s at which this host allocates and fills `nbytes` of fresh memory (page faults
    included: what building a 10⁶-trace current, 20.5 GB, pays), for judging the budget."""
    import numpy as np
    try:
        start = time.perf_counter()
        a = np.empty(nbytes, dtype=np.uint8)
        a.fill(1)
        seconds = time.perf_counter() - start
        del a
    except MemoryError as exc:
        return {"bytes": nbytes, "error": error_text(exc)}
    return {"bytes": nbytes, "seconds": seconds, "gb_per_s": nbytes / seconds / 1e9}


def parse_smi(line: str) -> dict:
    """nvidia-smi's "name, driver, memory.total (MiB)" line; a field it cannot give
    ("[N/A]", "[Not Supported]") recorded as unknown, never an error."""
    fields = [f.strip() for f in line.split(", ")]
    if len(fields) != 3:
        return {}
    out = {"gpu_name": fields[0], "driver": fields[1]}
    try:
        out["gpu_memory_bytes"] = int(float(fields[2]) * 2 ** 20)
        out["gpu_memory_from"] = "nvidia-smi"
    except ValueError:
        out["gpu_memory_bytes"] = None
        out["gpu_memory_unknown"] = f"nvidia-smi gave {fields[2]!r}"
    return out


def _probe_numba_cuda() -> dict:
    rec = {}
    try:
        from hhbench.runtimes.numba_cuda import module
        cuda = module()  # NumPy 2.5 made compilable first (NVIDIA/numba-cuda#907)
        if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
            try:  # where the compiler's parts were found (the simulator needs none)
                from numba.cuda.cudadrv import libs
                rec["nvvm"] = str(libs.get_cudalib("nvvm"))
                rec["libdevice"] = str(libs.get_libdevice())
            except Exception as exc:
                rec.setdefault("nvvm", f"not found: {error_text(exc)}")
                rec.setdefault("libdevice", f"not found: {error_text(exc)}")
        if not cuda.is_available():
            return {**rec, "works": False, "why": "numba-cuda finds no CUDA driver or GPU"}
        import numpy as np

        from hhbench.backends import cuda_engine
        start = time.perf_counter()
        v, bad = cuda_engine.integrate_marked(np.full((2, 8), 10.0), 0.05)
        rec.update(works=bool(np.isfinite(v).all()), compile_and_run_s=time.perf_counter()
                   - start, device=cuda_engine.device_name(0))
        if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
            try:  # the card's memory as the driver tells (nvidia-smi may say [N/A])
                rec["memory_total_bytes"] = int(
                    cuda.current_context().get_memory_info().total)
            except Exception as exc:
                rec["memory_total_bytes_error"] = error_text(exc)
        if not rec["works"]:
            rec["why"] = "the probe kernel returned non-finite V"
    except Exception as exc:
        traceback.print_exc()
        rec.update(works=False, why=error_text(exc))
    return rec


def _probe_jax(args) -> dict:
    try:
        from hhbench.jax_runtime import jax  # hhbench's set-up before JAX starts
        import jax.numpy as jnp
        rec = {"devices": [str(d) for d in jax.devices()],
               "default_backend": jax.default_backend()}
        kind = "gpu" if args.device == "gpu" else "cpu"
        try:
            dev = jax.devices(kind)[0]
        except RuntimeError as exc:
            return {**rec, "works": False, "why": f"JAX sees no {kind}: {error_text(exc)}"}
        start = time.perf_counter()
        y = jax.jit(lambda x: jnp.sum(jnp.exp(x)))(jax.device_put(jnp.zeros(16), dev))
        rec.update(works=float(y) == 16.0, run_s=time.perf_counter() - start, device=str(dev))
        try:
            stats = dev.memory_stats() or {}
            rec["bytes_limit"] = stats.get("bytes_limit")
        except Exception:  # a CPU device has no memory statistics
            pass
        return rec
    except Exception as exc:
        traceback.print_exc()
        return {"works": False, "why": error_text(exc)}


# -- the sections --------------------------------------------------------------------------

def _device(args, backend: str) -> str:
    """Where a backend runs: `--device`; one that runs on GPUs only (numba-cuda) always
    "gpu" (under `--device cpu`, the CUDA simulator)."""
    from hhbench.backends import check_name
    return "gpu" if "cpu" not in check_name(backend).device_kinds else args.device


def _precisions(backend: str) -> tuple:
    """The precisions `backend` takes: its runtime's (float64 and float32 for the HH GPU
    backends)."""
    from hhbench.backends import check_name
    return check_name(backend).option_choices["precision"]


def _agreement_stimulus(n_samples: int):
    """Step (spiking), sine, noise and a −20 µA/cm² step (forward Euler diverges)."""
    import numpy as np

    from hhbench import stimuli
    parts = [stimuli.make("step", n_samples=n_samples),
             stimuli.make("sine", n_samples=n_samples),
             stimuli.white_noise(seed=3, batch=1, n_samples=n_samples),
             stimuli.make("step", n_samples=n_samples, amplitude_ua=-20.0)]
    current = np.concatenate([p.current_ua.reshape(1, -1) for p in parts])
    return stimuli.Stimulus(kind="mixed", current_ua=current, fs_khz=parts[0].fs_khz,
                            params={"parts": "step, sine, noise, step -20"})


def section_agreement(sec: Section) -> None:
    from hhbench.suite import make_backend
    stim = _agreement_stimulus(sec.args.samples)
    # euler's rows first: its reference is NumPy's, while exp-euler's is the CPU engine's
    # (numba: a cold compile can take a minute on a busy machine)
    for kernel, cpu_backend in (("euler", "numpy"), ("exp-euler", "exp-euler")):
        ref = None
        for name, precision in ((n, p) for n in HH_GPU for p in _precisions(n)):
            row = {"backend": name, "kernel": kernel, "precision": precision}
            if not sec.has_time(1.0):
                sec.emit({**row, "skipped": "deadline"})
                continue
            try:
                b = make_backend(name, device=_device(sec.args, name),
                                 options={"kernel": kernel, "precision": precision})
                r = b.run(stim)
                if ref is None:
                    ref = make_backend(cpu_backend, device="cpu").run(stim)
                row.update(device=b.device, **agreement(ref.v_batch, ref.diverged,
                                                        r.v_batch, r.diverged))
            except Exception as exc:
                row["error"] = error_text(exc)
            sec.emit(row)


#: diverged traces' first bad samples agree when within this many samples
FIRST_BAD_WITHIN = 3


def first_bad_samples(v, diverged) -> list:
    """Per trace, the first sample that is not finite or beyond DIVERGED_ABS_MV (None for
    a trace not flagged diverged, or flagged with no such sample)."""
    import numpy as np

    from hhbench.backends.base import DIVERGED_ABS_MV
    v = np.asarray(v)
    bad = ~np.isfinite(v) | (np.abs(np.nan_to_num(v)) > DIVERGED_ABS_MV)
    out = []
    for k, flagged in enumerate(np.asarray(diverged, dtype=bool)):
        idx = np.flatnonzero(bad[k])
        out.append(int(idx[0]) if flagged and idx.size else None)
    return out


def agreement(ref_v, ref_diverged, v, diverged) -> dict:
    """A GPU result `v` against the CPU's `ref_v` (traces x samples): max and RMS |ΔV| over
    the traces that diverged in neither (on a trace where forward Euler blows up, a
    one-ulp difference, e.g. a GPU's FMA against NumPy, grows to hundreds of mV before
    the blow-up: no measure of agreement); each side's diverged traces and first bad
    sample, and whether those agree (the same traces, within FIRST_BAD_WITHIN samples)."""
    import numpy as np
    ref_v, v = np.asarray(ref_v), np.asarray(v)
    ref_div = np.asarray(ref_diverged, dtype=bool).reshape(-1)
    div = np.asarray(diverged, dtype=bool).reshape(-1)
    compared = ~(ref_div | div)
    both = np.isfinite(ref_v) & np.isfinite(v) & compared[:, None]
    diff = np.abs(ref_v - v)[both]
    first, first_ref = first_bad_samples(v, div), first_bad_samples(ref_v, ref_div)
    flags_agree = bool(np.array_equal(div, ref_div))
    first_agree = flags_agree and all(
        (a is None) == (b is None) and (a is None or abs(a - b) <= FIRST_BAD_WITHIN)
        for a, b in zip(first, first_ref))
    return {"max_abs_diff_mv": float(diff.max()) if diff.size else None,
            "rms_diff_mv": float(np.sqrt(np.mean(diff ** 2))) if diff.size else None,
            "traces_compared": int(compared.sum()),
            "diverged": div.tolist(), "diverged_cpu": ref_div.tolist(),
            "first_bad": first, "first_bad_cpu": first_ref,
            "flags_agree": flags_agree, "first_bad_agree": first_agree}


def _memory_needed(backend: str, precision: str, traces: int, samples: int) -> int:
    """Bytes the case holds on the device at its peak (the docstring's array counts)."""
    itemsize = 8 if precision == "float64" else 4
    # numba-cuda copies the float64 current and casts on the device
    first = 8 if backend == "numba-cuda" else itemsize
    arrays = max(DEVICE_ARRAYS.get(backend, (2, 3)))
    return traces * samples * (first + (arrays - 1) * itemsize)


def _card_bytes(sec: Section) -> int | None:
    p = sec.report.get("probe", {})
    return p.get("gpu_memory_bytes") or None


#: backends whose device-only call runs the very kernels their round trip runs (numba-cuda:
#: the same kernel and transposes, at the same shape; JAX's round trip is another compiled
#: function, batch-major with its input donated): after the device-only call their round
#: trip needs no cold call
WARMED_BY_DEVICE_ONLY = frozenset({"numba-cuda"})


def _timed_pair(backend, stim, settings, energy=None, steps=None, out=None,
                warm: bool = False) -> dict:
    """Device-only and round-trip seconds per call of `backend` on `stim`, each side's
    arrays freed before the other's are made (at 10⁶ float64 traces they are 20 GB each),
    and the energy of the device-only call; written into `out` as they are measured, so
    that a device-only call that fails keeps the round trip (measured after it, then the
    error raised). The device-only call waits through the backend's runtime, which also
    says the memory in use on the device after it (`device_memory_bytes`, where it can
    tell). `warm`: the device-only call, run first, has warmed the round trip's kernels
    (`WARMED_BY_DEVICE_ONLY`), so the round trip is timed without a cold call (at 10⁶
    traces a full round trip of seconds saved)."""
    import gc

    from hhbench.runtimes import device_memory, device_only_call
    from hhbench.timing import TimingSettings, measure
    out = {} if out is None else out
    out["device"] = backend.device
    failed = None
    try:
        # the call's device arrays are dropped at once: no result kept
        timed_call = device_only_call(backend, stim, cpu=True)  # JAX has one on the CPU too
        if timed_call is not None:
            timed, _ = measure(timed_call, settings)
            out["device_only_s"] = timed.median_s
            out["device_only_cold_s"] = timed.cold_s
            out["device_memory_bytes"] = device_memory(backend)
            if energy is not None:
                out["energy"] = energy.measure(timed_call, traces_per_call=stim.batch_size,
                                               steps_per_call=steps)
    except Exception as exc:
        failed, timed_call = exc, None
    warmed = warm and "device_only_s" in out
    timed_call = None  # the device's inputs go before the round trip's
    gc.collect()
    _release_numba_cuda_memory()
    timed, last = measure(lambda: backend.run(stim), TimingSettings(
        warmup_calls=0, min_repeats=1 if stim.batch_size >= 10 ** 5 else 3, min_time_s=0.0),
        cold=not warmed)
    out["round_trip_s"] = timed.median_s
    out["round_trip_cold_call"] = not warmed
    del last
    if failed is not None:
        raise failed
    if energy is not None and "energy" not in out:
        out["energy"] = energy.measure(lambda: backend.run(stim),
                                       traces_per_call=stim.batch_size, steps_per_call=steps)
    gc.collect()
    _release_numba_cuda_memory()
    return out


def _release_numba_cuda_memory() -> None:
    """Free the device arrays numba-cuda has queued for deallocation (it frees them in
    batches): JAX, next in the same process, allocates outside numba's view."""
    if "numba.cuda" not in sys.modules or os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return
    try:
        from numba import cuda
        cuda.current_context().deallocations.clear()
    except Exception:  # no context was ever made: nothing to free
        pass


def _energy(sec: Section, backend):
    """The energy recorder of `backend`'s device, read through its runtime
    (`Runtime.energy_j`: NVML for a GPU, RAPL for the CPU; a record of why not where the
    counter cannot be read, e.g. under the CUDA simulator)."""
    from hhbench.energy import EnergyRecorder
    return EnergyRecorder.for_runtime(backend.device_runtime(), backend.device,
                                      min_window_s=0.2 if sec.args.quick else 1.0)


def _recorder(sec: Section, energies: dict, backend, *, idle_now: bool = False):
    """`backend`'s energy recorder in `energies`, one per (runtime, device), made on first
    use (`idle_now`: its idle power measured as it is made)."""
    key = (backend.device_runtime().name, backend.device)
    if key not in energies:
        energies[key] = _energy(sec, backend)
        if idle_now:
            energies[key].measure_idle()
    return energies[key]


def _idle_first(sec: Section, backends) -> dict:
    """{(runtime, device): its energy recorder} for `backends` ((name, options) pairs),
    each recorder's idle power measured now, at the section's start, before any work
    warms the device (a backend that cannot be made here is left to its row to say)."""
    from hhbench.suite import make_backend
    energies = {}
    for name, options in backends:
        try:
            _recorder(sec, energies, make_backend(name, device=_device(sec.args, name),
                                                  options=options), idle_now=True)
        except Exception:
            traceback.print_exc()
    return energies


def section_throughput(sec: Section) -> None:
    from hhbench.suite import case_stimulus, make_backend
    args = sec.args
    stim = None
    steps = args.traces * args.samples
    card = _card_bytes(sec)
    energies = _idle_first(sec, [(name, {}) for name in HH_GPU])
    for name in HH_GPU:
        for precision in _precisions(name):
            row = {"backend": name, "precision": precision, "traces": args.traces,
                   "samples": args.samples}
            need = _memory_needed(name, precision, args.traces, args.samples)
            row["device_memory_needed_gb"] = round(need / 1e9, 2)
            if not sec.has_time(2.0):
                sec.emit({**row, "skipped": "deadline"})
                continue
            if card and need > card * MEM_FRACTION:
                sec.emit({**row, "skipped": f"too big for this card: needs {need / 1e9:.1f} "
                                            f"GB of {card * MEM_FRACTION / 1e9:.1f} GB usable"})
                continue
            b = None
            try:
                b = make_backend(name, device=_device(args, name),
                                 options={"precision": precision})
                b.prepare()
                if stim is None:
                    stim = case_stimulus("step", args.traces, n_samples=args.samples)
                _timed_pair(b, stim, args.timing, _recorder(sec, energies, b), steps,
                            out=row, warm=name in WARMED_BY_DEVICE_ONLY)
            except Exception as exc:
                traceback.print_exc()
                row["error"] = error_text(exc)
            if "device_only_s" in row:
                row["neuron_steps_per_s"] = steps / row["device_only_s"]
            if "round_trip_s" in row:
                row["round_trip_steps_per_s"] = steps / row["round_trip_s"]
            b = None  # the backend's device buffers go before the next one's
            sec.emit(row)


def _ceilings(sec: Section):
    """The GPU's ceilings (measured once: by the first section that needs them, kept in
    the report) or the CPU's."""
    from hhbench.floor import Ceilings, gpu_ceilings, measure_ceilings
    known = sec.report.get("ceilings")
    if known:
        return Ceilings(**known)
    c = (gpu_ceilings("gpu:0") if sec.args.device == "gpu"
         else measure_ceilings(settings=sec.args.timing))
    from dataclasses import asdict
    sec.report["ceilings"] = asdict(c)
    write_report(sec.out, sec.report)
    return c


def section_cnn(sec: Section) -> None:
    from hhbench.floor import cnn_floor_s
    from hhbench.suite import case_stimulus, make_backend
    args = sec.args
    # the idle power first, before the ceilings' work warms the device
    energy = next(iter(_idle_first(sec, [("cnn", {"runtime": "jax"})]).values()), None)
    try:
        ceilings = _ceilings(sec)
    except Exception as exc:
        traceback.print_exc()
        ceilings = None
        sec.set("ceilings_error", error_text(exc))
    for precision in args.cnn_precisions:
        try:
            b = make_backend("cnn", device=args.device, options={"runtime": "jax",
                                                                 "precision": precision})
            b.prepare()
        except Exception as exc:
            traceback.print_exc()
            sec.emit({"precision": precision, "error": error_text(exc)})
            continue
        for batch in args.cnn_batches:
            row = {"precision": precision, "batch": batch}
            if not sec.has_time(2.0):
                sec.emit({**row, "skipped": "deadline"})
                continue
            try:
                stim = case_stimulus("step", batch)
                if energy is None:
                    energy = _energy(sec, b)
                _timed_pair(b, stim, args.timing, energy, out=row)
                # the backend's default chunk follows the batch: every window of it in one
                # network call; its settings record what the last call did
                settings = b.settings()
                row["windows_per_call"] = settings.get("windows_per_call")
                row["settings"] = {k: str(v) for k, v in settings.items()}
                work = b.trace_work(stim.n_samples)
                per_trace = row.get("device_only_s", row["round_trip_s"]) / batch
                row["per_trace_s"] = per_trace
                if work and ceilings is not None:
                    floor = cnn_floor_s(work["matmul_flops"], ceilings,
                                        work.get("precision", precision))
                    row["floor_per_trace_s"] = floor
                    row["achieved_over_floor"] = per_trace / floor
            except Exception as exc:
                traceback.print_exc()
                row["error"] = error_text(exc)
            sec.emit(row)


def section_floor(sec: Section) -> None:
    from hhbench.floor import Ceilings, floor_report, format_floor
    args = sec.args
    known = {}  # measured once: by the cnn section, or here by the first backend's report
    if sec.report.get("ceilings"):
        known["gpu:0" if args.device == "gpu" else "cpu"] = Ceilings(**sec.report["ceilings"])
    for name in ("numba-cuda", "jax", "cnn"):
        if not sec.has_time(3.0):
            sec.emit({"backend": name, "skipped": "deadline"})
            continue
        try:
            report = floor_report((name,), batch=args.floor_batch,
                                  device=_device(args, name), settings=args.timing,
                                  n_samples=args.scaling_samples if args.quick else None,
                                  options={"cnn": {"runtime": "jax"}}, ceilings=known)
            for dev, c in report["ceilings"].items():
                if c and dev not in known:
                    known[dev] = Ceilings(**c)
            line = report["backends"][0]
            sec.emit({**line, "markdown": format_floor(report)})
        except Exception as exc:
            traceback.print_exc()
            sec.emit({"backend": name, "error": error_text(exc)})


#: what the run section leaves for scaling when scaling follows: this many seconds, or
#: this share of what is left where that is less
SCALING_RESERVE_S, SCALING_SHARE = 60.0, 1 / 3


def run_budget(left: float, scaling_follows: bool) -> float:
    """The seconds `hhbench run` may take of the `left` the run section has: less
    GRACE_S, and, when scaling follows, less its reserve."""
    usable = left - GRACE_S
    if scaling_follows:
        usable -= min(SCALING_RESERVE_S, SCALING_SHARE * max(usable, 0.0))
    return usable


def section_run(sec: Section) -> None:
    args = sec.args
    backends = ("numba", "numba-cuda", "jax", "cnn")
    batches = (1,) if args.quick else (1, 64)
    # --device cpu: the CPU only (numba-cuda's case is then a skipped line of the table)
    devices = tuple(dict.fromkeys(("cpu", args.device)))
    cases = len(backends) * len(devices) * len(batches)
    processes = 1 if args.quick else 3  # fresh processes timing each case
    left = run_budget(sec.left(), "scaling" in args.sections)
    if left < 10:
        sec.skip_rest("hhbench run")
        return
    # every case gets an equal share of what is left (the cases run one after another)
    case_timeout = max(5.0, left / cases)
    out = args.out / "run.json"
    cmd = [sys.executable, "-m", "hhbench.cli", "run", "--no-progress", "--stimuli", "step",
           "--backends", ",".join(backends), "--device", ",".join(devices),
           "--batch", ",".join(map(str, batches)), "--processes", str(processes),
           "--repeats", "2" if args.quick else "5", "--case-timeout", f"{case_timeout:.0f}",
           "-o", str(out)]
    with tempfile.TemporaryFile("w+") as printed:
        proc = subprocess.Popen(cmd, stdout=printed, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            _stop(proc)
            rc = "killed at the deadline"
        printed.seek(0)
        text = printed.read()
    print(text[-20000:], flush=True)
    sec.emit({"command": "hhbench " + " ".join(cmd[3:]), "exit": rc,
              "case_timeout_s": round(case_timeout), "printed": text[-8000:],
              "results": out.name if out.exists() else None})


def section_scaling(sec: Section) -> None:
    from hhbench.scaling import ScalingConfig, ScalingResults, run_scaling
    from hhbench.timing import TimingSettings
    args = sec.args
    backends = ("numba", "numba-cuda", "jax", "cnn")
    series = []
    for name in backends:
        devs = ("cpu",) if name == "numba" else (_device(args, name),) \
            if name == "numba-cuda" else tuple(dict.fromkeys(("cpu", args.device)))
        series += [(name, d) for d in devs]
    points, results = [], []
    for k, (name, dev) in enumerate(series):
        if not sec.has_time(3.0):
            sec.emit({"backend": name, "device": dev, "skipped": "deadline"})
            continue
        # what is left, shared by the series still to run and their two sweeps
        budget = max(0.5, min(args.budget_s, (sec.left() - 2.0) / (len(series) - k) / 2))
        try:
            config = ScalingConfig(backends=(name,), devices=(dev,), max_batch=args.traces,
                                   n_samples=args.scaling_samples,
                                   lengths=(args.scaling_samples,), budget_s=budget,
                                   options={"cnn": {"runtime": "jax"}},
                                   timing=TimingSettings(warmup_calls=1, min_repeats=2,
                                                         min_time_s=0.05))
            res = run_scaling(config, progress=True)
            results.append(res)
            points += list(res.points)
            d = res.as_dict()
            sec.emit({"backend": name, "device": dev, "budget_s": budget,
                      "points": d.get("points"), "skipped": d.get("skipped") or None,
                      "stopped": d.get("stopped"), "exponents": d.get("exponents")})
        except Exception as exc:
            traceback.print_exc()
            sec.emit({"backend": name, "device": dev, "error": error_text(exc)})
            continue
        if points:  # the table and figure so far: a deadline later keeps them
            _scaling_outputs(sec, ScalingResults(config=results[0].config,
                                                 points=tuple(points)))


def _scaling_outputs(sec: Section, merged) -> None:
    """The scaling table (in the report) and scaling.png of every series so far."""
    sec.set("markdown", merged.to_markdown())
    try:
        from hhbench.plot import plot_scaling
        plot_scaling(merged, sec.out / "scaling.png")
        sec.state.pop("figure_error", None)
    except Exception as exc:
        traceback.print_exc()
        sec.set("figure_error", error_text(exc))


RUNNERS = {"agreement": section_agreement, "throughput": section_throughput,
           "cnn": section_cnn, "floor": section_floor, "run": section_run,
           "scaling": section_scaling}


# -- the Markdown --------------------------------------------------------------------------

def _fmt(x, spec=".3g", none="-"):
    return none if x is None else format(x, spec)


def ran_on(report: dict) -> str:
    """The devices that produced rows: the GPU by name, the CUDA simulator, the CPU."""
    probe_ = report.get("probe", {})
    used = set()
    for state in report.get("sections", {}).values():
        for row in state.get("rows", []):
            dev = row.get("device")
            if dev and "error" not in row and "skipped" not in row:
                used.add(dev.split(":")[0] if dev.startswith("gpu") else dev)
    names = []
    if "gpu" in used:
        names.append("the CUDA simulator" if probe_.get("simulator") and not
                     probe_.get("gpu_name") else probe_.get("gpu_name", "a GPU"))
    if "cpu" in used or not names:
        names.append("the CPU")
    return " and ".join(names)


def markdown(report: dict) -> str:
    """The report as Markdown: the probe, then one table per section, each row as measured."""
    lines = [f"# hhbench on {ran_on(report)}, {report.get('date', '')}", ""]
    p = report.get("probe")
    if p:
        v = p.get("versions", {})
        lines += [f"GPU: {p.get('nvidia_smi', '?')}; CUDA (driver) "
                  f"{p.get('cuda_driver_version', '?')}; Python {p.get('python')}; "
                  + ", ".join(f"{k} {x}" for k, x in v.items() if x != "not installed"), "",
                  f"numba-cuda: {_probe_line(p.get('numba_cuda', {}))}; "
                  f"JAX: {_probe_line(p.get('jax', {}))}; host memory fill: "
                  f"{_fmt((p.get('host_fill') or {}).get('gb_per_s'), '.3g')} GB/s", ""]
    s = report.get("settings", {})
    lines += [f"Settings: {json.dumps(s)}", ""]
    lines += ["| section | status | seconds |", "|---|---|---|"]
    for name, state in report.get("sections", {}).items():
        lines.append(f"| {name} | {state.get('status', 'pending')} | "
                     f"{_fmt(state.get('seconds'), '.1f')} |")
    sections = report.get("sections", {})
    lines += _energy_headline(sections)
    for name in sections:
        rows = sections[name].get("rows", [])
        if rows or sections[name].get("markdown"):
            lines += ["", f"## {name}", ""] + FORMATS[name](sections[name], rows)
    return "\n".join(lines) + "\n"


def _energy_headline(sections: dict) -> list[str]:
    """Energy per trace of the compiled HH simulator against the CNN on the same device:
    the lowest J/trace of each, where both were measured."""
    def best(rows, label):
        got = [(r["energy"]["j_per_trace"], label(r), r.get("device")) for r in rows
               if "j_per_trace" in (r.get("energy") or {})]
        return min(got) if got else None
    hh = best(sections.get("throughput", {}).get("rows", []),
              lambda r: f"{r['backend']} {r['precision']}")
    cnn = hh and best([r for r in sections.get("cnn", {}).get("rows", [])
                       if r.get("device") == hh[2]],  # the same device only
                      lambda r: f"CNN {r['precision']} batch {r['batch']}")
    if not (hh and cnn):
        return []
    samples = sections["throughput"]["rows"][0].get("samples")
    return ["", f"**Energy per trace** (the device's energy counter, idle subtracted; HH "
                f"traces of {samples} samples, the CNN's of 2,560): {hh[1]} {hh[0]:.3g} J on "
                f"{hh[2]} against {cnn[1]} {cnn[0]:.3g} J on {cnn[2]}: the CNN costs "
                f"{cnn[0] / hh[0]:.3g}x the simulator's energy.", ""]


def _probe_line(rec: dict) -> str:
    if rec.get("works"):
        return f"works ({rec.get('device', '')})"
    return f"does not work: {rec.get('why', '?')}"


def _why(row: dict) -> str:
    return str(row.get("error") or row.get("skipped") or "-")


def _md_agreement(state, rows):
    out = ["float64 equal within 1e-9 mV is the bar; float32 is a different method. "
           "|ΔV| over the traces that diverged on neither side; diverged traces as "
           "trace@first bad sample, GPU / CPU", "",
           "| backend | kernel | precision | max abs diff (mV) | RMS diff (mV) | "
           "traces compared | diverged (GPU / CPU) | diverged agree |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "max_abs_diff_mv" in r:
            out.append(f"| {r['backend']} | {r['kernel']} | {r['precision']} | "
                       f"{_fmt(r['max_abs_diff_mv'])} | {_fmt(r.get('rms_diff_mv'))} | "
                       f"{r.get('traces_compared', '-')} | "
                       f"{_diverged_cell(r.get('diverged'), r.get('first_bad'))} / "
                       f"{_diverged_cell(r.get('diverged_cpu'), r.get('first_bad_cpu'))} | "
                       f"{r.get('first_bad_agree', r.get('flags_agree'))} |")
        else:
            out.append(f"| {r.get('backend')} | {r.get('kernel')} | {r.get('precision')} | "
                       f"{_why(r)} | | | | |")
    return out


def _diverged_cell(flags, first) -> str:
    """"1@652, 3@542" (trace@first bad sample), "none"."""
    flags, first = flags or [], first or [None] * len(flags or [])
    got = [f"{k}@{'?' if s is None else s}" for k, (f, s) in enumerate(zip(flags, first))
           if f]
    return ", ".join(got) or "none"


def _energy_cells(r):
    e = r.get("energy") or {}
    if "j_per_trace" not in e:
        return f"{e.get('unavailable', '-')}", ""
    steps = e.get("j_per_neuron_step")
    thr = e.get("throttled_samples", 0)
    return (f"{e['j_per_trace']:.3g} J/trace" + (f", {steps:.3g} J/step" if steps else ""),
            f"{thr} of {len(e.get('samples', []))}")


def _md_throughput(state, rows):
    out = ["neuron-steps/s; device only = input on the device, synchronised", "",
           "| backend | precision | traces x samples | device only | round trip | energy | "
           "throttled samples |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "round_trip_s" not in r:
            out.append(f"| {r['backend']} | {r['precision']} | {r['traces']} x "
                       f"{r['samples']} | {_why(r)} | | | |")
            continue
        energy, thr = _energy_cells(r)
        out.append(f"| {r['backend']} | {r['precision']} | {r['traces']} x {r['samples']} | "
                   f"{_fmt(r.get('neuron_steps_per_s'), none=_why(r))} | "
                   f"{_fmt(r.get('round_trip_steps_per_s'))} | {energy} | {thr} |")
    return out


def _md_cnn(state, rows):
    out = []
    if state.get("ceilings_error"):
        out += [f"ceilings not measured: {state['ceilings_error']}", ""]
    out += ["per trace", "",
            "| precision | batch | windows per call | device only | round trip | floor | "
            "achieved/floor | energy |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = r.get("batch")
        if "round_trip_s" not in r:
            out.append(f"| {r['precision']} | {b or '-'} | | {_why(r)} | | | | |")
            continue
        ms = lambda s: _why(r) if s is None else f"{s / b * 1e3:.3g} ms"  # noqa: E731
        floor = r.get("floor_per_trace_s")
        out.append(f"| {r['precision']} | {b} | {r.get('windows_per_call')} | "
                   f"{ms(r.get('device_only_s'))} | {ms(r.get('round_trip_s'))} | "
                   f"{'-' if floor is None else f'{floor * 1e3:.3g} ms'} | "
                   f"{_fmt(r.get('achieved_over_floor'), '.2f')} | {_energy_cells(r)[0]} |")
    return out


def _md_floor(state, rows):
    out = []
    for r in rows:
        out += [r["markdown"], ""] if "markdown" in r else [f"{r.get('backend')}: {_why(r)}", ""]
    return out


def _md_run(state, rows):
    out = []
    for r in rows:
        if "printed" in r:
            out += [f"`{r['command']}`: exit {r['exit']}, case timeout {r['case_timeout_s']} s",
                    "", "```", r["printed"].rstrip()[-6000:], "```"]
        else:
            out.append(f"{_why(r)}")
    return out


def _md_scaling(state, rows):
    out = [f"{r.get('backend')} on {r.get('device')}: {_why(r)}" for r in rows
           if "points" not in r]
    if state.get("markdown"):
        out += ["", state["markdown"]]
    return out


FORMATS = {"agreement": _md_agreement, "throughput": _md_throughput, "cnn": _md_cnn,
           "floor": _md_floor, "run": _md_run, "scaling": _md_scaling}


# -- the parent: probe, sections in processes, one deadline ---------------------------------

def _stop(proc, term_wait_s: float = TERM_WAIT_S) -> None:
    """SIGTERM to the process' group, SIGKILL `term_wait_s` later (its workers included;
    0: SIGKILL at once); returns within term_wait_s + KILL_WAIT_S."""
    steps = ((signal.SIGTERM, term_wait_s),) if term_wait_s > 0 else ()
    for sig, wait in steps + ((signal.SIGKILL, KILL_WAIT_S),):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def section_env(args) -> dict:
    """The sections' environment: the checkout importable, every runtime's process set-up
    (`hhbench.runtimes.process_env`: JAX's preallocation off and its memory fraction under
    its current name only, TensorFlow's start-up logging off), JAX's compilation cache
    shared by every section and worker, numba-cuda's simulator for `--device cpu`."""
    from hhbench.runtimes import process_env
    env = process_env(dict(os.environ))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("JAX_COMPILATION_CACHE_DIR",
                   str(Path(tempfile.gettempdir()) / "hhbench-jax-cache"))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    if args.device == "cpu":
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    return env


def child_env(env: dict, name: str) -> dict:
    """The environment of section `name`'s process: throughput's and scaling's 10⁶-trace
    cases get JAX's memory fraction raised to MEM_FRACTION (see the docstring), under
    `XLA_CLIENT_MEM_FRACTION`, the only name `section_env` leaves (jaxlib 0.11 refuses it
    beside the deprecated XLA_PYTHON_CLIENT_MEM_FRACTION, and JAX then runs on the CPU)."""
    if name in ("throughput", "scaling"):
        return {**env, "XLA_CLIENT_MEM_FRACTION": str(MEM_FRACTION)}
    return env


def _child(args, name: str, env: dict, log, timeout_s: float) -> tuple[str, int | None]:
    """Run one section (or the probe) in its own process; (how it ended, exit code)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), str(args.out), "--_section", name,
           "--_deadline-at", repr(sections_deadline(args.deadline_at)),
           "--device", args.device]
    if args.quick:
        cmd.append("--quick")
    cmd += ["--sections", ",".join(args.sections)]  # the run section leaves scaling time
    env = child_env(env, name)
    log.write(f"\n===== {name} ({time.strftime('%H:%M:%S')}) =====\n")
    log.flush()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    try:
        rc = proc.wait(timeout=max(timeout_s, 1.0))
    except subprocess.TimeoutExpired:
        _stop(proc)
        return "deadline", None
    return ("done" if rc == 0 else "failed"), rc


def sections_deadline(deadline_at: float) -> float:
    """The deadline the sections see: --deadline-s less END_MARGIN_S."""
    return deadline_at - END_MARGIN_S


def child_limit(deadline_at: float, now: float, probe: bool = False) -> float:
    """How long the parent waits for a section's process started at `now` (the probe's:
    at most PROBE_S) before stopping it: its deadline plus GRACE_S."""
    left = sections_deadline(deadline_at) - now
    return min(PROBE_S, left) if probe else left + GRACE_S


def _last_error(out: Path, name: str) -> str | None:
    try:
        return read_report(out)["sections"][name].get("error")
    except (OSError, ValueError, KeyError):
        return None


def parent(args) -> int:
    start = time.time()
    args.deadline_at = start + args.deadline_s
    env = section_env(args)
    report = {"date": time.strftime("%Y-%m-%d"),
              "settings": {"quick": args.quick, "device": args.device,
                           "deadline_s": args.deadline_s, "traces": args.traces,
                           "samples": args.samples, "cnn_batches": list(args.cnn_batches)},
              "sections": {"probe": {"status": "pending"},
                           **{n: {"status": "pending"} for n in args.sections}}}
    write_report(args.out, report)
    with open(args.out / LOG, "a") as log:
        # beside the probe, where cores are to spare (on two, it slows what it would save)
        warm = _warm_cpu_compiles(env, log) if len(os.sched_getaffinity(0)) >= 4 else None
        try:
            failed = _run_sections(args, env, log)
        finally:
            if warm is not None and warm.poll() is None:
                _stop(warm, term_wait_s=0)  # compiles only: killed at once
    if failed is None:  # no GPU runtime works
        return 1
    print(f"gpu_report: wrote {args.out / REPORT_JSON}, {args.out / REPORT_MD} "
          f"({time.time() - start:.0f} s; log: {args.out / LOG})")
    return 1 if failed else 0


#: the CPU backends' numba drivers, compiled (into numba's disk cache) beside the probe:
#: a cold compile of the `exp-euler` reference took 85 s on a busy 2-core machine
WARM_CPU = ("from hhbench.suite import make_backend\n"
            "for name in ('exp-euler', 'numba'):\n"
            "    make_backend(name, device='cpu').prepare()\n")


def _warm_cpu_compiles(env: dict, log):
    log.write("\n===== warming numba's CPU cache (in the background) =====\n")
    log.flush()
    return subprocess.Popen([sys.executable, "-c", WARM_CPU], stdout=log,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _run_sections(args, env: dict, log) -> bool | None:
    """The probe, then each section; whether one failed (None: no GPU runtime works)."""
    failed = False
    for name in ("probe",) + args.sections:
        t0 = time.time()
        if sections_deadline(args.deadline_at) - t0 < 2.0:
            how, rc = "skipped", None
        else:
            how, rc = _child(args, name, env, log,
                             child_limit(args.deadline_at, t0, probe=name == "probe"))
        for tmp in args.out.glob("*.tmp"):  # a write cut short by a kill
            tmp.unlink(missing_ok=True)
        report = read_report(args.out)
        state = report["sections"][name]
        rows = state.get("rows", [])
        if how == "failed":
            failed = True
            why = state.get("error") or f"its process exited with status {rc}"
            status = f"failed: {why}"
        elif how == "deadline" and name == "probe":
            status = f"stopped at its limit of {PROBE_S:.0f} s"
        elif how == "deadline":
            status = f"cut by the deadline ({len(rows)} rows kept)"
        elif how == "skipped":
            status = "skipped: deadline"
        else:
            errors = sum(1 for r in rows if "error" in r)
            status = "done" + (f" ({errors} of {len(rows)} rows with errors)"
                               if errors else "")
        state["status"], state["seconds"] = status, round(time.time() - t0, 1)
        write_report(args.out, report)
        print(f"gpu_report: {name:<10} {state['seconds']:6.1f} s  {status}", flush=True)
        if name == "probe" and args.device == "gpu" and how == "done":
            p = report.get("probe", {})
            if not (p.get("numba_cuda", {}).get("works") or p.get("jax", {}).get("works")):
                print("gpu_report: no GPU runtime works here: numba-cuda: "
                      f"{p.get('numba_cuda', {}).get('why')}; JAX: "
                      f"{p.get('jax', {}).get('why')}", file=sys.stderr)
                for rest in args.sections:
                    report["sections"][rest]["status"] = "not run: no GPU runtime works"
                write_report(args.out, report)
                return None
    return failed


def run_section(args) -> int:
    """In a section's own process: run it, rows checkpointed as they come; an exception is
    recorded as the section's error (its traceback goes to the log) and exits 1."""
    warnings.simplefilter("ignore")  # DivergenceWarning etc.: the rows say what happened
    name = args._section
    try:
        if name == "probe":
            report = read_report(args.out)
            report["probe"] = probe(args)
            write_report(args.out, report)
            return 0
        sec = Section(name, args)
        RUNNERS[name](sec)
        return 0
    except Exception as exc:
        traceback.print_exc()
        report = read_report(args.out)
        report["sections"][name]["error"] = error_text(exc)
        write_report(args.out, report)
        return 1


def _sections(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    bad = [n for n in names if n not in SECTIONS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown section {bad[0] if bad else text!r}; choose from {', '.join(SECTIONS)}")
    return tuple(n for n in SECTIONS if n in names)  # always in the order of value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def parse(argv=None):
    p = argparse.ArgumentParser(
        prog="gpu_report.py", description=__doc__.split("\n\n")[0],
        epilog="See the module docstring (python -m pydoc scripts/gpu_report.py) for what "
               "each section measures.")
    p.add_argument("out", type=Path, help="folder for gpu_report.json/.md/.log, run.json/"
                                          ".csv and scaling.png (created)")
    p.add_argument("--deadline-s", type=_positive, default=360.0, metavar="SECONDS",
                   help="the whole run ends within this, output included; every section "
                        "checks it between rows (default 360)")
    p.add_argument("--quick", action="store_true",
                   help="small sizes: a test of the script, not a measurement")
    p.add_argument("--device", default="gpu", choices=("gpu", "cpu"),
                   help="where jax and the CNN run (default gpu); cpu tests the script on a "
                        "machine without a GPU, numba-cuda then on numba's CUDA simulator")
    p.add_argument("--sections", type=_sections, default=SECTIONS, metavar="LIST",
                   help=f"comma-separated, of {', '.join(SECTIONS)} (run in that order; "
                        "default all)")
    p.add_argument("--_section", help=argparse.SUPPRESS)
    p.add_argument("--_deadline-at", dest="deadline_at", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        p.error(f"{args.out} exists and is not a folder")
    if not args.out.exists() and not args.out.parent.is_dir():
        p.error(f"{args.out}: its parent folder {args.out.parent} does not exist")
    folder = args.out if args.out.exists() else args.out.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        p.error(f"{folder} is not writable")
    from hhbench.runtimes import get_runtime
    from hhbench.timing import TimingSettings
    # quick: numba's CUDA simulator steps every thread in Python, so few samples; the CNN
    # (scaling) needs more than 2 x 256 of context
    args.samples = 64 if args.quick else 2560
    args.scaling_samples = 640 if args.quick else 2560
    args.traces = 4 if args.quick else 10 ** 6
    args.cnn_batches = (1, 4) if args.quick else (1, 64, 1024, 4096)
    # quick: tf32 is float32's code path with another precision flag
    args.cnn_precisions = ("float32", "bfloat16") if args.quick else (
        get_runtime("jax").network_precisions)
    args.floor_batch = 2 if args.quick else 4096
    args.budget_s = 2.0 if args.quick else 12.0
    args.timing = TimingSettings(warmup_calls=1, min_repeats=3,
                                 min_time_s=0.05 if args.quick else 0.2)
    return args


def main(argv=None) -> int:
    args = parse(argv)
    if args._section:
        return run_section(args)
    try:
        args.out.mkdir(exist_ok=True)
    except OSError as exc:  # before any work: one line, exit 2
        print(f"gpu_report.py: error: cannot create {args.out}: {exc.strerror}",
              file=sys.stderr)
        return 2
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
