"""Bad nodes: taskservers on which jobs' code keeps failing. Pure, time passed in.

Per job: a taskserver where `JOB_FAILURES` attempts of a job failed by a user error (the
job's code, a timeout, the memory limit) is blacklisted for that job: it gets no more of
its tasks (Hadoop's per-job tracker blacklist). A node that only breaks this job's code (a
library missing there, a bad disk under its temp dir) no longer uses up its attempts.

Cluster-wide: a taskserver that `GREYLIST_JOBS` different jobs blacklisted within
`forgive` seconds is greylisted: it gets no new tasks of any job until it is forgiven,
`forgive` seconds later (its running attempts go on). The blacklists counted then start
again from nothing.

Neither ever takes every live taskserver away: a job blacklisted everywhere, or a cluster
greylisted everywhere, is served as if there were no list (nowhere else to go).
"""
from __future__ import annotations

JOB_FAILURES = 3    # user errors of one job on one taskserver: blacklisted for that job
GREYLIST_JOBS = 3   # jobs that blacklisted a taskserver: greylisted for all


class BadNodes:
    def __init__(self, forgive: float):
        self.forgive = forgive
        self._failures: dict[tuple[str, str], int] = {}   # (job, taskserver) -> user errors
        self._blacklist: dict[str, set[str]] = {}         # job -> taskservers it avoids
        self._blacklisted_by: dict[str, dict[str, float]] = {}   # taskserver -> job -> when
        self._greylisted: dict[str, float] = {}           # taskserver -> since

    def user_failure(self, job_id: str, taskserver: str, now: float) -> None:
        """An attempt of the job failed on the taskserver by the job's fault."""
        key = (job_id, taskserver)
        self._failures[key] = self._failures.get(key, 0) + 1
        if self._failures[key] != JOB_FAILURES:
            return
        self._blacklist.setdefault(job_id, set()).add(taskserver)
        by = self._blacklisted_by.setdefault(taskserver, {})
        by[job_id] = now
        if len(by) >= GREYLIST_JOBS and taskserver not in self._greylisted:
            self._greylisted[taskserver] = now

    def job_ended(self, job_id: str) -> None:
        """Forget the job's own counts; its blacklisting still counts towards a greylist."""
        self._blacklist.pop(job_id, None)
        for key in [k for k in self._failures if k[0] == job_id]:
            del self._failures[key]

    def forgive_until(self, now: float) -> None:
        """Forgive greylisted taskservers, and forget blacklistings, older than `forgive`."""
        for taskserver, since in list(self._greylisted.items()):
            if now - since >= self.forgive:
                del self._greylisted[taskserver]
                self._blacklisted_by.pop(taskserver, None)
        for taskserver, by in list(self._blacklisted_by.items()):
            for job_id, when in list(by.items()):
                if now - when >= self.forgive and taskserver not in self._greylisted:
                    del by[job_id]
            if not by:
                del self._blacklisted_by[taskserver]

    def excluded_jobs(self, taskserver: str, alive: set[str]) -> set[str]:
        """The jobs whose tasks must not go to `taskserver` now."""
        return {job_id for job_id, bl in self._blacklist.items()
                if taskserver in bl and len(bl & alive) < len(alive)}

    def greylisted(self, taskserver: str, alive: set[str]) -> bool:
        """True if `taskserver` must get no new task now."""
        return taskserver in self._greylisted and \
            sum(1 for t in self._greylisted if t in alive) < len(alive)

    def view(self, taskserver: str) -> dict[str, float | int]:
        """For `jetshell nodes`: jobs that blacklisted it lately, greylisted since (0: not)."""
        return {"blacklists": len(self._blacklisted_by.get(taskserver, ())),
                "greylisted_since": self._greylisted.get(taskserver, 0.0)}
