"""Does `hhbench history` find a slowdown planted in a real history made with `hhbench run`?

    python scripts/history_check.py [--commits 12] [--slow-from 7] [--keep DIR]

A copy of this hhbench in a fresh git repository gets `--commits` commits; after each, one
`hhbench run` of the synthetic backend (scripts/synthetic_backend.py: a known cost per
call) on the step stimulus, in 3 fresh processes, recorded with `--store` into a SQLite
history; from commit `--slow-from` on, the backend costs 2x. Then:
  * `hhbench history add` of the same results files must record nothing new (one run each);
  * `hhbench history regressions --since FIRST..` must exit 1 with one slowdown of the
    synthetic case, between commits slow-from − 1 and slow-from, and no other slowdown
    (a speed-up is reported as a note: another job's load that ends speeds whole runs).
Exit 1 naming what went wrong. About 2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BASE_US = 2000.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--commits", type=int, default=12)
    p.add_argument("--slow-from", type=int, default=7)
    p.add_argument("--keep", help="folder for the repository, results and store")
    args = p.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hhbench-history-") as tmp:
        base = Path(args.keep or tmp)
        repo = base / "repo"
        if repo.exists():
            shutil.rmtree(repo)
        shutil.copytree(ROOT / "hhbench", repo / "hhbench",
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(HERE / "synthetic_backend.py", repo / "synthetic_backend.py")
        (repo / "suite.json").write_text(json.dumps({
            "backends": ["synthetic"], "stimuli": ["step"], "batches": [1],
            "reference": "lab", "processes": 3,
            "extra_backend_modules": [str(repo / "synthetic_backend.py")],
            "timing": {"warmup_calls": 1, "min_repeats": 5, "min_time_s": 0.02}}))
        git = ["git", "-C", str(repo), "-c", "user.name=hhbench", "-c", "user.email=h@b"]
        subprocess.run(git + ["init", "-q", "-b", "main"], check=True)
        subprocess.run(git + ["add", "-A"], check=True)
        store = base / "history.db"
        out = base / "results"
        out.mkdir(exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(repo)}
        shas = []
        for i in range(args.commits):
            (repo / "commit.txt").write_text(f"{i}\n")
            subprocess.run(git + ["add", "-A"], check=True)
            subprocess.run(git + ["commit", "-q", "-m", f"commit {i}"], check=True)
            shas.append(subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True,
                                       text=True, check=True).stdout.strip())
            cost = BASE_US * (2 if i >= args.slow_from else 1)
            done = subprocess.run(
                [sys.executable, "-m", "hhbench.cli", "run", "--config",
                 str(repo / "suite.json"), "--no-progress", "-o", str(out / f"{i:02d}.json"),
                 "--store", str(store)], cwd=repo, capture_output=True, text=True,
                env={**env, "HHBENCH_SYNTHETIC_US": str(cost)})
            if done.returncode != 0 or "recorded run" not in done.stdout:
                sys.exit(f"run {i} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
            print(f"commit {i} ({shas[-1][:10]}): {cost:.0f} µs per call; recorded")

        def hist(*a):
            return subprocess.run([sys.executable, "-m", "hhbench.cli", "history", *a,
                                   "--store", str(store)], capture_output=True, text=True,
                                  env=env, cwd=repo)
        failures = []
        add = hist("add", *sorted(str(p) for p in out.glob("*.json")))
        if f"0 new run(s), {args.commits} already recorded" not in add.stdout:
            failures.append(f"history add recorded again: {add.stdout[-300:]}")
        reg = hist("regressions", "--since", shas[0] + "..")
        print(reg.stdout)
        rows = [ln for ln in reg.stdout.splitlines() if ln.startswith("synthetic")]
        slower = [r for r in rows if " slower " in r]
        want = f"{shas[args.slow_from - 1][:10]}..{shas[args.slow_from][:10]}"
        if reg.returncode != 1:
            failures.append(f"regressions exited {reg.returncode}, not 1")
        if len(slower) != 1 or want not in slower[0]:
            failures.append(f"expected one slowdown {want}, got {slower}")
        for r in rows:
            if r not in slower:  # the machine got quieter: a real change of its speed
                print(f"note: a speed-up too (another job's load ending?): {r.strip()}")
    for f in failures:
        print(f"FAILED: {f}")
    print(f"history check: {'failed' if failures else 'passed'} in "
          f"{time.perf_counter() - start:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
