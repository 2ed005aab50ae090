"""Who may do what to a job: its owner (the user who created it) and the cluster's admins
(security.admins) may kill it and read its task logs; anyone may see its status and list it.
The jobserver reads any job's logs for its web pages, which are the cluster's (they ask for
its token when one is set), under the name JOBSERVER.

User names are what the callers say they are (Hadoop's "simple" authentication: a client
sends its $USER with every call, see minijet.rpc.USER_HEADER). That keeps colleagues who
share a cluster from killing or reading each other's jobs by mistake; it does not stop one
who holds the cluster token from claiming another's name.
"""
from __future__ import annotations

import getpass
from typing import Collection

from minijet.errors import PermissionDenied

KILL = "kill"
READ_LOGS = "read the logs of"
JOBSERVER = "minijet:jobserver"   # no login name holds a colon: no user has it by chance


def current_user() -> str:
    """The name this process's user goes by ($USER, else its passwd entry)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers) and no $USER
        return "unknown"


def allowed(user: str, owner: str, admins: Collection[str]) -> bool:
    """Whether `user` may kill, or read the logs of, a job of `owner`. A job whose owner is
    unknown ("") is the admins' alone; an unnamed caller is no one."""
    return bool(user) and (user == owner or user in admins)


def check(user: str, action: str, job_id: str, owner: str, admins: Collection[str]) -> None:
    """Raise PermissionDenied unless `user` may do `action` (KILL, READ_LOGS) to the job."""
    if not (allowed(user, owner, admins) or action == READ_LOGS and user == JOBSERVER):
        raise PermissionDenied(
            f"permission denied: {user or 'an unnamed user'} may not {action} job {job_id} "
            f"(owned by {owner or 'an unknown user'})")
