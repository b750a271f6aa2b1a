"""Comparing two result files: did speed or accuracy regress, and how sure is that?

Cases pair only on their full key: backend, stimulus, batch, device and the backend's
options (`pair_key`). A CPU row never meets a GPU row: a case whose counterpart differs in
device or options is "not paired", with both shown. A case of OLD that NEW lacks is
"MISSING in NEW" (it may have stopped running). For each pair:
  * speed: each side's evidence is its per-process medians; `hhbench.stats.
    compare_processes` gives the NEW/OLD ratio, its (1 − alpha) Welch interval and a
    verdict: slower, faster, same or inconclusive (with how many processes would resolve
    it);
  * evidence is discounted where it may come from something other than the code:
      - a busy run (`hhbench.busy.busy_reasons`: other work measured during the run, steal
        time, the calibration kernel's spread, or for old files the load at its start), or
        on the same kind of machine a run whose core ran slower than the other's by more
        than 5 % (`hhbench.calibration.slower_run`: another tenant of the host slows a
        whole run, and no spread between its processes shows it).
        Load only slows a run: a slowdown measured while either side was busy is
        "slower?" when its whole interval lies beyond the threshold, else inconclusive;
        "same" or "faster" stand when only NEW was busy, and are inconclusive when OLD was
        (its load may hide a slowdown). `allow_busy` turns this off;
      - settings that differ: per case (runtime, precision, threads or any other setting
        the case recorded) or per run (timing settings, sample count, threading policy):
        a slowdown is "slower?" under the same interval rule;
  * accuracy: RMSE may grow by at most max(rmse_abs_mv, rmse_rel·OLD), the median Γ may
    drop by at most gamma_drop, the mean |spike-count error| may grow by at most
    count_increase; a case that was ok and now diverges or fails is a regression.
Exit status (`Comparison.status`): 1 a regression (slower, missing, less accurate); 3 a
suspected regression ("slower?"; with `strict`, also an inconclusive or unpaired case);
0 otherwise. Notes say what differs between the runs (sources under one commit,
uncommitted changes, package versions, restarted workers); the calibration kernels'
NEW/OLD ratio is shown where both were stable (`hhbench.calibration`).
The text and Markdown reports are two renderings of one `Comparison`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hhbench.environment import one_line
from hhbench.errors import HHBenchError
from hhbench.results import CaseResult, RunResults
from hhbench.stats import MIN_PROCESSES, compare_processes

#: exit statuses of `hhbench compare`
OK, REGRESSION, BAD_INPUT, SUSPECTED = 0, 1, 2, 3
STATUS_WORDS = {OK: "no regression", REGRESSION: "regression", SUSPECTED: "suspected regression"}


@dataclass(frozen=True, kw_only=True)
class Tolerances:
    threshold: float = 0.10      # relative slowdown that matters
    alpha: float = 0.01          # 1 - confidence of the ratio's interval
    min_processes: int = MIN_PROCESSES  # fewer per side: inconclusive
    strict: bool = False         # inconclusive (or unpaired) cases: exit 3
    allow_busy: bool = False     # take busy runs' verdicts at face value
    rmse_abs_mv: float = 0.1
    rmse_rel: float = 0.10
    gamma_drop: float = 0.05
    count_increase: float = 0.5

    def __post_init__(self):
        if not self.threshold >= 0:
            raise HHBenchError(f"threshold must be >= 0, got {self.threshold!r}")
        if not 0 < self.alpha < 1:
            raise HHBenchError(f"alpha must lie between 0 and 1 (e.g. 0.01 for a 99 % "
                               f"interval), got {self.alpha:g}")
        if self.min_processes < 2:
            raise HHBenchError("a verdict needs at least 2 processes per side")


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """One comparison, rendered by `format_comparison` (text), `format_markdown` and
    `as_dict` (JSON) alike."""

    rows: list[dict]
    machines: dict
    #: 0 no regression shown, 1 regression, 3 suspected regression
    status: int = OK
    #: the last line: the status and why
    conclusion: str = ""
    #: what to do about the undecided or discounted cases, one line per cause
    advice: list = field(default_factory=list)
    tolerances: Tolerances = Tolerances()

    @property
    def regressed(self) -> bool:
        return self.status == REGRESSION

    @property
    def notes(self) -> list[str]:
        return self.machines.get("notes", [])

    def count(self, speed: str) -> int:
        return sum(r.get("speed") == speed for r in self.rows)

    def table(self):
        import pandas as pd
        return pd.DataFrame(self.rows)

    def as_dict(self) -> dict:
        from hhbench.results import _clean
        return _clean({"status": self.status, "conclusion": self.conclusion,
                       "advice": self.advice, "machines": self.machines, "rows": self.rows,
                       "threshold": self.tolerances.threshold,
                       "alpha": self.tolerances.alpha})


def parse_threshold(text: str) -> float:
    """'10%' or '0.1' → 0.1."""
    try:
        value = float(text[:-1]) / 100 if str(text).endswith("%") else float(text)
    except ValueError:
        raise HHBenchError(f"threshold must look like 10% or 0.1, got {text!r}") from None
    if not value >= 0:
        raise HHBenchError(f"threshold must be >= 0, got {text!r}")
    return value


# -- pairing -------------------------------------------------------------------------------

#: options that locate files or devices rather than choose how a case computes
_NOT_KEY_OPTIONS = ("device", "model")


def case_options(run: RunResults, backend: str) -> dict:
    """The options `backend` ran with in `run`: its defaults (where it is registered here)
    overlaid with the run's options, less `device` (in the key already) and `model`."""
    from hhbench.backends import backend_classes
    cls = backend_classes().get(backend)
    given = (run.settings.get("options") or {}).get(backend) or {}
    opts = {**(dict(cls.option_defaults) if cls else {}), **given}
    return {k: v for k, v in opts.items() if k not in _NOT_KEY_OPTIONS}


