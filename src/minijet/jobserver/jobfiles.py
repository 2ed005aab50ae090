"""The jobserver's reading of a job's directory: its configuration, checked, and its paths.
The layout of those files, and committing or aborting a job's output, are minijet.jobdir's;
the splits are minijet.splits'.

Every function makes DFS calls (network), so the daemon calls them without holding the
core's lock.
"""
from __future__ import annotations

import json
import logging
import posixpath

from minijet import jobdir
from minijet.errors import FailedPrecondition, InvalidArgument, NotFound
from minijet.jobconf import JobConf

log = logging.getLogger(__name__)


def read_job_conf(dfs, job_id: str, job_dir: str) -> JobConf:
    """The job's configuration as the client uploaded it (validated)."""
    path = posixpath.join(job_dir, jobdir.JOB_CONF_FILE)
    try:
        with dfs.open(path) as f:
            data = f.read()
    except NotFound:
        raise FailedPrecondition(f"job {job_id}: {path} does not exist; upload the job "
                                 f"configuration before RunJob") from None
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"job {job_id}: {path} is not valid JSON: {e}") from None
    return JobConf.from_dict(raw)


def check_paths(dfs, job_id: str, conf: JobConf) -> None:
    """Inputs must exist and outputs must not (jobs never overwrite output)."""
    jobdir.check_paths(conf, dfs.exists, prefix=f"job {job_id}: ")
