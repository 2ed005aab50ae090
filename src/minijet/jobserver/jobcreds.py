"""A job's DFS credential as the jobserver makes it (minijet.dfs.credentials): registered with
the nameserver at RunJob, before any attempt can need it, and removed at the job's end.

Its secret is derived from the job's secret (kept in the job store), so a restarted
jobserver gives the attempts of a job it resumes the same credential without storing
another secret. Its scope: the job's input paths and job directory to read, its output
paths to read and write (a job's stages exchange data through the shuffle, not the DFS).
"""
from __future__ import annotations

import hashlib
import hmac

from minijet.dfs import job_token
from minijet.jobconf import JobConf

_LABEL = b"minijet job DFS credential"


def dfs_secret(job_secret: str) -> str:
    return hmac.new(job_secret.encode(), _LABEL, hashlib.sha256).hexdigest()


def dfs_token(job_id: str, job_secret: str) -> str:
    """What the job's attempts hold: "<job id>:<secret>"."""
    return job_token(job_id, dfs_secret(job_secret))


def register(dfs, job_id: str, job_secret: str, user: str, conf: JobConf, job_dir: str,
             lifetime: float) -> None:
    dfs.add_job_credential(job_id, dfs_secret(job_secret), user,
                           read=conf.input_paths() + [job_dir], write=conf.output_paths(),
                           lifetime=lifetime)
