"""Memory a benchmark needs, estimated before anything is allocated, checked against the
machine's available memory (psutil), so that an impossible request is refused in one line
instead of failing half-way with NumPy's "Unable to allocate".

The estimate counts float64 arrays of (batch, samples), the shape everything in a case
scales with:
  * per case while it runs (`WORKING_ARRAYS`): the stimulus current, the backend's output of
    the timed call and of the previous call, divergence masking, and during scoring the
    reference and the differences the metrics take;
  * held while scoring: one reference per (stimulus, batch) (cached), and one case's
    output at a time (the worker processes leave their outputs on disk).
It is a lower bound of the right order (a backend's own temporaries come on top), which
is what refusing needs: a request above it cannot succeed.
"""

from __future__ import annotations

from hhbench.errors import HHBenchError

BYTES_PER_VALUE = 8          # float64
WORKING_ARRAYS = 6           # see the module docstring


def trace_bytes(batch: int, n_samples: int) -> int:
    """Bytes of one (batch, samples) float64 array."""
    return int(batch) * int(n_samples) * BYTES_PER_VALUE


def case_bytes(batch: int, n_samples: int) -> int:
    """Estimated working set of one case (or one `simulate`) of batch x n_samples."""
    return WORKING_ARRAYS * trace_bytes(batch, n_samples)


def suite_bytes(cases: list[tuple[str, int]], n_samples: int) -> int:
    """Estimated peak bytes of a run of `cases` [(stimulus, batch), ...]: the largest case's
    working set plus the references cached while scoring."""
    if not cases:
        return 0
    references = sum(trace_bytes(b, n_samples) for _, b in set(cases))
    working = max(case_bytes(b, n_samples) for _, b in cases)
    return references + working


def available_bytes() -> int:
    """Memory the machine can give without swapping (psutil's `available`)."""
    import psutil
    return int(psutil.virtual_memory().available)


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_fits(needed: int, what: str, *, available: int | None = None) -> None:
    """HHBenchError (one line) when `needed` bytes exceed the available memory."""
    available = available_bytes() if available is None else available
    if needed > available:
        raise HHBenchError(f"{what} needs about {_gib(needed)} of memory, but this machine has "
                           f"{_gib(available)} available: use smaller batches or fewer samples")


__all__ = ["trace_bytes", "case_bytes", "suite_bytes", "available_bytes", "check_fits"]
