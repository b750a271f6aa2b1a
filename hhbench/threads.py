"""The threading policy of every timed process, and a record of the thread pools in use.

What decides a compiled kernel's speed on a shared machine is often not the code but its
thread pools: which threading layer numba runs its `prange` loops on, how many threads each
call wakes, whether idle OpenMP threads spin (and so steal the core from the thread that
is still working) or sleep. hhbench fixes these once, in one place, so that `hhbench run`'s
worker processes, the asv suite and the pytest-benchmark suite all time the same thing:

  * numba's threading layer: `LAYER` ("omp") unless the user set `NUMBA_THREADING_LAYER`;
  * OpenMP's own defaults otherwise (`ENV` is empty): measured on a quiet 2-core machine
    in whole `hhbench run`s (README), sleeping idle threads (`OMP_WAIT_POLICY=PASSIVE`) and
    threads bound to cores (`OMP_PROC_BIND=close`, `OMP_PLACES=cores`) both spread the
    processes more than the defaults (binding also slowed NumPy and the CNN in the same
    process), though each looked better in one isolated `scripts/threading_check.py`;
    variables put in `ENV` are set before the OpenMP runtime starts, which `apply()`
    ensures when called before numba's first parallel call;
  * a call uses no more threads than it has traces (`numba_threads(batch)`), so a batch of
    one runs on the calling thread alone.
Why these: see docs/timing.md and `scripts/threading_check.py`, which measures the spread
between fresh processes under each option.

`HHBENCH_THREADING=default` switches the policy off (numba's and OpenMP's own defaults),
for measuring the difference.
"""

from __future__ import annotations

import os
import sys

#: numba's threading layer under the policy
LAYER = "omp"
#: environment set (when the user has not set it) before any thread pool starts
ENV: dict[str, str] = {}
#: environment variable prefixes that decide speed, recorded with every result
RECORDED_PREFIXES = ("OMP_", "KMP_", "GOMP_", "NUMBA_", "OPENBLAS_", "MKL_", "TF_",
                     "BLIS_", "VECLIB_", "HHBENCH_")


def enabled() -> bool:
    """False when `HHBENCH_THREADING=default` asks for the libraries' own defaults."""
    return os.environ.get("HHBENCH_THREADING", "policy").lower() != "default"


def apply() -> None:
    """Put the policy's environment in place (idempotent; user settings win).

    Call before numba's first parallel call: numba reads the threading layer when it
    launches its pool, and the OpenMP runtime reads its variables when it starts.
    """
    if not enabled():
        return
    for key, value in ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("NUMBA_THREADING_LAYER", LAYER)
    numba = sys.modules.get("numba")
    if numba is not None:  # imported before the environment was set: tell its config too
        try:
            from numba.np.ufunc import parallel
            launched = parallel._is_initialized
        except (ImportError, AttributeError):
            launched = False
        if not launched:
            numba.config.THREADING_LAYER = os.environ["NUMBA_THREADING_LAYER"]


def numba_threads(batch: int) -> int:
    """Threads for one numba call over `batch` traces: at most one per trace, at most
    numba's pool size (NUMBA_NUM_THREADS, default: the logical cores)."""
    import numba
    return max(1, min(int(batch), numba.config.NUMBA_NUM_THREADS))


def speed_environment() -> dict:
    """The environment variables that decide speed (OMP_*, NUMBA_*, MKL_*, TF_*, ...)."""
    return {k: v for k, v in sorted(os.environ.items())
            if k.startswith(RECORDED_PREFIXES) and not k.startswith("TF_CLI_")}  # TF_CLI_: terraform


def describe() -> dict:
    """The thread pools of this process as they are now: numba's layer and pool size
    (only if numba is imported; the layer only once its pool has started; threads_now is
    what its next parallel region would use, as the engine's last call over more than one
    chunk set it: a call of one chunk starts none, and each case records the threads its
    calls ran on as `call_threads` in its settings), TensorFlow's
    intra/inter-op threads (only if TensorFlow is imported), the BLAS/OpenMP pools that
    threadpoolctl finds, and the speed-relevant environment variables."""
    out: dict = {"policy": "hhbench" if enabled() else "library defaults",
                 "env": speed_environment()}
    numba = sys.modules.get("numba")
    if numba is not None:
        try:
            layer = numba.threading_layer()
        except ValueError:  # the pool has not started: say what it will be
            layer = f"not started (configured: {numba.config.THREADING_LAYER})"
        out["numba"] = {"threading_layer": layer, "pool_threads": numba.config.NUMBA_NUM_THREADS,
                        "threads_now": numba.get_num_threads()}
    tf = sys.modules.get("tensorflow")
    if tf is not None and hasattr(tf, "config"):
        try:
            out["tensorflow"] = {
                "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
                "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
                "note": "0 = TensorFlow's default (one thread per core)"}
        except Exception as exc:  # a half-imported TF must not break the record
            out["tensorflow"] = {"error": type(exc).__name__}
    try:
        from threadpoolctl import threadpool_info
        out["threadpools"] = [{k: p.get(k) for k in ("user_api", "internal_api", "num_threads",
                                                     "version", "threading_layer", "filepath")}
                              for p in threadpool_info()]
    except ImportError:
        out["threadpools"] = "threadpoolctl not installed"
    return out


def numba_cache_stats() -> dict | None:
    """How numba's compiled functions in this process were obtained: on-disk cache hits
    and misses (compilations), summed over every dispatcher with `cache=True`; None when
    numba is not imported. Read from numba's own dispatcher statistics, not guessed."""
    numba = sys.modules.get("numba")
    if numba is None:
        return None
    import gc

    from numba.core.dispatcher import Dispatcher
    hits = misses = 0
    functions = []
    for obj in gc.get_objects():
        try:
            dispatcher = isinstance(obj, Dispatcher)
        except ReferenceError:  # a weak proxy whose object is gone (isinstance asks it)
            continue
        if dispatcher and obj.stats.cache_path is not None:
            h, m = sum(obj.stats.cache_hits.values()), sum(obj.stats.cache_misses.values())
            if h or m:
                functions.append(obj.py_func.__qualname__)
                hits, misses = hits + h, misses + m
    return {"cache_hits": hits, "cache_misses": misses, "functions": sorted(functions),
            "state": ("loaded from cache" if hits and not misses else
                      "compiled" if misses and not hits else
                      "mixed" if hits else "nothing cached compiled")}
