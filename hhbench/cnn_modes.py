"""The CNN's runtimes, modes and precisions, checked without TensorFlow or JAX.

`hhbench.cnn.runner` says what each mode runs (modes are the TensorFlow runtime's);
`hhbench.cnn.jaxgraph` what the JAX runtime's precisions mean. The lists live here, below
the runners and the `cnn` backend, because the TensorFlow modules under `hhbench.cnn` import
TensorFlow: a suite's or a scaling sweep's settings are checked in the parent process,
before any worker starts, and that process never needs TensorFlow or JAX.
"""

from __future__ import annotations

from hhbench.errors import HHBenchError
from hhbench.runtimes import get_runtime

MODES = ("auto", "lite", "compiled", "lab-graph", "predict")
#: "auto": TensorFlow when its stack is installed, else JAX
RUNTIMES = ("auto", "tensorflow", "jax")
#: what each runtime takes as `precision`: its `network_precisions` (TensorFlow: the fast
#: graph's dtype; JAX: what the convolutions compute in)
PRECISIONS = {name: get_runtime(name).network_precisions for name in ("tensorflow", "jax")}
#: importable modules each runtime needs
STACKS = {"tensorflow": ("tensorflow", "tf_keras", "h5py"), "jax": ("jax", "h5py")}


def module_found(name: str) -> bool:
    """Whether `name` is importable here (found, not imported; a `sys.modules` entry of
    None, which makes its import fail, counts as absent)."""
    from importlib.util import find_spec
    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module without spec
        return False


def stacks_present() -> dict[str, bool]:
    """{runtime: whether its modules are all importable here}."""
    return {rt: all(module_found(m) for m in mods) for rt, mods in STACKS.items()}


def choose_runtime(request: str = "auto", present: dict | None = None) -> str:
    """The runtime that runs for `request`: "auto" is TensorFlow when its stack is present,
    else JAX when jax and h5py are (else "tensorflow", which then reports what is missing).
    `present` ({runtime: bool}) defaults to `stacks_present()`."""
    if request not in RUNTIMES:
        raise HHBenchError(f"unknown CNN runtime {request!r}; choose one of: "
                           f"{', '.join(RUNTIMES)}")
    if request != "auto":
        return request
    present = stacks_present() if present is None else present
    if present.get("tensorflow"):
        return "tensorflow"
    return "jax" if present.get("jax") else "tensorflow"


def check_precision(runtime: str, precision: str) -> str:
    """`precision` if `runtime` ("tensorflow" or "jax") takes it, else HHBenchError (one
    line)."""
    if runtime == "tensorflow" and precision == "tf32":
        raise HHBenchError("precision 'tf32' is the JAX runtime's (TensorFlow has its own "
                           "TF32 switch, on by default on Ampere GPUs: its float32 records "
                           "it); use runtime 'jax' or precision float32, float16, bfloat16")
    choices = get_runtime(runtime).network_precisions
    if precision not in choices:
        raise HHBenchError(f"unknown precision {precision!r} for the CNN's {runtime} runtime; "
                           f"use {', '.join(choices)}")
    return precision


def check_runtime_options(runtime: str, *, mode: str = "auto", precision: str = "float32",
                          devices=()) -> None:
    """HHBenchError in one line for a mode or precision that `runtime` (resolved) does not
    take: modes are TensorFlow's (the JAX runtime has one graph: mode "auto")."""
    check_precision(runtime, precision)
    if runtime == "jax":
        if mode not in MODES:
            check_mode(mode)
        if mode != "auto":
            raise HHBenchError(f"CNN mode {mode!r} is the TensorFlow runtime's; the JAX "
                               "runtime has one graph (leave mode 'auto')")
    else:
        check_mode(mode, devices)


def check_mode(mode: str, devices=()) -> str:
    """`mode` if it is one of MODES (and, for "lite", none of `devices` is a GPU: TensorFlow
    Lite runs on the CPU only), else HHBenchError with one line. `devices` are requests
    ("cpu", "gpu", "gpu:N", "auto") or TensorFlow's device names ("/GPU:0")."""
    if mode not in MODES:
        raise HHBenchError(f"unknown CNN mode {mode!r}; choose one of: {', '.join(MODES)}")
    gpus = [d for d in devices if "gpu" in str(d).lower()]
    if mode == "lite" and gpus:
        raise HHBenchError(f"CNN mode 'lite' runs on the CPU only (device {gpus[0]}); "
                           "use mode 'compiled' or 'auto' on a GPU")
    return mode
