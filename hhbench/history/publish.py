"""A static dashboard of the history that opens from disk: no server, no network, no CDN.

`publish(store, SITE)` writes:
  * `index.html`: every case, with its machines, points and open changes;
  * `case-<id>.html`: the case's series per machine, speed (median over processes, ms)
    beside accuracy (RMSE, Γ, spike-count error), as inline SVG: one line per machine, a
    dot per commit for the time (hover for its commit, the 99 % interval of its per-process
    medians and the processes; a click shows them under the plot) and, for the exact
    accuracy, a dot where the value changes, changes as dashed lines (red: slower
    or less accurate, green: faster or more accurate) and marks as blue lines;
  * `regressions.html`: the open changes (as `hhbench history regressions`);
  * `machines.html`: each machine's description and latest results, raw and per
    calibration kernel.
The one script (inline, a few lines) only shows a clicked point's details.
`series_figure` draws a case's series with matplotlib for `hhbench history show --plot`.
"""

from __future__ import annotations

import html
import math
from functools import lru_cache
from pathlib import Path

from hhbench.atomic import atomic_write
from hhbench.history.changes import Detection
from hhbench.history.report import change_rows, latest_by_machine, machine_labels
from hhbench.history.series import all_changes, case_label

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#d62728")
METRICS = (("time", "warm time, ms"), ("rmse_mv", "RMSE, mV"), ("gamma", "Γ"),
           ("spike_count_error", "spike-count error"))
W, H, PAD_L, PAD_R, PAD_T, PAD_B = 560, 240, 64, 12, 14, 34

STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
nav a{margin-right:1em}table{border-collapse:collapse}td,th{border:1px solid #ccc;
padding:2px 6px;font-size:13px;text-align:left}.plots{display:flex;flex-wrap:wrap;gap:12px}
.plot{border:1px solid #ddd}.legend span{margin-right:1em}.bad{color:#c00}.good{color:#080}
#detail{font-family:monospace;white-space:pre;min-height:1.5em;background:#f6f6f6;padding:4px}
svg text{font-size:11px;fill:#444}"""

SCRIPT = """document.addEventListener('click',function(e){var t=e.target;
if(t&&t.tagName==='circle'&&t.firstChild){
document.getElementById('detail').textContent=t.firstChild.textContent;}});"""


@lru_cache(maxsize=None)
def _t99(df: int) -> float:
    from scipy import stats as sps
    return float(sps.t.ppf(0.995, df))


def point_interval(n: int, log_mean: float, log_sd: float) -> tuple[float, float, float]:
    """(geometric mean, 99 % interval low, high) of a point's per-process medians from the
    moments of their logs; Student's t (NaN below 2 processes)."""
    if n < 2:
        return math.exp(log_mean), float("nan"), float("nan")
    half = _t99(int(n) - 1) * log_sd / math.sqrt(n)
    return math.exp(log_mean), math.exp(log_mean - half), math.exp(log_mean + half)


def _page(title: str, body: str, *, script: bool = False) -> str:
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
            "<nav><a href=\"index.html\">cases</a><a href=\"regressions.html\">regressions</a>"
            f"<a href=\"machines.html\">machines</a></nav><h1>{html.escape(title)}</h1>{body}"
            + (f"<script>{SCRIPT}</script>" if script else "") + "</body></html>")


def _svg(title: str, lines: list[dict], n_commits: int, vlines: list[dict], log: bool,
         dots: bool = True) -> str:
    """An SVG plot: `lines` = [{colour, points: [(x, y, tooltip)]}], x = commit index; a dot
    per point (`dots`), else only where the value changes and at the ends."""
    ys = [y for ln in lines for _, y, _ in ln["points"]]
    if not ys:
        return ""
    tr = (lambda v: math.log10(v)) if log and min(ys) > 0 else (lambda v: v)
    lo, hi = tr(min(ys)), tr(max(ys))
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5 * (abs(lo) or 1) * 0.1, hi + 0.5 * (abs(hi) or 1) * 0.1
    span_x = max(n_commits - 1, 1)

    def px(i):
        return PAD_L + (W - PAD_L - PAD_R) * i / span_x

    def py(v):
        return PAD_T + (H - PAD_T - PAD_B) * (1 - (tr(v) - lo) / (hi - lo))

    out = [f"<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" "
           f"height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\"><title>{html.escape(title)}"
           "</title>",
           f"<line x1=\"{PAD_L}\" y1=\"{H - PAD_B}\" x2=\"{W - PAD_R}\" y2=\"{H - PAD_B}\" "
           "stroke=\"#999\"/>",
           f"<line x1=\"{PAD_L}\" y1=\"{PAD_T}\" x2=\"{PAD_L}\" y2=\"{H - PAD_B}\" "
           "stroke=\"#999\"/>"]
    for frac in (0, 0.5, 1):
        v = lo + (hi - lo) * frac
        val = 10 ** v if tr is not None and log and min(ys) > 0 else v
        y = PAD_T + (H - PAD_T - PAD_B) * (1 - frac)
        out.append(f"<text x=\"{PAD_L - 4}\" y=\"{y + 4:.1f}\" text-anchor=\"end\">"
                   f"{val:.4g}</text>")
    out.append(f"<text x=\"{(W + PAD_L) / 2:.0f}\" y=\"{H - 8}\" text-anchor=\"middle\">"
               f"{html.escape(title)} over {n_commits} commits</text>")
    for v in vlines:
        x = px(v["x"])
        dash = " stroke-dasharray=\"5,3\"" if v["kind"] != "mark" else ""
        out.append(f"<line class=\"{v['kind']}\" x1=\"{x:.1f}\" y1=\"{PAD_T}\" x2=\"{x:.1f}\" "
                   f"y2=\"{H - PAD_B}\" stroke=\"{v['colour']}\" stroke-width=\"1.5\"{dash}>"
                   f"<title>{html.escape(v['text'])}</title></line>")
    for ln in lines:
        pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y, _ in ln["points"])
        out.append(f"<polyline fill=\"none\" stroke=\"{ln['colour']}\" stroke-width=\"1\" "
                   f"points=\"{pts}\"/>")
        out.append(f"<g fill=\"{ln['colour']}\">")
        prev = None
        for j, (x, y, tip) in enumerate(ln["points"]):
            # an accuracy series is exact: a dot where its value changes (and at its ends),
            # the line carries the rest
            if dots or y != prev or j == len(ln["points"]) - 1:
                out.append(f"<circle class=\"pt\" cx=\"{px(x):.1f}\" cy=\"{py(y):.1f}\" "
                           f"r=\"2.5\"><title>{html.escape(tip)}</title></circle>")
            prev = y
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def _case_page(case: dict, series: list, changes: list, machines: dict, marks: dict,
               rank: dict) -> str:
    commits = sorted({sha for s in series for sha in s.commits}, key=lambda c: rank[c])
    pos = {sha: i for i, sha in enumerate(commits)}
    colour = {s.machine_id: COLOURS[i % len(COLOURS)] for i, s in enumerate(series)}
    legend = "".join(f"<span style=\"color:{colour[s.machine_id]}\">&#9679; "
                     f"{machines[s.machine_id]['label']}: "
                     f"{html.escape(machines[s.machine_id]['description'])}</span>"
                     for s in series)
    plots = []
    for metric, title in METRICS:
        lines = []
        for s in series:
            pts = []
            for i, sha in enumerate(s.commits):
                if metric == "time":
                    if not s.n[i]:
                        continue
                    g, lo, hi = point_interval(s.n[i], s.log_mean[i], s.log_sd[i])
                    tip = (f"{machines[s.machine_id]['label']} {sha[:10]}: {g * 1e3:.4g} ms, "
                           f"99% interval {lo * 1e3:.4g}-{hi * 1e3:.4g} ms, "
                           f"{s.n[i]} processes, runs {','.join(map(str, s.runs[i]))}")
                    pts.append((pos[sha], g * 1e3, tip))
                else:
                    v = s.accuracy[metric][i]
                    if v is None:
                        continue
                    pts.append((pos[sha], v, f"{machines[s.machine_id]['label']} {sha[:10]}: "
                                             f"{metric} {v:.6g}"))
            if pts:
                lines.append({"colour": colour[s.machine_id], "points": pts})
        vlines = [{"x": pos[c.after] - 0.5, "kind": "regression" if c.regression else "improvement",
                   "colour": "#d00" if c.regression else "#080",
                   "text": f"{machines[c.machine_id]['label']} {c.before[:10]}..{c.after[:10]}: "
                           + (f"x{c.ratio:.3f} (99% {c.ci_low:.3f}-{c.ci_high:.3f})"
                              if c.metric == "time" else f"{c.old:.6g} -> {c.new:.6g}")}
                  for c in changes if c.metric == metric and c.after in pos]
        vlines += [{"x": pos[sha], "kind": "mark", "colour": "#06c",
                    "text": f"mark {sha[:10]}: {reason}"}
                   for sha, reason in marks.items() if sha in pos]
        svg = _svg(title, lines, len(commits), vlines, log=metric == "time",
                   dots=metric == "time")
        if svg:
            plots.append(svg)
    rows = "".join(f"<tr><td>{c.metric}</td><td>{machines[c.machine_id]['label']}</td>"
                   f"<td>{c.before[:10]}..{c.after[:10]}</td><td class=\""
                   f"{'bad' if c.regression else 'good'}\">"
                   + (f"x{c.ratio:.3f} ({c.ci_low:.3f}-{c.ci_high:.3f})" if c.metric == "time"
                      else f"{c.old:.6g} &rarr; {c.new:.6g}") + "</td></tr>"
                   for c in changes)
    table = (f"<h2>changes</h2><table><tr><th>metric</th><th>machine</th><th>commits</th>"
             f"<th>size</th></tr>{rows}</table>" if rows else "<p>no open change</p>")
    body = (f"<p class=\"legend\">{legend}</p><div class=\"plots\">{''.join(plots)}</div>"
            "<p>point (click one):</p><div id=\"detail\"></div>" + table)
    return _page(case_label(case), body, script=True)


