"""A description of the machine and software a result was measured on.

Everything is read, not assumed: CPU model from /proc/cpuinfo (or `platform`), cores and
memory from psutil, GPU name and driver from `nvidia-smi` when it exists (and, when the
run used TensorFlow, the GPUs TensorFlow sees), versions from the installed packages'
metadata (nothing heavy is imported here), the git commit of the working tree.
`machine_state()` adds what decides speed at the moment a run starts: load average, CPU
frequency and scaling governor where readable, the speed-relevant environment variables
and hhbench's threading policy (each worker process records its own thread pools and
numba's cache use: see hhbench.threads).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("hhbench", "numpy", "scipy", "numba", "numba-cuda", "tensorflow", "tf_keras",
            "jax", "jaxlib", "pandas")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpus() -> list[dict]:
    """GPUs reported by nvidia-smi (name, driver, memory); [] where there is none."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [dict(zip(("name", "driver", "memory"), (p.strip() for p in line.split(","))))
            for line in out.strip().splitlines() if line.strip()]


def versions() -> dict:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def git_commit() -> dict:
    root = Path(__file__).resolve().parents[1]
    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": dirty if commit else None}


def describe_machine() -> dict:
    """The environment record stored with every result file."""
    import psutil

    mem = psutil.virtual_memory().total
    return {"cpu": cpu_model(), "machine": platform.machine(),
            "logical_cores": os.cpu_count(), "physical_cores": psutil.cpu_count(logical=False),
            "memory_gib": round(mem / 2 ** 30, 1), "gpus": gpus(),
            "os": f"{platform.system()} {platform.release()}", "hostname": platform.node(),
            "python_executable": sys.executable, "versions": versions(), "git": git_commit(),
            "time_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def one_line(env: dict) -> str:
    """'Intel Xeon ..., 2 cores, 23.4 GiB, no GPU' for tables and plots."""
    gpu = ", ".join(g["name"] for g in env.get("gpus", [])) or "no GPU"
    return f"{env.get('cpu')}, {env.get('logical_cores')} cores, {env.get('memory_gib')} GiB, {gpu}"


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def cpu_frequency() -> dict:
    """Current/min/max CPU frequency in MHz (psutil) and the scaling governor and driver
    (/sys, Linux); None for what this machine does not expose (e.g. a virtual machine)."""
    import psutil

    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError, AttributeError):
        freq = None
    cpufreq = "/sys/devices/system/cpu/cpu0/cpufreq"
    return {"current_mhz": getattr(freq, "current", None) or None,
            "min_mhz": getattr(freq, "min", None) or None,
            "max_mhz": getattr(freq, "max", None) or None,
            "governor": _read(f"{cpufreq}/scaling_governor"),
            "driver": _read(f"{cpufreq}/scaling_driver"),
            "intel_no_turbo": _read("/sys/devices/system/cpu/intel_pstate/no_turbo")}


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity where the OS has one."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


def machine_state() -> dict:
    """What decides speed right now: load average (1, 5, 15 min) against the logical cores,
    CPU frequency and governor, the CPU affinity of this process, the environment variables
    of the thread pools (OMP_*, NUMBA_*, OPENBLAS_*, MKL_*, TF_*, ...), hhbench's policy."""
    from hhbench import threads

    try:
        affinity = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return {"load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "logical_cores": os.cpu_count(), "affinity": affinity,
            "cpu_frequency": cpu_frequency(),
            "threading_policy": {"enabled": threads.enabled(), "numba_layer": threads.LAYER,
                                 "env": threads.ENV},
            "env": threads.speed_environment()}
