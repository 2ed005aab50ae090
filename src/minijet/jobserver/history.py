"""Finished jobs after they leave the jobserver's memory: read from the store, then deleted.

A job is retired by the core (model.py, Retirement) once its output is closed and it ended
`jobserver.retire_after` ago, or `jobserver.retained_jobs` closed jobs ended after it. Its
status, list entry and web page then come from its rows, through the core's own row ->
status code, so they read as they did in memory. `jobserver.history_retention` after its
end, the shell's sweep deletes its rows (a batch of jobs per transaction) and what is left
of its DFS job dir, and the core tells the taskservers that ran it to drop its logs.
"""
from __future__ import annotations

from typing import Any, Callable

from minijet.errors import NotFound
from minijet.jobserver import model
from minijet.jobserver.store import CLOSED_JOB, JobStore

EXPIRE_BATCH = 100   # jobs whose rows one transaction deletes


def job_row(store: JobStore, job_id: str) -> dict[str, Any]:
    rows = store.rows("jobs", "job_id = ?", (job_id,))
    if not rows:
        raise NotFound(f"no job {job_id}")
    return rows[0]


def status(store: JobStore, job_id: str, attempts: bool = True,
           attempt_limit: int | None = None) -> dict[str, Any]:
    """A retired job's status (NotFound if it never was or its history expired); with
    `attempt_limit`, at most that many attempts (model.some_attempts)."""
    row = job_row(store, job_id)
    if not attempts and (summary := model.stored_summary(row)) is not None:
        return summary
    of_job = ("job_id = ?", (job_id,))
    return model.stored_status(row, store.rows("tasks", *of_job),
                               store.rows("attempts", *of_job), attempts, attempt_limit)


def finished(store: JobStore, ended_after: float, limit: int) -> list[dict[str, Any]]:
    """The statuses (without attempts) of the `limit` closed jobs that ended last, after
    `ended_after`: job rows only, except for a job stored by an older version."""
    rows = store.rows("jobs", f"{CLOSED_JOB} AND end_time > ?", (ended_after,),
                      order="end_time DESC", limit=limit)
    return [model.stored_summary(r) or status(store, r["job_id"], attempts=False)
            for r in rows]


def expire(store: JobStore, ended_before: float, held: Callable[[list[str]], set[str]],
           delete_dir: Callable[[str], None]) -> dict[str, list[str]]:
    """Delete the closed jobs that ended before `ended_before`, except those `held` (still
    in the core's memory): each one's job dir (if any is left), then its rows. Returns the
    taskservers that ran each deleted job's attempts."""
    expired: dict[str, list[str]] = {}
    skip: set[str] = set()
    while True:
        ids = [r["job_id"] for r in store.rows(
            "jobs", f"{CLOSED_JOB} AND end_time < ?", (ended_before,),
            order="end_time", limit=EXPIRE_BATCH + len(skip)) if r["job_id"] not in skip]
        skip |= held(ids)
        ids = [j for j in ids if j not in skip]
        if not ids:
            return expired
        for job_id in ids:
            delete_dir(job_id)
        expired.update(store.delete_jobs(ids))
