"""Results of hhbench's own asv suite (benchmarks/) as runs for the history store.

asv keeps `RESULTS/<machine>/machine.json` (arch, cpu, num_cpu, ram in kB, …) and one
file per commit and environment (format version 2: `result_columns` names the columns of
each benchmark's row; `result` and `samples` are flattened over the product of the
benchmark's parameters, whose values are Python literals). From it:
  * `bench_simulate.Simulate.time_simulate` (backend, stimulus, batch) becomes a case on the
    CPU, timed in one "process" whose samples are asv's samples (or its one result);
  * `bench_simulate.Accuracy.track_rmse`, `track_gamma`, `track_spike_count_error`
    (backend, stimulus) give those cases their accuracy.
Other benchmarks (cold start, kernels, the CNN's) have no case of `hhbench run` and are
not imported.
"""

from __future__ import annotations

import ast
import datetime as dt
import itertools
import json
from pathlib import Path

from hhbench.errors import HHBenchError
from hhbench.results import CaseResult, RunResults
from hhbench.timing import ProcessTiming

TIME = "time_simulate"
ACCURACY = {"track_rmse": "rmse_mv_median", "track_gamma": "gamma_median",
            "track_spike_count_error": "spike_count_abs_error_mean"}


def _rows(entry: list, columns: list[str]) -> list[dict]:
    """One dict per parameter combination of one benchmark's entry."""
    col = dict(zip(columns, entry))
    params = col.get("params") or [[]]
    combos = list(itertools.product(*params)) if params and params[0] else [()]
    results = col.get("result")
    if not isinstance(results, list):
        results = [results]
    samples = col.get("samples") or [None] * len(combos)
    return [{"params": tuple(_literal(p) for p in combo), "result": results[i]
             if i < len(results) else None, "samples": samples[i] if i < len(samples) else None}
            for i, combo in enumerate(combos)]


def _literal(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _environment(machine: dict, commit: str, date_ms) -> dict:
    ram = machine.get("ram")
    try:
        memory = round(int(ram) / 2 ** 20, 1)
    except (TypeError, ValueError):
        memory = None
    when = (dt.datetime.fromtimestamp(date_ms / 1000, dt.timezone.utc)
            .isoformat(timespec="seconds") if isinstance(date_ms, (int, float)) else None)
    return {"cpu": machine.get("cpu"), "machine": machine.get("arch"),
            "logical_cores": int(machine["num_cpu"]) if str(machine.get("num_cpu", "")).isdigit()
            else None, "physical_cores": None, "memory_gib": memory, "gpus": [],
            "hostname": machine.get("machine"), "os": machine.get("os"),
            "git": {"commit": commit, "dirty": False}, "time_utc": when}


def read_results_file(path: Path, machine: dict) -> RunResults | None:
    """One asv results file as a run; None when it holds none of the suite's cases."""
    try:
        data = json.loads(path.read_text())
        columns = data["result_columns"]
        results = data["results"]
        commit = data["commit_hash"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HHBenchError(f"{path}: not an asv results file ({exc!r})") from None
    timing, accuracy = {}, {}
    for name, entry in results.items():
        method = name.rsplit(".", 1)[-1]
        if method == TIME:
            for r in _rows(entry, columns):
                if len(r["params"]) == 3 and isinstance(r["result"], (int, float)):
                    samples = r["samples"] if r["samples"] else [r["result"]]
                    timing[r["params"]] = tuple(float(s) for s in samples)
        elif method in ACCURACY:
            for r in _rows(entry, columns):
                if len(r["params"]) == 2 and isinstance(r["result"], (int, float)):
                    accuracy.setdefault(r["params"], {})[ACCURACY[method]] = float(r["result"])
    if not timing:
        return None
    cases = tuple(
        CaseResult(backend=str(b), stimulus=str(s), batch=int(n), device="cpu", status="ok",
                   n_samples=0, dt_ms=0.05, reference="asv",
                   processes=(ProcessTiming(prepare_s=None, cold_s=None, samples_s=samples),),
                   accuracy=accuracy.get((b, s), {}))
        for (b, s, n), samples in sorted(timing.items(), key=lambda kv: str(kv[0])))
    return RunResults(settings={"asv": {"env_name": data.get("env_name"),
                                        "file": path.name}, "processes": 1},
                      environment=_environment(machine, commit, data.get("date")),
                      calibration={}, cases=cases)


def read_asv_results(folder: Path) -> list[tuple[Path, RunResults]]:
    """Every run in an asv results folder; HHBenchError when it is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HHBenchError(f"{folder}: no such asv results folder")
    machines = sorted(folder.glob("*/machine.json"))
    if not machines:
        raise HHBenchError(f"{folder}: not an asv results folder (no */machine.json)")
    runs = []
    for mfile in machines:
        try:
            machine = json.loads(mfile.read_text())
        except (OSError, ValueError) as exc:
            raise HHBenchError(f"{mfile}: unreadable asv machine file ({exc})") from None
        for path in sorted(mfile.parent.glob("*.json")):
            if path.name == "machine.json":
                continue
            res = read_results_file(path, machine)
            if res is not None:
                runs.append((path, res))
    return runs
