"""`hhbench history …`: recording files, the CI gate, bad input, exports read back by their
formats' rules, asv's results, and the syntax of the examples for many machines."""

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sqlalchemy", reason="needs the history extra: pip install 'hhbench[history]'")

from history_support import case, day, new_database, postgres_server, run, sha  # noqa: E402,F401
from hhbench.cli import main  # noqa: E402
from hhbench.history.export import CSV_COLUMNS  # noqa: E402
from hhbench.history.store import Store  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _files(tmp_path, n=12, slow_from=7, machines=("CPU A", "CPU B")):
    """Results files of a 12-commit history on two machines, numba 2x slower from commit
    `slow_from`, jax's RMSE up from commit 4."""
    rng = np.random.default_rng(5)
    paths = []
    for i in range(n):
        for m in machines:
            f = 2.0 if i >= slow_from else 1.0
            numba = 1e-3 * f * (1 + 0.01 * rng.normal()) * np.exp(rng.normal(0, 0.003, 3))
            jax = 3e-3 * (1 + 0.01 * rng.normal()) * np.exp(rng.normal(0, 0.003, 3))
            r = run(sha(i), [case("numba", list(numba)),
                             case("jax", list(jax), rmse=2.0 if i >= 4 else 1.0)],
                    cpu=m, time_utc=day(i))
            path = tmp_path / f"run-{i:02d}-{m[-1]}.json"
            r.save(path)
            paths.append(str(path))
    return paths


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """A store holding the 12-commit history, in SQLite and in a real PostgreSQL."""
    if request.param == "sqlite":
        db = str(tmp_path / "h.db")
    else:
        db = new_database(request.getfixturevalue("postgres_server"))
    assert main(["history", "add", "--store", db, *_files(tmp_path)]) == 0
    return db


def test_add_records_each_file_once(tmp_path, capsys):
    db = str(tmp_path / "h.db")
    files = _files(tmp_path, n=3)
    assert main(["history", "add", "--store", db, *files]) == 0
    assert main(["history", "add", "--store", db, *files[:2]]) == 0
    out = capsys.readouterr().out
    assert "6 new run(s), 0 already recorded" in out
    assert "0 new run(s), 2 already recorded" in out
    with Store.open(db) as st:
        assert st.counts()["run"] == 6


def test_regressions_is_a_ci_gate_after_since(store, capsys):
    assert main(["history", "regressions", "--store", store]) == 0
    out = capsys.readouterr().out
    numba = [ln for ln in out.splitlines() if ln.startswith("numba")]
    assert len(numba) == 1 and f"{sha(6)[:10]}..{sha(7)[:10]}" in numba[0]
    assert "slower" in numba[0] and "M1, M2" in numba[0]
    # the slowdown lies after commit 5: exit 1; after commit 7 only the RMSE... is before it
    assert main(["history", "regressions", "--store", store, "--since", sha(5)[:6] + ".."]) == 1
    assert "1 regression(s) after" in capsys.readouterr().out
    assert main(["history", "regressions", "--store", store, "--since", sha(7)[:6] + ".."]) == 0
    assert main(["history", "regressions", "--store", store, "--since", sha(2)[:6],
                 "--format", "markdown"]) == 1
    md = capsys.readouterr().out
    rows = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert rows[0] == "| case | metric | commits | change | size | interval | machines |"
    assert {r.split(" | ")[1] for r in rows[1:]} == {"time", "rmse_mv"}
    assert "**2 regression(s) after" in md


def test_mark_and_exclude_from_the_command_line(store, capsys):
    assert main(["history", "mark", sha(7)[:8], "--reason", "exact kernel",
                 "--store", store]) == 0
    assert main(["history", "mark", sha(4)[:8], "--reason", "new reference",
                 "--store", store]) == 0
    assert main(["history", "regressions", "--store", store, "--since", sha(0)[:6]]) == 0
    assert "no open change" in capsys.readouterr().out
    assert main(["history", "exclude", "3", "--reason", "busy", "--store", store]) == 0
    assert main(["history", "show", "--store", store]) == 0
    assert "run 3: M1" in capsys.readouterr().out.split("excluded: busy")[0].splitlines()[-1]


