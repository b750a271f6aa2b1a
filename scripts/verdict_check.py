"""Do `hhbench compare`'s verdicts hold? A/A and A/B runs with a backend of known cost.

    python scripts/verdict_check.py [--rounds 5] [--processes 3] [--slowdown 1.25] [--keep DIR]
    python scripts/verdict_check.py --mode targets --rounds 10 --processes 5   # issue targets

The suite: the synthetic backend (scripts/synthetic_backend.py: a known number of µs per
call) and the real `exp-euler` backend (in the target modes: `numba-planted`, numba with a
slowdown planted by running its kernel twice, in place of `exp-euler`), on the step
stimulus at batch 1 and 16, each case in `--processes` fresh processes (`hhbench run`,
exactly as a user runs it).
Modes (`--mode`):
  classic   (a) A/A: `--rounds` + 1 identical runs, each compared with the one before:
            exit 0 every time; (b) A/B: `--rounds` runs with the synthetic backend
            `--slowdown` times slower: exit 1 flagging exactly its cases (with
            `--inconclusive-ok`, inconclusive synthetic cases are accepted; a wrong verdict
            never is). A real backend's case called slower in an A/A (or beside the
            synthetic cases in an A/B) is tried once more with a fresh pair of identical
            runs: it fails the check if called slower again, and is listed as unconfirmed
            if not (a whole run can land in a slower state of a shared host). The default;
            CI runs it.
  ab-loaded A/B with a planted 2x slowdown (NEW runs numba's kernel twice per call, and
            the synthetic backend burns twice as long), both sides run while `--busy-loops`
            (default 2) busy-loop processes spin: compare must exit 1 or 3, never 0.
  aa-busy   A/A where NEW runs beside the busy loops: compare must exit 0 or 3, never 1.
  aa-quiet  A/A on a quiet machine: compare must exit 0 (target: >= 19 of 20).
  targets   ab-loaded, aa-quiet and aa-busy, `--rounds` each.
Each trial line gives the exit status, the undecided (inconclusive) cases and the load
each side ran under (other work measured during the run: `hhbench.busy`); the summary
gives the rates. Exits 1 if a target was missed.
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


def busy_loops(n: int) -> list[subprocess.Popen]:
    """`n` processes that spin on a core each until stopped (another job's load)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop(loops: list[subprocess.Popen]) -> None:
    for proc in loops:
        proc.terminate()
        proc.wait()


def run(folder: Path, name: str, config: Path, cost_us: float, loops: int = 0,
        planted_calls: int = 1) -> Path:
    out = folder / f"{name}.json"
    spinning = busy_loops(loops)
    try:
        return _run(out, name, config, cost_us, planted_calls)
    finally:
        stop(spinning)


def _run(out: Path, name: str, config: Path, cost_us: float, planted_calls: int = 1) -> Path:
    done = hhbench("run", "--config", str(config), "--no-progress", "-o", str(out),
                   env_extra={"HHBENCH_SYNTHETIC_US": str(cost_us),
                              "HHBENCH_PLANTED_CALLS": str(planted_calls)})
    if done.returncode != 0:
        sys.exit(f"hhbench run {name} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return out


def flagged(old: Path, new: Path) -> tuple[int, dict, bool]:
    """(exit status of `hhbench compare`, {case: speed verdict}, whether it finds a
    regression other than speed: a case missing, or less accurate)."""
    from hhbench.compare import compare
    from hhbench.results import RunResults
    code = hhbench("compare", str(old), str(new)).returncode
    rows = compare(RunResults.load(old), RunResults.load(new)).rows
    others = any(r.get("speed") == "MISSING in NEW"
                 or str(r.get("accuracy", "")).startswith("WORSE") for r in rows)
    return code, {(r["backend"], r["stimulus"], r["batch"]): r["speed"] for r in rows}, others


def load_of(path: Path) -> str:
    from hhbench.busy import load_words
    from hhbench.results import RunResults
    return load_words(RunResults.load(path).environment)


def calibration_ratio(old: Path, new: Path) -> float:
    """NEW/OLD of the two runs' calibration kernel minima (`hhbench.calibration`)."""
    from hhbench.results import RunResults
    return (RunResults.load(new).calibration["min_s"]
            / RunResults.load(old).calibration["min_s"])


def calibration_words(old: Path, new: Path) -> str:
    """'calibration NEW/OLD 1.012 (spreads 0.8 %, 1.1 %)' of two runs."""
    from hhbench.results import RunResults
    a, b = RunResults.load(old).calibration, RunResults.load(new).calibration
    return (f"calibration NEW/OLD {b['min_s'] / a['min_s']:.3f} (spreads "
            f"{a['spread']:.1%}, {b['spread']:.1%})")


def confirmed(folder: Path, config: Path, cases: list, what: str) -> bool:
    """Is a real backend's alarm repeated by a fresh pair of identical runs? A whole run
    of a real backend can land in a slower state of a shared host (a multi-threaded case
    on 2 virtual cores: two speeds, each lasting up to seconds) that nothing in the two
    runs shows; the synthetic backend's alarms are never re-tried."""
    tag = what.replace("/", "").replace(" ", "")
    a = run(folder, f"confirm-{tag}-A", config, BASE_US)
    b = run(folder, f"confirm-{tag}-B", config, BASE_US)
    code, speeds, _ = flagged(a, b)
    again = [k for k in cases if speeds.get(k) == "slower"]
    print(f"  {what}: {cases} slower; a fresh pair of runs: exit {code} "
          f"({calibration_words(a, b)}); " + ", ".join(f"{k[0]} x{k[2]}: {speeds.get(k)}"
                                                        for k in cases))
    return bool(again)


def trials(folder: Path, config: Path, mode: str, rounds: int, loops: int) -> list[dict]:
    """Run `rounds` comparisons of one mode; one dict per trial (exit, verdicts, loads)."""
    planted = 2 if mode == "ab-loaded" else 1  # NEW runs numba's kernel twice per call
    slow = BASE_US * planted
    out = []
    for i in range(rounds):
        a = run(folder, f"{mode}-A{i}", config, BASE_US, loops if mode == "ab-loaded" else 0)
        b = run(folder, f"{mode}-B{i}", config, slow, loops if mode != "aa-quiet" else 0,
                planted_calls=planted)
        code, speeds, _ = flagged(a, b)
        ok = {"ab-loaded": code in (1, 3), "aa-busy": code in (0, 3),
              "aa-quiet": code == 0}[mode]
        trial = {"mode": mode, "exit": code, "ok": ok, "speeds": speeds,
                 "undecided": sum(v == "inconclusive" for v in speeds.values()),
                 "cases": len(speeds), "load_old": load_of(a), "load_new": load_of(b),
                 "calibration_ratio": calibration_ratio(a, b)}
        print(f"{mode} {i + 1}: compare exit {code} ({'ok' if ok else 'MISSED'}); OLD "
              f"{trial['load_old']}, NEW {trial['load_new']}; calibration NEW/OLD "
              f"{trial['calibration_ratio']:.3f}; " + ", ".join(
                  f"{name} x{n}: {v}" for (name, _, n), v in speeds.items()), flush=True)
        out.append(trial)
    return out


def summary(results: list[dict]) -> list[str]:
    lines = []
    for mode, target in (("ab-loaded", "exit 1 or 3"), ("aa-quiet", "exit 0"),
                         ("aa-busy", "exit 0 or 3, never 1")):
        got = [t for t in results if t["mode"] == mode]
        if not got:
            continue
        hits = sum(t["ok"] for t in got)
        undecided = sum(t["undecided"] for t in got)
        cases = sum(t["cases"] for t in got)
        ratios = [t["calibration_ratio"] for t in got]
        lines.append(f"{mode}: {target} in {hits} of {len(got)} trials; undecided cases "
                     f"{undecided} of {cases}; exits {[t['exit'] for t in got]}; calibration "
                     f"NEW/OLD {min(ratios):.3f}-{max(ratios):.3f}")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", default="classic",
                   choices=("classic", "ab-loaded", "aa-busy", "aa-quiet", "targets"))
    p.add_argument("--busy-loops", type=int, default=2,
                   help="busy-loop processes beside the loaded runs (default 2)")
    p.add_argument("--rounds", "--repeats", type=int, default=5,
                   help="comparisons per mode (default 5; 10 and 20 for the targets)")
    p.add_argument("--processes", type=int, default=3)
    p.add_argument("--slowdown", type=float, default=1.25)
    p.add_argument("--keep", help="folder for the results files (default: a temporary one)")
    p.add_argument("--inconclusive-ok", action="store_true",
                   help="on a noisy machine: an A/B comparison that calls the synthetic cases "
                        "inconclusive (not wrong, just unsure) does not fail the check; wrong "
                        "verdicts (false alarms, a 1.25x slowdown called same or faster) still do")
    args = p.parse_args(argv)
    if args.mode == "classic":
        return classic(args)
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="hhbench-verdicts-") as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        config = write_config(folder, args.processes, backends=("numba-planted", "synthetic"))
        modes = ("ab-loaded", "aa-quiet", "aa-busy") if args.mode == "targets" else (args.mode,)
        results = [t for mode in modes
                   for t in trials(folder, config, mode, args.rounds, args.busy_loops)]
    print()
    for line in summary(results):
        print(line)
    return 0 if all(t["ok"] for t in results) else 1


