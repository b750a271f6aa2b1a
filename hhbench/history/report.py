"""Tables of the history for people: a case's series, the open changes, the machines.

Every function takes what `hhbench.history.series` computed and returns text (plain or
Markdown); nothing here reads the store."""

from __future__ import annotations

import math

from hhbench.history.series import Change, Series, case_label, group_changes


def _short(sha: str) -> str:
    return sha[:10] if not sha.startswith("sources:") else sha[:18]


def _num(v, fmt="{:.4g}") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


def change_rows(changes: list[Change], cases: dict, machines: dict) -> list[dict]:
    """One row per change, machines that show it together: commit range, size, interval."""
    rows = []
    for g in group_changes(changes):
        cs = g["changes"]
        c0 = cs[0]
        if g["metric"] == "time":
            ratios = [c.ratio for c in cs]
            size = "x" + "/".join(f"{r:.3f}" for r in ratios)
            interval = "; ".join(f"{c.ci_low:.3f}-{c.ci_high:.3f}" for c in cs)
            kind = "slower" if g["regression"] else "faster"
        else:
            size = f"{_num(c0.old)} -> {_num(c0.new)}"
            interval = "exact"
            kind = "worse" if g["regression"] else "better"
        rows.append({"case": case_label(cases[g["case_id"]]), "metric": g["metric"],
                     "commits": f"{'/'.join(_short(b) for b in g['before'])}..{_short(g['after'])}",
                     "after": g["after"], "change": kind, "size": size, "interval": interval,
                     "machines": ", ".join(machines[m]["label"] for m in g["machines"]),
                     "regression": g["regression"], "detail": "; ".join(
                         c.detail for c in cs if c.detail)})
    rows.sort(key=lambda r: (not r["regression"], r["case"], r["metric"], r["commits"]))
    return rows


def format_changes(rows: list[dict], *, markdown: bool = False, title: str = "") -> str:
    cols = ("case", "metric", "commits", "change", "size", "interval", "machines")
    if not rows:
        return (f"{title}\n\n" if title and markdown else "") + "no open change"
    if markdown:
        lines = [f"### {title}", ""] if title else []
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(str(r[c]).replace("|", "\\|") for c in cols) + " |"
                  for r in rows]
        return "\n".join(lines)
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def series_table(series: list[Series], machines: dict, marks: dict) -> str:
    """A case's points per machine: commit, time (ms: the geometric mean of the per-process
    medians), processes, accuracy, marks."""
    out = []
    for s in series:
        out.append(f"machine {machines[s.machine_id]['label']}: "
                   f"{machines[s.machine_id]['description']}")
        out.append(f"  {'commit':<10}  {'time_ms':>10}  {'processes':>9}  {'rmse_mv':>8}  "
                   f"{'gamma':>6}  {'spike_err':>9}  runs")
        for i, sha in enumerate(s.commits):
            med = s.time_s(i) * 1e3 if s.n[i] else None
            acc = [s.accuracy[k][i] for k in ("rmse_mv", "gamma", "spike_count_error")]
            note = f"  mark: {marks[sha]}" if sha in marks else ""
            out.append(f"  {_short(sha):<10}  {_num(med):>10}  {s.n[i]:>9}  "
                       f"{_num(acc[0]):>8}  {_num(acc[1]):>6}  {_num(acc[2]):>9}  "
                       f"{','.join(map(str, s.runs[i]))}{note}")
    return "\n".join(out)


def machine_labels(machines: list[dict]) -> dict:
    """{id: {label 'M1'…, description, …}}."""
    return {m["id"]: {**m, "label": f"M{m['id']}"} for m in machines}


def latest_by_machine(series: list[Series]) -> dict:
    """{(case_id, machine_id): (commit, median_s, normalised)} at each series' last timed
    point; normalised = median / the machine's calibration time (geometric mean of its
    calibration kernels), a figure comparable across machines."""
    out = {}
    for s in series:
        timed = s.timed()
        if not timed:
            continue
        i = timed[-1]
        med = s.time_s(i)
        cal = s.calibration_s[i] if s.calibration_s else None
        out[(s.case_id, s.machine_id)] = (s.commits[i], med, med / cal if cal else None)
    return out


def machines_table(series: list[Series], cases: dict, machines: dict) -> str:
    latest = latest_by_machine(series)
    ids = sorted(machines)
    lines = [f"{m['label']}: {m['description']} (host {m['hostname']})"
             for m in (machines[i] for i in ids)]
    lines.append("")
    head = ["case"] + [f"{machines[i]['label']} ms" for i in ids] + \
           [f"{machines[i]['label']} /calib" for i in ids]
    rows = []
    for cid in sorted({k[0] for k in latest}, key=lambda c: case_label(cases[c])):
        row = [case_label(cases[cid])]
        row += [_num(latest[(cid, i)][1] * 1e3) if (cid, i) in latest else "-" for i in ids]
        row += [_num(latest[(cid, i)][2]) if (cid, i) in latest else "-" for i in ids]
        rows.append(row)
    widths = [max(len(r[j]) for r in [head, *rows]) for j in range(len(head))]
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    lines.append("ms: the latest commit's median warm time; /calib: that time divided by the "
                 "machine's calibration kernels' time (comparable across machines)")
    return "\n".join(lines)
