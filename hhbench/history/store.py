"""The history store: every recorded run, in SQLite or PostgreSQL, through SQLAlchemy Core.

Tables (prefix `hh_`):
  * `meta`: the schema's name and version, checked whenever a store is opened;
  * `machine`: one per fingerprint, the SHA-256 of what makes machines comparable (CPU model,
    logical and physical cores, memory, architecture, GPU names, drivers and memory);
  * `commit`: the git commit (SHA), its committer date, branch and parents where a
    repository was at hand when the run was recorded;
  * `run`: one per results file (`run_key`, the SHA-256 of its settings, environment,
    calibration and cases, so recording the same run twice gives one run), with its
    machine, commit, whether the tree was dirty, the sources' hash, settings, environment,
    calibration kernels and their rate, and the "excluded" flag and its reason;
  * `case`: backend, stimulus, batch, device, options, precision and runtime;
  * `result`: one per (run, case): status, the median over processes, every process'
    median and samples (JSON), the accuracy metrics (RMSE, Γ, spike-count error as columns,
    the whole summary as JSON);
  * `mark`: an intended change at a commit, with its reason.

A run is recorded in one transaction: it is all there or not at all. SQLite runs in WAL
mode and takes its write lock at the start of each transaction (`BEGIN IMMEDIATE`), so
concurrent writers wait for each other (up to 60 s) instead of failing halfway; in
PostgreSQL the rows that writers share (machine, commit, case) are inserted with
ON CONFLICT DO NOTHING.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import statistics
import subprocess
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from hhbench.errors import HHBenchError
from hhbench.results import RunResults

SCHEMA_NAME = "hhbench-history"
SCHEMA_VERSION = 1
DEFAULT_STORE = Path(".hhbench") / "history.db"
#: accuracy metrics kept as columns: (column, key in the accuracy summary)
ACCURACY = (("rmse_mv", "rmse_mv_median"), ("gamma", "gamma_median"),
            ("spike_count_error", "spike_count_abs_error_mean"))
#: older schema versions this code can bring up to SCHEMA_VERSION: {version: function(conn)}
MIGRATIONS: dict = {}

metadata = sa.MetaData()
meta_t = sa.Table("hh_meta", metadata,
                  sa.Column("key", sa.String(64), primary_key=True),
                  sa.Column("value", sa.Text, nullable=False))
machine_t = sa.Table("hh_machine", metadata,
                     sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                     sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
                     sa.Column("description", sa.Text, nullable=False),
                     sa.Column("cpu", sa.Text),
                     sa.Column("logical_cores", sa.Integer),
                     sa.Column("memory_gib", sa.Float),
                     sa.Column("gpus", sa.Text, nullable=False),
                     sa.Column("hostname", sa.Text))
commit_t = sa.Table("hh_commit", metadata,
                    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("sha", sa.String(80), nullable=False, unique=True),
                    sa.Column("date_utc", sa.String(40)),
                    sa.Column("branch", sa.Text),
                    sa.Column("parents", sa.Text, nullable=False))
run_t = sa.Table("hh_run", metadata,
                 sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                 sa.Column("run_key", sa.String(64), nullable=False, unique=True),
                 sa.Column("machine_id", sa.ForeignKey("hh_machine.id"), nullable=False,
                           index=True),
                 sa.Column("commit_id", sa.ForeignKey("hh_commit.id"), nullable=False,
                           index=True),
                 sa.Column("dirty", sa.Boolean),
                 sa.Column("time_utc", sa.String(40)),
                 sa.Column("sources_sha256", sa.String(64)),
                 sa.Column("settings", sa.Text, nullable=False),
                 sa.Column("environment", sa.Text, nullable=False),
                 sa.Column("calibration", sa.Text, nullable=False),
                 sa.Column("calibration_s", sa.Float),
                 sa.Column("excluded", sa.Boolean, nullable=False, default=False),
                 sa.Column("excluded_reason", sa.Text),
                 sa.Column("origin", sa.Text),
                 sa.Column("recorded_utc", sa.String(40), nullable=False))
case_t = sa.Table("hh_case", metadata,
                  sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                  sa.Column("case_key", sa.String(64), nullable=False, unique=True),
                  sa.Column("backend", sa.String(200), nullable=False),
                  sa.Column("stimulus", sa.String(200), nullable=False),
                  sa.Column("batch", sa.Integer, nullable=False),
                  sa.Column("device", sa.String(200), nullable=False),
                  sa.Column("options", sa.Text, nullable=False),
                  sa.Column("precision", sa.String(40)),
                  sa.Column("runtime", sa.String(80)))
result_t = sa.Table("hh_result", metadata,
                    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("run_id", sa.ForeignKey("hh_run.id"), nullable=False, index=True),
                    sa.Column("case_id", sa.ForeignKey("hh_case.id"), nullable=False,
                              index=True),
                    sa.Column("status", sa.String(20), nullable=False),
                    sa.Column("median_s", sa.Float),
                    sa.Column("process_medians_s", sa.Text, nullable=False),
                    # the moments of the log per-process medians, what the analysis reads
                    sa.Column("n_processes", sa.Integer, nullable=False),
                    sa.Column("log_mean", sa.Float),
                    sa.Column("log_sd", sa.Float),
                    sa.Column("processes", sa.Text, nullable=False),
                    sa.Column("rmse_mv", sa.Float),
                    sa.Column("gamma", sa.Float),
                    sa.Column("spike_count_error", sa.Float),
                    sa.Column("accuracy", sa.Text, nullable=False),
                    sa.UniqueConstraint("run_id", "case_id"))
mark_t = sa.Table("hh_mark", metadata,
                  sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                  sa.Column("commit_id", sa.ForeignKey("hh_commit.id"), nullable=False),
                  sa.Column("reason", sa.Text, nullable=False),
                  sa.Column("created_utc", sa.String(40), nullable=False))
TABLES = tuple(t.name for t in metadata.sorted_tables)


def _json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _sha(obj) -> str:
    return hashlib.sha256(_json(obj).encode()).hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def store_url(store: str | Path | None) -> str:
    """A SQLAlchemy URL for `--store`: postgresql://… (driven by psycopg 3), sqlite:///…, or
    a file path (SQLite); None is `.hhbench/history.db` in the current folder."""
    text = str(store if store is not None else DEFAULT_STORE)
    if text.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + text.split("://", 1)[1]
    if "://" in text:
        if text.startswith(("postgresql+psycopg://", "sqlite://")):
            return text
        raise HHBenchError(f"--store {text}: neither a file path, sqlite:/// nor "
                           "postgresql:// URL")
    return "sqlite:///" + str(Path(text).expanduser().resolve())


def _shown(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a message must not fail
        return url


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0]


# -- what a run holds ------------------------------------------------------------------------

def machine_record(env: dict) -> dict:
    """The machine's row: its fingerprint hashes what makes two machines comparable."""
    gpus = [{k: g.get(k) for k in ("name", "driver", "memory")} for g in env.get("gpus") or []]
    ident = {"cpu": env.get("cpu"), "logical_cores": env.get("logical_cores"),
             "physical_cores": env.get("physical_cores"), "memory_gib": env.get("memory_gib"),
             "arch": env.get("machine"), "gpus": gpus}
    gpu = ", ".join(f"{g['name']} (driver {g['driver']})" for g in gpus) or "no GPU"
    desc = (f"{env.get('cpu')}, {env.get('logical_cores')} cores, "
            f"{env.get('memory_gib')} GiB, {gpu}")
    return {"fingerprint": _sha(ident), "description": desc, "cpu": env.get("cpu"),
            "logical_cores": env.get("logical_cores"), "memory_gib": env.get("memory_gib"),
            "gpus": _json(gpus), "hostname": env.get("hostname")}


