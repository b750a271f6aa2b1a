"""Comparing two result files: did speed or accuracy regress?

Cases are matched on (backend, stimulus, batch, device); where the device differs (a run on
another machine, "auto" resolved differently, a CNN that failed before reporting where it
ran) a case that is unique by (backend, stimulus, batch) on both sides still matches. A
case of OLD that NEW lacks is a regression (it may have stopped running). For each pair:
  * speed: each side's evidence is its per-process medians (every case is timed in
    several fresh processes); `hhbench.stats.compare_processes` gives the NEW/OLD ratio,
    its (1 − alpha) interval and one verdict: slower, faster, same (the interval inside
    ±threshold) or inconclusive (too few processes, or an interval too wide or straddling
    the threshold — with how many processes per side would resolve it). Results timed in
    one process (schema 1, or `--processes 1`) are always inconclusive.
  * a run that started on a busy machine (load average above half the cores, recorded in
    its environment) gets no speed verdict: another job's load slows whole runs, every
    process alike, which no spread between processes reveals (`allow_busy` overrides);
  * the report exits 1 on a case that is slower, missing, or less accurate; with
    `strict`, also on an inconclusive one. It never says "no regression" while a case is
    inconclusive: it says which slowdowns it could not rule out.
  * accuracy: RMSE may grow by at most max(rmse_abs_mv, rmse_rel·OLD), the median Γ may
    drop by at most gamma_drop, the mean |spike-count error| may grow by at most
    count_increase; a case that was ok and now diverges or fails is a regression.
Across machines, each machine's calibration kernels are shown side by side so a ratio
can be read against the machines' own speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hhbench.environment import one_line
from hhbench.errors import HHBenchError
from hhbench.results import CaseResult, RunResults
from hhbench.stats import MIN_PROCESSES, compare_processes


@dataclass(frozen=True, kw_only=True)
class Tolerances:
    threshold: float = 0.10      # relative slowdown that matters
    alpha: float = 0.01          # 1 - confidence of the ratio's interval
    min_processes: int = MIN_PROCESSES  # fewer per side: inconclusive
    strict: bool = False         # inconclusive cases fail too
    allow_busy: bool = False     # give verdicts even when a run started on a busy machine
    rmse_abs_mv: float = 0.1
    rmse_rel: float = 0.10
    gamma_drop: float = 0.05
    count_increase: float = 0.5

    def __post_init__(self):
        if not self.threshold >= 0 or not 0 < self.alpha < 1:
            raise HHBenchError("threshold must be >= 0 and alpha within (0, 1)")
        if self.min_processes < 2:
            raise HHBenchError("a verdict needs at least 2 processes per side")


@dataclass(frozen=True, kw_only=True)
class Comparison:
    rows: list[dict]
    machines: dict
    #: a case slower, missing or less accurate (or, with `strict`, inconclusive)
    regressed: bool
    tolerances: Tolerances = Tolerances()

    def count(self, speed: str) -> int:
        return sum(r.get("speed") == speed for r in self.rows)

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
        return {"speed": "no timing"}
    old_m, new_m = o.process_medians(), n.process_medians()
    v = compare_processes(old_m, new_m, threshold=tol.threshold, alpha=tol.alpha,
                          min_processes=tol.min_processes)
    return {"old_ms": float(np.median(old_m)) * 1e3, "new_ms": float(np.median(new_m)) * 1e3,
            "ratio": v.ratio, "ci_low": v.ci_low, "ci_high": v.ci_high,
            "processes": f"{v.n_old}/{v.n_new}", "speed": v.verdict, "why": v.why,
            "processes_needed": v.processes_needed}


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


def _busy_reason(old: RunResults, new: RunResults) -> str | None:
    from hhbench.check import busy
    reasons = [f"{side} started at {why}" for side, res in (("OLD", old), ("NEW", new))
               if (why := busy(res.environment.get("state")))]
    return "; ".join(reasons) or None


#: settings of a run whose difference between OLD and NEW can move timings by itself
TIMING_KEYS = ("timing", "processes", "n_samples", "seed", "reference", "options", "devices")


def what_is_compared(old: RunResults, new: RunResults) -> list[str]:
    """Notes said before any verdict: OLD and NEW are the same run (every matched case has
    identical timings), or their timing settings, threading policy or hhbench version
    differ (a speed difference may come from that alone)."""
    notes = []
    pairs = [(o, n) for o, n in match_cases(old, new) if o is not None and n is not None
             and o.timing is not None and n.timing is not None]
    if pairs and all([p.samples_s for p in o.processes] == [p.samples_s for p in n.processes]
                     for o, n in pairs):
        notes.append("OLD and NEW are the same run (identical timings in every case): the "
                     "comparison says nothing about a change")
    for key in TIMING_KEYS:
        a, b = old.settings.get(key), new.settings.get(key)
        if a is not None and b is not None and a != b:
            if isinstance(a, dict) and isinstance(b, dict):
                diff = ", ".join(f"{k} {a.get(k)} vs {b.get(k)}" for k in sorted(set(a) | set(b))
                                 if a.get(k) != b.get(k))
            else:
                diff = f"{a} vs {b}"
            notes.append(f"the runs differ in {key} ({diff}): a speed difference may come "
                         "from that alone")
    policy = [(r.environment.get("state") or {}).get("threading_policy", {}).get("enabled")
              for r in (old, new)]
    if None not in policy and policy[0] != policy[1]:
        notes.append(f"hhbench's threading policy was {'on' if policy[0] else 'off'} in OLD "
                     f"and {'on' if policy[1] else 'off'} in NEW")
    version = [(r.environment.get("versions") or {}).get("hhbench") for r in (old, new)]
    if None not in version and version[0] != version[1]:
        notes.append(f"hhbench {version[0]} in OLD, {version[1]} in NEW")
    return notes


def compare(old: RunResults, new: RunResults, tol: Tolerances = Tolerances()) -> Comparison:
    rows = []
    # another job's load slows a whole run, every process alike: no spread between
    # processes shows it, so a verdict from such a run could be wrong either way
    busy = None if tol.allow_busy else _busy_reason(old, new)
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
            if busy and row["speed"] in ("slower", "faster", "same"):
                row.update(why=f"would be {row['speed']}, but {busy}: a busy machine's load "
                               "shifts whole runs (rerun on a quiet machine, or --allow-busy)",
                           speed="inconclusive", processes_needed=None)
            row.update(_accuracy(o, n, tol))
        rows.append(row)
    failing = ("slower", "MISSING in NEW") + (("inconclusive",) if tol.strict else ())
    regressed = any(r["speed"] in failing or str(r["accuracy"]).startswith("WORSE")
                    for r in rows)
    calib = {}
    for key, old_s in old.calibration.items():
        new_s = new.calibration.get(key)
        if old_s and new_s:
            calib[key] = {"old_s": old_s, "new_s": new_s, "new_over_old": new_s / old_s}
    machines = {"old": one_line(old.environment), "new": one_line(new.environment),
                "busy": busy,
                "old_commit": (old.environment.get("git") or {}).get("commit"),
                "new_commit": (new.environment.get("git") or {}).get("commit"),
                "old_source": (old.environment.get("hhbench_source") or {}).get("sha256"),
                "new_source": (new.environment.get("hhbench_source") or {}).get("sha256"),
                "calibration": calib, "notes": what_is_compared(old, new)}
    return Comparison(rows=rows, machines=machines, regressed=regressed, tolerances=tol)


def format_comparison(cmp: Comparison) -> str:
    """A readable report: machines, calibration, one line per case, the reasons of the
    inconclusive cases, then the conclusion (which never claims more than was shown)."""
    import pandas as pd

    m, tol = cmp.machines, cmp.tolerances
    lines = [f"{side.upper()}: {m[side]} (commit {str(m[side + '_commit'])[:10]}, sources "
             f"{str(m.get(side + '_source'))[:10]})" for side in ("old", "new")]
    for key, c in m["calibration"].items():
        lines.append(f"calibration {key}: NEW/OLD = {c['new_over_old']:.2f}")
    for note in m.get("notes", ()):
        lines.append(f"note: {note}")
    lines.append(f"speed: NEW/OLD of the per-process median warm times, {1 - tol.alpha:.0%} "
                 f"interval; threshold ±{tol.threshold:.0%}")
    if m.get("busy"):
        lines.append(f"warning: {m['busy']}: no speed verdicts (--allow-busy gives them anyway)")
    table = cmp.table()
    if "ci_low" in table:
        table["interval"] = [f"{lo:.3f}-{hi:.3f}" if math.isfinite(lo) else "-"
                             for lo, hi in zip(table["ci_low"].fillna(float("nan")),
                                               table["ci_high"].fillna(float("nan")))]
    cols = [c for c in ("backend", "stimulus", "batch", "device", "old_ms", "new_ms", "ratio",
                        "interval", "processes", "speed", "d_rmse_mv", "d_gamma",
                        "d_count_error", "accuracy") if c in table]
    with pd.option_context("display.width", 250, "display.max_columns", 30,
                           "display.float_format", lambda x: f"{x:.3g}" if math.isfinite(x) else "nan"):
        lines.append(table[cols].to_string(index=False, na_rep="-"))
    unsure = [r for r in cmp.rows if r.get("speed") == "inconclusive"]
    for r in unsure:
        lines.append(f"  inconclusive {r['backend']} {r['stimulus']} x{r['batch']}: {r['why']}")
    slower, worse = cmp.count("slower"), sum(str(r.get("accuracy", "")).startswith("WORSE")
                                             for r in cmp.rows)
    missing = cmp.count("MISSING in NEW")
    if cmp.regressed:
        parts = [f"{k} {what}" for k, what in ((slower, "slower"), (worse, "less accurate"),
                                                (missing, "missing"),
                                                (len(unsure) if tol.strict else 0,
                                                 "inconclusive (--strict)")) if k]
        lines.append("REGRESSION: " + ", ".join(parts))
    elif unsure:
        needed = [r["processes_needed"] for r in unsure if r.get("processes_needed")]
        hint = (f"; rerun both with --processes {min(max(needed), 50)} or more to decide"
                if needed else "")
        lines.append(f"no slowdown shown, but {len(unsure)} of {len(cmp.rows)} cases are "
                     f"inconclusive: a slowdown there cannot be ruled out{hint}")
    else:
        lines.append(f"no regression: every case is the same (within ±{tol.threshold:.0%}) "
                     "or faster, and as accurate")
    return "\n".join(lines)


def format_markdown(cmp: Comparison) -> str:
    """The same report as a Markdown table, for a pull-request comment or a CI job summary:
    the verdicts and the conclusion of `format_comparison`, the notes first."""
    m, tol = cmp.machines, cmp.tolerances
    text = format_comparison(cmp).splitlines()
    conclusion = text[-1]
    lines = [f"**{conclusion}**", ""]
    lines += [f"- {side.upper()}: {m[side]} (commit `{str(m[side + '_commit'])[:10]}`)"
              for side in ("old", "new")]
    lines += [f"- note: {note}" for note in m.get("notes", ())]
    if m.get("busy"):
        lines.append(f"- warning: {m['busy']}: no speed verdicts")
    lines += ["", f"NEW/OLD of the per-process median warm times, {1 - tol.alpha:.0%} interval; "
                  f"threshold ±{tol.threshold:.0%}", "",
              "| backend | stimulus | batch | device | OLD ms | NEW ms | NEW/OLD | interval | "
              "speed | accuracy |", "|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda v, f: "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) \
        else format(v, f)  # noqa: E731
    for r in cmp.rows:
        interval = (f"{r['ci_low']:.3f}-{r['ci_high']:.3f}" if r.get("ci_low") is not None
                    and math.isfinite(r["ci_low"]) else "-")
        speed = r.get("speed", "")
        if speed in ("slower", "MISSING in NEW"):
            speed = f"**{speed}**"
        lines.append(f"| {r['backend']} | {r['stimulus']} | {r['batch']} | {r['device']} | "
                     f"{fmt(r.get('old_ms'), '.3g')} | {fmt(r.get('new_ms'), '.3g')} | "
                     f"{fmt(r.get('ratio'), '.3f')} | {interval} | {speed} | "
                     f"{r.get('accuracy', '')} |")
    unsure = [r for r in cmp.rows if r.get("speed") == "inconclusive"]
    if unsure:
        lines += [""] + [f"- inconclusive {r['backend']} {r['stimulus']} x{r['batch']}: "
                         f"{r['why']}" for r in unsure]
    return "\n".join(lines) + "\n"
