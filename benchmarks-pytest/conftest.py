"""pytest-benchmark suite: the cases of `hhbench run`, gated in CI on regressions.

Kept apart from tests/ so the unit tests stay fast and free of timing; run it with
    python -m pytest benchmarks-pytest --benchmark-autosave
"""
