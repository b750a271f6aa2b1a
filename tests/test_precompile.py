"""Compiling ahead (`hhbench.precompile`): what a run's backends would compile at set-up
is compiled in fresh processes before any timing, into the very cache the timed worker
processes then load from."""

import json
import subprocess
import sys
from pathlib import Path

from hhbench.backends import numba_engine
from hhbench.backends.numba_cache import function_cached
from hhbench.precompile import compile_ahead, pending


def driver_cached(kernel: str) -> bool:
    return function_cached(Path(numba_engine.__file__), numba_engine.driver_qualname(kernel))


LOAD_IN_A_FRESH_PROCESS = """
from hhbench import threads
threads.apply()
from hhbench.backends import numba_engine
numba_engine.compile_engine("euler")
print(__import__("json").dumps(threads.numba_cache_stats()))
"""


def test_a_cold_cache_is_filled_ahead_and_a_worker_then_loads_from_it(tmp_path, monkeypatch):
    # the bug this catches: compiling ahead into another cache than the workers read (other
    # flags, threading layer or location), so the first worker compiles all over again
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert not driver_cached("euler")
    assert pending({"numba": {}, "numpy": {}}) == {"numba:euler": ("numba", {})}
    said = []
    done = compile_ahead({"numba": {}, "numpy": {}}, say=said.append)
    assert done["compiled"] == ["numba:euler"] and done["failed"] == []
    assert "numba:euler" in said[0]
    assert driver_cached("euler") and pending({"numba": {}}) == {}
    assert compile_ahead({"numba": {}}) is None  # nothing pending: no process started
    loaded = subprocess.run([sys.executable, "-c", LOAD_IN_A_FRESH_PROCESS],
                            capture_output=True, text=True, check=True)
    stats = json.loads(loaded.stdout.splitlines()[-1])
    assert stats["cache_hits"] >= 1 and stats["cache_misses"] == 0, stats
