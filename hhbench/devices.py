"""Device requests, parsed and checked without importing any framework.

A request is what a user types: "cpu", "gpu" (the first GPU), "gpu:N", "gpu:all" (a batch
spread over every visible GPU) or "auto" (a GPU when the backend can use one and one is
here, else the CPU). A backend resolves a request through its own runtime
(`Backend.resolve_device`) to a concrete device name: "cpu", "gpu:N" or "gpu:all".

`nvidia_driver_present()` answers, without importing TensorFlow, JAX or CUDA, whether
this machine could have an NVIDIA GPU at all: without the driver no runtime sees one, so
resolving "auto" on a CPU-only machine costs no framework import.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass

from hhbench.errors import CannotRunHere, HHBenchError

KINDS = ("cpu", "gpu")
_SPEC = re.compile(r"^(cpu|gpu|auto)(?::(\d+|all))?$")
USAGE = "cpu, gpu, gpu:N, gpu:all or auto"


#: the name backends and plugins have used for `CannotRunHere` (the same class)
DeviceNotSupported = CannotRunHere


@dataclass(frozen=True)
class DeviceRequest:
    """A parsed request: kind "auto", "cpu" or "gpu"; index a GPU number, "all", or None
    (the first GPU)."""

    kind: str
    index: int | str | None = None

    def __str__(self):
        return self.kind if self.index is None else f"{self.kind}:{self.index}"


def parse_device(text: str) -> DeviceRequest:
    """The request `text` names (case and spaces ignored); HHBenchError naming it if it is
    none of cpu, gpu, gpu:N, gpu:all, auto."""
    match = _SPEC.match(str(text).strip().lower())
    if not match or (match.group(1) != "gpu" and match.group(2) is not None):
        raise HHBenchError(f"unknown device {text!r}; use {USAGE}")
    index = match.group(2)
    return DeviceRequest(match.group(1), None if index is None else
                         index if index == "all" else int(index))


def check_devices(requests) -> tuple[str, ...]:
    """Each request parsed and written canonically, duplicates dropped (first kept)."""
    out = []
    for text in requests:
        canon = str(parse_device(text))
        if canon not in out:
            out.append(canon)
    if not out:
        raise HHBenchError(f"no device given; use {USAGE}")
    return tuple(out)


def nvidia_driver_present() -> bool:
    """Whether an NVIDIA driver is loaded here (its /proc entry or a /dev/nvidiaN node).
    False means no runtime can see an NVIDIA GPU; True says nothing about how many."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return True  # numba's CUDA simulator plays a GPU (tests of the CUDA kernels)
    return os.path.isdir("/proc/driver/nvidia/gpus") or bool(glob.glob("/dev/nvidia[0-9]*"))


def check_gpu_present(requests) -> None:
    """HHBenchError (one line, before any work) when a GPU is among `requests` and this
    machine has no NVIDIA driver: no backend could run there."""
    gpus = [r for r in requests if parse_device(r).kind == "gpu"]
    if gpus and not nvidia_driver_present():
        raise HHBenchError(f"device {gpus[0]!r} requested but this machine has no NVIDIA "
                           "GPU (no driver loaded)")


def pick_gpu(request: DeviceRequest, n_gpus: int, runtime: str) -> str:
    """The device name for a GPU request when `runtime` sees `n_gpus` GPUs; CannotRunHere
    in one line when it sees none or not that one."""
    if n_gpus == 0:
        raise CannotRunHere(f"device {str(request)!r} requested but {runtime} sees no GPU")
    if request.index == "all":
        return "gpu:all"
    n = request.index or 0
    if n >= n_gpus:
        raise CannotRunHere(f"device {str(request)!r} requested but {runtime} sees "
                           f"{n_gpus} GPU{'s' if n_gpus != 1 else ''} (gpu:0"
                           f"{f' to gpu:{n_gpus - 1}' if n_gpus > 1 else ''})")
    return f"gpu:{n}"


__all__ = ["DeviceRequest", "CannotRunHere", "DeviceNotSupported", "parse_device", "check_devices",
           "check_gpu_present",
           "nvidia_driver_present", "pick_gpu", "KINDS", "USAGE"]
