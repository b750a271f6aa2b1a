"""Where a yes/no property of a frequency (or any positive parameter) flips: a sweep's
bracket narrowed by bisection.

`bisect_boundary(predicate, lo, hi, rel_tol=...)` takes a bracket whose ends give
different answers and halves it in log space (the geometric midpoint √(lo·hi), because
frequencies span decades) until hi/lo − 1 ≤ rel_tol. The predicate may answer None
("undecidable here", e.g. the integrator diverged): the search then stops with the
bracket it had, and says where.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from hhbench.errors import HHBenchError


@dataclass(frozen=True, kw_only=True)
class Bracket:
    """The boundary lies between `lo` and `hi` (predicate(lo) = `lo_value`, predicate(hi) =
    not lo_value); `steps` predicate calls were spent inside the first bracket;
    `undecided_at` is the point where the predicate answered None (search stopped), else None.
    """

    lo: float
    hi: float
    lo_value: bool
    steps: int
    rel_tol: float
    undecided_at: float | None = None

    def __post_init__(self):
        if not (0 < self.lo < self.hi):
            raise HHBenchError(f"a bracket needs 0 < lo < hi, got {self.lo!r}, {self.hi!r}")

    @property
    def resolved(self) -> bool:
        """True when the bracket is as narrow as asked (hi/lo − 1 ≤ rel_tol)."""
        return self.hi / self.lo - 1.0 <= self.rel_tol * (1 + 1e-12)

    @property
    def midpoint(self) -> float:
        """Geometric midpoint √(lo·hi): the estimate of the boundary."""
        return math.sqrt(self.lo * self.hi)


def bisect_boundary(predicate: Callable[[float], bool | None], lo: float, hi: float, *,
                    rel_tol: float = 0.01, lo_value: bool | None = None,
                    max_steps: int = 200) -> Bracket:
    """Narrow [lo, hi] (0 < lo < hi) around the point where `predicate` changes its answer.

    `lo_value` is predicate(lo) if already known (e.g. from a sweep), so it is not asked
    again; predicate(hi) is taken to be its opposite (the caller's bracket). Each step asks
    predicate(√(lo·hi)) and keeps the half whose ends differ; it stops when
    hi/lo − 1 ≤ `rel_tol` (relative resolution), or when the predicate answers None.
    If the predicate is not monotonic, the result is *a* boundary inside the bracket.
    """
    lo, hi, rel_tol = float(lo), float(hi), float(rel_tol)
    if not (0 < lo < hi) or not (math.isfinite(lo) and math.isfinite(hi)):
        raise HHBenchError(f"a bracket needs 0 < lo < hi, got {lo!r}, {hi!r}")
    if not (rel_tol > 0 and math.isfinite(rel_tol)):
        raise HHBenchError(f"relative resolution must be > 0, got {rel_tol!r}")
    if lo_value is None:
        answer = predicate(lo)
        if answer is None:
            return Bracket(lo=lo, hi=hi, lo_value=False, steps=0, rel_tol=rel_tol,
                           undecided_at=lo)
        lo_value = bool(answer)
    steps = 0
    while hi / lo - 1.0 > rel_tol and steps < max_steps:
        mid = math.sqrt(lo * hi)
        if not lo < mid < hi:  # floating point can halve no further
            break
        answer = predicate(mid)
        steps += 1
        if answer is None:
            return Bracket(lo=lo, hi=hi, lo_value=lo_value, steps=steps, rel_tol=rel_tol,
                           undecided_at=mid)
        if bool(answer) == lo_value:
            lo = mid
        else:
            hi = mid
    return Bracket(lo=lo, hi=hi, lo_value=lo_value, steps=steps, rel_tol=rel_tol)
