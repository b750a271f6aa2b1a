"""pytest-benchmark suite: the cases of `hhbench run`, gated in CI on regressions.

Kept apart from tests/ so the unit tests stay fast and free of timing; run it with
    python -m pytest benchmarks-pytest --benchmark-autosave
"""

from hhbench import threads

# the thread pools `hhbench run`'s workers use (numba's layer, OpenMP waiting), set before
# any pool starts, so that pytest-benchmark times the same configuration
threads.apply()
