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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from hhbench.environment import usable_cores
from hhbench.errors import HHBenchError
from hhbench.timing import TimingSettings, measure

#: operations that count one flop each (an fma two); "exp" is bound apart, and totals
#: ("flops") and comparisons ("cmp") in a count are not arithmetic to add again
FLOP_KEYS = {"div": 1, "mul": 1, "add": 1, "sub": 1, "neg": 1, "fma": 2}
#: backends whose steps per sample depend on the solution (no fixed work per neuron-step)
ADAPTIVE = {"odeint", "odeint-lab", "reference"}
CEILING_SETTINGS = TimingSettings(warmup_calls=1, min_repeats=5, min_time_s=0.3)


@dataclass(frozen=True, kw_only=True)
class Ceilings:
    """Measured rates: matmul in FLOP/s (2·n³ per n×n product), exp in evaluations/s on
    `exp_threads` cores at once."""

    matmul_f32_flops: float
    matmul_f64_flops: float
    exp_f64_per_s: float
    matmul_source: str = "tensorflow"
    device: str = "/CPU:0"
    exp_threads: int = 1

    def __post_init__(self):
        for name in ("matmul_f32_flops", "matmul_f64_flops", "exp_f64_per_s"):
            if not getattr(self, name) > 0:
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
        import hhbench.cnn  # noqa: F401  (imports TensorFlow quietly)
        from hhbench.cnn.devices import matmul_call

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

def hh_floor_s(ops: dict, ceilings: Ceilings) -> tuple[float, str]:
    """Seconds per neuron-step allowed by the ceilings, and which bound sets it.

    ops: counts per neuron-step with key "exp" and any of `FLOP_KEYS` (an fma is two
    operations; other keys, e.g. a "flops" total or "cmp", are ignored). exp-bound:
    exp / exp rate; flop-bound: the arithmetic / float64 matmul rate. The floor is the
    larger."""
    if "exp" not in ops:
        raise HHBenchError("HH operation counts need an 'exp' entry")
    flops = sum(int(v) * FLOP_KEYS[k] for k, v in ops.items() if k in FLOP_KEYS)
    t_exp = int(ops["exp"]) / ceilings.exp_f64_per_s
    t_flop = flops / ceilings.matmul_f64_flops
    return (t_exp, "exp") if t_exp >= t_flop else (t_flop, "flops")


def cnn_floor_s(matmul_flops: int, ceilings: Ceilings, dtype: str = "float32") -> float:
    """Seconds per trace: the network's matmul FLOPs at the matmul rate of `dtype`."""
    rate = ceilings.matmul_f64_flops if dtype == "float64" else ceilings.matmul_f32_flops
    return matmul_flops / rate


def hh_operations(backend: str) -> tuple[dict | None, str]:
    """(counts per neuron-step, note) for an HH backend: the counted operations of the step
    kernel it runs (`hhbench.model.count_step_operations`); (None, why) where the work per
    neuron-step is not fixed."""
    from hhbench import model
    from hhbench.backends import check_name
    from hhbench.backends.kernels import get_kernel

    if backend in ADAPTIVE:
        return None, "adaptive steps: no fixed work per neuron-step"
    if backend == "numpy":  # the lab's own six-exponential step, run by NumPy
        return dict(model.count_step_operations("euler_step")), "step euler_step"
    kernel = getattr(check_name(backend), "kernel", None)
    if kernel is None:
        return None, f"{backend} runs no counted step kernel"
    return dict(get_kernel(kernel).operation_count()), f"step kernel {kernel}"


# -- achieved ------------------------------------------------------------------------------

