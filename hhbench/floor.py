"""How far each backend is from what this machine allows: counted work over measured ceilings.

For every backend, in one run:
  * the work of one unit, counted, not typed in — HH integrators: the exponentials,
    divisions, multiplications and additions of one neuron-step
    (`hhbench.model.count_step_operations(kernel)`); the CNN: FLOPs per trace (one
    window) from the model's layers (`hhbench.cnn.flops`);
  * the machine's ceilings, measured in the same run (`measure_ceilings`): float32 and
    float64 matrix-multiply rates (TensorFlow's matmul on the chosen device, or NumPy's
    when TensorFlow is absent) and vectorised exp throughput (NumPy's exp on every core at
    once, each over its own in-cache float64 values: the whole machine, as for matmul);
  * the floor these imply per unit (`hh_floor_s`, `cnn_floor_s`): for HH the larger of
    the exp-bound time (exps / exp rate) and the flop-bound time (other operations /
    float64 matmul rate — a division counted as one operation, so that floor is
    optimistic); for the CNN, matmul FLOPs / float32 matmul rate;
  * the achieved time per unit (`hhbench.timing.measure` of the backend on the suite's
    step stimulus at the given batch), and achieved / floor (1 = at the floor).
Backends whose work per unit is not counted (odeint's adaptive steps, a kernel without
counts) get no floor and say why.

Each backend runs on the device it resolves the request to (`Backend.resolve_device`); a
backend that cannot run there gets a line saying why. A GPU's ceilings are measured with
JAX on that GPU (`hhbench.jax_ceilings`: matmul in float32, TF32, bfloat16 and float64;
elementwise exp and fma in float64 and float32), and a GPU backend's floor uses the rates
of the precision it runs in: for HH the larger of exps / exp rate and the other
operations / (2 · fma rate) (every multiply and add paired into an fma: optimistic); for
the CNN its matmul FLOPs at float32, TF32 or bfloat16.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from hhbench.environment import usable_cores
from hhbench.errors import CannotRunHere, HHBenchError
from hhbench.timing import TimingSettings, measure

#: operations that count one flop each (an fma two); "exp" is bound apart, and totals
#: ("flops") and comparisons ("cmp") in a count are not arithmetic to add again
FLOP_KEYS = {"div": 1, "mul": 1, "add": 1, "sub": 1, "neg": 1, "fma": 2}
CEILING_SETTINGS = TimingSettings(warmup_calls=1, min_repeats=5, min_time_s=0.3)


@dataclass(frozen=True, kw_only=True)
class Ceilings:
    """Measured rates: matmul in FLOP/s (2·n³ per n×n product), exp in evaluations/s on
    `exp_threads` cores at once. A runtime without a matrix multiply (numba-cuda) leaves
    the matmul rates None: its floors are bound by exp and fma alone."""

    matmul_f32_flops: float | None
    matmul_f64_flops: float | None
    exp_f64_per_s: float
    matmul_source: str = "tensorflow"
    device: str = "/CPU:0"
    exp_threads: int = 1
    #: measured on GPUs (with JAX), None elsewhere: matmul in TF32 and bfloat16, and the
    #: elementwise rates of exp (float32) and fma (float64, float32) per second
    matmul_tf32_flops: float | None = None
    matmul_bf16_flops: float | None = None
    exp_f32_per_s: float | None = None
    fma_f64_per_s: float | None = None
    fma_f32_per_s: float | None = None

    def __post_init__(self):
        for name in ("matmul_f32_flops", "matmul_f64_flops", "exp_f64_per_s"):
            value = getattr(self, name)
            if value is None and name != "exp_f64_per_s" and self.fma_f64_per_s:
                continue  # no matmul here: the fma rate bounds the arithmetic
            if value is None or not value > 0:
                raise HHBenchError(f"ceilings: {name} must be > 0")
        if int(self.exp_threads) != self.exp_threads or self.exp_threads < 1:
            raise HHBenchError("ceilings: exp_threads must be a positive integer")


@dataclass(frozen=True, kw_only=True)
class FloorLine:
    """One backend against its floor; times in seconds per unit ("neuron-step" or "trace")."""

    backend: str
    unit: str
    batch: int
    operations: dict = field(default_factory=dict)
    floor_s: float | None = None
    bound: str | None = None
    achieved_s: float | None = None
    note: str = ""
    #: a GPU backend's achieved time is device only; its round trip (host arrays in and
    #: out) per unit is kept beside it
    round_trip_s: float | None = None
    #: "ok"; "skipped" or "failed" (`hhbench.failures`: the note says why); "ceiling too
    #: low" when achieved beat the floor (ratio < 1): a ceiling was measured too low,
    #: which the line must not pass off as a result
    status: str = "ok"

    def __post_init__(self):
        ratio = self.ratio
        if self.status == "ok" and ratio is not None and ratio < 1.0:
            object.__setattr__(self, "status", "ceiling too low")

    @property
    def ratio(self) -> float | None:
        """achieved / floor (≥ 1; 1 means at the floor)."""
        if self.floor_s is None or self.achieved_s is None or self.floor_s <= 0:
            return None
        return self.achieved_s / self.floor_s

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


# -- ceilings ------------------------------------------------------------------------------

def matmul_rate(dtype: str, *, n: int | None = None, device: str = "/CPU:0",
                settings: TimingSettings = CEILING_SETTINGS) -> tuple[float, str]:
    """FLOP/s of an n×n by n×n product (2·n³ FLOPs) in `dtype`, with TensorFlow's matmul on
    `device` if TensorFlow is installed, else NumPy's (whose OpenBLAS is slowed by
    OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE where these are set); returns (rate, source).
    n defaults to 1024 on a CPU, 4096 on a GPU (enough work to hide the launch)."""
    from importlib.util import find_spec

    n = n or (4096 if "GPU" in device.upper() else 1024)
    if find_spec("tensorflow") is not None:
        from hhbench.cnn.devices import matmul_call  # imports TensorFlow quietly

        timed, _ = measure(matmul_call(dtype, n, device), settings)
        return 2.0 * n ** 3 / timed.median_s, "tensorflow"
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    timed, _ = measure(lambda: a @ b, settings)
    return 2.0 * n ** 3 / timed.median_s, "numpy"


def exp_rate(*, n: int = 2 ** 15, passes: int = 64, threads: int | None = None,
             settings: TimingSettings = CEILING_SETTINGS) -> float:
    """Evaluations/s of NumPy's vectorised exp on `threads` cores at once (default: every
    usable core): each core evaluates exp `passes` times over its own n float64 values in
    (−10, 0] (2¹⁵: in and out fit the L2 cache, so this is the arithmetic's rate, not the
    memory's — the HH backends keep their state in cache too).

    NumPy's exp runs on one core, and measured that way it would set the floor of a
    backend that uses every core too low by the core count (a backend "faster than its
    floor"); the matmul ceilings are whole-machine rates too. NumPy releases the GIL in its
    ufunc loops, so a thread pool runs the cores' shares in parallel.
    """
    from concurrent.futures import ThreadPoolExecutor

    if threads is not None and threads < 1:
        raise HHBenchError(f"exp ceiling: threads must be >= 1, got {threads!r}")
    workers = usable_cores() if threads is None else int(threads)
    rng = np.random.default_rng(0)
    xs = [-10.0 * rng.random(n) for _ in range(workers)]
    outs = [np.empty(n) for _ in range(workers)]

    def share(k):
        for _ in range(passes):
            np.exp(xs[k], out=outs[k])

    with ThreadPoolExecutor(workers) as pool:
        timed, _ = measure(lambda: list(pool.map(share, range(workers))), settings)
    return workers * n * passes / timed.median_s


def ceilings_source(runtime: str | None) -> str:
    """The runtime `gpu_ceilings` measures a GPU's ceilings through for a backend of
    `runtime` (its `matmul_source`): that runtime where it measures its own, else JAX."""
    from hhbench.runtimes import get_runtime
    rt = get_runtime(runtime)
    own = rt.has_ceilings and rt.is_available()
    return (rt if own else get_runtime("jax")).label.lower()


def gpu_ceilings(device: str, runtime: str | None = "jax") -> Ceilings:
    """A GPU's ceilings ("gpu:N"), measured now through `runtime` (the runtime the backend
    runs on; `Runtime.ceilings`), or through JAX where that runtime measures none."""
    from hhbench.runtimes import get_runtime

    rt = get_runtime(runtime)
    rates = rt.ceilings(device) if rt.has_ceilings and rt.is_available() else None
    if rates is None:
        rt = get_runtime("jax")
        if not rt.is_available():
            raise CannotRunHere(f"the ceilings of {device} are measured with JAX, which is "
                                "not installed; install with: pip install 'hhbench[jax]'")
        rates = rt.ceilings(device)
    return Ceilings(**rates, matmul_source=rt.label.lower(), device=device)


def measure_ceilings(device: str = "/CPU:0", *, n_matmul: int | None = None,
                     settings: TimingSettings = CEILING_SETTINGS) -> Ceilings:
    """The machine's ceilings, measured now (seconds of work)."""
    f32, source = matmul_rate("float32", n=n_matmul, device=device, settings=settings)
    f64, _ = matmul_rate("float64", n=n_matmul, device=device, settings=settings)
    cores = usable_cores()
    return Ceilings(matmul_f32_flops=f32, matmul_f64_flops=f64,
                    exp_f64_per_s=exp_rate(threads=cores, settings=settings),
                    matmul_source=source, device=device, exp_threads=cores)


# -- floors --------------------------------------------------------------------------------

def hh_floor_s(ops: dict, ceilings: Ceilings, precision: str = "float64"
               ) -> tuple[float, str]:
    """Seconds per neuron-step allowed by the ceilings, and which bound sets it.

    ops: counts per neuron-step with key "exp" and any of `FLOP_KEYS` (an fma is two
    operations; other keys, e.g. a "flops" total or "cmp", are ignored). exp-bound:
    exp / exp rate (of `precision`, where measured); flop-bound: the arithmetic / twice
    the fma rate where measured (a GPU), else / the float64 matmul rate. The floor is the
    larger."""
    if "exp" not in ops:
        raise HHBenchError("HH operation counts need an 'exp' entry")
    single = precision == "float32"
    flops = sum(int(v) * FLOP_KEYS[k] for k, v in ops.items() if k in FLOP_KEYS)
    exp_rate_ = (ceilings.exp_f32_per_s if single else None) or ceilings.exp_f64_per_s
    fma = ceilings.fma_f32_per_s if single else ceilings.fma_f64_per_s
    t_exp = int(ops["exp"]) / exp_rate_
    t_flop = flops / (2.0 * fma if fma else ceilings.matmul_f64_flops)
    return (t_exp, "exp") if t_exp >= t_flop else (t_flop, "flops")


def cnn_floor_s(matmul_flops: int, ceilings: Ceilings, dtype: str = "float32") -> float:
    """Seconds per trace: the network's matmul FLOPs at the matmul rate of `dtype`
    ("float32", "tf32", "bfloat16", "float64"; TF32 and bfloat16 where measured)."""
    rate = {"float64": ceilings.matmul_f64_flops, "tf32": ceilings.matmul_tf32_flops,
            "bfloat16": ceilings.matmul_bf16_flops}.get(dtype) or ceilings.matmul_f32_flops
    if rate is None:
        raise CannotRunHere(f"no matmul ceiling measured on {ceilings.device} "
                            f"(by {ceilings.matmul_source})")
    return matmul_flops / rate


def hh_operations(backend: str) -> tuple[dict | None, str]:
    """(counts per neuron-step, note) of a CPU HH backend, as the backend declares them
    (`Backend.step_operations`)."""
    from hhbench.backends import get_backend
    return get_backend(backend).step_operations()


# -- achieved ------------------------------------------------------------------------------

def floor_line(name: str, ceilings: Ceilings, *, batch: int = 64, device: str = "auto",
               model: str | None = None, options: dict | None = None,
               settings: TimingSettings = TimingSettings(), n_samples: int | None = None
               ) -> FloorLine:
    """Count, floor and time one backend on the suite's step stimulus of `batch` traces
    on `device` (a request the backend resolves)."""
    import warnings

    from hhbench import stimuli as stimlib
    from hhbench.errors import DivergenceWarning
    from hhbench.suite import case_stimulus, make_backend

    stim = case_stimulus("step", batch, n_samples=n_samples or stimlib.DEFAULT_SAMPLES)
    backend = make_backend(name, device=device, model=model, options=options)
    backend.prepare()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)  # cost, not accuracy
        timed, _ = measure(lambda: backend.run(stim), settings)
    round_trip = None
    where = f" on {backend.device}"
    # a floor is device arithmetic: on a GPU, time the device-only call (copies excluded)
    try:
        from hhbench.runtimes import device_only_call
        call = device_only_call(backend, stim)
        if call is not None:
            device_only, _ = measure(call, settings)
            round_trip, timed = timed.median_s, device_only
            where += " (device only; round trip beside)"
    except Exception as exc:  # the round trip stands, and the line says why it is one
        from hhbench.failures import not_run
        where += f" (round trip: the device-only timing failed: {not_run(exc).reason})"
    call = None
    precision = str(backend.settings().get("precision", "float64"))
    trace_work = backend.trace_work(stim.n_samples)
    if trace_work is not None:  # a surrogate: counted per trace, bound by matmul
        per_trace = trace_work["matmul_flops"]
        dtype = trace_work.get("precision", "float32")
        floor_s, why = None, ""
        try:  # ceilings without this matmul: the timed line stands, without a floor
            floor_s = cnn_floor_s(per_trace, ceilings, dtype) if ceilings else None
        except CannotRunHere as exc:
            why = f"; no floor: {exc}"
        return FloorLine(backend=name, unit="trace", batch=batch,
                         operations={k: v for k, v in trace_work.items()
                                     if k not in ("note", "precision")},
                         floor_s=floor_s,
                         bound=f"matmul {dtype}", achieved_s=timed.median_s / batch,
                         note=trace_work.get("note", "") + where + why,
                         round_trip_s=round_trip and round_trip / batch)
    substeps = int(backend.settings().get("substeps", 1) or 1)
    steps = batch * stim.n_samples * substeps
    ops, note = backend.step_operations()
    try:
        floor, bound = (hh_floor_s(ops, ceilings, precision) if ops and ceilings
                        else (None, None))
    except CannotRunHere as exc:  # ceilings without what this work needs: no floor
        floor, bound, note = None, None, f"{note}; no floor: {exc}"
    return FloorLine(backend=name, unit="neuron-step", batch=batch, operations=ops or {},
                     floor_s=floor, bound=bound and f"{bound} {precision}",
                     achieved_s=timed.median_s / steps, note=note + where,
                     round_trip_s=round_trip and round_trip / steps)


