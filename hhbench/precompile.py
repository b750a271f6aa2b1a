"""Compile ahead, side by side, what a run's backends would compile at set-up.

The first run after an install, or after an edit of the model or a step kernel, compiles
numba's drivers (`hhbench.backends.numba_engine`, seconds each) into numba's on-disk
cache. Left to the timed workers, the first worker process would compile them one after
the other while a single core works. `compile_ahead` asks each backend of the run what it
would compile that no cache holds yet (`Backend.compile_ahead`) and compiles those in fresh
processes (`python -m hhbench.precompile NAME OPTIONS`), up to one per core at a time,
before any timing; the workers then load from the cache, as on every later run. A
compilation that fails here is left to the worker, which reports its error with its case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping


def pending(backends: Mapping[str, dict]) -> dict[str, tuple[str, dict]]:
    """{what to compile: (a backend that compiles it, its options)} for {backend: options}."""
    from hhbench.backends import backend_classes
    classes = backend_classes()
    out: dict[str, tuple[str, dict]] = {}
    for name, options in backends.items():
        what = classes[name].compile_ahead(options)
        if what is not None:
            out.setdefault(what, (name, options))
    return out


def compile_ahead(backends: Mapping[str, dict], *, say=None) -> dict | None:
    """Compile what `pending` lists, one fresh process each, at most one per core at a
    time; `say(line)` is told what before it starts. {"compiled": [names], "failed":
    [names], "wall_s"} for the results' environment, or None when nothing was pending."""
    jobs = pending(backends)
    if not jobs:
        return None
    if say is not None:
        say(f"compiling {', '.join(jobs)} ahead, {min(len(jobs), os.cpu_count() or 1)} at "
            "a time (the first run after an install or an edit; later runs load it from "
            "the cache)")
    from hhbench.workers import worker_env
    env = worker_env()

    def one(job: tuple[str, dict]) -> bool:
        name, options = job
        done = subprocess.run([sys.executable, "-P", "-m", "hhbench.precompile", name,
                               json.dumps(options)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        return done.returncode == 0

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        ok = list(pool.map(one, jobs.values()))
    return {"compiled": [w for w, good in zip(jobs, ok) if good],
            "failed": [w for w, good in zip(jobs, ok) if not good],
            "wall_s": round(time.perf_counter() - started, 3)}


def main(argv: list[str]) -> int:
    """`python -m hhbench.precompile NAME OPTIONS_JSON`: backend NAME's `compile_now`."""
    from hhbench.backends import backend_classes
    name, options = argv[0], json.loads(argv[1])
    backend_classes()[name].compile_now(options)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
