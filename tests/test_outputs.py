"""Writing results: crash consistency (atomic, synced files; the umask left alone) and a
full disk (a real 64 KiB tmpfs, mounted where the user may: root, as in CI): what was
found is printed first, the path that failed is named, the most valuable file is written
first, what was not written is said, and no empty folder is left behind."""

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hhbench.atomic import atomic_write, current_umask
from hhbench.devices import nvidia_driver_present

CLI = [sys.executable, "-c", "import sys; from hhbench.cli import main; sys.exit(main())"]


def _cli(*argv, **kw):
    return subprocess.run([*CLI, *map(str, argv)], capture_output=True, text=True,
                          timeout=600, **kw)


# -- crash consistency -----------------------------------------------------------------------

def test_files_get_0666_less_the_umask_and_the_umask_is_never_set(tmp_path, monkeypatch):
    """The mode is read, not set and put back (os.umask(0) for a moment races with other
    threads creating files)."""
    old = os.umask(0o027)
    try:
        def no_umask(mask):
            raise AssertionError("os.umask called while writing")
        monkeypatch.setattr(os, "umask", no_umask)
        assert current_umask() == 0o027
        atomic_write(tmp_path / "a.json", "{}")
    finally:
        monkeypatch.undo()
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640


def test_the_file_is_synced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    """fsync of the data (a crash after the rename must not leave an empty file under the
    final name) and of the folder (the rename itself must reach the disk). The fsync
    calls are watched, and made."""
    synced = []
    real = os.fsync
    target = tmp_path / "r.json"

    def watching(fd):
        info = os.fstat(fd)
        synced.append(("folder" if stat.S_ISDIR(info.st_mode) else "file",
                       target.exists()))
        return real(fd)
    monkeypatch.setattr(os, "fsync", watching)
    atomic_write(target, "{}")
    assert ("file", False) in synced            # the data, before the rename
    assert synced[-1] == ("folder", True)       # the rename, after it


def test_a_worker_report_is_replaced_atomically(tmp_path):
    """The worker's report is written to a new file and renamed over the old one: a
    reader (the parent, after a crash) holding the old file still reads it whole, never a
    truncated mix; written in place, the old file's content would change under it."""
    from hhbench.workers import _write_json
    path = tmp_path / "out.json"
    _write_json(path, {"cases": {"0": {"samples_s": [1.0]}}, "record": {}})
    with open(path) as old:
        _write_json(path, {"cases": {"0": {"samples_s": [1.0]}, "1": {"error": "x" * 5000}},
                          "record": {"done": True}})
        assert json.loads(old.read()) == {"cases": {"0": {"samples_s": [1.0]}},
                                          "record": {}}
    assert json.loads(path.read_text())["record"] == {"done": True}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_write_that_fails_names_the_users_path(tmp_path):
    """An OSError from write() carries no file name (ENOSPC): atomic_writer adds the
    target's, not the temporary file's."""
    from hhbench.atomic import atomic_writer
    with pytest.raises(OSError) as caught:
        with atomic_writer(tmp_path / "r.json") as fh:
            fh.write("{")
            raise OSError(28, "No space left on device")
    assert caught.value.filename == str(tmp_path / "r.json")
    assert list(tmp_path.iterdir()) == []


# -- a full disk -------------------------------------------------------------------------

def _mount_tmpfs(folder: Path, size: int) -> bool:
    folder.mkdir(exist_ok=True)
    return os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """mount(size) -> a folder on a tmpfs of `size` bytes, unmounted after the test."""
    mounted = []

    def mount(size: int = 64 * 1024) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        if not _mount_tmpfs(folder, size):
            pytest.skip("cannot mount a tmpfs here (needs root, as in CI)")
        mounted.append(folder)
        return folder
    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], capture_output=True)


def _fill(folder: Path) -> None:
    """Take every free byte of `folder`'s file system with a file named filler."""
    with open(folder / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass


@pytest.fixture(scope="module")
def results_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("results") / "r.json"
    proc = _cli("run", "--quick", "--no-progress", "--backends", "numpy,numba", "--stimuli",
                "step", "--processes", "1", "-o", out)
    assert proc.returncode == 0, proc.stderr
    return out


def test_run_on_a_full_disk_prints_the_table_and_names_the_file(small_disk):
    full = small_disk()
    proc = _cli("run", "--quick", "--no-progress", "--backends", "numpy,numba", "--stimuli",
                "step", "--processes", "1", "-o", full / "r.json")
    assert proc.returncode == 2
    assert "numba " in proc.stdout and "warm_median_ms" in proc.stdout  # the table
    err = proc.stderr.strip().splitlines()
    assert err == [f"hhbench: error: cannot write {full / 'r.json'}: No space left on "
                   f"device; not written: {full / 'r.csv'}"], err
    assert list(full.iterdir()) == []


def test_simulate_writes_the_csv_first_and_says_the_plot_was_not_written(small_disk,
                                                                         tmp_path):
    """A disk with room for the CSV (measured on a normal folder; the trace is
    deterministic) and not a page more: the CSV is written whole, the PNG is named."""
    argv = ["simulate", "--backend", "numpy", "--samples", "3000"]
    probe = tmp_path / "probe.csv"
    assert _cli(*argv, "-o", probe).returncode == 0
    pages = -(-probe.stat().st_size // 4096)
    disk = small_disk(pages * 4096)
    proc = _cli(*argv, "-o", disk / "v.csv", "--plot", disk / "v.png")
    assert proc.returncode == 2
    assert "spikes" in proc.stdout  # what was found, printed first
    assert proc.stderr.strip() == (f"hhbench: error: cannot write {disk / 'v.png'}: No space "
                                   f"left on device; wrote {disk / 'v.csv'}")
    assert (disk / "v.csv").read_bytes() == probe.read_bytes()
    assert sorted(p.name for p in disk.iterdir()) == ["v.csv"]


def test_plot_on_a_full_disk_leaves_no_empty_folder(small_disk, results_file):
    full = small_disk()
    _fill(full)
    proc = _cli("plot", results_file, "-o", full / "plots")
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert err.startswith(f"hhbench: error: cannot write {full / 'plots' / 'cost_vs_batch.png'}"
                          ": No space left on device; not written: "), err
    assert [p.name for p in full.iterdir()] == ["filler"]  # no empty plots/


def test_scaling_on_a_full_disk_writes_the_json_first_or_nothing(small_disk):
    full = small_disk()
    _fill(full)
    proc = _cli("scaling", "--backends", "numpy", "--max-batch", "2", "--samples", "100",
                "--lengths", "100,200", "--budget-s", "0.2", "--device", "cpu",
                "--no-progress", "-o", full / "s")
    assert proc.returncode == 2
    assert "| numpy" in proc.stdout  # the table, first
    assert proc.stderr.strip() == (
        f"hhbench: error: cannot write {full / 's' / 'scaling.json'}: No space left on "
        f"device; not written: {full / 's' / 'scaling.csv'}, {full / 's' / 'scaling.md'}, "
        f"{full / 's' / 'scaling.png'}")
    assert [p.name for p in full.iterdir()] == ["filler"]  # no empty folder s/


@pytest.mark.skipif(nvidia_driver_present(), reason="a GPU is here: not refused")
def test_a_refused_scaling_request_creates_no_folder(tmp_path):
    """A GPU asked for on a machine without one: refused before any work, and the output
    folder, not there before, is not made."""
    proc = _cli("scaling", "--backends", "numpy", "--device", "gpu", "-o", tmp_path / "x")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert list(tmp_path.iterdir()) == []