def floor_report(backends, *, batch: int = 64, device: str = "auto", model: str | None = None,
                 settings: TimingSettings = TimingSettings(),
                 n_samples: int | None = None, options: dict | None = None,
                 ceilings: dict | None = None) -> dict:
    """Ceilings (per device a backend runs on: the CPU's; a GPU's measured through the
    backend's runtime) and one FloorLine per backend, JSON-ready. Whatever goes wrong with
    one backend (not installed, cannot run on `device`, its resolution, preparation or
    run raising) is its line, "skipped" or "failed" with the exception's words as the note
    (`hhbench.failures`); the others are still measured. `ceilings` ({key: Ceilings}) are
    ones already measured in this run, not measured again; a GPU whose ceilings cannot be
    measured gets None, and its backends are timed without a floor (the note says why)."""
    from hhbench.backends import check_name
    from hhbench.devices import check_gpu_present, parse_device
    from hhbench.failures import NotRun, not_run
    from hhbench.suite import backend_options

    if int(batch) != batch or batch < 1:
        raise HHBenchError(f"batch must be a positive integer, got {batch!r}")
    if not backends:
        raise HHBenchError("floor needs at least one backend")
    parse_device(device)
    check_gpu_present((device,))
    options = options or {}
    where = {}  # name -> (device, runtime, None) or (None, None, NotRun)
    for name in backends:
        cls = check_name(name)
        opts = backend_options(name, options.get(name))
        reason = cls.unavailable_reason()
        try:
            where[name] = ((None, None, NotRun("skipped", reason)) if reason else
                           (cls.resolve_device(device, opts), cls.runtime_of(opts), None))
        except Exception as exc:  # one backend: its line, not the section
            where[name] = (None, None, not_run(exc))
    # the CPU's ceilings (always, unless ceilings were given and no backend runs there); a
    # GPU's once per runtime that runs there (keyed "gpu:N", or "gpu:N (runtime)" when two
    # runtimes measure the same GPU)
    given, known = ceilings is not None, dict(ceilings or {})
    ceilings, ceiling_errors, key_of = {}, {}, {}
    if not given or any(dev == "cpu" for dev, _, _ in where.values()):
        ceilings["cpu"] = known.get("cpu") or measure_ceilings("/CPU:0")
    gpu_runtimes: dict[str, list] = {}
    for dev, runtime, _ in where.values():
        if dev is not None and dev != "cpu" and runtime not in gpu_runtimes.setdefault(dev, []):
            gpu_runtimes[dev].append(runtime)
    for dev, runtimes in gpu_runtimes.items():
        for runtime in runtimes:
            key = dev if len(runtimes) == 1 else f"{dev} ({runtime})"
            key_of[(dev, runtime)] = key
            reuse = known.get(key)
            if reuse is not None and reuse.matmul_source != ceilings_source(runtime):
                reuse = None  # measured through another runtime: not this backend's
            try:
                ceilings[key] = reuse or gpu_ceilings("gpu:0" if dev == "gpu:all" else dev,
                                                      runtime)
            except Exception as exc:  # timed all the same, without a floor
                ceilings[key], ceiling_errors[key] = None, not_run(exc).reason
    lines = []
    for name in backends:
        dev, runtime, why = where[name]
        if why is not None:
            lines.append(FloorLine(backend=name, unit="-", batch=batch, status=why.status,
                                   note=why.reason))
            continue
        key = "cpu" if dev == "cpu" else key_of[(dev, runtime)]
        try:
            line = floor_line(name, ceilings[key], batch=batch, device=dev, model=model,
                              options=options.get(name), settings=settings,
                              n_samples=n_samples)
            if key in ceiling_errors:
                line = replace(line, note=f"{line.note}; no floor: ceilings of {key}: "
                                          f"{ceiling_errors[key]}")
            lines.append(line)
        except Exception as exc:  # preparing or running it: its line, not the section
            why = not_run(exc)
            lines.append(FloorLine(backend=name, unit="-", batch=batch, status=why.status,
                                   note=why.reason))
    return {"ceilings": {dev: c and asdict(c) for dev, c in ceilings.items()}, "batch": batch,
            "backends": [line.as_dict() for line in lines]}


