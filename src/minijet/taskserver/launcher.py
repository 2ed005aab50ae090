"""Starting a TaskHost as its own OS process, and killing it with everything it started."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import psutil

from minijet.config import Config
from minijet.taskdesc import TASK_FILE

log = logging.getLogger(__name__)

CONFIG_JSON = "config.json"


def start_taskhost(config: Config, umbilical: str, attempt_id: str, task_json: str,
                   job_cache: Path, work_dir: Path, log_dir: Path) -> subprocess.Popen:
    """Write the attempt's task.json and the taskserver's configuration (the TaskHost talks
    to the same DFS with the same security settings) into its work dir, then start
    `python -m minijet.taskhost` with stdout/stderr going to the attempt's log files."""
    work_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / TASK_FILE).write_text(task_json)
    # the job's files in the attempt's working directory too, so the user's code opens an
    # extra file by its plain name (as with Hadoop's distributed cache)
    for entry in job_cache.iterdir():
        link = work_dir / entry.name
        if entry.name not in (TASK_FILE, CONFIG_JSON) and not link.exists():
            link.symlink_to(entry)
    # it may hold the auth token: readable by the taskserver's user only
    fd = os.open(work_dir / CONFIG_JSON, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config.as_dict(), f)
    argv = [sys.executable, "-m", "minijet.taskhost", "--taskserver", umbilical,
            "--attempt", attempt_id, "--job-cache", str(job_cache), "--work-dir", str(work_dir),
            "--config", str(work_dir / CONFIG_JSON)]
    with open(log_dir / "stdout", "ab") as out, open(log_dir / "stderr", "ab") as err:
        # its own session: a signal meant for the taskserver's terminal does not reach it
        return subprocess.Popen(argv, cwd=work_dir, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=err, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants. They are stopped first so none can start
    new children (or be reparented away) between listing the tree and killing it."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = [root]
    for _ in range(2):  # stop, then look again for children started meanwhile
        try:
            procs = [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            pass
        for p in procs:
            try:
                p.suspend()
            except psutil.NoSuchProcess:
                pass
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    log.debug("killed process tree of %d (%d processes)", pid, len(procs))
