"""`run_lab`: answer the chosen questions and write their sections, figures and numbers.

Everything is written into a temporary folder beside the target first and moved into
place only when every question has been answered, so a failure or an interruption
leaves nothing half-written. Into an existing folder the files are moved one by one
(each replacement atomic), so regenerating one question leaves the others' files alone.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from hhbench.atomic import atomic_write, check_writable_folder, current_umask
from hhbench.errors import HHBenchError
from hhbench.failures import NotRun, not_run
from hhbench.lab import (q1_model, q2_step, q3_cnn_step, q4_sine, q5_noise,
                         q6_receptive_field)
from hhbench.lab import NO_CNN, QUESTION_KEYS, check_questions
from hhbench.lab.common import LabSettings, LabSetup, num

QUESTIONS = {m.KEY: m for m in (q1_model, q2_step, q3_cnn_step, q4_sine, q5_noise,
                                q6_receptive_field)}
assert tuple(QUESTIONS) == QUESTION_KEYS, "hhbench.lab.QUESTION_KEYS is out of date"
REPORT = "report.md"


def check_out_dir(out_dir) -> Path:
    """`out_dir` as a folder we can fill: it is a folder, or only its last level is missing."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise HHBenchError(f"cannot write the lab report into {out}: it is a file")
    if not out.exists() and not out.parent.is_dir():
        raise HHBenchError(f"cannot write the lab report into {out}: folder {out.parent} "
                           f"does not exist")
    try:  # a probe file: finds a read-only file system too, and says which
        check_writable_folder(out if out.exists() else out.parent)
    except HHBenchError as exc:
        raise HHBenchError(f"cannot write the lab report into {out}: "
                           f"{str(exc).partition(': ')[2]}") from None
    return out


def run_lab(questions=("all",), *, model=None, device: str = "auto",
            out_dir="lab-report", progress: bool = True,
            settings: LabSettings = LabSettings()) -> dict:
    """Answer `questions` (keys of QUESTIONS, or "all") with the CNN `model` (None: the
    default model) on `device`; write `<q>.md`, `<q>.json` and the figures of each into
    `out_dir`, and for all six `report.md` linking them. Returns the results by key.

    A question whose computation raises is not lost in silence, nor does it stop the
    others: its result is a `hhbench.failures.NotRun` ("skipped" or "failed", with the
    exception's words), written as its one-line section and its row of the report."""
    from tqdm.auto import tqdm

    keys = check_questions(questions)
    out = check_out_dir(out_dir)
    bar = tqdm(total=len(keys) + 1, disable=not progress, unit="step", desc="hhbench lab",
               dynamic_ncols=True)
    started = time.perf_counter()
    try:
        bar.set_postfix_str("loading the model")
        setup = LabSetup(model, device=device, settings=settings,
                         load_cnn=any(key not in NO_CNN for key in keys))
        bar.update()
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
        try:
            results = {}
            for key in keys:
                module = QUESTIONS[key]
                note = lambda text, key=key: bar.set_postfix_str(f"{key} {text}")  # noqa: E731
                note("")
                answered = {k: r for k, r in results.items() if not isinstance(r, NotRun)}
                try:
                    results[key] = module.compute(setup, answered, progress=note)
                except Exception as exc:  # this question's line; the others go on
                    results[key] = not_run(exc)
                note("writing")
                if isinstance(results[key], NotRun):
                    _write_not_run(staging, key, results[key])
                else:
                    module.write(results[key], staging)
                bar.update()
            if keys == list(QUESTIONS):
                _write_report(staging, setup, results, time.perf_counter() - started)
            _move_into_place(staging, out)
        except OSError as exc:  # a full disk: the path in the user's folder, nothing kept
            name = Path(exc.filename).name if exc.filename else None
            raise HHBenchError(
                f"cannot write the lab report into {out}"
                + (f" ({name})" if name else "") + f": {exc.strerror or exc}; nothing was "
                "written (the report is written whole or not at all)") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        bar.close()
    return results