def _ceiling_line(device: str, c: dict) -> str:
    if c.get("fma_f64_per_s") is None:  # the CPU: TensorFlow's (or NumPy's) matmul, NumPy's exp
        return (f"ceilings on {device} (matmul via {c['matmul_source']}): float32 matmul "
                f"{c['matmul_f32_flops'] / 1e9:.1f} GFLOP/s, float64 matmul "
                f"{c['matmul_f64_flops'] / 1e9:.1f} GFLOP/s, exp (NumPy, CPU, "
                f"{c.get('exp_threads', 1)} threads) {c['exp_f64_per_s'] / 1e6:.0f} M/s")
    g = lambda key: "-" if c.get(key) is None else f"{c[key] / 1e12:.3g}"  # noqa: E731
    return (f"ceilings on {device} ({c['matmul_source']}): matmul float32 "
            f"{g('matmul_f32_flops')}, TF32 {g('matmul_tf32_flops')}, bfloat16 "
            f"{g('matmul_bf16_flops')}, float64 "
            f"{g('matmul_f64_flops')} TFLOP/s; exp {g('exp_f64_per_s')} (float64) / "
            f"{g('exp_f32_per_s')} (float32) T/s; fma {g('fma_f64_per_s')} (float64) / "
            f"{g('fma_f32_per_s')} (float32) T/s")


