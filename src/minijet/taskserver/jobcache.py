"""The local copy of each job's files (job.json, the user's .py, extra files).

Copied from the job's DFS directory once per job, on the first attempt of that job here;
later and concurrent attempts of the same job wait for that copy and share it. The copy goes
to a temporary directory that is renamed into place only when complete, so a failed or
interrupted copy never leaves a half cache that looks finished.

The job's directory (cache, work dirs, map outputs) is made private to the account its tasks
run as (layout.private_dir), and the copied files are that account's.
"""
from __future__ import annotations

import logging
import shutil
import threading
import uuid
from pathlib import Path
from typing import Callable

from minijet.errors import MinijetError
from minijet.taskserver.layout import Layout, give, private_dir
from minijet.taskserver.taskuser import TaskUser

log = logging.getLogger(__name__)


class JobCache:
    def __init__(self, layout: Layout, dfs: Callable[[], object]):
        self._layout = layout
        self._dfs = dfs  # returns a DfsClient (made lazily by the daemon)
        self._lock = threading.Lock()
        self._job_locks: dict[str, threading.Lock] = {}

    def _job_lock(self, job_id: str) -> threading.Lock:
        with self._lock:
            return self._job_locks.setdefault(job_id, threading.Lock())

    def localize(self, job_id: str, job_dir: str, owner: TaskUser | None = None) -> Path:
        """The local directory holding the job's files, copying them first if needed; the
        job's directory is `owner`'s (None: this process's user)."""
        target = self._layout.cache_dir(job_id)
        with self._job_lock(job_id):
            if target.is_dir():
                return target
            self._layout.jobs.mkdir(parents=True, exist_ok=True)
            private_dir(target.parent, owner)
            temp = target.parent / f"{target.name}.tmp-{uuid.uuid4().hex[:8]}"
            try:
                count = self._copy_tree(job_dir, temp, owner)
                temp.rename(target)
            except MinijetError as e:
                shutil.rmtree(temp, ignore_errors=True)
                raise MinijetError(f"cannot copy the job files of {job_id} from {job_dir}: {e}") \
                    from None
            except BaseException:
                shutil.rmtree(temp, ignore_errors=True)
                raise
            log.info("job %s: copied %d job files from %s to %s", job_id, count, job_dir, target)
            return target

    def _copy_tree(self, dfs_dir: str, local: Path, owner: TaskUser | None) -> int:
        local.mkdir(parents=True, exist_ok=True)
        give(local, owner)
        dfs = self._dfs()
        count = 0
        for status in dfs.list(dfs_dir):
            name = status.path.rstrip("/").rsplit("/", 1)[-1]
            if status.is_dir:
                count += self._copy_tree(status.path, local / name, owner)
            else:
                dfs.get(status.path, str(local / name))
                give(local / name, owner)
                count += 1
        return count

    def remove(self, job_id: str) -> None:
        """Delete the job's local files (cache, work dirs, map outputs); waits for a copy in
        progress."""
        with self._job_lock(job_id):
            shutil.rmtree(self._layout.job_dir(job_id), ignore_errors=True)
        with self._lock:
            self._job_locks.pop(job_id, None)
