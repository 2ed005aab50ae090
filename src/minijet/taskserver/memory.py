"""The memory limit of task attempts (taskserver.task_memory): the resident memory of a
TaskHost's whole process tree, polled by the taskserver.

Why polling and not RLIMIT_AS on the TaskHost: an address-space limit counts virtual memory,
which Python, numpy and glibc's per-thread arenas reserve far beyond what they touch, so
jobs well within their memory would fail; and it binds each process alone, so a task that
starts a streaming command or a pool of workers could use the limit once per process. A
poll of the tree's resident memory counts what the task really holds, children included;
the price is that a burst between two polls may pass the limit by what it allocates in one
poll period before it is killed.
"""
from __future__ import annotations

from typing import Iterable

import psutil

POLL_INTERVAL = 0.2   # seconds between two looks at every running attempt


def default_limit(slots: int) -> int:
    """The node's memory shared out evenly among its task slots."""
    return psutil.virtual_memory().total // max(1, slots)


def trees_rss(roots: Iterable[int]) -> dict[int, int]:
    """The resident bytes of each root process and all its descendants (0 if it is gone),
    from one scan of the process table for all of them: finding a process's children
    means reading every process's parent, so one scan per poll, not one per attempt."""
    roots = list(roots)
    if not roots:
        return {}
    children: dict[int, list[psutil.Process]] = {}
    for p in psutil.process_iter(["ppid"]):
        children.setdefault(p.info["ppid"], []).append(p)
    totals = {}
    for root in roots:
        try:
            tree = [psutil.Process(root)]
        except psutil.NoSuchProcess:
            totals[root] = 0
            continue
        total = 0
        while tree:
            p = tree.pop()
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:   # ended meanwhile: it holds nothing now
                continue
            tree += children.get(p.pid, [])
        totals[root] = total
    return totals


def tree_rss(pid: int) -> int:
    """The resident bytes of a process and all its descendants (0 if it is gone)."""
    return trees_rss([pid])[pid]


def size_text(n: int) -> str:
    """2.0 GiB, 300.0 MiB: a memory size as the limit message shows it."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def over_limit(limit: int, peak: int) -> str:
    """The attempt's error when its tree passed the limit."""
    return f"exceeded the memory limit of {size_text(limit)} (peak {size_text(peak)})"
