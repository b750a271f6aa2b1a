"""The CNN runner's modes, checked without TensorFlow.

`hhbench.cnn.runner` says what each mode runs. The list lives here, below both the runner
and the `cnn` backend, because importing anything under `hhbench.cnn` imports TensorFlow:
a suite's or a scaling sweep's settings are checked in the parent process, before any
worker starts, and that process never needs TensorFlow.
"""

from __future__ import annotations

from hhbench.errors import HHBenchError

MODES = ("auto", "lite", "compiled", "lab-graph", "predict")


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
