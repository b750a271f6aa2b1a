"""How `hhbench history` scales: a synthetic store of commits x machines x cases.

    python scripts/history_scale.py [--commits 1000] [--machines 5] [--cases 200]
                                    [--store PATH] [--site DIR]

Fills a fresh SQLite store (or `--store postgresql://…`, an empty database) with one run
per (commit, machine), each of `--cases` cases timed in 3 processes of 3 samples, with
planted 2x slowdowns in a few series; the rows are inserted in bulk (the schema's own
tables), not through `record`. Then it measures, once each:
  * `record` of one more run (all its cases) into the full store: target <= 1 s;
  * the changes in every series (what `hhbench history regressions` computes): <= 10 s;
  * `publish` of the dashboard: <= 60 s;
and states the store's size on disk (SQLite) and the number of changes found.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--commits", type=int, default=1000)
    p.add_argument("--machines", type=int, default=5)
    p.add_argument("--cases", type=int, default=200)
    p.add_argument("--store", help="default: a SQLite file in a temporary folder")
    p.add_argument("--site", help="dashboard folder (default: a temporary one)")
    args = p.parse_args(argv)

    import sqlalchemy as sa

    from history_support import case, run
    from hhbench.history import store as S
    from hhbench.history.publish import publish
    from hhbench.history.series import all_changes

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="hhbench-scale-") as tmp:
        url = args.store or str(Path(tmp) / "history.db")
        st = S.Store.open(url)
        t0 = time.perf_counter()
        with st.engine.begin() as conn:
            # the rows `record` would make for these machines and cases, so that the run
            # recorded below joins their series
            conn.execute(S.machine_t.insert(), [
                {"id": m + 1, **S.machine_record(run("0" * 40, [], cpu=f"CPU {m}").environment)}
                for m in range(args.machines)])
            conn.execute(S.commit_t.insert(), [
                {"id": c + 1, "sha": f"{c:08x}" + "ab" * 16,
                 "date_utc": f"2026-01-01T00:00:00+00:00", "branch": "main",
                 "parents": json.dumps([f"{c - 1:08x}" + "ab" * 16] if c else [])}
                for c in range(args.commits)])
            conn.execute(S.case_t.insert(), [
                {"id": k + 1, **S.case_record(case(f"backend{k % 10}", [1.0], batch=1 + k // 10),
                                              {})}
                for k in range(args.cases)])
        base = np.exp(rng.uniform(np.log(1e-5), np.log(1e-1), args.cases))
        slow = {(int(rng.integers(args.machines)), int(rng.integers(args.cases))):
                int(rng.integers(10, args.commits - 10)) for _ in range(10)}
        run_id = 0
        for c in range(args.commits):
            runs, results = [], []
            for m in range(args.machines):
                run_id += 1
                runs.append({"id": run_id, "run_key": f"{run_id:064x}", "machine_id": m + 1,
                             "commit_id": c + 1, "dirty": False, "time_utc": None,
                             "sources_sha256": None, "settings": "{}", "environment": "{}",
                             "calibration": "{}", "calibration_s": 1e-3, "excluded": False,
                             "excluded_reason": None, "origin": "synthetic",
                             "recorded_utc": "2026-12-07T00:00:00+00:00"})
                level = base * (1 + rng.normal(0, 0.02, args.cases))
                for (sm, sk), at in slow.items():
                    if sm == m and c >= at:
                        level[sk] *= 2
                meds = level[:, None] * np.exp(rng.normal(0, 0.005, (args.cases, 3)))
                for k in range(args.cases):
                    pm = [float(x) for x in meds[k]]
                    results.append({
                        "run_id": run_id, "case_id": k + 1, "status": "ok",
                        "median_s": float(np.median(pm)), "process_medians_s": json.dumps(pm),
                        **S.log_moments(pm),
                        "processes": json.dumps([{"prepare_s": 0.1, "cold_s": x * 3,
                                                  "samples_s": [x, x * 1.01, x * 0.99]}
                                                 for x in pm]),
                        "rmse_mv": 1.0, "gamma": 0.9, "spike_count_error": 0.0,
                        "accuracy": "{}"})
            with st.engine.begin() as conn:
                conn.execute(S.run_t.insert(), runs)
                conn.execute(S.result_t.insert(), results)
        if st.engine.dialect.name == "postgresql":  # ids were given: move the sequences on
            with st.engine.begin() as conn:
                for t in (S.machine_t, S.commit_t, S.case_t, S.run_t):
                    conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{t.name}', "
                                         f"'id'), (SELECT max(id) FROM {t.name}))"))
        print(f"filled {args.commits} commits x {args.machines} machines x {args.cases} "
              f"cases ({run_id * args.cases} results) in {time.perf_counter() - t0:.0f} s")

        one = run(f"{args.commits:08x}" + "cd" * 16,
                  [case(f"backend{k % 10}", list(np.exp(rng.normal(-7, 0.01, 3))),
                        batch=1 + k // 10) for k in range(args.cases)], cpu="CPU 0")
        t0 = time.perf_counter()
        st.record(one, repos=[])
        t_add = time.perf_counter() - t0
        print(f"record one run of {args.cases} cases: {t_add:.2f} s (target <= 1 s)")

        t0 = time.perf_counter()
        changes, order, series = all_changes(st)
        t_reg = time.perf_counter() - t0
        print(f"changes in all {len(series)} series: {t_reg:.1f} s (target <= 10 s); "
              f"{len(changes)} changes, {len(slow)} planted")

        site = Path(args.site or Path(tmp) / "site")
        t0 = time.perf_counter()
        pages = publish(st, site)
        t_pub = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in site.glob("*"))
        print(f"publish {pages} pages ({size / 2 ** 20:.0f} MiB): {t_pub:.1f} s "
              "(target <= 60 s)")
        st.close()
        if "://" not in url:
            size = sum(f.stat().st_size for f in Path(url).parent.glob(Path(url).name + "*"))
            print(f"store size: {size / 2 ** 20:.0f} MiB (SQLite, with its WAL)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