def _options_text(opts: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(opts.items())) or "-"


def _given_options(run: RunResults, backend: str) -> str:
    """The options the run set for `backend` (not its defaults), as the table shows them."""
    given = (run.settings.get("options") or {}).get(backend) or {}
    return _options_text({k: v for k, v in given.items() if k not in _NOT_KEY_OPTIONS})


def pair_key(run: RunResults, case: CaseResult) -> tuple:
    """(backend, stimulus, batch, device, options): cases pair only when all are equal."""
    return (*case.key, _options_text(case_options(run, case.backend)))


def match_cases(old: RunResults, new: RunResults) -> list[tuple[CaseResult | None, CaseResult | None]]:
    """Pairs of (old, new) cases equal in `pair_key`; a case present on one side only is
    paired with None."""
    remaining = {id(n): n for n in new.cases}
    keys = {id(n): pair_key(new, n) for n in new.cases}
    pairs = []
    for o in old.cases:
        key = pair_key(old, o)
        found = next((n for n in remaining.values() if keys[id(n)] == key), None)
        if found is None:
            # a case that failed in NEW has no speed to compare: it stopped running,
            # whatever device it was planned on (the one place the key is relaxed)
            failed = [n for n in remaining.values() if n.key[:3] == o.key[:3]
                      and n.status == "failed" and n.timing is None]
            found = failed[0] if len(failed) == 1 else None
        if found is not None:
            del remaining[id(found)]
        pairs.append((o, found))
    pairs.extend((None, n) for n in remaining.values())
    return pairs


# -- per case ------------------------------------------------------------------------------

