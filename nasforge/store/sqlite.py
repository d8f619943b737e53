"""SQLite store: one file per study in WAL mode; checkpoints live as files beside it."""
from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable, Iterator


from nasforge.errors import StoreError
from nasforge.store.base import Trial
from nasforge.store.encoding import dumps
from nasforge.types import ArchDict, JSONValue, Metrics, TrialState

SCHEMA_VERSION = 1
DB_NAME = "study.db"

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY, state TEXT NOT NULL, arch TEXT NOT NULL, budget REAL NOT NULL,
    budget_used REAL NOT NULL DEFAULT 0, metrics TEXT NOT NULL DEFAULT '{}', loss REAL, seed INTEGER NOT NULL,
    error TEXT, parent INTEGER, created_at REAL, started_at REAL, finished_at REAL,
    duration REAL NOT NULL DEFAULT 0, checkpoint TEXT);
CREATE TABLE IF NOT EXISTS curves (trial_id INTEGER NOT NULL, step REAL NOT NULL, metrics TEXT NOT NULL,
    PRIMARY KEY (trial_id, step));
CREATE TABLE IF NOT EXISTS rungs (trial_id INTEGER NOT NULL, budget REAL NOT NULL, metrics TEXT NOT NULL,
    loss REAL, finished_at REAL, PRIMARY KEY (trial_id, budget));
