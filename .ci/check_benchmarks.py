"""Check that a benchmark smoke produced a result for every benchmark.

    python .ci/check_benchmarks.py pytest FILE.json   pytest-benchmark's JSON
    python .ci/check_benchmarks.py asv RESULTS_DIR     asv's results folder
Exit 1, naming them, if a benchmark has no number: every parameter combination of a
time_ or peakmem_ benchmark must have one; a track_ benchmark may lack some (an accuracy
figure is undefined where forward Euler diverges, as on the lab's sine) but not all.
"""

import json
import math
import sys
from pathlib import Path


def check_pytest(path: Path) -> list[str]:
    data = json.loads(path.read_text())
    # every benchmark needs a time; the suite's cases (test_simulate) also their accuracy
    missing = [b["fullname"] for b in data["benchmarks"]
               if not b["stats"]["median"] > 0
               or (b["name"].startswith("test_simulate") and "rmse_mv" not in b["extra_info"])]
    print(f"pytest-benchmark: {len(data['benchmarks'])} benchmarks, {len(missing)} without result")
    return missing if data["benchmarks"] else ["(no benchmarks ran)"]


def _numbers(value):
    if isinstance(value, list):
        for v in value:
            yield from _numbers(v)
    else:
        yield value


def check_asv(folder: Path) -> list[str]:
    files = [p for p in folder.rglob("*.json") if p.name not in ("machine.json", "benchmarks.json")]
    if not files:
        return ["(no asv result file)"]
    missing, total = [], 0
    for path in files:
        data = json.loads(path.read_text())
        names = data["result_columns"]
        for bench, row in data["results"].items():
            total += 1
            result = dict(zip(names, row)).get("result")
            values = list(_numbers(result))
            numbers = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
            kind = bench.rsplit(".", 1)[-1].split("_", 1)[0]
            if not numbers or (kind in ("time", "peakmem") and len(numbers) < len(values)):
                missing.append(f"{bench} ({len(numbers)} of {len(values)} parameter sets)")
    print(f"asv: {total} benchmarks, {len(missing)} without a number")
    return missing


if __name__ == "__main__":
    kind, path = sys.argv[1], Path(sys.argv[2])
    missing = check_pytest(path) if kind == "pytest" else check_asv(path)
    for name in missing:
        print(f"no result: {name}")
    sys.exit(1 if missing else 0)