def _speed(o: CaseResult, n: CaseResult, tol: Tolerances) -> dict:
    if o.timing is None or n.timing is None:
        return {"speed": "no timing", "verdict": "no timing"}
    old_m, new_m = o.process_medians(), n.process_medians()
    v = compare_processes(old_m, new_m, threshold=tol.threshold, alpha=tol.alpha,
                          min_processes=tol.min_processes)
    causes = ["processes"] if v.verdict == "inconclusive" else []
    return {"old_ms": float(np.median(old_m)) * 1e3, "new_ms": float(np.median(new_m)) * 1e3,
            "ratio": v.ratio, "ci_low": v.ci_low, "ci_high": v.ci_high,
            "processes": f"{v.n_old}/{v.n_new}", "speed": v.verdict, "verdict": v.verdict,
            "why": v.why, "processes_needed": v.processes_needed, "causes": causes}
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


#: packages whose version can move a case's time, by the runtime it ran through
RUNTIME_PACKAGES = {"numba": ("numba",), "cuda": ("numba", "numba-cuda"),
                    "jax": ("jax", "jaxlib"), "tensorflow": ("tensorflow", "tf_keras"),
                    "tflite": ("tensorflow",), "scipy": ("scipy",), "numpy": ()}


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 case', '2 cases' ('1 worker process', '2 worker processes' with `many`)."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def _value(v) -> str:
    return "-" if v is None else str(v)


#: what a case's settings record of the run itself (measured, not asked for): never a
#: difference of settings; besides these, keys named `*_s` and `*_bytes` are measurements
MEASURED_SETTINGS = frozenset({"memory_chunk", "windows_per_call", "network_calls"})


def case_differences(old: RunResults, new: RunResults, o: CaseResult, n: CaseResult
                     ) -> tuple[list[str], list[str]]:
    """(settings that differ, package versions that differ) for one pair of cases: every
    setting the case recorded (runtime, precision, threads, ...; measurements excluded:
    `*_s`, `*_bytes`, `MEASURED_SETTINGS`) and its runtime; NumPy's version and those of
    its runtime."""
    from hhbench.provenance import runtime_word
    settings = []
    for key in sorted(set(o.settings) | set(n.settings)):
        a, b = o.settings.get(key), n.settings.get(key)
        if key.endswith(("_s", "_bytes")) or key in MEASURED_SETTINGS or a == b:
            continue
        settings.append(f"{key} {_value(a)} vs {_value(b)}")
    ro = runtime_word(o.backend, o.settings, case_options(old, o.backend))
    rn = runtime_word(n.backend, n.settings, case_options(new, n.backend))
    if ro != rn and not any(s.startswith("runtime ") for s in settings):
        settings.append(f"runtime {_value(ro)} vs {_value(rn)}")
    vo, vn = old.environment.get("versions") or {}, new.environment.get("versions") or {}
    packages = []
    for pkg in ("numpy", *RUNTIME_PACKAGES.get(rn or "", ())):
        a, b = vo.get(pkg), vn.get(pkg)
        if a is not None and b is not None and a != b:
            packages.append(f"{pkg} {a} vs {b}")
    return settings, packages


#: run settings whose difference can move timings by itself (a slowdown is then discounted)
DISCOUNT_KEYS = ("timing", "n_samples")
#: run settings whose difference is said, not discounted
TIMING_KEYS = ("timing", "processes", "n_samples", "seed", "reference", "devices")


def _restarts(run: RunResults) -> str | None:
    """'2 worker processes restarted (first after: ...)', or None."""
    workers = run.environment.get("workers") or []
    restarted = [w for w in workers if isinstance(w, dict) and w.get("restarted_after")]
    if not restarted:
        return None
    return (f"{plural(len(restarted), 'worker process', 'worker processes')} restarted "
            f"(first after: {restarted[0]['restarted_after']}); the cases "
            f"{'it' if len(restarted) == 1 else 'they'} had not finished were timed again in "
            "a fresh process")