def _write_not_run(folder: Path, key: str, why: NotRun) -> None:
    """`<key>.md` and `<key>.json` of a question that was not answered, saying why."""
    atomic_write(folder / f"{key}.md", f"## {QUESTIONS[key].TITLE}\n\nNot answered "
                                       f"({why.status}): {why.reason}\n")
    atomic_write(folder / f"{key}.json", json.dumps(
        {"status": why.status, "reason": why.reason}, indent=1) + "\n")


def _headline(key: str, result) -> str:
    if isinstance(result, NotRun):
        return f"not answered ({result.status}): {result.reason}"
    return QUESTIONS[key].headline(result)


def _move_into_place(staging: Path, out: Path) -> None:
    os.chmod(staging, 0o777 & ~current_umask())
    if not out.exists():
        os.rename(staging, out)  # the whole report appears at once
        return
    for path in sorted(staging.iterdir()):
        os.replace(path, out / path.name)


def _write_report(folder: Path, setup: LabSetup, results: dict, seconds: float) -> None:
    from hhbench.environment import describe_machine, one_line

    env = describe_machine()
    d = setup.describe()
    commit = (env.get("git") or {}).get("commit")
    rows = "\n".join(f"| [{QUESTIONS[k].TITLE}]({k}.md) | {_headline(k, r)} |"
                     for k, r in results.items())
    md = f"""# The HH lab, reproduced by `hhbench lab`

A computational-neurophysiology lab compares a Hodgkin-Huxley (HH) neuron model, integrated
numerically, with a convolutional neural network (CNN) trained to reproduce its membrane
voltage from the injected current. Its six questions are answered below, each in its own
section with figures; every number is also in the section's `.json` file.

**Set-up.** Model `{d['model']}` on {d['tf_device']} (asked: `{d['device_request']}`);
its input window is {d['n_samples']} samples at {num(d['fs_khz'])} kHz
({num(d['n_samples'] / d['fs_khz'])} ms), its output the central {d['output_samples']}
samples ({d['context']} samples of context cropped on each side); it sees the current
times {num(d['input_scale'])} and its output divided by {num(d['output_scale'])} is V in mV.
Every stimulus below has that window and rate. The HH model is Kramer's formulation of
the 1952 squid-axon model (membrane capacitance 1 µF/cm², I in µA/cm², V in mV, starting
from V = −70 mV, m = 0.05, h = 0.54, n = 0.34). Simulators: `numpy` and `numba` (forward
Euler at dt = 1/fs, the lab's method; `numpy` loops in Python), `odeint` (SciPy's LSODA),
`exp-euler` (exponential Euler), `reference` (converged: exponential midpoint with steps
halved until V changes by less than 0.01 mV), `cnn`.

**Definitions.** A *spike* is a peak of V above 0 mV in a run of at least 10 consecutive
samples above 0 mV (rule `run-above-0mV`); Q4 also gives its answer under the lab's own
rule, `scipy.signal.find_peaks(V, height=0, width=10)` (`lab-find-peaks`: at least 10
samples wide at half prominence). *Cold* time = set-up (compilation, model loading) + first call;
*warm* time = median of repeated calls after one untimed warm-up (never one call timed
by hand). Times depend on the machine: {one_line(env)}; generated
{env['time_utc']} by hhbench {_version()}{f' (commit {commit[:10]})' if commit else ''}
in {seconds:.0f} s (from loading the CNN's framework and the model to the last figure).

| question | answer in short |
|---|---|
{rows}
"""
    atomic_write(folder / REPORT, md)
    atomic_write(folder / "report.json", json.dumps(
        {"setup": d, "machine": one_line(env), "versions": env["versions"], "git": env["git"],
         "time_utc": env["time_utc"], "seconds": seconds,
         "sections": {k: f"{k}.json" for k in results}}, indent=1) + "\n")


def _version() -> str:
    from hhbench import __version__
    return __version__