def publish(store, site: Path, settings: Detection = Detection()) -> int:
    """Write the dashboard into folder `site` (made if needed); the number of pages."""
    changes, order, series = all_changes(store, settings)
    rank = {sha: i for i, sha in enumerate(order)}
    cases = {c["id"]: c for c in store.cases()}
    machines = machine_labels(store.machines())
    marks = {m["sha"]: m["reason"] for m in store.marks()}
    site = Path(site)
    site.mkdir(parents=True, exist_ok=True)
    by_case: dict = {}
    for s in series:
        by_case.setdefault(s.case_id, []).append(s)
    ch_case: dict = {}
    for c in changes:
        ch_case.setdefault(c.case_id, []).append(c)
    index_rows = []
    for cid in sorted(by_case, key=lambda c: case_label(cases[c])):
        ss, cs = by_case[cid], ch_case.get(cid, [])
        atomic_write(site / f"case-{cid}.html",
                     _case_page(cases[cid], ss, cs, machines, marks, rank))
        n_reg = sum(c.regression for c in cs)
        index_rows.append(f"<tr><td><a href=\"case-{cid}.html\">"
                          f"{html.escape(case_label(cases[cid]))}</a></td>"
                          f"<td>{', '.join(machines[s.machine_id]['label'] for s in ss)}</td>"
                          f"<td>{max(len(s.commits) for s in ss)}</td>"
                          f"<td class=\"{'bad' if n_reg else ''}\">{n_reg}</td>"
                          f"<td>{len(cs) - n_reg}</td></tr>")
    atomic_write(site / "index.html", _page(
        "hhbench history", f"<p>{len(order)} commits, {len(machines)} machines, "
        f"{len(cases)} cases</p><table><tr><th>case</th><th>machines</th><th>commits</th>"
        f"<th>regressions</th><th>other changes</th></tr>{''.join(index_rows)}</table>"))
    rows = change_rows(changes, cases, machines)
    case_id = {case_label(c): i for i, c in cases.items()}
    reg = "".join(
        f"<tr><td><a href=\"case-{case_id[r['case']]}.html\">{html.escape(r['case'])}</a></td>"
        f"<td>{r['metric']}</td><td>{r['commits']}</td><td class=\""
        f"{'bad' if r['regression'] else 'good'}\">{r['change']}</td>"
        f"<td>{html.escape(r['size'])}</td><td>{html.escape(r['interval'])}</td>"
        f"<td>{html.escape(r['machines'])}</td></tr>" for r in rows)
    atomic_write(site / "regressions.html", _page(
        "open changes", "<table><tr><th>case</th><th>metric</th><th>commits</th><th>change"
        "</th><th>size</th><th>interval</th><th>machines</th></tr>" + reg + "</table>"
        if rows else "<p>no open change</p>"))
    latest = latest_by_machine(series)
    ids = sorted(machines)
    desc = "".join(f"<tr><td>{machines[i]['label']}</td><td>"
                   f"{html.escape(machines[i]['description'])}</td><td>"
                   f"{html.escape(str(machines[i]['hostname']))}</td></tr>" for i in ids)
    head = "".join(f"<th>{machines[i]['label']} ms</th>" for i in ids) + \
        "".join(f"<th>{machines[i]['label']} /calib</th>" for i in ids)
    body = []
    for cid in sorted({k[0] for k in latest}, key=lambda c: case_label(cases[c])):
        cells = "".join(f"<td>{latest[(cid, i)][1] * 1e3:.4g}</td>" if (cid, i) in latest
                        else "<td>-</td>" for i in ids)
        cells += "".join(f"<td>{latest[(cid, i)][2]:.4g}</td>"
                         if (cid, i) in latest and latest[(cid, i)][2] is not None
                         else "<td>-</td>" for i in ids)
        body.append(f"<tr><td>{html.escape(case_label(cases[cid]))}</td>{cells}</tr>")
    atomic_write(site / "machines.html", _page(
        "machines", f"<table><tr><th>machine</th><th>description</th><th>host</th></tr>{desc}"
        f"</table><h2>latest results</h2><p>ms: the median warm time at each machine's "
        f"latest commit; /calib: that time over the machine's calibration kernels' time.</p>"
        f"<table><tr><th>case</th>{head}</tr>{''.join(body)}</table>"))
    return len(by_case) + 3


def series_figure(series, changes, machines: dict, marks: dict, title: str,
                  path: Path) -> None:
    """A case's speed series per machine (and its changes and marks) as SVG or PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hhbench.atomic import atomic_writer
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for k, s in enumerate(series):
        xs = s.timed()
        ax.plot(xs, [s.time_s(i) * 1e3 for i in xs], "o-", ms=3,
                color=COLOURS[k % len(COLOURS)], label=machines[s.machine_id]["label"])
        for c in changes:
            if c.machine_id == s.machine_id and c.metric == "time":
                ax.axvline(s.commits.index(c.after) - 0.5, ls="--",
                           color="#d00" if c.regression else "#080")
        for sha in marks:
            if sha in s.commits:
                ax.axvline(s.commits.index(sha), color="#06c")
    ax.set_xlabel("commit (in order)")
    ax.set_ylabel("warm time, ms (geometric mean over processes)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fmt = "png" if str(path).endswith(".png") else "svg"
    with atomic_writer(path, "wb") as fh:
        fig.savefig(fh, format=fmt)
    plt.close(fig)