def run_notes(old: RunResults, new: RunResults) -> tuple[list[str], list[str]]:
    """(notes, settings discounts): what differs between the runs, said before any verdict;
    the second list holds the differences that can move timings by themselves."""
    notes, discounts = [], []
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
            moves = key in DISCOUNT_KEYS
            notes.append(f"the runs differ in {key} ({diff})" + (
                ": a speed difference may come from that alone" if moves else ""))
            if moves:
                discounts.append(f"{key} differs")
    policy = [(r.environment.get("state") or {}).get("threading_policy", {}).get("enabled")
              for r in (old, new)]
    if None not in policy and policy[0] != policy[1]:
        notes.append(f"hhbench's threading policy was {'on' if policy[0] else 'off'} in OLD "
                     f"and {'on' if policy[1] else 'off'} in NEW")
        discounts.append("threading policy differs")
    git = [r.environment.get("git") or {} for r in (old, new)]
    src = [(r.environment.get("hhbench_source") or {}).get("sha256") for r in (old, new)]
    if git[0].get("commit") and git[0].get("commit") == git[1].get("commit") \
            and None not in src and src[0] != src[1]:
        notes.append(f"OLD and NEW name the same commit {git[0]['commit'][:10]} but measured "
                     f"different sources ({src[0][:10]} vs {src[1][:10]}): at least one ran "
                     "uncommitted changes or another copy of hhbench")
    for side, g in zip(("OLD", "NEW"), git):
        if g.get("dirty"):
            notes.append(f"{side} had uncommitted changes (git dirty) on commit "
                         f"{str(g.get('commit'))[:10]}: its commit does not say what ran")
    vo, vn = old.environment.get("versions") or {}, new.environment.get("versions") or {}
    changed = [f"{k} {vo[k]} vs {vn[k]}" for k in sorted(set(vo) & set(vn))
               if vo[k] is not None and vn[k] is not None and vo[k] != vn[k]]
    if changed:
        notes.append("package versions differ (OLD vs NEW): " + ", ".join(changed))
    for side, run in (("OLD", old), ("NEW", new)):
        if (restarts := _restarts(run)):
            notes.append(f"{side}: {restarts}")
    return notes, discounts


def what_is_compared(old: RunResults, new: RunResults) -> list[str]:
    """The notes of `run_notes`: what differs between the runs, said before any verdict."""
    return run_notes(old, new)[0]


def _busy(old: RunResults, new: RunResults, speed: dict | None) -> dict:
    """{side: why} for each run whose timings may be slow for a reason other than the code:
    its own load (`hhbench.busy.busy_reasons`), or, on the same kind of machine with the
    same NumPy, a core that ran slower than the other run's
    (`hhbench.calibration.slower_run` of `speed`, the runs' `speed_ratio`)."""
    from hhbench.busy import busy_reasons
    from hhbench.calibration import slower_run
    reasons = {side: busy_reasons(run.environment, run.calibration)
               for side, run in (("OLD", old), ("NEW", new))}
    if _same_kind_of_machine(old.environment, new.environment):
        if (slow := slower_run(speed)):
            reasons[slow[0]].append(slow[1])
    return {side: "; ".join(r) for side, r in reasons.items() if r}


def _same_kind_of_machine(old: dict, new: dict) -> bool:
    """Known and equal CPU model, cores, memory and GPUs, and the same NumPy (the
    calibration kernel is NumPy's `exp`, whose speed is the build's as much as the CPU's)."""
    numpy = [(env.get("versions") or {}).get("numpy") for env in (old, new)]
    return bool(old.get("cpu")) and one_line(old) == one_line(new) and numpy[0] == numpy[1]