def format_floor(report: dict) -> str:
    """The report as a Markdown table (times per unit in µs for neuron-steps, ms for traces)."""
    head = "\n".join(_ceiling_line(dev, c) if c else f"ceilings on {dev}: not measured"
                     for dev, c in report["ceilings"].items())
    head += (f"\nbatch {report['batch']}; each backend against the ceilings of the device it "
             "ran on")
    rows = ["| backend | unit | work per unit | floor | bound | achieved | achieved/floor | note |",
            "|---|---|---|---|---|---|---|---|"]
    for line in report["backends"]:
        scale, label = (1e3, "ms") if line["unit"] == "trace" else (1e9, "ns")
        work = ", ".join(f"{k} {v:,}" for k, v in line["operations"].items()) or "-"
        fmt = lambda s: "-" if s is None else f"{s * scale:.3g} {label}"  # noqa: E731
        ratio = "-" if line["ratio"] is None else f"{line['ratio']:.2f}x"
        if line.get("round_trip_s") is not None:
            line = {**line, "note": f"{line['note']}; round trip "
                                    f"{fmt(line['round_trip_s'])}"}
        status = line.get("status", "ok")
        if status != "ok":  # skipped, failed, or a ceiling measured too low
            ratio = f"{ratio} ({status})" if line["ratio"] is not None else status
        rows.append(f"| {line['backend']} | {line['unit']} | {work} | {fmt(line['floor_s'])} | "
                    f"{line['bound'] or '-'} | {fmt(line['achieved_s'])} | {ratio} | "
                    f"{line['note']} |")
    return head + "\n" + "\n".join(rows)
