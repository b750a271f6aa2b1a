"""Series from the store and the changes in them.

A series is one (machine, case, metric). Its points are the commits that machine ran the
case at, in commit order: ancestry (parents recorded where a repository was at hand),
commit date among commits whose ancestry does not decide. Runs of one commit are pooled
(the moments of all their log per-process medians; the median of their accuracy values); excluded runs are
left out; a case that failed or diverged at a commit has no speed point there.
"""

from __future__ import annotations

import heapq
import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from hhbench.history.changes import (ACCURACY_WORSE, Detection, accuracy_changes,
                                     speed_changes_from_moments)

METRICS = ("time",) + tuple(ACCURACY_WORSE)


def order_commits(commits: list[dict]) -> list[str]:
    """SHAs in commit order: every commit after its recorded parents (those in the list),
    ties broken by commit date, then SHA."""
    known = {c["sha"]: c for c in commits}
    children = defaultdict(list)
    waiting = {}
    for c in commits:
        parents = [p for p in c.get("parents") or [] if p in known and p != c["sha"]]
        waiting[c["sha"]] = len(parents)
        for p in parents:
            children[p].append(c["sha"])

    def key(sha):
        return (known[sha].get("date_utc") or "", sha)

    ready = [key(s) for s, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        _, sha = heapq.heappop(ready)
        out.append(sha)
        for ch in children[sha]:
            waiting[ch] -= 1
            if waiting[ch] == 0:
                heapq.heappush(ready, key(ch))
    if len(out) < len(known):  # a cycle (a corrupt record): the rest by date
        out += sorted((s for s in known if s not in set(out)), key=key)
    return out


@dataclass(frozen=True, kw_only=True)
class Series:
    machine_id: int
    case_id: int
    commits: tuple[str, ...]
    #: per point, over the per-process medians of that commit's runs (pooled): how many,
    #: the mean and standard deviation (ddof 1, 0 for one) of their logs (log seconds)
    n: np.ndarray
    log_mean: np.ndarray
    log_sd: np.ndarray
    #: per point: the runs pooled in it
    runs: tuple[tuple[int, ...], ...]
    #: metric -> per-point value (None: not measured)
    accuracy: dict = field(default_factory=dict)
    calibration_s: tuple = ()

    def timed(self) -> list[int]:
        """Indices of the points with a time (at least one process)."""
        return [int(i) for i in np.flatnonzero(self.n > 0)]

    def time_s(self, i: int) -> float:
        """Point i's time: the geometric mean of its per-process medians, seconds."""
        return math.exp(self.log_mean[i])


def _median(values: list) -> float | None:
    if not values:
        return None
    return float(values[0]) if len(values) == 1 else float(statistics.median(values))


def _pool(parts: list[tuple[int, float, float]]) -> tuple[int, float, float]:
    """(n, mean, sd) of the union of groups given as (n, mean, sd)."""
    parts = [(n, m, sd or 0.0) for n, m, sd in parts if n and m is not None]
    total = sum(n for n, _, _ in parts)
    if not total:
        return 0, math.nan, math.nan
    mean = sum(n * m for n, m, _ in parts) / total
    ss = sum((n - 1) * sd ** 2 + n * (m - mean) ** 2 for n, m, sd in parts)
    return total, mean, math.sqrt(ss / (total - 1)) if total > 1 else 0.0


def build_series(rows: list[tuple], order: list[str]) -> list[Series]:
    """Series from `Store.series_rows()` tuples, points in the order `order` (SHAs)."""
    rank = {sha: i for i, sha in enumerate(order)}
    grouped: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        grouped[(r[0], r[1])][r[2]].append(r)
    out = []
    names = tuple(ACCURACY_WORSE)  # rmse_mv, gamma, spike_count_error: columns 9, 10, 11
    for (machine, case), by_commit in sorted(grouped.items()):
        shas = sorted(by_commit, key=lambda s: rank.get(s, len(rank)))
        ns, means, sds, runs, cal = [], [], [], [], []
        acc = {m: [] for m in names}
        for sha in shas:
            rs = by_commit[sha]
            if len(rs) == 1:  # the common case, kept fast
                r = rs[0]
                ok = r[4] == "ok" and r[5] and r[6] is not None
                ns.append(r[5] if ok else 0)
                means.append(r[6] if ok else math.nan)
                sds.append((r[7] or 0.0) if ok else math.nan)
                runs.append((r[3],))
                cal.append(r[8])
                for j, m in enumerate(names):
                    acc[m].append(r[9 + j])
                continue
            n, mean, sd = _pool([(r[5], r[6], r[7]) for r in rs if r[4] == "ok"])
            ns.append(n)
            means.append(mean)
            sds.append(sd)
            runs.append(tuple(sorted(r[3] for r in rs)))
            cal.append(_median([r[8] for r in rs if r[8]]))
            for j, m in enumerate(names):
                acc[m].append(_median([r[9 + j] for r in rs if r[9 + j] is not None]))
        out.append(Series(machine_id=machine, case_id=case, commits=tuple(shas),
                          n=np.array(ns, dtype=np.int64), log_mean=np.array(means, dtype=float),
                          log_sd=np.array(sds, dtype=float), runs=tuple(runs), accuracy=acc,
                          calibration_s=tuple(cal)))
    return out


@dataclass(frozen=True, kw_only=True)
class Change:
    """One change in one series: the step lies between `before` and `after` (SHAs)."""

    machine_id: int
    case_id: int
    metric: str
    before: str
    after: str
    #: speed: after/before ratio and its interval; accuracy: old and new values
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    old: float | None = None
    new: float | None = None
    regression: bool
    detail: str = ""


def _first_at(kept: list[int], breaks: list[int]) -> list[int]:
    """Positions in `kept` (indices of the points that have a value) where each break
    falls: a mark at a point without a value restarts the baseline at the next one."""
    return sorted({next((j for j, i in enumerate(kept) if i >= b), len(kept)) for b in breaks})


def series_changes(s: Series, marked: set[str], settings: Detection = Detection()
                   ) -> list[Change]:
    """Speed and accuracy changes of one series; marked commits restart the baseline."""
    out = []
    breaks = [i for i, sha in enumerate(s.commits) if sha in marked]
    timed = s.timed()
    if len(timed) >= 2 * settings.min_commits:
        for c in speed_changes_from_moments(s.n[timed], s.log_mean[timed], s.log_sd[timed],
                                            breaks=_first_at(timed, breaks), settings=settings):
            i = timed[c.index]
            prev = timed[c.index - 1]
            out.append(Change(machine_id=s.machine_id, case_id=s.case_id, metric="time",
                              before=s.commits[prev], after=s.commits[i], ratio=c.ratio,
                              ci_low=c.ci_low, ci_high=c.ci_high, regression=c.slower,
                              detail=f"{c.n_before} commits before, {c.n_after} after, "
                                     f"processes {c.processes}; noise {c.noise:.1%}, "
                                     f"threshold {c.threshold:.1%}"))
    for metric, values in s.accuracy.items():
        idx = [i for i, v in enumerate(values) if v is not None and math.isfinite(v)]
        for c in accuracy_changes([values[i] for i in idx], metric, breaks=_first_at(idx, breaks),
                                  rtol=settings.rtol):
            out.append(Change(machine_id=s.machine_id, case_id=s.case_id, metric=metric,
                              before=s.commits[idx[c.index - 1]], after=s.commits[idx[c.index]],
                              old=c.old, new=c.new, regression=c.worse))
    return out


def all_changes(store, settings: Detection = Detection(), *, case_ids=None,
                machine_ids=None) -> tuple[list[Change], list[str], list[Series]]:
    """(every change in every series of the store, the commit order, the series)."""
    order = order_commits(store.commits())
    marked = {m["sha"] for m in store.marks()}
    series = build_series(store.series_rows(case_ids=case_ids, machine_ids=machine_ids), order)
    changes = [c for s in series for c in series_changes(s, marked, settings)]
    return changes, order, series


def group_changes(changes: list[Change]) -> list[dict]:
    """Changes of one case and metric at the same commit on several machines, as one row."""
    groups = defaultdict(list)
    for c in changes:
        groups[(c.case_id, c.metric, c.after)].append(c)
    rows = []
    for (case, metric, after), cs in groups.items():
        rows.append({"case_id": case, "metric": metric, "after": after,
                     "before": sorted({c.before for c in cs}),
                     "machines": sorted({c.machine_id for c in cs}),
                     "regression": any(c.regression for c in cs), "changes": cs})
    return rows


def case_label(case: dict) -> str:
    """'numba step x1 cpu' (+ options, precision, runtime where set)."""
    extra = [f"{k}={v}" for k, v in sorted((case.get("options") or {}).items())
             if k not in ("precision", "runtime")]
    extra += [f"{k}={case[k]}" for k in ("precision", "runtime") if case.get(k)]
    text = f"{case['backend']} {case['stimulus']} x{case['batch']} {case['device']}"
    return text + (f" [{', '.join(extra)}]" if extra else "")


def options_json(options) -> str:
    return json.dumps(options or {}, sort_keys=True)