def _discount(row: dict, busy: dict, settings: list[str], tol: Tolerances) -> None:
    """Rewrite a row's speed where its evidence is discounted (see the module doc)."""
    verdict = row.get("verdict")
    if verdict not in ("slower", "faster", "same"):
        if verdict == "inconclusive" and busy and not tol.allow_busy:
            row["causes"] = row["causes"] + ["busy"]
            row["why"] += "; " + ", ".join(f"{s} busy: {w}" for s, w in busy.items())
        return
    reasons = []
    if busy and not tol.allow_busy and (verdict == "slower" or "OLD" in busy):
        reasons.append(("busy", "busy: " + "; ".join(f"{s} {w}" for s, w in busy.items())))
    if settings and verdict == "slower":
        reasons.append(("settings", "settings differ: " + "; ".join(settings)))
    if not reasons:
        return
    causes, words = [c for c, _ in reasons], ", ".join(w for _, w in reasons)
    beyond = row["ci_low"] > 1 + tol.threshold
    if verdict == "slower" and beyond:
        row.update(speed="slower?", causes=causes,
                   why=f"slower beyond +{tol.threshold:.0%} with its whole "
                       f"{1 - tol.alpha:.0%} interval ({row['ci_low']:.3f}-"
                       f"{row['ci_high']:.3f}), but discounted: {words}")
    else:
        what = "slower, but not with its whole interval beyond the threshold" \
            if verdict == "slower" else f"{verdict}, but OLD's load may hide a slowdown"
        row.update(speed="inconclusive", causes=causes, processes_needed=None,
                   why=f"would be {what}; {words}")


def compare(old: RunResults, new: RunResults, tol: Tolerances = Tolerances()) -> Comparison:
    from hhbench.calibration import speed_ratio
    notes, run_discounts = run_notes(old, new)
    speed = speed_ratio(old.calibration, new.calibration)
    busy = _busy(old, new, speed)
    rows = []
    pairs = match_cases(old, new)
    for o, n in pairs:
        base = o or n
        side = old if o is not None else new
        device = base.device if o is None or n is None or o.device == n.device \
            else f"{o.device} (NEW {n.device})"
        row = {"backend": base.backend, "stimulus": base.stimulus, "batch": base.batch,
               "device": device, "options": _given_options(side, base.backend)}
        if o is None or n is None:
            other = [c for c in ((new.cases if n is None else old.cases))
                     if c.key[:3] == base.key[:3]]
            if other:
                c = other[0]
                there, run_there = ("NEW", new) if n is None else ("OLD", old)
                mine = _options_text(case_options(side, base.backend))
                theirs = _options_text(case_options(run_there, c.backend))
                what = ", ".join(x for x in (
                    f"on {c.device}" if c.device != base.device else "",
                    f"with options {theirs} (here {mine})" if theirs != mine else "") if x)
                row.update(speed="not paired", accuracy="",
                           why=f"{there} ran it {what}: cases pair only on backend, stimulus, "
                               "batch, device and options", causes=["unpaired"])
            elif o is None:
                row.update(speed="new case", accuracy="")
            else:
                row.update(speed="MISSING in NEW", accuracy="")
        else:
            row.update(_speed(o, n, tol))
            settings, packages = case_differences(old, new, o, n)
            row["differs"] = settings + packages
            _discount(row, busy, settings + run_discounts, tol)
            row.update(_accuracy(o, n, tol))
        rows.append(row)
    machines = {"old": one_line(old.environment), "new": one_line(new.environment),
                "busy": busy,
                "old_commit": (old.environment.get("git") or {}).get("commit"),
                "new_commit": (new.environment.get("git") or {}).get("commit"),
                "old_dirty": (old.environment.get("git") or {}).get("dirty"),
                "new_dirty": (new.environment.get("git") or {}).get("dirty"),
                "old_source": (old.environment.get("hhbench_source") or {}).get("sha256"),
                "new_source": (new.environment.get("hhbench_source") or {}).get("sha256"),
                "calibration": speed,
                "notes": notes}
    status, conclusion, advice = _conclude(rows, busy, tol)
    return Comparison(rows=rows, machines=machines, status=status, conclusion=conclusion,
                      advice=advice, tolerances=tol)


def _name(r: dict) -> str:
    return f"{r['backend']} {r['stimulus']} x{r['batch']} {r['device']}"


