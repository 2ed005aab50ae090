"""Which account a task attempt runs as on this node (as Hadoop's LinuxTaskController).

A taskserver running as root runs each TaskHost as the job's submitting user when that
account exists here, else as `taskserver.task_user` (default `nobody`: the jobs of users
without an account all share it, so they are not isolated from each other). Never as root:
a job claiming to be root's runs as the task user. A taskserver not running as root cannot
switch users, and one with `taskserver.isolate_tasks: false` (a pseudo-cluster on one
machine) does not: its tasks run as itself, not isolated from each other (None).

Pure but for the account lookups, which are passed in.
"""
from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from typing import Callable

from minijet.errors import FailedPrecondition


@dataclass(frozen=True)
class TaskUser:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]   # every group of the account, its primary one included
    home: str

    def env(self) -> dict[str, str]:
        """What a login as this user sets, so user code finds its own home, not root's."""
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name}


def isolates(euid: int, isolate_tasks: bool) -> bool:
    """Whether a taskserver runs tasks as their jobs' users: only root can switch."""
    return euid == 0 and isolate_tasks


def choose(job_user: str, task_user: str, isolated: bool,
           lookup: Callable[[str], pwd.struct_passwd] = pwd.getpwnam,
           grouplist: Callable[[str, int], list[int]] = os.getgrouplist) -> TaskUser | None:
    """The account to run a task of `job_user`'s as, or None: no switch (not `isolated`).
    Raises FailedPrecondition when `task_user` is needed but unusable on this node."""
    if not isolated:
        return None
    entry = _account(job_user, lookup) or _account(task_user, lookup)
    if entry is None:
        raise FailedPrecondition(f"cannot run the task of user {job_user!r}: "
                                 f"taskserver.task_user {task_user!r} has no account on this "
                                 "node, or is root")
    return TaskUser(entry.pw_name, entry.pw_uid, entry.pw_gid,
                    tuple(grouplist(entry.pw_name, entry.pw_gid)), entry.pw_dir)


def _account(name: str, lookup: Callable[[str], pwd.struct_passwd]
             ) -> pwd.struct_passwd | None:
    try:
        entry = lookup(name) if name else None
    except KeyError:
        return None
    return entry if entry is not None and entry.pw_uid != 0 else None
