"""The history in other trackers' formats, for projects that already use them.

  * `bencher`: Bencher Metric Format (BMF), one JSON file per run, `DIR/<machine>/<n>-<commit>.json`
    (n orders them): {benchmark: {measure: {value, lower_value, upper_value}}}, with the
    measures `latency` (nanoseconds: the median over processes, bounded by the fastest and
    slowest process), `rmse-mv`, `gamma` and `spike-count-error`; feed each with
    `bencher run --testbed <machine> --file <file> --adapter json`;
  * `github-action-benchmark`: the `data.js` that github-action-benchmark keeps on its
    gh-pages branch (`window.BENCHMARK_DATA = {...}`), one suite per machine, one entry per
    run, tool `customSmallerIsBetter` (times in ms; RMSE and the spike-count error as their
    own benches, Γ, bigger is better, in `extra`);
  * `csv`: one row per (run, case), excluded runs included and flagged.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from hhbench.atomic import atomic_write
from hhbench.history.series import case_label, order_commits

FORMATS = ("bencher", "github-action-benchmark", "csv")
CSV_COLUMNS = ("machine", "machine_description", "commit", "commit_date_utc", "branch",
               "run", "excluded", "excluded_reason", "backend", "stimulus", "batch",
               "device", "options", "precision", "runtime", "status", "median_ms",
               "processes", "process_medians_ms", "rmse_mv", "gamma", "spike_count_error")


def _rows(store):
    """Every result (excluded runs too), in commit order, with its case and machine."""
    order = {sha: i for i, sha in enumerate(order_commits(store.commits()))}
    cases = {c["id"]: c for c in store.cases()}
    machines = {m["id"]: m for m in store.machines()}
    rows = store.points(include_excluded=True)
    rows.sort(key=lambda r: (order.get(r["sha"], 0), r["run_id"], r["case_id"]))
    return rows, cases, machines


def _label(m: dict) -> str:
    return f"M{m['id']}"


def export_csv(store, path: Path) -> int:
    rows, cases, machines = _rows(store)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for r in rows:
        c, m = cases[r["case_id"]], machines[r["machine_id"]]
        meds = r["process_medians_s"]
        w.writerow([_label(m), m["description"], r["sha"], r["date_utc"] or "",
                    r["branch"] or "", r["run_id"], int(bool(r["excluded"])),
                    r["excluded_reason"] or "", c["backend"], c["stimulus"], c["batch"],
                    c["device"], json.dumps(c["options"], sort_keys=True), c["precision"] or "",
                    c["runtime"] or "", r["status"],
                    "" if r["median_s"] is None else repr(r["median_s"] * 1e3), len(meds),
                    " ".join(repr(m_ * 1e3) for m_ in meds),
                    *("" if r[k] is None else repr(r[k])
                      for k in ("rmse_mv", "gamma", "spike_count_error"))])
    atomic_write(path, buf.getvalue())
    return len(rows)


def _by_run(rows):
    runs = defaultdict(list)
    for r in rows:
        if not r["excluded"]:
            runs[r["run_id"]].append(r)
    return runs


def export_bencher(store, folder: Path) -> int:
    rows, cases, machines = _rows(store)
    n = 0
    for i, (run_id, rs) in enumerate(_by_run(rows).items()):
        bmf = {}
        for r in rs:
            measures = {}
            meds = r["process_medians_s"]
            if r["status"] == "ok" and meds:
                measures["latency"] = {"value": float(np.median(meds)) * 1e9,
                                       "lower_value": min(meds) * 1e9,
                                       "upper_value": max(meds) * 1e9}
            for key, slug in (("rmse_mv", "rmse-mv"), ("gamma", "gamma"),
                              ("spike_count_error", "spike-count-error")):
                if r[key] is not None:
                    measures[slug] = {"value": r[key]}
            if measures:
                bmf[case_label(cases[r["case_id"]])] = measures
        m = machines[rs[0]["machine_id"]]
        out = folder / _label(m)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / f"{i:06d}-{rs[0]['sha'][:40].replace(':', '-')}.json",
                     json.dumps(bmf, indent=1))
        n += 1
    return n


def _ms(date: str | None) -> int:
    import datetime as dt
    if not date:
        return 0
    return int(dt.datetime.fromisoformat(date).timestamp() * 1000)


def export_github_action_benchmark(store, path: Path) -> int:
    rows, cases, machines = _rows(store)
    entries = defaultdict(list)
    for run_id, rs in _by_run(rows).items():
        m = machines[rs[0]["machine_id"]]
        benches = []
        for r in rs:
            label = case_label(cases[r["case_id"]])
            meds = r["process_medians_s"]
            if r["status"] == "ok" and meds:
                med = float(np.median(meds)) * 1e3
                half = (max(meds) - min(meds)) * 1e3 / 2
                extra = f"processes: {len(meds)}; run {run_id}"
                if r["gamma"] is not None:
                    extra += f"; gamma {r['gamma']:.4g}"
                benches.append({"name": label, "value": med, "unit": "ms",
                                "range": f"± {half:.4g}", "extra": extra})
            for key in ("rmse_mv", "spike_count_error"):
                if r[key] is not None:
                    benches.append({"name": f"{label} {key}", "value": r[key],
                                    "unit": "mV" if key == "rmse_mv" else "spikes"})
        sha = rs[0]["sha"]
        entries[f"hhbench {_label(m)}: {m['description']}"].append({
            "commit": {"id": sha, "message": "", "timestamp": rs[0]["date_utc"] or "",
                       "url": "", "author": {"name": ""}, "committer": {"name": ""}},
            "date": _ms(rs[0]["date_utc"]), "tool": "customSmallerIsBetter",
            "benches": benches})
    data = {"lastUpdate": max((e["date"] for es in entries.values() for e in es), default=0),
            "repoUrl": "", "entries": dict(entries)}
    atomic_write(path, "window.BENCHMARK_DATA = " + json.dumps(data, indent=2) + "\n")
    return sum(len(es) for es in entries.values())


def export(store, fmt: str, path: Path) -> int:
    """Write the history in format `fmt` to `path` (a folder for bencher); how many rows
    (csv) or runs (the others) were written."""
    return {"csv": export_csv, "bencher": export_bencher,
            "github-action-benchmark": export_github_action_benchmark}[fmt](store, path)
