"""Whether a task's account can reach what a TaskHost needs before the job's code runs.

A TaskHost running as another user than the taskserver still loads the interpreter, its
standard library, the installed packages and minijet: a Python installed under root's
0700 home, or a checkout in a umask-restricted directory, makes every attempt die with an
import error in its log. The taskserver checks the paths first and fails the attempt with
one error naming the directory in the way. By the permission bits (ACLs are not read).
"""
from __future__ import annotations

import os
import stat
import sys
import sysconfig
from pathlib import Path

import minijet
from minijet.taskserver.taskuser import TaskUser

_R, _X = 4, 1


def taskhost_paths() -> list[Path]:
    """What a TaskHost reads before the job's own code: the interpreter, its standard
    library, the installed packages, minijet itself and the PYTHONPATH it inherits."""
    paths = sysconfig.get_paths()
    found = [sys.executable, paths["stdlib"], paths["purelib"], paths["platlib"],
             str(Path(minijet.__file__).parent)]
    found += os.environ.get("PYTHONPATH", "").split(os.pathsep)
    return [Path(p) for p in dict.fromkeys(found) if p and os.path.exists(p)]


def blocked(path: Path, user: TaskUser, read: bool = True) -> str | None:
    """Why `user` cannot reach `path` (search every directory above it and, with `read`,
    read it: list a directory, run a file), or None when it can."""
    for target in dict.fromkeys([os.path.abspath(path), os.path.realpath(path)]):
        chain = [Path(target), *Path(target).parents][::-1]
        for p in chain:
            try:
                st = os.stat(p)
            except OSError as e:
                return f"{p}: {e.strerror}"
            last = p == chain[-1]
            if not last or stat.S_ISDIR(st.st_mode):
                need = (_R | _X) if last and read else _X
            else:  # the interpreter is run, the rest read
                need = _X if os.access(p, os.X_OK) else _R
            if need & ~_bits(st, user):
                what = "readable" if last and read else "searchable"
                return (f"{p} (mode {stat.S_IMODE(st.st_mode):04o}, owner uid {st.st_uid}) "
                        f"is not {what} by {user.name}")
    return None


def _bits(st: os.stat_result, user: TaskUser) -> int:
    if st.st_uid == user.uid:
        return (st.st_mode >> 6) & 7
    if st.st_gid in user.groups:
        return (st.st_mode >> 3) & 7
    return st.st_mode & 7