def calibration_seconds(calibration: dict) -> float | None:
    """One figure for the machine's speed: the geometric mean of the calibration kernels'
    times (seconds; their rate is its inverse). None when the run has none."""
    times = [float(v) for k, v in sorted(calibration.items())
             if k.endswith("_s") and isinstance(v, (int, float)) and v > 0]
    return math.exp(sum(map(math.log, times)) / len(times)) if times else None


def case_record(case, run_options: dict) -> dict:
    """The case's row: options are the run's options for its backend (canonical JSON);
    precision and runtime from the case's own settings, else from those options."""
    options = dict((run_options or {}).get(case.backend) or {})
    settings = case.settings or {}
    precision = settings.get("precision", options.get("precision"))
    runtime = settings.get("runtime", options.get("runtime"))
    rec = {"backend": case.backend, "stimulus": case.stimulus, "batch": int(case.batch),
           "device": case.device, "options": _json(options),
           "precision": None if precision is None else str(precision),
           "runtime": None if runtime is None else str(runtime)}
    rec["case_key"] = _sha(rec)
    return rec


def log_moments(medians: list[float]) -> dict:
    """n, mean and standard deviation (ddof 1; None below 2) of the log per-process medians
    (positive ones; the mean is None without any)."""
    logs = [math.log(m) for m in medians if m and m > 0]
    return {"n_processes": len(logs),
            "log_mean": statistics.fmean(logs) if logs else None,
            "log_sd": statistics.stdev(logs) if len(logs) >= 2 else None}


