"""A job's files in the DFS, as the client, the jobserver, the taskservers and TaskHosts (and
the local runner, over local files) all see them: its job directory, how its input paths
are read, and what its output directories hold.

The job directory, `<jobserver.job_dir>/<job id>`, made by CreateJob:

    job.json        the JobConf (JobConf.to_dict() as JSON), uploaded by the client
    <job file>.py   the user's job file (JobConf.job_file)
    <extra files>   files shipped with `--file` (JobConf.files), by their base names

RunJob reads job.json from it; a taskserver copies the whole directory into its job cache
for the job's TaskHosts (TaskHosts read job.json there); the jobserver removes it when the
job has ended.

Input: an input path is a file, or a directory whose visible files are read (not
recursively), in name order. Names starting with "_" or "." are hidden, not input
(_SUCCESS, _temporary, .crc), so one job's output directory is the next one's input.
Inputs must exist and outputs must not when a job is submitted: jobs never overwrite.

An output directory while and after its job runs:

    _temporary/                          made as the job starts (start_output), with
      _started_by_<job id>/              the job that made it
    _temporary/<attempt id>/part-NNNNN   an attempt's output as it is written; the attempt
                                         makes its directory without parents, so once a
                                         failed job's output is removed no late attempt
                                         can bring it back
    part-NNNNN                           task NNNNN's output, renamed from its attempt's
                                         temporary file when the jobserver grants the commit
    _SUCCESS                             written (and _temporary removed) once the job
                                         succeeded; a failed or killed job's output
                                         directory is removed whole

`fs` below is a DfsClient, or anything answering the same calls (the local runner's
LocalFiles).
"""
from __future__ import annotations

import posixpath
from typing import Callable, Iterable

from minijet.errors import AlreadyExists, NotFound

JOB_CONF_FILE = "job.json"
SUCCESS_FILE = "_SUCCESS"
TEMPORARY_DIR = "_temporary"
STARTED_BY = "_started_by_"   # in _temporary: which job's RunJob made the output


# ---- input ----

def is_hidden(path: str) -> bool:
    """Names starting with '_' or '.' (e.g. _SUCCESS, _temporary, .crc) are not input."""
    return posixpath.basename(path.rstrip("/")).startswith(("_", "."))


def input_files(listing: Iterable[tuple[str, bool]]) -> list[str]:
    """The input files among a directory listing of (path, is_dir): sorted, without hidden
    names and without subdirectories (a directory input is its files, not recursive)."""
    return sorted(path for path, is_dir in listing if not is_dir and not is_hidden(path))


def files_of(fs, path: str) -> list[str]:
    """The files an input path stands for: a file is itself; a directory is its visible
    files (not recursive)."""
    status = fs.stat(path)
    if not status.is_dir:
        return [status.path or path]
    listing = [(s.path if s.path.startswith("/") else posixpath.join(path, s.path), s.is_dir)
               for s in fs.list(path)]
    return input_files(listing)


def file_sizes(fs, path: str) -> list[tuple[str, int]]:
    """(file, size) of each file an input path stands for (see files_of)."""
    return [(f, fs.stat(f).length) for f in files_of(fs, path)]


def check_paths(conf, exists: Callable[[str], bool], prefix: str = "") -> None:
    """NotFound for a missing input path, AlreadyExists for an existing output path, where
    `exists` asks the file system the job runs on; `prefix` starts the message (e.g.
    "job <id>: ")."""
    for path in conf.input_paths():
        if not exists(path):
            raise NotFound(f"{prefix}input path {path} does not exist")
    for path in conf.output_paths():
        if exists(path):
            raise AlreadyExists(f"{prefix}output path {path} already exists (jobs never "
                                f"overwrite output: remove it or choose another)")


# ---- output ----

def part_path(output: str, index: int) -> str:
    """Task `index`'s committed output file."""
    return f"{output.rstrip('/')}/part-{index:05d}"


def attempt_dir(output: str, attempt_id: str) -> str:
    """An attempt's directory of output files before the commit."""
    return f"{output.rstrip('/')}/{TEMPORARY_DIR}/{attempt_id}"


def temporary_part_path(output: str, attempt_id: str, index: int) -> str:
    """Where an attempt of task `index` writes its output before the commit."""
    return f"{attempt_dir(output, attempt_id)}/part-{index:05d}"


def start_output(fs, path: str, job_id: str = "") -> None:
    """Make the output's _temporary directory (and the output) as the job starts; with a
    job id, marked as that job's start (see started_by)."""
    marked = f"{STARTED_BY}{job_id}" if job_id else ""
    fs.mkdir(posixpath.join(path, TEMPORARY_DIR, marked).rstrip("/"), parents=True)


def started_by(fs, path: str, job_id: str) -> bool:
    """Whether `path` holds nothing but `job_id`'s start of it: what a RunJob cut short by a
    jobserver restart leaves, before any attempt ran, for its retry to take back."""
    try:
        if [posixpath.basename(st.path) for st in fs.list(path)] != [TEMPORARY_DIR]:
            return False
        inside = fs.list(posixpath.join(path, TEMPORARY_DIR))
    except NotFound:
        return False
    return [posixpath.basename(st.path) for st in inside] == [f"{STARTED_BY}{job_id}"]


def make_attempt_dir(fs, output: str, attempt_id: str) -> None:
    """Make the attempt's directory in <output>/_temporary, which must exist: NotFound once
    the job's output was given up (removed)."""
    try:
        fs.mkdir(attempt_dir(output, attempt_id))
    except AlreadyExists:   # made by an earlier try of this call
        pass


def commit_output(fs, path: str) -> None:
    """A succeeded job's output becomes whole: _SUCCESS written, temp attempts removed."""
    fs.delete(posixpath.join(path, TEMPORARY_DIR), recursive=True)
    with fs.create(posixpath.join(path, SUCCESS_FILE), overwrite=True):
        pass


def abort_output(fs, path: str) -> None:
    """A failed or killed job leaves no partial output. The output did not exist when the
    job was accepted, so everything under it is this job's: remove it all (the same command
    can then run again)."""
    fs.delete(path, recursive=True)
