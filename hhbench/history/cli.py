"""The `hhbench history` commands and `hhbench run --store`: a thin dispatch.

This module imports nothing heavy at import time (the command line builds its parser from
it in every install); the store, and with it SQLAlchemy, is imported when a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hhbench.errors import HHBenchError

STORE_HELP = ("history store: a SQLite file (default .hhbench/history.db here) or "
              "postgresql://user@host/db")

HISTORY_WORDS = """\
A series is one (machine, case, metric): machines by their fingerprint (CPU, cores, memory,
GPUs and drivers), cases by backend, stimulus, batch, device, options, precision, runtime.
Points are commits, in ancestry order (date where ancestry is unknown). A speed change is a
step confirmed by Welch's interval on the per-process medians before against after (at
least 3 commits each side, beyond the case's noise); a single outlying commit is not one.
Accuracy (RMSE, gamma, spike-count error) changes exactly at a commit. A mark (intended
change) restarts the baseline; an excluded run is kept but left out. See docs/history.md.
exit status: 0 done (regressions: none in --since), 1 a regression in --since, 2 bad input."""


def _open(args, *, create: bool = True):
    try:
        from hhbench.history.store import Store
    except ImportError as exc:
        raise HHBenchError(f"the history store needs SQLAlchemy and psycopg ({exc.name} is "
                           "missing): pip install 'hhbench[history]'") from None
    return Store.open(args.store, create=create)


def open_store_for_run(store: str):
    """The store `hhbench run --store` records into, opened (and checked) before the run."""
    return _open(argparse.Namespace(store=store))


def record_run(store, results, origin: str | None) -> str:
    run_id, new = store.record(results, origin=origin)
    return (f"recorded run {run_id} in {store.url.split('://')[0]} store" if new
            else f"run {run_id} was already in the store")


def _load(paths: list[str]):
    from hhbench.results import RunResults
    return [(p, RunResults.load(p)) for p in paths]  # every file read before any is recorded


def cmd_add(args) -> int:
    loaded = _load(args.files)
    repos = [Path(args.repo)] if args.repo else None
    if args.repo and not Path(args.repo).is_dir():
        raise HHBenchError(f"--repo {args.repo}: no such folder")
    new = 0
    with _open(args) as st:
        for path, res in loaded:
            run_id, added = st.record(res, origin=str(path), repos=repos)
            new += added
            print(f"{path}: {'recorded as' if added else 'already in the store as'} run {run_id}")
    print(f"{new} new run(s), {len(loaded) - new} already recorded")
    return 0


def _context(st, *, case_ids=None):
    from hhbench.history.changes import Detection
    from hhbench.history.report import machine_labels
    from hhbench.history.series import all_changes
    changes, order, series = all_changes(st, Detection(), case_ids=case_ids)
    cases = {c["id"]: c for c in st.cases()}
    machines = machine_labels(st.machines())
    return changes, order, series, cases, machines


def _find_case(st, text: str) -> dict:
    from hhbench.history.series import case_label
    cases = st.cases()
    if text.isdigit():
        found = [c for c in cases if c["id"] == int(text)]
    else:
        found = [c for c in cases if case_label(c) == text] or \
                [c for c in cases if text in case_label(c)]
    if len(found) != 1:
        known = "; ".join(f"{c['id']}: {case_label(c)}" for c in cases[:8])
        what = "unknown case" if not found else "ambiguous case"
        raise HHBenchError(f"{what} {text!r} (cases: {known or 'none recorded'})")
    return found[0]


def cmd_show(args) -> int:
    from hhbench.history.report import series_table
    from hhbench.history.series import case_label
    if args.plot:
        from hhbench.atomic import check_output_path
        check_output_path(args.plot)
    with _open(args, create=False) as st:
        if args.case is None:
            counts = st.counts()
            print(f"{counts['run']} runs of {counts['commit']} commits on {counts['machine']} "
                  f"machine(s), {counts['case']} cases, {counts['mark']} marks")
            for c in st.cases():
                print(f"  case {c['id']}: {case_label(c)}")
            for r in st.runs():
                ex = f"  excluded: {r['excluded_reason']}" if r["excluded"] else ""
                print(f"  run {r['id']}: M{r['machine_id']} {r['sha'][:10]} {r['time_utc']}{ex}")
            return 0
        case = _find_case(st, args.case)
        changes, order, series, cases, machines = _context(st, case_ids=[case["id"]])
        marks = {m["sha"]: m["reason"] for m in st.marks()}
    print(f"case {case['id']}: {case_label(case)}")
    print(series_table(series, machines, marks))
    if args.plot:
        from hhbench.history.publish import series_figure
        series_figure(series, changes, machines, marks, case_label(case), Path(args.plot))
        print(f"wrote {args.plot}")
    return 0


def cmd_regressions(args) -> int:
    from hhbench.history.report import change_rows, format_changes
    since = args.since.removesuffix("..") if args.since else None
    with _open(args, create=False) as st:
        since_sha = st.resolve_commit(since) if since else None
        changes, order, series, cases, machines = _context(st)
    rows = change_rows(changes, cases, machines)
    rank = {sha: i for i, sha in enumerate(order)}
    gate = [r for r in rows if since_sha and r["regression"]
            and rank[r["after"]] > rank[since_sha]]
    title = "hhbench history: open changes" + (f" (gate: after {since_sha[:10]})"
                                                if since_sha else "")
    print(format_changes(rows, markdown=args.format == "markdown", title=title))
    if since_sha:
        verdict = (f"{len(gate)} regression(s) after {since_sha[:10]}" if gate
                   else f"no regression after {since_sha[:10]}")
        print(f"\n{'**' + verdict + '**' if args.format == 'markdown' else verdict}")
    return 1 if gate else 0


def cmd_mark(args) -> int:
    with _open(args, create=False) as st:
        sha = st.mark(args.commit, args.reason)
    print(f"marked {sha[:10]}: {args.reason}")
    return 0


def cmd_exclude(args) -> int:
    with _open(args, create=False) as st:
        st.exclude(args.run, args.reason)
    print(f"excluded run {args.run}: {args.reason}")
    return 0


def cmd_machines(args) -> int:
    from hhbench.history.report import machines_table
    with _open(args, create=False) as st:
        _, _, series, cases, machines = _context(st)
    print(machines_table(series, cases, machines))
    return 0


def cmd_export(args) -> int:
    from hhbench.atomic import check_output_folder, check_output_path
    out = Path(args.output)
    if args.format == "bencher":
        check_output_folder(out)
    else:
        check_output_path(out)
    with _open(args, create=False) as st:
        from hhbench.history.export import export
        if args.format == "bencher":
            out.mkdir(exist_ok=True)
        n = export(st, args.format, out)
    print(f"wrote {n} {'rows' if args.format == 'csv' else 'runs'} to {out}")
    return 0


def cmd_import_asv(args) -> int:
    from hhbench.history.asv_import import read_asv_results
    runs = read_asv_results(Path(args.folder))
    new = 0
    with _open(args) as st:
        for path, res in runs:
            new += st.record(res, origin=f"asv:{path}")[1]
    print(f"{len(runs)} asv result file(s): {new} new run(s)")
    return 0


def cmd_publish(args) -> int:
    from hhbench.atomic import check_output_folder
    out = check_output_folder(args.output)
    with _open(args, create=False) as st:
        from hhbench.history.publish import publish
        pages = publish(st, out)
    print(f"wrote {pages} pages to {out} (open {out / 'index.html'})")
    return 0


def _positive_run(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"RUN must be a run number (see `hhbench history "
                                         f"show`), got {text!r}")
    return int(text)


def add_history_parser(sub, parser_class, formatter_class) -> None:
    """Register `hhbench history …` on the main parser's subcommands."""
    h = sub.add_parser("history", help="the history of runs across commits and machines",
                       formatter_class=formatter_class, epilog=HISTORY_WORDS,
                       description="Record runs in a history store (SQLite or PostgreSQL), "
                                   "find the changes in each series, publish a dashboard.")
    hs = h.add_subparsers(dest="history_command", required=True, parser_class=parser_class,
                          metavar="COMMAND", help="what to do with the history")

    def command(name, func, help_):
        s = hs.add_parser(name, help=help_, description=help_, formatter_class=formatter_class)
        s.add_argument("--store", help=STORE_HELP)
        s.set_defaults(func=func)
        return s

    s = command("add", cmd_add, "record results files (of `hhbench run -o`) in the store")
    s.add_argument("files", nargs="+", metavar="FILE", help="results files (JSON)")
    s.add_argument("--repo", help="git repository to read commit dates and parents from "
                                  "(default: the one hhbench ran from, then this folder)")
    s = command("show", cmd_show, "the runs and cases, or a case's series on each machine")
    s.add_argument("case", nargs="?", metavar="CASE",
                   help="case number or label (e.g. 'numba step x1 cpu')")
    s.add_argument("--plot", metavar="FILE.svg", help="also plot the series (SVG or PNG)")
    s = command("regressions", cmd_regressions,
                "each open change: commits, size, interval, machines; exit 1 on a regression "
                "after --since")
    s.add_argument("--since", metavar="REV..", help="exit 1 when a regression lies after REV")
    s.add_argument("--format", choices=("text", "markdown"), default="text",
                   help="markdown: a table for a pull-request comment")
    s = command("mark", cmd_mark, "record an intended change at COMMIT (restarts the baseline)")
    s.add_argument("commit", metavar="COMMIT", help="the commit's SHA (at least 4 digits)")
    s.add_argument("--reason", required=True, help="why the change is intended")
    s = command("exclude", cmd_exclude, "leave run RUN out of the analysis (it is kept)")
    s.add_argument("run", type=_positive_run, metavar="RUN",
                   help="the run's number (`hhbench history show`)")
    s.add_argument("--reason", required=True, help="why it is left out")
    command("machines", cmd_machines,
            "each machine's latest results side by side, raw and per calibration kernel")
    s = command("export", cmd_export, "the history as Bencher (BMF, a folder), "
                                      "github-action-benchmark (data.js) or CSV")
    s.add_argument("--format", required=True,
                   choices=("bencher", "github-action-benchmark", "csv"), help="the format")
    s.add_argument("-o", "--output", required=True, help="file (a folder for bencher)")
    s = command("import-asv", cmd_import_asv, "record hhbench's asv results (asv's results folder)")
    s.add_argument("folder", metavar="DIR", help="asv's results folder")
    s = command("publish", cmd_publish, "write a static dashboard that opens from disk")
    s.add_argument("-o", "--output", required=True, metavar="SITE",
                   help="folder for the pages (made if needed)")
