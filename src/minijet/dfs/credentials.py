"""Jobs' DFS credentials (Hadoop's delegation tokens, sized for minijet): the jobserver,
holding the cluster token, registers one per job with the nameserver at RunJob and removes
it at the job's end; the job's tasks reach the DFS with it instead of the cluster token.

A credential is the job id, a secret, the job's owner, its scope (minijet.dfs.scope) and an
expiry after which the nameserver drops it. A client presents it as a token
"<job id>:<secret>", sent as two gRPC headers.

CredentialTable is the nameserver's pure table of them. Like the namespace, every change is
a journal record (a plain dict) passed to `apply`, the code that replays the journal, so
credentials survive a nameserver restart (a running job must survive one).
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass

from minijet.dfs.scope import Scope
from minijet.errors import InvalidArgument, Unauthenticated

JOB_HEADER = "x-minijet-job"
SECRET_HEADER = "x-minijet-job-secret"
OPS = ("add_credential", "remove_credential")   # the journal records of this table


def job_token(job_id: str, secret: str) -> str:
    return f"{job_id}:{secret}"


def headers(token: str) -> list[tuple[str, str]]:
    """The gRPC headers presenting `token` ("<job id>:<secret>")."""
    job_id, sep, secret = token.partition(":")
    if not (job_id and sep and secret):
        raise InvalidArgument("a job's DFS credential has the form <job id>:<secret>")
    return [(JOB_HEADER, job_id), (SECRET_HEADER, secret)]


@dataclass(frozen=True)
class JobCredential:
    job_id: str
    secret: str
    owner: str
    scope: Scope
    expires: float   # seconds since the epoch (wall clock: it outlives restarts)


class CredentialTable:
    def __init__(self) -> None:
        self._by_job: dict[str, JobCredential] = {}

    def __len__(self) -> int:
        return len(self._by_job)

    def add(self, job_id: str, secret: str, owner: str, scope: Scope,
            expires: float) -> dict | None:
        """The record adding the credential, applied; None when the same one is held (a
        retried call)."""
        if not job_id or ":" in job_id or not secret:
            raise InvalidArgument("a job credential needs a job id (without ':') and a secret")
        new = JobCredential(job_id, secret, owner, scope, expires)
        old = self._by_job.get(job_id)
        if old is not None and (old.secret, old.owner, old.scope) == (secret, owner, scope):
            return None
        record = _add_record(new)
        self.apply(record)
        return record

    def remove(self, job_id: str) -> dict | None:
        """The record removing the job's credential, applied; None when there is none."""
        if job_id not in self._by_job:
            return None
        record = {"op": "remove_credential", "job_id": job_id}
        self.apply(record)
        return record

    def expire(self, now: float) -> list[dict]:
        """The records removing every credential expired at `now`, applied."""
        return [self.remove(c.job_id) for c in list(self._by_job.values()) if c.expires <= now]

    def authenticate(self, job_id: str, secret: str, now: float) -> JobCredential:
        """The credential `job_id` and `secret` present, or Unauthenticated."""
        c = self._by_job.get(job_id)
        if c is None or not hmac.compare_digest(secret.encode(), c.secret.encode()):
            raise Unauthenticated(f"no valid DFS credential for job {job_id} (wrong secret, "
                                  f"or removed at the job's end)")
        if c.expires <= now:
            raise Unauthenticated(f"the DFS credential of job {job_id} has expired")
        return c

    def apply(self, record: dict) -> None:
        if record["op"] == "add_credential":
            self._by_job[record["job_id"]] = JobCredential(
                record["job_id"], record["secret"], record["owner"],
                Scope(tuple(record["read"]), tuple(record["write"])), record["expires"])
        elif record["op"] == "remove_credential":
            self._by_job.pop(record["job_id"], None)
        else:
            raise ValueError(f"unknown credential record {record['op']!r}")

    # ---- checkpoint image: the add records of the credentials held ----

    def to_image(self) -> list[dict]:
        return [_add_record(c) for c in self._by_job.values()]

    @classmethod
    def from_image(cls, records: list[dict]) -> "CredentialTable":
        table = cls()
        for record in records:
            table.apply(record)
        return table


def _add_record(c: JobCredential) -> dict:
    return {"op": "add_credential", "job_id": c.job_id, "secret": c.secret, "owner": c.owner,
            "read": list(c.scope.read), "write": list(c.scope.write), "expires": c.expires}
