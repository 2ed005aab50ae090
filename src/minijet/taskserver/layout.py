"""Where a taskserver keeps things on local disk (under `taskserver.dir`):

    jobs/<job_id>/_cache/                 the job's files copied from the DFS (job.json, job .py)
    jobs/<job_id>/<attempt_id>/           an attempt's work dir: task.json, config.json,
                                          file.out + file.out.index (map output)
    logs/<job_id>/<attempt_id>/stdout     the TaskHost's output; kept after the job's cleanup
    logs/<job_id>/<attempt_id>/stderr     (for `jetshell logs`) until older than log_retention
    logs/<job_id>/owner                   the job's user, who may read them (owners.py)

Ids come from the network, so each is checked before it becomes a path component.
"""
from __future__ import annotations

import re
from pathlib import Path

from minijet.errors import InvalidArgument

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$")
CACHE = "_cache"


def check_id(kind: str, value: str) -> str:
    if not _ID.match(value or "") or ".." in value:
        raise InvalidArgument(f"invalid {kind} {value!r}")
    return value


class Layout:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.jobs = self.root / "jobs"
        self.logs = self.root / "logs"

    def job_dir(self, job_id: str) -> Path:
        return self.jobs / check_id("job id", job_id)

    def cache_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / CACHE

    def work_dir(self, job_id: str, attempt_id: str) -> Path:
        return self.job_dir(job_id) / check_id("attempt id", attempt_id)

    def map_output(self, job_id: str, attempt_id: str) -> Path:
        return self.work_dir(job_id, attempt_id) / "file.out"

    def job_logs(self, job_id: str) -> Path:
        return self.logs / check_id("job id", job_id)

    def job_owner(self, job_id: str) -> Path:
        return self.job_logs(job_id) / "owner"

    def log_dir(self, job_id: str, attempt_id: str) -> Path:
        return self.job_logs(job_id) / check_id("attempt id", attempt_id)
