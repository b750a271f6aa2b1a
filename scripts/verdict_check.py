"""Do `hhbench compare`'s verdicts hold? A/A and A/B runs with a backend of known cost.

    python scripts/verdict_check.py [--rounds 5] [--processes 3] [--slowdown 1.25] [--keep DIR]
    python scripts/verdict_check.py --repeats 20 --processes 5    # the rates at scale

The suite: the synthetic backend (scripts/synthetic_backend.py: a known number of µs per
call) and the real `exp-euler` backend, on the step stimulus at batch 1 and 16, each case
in `--processes` fresh processes (`hhbench run`, exactly as a user runs it).
  (a) A/A: `--rounds` + 1 runs with identical settings; each run is compared with the one
      before: `hhbench compare` must exit 0 every time (no false alarm);
  (b) A/B: `--rounds` runs with the synthetic backend `--slowdown` times slower, each
      compared with an A run: `hhbench compare` must exit 1 and flag as slower exactly the
      synthetic backend's cases, every time (with `--inconclusive-ok`, for noisy CI
      machines, "inconclusive" on its cases is accepted; a wrong verdict never is).
It prints the observed false-alarm rate (per comparison and per case) and detection rate,
and exits 1 if any comparison went wrong. CI runs it in its benchmark step; about two
minutes on 2 quiet cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BASE_US = 2000.0


def hhbench(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-m", "hhbench.cli", *args], env=env,
                          capture_output=True, text=True)


def run(folder: Path, name: str, config: Path, cost_us: float) -> Path:
    out = folder / f"{name}.json"
    done = hhbench("run", "--config", str(config), "--no-progress", "-o", str(out),
                   env_extra={"HHBENCH_SYNTHETIC_US": str(cost_us)})
    if done.returncode != 0:
        sys.exit(f"hhbench run {name} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return out


def flagged(old: Path, new: Path) -> tuple[int, dict]:
    """(exit status of `hhbench compare`, {case: speed verdict})."""
    from hhbench.compare import compare
    from hhbench.results import RunResults
    code = hhbench("compare", str(old), str(new)).returncode
    rows = compare(RunResults.load(old), RunResults.load(new)).rows
    return code, {(r["backend"], r["stimulus"], r["batch"]): r["speed"] for r in rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", "--repeats", type=int, default=5,
                   help="A/A and A/B comparisons each (default 5; 20 for the rates at scale)")
    p.add_argument("--processes", type=int, default=3)
    p.add_argument("--slowdown", type=float, default=1.25)
    p.add_argument("--keep", help="folder for the results files (default: a temporary one)")
    p.add_argument("--inconclusive-ok", action="store_true",
                   help="on a noisy machine: an A/B comparison that calls the synthetic cases "
                        "inconclusive (not wrong, just unsure) does not fail the check; wrong "
                        "verdicts (false alarms, a 1.25x slowdown called same or faster) still do")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from hhbench.check import machine_warnings
    from hhbench.environment import machine_state
    busy = machine_warnings(machine_state())
    for line in busy:  # a busy machine makes cases inconclusive: detection then fails
        print(f"warning: {line}")

    with tempfile.TemporaryDirectory(prefix="hhbench-verdicts-") as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "suite.json"
        config.write_text(json.dumps({
            "backends": ["synthetic", "exp-euler"], "stimuli": ["step"], "batches": [1, 16],
            "reference": "lab", "processes": args.processes,
            "extra_backend_modules": [str(HERE / "synthetic_backend.py")],
            "timing": {"warmup_calls": 1, "min_repeats": 5, "min_time_s": 0.05}}))
        a_runs = [run(folder, f"A{i}", config, BASE_US) for i in range(args.rounds + 1)]
        b_runs = [run(folder, f"B{i}", config, BASE_US * args.slowdown)
                  for i in range(args.rounds)]

        failures, aa_alarms, aa_case_alarms, aa_cases, aa_unsure = [], 0, 0, 0, 0
        for i in range(args.rounds):
            code, speeds = flagged(a_runs[i], a_runs[i + 1])
            slow = [k for k, v in speeds.items() if v == "slower"]
            aa_alarms += code != 0
            aa_case_alarms += len(slow)
            aa_cases += len(speeds)
            aa_unsure += sum(v == "inconclusive" for v in speeds.values())
            print(f"A/A {i + 1}: compare exit {code}; " + ", ".join(
                f"{b} x{n}: {v}" for (b, _, n), v in speeds.items()))
            if code != 0:
                failures.append(f"A/A {i + 1}: false alarm on {slow}")
        b_hits, b_case_hits, b_cases, b_extra = 0, 0, 0, 0
        for i in range(args.rounds):
            code, speeds = flagged(a_runs[i], b_runs[i])
            synthetic = {k for k in speeds if k[0] == "synthetic"}
            slow = {k for k, v in speeds.items() if v == "slower"}
            exact = code == 1 and slow == synthetic
            b_hits += exact
            b_case_hits += len(slow & synthetic)
            b_cases += len(synthetic)
            b_extra += len(slow - synthetic)
            print(f"A/B {i + 1}: compare exit {code}; " + ", ".join(
                f"{b} x{n}: {v}" for (b, _, n), v in speeds.items()))
            wrong = {k for k in synthetic if speeds[k] in ("same", "faster")} | (slow - synthetic)
            honest = not wrong and all(speeds[k] in ("slower", "inconclusive") for k in synthetic)
            if not exact and not (args.inconclusive_ok and honest):
                failures.append(f"A/B {i + 1}: exit {code}, flagged {sorted(slow)}"
                                + (f", wrong verdicts on {sorted(wrong)}" if wrong else ""))

    n = args.rounds
    print(f"\nfalse alarms (A/A, same settings): {aa_alarms} of {n} comparisons "
          f"({aa_alarms / n:.0%}); {aa_case_alarms} of {aa_cases} cases "
          f"({aa_case_alarms / aa_cases:.1%}); inconclusive cases {aa_unsure} of {aa_cases}")
    print(f"detection (A/B, synthetic {args.slowdown:g}x slower): {b_hits} of {n} comparisons "
          f"exit 1 flagging exactly its cases ({b_hits / n:.0%}); {b_case_hits} of {b_cases} "
          f"synthetic cases flagged ({b_case_hits / b_cases:.0%}); other cases flagged: {b_extra}")
    for line in failures:
        print(f"FAILED {line}", file=sys.stderr)
    if failures and busy:
        print("(the machine was busy at the start: see the warnings above; inconclusive "
              "cases there are the tool being honest, not a bug)", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
