"""An attempt's logs for the jobserver's web pages, asked of the taskserver that ran it (its
GetLogs, as `jetshell logs` does) under the name acl.JOBSERVER: the pages are the cluster's,
behind its token when one is set, so they read any job's logs, as an admin would."""
from __future__ import annotations

from typing import Any, NamedTuple

from minijet import acl, rpc
from minijet.config import Config
from minijet.errors import MinijetError
from minijet.proto import job_pb2, job_pb2_grpc

TIMEOUT = 3.0   # seconds: a page waits at most about twice this for a taskserver


class AttemptLogs(NamedTuple):
    """Its stdout and stderr (at most a MiB of each: their head and tail), or why not."""
    stdout: str = ""
    stderr: str = ""
    missing: str = ""


def fetch(config: Config, name: str, taskserver: dict[str, Any] | None, job_id: str,
          attempt_id: str) -> AttemptLogs:
    """The logs of an attempt that ran on taskserver `name`; `taskserver` is the core's view
    of it (None: not known since the jobserver started)."""
    if taskserver is None or not taskserver["alive"]:
        return AttemptLogs(missing=f"taskserver {name} is "
                                   f"{'lost' if taskserver else 'unknown'}: no one to ask")
    address = taskserver["address"]
    channel = rpc.connect(config, address, acl.JOBSERVER)
    try:
        reply = rpc.call(config, job_pb2_grpc.TaskServerStub(channel).GetLogs,
                         job_pb2.LogRequest(job_id=job_id, attempt_id=attempt_id),
                         idempotent=True, timeout=TIMEOUT, wait=TIMEOUT,
                         address=f"{address} (taskserver {name})")
    except MinijetError as e:
        return AttemptLogs(missing=str(e))
    finally:
        channel.close()
    for log in reply.logs:
        if log.attempt_id == attempt_id:
            return AttemptLogs(log.stdout, log.stderr)
    return AttemptLogs(missing=f"taskserver {name} has none: older than its log_retention, "
                               f"or the attempt has not started")
