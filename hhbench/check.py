"""Is this machine (or was it, for a results file) stable enough to time on?

Like pyperf's `system show` / `check`, this only reads and warns; it changes nothing.
Warnings:
  * load: the 1-minute load average above half the logical cores (other work competes for
    the cores the timed process and its threads need);
  * frequency scaling: a scaling governor other than "performance", turbo boost enabled,
    or a current frequency far below the maximum (the clock then depends on the load and
    the temperature);
  * spread between processes (for a results file): a case whose per-process medians vary
    so much that `hhbench compare` against a run like it could not tell a change of the
    default threshold (10 %) from noise — it would call such a change inconclusive
    (`hhbench.stats.resolvable_change`). A spread that still resolves 10 % is no warning,
    however large it looks on a sub-millisecond case.
"""

from __future__ import annotations

import math

from hhbench.results import RunResults
from hhbench.stats import resolvable_change, spread

#: the change `hhbench compare` is asked to resolve by default (its --threshold)
RESOLVE_LIMIT = 0.10
LOAD_PER_CORE_LIMIT = 0.5


def busy(state: dict | None) -> str | None:
    """Why a run's recorded start state makes its timings unfit for a verdict (another
    job's load: it slows whole runs, not single processes, so no spread between processes
    shows it), or None. Unknown state (older files) counts as not busy."""
    if not state:
        return None
    cores = state.get("logical_cores") or 1
    load = state.get("load_average")
    # one core's worth more than the warning's limit: back-to-back runs (an A/A check,
    # OLD then NEW) leave up to about 1 in the 1-minute load average themselves
    if load and load[0] > LOAD_PER_CORE_LIMIT * cores + 1:
        return f"load average {load[0]:.2f} on {cores} logical cores"
    return None


def machine_warnings(state: dict) -> list[str]:
    """Warnings from a `environment.machine_state()` record (now, or stored with a run)."""
    out = []
    cores = state.get("logical_cores") or 1
    load = state.get("load_average")
    if load and load[0] > LOAD_PER_CORE_LIMIT * cores:
        out.append(f"load average {load[0]:.2f} on {cores} logical cores: other work competes "
                   "for the cores; timings will be noisy (stop it, or use more --processes)")
    freq = state.get("cpu_frequency") or {}
    governor = freq.get("governor")
    if governor and governor != "performance":
        out.append(f"CPU frequency governor is {governor!r}, not 'performance': the clock "
                   "follows the load (e.g. `sudo cpupower frequency-set -g performance`)")
    if freq.get("intel_no_turbo") == "0":
        out.append("turbo boost is on: the clock depends on temperature and on how many cores "
                   "are busy (`echo 1 | sudo tee /sys/devices/system/cpu/intel_pstate/no_turbo`)")
    cur, top = freq.get("current_mhz"), freq.get("max_mhz")
    if cur and top and cur < 0.8 * top:
        out.append(f"CPU runs at {cur:.0f} MHz of at most {top:.0f} MHz: frequency scaling "
                   "is active")
    if not state.get("threading_policy", {}).get("enabled", True):
        out.append("hhbench's threading policy is off (HHBENCH_THREADING=default): numba's "
                   "batch timings may be bimodal between processes")
    return out


def spread_warnings(results: RunResults, limit: float = RESOLVE_LIMIT, *,
                    detail: bool = True) -> list[str]:
    """One warning per timed case whose spread between processes is too large for
    `compare` to resolve a change of `limit` against a run like it; with `detail` False
    (what `hhbench run` prints), more than three such cases are one line that counts them
    and names the worst three (`hhbench check RESULTS` lists every one)."""
    out = []
    worst = []
    for case in results.cases:
        if case.timing is None or len(case.processes) < 2:
            continue
        medians = case.process_medians()
        smallest = resolvable_change(medians)
        if math.isfinite(smallest) and smallest > limit:
            worst.append((smallest, f"{case.backend} {case.stimulus} x{case.batch}"))
            out.append(f"{case.backend} {case.stimulus} x{case.batch}: spread between processes "
                       f"{spread(medians):.1%} over {len(medians)}: `compare` can tell only "
                       f"changes beyond {smallest:.0%} from noise for this case and would call "
                       f"a {limit:.0%} change inconclusive (more --processes narrow it)")
    if not detail and len(worst) > 3:
        names = ", ".join(f"{name} {res:.0%}" for res, name in sorted(worst)[::-1][:3])
        timed = sum(c.timing is not None and len(c.processes) >= 2 for c in results.cases)
        out = [f"{len(worst)} of {timed} cases: their processes disagree too much for "
               f"`compare` to tell a {limit:.0%} change from noise against a run like this "
               f"(worst, by the smallest change `compare` could tell from noise: {names}); "
               "more --processes narrow it, `hhbench check` lists them"]
    single = [c for c in results.cases if c.timing is not None and len(c.processes) < 2]
    if single:
        out.append(f"{len(single)} case{'s were' if len(single) > 1 else ' was'} timed in a "
                   "single process: the spread between processes is unknown and `hhbench "
                   "compare` cannot give a verdict")
    return out


def report(state: dict, results: RunResults | None = None, *, detail: bool = True
           ) -> tuple[list[str], list[str]]:
    """(description lines, warning lines) for the machine state and, optionally, a run
    (`detail`: every case whose spread is too large, else a summary past three)."""
    load = state.get("load_average")
    freq = state.get("cpu_frequency") or {}
    numba_layer = state.get("threading_policy", {}).get("numba_layer")
    lines = [f"load average: {' '.join(f'{x:.2f}' for x in load) if load else 'unknown'} "
             f"({state.get('logical_cores')} logical cores)",
             f"CPU frequency: {_mhz(freq.get('current_mhz'))} (max {_mhz(freq.get('max_mhz'))}), "
             f"governor {freq.get('governor') or 'not readable'}",
             f"threading policy: {'on' if state.get('threading_policy', {}).get('enabled') else 'off'}"
             f" (numba layer {numba_layer})",
             "thread-pool environment: " + (", ".join(f"{k}={v}" for k, v in
                                                       state.get("env", {}).items()) or "none")]
    warnings = machine_warnings(state)
    if results is not None:
        from hhbench.busy import busy_reasons, load_words
        during = results.environment.get("load_during")
        if during:
            lines.append(f"while it ran: {load_words(results.environment)}, "
                         f"{during.get('steal_fraction', 0):.0%} of CPU time stolen")
            warnings += [f"while it ran: {why}: `compare` discounts its slowdowns (rerun on a "
                         "quiet machine)" for why in busy_reasons(
                             {"load_during": during}, results.calibration)]
        warnings += spread_warnings(results, detail=detail) + restart_warnings(results)
    return lines, warnings


def restart_warnings(results: RunResults) -> list[str]:
    """One warning per worker process that died or hung and was started again (its cases
    were timed again in a fresh process; `hhbench.workers`)."""
    return [f"a worker process was restarted after: {w['restarted_after']} (the cases it had "
            "not finished were timed again in a fresh process)"
            for w in results.environment.get("workers") or []
            if isinstance(w, dict) and w.get("restarted_after")]


def _mhz(value) -> str:
    return f"{value:.0f} MHz" if value else "not readable"