CREATE INDEX IF NOT EXISTS trials_state ON trials (state);
"""


def _kept_in_memory(directory: Path) -> str:
    """Why a study directory has no database: its config kept the trials in memory."""
    config = directory / "config.yaml"
    try:
        memory = config.is_file() and "\nstore: memory\n" in "\n" + config.read_text()
    except OSError:
        memory = False
    return "; its config says store: memory, which keeps nothing after the search ended" if memory else ""


class SQLiteStore:
    """See :mod:`nasforge.store.base` for the contract."""

    def __init__(self, directory: str | Path, *, create: bool = True, read_only: bool = False):
        """``create``: make the study if there is none (a new search); else it must exist.
        ``read_only`` (status, report): never write, not even the file's journal mode, so a
        reader cannot disturb a writer; a busy database is waited for (30 s)."""
        self.directory = Path(directory)
        self.path = self.directory / DB_NAME
        self.location = str(self.path)
        self.read_only = read_only
        self.damaged: list[str] = []  # rows that could not be read (what is damaged, for the user)
        exists = self.path.exists()
        if not exists and (not create or read_only):
            raise StoreError(f"No study at {str(self.directory)!r} (no {DB_NAME} there{_kept_in_memory(self.directory)})")
        wal = self.path.with_name(DB_NAME + "-wal")  # in WAL mode the data may all sit there, before a checkpoint
        if (exists and (read_only or not create) and self.path.stat().st_size == 0
                and not (wal.exists() and wal.stat().st_size > 0)):  # a new search may take an empty file over
            raise StoreError(f"{self.path} is empty (0 bytes): not a nasforge study, or one cut short before its "
                             f"first write")
        if not exists:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # e.g. the path is a file
                raise StoreError(f"Cannot create a study directory at {str(self.directory)!r}: {exc}") from exc
        self._db = self._connect()
        try:
            if not read_only:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
                self._db.executescript(_DDL)
            version = self.get_meta("schema_version")
        except sqlite3.OperationalError as exc:
            self._db.close()
            from nasforge.store.lock import driver_running
            if read_only and driver_running(self.directory):
                raise StoreError(f"the study in {str(self.directory)!r} is being created by a running search; "
                                 f"look again in a moment") from None
            if "readonly" in str(exc) or "read-only" in str(exc):
                raise StoreError(f"{self.path} is read-only here; status and report can read it, a search cannot "
                                 f"continue it") from None
            raise StoreError(f"{self.path} cannot be read: {exc}") from None
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"{self.path} is not a nasforge study database, or is damaged: {exc}") from None
        self._depth = 0
        if version is None and not read_only:
            self.set_meta("schema_version", SCHEMA_VERSION)
        elif version is None:
            from nasforge.store.lock import driver_running
            if driver_running(self.directory):
                raise StoreError(f"the study in {str(self.directory)!r} is being created by a running search; "
                                 f"look again in a moment")
            raise StoreError(f"{self.path} is not a nasforge study database (no schema version)")
        elif version != SCHEMA_VERSION:
            raise StoreError(f"{self.path} has store schema version {version}; this nasforge reads version {SCHEMA_VERSION}")

    def _connect(self) -> sqlite3.Connection:
        try:
            if not self.read_only:
                return sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            import os
            # In a directory this process cannot write, SQLite cannot make the WAL index a reader
            # needs: read the file as it is (nothing can be writing it there).
            mode = "ro" if os.access(self.directory, os.W_OK) else "ro&immutable=1"
            return sqlite3.connect(f"{self.path.resolve().as_uri()}?mode={mode}", uri=True, isolation_level=None,
                                   timeout=30.0)
        except sqlite3.Error as exc:
            raise StoreError(f"Cannot open {self.path}: {exc}") from exc

    # --- transactions ------------------------------------------------------------------------
    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._depth = 0

    def _exec(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, params)

    # --- trials ------------------------------------------------------------------------------
    def create_trial(self, arch: ArchDict, budget: float, *, seed: int, parent: int | None = None) -> int:
        with self.atomic():
            (next_id,) = self._exec("SELECT COALESCE(MAX(id) + 1, 0) FROM trials").fetchone()
            self._exec(
                "INSERT INTO trials (id, state, arch, budget, seed, parent, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (next_id, TrialState.QUEUED.value, dumps(arch), float(budget), int(seed),
                 None if parent is None else int(parent), time.time()),
            )
        return int(next_id)

    def _require(self, cursor: sqlite3.Cursor, trial_id: int) -> None:
        if cursor.rowcount == 0:
            raise StoreError(f"No trial {trial_id} in {self.path}")

    def start(self, trial_id: int, budget: float) -> None:
        self._require(self._exec(
            "UPDATE trials SET state = ?, budget = ?, started_at = COALESCE(started_at, ?) WHERE id = ?",
            (TrialState.RUNNING.value, float(budget), time.time(), trial_id)), trial_id)

    def append_curve(self, trial_id: int, step: float, metrics: Metrics) -> None:
        self.append_curves(trial_id, [(step, metrics)])

    def append_curves(self, trial_id: int, points: list[tuple[float, Metrics]], replace: bool = True) -> None:
        """Several curve points of one trial in one statement (a job reports one per epoch);
        ``replace=False`` keeps the points already recorded (a job that trained again from
        scratch reports the earlier epochs too: the recorded ones stay, as first measured)."""
        if points:
            self._require(self._db.executemany(
                f"INSERT OR {'REPLACE' if replace else 'IGNORE'} INTO curves (trial_id, step, metrics) SELECT ?, ?, ? WHERE EXISTS "
                "(SELECT 1 FROM trials WHERE id = ?)", [(trial_id, float(step), dumps(m), trial_id) for step, m in points]),
                trial_id)

    def finish(self, trial_id: int, state: TrialState, *, metrics: Metrics | None = None, loss: float | None = None,
               budget: float | None = None, duration: float = 0.0, checkpoint: str | None = None,
               error: str | None = None) -> None:
        """Record the end of a job: its metrics at ``budget`` (a rung; by default the budget the job
        was started with) and the trial's new state."""
        now = time.time()
        loss = None if loss is None else float(loss)
        with self.atomic():
            row = self._exec("SELECT budget FROM trials WHERE id = ?", (trial_id,)).fetchone()
            if row is None:
                raise StoreError(f"No trial {trial_id} in {self.path}")
            if metrics is not None:
                budget = row[0] if budget is None else budget
                self._exec("INSERT OR REPLACE INTO rungs (trial_id, budget, metrics, loss, finished_at) VALUES (?, ?, ?, ?, ?)",
                           (trial_id, float(budget), dumps(metrics), loss, now))
                self._exec("UPDATE trials SET metrics = ?, loss = ?, budget_used = ?, checkpoint = COALESCE(?, checkpoint) "
                           "WHERE id = ?", (dumps(metrics), loss, float(budget), checkpoint, trial_id))
            self._exec("UPDATE trials SET state = ?, error = ?, duration = duration + ?, finished_at = ? WHERE id = ?",
                       (state.value, error, float(duration), now if state.finished else None, trial_id))

    def set_state(self, trial_id: int, state: TrialState) -> None:
        self._require(self._exec(
            "UPDATE trials SET state = ?, finished_at = CASE WHEN ? THEN ? ELSE finished_at END WHERE id = ?",
            (state.value, state.finished, time.time(), trial_id)), trial_id)

    def requeue_running(self) -> list[int]:
        """After a crash: jobs that were running are lost; put their trials back in the queue."""
        with self.atomic():
            ids = [r[0] for r in self._exec("SELECT id FROM trials WHERE state = ? ORDER BY id", (TrialState.RUNNING.value,))]
            self._exec("UPDATE trials SET state = ? WHERE state = ?", (TrialState.QUEUED.value, TrialState.RUNNING.value))
        return ids

    _COLUMNS = ("id, state, arch, budget, budget_used, metrics, loss, seed, error, parent, created_at, started_at, "
                "finished_at, duration, checkpoint")

    def _trial(self, row: tuple[Any, ...], rungs: list[dict[str, Any]]) -> Trial:
        (tid, state, arch, budget, used, metrics, loss, seed, error, parent, created, started, finished, duration,
         checkpoint) = row
        try:
            return Trial(tid, TrialState(state), json.loads(arch), budget, used, json.loads(metrics), loss, seed, error,
                         parent, created, started, finished, duration, checkpoint, rungs)
        except ValueError as exc:  # bad JSON, an unknown state
            raise StoreError(f"trial {tid} in {self.path} is damaged: {str(exc)[:120]}") from None

    def trial(self, trial_id: int) -> Trial:
        row = self._exec(f"SELECT {self._COLUMNS} FROM trials WHERE id = ?", (trial_id,)).fetchone()
        if row is None:
            raise StoreError(f"No trial {trial_id} in {self.path}")
        return self._trial(row, self._rungs(trial_id).get(trial_id, []))

    def _readable(self, rows: Iterable[tuple[Any, ...]], rungs: dict[int, list[dict[str, Any]]]) -> list[Trial]:
        """The trials that can be read; a damaged row is named in ``damaged`` (a read-only store
        shows the rest; a writer refuses to go on over damage)."""
        out = []
        for row in rows:
            try:
                out.append(self._trial(row, rungs.get(row[0], [])))
            except StoreError as exc:
                if not self.read_only:
                    raise
                self.damaged.append(str(exc))
        return out

    def trials(self, states: Iterable[TrialState] | None = None) -> list[Trial]:
        sql = f"SELECT {self._COLUMNS} FROM trials"
        params: tuple[Any, ...] = ()
        if states is not None:
            values = [TrialState(s).value for s in states]
            sql += f" WHERE state IN ({', '.join('?' * len(values))})"
            params = tuple(values)
        return self._readable(self._exec(sql + " ORDER BY id", params), self._rungs())

    def _rungs(self, trial_id: int | None = None) -> dict[int, list[dict[str, Any]]]:
        """Rungs by trial: one trial's, or every trial's."""
        sql, params = "SELECT trial_id, budget, metrics, loss, finished_at FROM rungs", ()
        if trial_id is not None:
            sql, params = sql + " WHERE trial_id = ?", (trial_id,)
        out: dict[int, list[dict[str, Any]]] = {}
        for tid, budget, metrics, loss, finished in self._exec(sql + " ORDER BY trial_id, budget", params):
            out.setdefault(tid, []).append({"budget": budget, "loss": loss, "metrics": self._json(metrics, f"trial {tid}'s rung"),
                                            "finished_at": finished})
        return out

    def _json(self, text: str, what: str) -> Any:
        try:
            return json.loads(text)
        except ValueError:
            if not self.read_only:
                raise StoreError(f"{what} in {self.path} is damaged (not JSON)") from None
            self.damaged.append(f"{what} is damaged (not JSON)")
            return {}

    def curve(self, trial_id: int) -> list[Metrics]:
        rows = self._exec("SELECT metrics FROM curves WHERE trial_id = ? ORDER BY step", (trial_id,))
        return [self._json(m, f"trial {trial_id}'s curve") for (m,) in rows]

    def count(self) -> int:
        return int(self._exec("SELECT COUNT(*) FROM trials").fetchone()[0])

    # --- meta --------------------------------------------------------------------------------
    def get_meta(self, key: str, default: JSONValue = None) -> JSONValue:
        row = self._exec("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            return default
        try:
            return json.loads(row[0])
        except ValueError:
            raise StoreError(f"the study's {key!r} in {self.path} is damaged (not JSON)") from None

    def set_meta(self, key: str, value: JSONValue) -> None:
        self.set_meta_raw(key, dumps(value))

    def set_meta_raw(self, key: str, encoded: str) -> None:
        """Store an already JSON-encoded value."""
        self._exec("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, encoded))

    def close(self) -> None:
        self._db.close()
