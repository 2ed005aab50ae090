"""The ids of jobs, tasks and attempts: made by the jobserver, read by everyone.

    job_<jobserver start, YYYYMMDDHHMMSS>_<seq, 4 digits>      job_20260101120000_0001
    <job id>_<stage id>_<task index, 5 digits>                  job_..._0001_map_00003
    <task id>_<attempt number>                                  job_..._0001_map_00003_0

A stage id never contains "_" (jobconf checks it), so the stage of a task id is the part
between the job id and the last "_". The local runner's job is "job_local".
"""
from __future__ import annotations

import re

_JOB_ID = re.compile(r"job_\d+_\d+")


def make_job_id(started: str, seq: int) -> str:
    """`started`: the jobserver's start time as YYYYMMDDHHMMSS."""
    return f"job_{started}_{seq:04d}"


def make_task_id(job_id: str, stage: str, index: int) -> str:
    return f"{job_id}_{stage}_{index:05d}"


def make_attempt_id(task_id: str, n: int) -> str:
    return f"{task_id}_{n}"


def is_job_id(value: str) -> bool:
    """Whether `value` looks like a job id the jobserver makes."""
    return _JOB_ID.fullmatch(value) is not None