def write_config(folder: Path, processes: int,
                 backends: tuple[str, ...] = ("synthetic", "exp-euler")) -> Path:
    config = folder / "suite.json"
    config.write_text(json.dumps({
        "backends": list(backends), "stimuli": ["step"], "batches": [1, 16],
        "reference": "lab", "processes": processes,
        "extra_backend_modules": [str(HERE / "synthetic_backend.py")],
        "timing": {"warmup_calls": 1, "min_repeats": 5, "min_time_s": 0.05}}))
    return config


def classic(args) -> int:
    sys.path.insert(0, str(ROOT))
    from hhbench.check import machine_warnings
    from hhbench.environment import machine_state
    busy = machine_warnings(machine_state())
    for line in busy:  # a busy machine makes cases inconclusive: detection then fails
        print(f"warning: {line}")

    with tempfile.TemporaryDirectory(prefix="hhbench-verdicts-") as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        config = write_config(folder, args.processes)
        a_runs = [run(folder, f"A{i}", config, BASE_US) for i in range(args.rounds + 1)]
        b_runs = [run(folder, f"B{i}", config, BASE_US * args.slowdown)
                  for i in range(args.rounds)]

        failures, aa_alarms, aa_case_alarms, aa_cases, aa_unsure = [], 0, 0, 0, 0
        unconfirmed = []  # real-backend alarms that a fresh pair of runs did not repeat
        for i in range(args.rounds):
            code, speeds, others = flagged(a_runs[i], a_runs[i + 1])
            slow = [k for k, v in speeds.items() if v == "slower"]
            aa_alarms += code == 1
            aa_case_alarms += len(slow)
            aa_cases += len(speeds)
            aa_unsure += sum(v == "inconclusive" for v in speeds.values())
            print(f"A/A {i + 1}: compare exit {code} (OLD {load_of(a_runs[i])}, NEW "
                  f"{load_of(a_runs[i + 1])}; {calibration_words(a_runs[i], a_runs[i + 1])}); "
                  + ", ".join(f"{b} x{n}: {v}" for (b, _, n), v in speeds.items()))
            # exit 3 (a slowdown on a busy run, discounted) is no false alarm: with
            # --inconclusive-ok it is accepted like an inconclusive case
            if code == 1 or (code != 0 and not args.inconclusive_ok):
                real = [k for k in slow if k[0] != "synthetic"]
                if (code == 1 and real and real == slow and not others
                        and not confirmed(folder, config, real, f"A/A {i + 1}")):
                    unconfirmed.append(f"A/A {i + 1}: {real}")
                    continue
                failures.append(f"A/A {i + 1}: exit {code} on {slow}")
        b_hits, b_case_hits, b_cases, b_extra = 0, 0, 0, 0
        for i in range(args.rounds):
            code, speeds, _ = flagged(a_runs[i], b_runs[i])
            synthetic = {k for k in speeds if k[0] == "synthetic"}
            slow = {k for k, v in speeds.items() if v == "slower"}
            b_case_hits += len(slow & synthetic)
            b_cases += len(synthetic)
            b_extra += len(slow - synthetic)
            print(f"A/B {i + 1}: compare exit {code} (OLD {load_of(a_runs[i])}, NEW "
                  f"{load_of(b_runs[i])}; {calibration_words(a_runs[i], b_runs[i])}); "
                  + ", ".join(f"{b} x{n}: {v}" for (b, _, n), v in speeds.items()))
            extra = sorted(slow - synthetic)
            if extra and not confirmed(folder, config, extra, f"A/B {i + 1}"):
                unconfirmed.append(f"A/B {i + 1}: {extra}")
                slow -= set(extra)
            exact = code == 1 and slow == synthetic
            b_hits += exact
            wrong = {k for k in synthetic if speeds[k] in ("same", "faster")} | (slow - synthetic)
            # on a busy machine a slowdown is "slower?" (exit 3): honest, not wrong
            honest = not wrong and all(
                speeds[k] in ("slower", "slower?", "inconclusive") for k in synthetic)
            if not exact and not (args.inconclusive_ok and honest):
                failures.append(f"A/B {i + 1}: exit {code}, flagged {sorted(slow)}"
                                + (f", wrong verdicts on {sorted(wrong)}" if wrong else ""))

    n = args.rounds
    print(f"\nfalse alarms (A/A, same settings): {aa_alarms} of {n} comparisons exit 1 "
          f"({aa_alarms / n:.0%}); {aa_case_alarms} of {aa_cases} cases "
          f"({aa_case_alarms / aa_cases:.1%}); inconclusive cases {aa_unsure} of {aa_cases}")
    print(f"detection (A/B, synthetic {args.slowdown:g}x slower): {b_hits} of {n} comparisons "
          f"exit 1 flagging exactly its cases ({b_hits / n:.0%}); {b_case_hits} of {b_cases} "
          f"synthetic cases flagged ({b_case_hits / b_cases:.0%}); other cases flagged: {b_extra}"
          f" (unconfirmed ones included)")
    for line in unconfirmed:
        print(f"unconfirmed (not repeated by a fresh pair of runs): {line}")
    for line in failures:
        print(f"FAILED {line}", file=sys.stderr)
    if failures and busy:
        print("(the machine was busy at the start: see the warnings above; inconclusive "
              "cases there are the tool being honest, not a bug)", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