def _conclude(rows: list[dict], busy: dict, tol: Tolerances) -> tuple[int, str, list[str]]:
    """(exit status, last line, advice by cause) from the rows."""
    slower = [r for r in rows if r.get("speed") == "slower"]
    suspected = [r for r in rows if r.get("speed") == "slower?"]
    missing = [r for r in rows if r.get("speed") == "MISSING in NEW"]
    worse = [r for r in rows if str(r.get("accuracy", "")).startswith("WORSE")]
    unsure = [r for r in rows if r.get("speed") == "inconclusive"]
    unpaired = [r for r in rows if r.get("speed") == "not paired"]
    advice = []
    causes = {c for r in unsure + suspected + unpaired for c in r.get("causes", ())}
    needed = [r["processes_needed"] for r in unsure if r.get("processes_needed")]
    if "processes" in causes:
        advice.append("for spread between processes: rerun both with --processes "
                      f"{min(max(needed), 50) if needed else 5} or more")
    if "busy" in causes:
        advice.append("for load (" + "; ".join(f"{s}: {w}" for s, w in busy.items())
                      + "): rerun both on a quiet machine")
    if "settings" in causes:
        advice.append("for settings that differ: rerun both with the same settings")
    if "unpaired" in causes:
        advice.append("for unpaired cases: rerun both on the same devices with the same "
                      "options")
    n = len(rows)
    if slower or missing or worse:
        parts = [f"{len(x)} {what}" for x, what in ((slower, "slower"), (worse, "less accurate"),
                                                    (missing, "missing")) if x]
        if suspected:
            parts.append(f"{len(suspected)} more slower? (discounted)")
        return REGRESSION, "REGRESSION (exit 1): " + ", ".join(parts), advice
    if suspected:
        names = ", ".join(f"{_name(r)} {r['ratio']:.2f}x, interval {_interval(r)}"
                          for r in suspected)
        return SUSPECTED, (f"SUSPECTED REGRESSION (exit 3): {plural(len(suspected), 'case')} "
                           f"slower beyond +{tol.threshold:.0%} with the whole interval, on "
                           f"discounted evidence ({names}); "
                           + "; ".join(advice)), advice
    undecided = unsure + unpaired
    if undecided:
        what = (f"{len(undecided)} of {plural(n, 'case')} "
                f"{'is' if len(undecided) == 1 else 'are'} "
                f"{'inconclusive' if not unpaired else 'inconclusive or not paired'}")
        if tol.strict:
            return SUSPECTED, (f"UNDECIDED, --strict (exit 3): {what}; " + "; ".join(advice)), \
                advice
        return OK, (f"no slowdown shown (exit 0), but {what}: a slowdown there cannot be "
                    "ruled out; " + "; ".join(advice)), advice
    return OK, (f"no regression (exit 0): every case is the same (within "
                f"±{tol.threshold:.0%}) or faster, and as accurate"), advice


# -- rendering -----------------------------------------------------------------------------

def _interval(r: dict) -> str:
    lo, hi = r.get("ci_low"), r.get("ci_high")
    return f"{lo:.3f}-{hi:.3f}" if lo is not None and math.isfinite(lo) else "-"


def _num_text(v, f: str) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, f)


