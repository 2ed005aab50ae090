"""The owner of each job this taskserver ran, for the permission check of GetLogs
(minijet.acl): the user of the job's first LaunchAttempt, kept in a file beside the job's logs
(layout.Layout.job_owner). So it lives exactly as long as the logs it guards: through a
restart of the taskserver and the job's cleanup, until the logs are swept.

Logs with no owner file (written before owners were kept) are the admins' alone.
"""
from __future__ import annotations

import os
from pathlib import Path


def remember(path: Path, user: str, writer: str) -> None:
    """Record `user` as the job's owner unless one is recorded; `writer` (the attempt's id)
    names the temporary file, so attempts launched at once never share one."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{writer}")
    tmp.write_text(user)
    os.replace(tmp, path)   # a reader sees the whole name or no file


def owner(path: Path) -> str:
    """The recorded owner; "" if none."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
