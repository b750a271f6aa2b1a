"""What every lab question shares: settings, the model-derived time base, timing one
backend, and the small Markdown/JSON/figure helpers of the report.

The lab's time base is the CNN's: every stimulus has the model's input window
(`runner.window` samples at `runner.fs_khz`), so HH and CNN see the same current, and the
CNN's output window (samples [context, window − context)) is where the two are compared.
Nothing here simulates, times or scores by itself: backends come from `hhbench.suite`,
timing from `hhbench.suite.run_case` (which uses `hhbench.timing.measure`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hhbench import stimuli as stimlib
from hhbench.atomic import atomic_write
from hhbench.backends import check_name
from hhbench.backends.base import SimResult
from hhbench.errors import HHBenchError
from hhbench.suite import make_backend, run_case
from hhbench.timing import WARMUP_MIN_S, TimingSettings

#: the HH simulators the lab times on the step (q2) and sweeps on the sine (q4)
HH_BACKENDS = ("numpy", "numba", "odeint", "exp-euler", "reference")
#: odeint is left out of the sine sweep: LSODA restarts at every sample of a sine, about
#: 3 s per trace here, and it agrees with the converged reference to 1e-3 mV
SINE_BACKENDS = ("numpy", "numba", "exp-euler", "reference", "cnn")


@dataclass(frozen=True, kw_only=True)
class LabSettings:
    """How much work each question does (the defaults are the lab's stimuli and sizes).

    timing: repeats of every timed call (cold = set-up + first call, kept apart);
    sine_*: q4's sweep: `sweep_points` log-spaced frequencies from `sweep_min_khz` to
        `sweep_max_khz` (None: a quarter of the sampling rate, 4 samples per period),
        then bisection to a relative resolution `rel_tol`;
    noise_*: q5's trials (one batch, seeded);
    lab_reference: the HH backend whose traces the CNN is compared with (q3, q5): the
        lab's own forward Euler ("numba"; the same arithmetic as "numpy"), which the CNN was
        trained to reproduce.
    """

    timing: TimingSettings = field(default_factory=lambda: TimingSettings(
        warmup_calls=1, warmup_min_s=WARMUP_MIN_S, min_repeats=5, min_time_s=0.2))
    step_backends: tuple[str, ...] = HH_BACKENDS
    sine_backends: tuple[str, ...] = SINE_BACKENDS
    sine_amplitude_ua: float = 80.0
    sweep_min_khz: float = 0.001
    sweep_max_khz: float | None = None
    sweep_points: int = 30
    rel_tol: float = 0.01
    noise_trials: int = 100
    noise_seed: int = 0
    lab_reference: str = "numba"

    def __post_init__(self):
        for name in (*self.step_backends, *self.sine_backends, self.lab_reference):
            check_name(name)
        if self.sweep_points < 2 or not (0 < self.sweep_min_khz):
            raise HHBenchError("the sine sweep needs >= 2 points and a positive lowest frequency")
        if self.sweep_max_khz is not None and not self.sweep_max_khz > self.sweep_min_khz:
            raise HHBenchError("the sine sweep's highest frequency must exceed its lowest")
        if not 0 < self.rel_tol < 1:
            raise HHBenchError("the bisection's relative resolution must be in (0, 1)")
        if self.noise_trials < 1:
            raise HHBenchError("q5 needs at least one noise trial")


class LabSetup:
    """The model (loaded once), the device and the settings shared by all questions.

    `runner` runs the CNN: a `hhbench.cnn.runner.CnnRunner` where TensorFlow is installed,
    else a `hhbench.cnn.jaxgraph.JaxRunner` (the same network through JAX; both describe
    the model alike). With `load_cnn=False` (questions that use no CNN: q2) nothing is
    loaded until `runner` is first used, and the time base (window, rate, context) comes
    from the model folder's JSON files, so those questions need no CNN framework.
    """

    def __init__(self, model=None, *, device: str = "auto",
                 settings: LabSettings = LabSettings(), load_cnn: bool = True):
        from hhbench.model_location import locate_model

        self.model_request = model
        self.device = device
        self.settings = settings
        self._runner = None
        self._time_base = None
        if load_cnn:
            self._runner = self._load_runner()
        else:
            from hhbench.cnn.description import time_base
            self._location = locate_model(model)
            if self._location.path.is_dir():
                self._time_base = time_base(self._location.path)
            else:  # a .keras file: only Keras reads its shapes
                self._runner = self._load_runner()

    def _load_runner(self):
        from hhbench.cnn_modes import choose_runtime
        if choose_runtime("auto") == "jax":
            from hhbench.cnn.jaxgraph import JaxRunner
            return JaxRunner(self.model_request, device=self.device)
        from hhbench.cnn.runner import CnnRunner
        return CnnRunner(self.model_request, device=self.device)

    @property
    def runner(self):
        if self._runner is None:
            self._runner = self._load_runner()
        return self._runner

    def _base(self, key: str):
        if self._runner is None:
            return self._time_base[key]
        return getattr(self._runner, key)

    @property
    def model_path(self) -> str:
        if self._runner is None:
            return str(self._location.path)
        return self.runner.loaded.source

    @property
    def model_name(self) -> str:
        """The model's path for the report: relative to the working folder when inside it
        (so a report kept in the repository names no machine's folders)."""
        return display_path(self.model_path)

    @property
    def n_samples(self) -> int:
        return self._base("window")

    @property
    def fs_khz(self) -> float:
        return self._base("fs_khz")

    @property
    def context(self) -> int:
        return self._base("context")

    def stim_kw(self) -> dict:
        return {"n_samples": self.n_samples, "fs_khz": self.fs_khz}

    def backend(self, name: str, *, load_model: bool = False):
        """A fresh backend. The CNN reuses the already loaded model unless `load_model`
        (then its set-up includes loading the files, as for a cold start)."""
        from hhbench.backends import check_name
        cls = check_name(name)
        # the lab's device is the surrogate's: a simulator that cannot run there runs on
        # the CPU, as in the lab
        device = self.device if "gpu" in cls.device_kinds else "cpu"
        model = None
        if "model" in cls.option_defaults:
            model = self.model_path if load_model else self.runner.loaded
        backend = make_backend(name, device=device, model=model)
        if load_model and hasattr(backend, "share_model"):
            backend.share_model = False  # its set-up reads the files, as a user's does
        return backend

    def describe(self) -> dict:
        runner = self.runner
        return {"model": self.model_name, "device_request": self.device,
                "tf_device": getattr(runner, "tf_device", None) or runner.device,
                "n_samples": self.n_samples,
                "fs_khz": self.fs_khz, "context": self.context,
                "output_samples": runner.out_len,
                "input_scale": runner.input_scale,
                "output_scale": runner.output_scale}


def display_path(path) -> str:
    """`path` relative to the working folder if it lies inside it, else as it is."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


# -- timing ---------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class TimedCall:
    """Times (ms) of one backend on one stimulus: cold = set-up + first call; warm = median
    (and IQR) of `repeats` timed calls after one untimed warm-up call."""

    backend: str
    device: str
    setup_ms: float
    first_call_ms: float
    cold_ms: float
    warm_median_ms: float
    warm_iqr_ms: float
    warm_min_ms: float
    repeats: int
    samples_ms: tuple[float, ...]


def time_backend(backend, stimulus: stimlib.Stimulus, timing: TimingSettings
                 ) -> tuple[TimedCall, SimResult]:
    """Prepare and time `backend` on `stimulus` through `hhbench.suite.run_case`."""
    case, result = run_case(backend, stimulus, timing=timing, reference_name="lab")
    if case.status == "failed":
        raise HHBenchError(f"{case.backend} failed on the {stimulus.kind} stimulus: {case.error}")
    row = case.row()
    return TimedCall(backend=case.backend, device=case.device, setup_ms=row["setup_ms"],
                     first_call_ms=row["first_call_ms"], cold_ms=row["cold_ms"],
                     warm_median_ms=row["warm_median_ms"], warm_iqr_ms=row["warm_iqr_ms"],
                     warm_min_ms=row["warm_min_ms"], repeats=row["repeats"],
                     samples_ms=tuple(s * 1e3 for s in case.timing.samples_s)), result


def window_of(v_batch: np.ndarray, first_sample: int, n: int) -> np.ndarray:
    """Columns [first_sample, first_sample + n) of a (batch, samples) array: an HH trace cut
    to a CNN output window (`first_sample`, n from the CNN result)."""
    return v_batch[:, first_sample:first_sample + n]


# -- report helpers -------------------------------------------------------------------------

def num(x, digits: int = 4) -> str:
    """A number for the report: `digits` significant digits, '–' for None/NaN."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return str(int(x))
    return f"{float(x):.{digits}g}"


def md_table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table; cells are strings or numbers (formatted by `num`)."""
    cell = lambda c: c if isinstance(c, str) else num(c)  # noqa: E731
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def jsonable(obj: Any):
    """Dataclasses, NumPy values and tuples as plain JSON values; fields marked
    `metadata={"json": False}` (figure data) are left out."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if f.metadata.get("json", True)}
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def write_section(out_dir: Path, key: str, markdown: str, result) -> list[Path]:
    """Write `<key>.md` and `<key>.json` (the result's numbers) into `out_dir`."""
    md, js = out_dir / f"{key}.md", out_dir / f"{key}.json"
    atomic_write(md, markdown.rstrip() + "\n")
    atomic_write(js, json.dumps(jsonable(result), indent=1, ensure_ascii=False) + "\n")
    return [md, js]


def save_figure(fig, path: Path) -> Path:
    """Render and write a matplotlib Figure as PNG, atomically (see hhbench.plot)."""
    from hhbench.plot import save_figure as _save
    return _save(fig, path, "png")


def figure(*args, **kwargs):
    """A matplotlib Figure not registered with pyplot (as in hhbench.plot)."""
    from matplotlib.figure import Figure
    return Figure(*args, layout="constrained", **kwargs)
