"""Was a run timed on a busy machine? Measured while it ran, not guessed from its start.

`LoadMeter` measures, over the timed part of a run (the worker processes), how many cores
other work kept busy: the machine's busy CPU time (psutil: every CPU's time not idle and
not waiting for I/O) minus the CPU time of this process and its waited-for children (the
workers), divided by the wall time; and the time the hypervisor gave to other guests
(steal), as a fraction of the machine. A run is busy (`busy_reasons`) when

  * other work kept at least `OTHER_CORES_LIMIT` × the logical cores busy, and at least
    half a core (on 2 cores: one core's worth; a worker then shares a core or a cache);
  * or steal time took at least `STEAL_LIMIT` of the machine;
  * or the calibration kernel's own spread (`hhbench.calibration`) is above
    `CALIBRATION_SPREAD_LIMIT`: its minimum moved while it was measured;
  * for a results file without these measurements: the 1-minute load average when it
    started above half the logical cores plus one (one core's worth for the run before it).
`compare` adds one relative rule (`hhbench.calibration.slower_run`): of two runs on the
same kind of machine, the one whose core ran more than 5 % slower than the other's.

A busy machine's load slows whole runs, every process alike, so no spread between
processes reveals it: `compare` discounts a verdict that could come from it.
"""

from __future__ import annotations

import os
import time

OTHER_CORES_LIMIT = 0.25
STEAL_LIMIT = 0.05
CALIBRATION_SPREAD_LIMIT = 0.10
START_LOAD_PER_CORE = 0.5


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _machine_cpu():
    import psutil
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    total = sum(t)
    # guest time is already counted in user time on Linux
    total -= getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)
    return total - idle, getattr(t, "steal", 0.0)


class LoadMeter:
    """Measures other work on the machine between `start()` and `stop()`."""

    def start(self) -> "LoadMeter":
        self._wall = time.monotonic()
        self._own = _own_cpu_s()
        self._busy, self._steal = _machine_cpu()
        return self

    def stop(self) -> dict:
        """{wall_s, own_cores, other_cores, steal_fraction, logical_cores}."""
        wall = max(time.monotonic() - self._wall, 1e-9)
        own = _own_cpu_s() - self._own
        busy, steal = _machine_cpu()
        cores = os.cpu_count() or 1
        # steal is counted as busy time by the kernel: other work, but reported apart
        other = max(0.0, (busy - self._busy) - (steal - self._steal) - own) / wall
        return {"wall_s": round(wall, 3), "own_cores": round(own / wall, 3),
                "other_cores": round(other, 3),
                "steal_fraction": round(max(0.0, steal - self._steal) / (wall * cores), 4),
                "logical_cores": cores}


def busy_reasons(environment: dict, calibration: dict | None = None) -> list[str]:
    """Why this run's timings are unfit for an undiscounted verdict (see the module doc);
    [] for a quiet run, or one with no record of its load."""
    out = []
    during = environment.get("load_during")
    if during:
        cores = during.get("logical_cores") or 1
        other = during.get("other_cores", 0.0)
        if other >= max(0.5, OTHER_CORES_LIMIT * cores):
            out.append(f"other work on {other:.1f} of {cores} cores")
        steal = during.get("steal_fraction", 0.0)
        if steal >= STEAL_LIMIT:
            out.append(f"{steal:.0%} of the CPU time stolen by the hypervisor")
    else:
        state = environment.get("state") or {}
        load, cores = state.get("load_average"), state.get("logical_cores") or 1
        if load and load[0] > START_LOAD_PER_CORE * cores + 1:
            out.append(f"load {load[0]:.1f} on {cores} cores at its start")
    spread = (calibration or {}).get("spread")
    if spread is not None and spread > CALIBRATION_SPREAD_LIMIT:
        out.append(f"calibration kernel spread {spread:.0%}")
    return out


def load_words(environment: dict) -> str:
    """'other work on 0.1 of 2 cores' / 'load 0.4 at start' / 'load unknown': the load a
    run ran under, for reports."""
    during = environment.get("load_during")
    if during:
        return f"other work on {during.get('other_cores', 0):.1f} of " \
               f"{during.get('logical_cores')} cores"
    load = (environment.get("state") or {}).get("load_average")
    return f"load {load[0]:.1f} at start" if load else "load unknown"