@pytest.mark.parametrize("argv, message", [
    (["show", "nosuch"], "unknown case 'nosuch'"),
    (["mark", "abcdef", "--reason", "x"], "unknown commit 'abcdef'"),
    (["regressions", "--since", "abcdef.."], "unknown commit 'abcdef'"),
    (["exclude", "99", "--reason", "x"], "no run 99"),
    (["mark", "00%", "--reason", "x"], "give at least 4 hex digits"),
    (["exclude", "x1", "--reason", "x"], "RUN must be a run number"),
])
def test_unknown_cases_commits_and_runs_are_one_line_and_exit_2(store, capsys, argv, message):
    assert main(["history", argv[0], "--store", store, *argv[1:]]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_results_file_that_is_not_one_is_refused_before_anything_is_recorded(
        tmp_path, capsys):
    good = _files(tmp_path, n=1, machines=("CPU A",))[0]
    bad = tmp_path / "notes.json"
    bad.write_text('{"hello": 1}')
    db = tmp_path / "h.db"
    assert main(["history", "add", "--store", str(db), good, str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "not an hhbench results file" in err and err.count("\n") == 1
    assert not db.exists()


def test_an_unreachable_database_and_a_foreign_store_are_one_line(tmp_path, capsys):
    assert main(["history", "show", "--store", "postgresql://u@127.0.0.1:1/none"]) == 2
    err = capsys.readouterr().err
    assert "cannot open the history store postgresql+psycopg://u@127.0.0.1:1/none" in err
    assert err.count("\n") == 1
    import sqlite3
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (x)")
    assert main(["history", "show", "--store", str(other)]) == 2
    assert "not an hhbench history store" in capsys.readouterr().err
    assert main(["history", "show", "--store", str(tmp_path / "none.db")]) == 2
    assert "no such history store" in capsys.readouterr().err


def test_machines_shows_raw_and_calibrated_times(tmp_path, capsys):
    db = str(tmp_path / "h.db")
    with Store.open(db) as st:
        st.record(run(sha(1), [case("numba", [2e-3] * 3)], cpu="fast",
                      calibration={"k_s": 0.001}))
        st.record(run(sha(1), [case("numba", [6e-3] * 3)], cpu="slow",
                      calibration={"k_s": 0.003}))
    assert main(["history", "machines", "--store", db]) == 0
    row = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("numba")][0]
    # 2 ms and 6 ms raw; both 2 calibration-kernel times
    assert row.split()[4:] == ["2", "6", "2", "2"]


# -- exports, read back by their formats' rules ---------------------------------------------

def test_csv_export_reads_back_with_every_process(store, tmp_path):
    out = tmp_path / "h.csv"
    assert main(["history", "export", "--format", "csv", "-o", str(out), "--store", store]) == 0
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 12 * 2 * 2
    with Store.open(store) as st:
        stored = {(p["run_id"], p["case_id"]): p for p in st.points()}
        cases = {c["id"]: c["backend"] for c in st.cases()}
    for r in rows:
        p = next(v for (rid, cid), v in stored.items()
                 if rid == int(r["run"]) and cases[cid] == r["backend"])
        meds = [float(x) / 1e3 for x in r["process_medians_ms"].split()]
        assert meds == pytest.approx(p["process_medians_s"], rel=1e-12)
        assert float(r["median_ms"]) == pytest.approx(np.median(meds) * 1e3)
        assert r["commit"] == p["sha"]


def test_bencher_export_is_bencher_metric_format(store, tmp_path):
    out = tmp_path / "bmf"
    assert main(["history", "export", "--format", "bencher", "-o", str(out),
                 "--store", store]) == 0
    files = sorted(out.rglob("*.json"))
    assert len(files) == 24 and {f.parent.name for f in files} == {"M1", "M2"}
    slow = []
    for f in files:
        bmf = json.loads(f.read_text())
        assert isinstance(bmf, dict) and bmf
        for name, measures in bmf.items():
            assert isinstance(name, str) and isinstance(measures, dict)
            for slug, m in measures.items():
                assert re.fullmatch(r"[a-z0-9-]+", slug)  # measures are slugs
                assert set(m) <= {"value", "lower_value", "upper_value"}
                assert all(isinstance(v, float) and math.isfinite(v) for v in m.values())
                if "lower_value" in m:
                    assert m["lower_value"] <= m["value"] <= m["upper_value"]
        slow.append(bmf["numba step x1 cpu"]["latency"]["value"])
    # latency in ns: numba ~1 ms, then ~2 ms from commit 7 (files in commit order per machine)
    m1 = [json.loads(f.read_text())["numba step x1 cpu"]["latency"]["value"]
          for f in sorted((out / "M1").glob("*.json"))]
    assert all(0.9e6 < v < 1.1e6 for v in m1[:7]) and all(1.9e6 < v < 2.1e6 for v in m1[7:])


def test_github_action_benchmark_export_is_its_data_js(store, tmp_path):
    out = tmp_path / "data.js"
    assert main(["history", "export", "--format", "github-action-benchmark", "-o", str(out),
                 "--store", store]) == 0
    text = out.read_text()
    prefix = "window.BENCHMARK_DATA = "
    assert text.startswith(prefix)
    data = json.loads(text[len(prefix):])
    assert set(data) == {"lastUpdate", "repoUrl", "entries"}
    assert len(data["entries"]) == 2
    for suite, entries in data["entries"].items():
        assert len(entries) == 12
        dates = [e["date"] for e in entries]
        assert dates == sorted(dates) and all(isinstance(d, int) for d in dates)
        assert [e["commit"]["id"] for e in entries] == [sha(i) for i in range(12)]
        for e in entries:
            assert e["tool"] == "customSmallerIsBetter"
            for b in e["benches"]:
                assert isinstance(b["name"], str) and isinstance(b["unit"], str)
                assert isinstance(b["value"], float)
        numba = [next(b["value"] for b in e["benches"] if b["name"] == "numba step x1 cpu")
                 for e in entries]
        assert numba[6] == pytest.approx(1.0, rel=0.05) and numba[7] == pytest.approx(2.0,
                                                                                      rel=0.05)


# -- asv --------------------------------------------------------------------------------------

def _asv_results(folder: Path, commit: str, date_ms: int, times: list[float]):
    """An asv results folder as asv 0.6 writes it (format version 2)."""
    m = folder / "ci-runner"
    m.mkdir(parents=True, exist_ok=True)
    (m / "machine.json").write_text(json.dumps(
        {"arch": "x86_64", "cpu": "Test CPU", "machine": "ci-runner", "num_cpu": "4",
         "os": "Linux", "ram": str(16 * 2 ** 20), "version": 1}))
    columns = ["result", "params", "version", "started_at", "duration", "stats_ci_99_a",
               "stats_ci_99_b", "stats_q_25", "stats_q_75", "stats_number", "stats_repeat",
               "samples", "profile"]
    results = {
        "bench_simulate.Simulate.time_simulate": [
            times, [["'numba'", "'odeint'"], ["'step'"], ["1", "16"]], "abc", date_ms, 1.0,
            times, times, times, times, [1] * 4, [3] * 4,
            [[t, t * 1.01, t * 0.99] for t in times]],
        "bench_simulate.Accuracy.track_rmse": [
            [0.5, 0.25], [["'numba'", "'odeint'"], ["'step'"]], "def", date_ms, 1.0],
        "bench_kernels.Kernels.time_other": [[1.0], [], "x", date_ms, 1.0],
    }
    (m / f"{commit[:8]}-existing-py.json").write_text(json.dumps(
        {"commit_hash": commit, "env_name": "existing-py", "date": date_ms,
         "params": {"cpu": "Test CPU"}, "python": "3.11", "requirements": {},
         "result_columns": columns, "results": results, "durations": {}, "version": 2}))


def test_import_asv_records_the_suites_cases(tmp_path, capsys):
    folder = tmp_path / "results"
    for i in range(2):
        _asv_results(folder, sha(i), 1767268800000 + i * 86400000,
                     [1e-3 * (i + 1), 2e-3, 3e-3, 4e-3])
    db = str(tmp_path / "h.db")
    assert main(["history", "import-asv", str(folder), "--store", db]) == 0
    assert main(["history", "import-asv", str(folder), "--store", db]) == 0
    assert "2 asv result file(s): 0 new run(s)" in capsys.readouterr().out
    with Store.open(db) as st:
        cases = {c["id"]: (c["backend"], c["stimulus"], c["batch"]) for c in st.cases()}
        pts = st.points()
        assert st.counts()["run"] == 2
    got = {(cases[p["case_id"]], p["sha"]): p for p in pts}
    assert set(cases.values()) == {("numba", "step", 1), ("numba", "step", 16),
                                   ("odeint", "step", 1), ("odeint", "step", 16)}
    # product order: numba/step/1, numba/step/16, odeint/step/1, odeint/step/16
    assert got[(("numba", "step", 1), sha(1))]["median_s"] == pytest.approx(2e-3)
    assert got[(("odeint", "step", 16), sha(0))]["median_s"] == pytest.approx(4e-3)
    assert got[(("odeint", "step", 1), sha(0))]["rmse_mv"] == 0.25


def test_import_asv_of_a_folder_that_is_not_one(tmp_path, capsys):
    assert main(["history", "import-asv", str(tmp_path), "--store",
                 str(tmp_path / "h.db")]) == 2
    assert "not an asv results folder" in capsys.readouterr().err


def test_run_with_an_unreachable_store_stops_before_any_work(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["run", "--quick", "--backends", "numpy", "--stimuli", "step", "--no-progress",
                 "-o", str(out), "--store", "postgresql://nobody@127.0.0.1:1/none"]) == 2
    captured = capsys.readouterr()
    assert "cannot open the history store" in captured.err and captured.err.count("\n") == 1
    assert captured.out == "" and not out.exists()


def test_every_history_option_has_a_help_text():
    from hhbench.cli import build_parser
    top = next(a for a in build_parser()._actions if isinstance(a.choices, dict))
    history = top.choices["history"]
    sub = next(a for a in history._actions if isinstance(a.choices, dict))
    for name, parser in sub.choices.items():
        for action in parser._actions:
            if action.dest != "help":
                assert action.help, f"history {name} {action.option_strings or action.dest}"


def test_show_plots_a_case(store, tmp_path, capsys):
    out = tmp_path / "numba.svg"
    assert main(["history", "show", "numba", "--plot", str(out), "--store", store]) == 0
    text = capsys.readouterr().out
    assert "case 1: numba step x1 cpu" in text or "numba step x1 cpu" in text.splitlines()[0]
    assert text.count("machine M") == 2
    svg = out.read_text()
    assert svg.startswith("<?xml") and "<svg" in svg