def run_key(results: RunResults) -> str:
    """The SHA-256 of the run's settings, environment, calibration and cases: the same run
    recorded twice (from `hhbench run --store` and again from its file) has one key."""
    d = results.to_dict()
    d.pop("examples", None)
    return _sha(d)


def commit_info(sha: str, repos: list[Path]) -> dict:
    """Committer date (UTC, ISO), parents and branch (the checked-out one where it holds the
    commit, else the first local branch that does) of `sha` from the first repository in
    `repos` that has it; {} where none does (or git is absent)."""
    for repo in repos:
        try:
            out = subprocess.run(["git", "-C", str(repo), "show", "-s", "--format=%cI%n%P",
                                  sha], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return {}
        if out.returncode != 0:
            continue
        lines = out.stdout.strip().splitlines() + [""]
        date = dt.datetime.fromisoformat(lines[0].strip()).astimezone(dt.timezone.utc)
        def lines_of(*args):
            return subprocess.run(["git", "-C", str(repo), *args], capture_output=True,
                                  text=True, timeout=10).stdout.split()
        # the checked-out branch where it holds the commit, else the first that does
        branches = lines_of("branch", "--format=%(refname:short)", "--contains", sha)
        current = lines_of("branch", "--show-current")
        branch = current[0] if current and current[0] in branches else \
            (branches[0] if branches else None)
        return {"date_utc": date.isoformat(timespec="seconds"), "parents": lines[1].split(),
                "branch": branch}
    return {}


# -- the store -------------------------------------------------------------------------------

def _insert(conn):
    """The dialect's INSERT, which has ON CONFLICT DO NOTHING."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def _upsert(conn, table, values: dict, key: str) -> int:
    """The id of the row whose `key` equals values[key], inserting it if absent (a
    concurrent writer's insert of the same row is not an error)."""
    conn.execute(_insert(conn)(table).values(**values)
                 .on_conflict_do_nothing(index_elements=[key]))
    return conn.execute(sa.select(table.c.id).where(table.c[key] == values[key])).scalar_one()


class Store:
    """An open history store (see the module doc); `Store.open(url)` checks its schema."""

    def __init__(self, engine: sa.Engine, url: str):
        self.engine = engine
        self.url = url

    # -- opening --------------------------------------------------------------------------
    @classmethod
    def open(cls, store: str | Path | None = None, *, create: bool = True) -> "Store":
        """Open (and, where `create`, make) the store at `store` (see `store_url`).
        HHBenchError, in one line, for an unreachable database, a file that is no SQLite
        database, a store of another schema or of a newer version."""
        url = store_url(store)
        is_sqlite = url.startswith("sqlite")
        if is_sqlite:
            path = Path(url.removeprefix("sqlite:///"))
            if not path.exists():
                if not create:
                    raise HHBenchError(f"{store or DEFAULT_STORE}: no such history store")
                if store is None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                elif not path.parent.is_dir():
                    raise HHBenchError(f"--store {store}: folder {path.parent} does not exist")
            engine = sa.create_engine(url, connect_args={"timeout": 60})

            @event.listens_for(engine, "connect")
            def _connect(dbapi_conn, _record):
                dbapi_conn.isolation_level = None  # SQLAlchemy's BEGIN below, not pysqlite's
                dbapi_conn.execute("PRAGMA busy_timeout = 60000")
                dbapi_conn.execute("PRAGMA foreign_keys = ON")
                # outside any transaction: WAL lets readers work while one process writes
                mode = dbapi_conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise HHBenchError(f"{store}: SQLite refused WAL mode ({mode})")

            @event.listens_for(engine, "begin")
            def _begin(conn):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            engine = sa.create_engine(url, pool_pre_ping=True,
                                      connect_args={"connect_timeout": 10})
        self = cls(engine, url)
        try:
            self._check_schema(create)
        except HHBenchError:
            engine.dispose()
            raise
        except (DBAPIError, SQLAlchemyError) as exc:
            engine.dispose()
            raise HHBenchError(f"cannot open the history store {_shown(url)}: "
                               f"{_first_line(exc)}") from None
        return self

    def _check_schema(self, create: bool) -> None:
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # one creator at a time
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7263520032)"))
            names = set(sa.inspect(conn).get_table_names())
            shown = _shown(self.url)
            if "hh_meta" not in names:
                if names:
                    raise HHBenchError(f"{shown} is not an hhbench history store (it holds "
                                       f"tables {', '.join(sorted(names)[:5])})")
                if not create:
                    raise HHBenchError(f"{shown}: an empty database, not a history store")
                metadata.create_all(conn)
                conn.execute(meta_t.insert(), [{"key": "schema", "value": SCHEMA_NAME},
                                               {"key": "version", "value": str(SCHEMA_VERSION)}])
                return
            meta = dict(conn.execute(sa.select(meta_t.c.key, meta_t.c.value)).all())
            if meta.get("schema") != SCHEMA_NAME:
                raise HHBenchError(f"{shown} is a store of another schema "
                                   f"({meta.get('schema')!r}, not {SCHEMA_NAME!r})")
            try:
                version = int(meta.get("version", ""))
            except ValueError:
                raise HHBenchError(f"{shown}: unreadable schema version "
                                   f"{meta.get('version')!r}") from None
            if version > SCHEMA_VERSION:
                raise HHBenchError(f"{shown} has history schema {version}, newer than this "
                                   f"hhbench reads ({SCHEMA_VERSION}): upgrade hhbench")
            while version < SCHEMA_VERSION:
                if version not in MIGRATIONS:
                    raise HHBenchError(f"{shown} has history schema {version}, which this "
                                       f"hhbench cannot migrate to {SCHEMA_VERSION}")
                MIGRATIONS[version](conn)
                version += 1
                conn.execute(meta_t.update().where(meta_t.c.key == "version")
                             .values(value=str(version)))

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextmanager
    def _tx(self, what: str):
        """A transaction; database errors become one line naming the store."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except (DBAPIError, SQLAlchemyError) as exc:
            raise HHBenchError(f"{what} in {_shown(self.url)}: {_first_line(exc)}") from None

    # -- writing --------------------------------------------------------------------------
    def record(self, results: RunResults, *, origin: str | None = None,
               repos: list[Path] | None = None) -> tuple[int, bool]:
        """Record one run in one transaction; (run id, whether it is new). A run already
        in the store (same `run_key`) is left as it is."""
        env = results.environment or {}
        git = env.get("git") or {}
        source = env.get("hhbench_source") or {}
        sha = git.get("commit")
        if not sha:  # not a git checkout: the sources' hash stands for the commit
            sha = "sources:" + (source.get("sha256") or run_key(results))[:40]
            info = {}
        else:
            if repos is None:
                repos = [Path(source["path"]).parent] if source.get("path") else []
                repos.append(Path.cwd())
            info = commit_info(sha, repos)
        commit = {"sha": sha, "date_utc": info.get("date_utc") or env.get("time_utc"),
                  "branch": info.get("branch"), "parents": _json(info.get("parents", []))}
        machine = machine_record(env)
        key = run_key(results)
        options = (results.settings or {}).get("options") or {}
        with self._tx("recording a run") as conn:
            existing = conn.execute(sa.select(run_t.c.id).where(run_t.c.run_key == key)).scalar()
            if existing is not None:
                return existing, False
            machine_id = _upsert(conn, machine_t, machine, "fingerprint")
            commit_id = _upsert(conn, commit_t, commit, "sha")
            if info:  # a repository knew more than an earlier recording did
                conn.execute(commit_t.update().where(commit_t.c.id == commit_id)
                             .where(commit_t.c.parents == "[]")
                             .values(parents=commit["parents"], date_utc=commit["date_utc"],
                                     branch=commit["branch"]))
            # a writer recording the same run at this moment: nothing inserted, its run kept
            run_id = conn.execute(_insert(conn)(run_t).on_conflict_do_nothing(
                index_elements=["run_key"]).values(
                run_key=key, machine_id=machine_id, commit_id=commit_id,
                dirty=git.get("dirty"), time_utc=env.get("time_utc"),
                sources_sha256=source.get("sha256"),
                settings=_json(_safe(results.settings)), environment=_json(_safe(env)),
                calibration=_json(_safe(results.calibration)),
                calibration_s=calibration_seconds(results.calibration or {}),
                excluded=False, origin=origin, recorded_utc=_now())).inserted_primary_key
            run_id = run_id[0] if run_id else None
            if run_id is None:
                return conn.execute(sa.select(run_t.c.id).where(run_t.c.run_key == key)
                                    ).scalar_one(), False
            rows = []
            for case in results.cases:
                case_id = _upsert(conn, case_t, case_record(case, options), "case_key")
                medians = [float(m) for m in case.process_medians()] if case.processes else []
                acc = _safe(case.accuracy or {})
                rows.append({
                    "run_id": run_id, "case_id": case_id, "status": case.status,
                    "median_s": statistics.median(medians) if medians else None,
                    "process_medians_s": _json(medians), **log_moments(medians),
                    "processes": _json([p.to_dict() for p in case.processes]),
                    "accuracy": _json({k: v for k, v in acc.items() if k != "per_trace"}),
                    **{col: _finite(acc.get(k)) for col, k in ACCURACY}})
            if rows:
                conn.execute(result_t.insert(), rows)
        return run_id, True

    def exclude(self, run_id: int, reason: str) -> None:
        """Leave run `run_id` out of the analysis (it stays in the store)."""
        with self._tx("excluding a run") as conn:
            done = conn.execute(run_t.update().where(run_t.c.id == run_id)
                                .values(excluded=True, excluded_reason=reason)).rowcount
            if not done:
                raise HHBenchError(f"no run {run_id} in the store (see `hhbench history show`)")

    def mark(self, rev: str, reason: str) -> str:
        """Record an intended change at commit `rev` (a SHA or its unique prefix); the SHA."""
        with self._tx("marking a commit") as conn:
            cid, sha = self._resolve(conn, rev)
            conn.execute(mark_t.insert().values(commit_id=cid, reason=reason,
                                                created_utc=_now()))
        return sha

    # -- reading --------------------------------------------------------------------------
    def _resolve(self, conn, rev: str) -> tuple[int, str]:
        rev = rev.strip()
        if not re.fullmatch(r"[0-9a-fA-F]{4,64}|sources:[0-9a-f]{1,64}", rev):
            raise HHBenchError(f"commit {rev!r}: give at least 4 hex digits of its SHA")
        found = conn.execute(sa.select(commit_t.c.id, commit_t.c.sha)
                             .where(commit_t.c.sha.like(rev.lower() + "%")).limit(2)).all()
        if not found:
            raise HHBenchError(f"unknown commit {rev!r}: no run of it in the store")
        if len(found) > 1:
            raise HHBenchError(f"commit {rev!r} is ambiguous in the store: give more of it")
        return found[0][0], found[0][1]

    def resolve_commit(self, rev: str) -> str:
        """The full SHA of a commit in the store from `rev` (SHA or unique prefix)."""
        with self._tx("reading commits") as conn:
            return self._resolve(conn, rev)[1]

    def machines(self) -> list[dict]:
        with self._tx("reading machines") as conn:
            return [dict(r._mapping) for r in conn.execute(
                sa.select(machine_t).order_by(machine_t.c.id))]

    def commits(self) -> list[dict]:
        with self._tx("reading commits") as conn:
            rows = [dict(r._mapping) for r in conn.execute(sa.select(commit_t))]
        for r in rows:
            r["parents"] = json.loads(r["parents"])
        return rows

    def cases(self) -> list[dict]:
        with self._tx("reading cases") as conn:
            rows = [dict(r._mapping) for r in conn.execute(
                sa.select(case_t).order_by(case_t.c.backend, case_t.c.stimulus,
                                           case_t.c.batch, case_t.c.device, case_t.c.id))]
        for r in rows:
            r["options"] = json.loads(r["options"])
        return rows

    def marks(self) -> list[dict]:
        with self._tx("reading marks") as conn:
            return [dict(r._mapping) for r in conn.execute(
                sa.select(mark_t.c.id, commit_t.c.sha, mark_t.c.reason, mark_t.c.created_utc)
                .join(commit_t, commit_t.c.id == mark_t.c.commit_id).order_by(mark_t.c.id))]

    def runs(self) -> list[dict]:
        cols = [run_t.c.id, run_t.c.machine_id, commit_t.c.sha, run_t.c.time_utc,
                run_t.c.dirty, run_t.c.calibration_s, run_t.c.excluded,
                run_t.c.excluded_reason, run_t.c.origin, run_t.c.sources_sha256]
        with self._tx("reading runs") as conn:
            return [dict(r._mapping) for r in conn.execute(
                sa.select(*cols).join(commit_t, commit_t.c.id == run_t.c.commit_id)
                .order_by(run_t.c.id))]

    def points(self, *, case_ids=None, machine_ids=None, include_excluded=False) -> list[dict]:
        """One row per (run, case) result: machine, case, commit SHA, run, status, the
        per-process medians (seconds) and the accuracy columns; excluded runs left out."""
        q = (sa.select(run_t.c.machine_id, result_t.c.case_id, commit_t.c.sha,
                       result_t.c.run_id, result_t.c.status, result_t.c.median_s,
                       result_t.c.process_medians_s, run_t.c.calibration_s,
                       run_t.c.excluded, run_t.c.excluded_reason, commit_t.c.date_utc,
                       commit_t.c.branch,
                       *(result_t.c[col] for col, _ in ACCURACY))
             .join(run_t, run_t.c.id == result_t.c.run_id)
             .join(commit_t, commit_t.c.id == run_t.c.commit_id))
        if not include_excluded:
            q = q.where(run_t.c.excluded == sa.false())
        if case_ids is not None:
            q = q.where(result_t.c.case_id.in_(list(case_ids)))
        if machine_ids is not None:
            q = q.where(run_t.c.machine_id.in_(list(machine_ids)))
        with self._tx("reading results") as conn:
            rows = [dict(r._mapping) for r in conn.execute(q)]
        for r in rows:
            r["process_medians_s"] = json.loads(r["process_medians_s"])
        return rows

    def series_rows(self, *, case_ids=None, machine_ids=None) -> list[tuple]:
        """What the analysis reads, as plain tuples (fast for a million results):
        (machine id, case id, commit SHA, run id, status, n, mean and sd of the log
        per-process medians, calibration_s, rmse_mv, gamma, spike_count_error); excluded
        runs left out."""
        q = (sa.select(run_t.c.machine_id, result_t.c.case_id, commit_t.c.sha,
                       result_t.c.run_id, result_t.c.status, result_t.c.n_processes,
                       result_t.c.log_mean, result_t.c.log_sd, run_t.c.calibration_s,
                       *(result_t.c[col] for col, _ in ACCURACY))
             .join(run_t, run_t.c.id == result_t.c.run_id)
             .join(commit_t, commit_t.c.id == run_t.c.commit_id)
             .where(run_t.c.excluded == sa.false()))
        if case_ids is not None:
            q = q.where(result_t.c.case_id.in_(list(case_ids)))
        if machine_ids is not None:
            q = q.where(run_t.c.machine_id.in_(list(machine_ids)))
        with self._tx("reading results") as conn:
            return [tuple(r) for r in conn.execute(q)]

    def run_detail(self, run_id: int) -> dict:
        with self._tx("reading a run") as conn:
            row = conn.execute(sa.select(run_t).where(run_t.c.id == run_id)).first()
        if row is None:
            raise HHBenchError(f"no run {run_id} in the store")
        return dict(row._mapping)

    def counts(self) -> dict:
        with self._tx("counting") as conn:
            return {t.name.removeprefix("hh_"): conn.execute(
                sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in (machine_t, commit_t, run_t, case_t, result_t, mark_t)}


def _finite(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _safe(obj):
    """JSON-safe copy (NaN and infinities as None)."""
    if isinstance(obj, dict):
        return {str(k): _safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "tolist"):
        return _safe(obj.tolist())
    return obj