def floor_line(name: str, ceilings: Ceilings, *, batch: int = 64, device: str = "auto",
               model: str | None = None, cnn_mode: str = "auto",
               settings: TimingSettings = TimingSettings(), n_samples: int | None = None
               ) -> FloorLine:
    """Count, floor and time one backend on the suite's step stimulus of `batch` traces."""
    from hhbench import stimuli as stimlib
    from hhbench.suite import case_stimulus, make_backend

    stim = case_stimulus("step", batch, n_samples=n_samples or stimlib.DEFAULT_SAMPLES)
    backend = make_backend(name, device=device, model=model, cnn_mode=cnn_mode)
    backend.prepare()
    timed, _ = measure(lambda: backend.run(stim), settings)
    if name == "cnn":
        from hhbench.cnn.flops import count_flops

        runner = backend.runner
        counts = count_flops(runner.model)
        windows = len(runner.window_starts(max(stim.n_samples, runner.window)))
        per_trace = counts["matmul_flops"] * windows
        return FloorLine(backend=name, unit="trace", batch=batch,
                         operations={"matmul_flops": per_trace,
                                     "bias_adds": counts["bias_adds"] * windows,
                                     "activations": counts["activations"] * windows},
                         floor_s=cnn_floor_s(per_trace, ceilings), bound="matmul f32",
                         achieved_s=timed.median_s / batch,
                         note=f"{runner.graph}, {windows} window(s) per trace")
    substeps = int(backend.settings().get("substeps", 1) or 1)
    steps = batch * stim.n_samples * substeps
    ops, note = hh_operations(name)
    floor, bound = hh_floor_s(ops, ceilings) if ops else (None, None)
    return FloorLine(backend=name, unit="neuron-step", batch=batch, operations=ops or {},
                     floor_s=floor, bound=bound, achieved_s=timed.median_s / steps, note=note)


def floor_report(backends, *, batch: int = 64, device: str = "auto", model: str | None = None,
                 settings: TimingSettings = TimingSettings(),
                 n_samples: int | None = None) -> dict:
    """Ceilings (per device: the CPU's, and the CNN's device's when that is a GPU) and one
    FloorLine per backend, JSON-ready. A backend that cannot run here gets a line with its
    error as the note."""
    from importlib.util import find_spec

    if int(batch) != batch or batch < 1:
        raise HHBenchError(f"batch must be a positive integer, got {batch!r}")
    if not backends:
        raise HHBenchError("floor needs at least one backend")
    from hhbench.backends import check_name
    for name in backends:
        check_name(name)
    # HH backends run on the CPU: their ceilings are the CPU's; the CNN's are its device's
    tf_device = "/CPU:0"
    if "cnn" in backends and find_spec("tensorflow") is not None:
        from hhbench.cnn.devices import resolve_device
        tf_device = resolve_device(device)
    cpu = measure_ceilings("/CPU:0")
    ceilings = {"/CPU:0": cpu}
    if tf_device != "/CPU:0":
        ceilings[tf_device] = measure_ceilings(tf_device)
    lines = []
    for name in backends:
        try:
            lines.append(floor_line(name, ceilings[tf_device] if name == "cnn" else cpu,
                                    batch=batch, device=device, model=model,
                                    settings=settings, n_samples=n_samples))
        except HHBenchError as exc:
            lines.append(FloorLine(backend=name, unit="-", batch=batch, note=str(exc)))
    return {"ceilings": {dev: asdict(c) for dev, c in ceilings.items()}, "batch": batch,
            "backends": [line.as_dict() for line in lines]}


def format_floor(report: dict) -> str:
    """The report as a Markdown table (times per unit in µs for neuron-steps, ms for traces)."""
    head = "\n".join(
        f"ceilings on {dev} (matmul via {c['matmul_source']}): float32 matmul "
        f"{c['matmul_f32_flops'] / 1e9:.1f} GFLOP/s, float64 matmul "
        f"{c['matmul_f64_flops'] / 1e9:.1f} GFLOP/s, exp (NumPy, CPU, "
        f"{c.get('exp_threads', 1)} threads) {c['exp_f64_per_s'] / 1e6:.0f} M/s"
        for dev, c in report["ceilings"].items())
    head += f"\nbatch {report['batch']}; HH backends against the CPU's ceilings"
    rows = ["| backend | unit | work per unit | floor | bound | achieved | achieved/floor | note |",
            "|---|---|---|---|---|---|---|---|"]
    for line in report["backends"]:
        scale, label = (1e3, "ms") if line["unit"] == "trace" else (1e9, "ns")
        work = ", ".join(f"{k} {v:,}" for k, v in line["operations"].items()) or "-"
        fmt = lambda s: "-" if s is None else f"{s * scale:.3g} {label}"  # noqa: E731
        ratio = "-" if line["ratio"] is None else f"{line['ratio']:.2f}x"
        rows.append(f"| {line['backend']} | {line['unit']} | {work} | {fmt(line['floor_s'])} | "
                    f"{line['bound'] or '-'} | {fmt(line['achieved_s'])} | {ratio} | "
                    f"{line['note']} |")
    return head + "\n" + "\n".join(rows)
