"""numba's on-disk cache of hhbench's compiled code, kept in step with the sources it inlines.

numba checks only the timestamp of a cached function's own file, but hhbench's compiled
drivers (`numba_engine`, `odeint_rhs`, `cuda_engine`) inline the model's kernels, the step
kernels and `compiled.vector_exp`: an edit there would otherwise run stale machine code.
`purge_stale_cache()` hashes every such source and, when the hash differs from the stamp
left by the last purge, deletes the cached machine code of all of them.

Two processes may start at once (the harness starts several workers): the check and the
purge run under a file lock, the stamp is written atomically (a temporary file in the same
folder, then `os.replace`), and a process that finds the stamp current does not lock at
all. On a read-only install (no writable `__pycache__`) nothing is done: numba then falls
back to its own cache locations.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from hhbench import model

_HERE = Path(__file__).parent
#: the hash of the sources at the last purge
STAMP_FILE = _HERE / "__pycache__" / "hhbench-numba.stamp"
#: seconds to wait for another process' purge before leaving the cache as it is
LOCK_TIMEOUT_S = 120.0


def _kernel_sources() -> list[Path]:
    """Every file whose code the compiled drivers contain (the drivers' own files first)."""
    drivers = [_HERE / name for name in ("numba_engine.py", "odeint_rhs.py", "cuda_engine.py")]
    return [Path(model.__file__), *(p for p in drivers if p.exists()),
            *sorted((_HERE / "kernels").glob("*.py")),
            *sorted((_HERE / "compiled").glob("*.py"))]


def _stamp(sources: list[Path]) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()


def sources_hash() -> str:
    """SHA-256 of the model's equations, the step kernels and the compiled drivers: what the
    numbers of a compiled run depend on besides their inputs (also a key of the suite's
    reference cache, `hhbench.reference_cache`)."""
    return _stamp(_kernel_sources())


def _stamp_is(stamp: str) -> bool:
    try:
        return STAMP_FILE.read_text() == stamp
    except FileNotFoundError:
        return False


def _write_stamp(stamp: str) -> None:
    """The stamp written atomically: a reader sees the old stamp or the new one, never a
    part of it."""
    fd, tmp = tempfile.mkstemp(dir=STAMP_FILE.parent, prefix=".hhbench-numba.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(stamp)
        os.replace(tmp, STAMP_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def purge_stale_cache() -> None:
    """Drop numba's on-disk cache of the compiled drivers when the model, a kernel or a
    driver changed since the last purge (see the module's docstring); safe to call from
    several processes at once, and a no-op on a read-only install."""
    from filelock import FileLock, Timeout

    sources = _kernel_sources()
    stamp = _stamp(sources)
    try:
        if _stamp_is(stamp):  # the common case: nothing to do, no lock taken
            return
        STAMP_FILE.parent.mkdir(exist_ok=True)
        with FileLock(str(STAMP_FILE) + ".lock", timeout=LOCK_TIMEOUT_S):
            if _stamp_is(stamp):  # another process purged while this one waited
                return
            for src in sources:
                for cached in (src.parent / "__pycache__").glob(f"{src.stem}.*.nb[ci]"):
                    cached.unlink(missing_ok=True)
            _write_stamp(stamp)
    except (OSError, Timeout):  # a read-only install: numba falls back to its own cache
        pass                    # locations; a lock held for minutes: leave the cache be


def function_cached(source: Path, qualname: str) -> bool:
    """Does numba's cache hold function `qualname` of file `source`, compiled for this
    Python, after stale code is purged? Looks for its index file where numba keeps it (its
    cache locators): under NUMBA_CACHE_DIR when that is set, else beside the sources or,
    where those are read-only, in numba's user-wide cache folder. An index compiled for
    another CPU counts as there: the worker then compiles, as it would anyway."""
    import hashlib
    import sys

    purge_stale_cache()
    name = (f"{source.stem}.{qualname}-*."
            f"py{sys.version_info.major}{sys.version_info.minor}.nbi")
    folder = os.path.abspath(source.parent)
    # numba's `get_suitable_cache_subpath`: the folder's name and the SHA-1 of its path
    subpath = f"{os.path.basename(folder)}_{hashlib.sha1(folder.encode()).hexdigest()}"
    user_dir = os.environ.get("NUMBA_CACHE_DIR")
    if user_dir:
        folders = [Path(user_dir) / subpath]
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        folders = [source.parent / "__pycache__", Path(xdg) / "numba" / subpath]
    return any(any(f.glob(name)) for f in folders)


__all__ = ["function_cached", "purge_stale_cache", "sources_hash", "STAMP_FILE"]
