"""Whose fault a failed attempt is, as the TaskHost, the taskserver and the jobserver all
name it (AttemptStatus.failure, DoneReport.failure, AttemptInfo.failure on the wire).

    user    the job's own: an exception in its code, a task timeout, the memory limit.
            Uses up one of the task's `jobserver.max_task_attempts`.
    system  the cluster's: a nameserver or dataserver unreachable or in safe mode, a map
            output that could not be fetched. Retried with back-off, never charged to the
            task's attempts (up to `jobserver.system_retries`).
    node    a system error of the node the attempt ran on: a lost taskserver, a full local
            disk, a TaskHost that could not be started or given its job files. As `system`,
            and the retry goes to another node.
"""
from __future__ import annotations

import errno

from minijet.errors import ChecksumError, FailedPrecondition, Unavailable

USER, SYSTEM, NODE = "user", "system", "node"
CLASSES = (USER, SYSTEM, NODE)

_FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


def is_system(failure: str) -> bool:
    return failure in (SYSTEM, NODE)


def classify(error: BaseException) -> str:
    """The class of the exception that ended an attempt. Type-based, wherever it was raised:
    a DFS read failing inside the user's mapper is still the cluster's fault."""
    if isinstance(error, OSError) and error.errno in _FULL_DISK:
        return NODE
    if isinstance(error, (Unavailable, ChecksumError)):
        return SYSTEM
    if isinstance(error, FailedPrecondition) and "safe mode" in str(error):
        return SYSTEM
    return USER
