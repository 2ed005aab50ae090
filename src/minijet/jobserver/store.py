"""The jobserver's durable store: jobs, tasks and attempts in SQLite (WAL mode).

Writes are queued and applied by one writer thread, many records per transaction (group
commit), merged to one row per key and rows of the same columns in one statement, so the
core's lock never waits for the disk. `save` returns a ticket; `wait(ticket)`
blocks until that write is durable (synchronous=FULL: the WAL is fsync'd at each commit),
which is how job acceptance is made durable before RunJob replies. `durable(ticket)` is
the same for a coroutine of the jobserver's event loop (a heartbeat that launches
attempts): it awaits the commit without blocking the loop's thread.

A record is (table, row): a row names the table's primary key and any of its other columns;
an existing row is updated in the named columns only. Rows are read by the columns of
TABLES only, so a database written by an earlier version with more columns (the jobs table
had a `status_blob` that nothing filled) opens and reads the same; a column added since
(attempts.failure and attempts.speculative; jobs.output_state, tasks.split_json and
tasks.committer, which a job resumed after a restart needs; jobs.request_id, which makes a
CreateJob sent again answer with the same job; jobs.secret, the job's shuffle secret;
attempts.isolated, whether its taskserver ran it as the job's user; the timestamps of
jobs and attempts beside start_time and end_time, see model.py's Timestamps;
attempts.progress; jobs.summary_json, a closed job's status for lists) is added to an older
database when it opens.

History (minijet.jobserver.history): a retired job is read back by its id; a list reads the
job rows only, newest end first, a page at a time; an expired job's rows are deleted.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterable

log = logging.getLogger(__name__)

SCHEMA_VERSION = 8

TABLES: dict[str, tuple[str, list[str]]] = {
    # table: (primary key, other columns)
    "jobs": ("job_id", ["name", "user", "state", "submit_time", "start_time", "end_time",
                        "output_path", "job_dir", "conf_json", "error", "traceback",
                        "output_state", "request_id", "secret", "run_time", "commit_time",
                        "summary_json"]),
    "tasks": ("task_id", ["job_id", "stage", "task_index", "state", "split_json",
                          "committer"]),
    "attempts": ("attempt_id", ["task_id", "job_id", "taskserver", "host", "locality", "state",
                                "start_time", "end_time", "error", "traceback",
                                "counters_json", "failure", "speculative", "isolated",
                                "taskhost_start_time", "input_end_time", "commit_time",
                                "done_time", "progress"]),
}

Record = tuple[str, dict[str, Any]]

# a job whose output is closed (model._row_output: rows of older versions have no
# output_state, and an ended one counts as closed)
CLOSED_JOB = ("(output_state = 'closed' OR output_state IS NULL AND "
              "state IN ('succeeded', 'failed', 'killed'))")


def _create_statements() -> list[str]:
    statements = []
    for table, (key, columns) in TABLES.items():
        cols = ", ".join([f"{key} TEXT PRIMARY KEY"] + columns)
        statements.append(f"CREATE TABLE IF NOT EXISTS {table} ({cols})")
    statements += ["CREATE INDEX IF NOT EXISTS tasks_by_job ON tasks(job_id)",
                   "CREATE INDEX IF NOT EXISTS attempts_by_job ON attempts(job_id)",
                   "CREATE INDEX IF NOT EXISTS jobs_by_end ON jobs(end_time)"]
    return statements


def _by_shape(records: Iterable[Record]) -> dict[tuple[str, tuple[str, ...]], list[tuple]]:
    """The records as one row per (table, key), later columns over earlier ones (an attempt
    launched and ended within one group commit is written once), grouped by table and
    column names: rows of one shape go in one statement. Upserting the merged row leaves
    the table as upserting the records in order would."""
    merged: dict[tuple[str, Any], dict[str, Any]] = {}
    for table, row in records:
        ident = (table, row.get(TABLES[table][0]))
        if ident in merged:
            merged[ident].update(row)
        else:
            merged[ident] = dict(row)
    shapes: dict[tuple[str, tuple[str, ...]], list[tuple]] = {}
    for (table, _), row in merged.items():
        shapes.setdefault((table, tuple(row)), []).append(tuple(row.values()))
    return shapes


class JobStore:
    def __init__(self, directory: str | Path):
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)   # the jobs' secrets are in it
        self.path = directory / "jobs.db"
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        with self._db:
            self._db.execute("BEGIN")
            for statement in _create_statements():
                self._db.execute(statement)
            for table, (_, columns) in TABLES.items():
                have = {r["name"] for r in self._db.execute(f"PRAGMA table_info({table})")}
                for column in columns:
                    if column not in have:
                        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._read_lock = threading.Lock()  # readers share the connection with the writer
        self._queue: queue.Queue[tuple[int, list[Record]] | None] = queue.Queue()
        self._cond = threading.Condition()
        self._next_ticket = 0
        self._done_ticket = 0
        self._error: Exception | None = None
        # coroutines awaiting durability: (ticket, their loop, the future they await)
        self._awaiting: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._writer = threading.Thread(target=self._write_loop, name="job-store", daemon=True)
        self._writer.start()

    # ---- writing ----

    def save(self, records: Iterable[Record]) -> int:
        """Queue records to be written; return a ticket for `wait`."""
        records = list(records)
        with self._cond:
            self._next_ticket += 1
            ticket = self._next_ticket
            self._queue.put((ticket, records))
        return ticket

    def wait(self, ticket: int | None = None, timeout: float = 30.0) -> None:
        """Block until the write with `ticket` (default: every write so far) is durable."""
        with self._cond:
            target = self._next_ticket if ticket is None else ticket
            if not self._cond.wait_for(lambda: self._done_ticket >= target or self._error,
                                       timeout):
                raise TimeoutError(f"job store write {target} not durable after {timeout}s")
            if self._error:
                raise self._error

    async def durable(self, ticket: int | None = None, timeout: float = 30.0) -> None:
        """wait, from a coroutine: resumes on its event loop when the commit is done, so
        the loop's thread never blocks on the disk."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._cond:
            target = self._next_ticket if ticket is None else ticket
            if self._error:
                raise self._error
            if self._done_ticket >= target:
                return
            self._awaiting.append((target, loop, future))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TimeoutError(f"job store write {target} not durable after {timeout}s") \
                from None
        if self._error:
            raise self._error

    def _wake_awaiting(self) -> None:
        """Resolves the futures of `durable` whose write is done (or failed): one call into
        each loop for all of them. Called with self._cond held."""
        ready, waiting = [], []
        for item in self._awaiting:
            (ready if self._error or item[0] <= self._done_ticket else waiting).append(item)
        self._awaiting = waiting
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}
        for _, loop, future in ready:
            by_loop.setdefault(loop, []).append(future)
        for loop, done in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, done)
            except RuntimeError:   # that loop is closed: nothing awaits any more
                pass

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            while True:  # group commit: everything queued so far in one transaction
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            batch = [b for b in batch if b is not None]
            if batch:
                try:
                    with self._read_lock:
                        self._db.execute("BEGIN")
                        for (table, names), rows in _by_shape(
                                r for _, records in batch for r in records).items():
                            self._upsert(table, names, rows)
                        self._db.execute("COMMIT")
                except Exception as e:  # the disk failed us: callers waiting must know
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    log.error("job store write failed: %s", e)
                    with self._cond:
                        self._error = e
                        self._cond.notify_all()
                        self._wake_awaiting()
                    return
                with self._cond:
                    self._done_ticket = max(t for t, _ in batch)
                    self._cond.notify_all()
                    if self._awaiting:
                        self._wake_awaiting()
            if stop:
                return

    def _upsert(self, table: str, names: tuple[str, ...], rows: list[tuple]) -> None:
        """Rows with the columns `names`, in that order."""
        key, columns = TABLES[table]
        unknown = set(names) - {key, *columns}
        if unknown or key not in names:
            raise ValueError(f"unknown columns for {table}: {sorted(unknown)}" if unknown
                             else f"a row of {table} without its {key}")
        row = f"({', '.join('?' * len(names))})"
        updates = ", ".join(f"{n}=excluded.{n}" for n in names if n != key)
        conflict = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
        # Many rows per statement, not executemany: sqlite3 lets go of the GIL around each
        # statement's step, and taking it back behind a busy event loop costs up to the
        # switch interval each time; a row at a time made a commit of 600 rows take
        # 80-150 ms instead of 5 (and the heartbeats awaiting it waited as long).
        per_statement = max(1, self._db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
                            // len(names))
        for start in range(0, len(rows), per_statement):
            chunk = rows[start:start + per_statement]
            self._db.execute(f"INSERT INTO {table} ({', '.join(names)}) VALUES "
                             f"{', '.join([row] * len(chunk))} ON CONFLICT({key}) {conflict}",
                             [value for r in chunk for value in r])

    # ---- reading (start-up and history) ----

    def rows(self, table: str, where: str = "", args: tuple = (), order: str = "",
             limit: int = 0) -> list[dict[str, Any]]:
        """Rows `where` holds, by `order` (default: the key), at most `limit` (0: all)."""
        key, columns = TABLES[table]
        sql = (f"SELECT {', '.join([key] + columns)} FROM {table}"
               + (f" WHERE {where}" if where else "") + f" ORDER BY {order or key}"
               + (f" LIMIT {int(limit)}" if limit else ""))
        with self._read_lock:
            return [dict(r) for r in self._db.execute(sql, args)]

    def restorable_jobs(self, ended_after: float, closed: int) -> list[dict[str, Any]]:
        """The jobs a restarted jobserver holds in memory: those whose output is not
        closed, and the `closed` most recent closed ones that ended after `ended_after`."""
        return self.rows("jobs", f"NOT {CLOSED_JOB}") + self.rows(
            "jobs", f"{CLOSED_JOB} AND end_time > ?", (ended_after,),
            order="end_time DESC", limit=closed)

    def delete_jobs(self, job_ids: list[str]) -> dict[str, list[str]]:
        """Delete the jobs' rows (one transaction); the taskservers that ran their attempts."""
        marks = ", ".join("?" * len(job_ids))
        with self._read_lock:
            self._db.execute("BEGIN")
            try:
                ran: dict[str, list[str]] = {j: [] for j in job_ids}
                for r in self._db.execute(f"SELECT DISTINCT job_id, taskserver FROM attempts "
                                          f"WHERE job_id IN ({marks})", job_ids):
                    ran[r["job_id"]].append(r["taskserver"])
                for table in ("attempts", "tasks", "jobs"):
                    self._db.execute(f"DELETE FROM {table} WHERE job_id IN ({marks})", job_ids)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return ran

    def close(self) -> None:
        """Write what is queued, then close the database."""
        self._queue.put(None)
        self._writer.join()
        with self._read_lock:
            self._db.close()


def _resolve(futures: list[asyncio.Future]) -> None:
    for future in futures:
        if not future.done():   # not cancelled by its wait_for's timeout
            future.set_result(None)
