"""The jobserver's work in the DFS: job directories, reading a job's configuration, turning
its input paths into splits, and committing or aborting its output at the end.

Every function makes DFS calls (network), so the daemon calls them without holding the
core's lock.
"""
from __future__ import annotations

import json
import logging
import posixpath

from minijet.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from minijet.jobconf import JobConf
from minijet.jobserver.splits import Split, compute_splits, input_files

log = logging.getLogger(__name__)

JOB_CONF_FILE = "job.json"
SUCCESS_FILE = "_SUCCESS"
TEMPORARY_DIR = "_temporary"


def read_job_conf(dfs, job_id: str, job_dir: str) -> JobConf:
    """The job's configuration as the client uploaded it (validated)."""
    path = posixpath.join(job_dir, JOB_CONF_FILE)
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
    for path in conf.input_paths():
        if not dfs.exists(path):
            raise NotFound(f"job {job_id}: input path {path} does not exist")
    for path in conf.output_paths():
        if dfs.exists(path):
            raise AlreadyExists(f"job {job_id}: output path {path} already exists (jobs never "
                                f"overwrite output: remove it or choose another)")


def _files_of(dfs, path: str) -> list[str]:
    """A file input is itself; a directory is its visible files (not recursive)."""
    status = dfs.stat(path)
    if not status.is_dir:
        return [status.path or path]
    listing = [(s.path if s.path.startswith("/") else posixpath.join(path, s.path), s.is_dir)
               for s in dfs.list(path)]
    return input_files(listing)


def input_splits(dfs, conf: JobConf, block_size: int, slots: int = 0,
                 min_split_size: int = 1) -> dict[str, list[Split]]:
    """Stage id -> the splits of every input stage, sized for `slots` task slots (see
    splits.py), each with the hosts of its bytes' replicas."""
    result: dict[str, list[Split]] = {}
    for stage in conf.stages:
        if not stage.input:
            continue
        files = []
        for path in stage.input:
            for file_path in _files_of(dfs, path):
                blocks = [(b.offset, b.length, list(b.hosts))
                          for b in dfs.block_locations(file_path)]
                length = sum(b[1] for b in blocks)
                files.append((file_path, length, blocks))
        result[stage.id] = compute_splits(files, block_size, slots, min_split_size)
    return result


def commit_output(dfs, path: str) -> None:
    """A succeeded job's output becomes whole: _SUCCESS written, temp attempts removed."""
    dfs.delete(posixpath.join(path, TEMPORARY_DIR), recursive=True)
    with dfs.create(posixpath.join(path, SUCCESS_FILE), overwrite=True):
        pass


def abort_output(dfs, path: str) -> None:
    """A failed or killed job leaves no partial output. The output did not exist when the
    job was accepted, so everything under it is this job's: remove it all (the same command
    can then run again)."""
    dfs.delete(path, recursive=True)
