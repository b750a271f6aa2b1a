"""Compile ahead, side by side, what a run's backends would compile at set-up.

The first run after an install, or after an edit of the model or a step kernel, compiles
numba's drivers (`hhbench.backends.numba_engine`, seconds each) into numba's on-disk
cache. Left to the timed workers, the first worker process would compile them one after
the other while a single core works. `compile_ahead` asks each backend of the run what it
would compile that no cache holds yet (`Backend.compile_ahead`) and compiles those in fresh
processes (`python -m hhbench.precompile NAME OPTIONS MODULES`), up to one per core at a time,
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


#: seconds one compilation may take before it is left to the worker (a driver compiles in
#: seconds; this only stops one that hangs)
TIMEOUT_S = 600.0


def pending(backends: Mapping[str, dict]) -> dict[str, tuple[str, dict]]:
    """{what to compile: (a backend that compiles it, its options)} for {backend: options};
    a backend that is not registered, or whose `compile_ahead` raises, is left to its
    worker (which reports its error with its case)."""
    from hhbench.backends import backend_classes
    classes = backend_classes()
    out: dict[str, tuple[str, dict]] = {}
    for name, options in backends.items():
        try:
            what = classes[name].compile_ahead(options)
        except Exception:  # noqa: BLE001  (a plugin's; its worker will say what)
            continue
        if what is not None:
            out.setdefault(what, (name, options))
    return out


def compile_ahead(backends: Mapping[str, dict], *, modules: tuple[str, ...] = (),
                  say=None) -> dict | None:
    """Compile what `pending` lists, one fresh process each, at most one per core at a
    time, each importing `modules` first (the run's `extra_backend_modules`); `say(line)`
    is told what before it starts. {"compiled": [names], "failed": [names], "wall_s"} for
    the results' environment, or None when nothing was pending."""
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
        try:
            done = subprocess.run([sys.executable, "-P", "-m", "hhbench.precompile", name,
                                   json.dumps(options), json.dumps(list(modules))], env=env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:  # killed by subprocess.run; the worker compiles
            return False
        return done.returncode == 0

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        ok = list(pool.map(one, jobs.values()))
    return {"compiled": [w for w, good in zip(jobs, ok) if good],
            "failed": [w for w, good in zip(jobs, ok) if not good],
            "wall_s": round(time.perf_counter() - started, 3)}


def main(argv: list[str]) -> int:
    """`python -m hhbench.precompile NAME OPTIONS_JSON MODULES_JSON`: backend NAME's
    `compile_now`, after importing the modules that register more backends."""
    from hhbench.backends import backend_classes
    from hhbench.suite import import_backend_module
    name, options = argv[0], json.loads(argv[1])
    for module in json.loads(argv[2]) if len(argv) > 2 else ():
        import_backend_module(module)
    backend_classes()[name].compile_now(options)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
