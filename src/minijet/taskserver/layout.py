"""Where a taskserver keeps things on local disk (under `taskserver.dir`):

    jobs/<job_id>/_cache/                 the job's files copied from the DFS (job.json, job .py)
    jobs/<job_id>/<attempt_id>/           an attempt's work dir: task.json, config.json,
                                          file.out + file.out.index (map output)
    logs/<job_id>/<attempt_id>/stdout     the TaskHost's output; kept after the job's cleanup
    logs/<job_id>/<attempt_id>/stderr     (for `jetshell logs`) until older than log_retention
    logs/<job_id>/owner                   the job's user, who may read them (owners.py)

Ids come from the network, so each is checked before it becomes a path component.

Privacy (a taskserver running as root, taskuser.py): `jobs/` can be passed through but not
listed; a job's directory is 0700 and owned by the account its tasks run as, so no other
job's code can enter it; a job's logs are 0700 root's: the taskserver opens the log files
and hands them to the TaskHost already open.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import BinaryIO

from minijet.errors import FailedPrecondition, InvalidArgument
from minijet.formats.segments import MAP_OUTPUT
from minijet.taskserver.taskuser import TaskUser

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
        return self.work_dir(job_id, attempt_id) / MAP_OUTPUT

    def job_logs(self, job_id: str) -> Path:
        return self.logs / check_id("job id", job_id)

    def job_owner(self, job_id: str) -> Path:
        return self.job_logs(job_id) / "owner"

    def log_dir(self, job_id: str, attempt_id: str) -> Path:
        return self.job_logs(job_id) / check_id("attempt id", attempt_id)


def private_dir(path: Path, owner: TaskUser | None) -> Path:
    """Make `path` (its parent exists) a directory only `owner` (None: this process's user)
    and root can enter."""
    path.mkdir(mode=0o700, exist_ok=True)
    path.chmod(0o700)
    give(path, owner)
    return path


def give(path: Path, owner: TaskUser | None) -> None:
    """Hand a file the taskserver made to the task's account (symlinks themselves)."""
    if owner is not None:
        os.chown(path, owner.uid, owner.gid, follow_symlinks=False)


def open_owned(path: Path, job_dir: Path) -> BinaryIO:
    """Open a file of a job's directory for reading only if it is the job's own: not a link
    and owned by the account owning the job's directory (which the job cannot replace: jobs/
    is the taskserver's). Else a job's code could have the taskserver (root) read any file
    for it, another job's map output among them."""
    owner = os.stat(job_dir, follow_symlinks=False).st_uid
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise FailedPrecondition(f"{path} is not the job's own file: {e.strerror}") from None
    if os.fstat(fd).st_uid != owner:
        os.close(fd)
        raise FailedPrecondition(f"{path} is not the job's own file: another account's")
    return os.fdopen(fd, "rb")
