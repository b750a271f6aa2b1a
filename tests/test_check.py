"""Machine-state warnings, the spread check of a run, and the threading policy's record."""

import numpy as np
import pytest

from hhbench import threads
from hhbench.backends import get_backend
from hhbench.check import machine_warnings, spread_warnings
from hhbench.results import CaseResult, RunResults
from hhbench.stimuli import step
from hhbench.timing import ProcessTiming

QUIET = {"logical_cores": 8, "load_average": [0.2, 0.3, 0.3],
         "cpu_frequency": {"governor": "performance", "intel_no_turbo": "1",
                           "current_mhz": 3000.0, "max_mhz": 3000.0},
         "threading_policy": {"enabled": True}}


def test_a_quiet_machine_gets_no_warning():
    assert machine_warnings(QUIET) == []


def test_load_governor_turbo_and_low_clock_are_warned_about():
    busy = {**QUIET, "load_average": [5.0, 4.0, 3.0],
            "cpu_frequency": {"governor": "powersave", "intel_no_turbo": "0",
                              "current_mhz": 1200.0, "max_mhz": 3000.0}}
    text = "\n".join(machine_warnings(busy))
    assert "load average 5.00 on 8" in text and "'powersave'" in text
    assert "turbo boost" in text and "1200 MHz of at most 3000" in text


def _case(backend, medians):
    procs = tuple(ProcessTiming(prepare_s=0.0, cold_s=0.1, samples_s=(m, m, m)) for m in medians)
    return CaseResult(backend=backend, stimulus="step", batch=1, device="cpu", status="ok",
                      n_samples=10, dt_ms=0.05, reference="lab", processes=procs)


def test_a_spread_compare_cannot_resolve_is_warned_about():
    steady = _case("numba", [1.00, 1.01, 0.99])          # CV 1 %
    bimodal = _case("exp-euler", [1.2, 8.0, 1.2])         # a bimodal thread pool
    single = _case("numpy", [1.0])
    warned = spread_warnings(RunResults(settings={}, environment={}, calibration={},
                                        cases=(steady, bimodal, single)))
    assert len(warned) == 2 and warned[0].startswith("exp-euler step x1: spread")
    assert "1 case was timed in a single process" in warned[1]
    assert np.isclose(float(warned[0].split("processes ")[1].split("%")[0]),
                      100 * np.std([1.2, 8.0, 1.2], ddof=1) / np.mean([1.2, 8.0, 1.2]), atol=0.05)


def test_policy_sets_the_environment_unless_the_user_did(monkeypatch):
    for key in ("NUMBA_THREADING_LAYER", "HHBENCH_THREADING"):
        monkeypatch.delenv(key, raising=False)
    threads.apply()
    import os
    assert os.environ["NUMBA_THREADING_LAYER"] == threads.LAYER
    monkeypatch.setenv("NUMBA_THREADING_LAYER", "workqueue")  # the user's choice wins
    threads.apply()
    assert os.environ["NUMBA_THREADING_LAYER"] == "workqueue"
    assert threads.speed_environment()["NUMBA_THREADING_LAYER"] == "workqueue"


def test_record_of_numba_threads_and_cache_after_a_run():
    get_backend("numba").run(step(10.0).repeat(3))
    info = threads.describe()
    assert info["numba"]["threading_layer"] in ("omp", "tbb", "workqueue")
    import numba

    from hhbench.backends.numba_engine import call_threads
    # 3 traces: one per chunk, each in registers, when no thread gets more than two that way
    # (2 threads or more); on one thread a single chunk (padded to the SIMD width)
    pool = numba.config.NUMBA_NUM_THREADS
    assert info["numba"]["threads_now"] == call_threads(3) == (min(3, pool) if pool >= 2 else 1)
    cache = threads.numba_cache_stats()
    assert "_drive_euler" in cache["functions"] and cache["cache_hits"] + cache["cache_misses"] >= 1


def test_a_slowdown_measured_on_a_busy_machine_is_suspected_never_hidden():
    # a results file with only its start state: the start-load rule (one core's worth
    # above half the cores, for the run before it)
    from hhbench.compare import Tolerances, compare
    loaded = {**QUIET, "logical_cores": 2, "load_average": [9.5, 9.0, 6.0]}
    old = RunResults(settings={}, environment={"state": QUIET}, calibration={},
                     cases=(_case("numba", [1.00, 1.01, 0.99]),))
    new = RunResults(settings={}, environment={"state": loaded}, calibration={},
                     cases=(_case("numba", [2.00, 2.02, 1.98]),))
    report = compare(old, new)
    row = report.rows[0]
    assert row["speed"] == "slower?" and row["ratio"] == pytest.approx(2.0, rel=1e-3)
    assert "NEW load 9.5 on 2 cores at its start" in row["why"]
    assert report.status == 3 and "quiet machine" in report.conclusion
    # back-to-back runs leave about 1 in the load average: not busy on 2 cores
    calm = RunResults(settings={}, environment={"state": {**loaded, "load_average": [1.1, 1, 1]}},
                      calibration={}, cases=new.cases)
    assert compare(old, calm).status == 1
    assert compare(old, new, Tolerances(allow_busy=True)).rows[0]["speed"] == "slower"
