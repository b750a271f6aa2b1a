"""Writing files so that an interrupted or failed write leaves nothing broken behind.

Every file hhbench writes (results, CSV traces, plots, model files, training state) goes
through `atomic_writer`: the data lands in a temporary file in the target's folder, which
is renamed over the target only when writing succeeded (a rename within one file system
is atomic), and removed otherwise; file and rename are flushed to the disk (fsync). Files
get the usual permissions (0666 less the umask).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Callable
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


def current_umask() -> int:
    """This process' umask, read without changing it (setting it, even for a moment, races
    with other threads creating files): Linux reports it in /proc/self/status; elsewhere a
    probe folder is created with mode 0777 and its mode read back."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    probe = tempfile.mkdtemp(prefix=".hhbench-umask-probe-")  # 0700: made again below
    os.rmdir(probe)
    os.mkdir(probe, 0o777)
    try:
        return 0o777 & ~os.stat(probe).st_mode
    finally:
        os.rmdir(probe)


def _new_file_mode() -> int:
    """The permissions a new file gets here: 0666 less the umask."""
    return 0o666 & ~current_umask()


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (where folders can be opened: not on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder: nothing more to do
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "w"):
    """Context manager yielding a file object; the target appears only on success, and
    only complete: the data is flushed to the disk (fsync) before the rename, and the
    rename itself after it (fsync of the folder), so a crash or power cut leaves the old
    file or the new one. An OSError while writing (a full disk) names `path`."""
    path = check_output_path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _new_file_mode())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename in (None, "", tmp):
            # ENOSPC from write() or close() carries no file name: the user's path
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    _fsync_folder(path.parent)


def atomic_write(path: str | os.PathLike, data: str | bytes) -> None:
    """Write text or bytes to `path` atomically."""
    with atomic_writer(path, "wb" if isinstance(data, bytes) else "w") as fh:
        fh.write(data)


def write_files(*writes: tuple[Path, Callable[[Path], object]]) -> list[Path]:
    """Call each `write(path)` in the order given (the most valuable file first, so that a
    full disk costs the others); returns the paths written. An OSError becomes one line
    (HHBenchError) naming the path that failed, the reason, the files written before it
    and those not written after it."""
    written: list[Path] = []
    for k, (path, write) in enumerate(writes):
        try:
            write(path)
        except OSError as exc:
            message = f"cannot write {path}: {exc.strerror or exc}"
            if written:
                message += f"; wrote {', '.join(map(str, written))}"
            rest = [str(p) for p, _ in writes[k + 1:]]
            if rest:
                message += f"; not written: {', '.join(rest)}"
            raise HHBenchError(message) from None
        written.append(Path(path))
    return written
