"""Shared by the history tests: synthetic runs, and a real PostgreSQL server for the session.

The server is Debian's PostgreSQL (initdb, pg_ctl from /usr/lib/postgresql/*/bin, or
HHBENCH_PG_BIN), started under the `postgres` user when the tests run as root, with a
temporary data directory, listening on loopback on a free port. Where the binaries are
absent the PostgreSQL tests skip with that reason, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from hhbench.results import CaseResult, RunResults
from hhbench.timing import ProcessTiming


def case(backend, medians, *, stimulus="step", batch=1, device="cpu", rmse=1.0, gamma=0.9,
         count=0.0, status="ok", samples_per_process=3):
    """A case whose processes have exactly these medians (seconds)."""
    procs = tuple(ProcessTiming(prepare_s=0.01, cold_s=0.1,
                                samples_s=tuple([m * 0.99, m, m * 1.02][:samples_per_process]))
                  for m in medians)
    return CaseResult(backend=backend, stimulus=stimulus, batch=batch, device=device,
                      status=status, n_samples=100, dt_ms=0.05, reference="converged",
                      processes=procs,
                      accuracy={"rmse_mv_median": rmse, "gamma_median": gamma,
                                "spike_count_abs_error_mean": count},
                      settings={"kernel": "euler"})


def run(commit, cases, *, cpu="Test CPU", cores=8, time_utc="2026-12-01T00:00:00+00:00",
        calibration=None, gpus=(), dirty=False, options=None):
    env = {"cpu": cpu, "machine": "x86_64", "logical_cores": cores, "physical_cores": cores,
           "memory_gib": 16.0, "gpus": list(gpus), "hostname": "host", "time_utc": time_utc,
           "versions": {"python": "3.11", "hhbench": "0.1.0"},
           "git": {"commit": commit, "dirty": dirty},
           "hhbench_source": {"path": "/nonexistent/hhbench", "sha256": "ab" * 32}}
    return RunResults(settings={"processes": 3, "options": options or {}}, environment=env,
                      calibration=calibration or {"matmul_f32_512_s": 0.001,
                                                  "exp_f64_1m_s": 0.004},
                      cases=tuple(cases))


def sha(i: int) -> str:
    """A made-up 40-digit SHA whose first 4 digits tell it apart."""
    return f"{i:04x}" + "c0ffee" * 6


def day(i: int) -> str:
    return f"2026-{1 + i // 28:02d}-{1 + i % 28:02d}T12:00:00+00:00"


# -- PostgreSQL ------------------------------------------------------------------------------

def pg_bin() -> Path | None:
    """The folder holding initdb and pg_ctl, or None."""
    env = os.environ.get("HHBENCH_PG_BIN")
    candidates = [Path(env)] if env else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                         key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                         reverse=True)
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).parent)
    return next((c for c in candidates if (c / "initdb").exists() and (c / "pg_ctl").exists()),
                None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server():
    """(base URL without a database, an admin connection string) of a server for this
    session; skipped where PostgreSQL is not installed (failed in CI)."""
    binary = pg_bin()
    if binary is None:
        why = "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    # not in the session's temp folder: its parents are private to root, and the server
    # runs as `postgres`
    base = Path(tempfile.mkdtemp(prefix="pgtest-", dir="/tmp"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        os.chmod(base, 0o755)
        shutil.chown(base, "postgres", "postgres")
    data, port = base / "data", _free_port()
    try:
        subprocess.run(as_user + [str(binary / "initdb"), "-D", str(data), "-U", "postgres",
                                  "--auth=trust", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, text=True)
        subprocess.run(as_user + [str(binary / "pg_ctl"), "-D", str(data), "-l",
                                  str(base / "log"), "-w", "-o",
                                  f"-p {port} -k {base} -c listen_addresses=127.0.0.1 "
                                  "-c fsync=off -c max_connections=60", "start"],
                       check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {exc.stderr or exc.stdout}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(as_user + [str(binary / "pg_ctl"), "-D", str(data), "-m", "fast",
                                  "-w", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def new_database(server: str) -> str:
    """A fresh, empty database on the server; its URL."""
    import psycopg
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{server}/{name}"