def _header(cmp: Comparison) -> list[str]:
    """Machine, commit, sources and dirty flag of each side; the calibration; the notes;
    what the ratio is."""
    m, tol = cmp.machines, cmp.tolerances
    lines = []
    for side in ("old", "new"):
        dirty = " with uncommitted changes" if m.get(side + "_dirty") else ""
        lines.append(f"{side.upper()}: {m[side]} (commit {str(m[side + '_commit'])[:10]}"
                     f"{dirty}, sources {str(m.get(side + '_source'))[:10]})")
    c = m.get("calibration")
    if c and c["stable"]:
        lines.append(f"machine speed (single-core calibration kernel, NEW/OLD time): "
                     f"{c['ratio']:.2f}; read a case's ratio across machines against it, "
                     "it corrects nothing")
    elif c:
        lines.append(f"machine speed not shown: the calibration kernel was unstable "
                     f"(spread {c['old_spread']:.0%} OLD, {c['new_spread']:.0%} NEW)")
    lines += [f"note: {note}" for note in m.get("notes", ())]
    for side, why in (m.get("busy") or {}).items():
        lines.append(f"warning: {side} ran on a busy machine ({why}): its slowdowns are "
                     "discounted" + (" (--allow-busy: not discounted)" if tol.allow_busy
                                      else ""))
    lines.append(f"speed: NEW/OLD of the per-process median warm times, {1 - tol.alpha:.0%} "
                 f"interval; threshold ±{tol.threshold:.0%}")
    return lines


def _explanations(cmp: Comparison) -> list[str]:
    out = []
    for r in cmp.rows:
        if r.get("speed") in ("inconclusive", "slower?", "not paired"):
            out.append(f"{r['speed']} {_name(r)}: {r['why']}")
        if r.get("differs"):
            out.append(f"differs {_name(r)}: " + "; ".join(r["differs"]))
    return out


def format_comparison(cmp: Comparison) -> str:
    """A readable report: machines, calibration, notes, one line per case, why each
    undecided or discounted case is so and what differs per case, then the conclusion."""
    import pandas as pd

    lines = _header(cmp)
    table = cmp.table()
    table["interval"] = [_interval(r) for r in cmp.rows]
    cols = [c for c in ("backend", "stimulus", "batch", "device", "options", "old_ms",
                        "new_ms", "ratio", "interval", "processes", "speed", "d_rmse_mv",
                        "d_gamma", "d_count_error", "accuracy") if c in table]
    if "options" in cols and (table["options"] == "-").all():
        cols.remove("options")
    table = table[cols].astype(object).where(table[cols].notna(), None)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        cell = lambda v: "-" if v is None or v == "" else (  # noqa: E731
            _num_text(v, ".3g") if isinstance(v, float) else str(v))
        shown = table.map(cell) if hasattr(table, "map") else table.applymap(cell)
        lines.append(shown.to_string(index=False))
    lines += [f"  {line}" for line in _explanations(cmp)]
    lines.append(cmp.conclusion)
    return "\n".join(lines)


def format_markdown(cmp: Comparison) -> str:
    """The same comparison as Markdown, for a pull-request comment or a CI job summary:
    the conclusion first, then the header, the table and the explanations."""
    lines = [f"**{cmp.conclusion}**", ""]
    lines += [f"- {line.replace('commit ', 'commit `', 1).replace(', sources', '`, sources', 1)}"
              if line.startswith(("OLD:", "NEW:")) else f"- {line}" for line in _header(cmp)]
    lines += ["", "| backend | stimulus | batch | device | options | OLD ms | NEW ms | NEW/OLD "
                  "| interval | speed | accuracy |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in cmp.rows:
        speed = r.get("speed", "")
        if speed in ("slower", "slower?", "MISSING in NEW"):
            speed = f"**{speed}**"
        lines.append(f"| {r['backend']} | {r['stimulus']} | {r['batch']} | {r['device']} | "
                     f"{r.get('options', '-')} | {_num_text(r.get('old_ms'), '.3g')} | "
                     f"{_num_text(r.get('new_ms'), '.3g')} | {_num_text(r.get('ratio'), '.3f')} | "
                     f"{_interval(r)} | {speed} | {r.get('accuracy') or '-'} |")
    expl = _explanations(cmp)
    if expl:
        lines += [""] + [f"- {line}" for line in expl]
    return "\n".join(lines) + "\n"


def format_json(cmp: Comparison) -> str:
    import json
    return json.dumps(cmp.as_dict(), indent=1)
