"""Writing files so that an interrupted or failed write leaves nothing broken behind.

Every file hhbench writes (results, CSV traces, plots, model files, training state) goes
through `atomic_writer`: the data lands in a temporary file in the target's folder, which
is renamed over the target only when writing succeeded (a rename within one file system
is atomic), and removed otherwise. Files get the usual permissions (0666 less the umask).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from hhbench.errors import HHBenchError


def check_output_path(path: str | os.PathLike) -> Path:
    """`path` as a file we can write: its folder exists and it is not itself a folder."""
    path = Path(path)
    if path.is_dir():
        raise HHBenchError(f"cannot write {path}: it is a folder")
    if not path.parent.is_dir():
        raise HHBenchError(f"cannot write {path}: folder {path.parent} does not exist")
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "w"):
    """Context manager yielding a file object; the target appears only on success."""
    path = check_output_path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: str | bytes) -> None:
    """Write text or bytes to `path` atomically."""
    with atomic_writer(path, "wb" if isinstance(data, bytes) else "w") as fh:
        fh.write(data)
