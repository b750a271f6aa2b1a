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
    """`path` as a file we can write: its folder exists and takes new files (a read-only
    file system, a folder without write permission are found now, by the user's path, not
    at the end of the work), it is not itself a folder, and an existing file there may be
    replaced."""
    path = Path(path)
    if path.is_dir():
        raise HHBenchError(f"cannot write {path}: it is a folder")
    if not path.parent.is_dir():
        raise HHBenchError(f"cannot write {path}: folder {path.parent} does not exist")
    check_writable_folder(path.parent, for_path=path)
    if path.exists() and not os.access(path, os.W_OK):
        raise HHBenchError(f"cannot write {path}: permission denied")
    return path


def check_output_folder(path: str | os.PathLike) -> Path:
    """`path` as a folder files can be written into, without creating it: an existing
    folder that takes new files, or a missing one whose parent exists and takes them."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise HHBenchError(f"cannot write into {path}: it is a file")
    if not path.exists() and not path.parent.is_dir():
        raise HHBenchError(f"cannot write into {path}: folder {path.parent} does not exist")
    check_writable_folder(path if path.exists() else path.parent, for_path=path)
    return path


def check_writable_folder(folder: Path, *, for_path: Path | None = None) -> Path:
    """`folder` if a file can be created in it (tried: a probe file made and removed), else
    HHBenchError naming `for_path` (or the folder) and the reason."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".hhbench-write-probe-")
    except OSError as exc:
        raise HHBenchError(f"cannot write {for_path or folder}: {exc.strerror or exc}"
                           f"{f' (folder {folder})' if for_path else ''}") from None
    os.close(fd)
    os.unlink(probe)
    return folder


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
