"""An on-disk cache of the suite's reference traces, so that a run does not integrate the
converged reference again for a stimulus it has already seen.

Where: `$HHBENCH_CACHE_DIR/references`, else `$XDG_CACHE_HOME/hhbench/references`, else the
platform's user cache folder (`~/.cache/hhbench` on Linux, `~/Library/Caches/hhbench` on
macOS, `%LOCALAPPDATA%\\hhbench\\Cache` on Windows), as platformdirs' `user_cache_dir`.

Key: a JSON-ready dict of everything that defines the traces (the suite builds it: stimulus
settings and a SHA-256 of its current, seed, batch, samples, the reference backend and its
settings, a hash of the model equations and step kernels). An entry is one `.npz` file
named by the SHA-256 of the key. It holds V, the diverged flags, the first sample and a
JSON header with the key, the reference's `info` and SHA-256s of the arrays. An entry is
used only when its header's key is the key asked for and both arrays match their hashes;
anything else (a truncated or garbled file, another key) is a miss, removed, and the
reference is computed again.

Size: at most `$HHBENCH_REFERENCE_CACHE_MB` MiB (default 1024); after each store the entries
used least recently (a hit refreshes an entry's time) are removed until the folder fits.

Two processes at once: a store and the eviction after it run under a file lock (the
`filelock` package, as for numba's cache in `hhbench.backends.numba_cache`); an entry appears
by an atomic rename (`hhbench.atomic`), so a reader, which takes no lock, sees a whole entry
or none, and an entry removed under it is a miss.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hhbench.errors import HHBenchError

#: the layout of an entry; a change makes every older entry a miss
FORMAT = 1
DEFAULT_LIMIT_MB = 1024.0
#: seconds to wait for another process' store before computing without storing
LOCK_TIMEOUT_S = 60.0
SUFFIX = ".npz"


def user_cache_dir() -> Path:
    """hhbench's folder in the user's cache: $HHBENCH_CACHE_DIR, else $XDG_CACHE_HOME/hhbench,
    else the platform's default (see the module's docstring)."""
    if os.environ.get("HHBENCH_CACHE_DIR"):
        return Path(os.environ["HHBENCH_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "hhbench"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "hhbench"
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "hhbench" / "Cache"
    return Path.home() / ".cache" / "hhbench"


def limit_bytes() -> int:
    """The size limit: $HHBENCH_REFERENCE_CACHE_MB MiB (a number >= 0), default 1024."""
    text = os.environ.get("HHBENCH_REFERENCE_CACHE_MB", "")
    if not text:
        return int(DEFAULT_LIMIT_MB * 2**20)
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise HHBenchError(f"HHBENCH_REFERENCE_CACHE_MB must be a number of MiB >= 0, got "
                           f"{text!r}")
    return int(value * 2**20)


def key_digest(key: dict) -> str:
    """SHA-256 of `key` as canonical JSON (sorted keys): the entry's file name."""
    return hashlib.sha256(_canonical(key).encode()).hexdigest()


def _canonical(key: dict) -> str:
    return json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)


def _array_hash(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """A reference as stored: V (batch, samples) in mV, one diverged flag per trace, the
    index of V's first sample in the stimulus, and the reference's `info`."""

    v_mv: np.ndarray
    diverged: np.ndarray
    first_sample: int
    info: dict[str, Any]


class ReferenceCache:
    """The cache in `folder` (default: `user_cache_dir() / "references"`) under
    `limit` bytes (default: `limit_bytes()`)."""

    def __init__(self, folder: str | os.PathLike | None = None, *, limit: int | None = None):
        self.folder = Path(folder) if folder is not None else user_cache_dir() / "references"
        self.limit = limit_bytes() if limit is None else int(limit)

    def path(self, key: dict) -> Path:
        return self.folder / f"{key_digest(key)}{SUFFIX}"

    def load(self, key: dict) -> Entry | None:
        """The entry stored for `key`, or None (missing, unreadable, damaged or another key's:
        such a file is removed)."""
        path = self.path(key)
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                v, diverged = np.array(data["v_mv"]), np.array(data["diverged"])
        except FileNotFoundError:
            return None
        except Exception:  # truncated, garbled, not an npz: never trusted
            self._discard(path)
            return None
        if (not isinstance(header, dict) or header.get("key") != json.loads(_canonical(key))
                or header.get("v_sha256") != _array_hash(v)
                or header.get("diverged_sha256") != _array_hash(diverged)
                or v.ndim != 2 or diverged.shape != (v.shape[0],)):
            self._discard(path)
            return None
        try:
            os.utime(path)  # used now: evicted last
        except OSError:
            pass
        return Entry(v_mv=v, diverged=diverged.astype(bool),
                     first_sample=int(header["first_sample"]), info=dict(header["info"]))

    def store(self, key: dict, entry: Entry) -> bool:
        """Store `entry` under `key` (atomically, under the lock), then evict down to the
        limit; False when it could not be stored (a read-only cache folder, a lock held
        too long, an entry larger than the limit): the run goes on without it."""
        from filelock import FileLock, Timeout

        from hhbench.atomic import atomic_writer

        v = np.ascontiguousarray(entry.v_mv, dtype=np.float64)
        diverged = np.ascontiguousarray(entry.diverged, dtype=bool)
        header = {"format": FORMAT, "key": json.loads(_canonical(key)),
                  "first_sample": int(entry.first_sample),
                  "info": json.loads(json.dumps(entry.info, default=str)),
                  "v_sha256": _array_hash(v), "diverged_sha256": _array_hash(diverged)}
        buffer = io.BytesIO()
        np.savez(buffer, v_mv=v, diverged=diverged, header=np.array(json.dumps(header)))
        data = buffer.getvalue()
        if len(data) > self.limit:
            return False
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with FileLock(str(self.folder / ".lock"), timeout=LOCK_TIMEOUT_S):
                with atomic_writer(self.path(key), "wb") as fh:
                    fh.write(data)
                self._evict(keep=self.path(key))
        except (OSError, Timeout, HHBenchError):
            return False
        return True

    def entries(self) -> list[Path]:
        """The entry files, least recently used first."""
        def mtime(p: Path) -> float:
            try:
                return p.stat().st_mtime
            except OSError:
                return float("inf")
        try:
            return sorted(self.folder.glob(f"*{SUFFIX}"), key=mtime)
        except OSError:
            return []

    def size(self) -> int:
        """Bytes the entries take."""
        return sum(_size(p) for p in self.entries())

    def _evict(self, keep: Path) -> None:
        """Remove the least recently used entries (never `keep`) until the folder fits."""
        files = self.entries()
        total = sum(_size(p) for p in files)
        for p in files:
            if total <= self.limit:
                break
            if p != keep:
                total -= _size(p)
                self._discard(p)

    @staticmethod
    def _discard(path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


__all__ = ["ReferenceCache", "Entry", "user_cache_dir", "limit_bytes", "key_digest"]
