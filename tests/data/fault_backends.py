"""Backends that fail on purpose, for the fault-injection tests (tests/test_faults.py):
imported through a suite's `extra_backend_modules`, in the parent and in every worker.

What each does is set by the folder HHBENCH_FAULT_DIR (made by the test): a fault that
happens "once" leaves a marker file there, so the restarted worker runs normally.
"""

import os
import signal
import time
from pathlib import Path

import numpy as np

from hhbench.backends import register
from hhbench.backends.base import Backend

FOLDER = Path(os.environ.get("HHBENCH_FAULT_DIR", "."))


class _Resting(Backend):
    summary = "a fault for tests"

    def _integrate(self, current_ua, dt_ms, gates):
        self.fault()
        return np.full(current_ua.shape, -65.0), None

    def fault(self):
        pass


def _first_time(name: str) -> bool:
    marker = FOLDER / f"{name}.happened"
    if marker.exists():
        return False
    marker.write_text("1")
    return True


@register
class KillsItselfOnce(_Resting):
    name = "fault-kill-once"

    def fault(self):
        if _first_time(self.name):
            os.kill(os.getpid(), signal.SIGKILL)


@register
class KillsItself(_Resting):
    name = "fault-kill"

    def fault(self):
        os.kill(os.getpid(), signal.SIGKILL)


@register
class Hangs(_Resting):
    name = "fault-hang"

    def fault(self):
        time.sleep(3600)


@register
class Raises(_Resting):
    name = "fault-raise"

    def fault(self):
        raise RuntimeError("planted failure")


@register
class WaitsToBeKilled(_Resting):
    """Writes its pid into the folder, then runs for a while: the test kills it from
    outside (once: a restarted worker finds the pid file and runs normally)."""
    name = "fault-killed-from-outside"

    def fault(self):
        if _first_time(self.name):
            (FOLDER / "pid").write_text(str(os.getpid()))
            time.sleep(60)


@register
class PrepareRaises(_Resting):
    """Its one-off work fails (a compile error, a model that will not load)."""
    name = "fault-prepare"

    def prepare(self):
        raise RuntimeError("planted prepare failure")


@register
class ResolutionRaises(_Resting):
    """Asking its runtime for devices raises what a broken driver install raises: not an
    hhbench error."""
    name = "fault-resolve"

    @classmethod
    def resolve_device(cls, request="auto", options=None):
        raise OSError("planted driver failure")


@register
class GpuOnly(_Resting):
    """Runs on GPUs only, and its runtime sees none: it cannot run here."""
    name = "fault-gpu-only"
    device_kinds = ("gpu",)

    @classmethod
    def visible_gpus(cls, options=None):
        return 0


@register
class DeviceOnlyRaises(_Resting):
    """Plays a device backend whose round trip works but whose device-only call raises."""
    name = "fault-device-only"

    @property
    def device(self):
        return "gpu:0"

    def device_call(self, stimulus):
        raise RuntimeError("planted device-only failure")


@register
class CrashesAtExit(_Resting):
    """Runs normally, then its process crashes at exit, after the worker wrote its full
    report (as a GPU runtime's teardown may): SIGSEGV from an atexit handler."""
    name = "fault-crash-at-exit"

    def fault(self):
        import atexit
        atexit.register(lambda: os.kill(os.getpid(), signal.SIGSEGV))
