"""Comparing two result files: did speed or accuracy regress?

Cases are matched on (backend, stimulus, batch, device); where the device differs (a run on
another machine, "auto" resolved differently, a CNN that failed before reporting where it
ran) a case that is unique by (backend, stimulus, batch) on both sides still matches. A
case of OLD that NEW lacks is a regression (it may have stopped running). For each pair:
  * speed: ratio = NEW median / OLD median of the warm samples. A slowdown counts only when
    the ratio exceeds 1 + threshold AND a one-sided Mann-Whitney U test on the raw
    samples says NEW is slower with p < alpha (too few samples can never be significant,
    which the report says). Speed-ups are reported the same way.
  * accuracy: RMSE may grow by at most max(rmse_abs_mv, rmse_rel·OLD), the median Γ may
    drop by at most gamma_drop, the mean |spike-count error| may grow by at most
    count_increase; a case that was ok and now diverges or fails is a regression.
Across machines, each machine's calibration kernels are shown side by side so a ratio
can be read against the machines' own speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import mannwhitneyu

from hhbench.environment import one_line
from hhbench.errors import HHBenchError
from hhbench.results import CaseResult, RunResults


@dataclass(frozen=True, kw_only=True)
class Tolerances:
    threshold: float = 0.10      # relative slowdown that matters
    alpha: float = 0.01          # significance level of the U test
    rmse_abs_mv: float = 0.1
    rmse_rel: float = 0.10
    gamma_drop: float = 0.05
    count_increase: float = 0.5

    def __post_init__(self):
        if not self.threshold >= 0 or not 0 < self.alpha < 1:
            raise HHBenchError("threshold must be >= 0 and alpha within (0, 1)")


@dataclass(frozen=True, kw_only=True)
class Comparison:
    rows: list[dict]
    machines: dict
    regressed: bool

    def table(self):
        import pandas as pd
        return pd.DataFrame(self.rows)


def parse_threshold(text: str) -> float:
    """'10%' or '0.1' → 0.1."""
    try:
        value = float(text[:-1]) / 100 if str(text).endswith("%") else float(text)
    except ValueError:
        raise HHBenchError(f"threshold must look like 10% or 0.1, got {text!r}") from None
    if not value >= 0:
        raise HHBenchError(f"threshold must be >= 0, got {text!r}")
    return value


def match_cases(old: RunResults, new: RunResults) -> list[tuple[CaseResult | None, CaseResult | None]]:
    """Pairs of (old, new) cases; a case present on one side only is paired with None."""
    remaining = list(new.cases)

    def unique(cases, case):
        same = [c for c in cases if c.key[:3] == case.key[:3]]
        return same[0] if len(same) == 1 else None

    pairs = []
    for o in old.cases:
        found = next((n for n in remaining if n.key == o.key), None)
        if found is None and unique(old.cases, o) is o:
            found = unique(remaining, o)
        if found is not None:
            remaining.remove(found)
        pairs.append((o, found))
    pairs.extend((None, n) for n in remaining)
    return pairs


def _speed(o: CaseResult, n: CaseResult, tol: Tolerances) -> dict:
    if o.timing is None or n.timing is None:
        return {"speed": "n/a"}
    ratio = n.timing.median_s / o.timing.median_s
    slower = mannwhitneyu(n.timing.samples_s, o.timing.samples_s, alternative="greater").pvalue
    faster = mannwhitneyu(n.timing.samples_s, o.timing.samples_s, alternative="less").pvalue
    if ratio > 1 + tol.threshold:
        verdict = "SLOWER" if slower < tol.alpha else "slower?"
    elif ratio < 1 / (1 + tol.threshold):
        verdict = "faster" if faster < tol.alpha else "faster?"
    else:
        verdict = "same"
    return {"old_ms": o.timing.median_s * 1e3, "new_ms": n.timing.median_s * 1e3,
            "ratio": ratio, "p_slower": slower, "speed": verdict}


def _num(d: dict, key: str) -> float:
    value = d.get(key)
    return float("nan") if value is None else float(value)


def _accuracy(o: CaseResult, n: CaseResult, tol: Tolerances) -> dict:
    if o.status == "ok" and n.status != "ok":
        return {"accuracy": f"WORSE ({n.status})"}
    ro, rn = _num(o.accuracy, "rmse_mv_median"), _num(n.accuracy, "rmse_mv_median")
    go, gn = _num(o.accuracy, "gamma_median"), _num(n.accuracy, "gamma_median")
    co, cn = (_num(o.accuracy, "spike_count_abs_error_mean"),
              _num(n.accuracy, "spike_count_abs_error_mean"))
    worse = []
    if rn - ro > max(tol.rmse_abs_mv, tol.rmse_rel * ro):
        worse.append("rmse")
    if go - gn > tol.gamma_drop:
        worse.append("gamma")
    if cn - co > tol.count_increase:
        worse.append("spike count")
    return {"d_rmse_mv": rn - ro, "d_gamma": gn - go, "d_count_error": cn - co,
            "accuracy": "WORSE (" + ", ".join(worse) + ")" if worse else "same"}


def compare(old: RunResults, new: RunResults, tol: Tolerances = Tolerances()) -> Comparison:
    rows = []
    for o, n in match_cases(old, new):
        base = o or n
        row = {"backend": base.backend, "stimulus": base.stimulus, "batch": base.batch,
               "device": base.device}
        if o is None:
            row.update(speed="new case", accuracy="")
        elif n is None:
            row.update(speed="MISSING in NEW", accuracy="")
        else:
            row.update(_speed(o, n, tol))
            row.update(_accuracy(o, n, tol))
        rows.append(row)
    regressed = any(r["speed"] in ("SLOWER", "MISSING in NEW")
                    or str(r["accuracy"]).startswith("WORSE") for r in rows)
    calib = {}
    for key, old_s in old.calibration.items():
        new_s = new.calibration.get(key)
        if old_s and new_s:
            calib[key] = {"old_s": old_s, "new_s": new_s, "new_over_old": new_s / old_s}
    machines = {"old": one_line(old.environment), "new": one_line(new.environment),
                "old_commit": (old.environment.get("git") or {}).get("commit"),
                "new_commit": (new.environment.get("git") or {}).get("commit"),
                "calibration": calib}
    return Comparison(rows=rows, machines=machines, regressed=regressed)


def format_comparison(cmp: Comparison) -> str:
    """A readable report: machines, calibration, then one line per case."""
    import pandas as pd

    m = cmp.machines
    lines = [f"OLD: {m['old']} (commit {str(m['old_commit'])[:10]})",
             f"NEW: {m['new']} (commit {str(m['new_commit'])[:10]})"]
    for key, c in m["calibration"].items():
        lines.append(f"calibration {key}: NEW/OLD = {c['new_over_old']:.2f}")
    table = cmp.table()
    with pd.option_context("display.width", 200, "display.max_columns", 20,
                           "display.float_format", lambda x: f"{x:.3g}" if math.isfinite(x) else "nan"):
        lines.append(table.to_string(index=False))
    lines.append("REGRESSION" if cmp.regressed else "no regression")
    return "\n".join(lines)
