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

import os
from typing import Callable, Iterable

import psutil

POLL_INTERVAL = 0.2   # seconds between two looks at every running attempt


def default_limit(slots: int) -> int:
    """The node's memory shared out evenly among its task slots."""
    return psutil.virtual_memory().total // max(1, slots)


def children_of(pid: int) -> list[int]:
    """The pids of `pid`'s child processes (none if it is gone), from the kernel's list of
    each of its threads' children (a child belongs to the thread that forked it): a few
    small reads, where finding them from parents means reading every process's."""
    kids: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return kids
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                kids += map(int, f.read().split())
        except FileNotFoundError:   # the thread ended meanwhile
            continue
    return kids


def scan_children() -> Callable[[int], list[int]]:
    """children_of for kernels without per-thread children lists (CONFIG_PROC_CHILDREN):
    one scan of the whole process table."""
    children: dict[int, list[int]] = {}
    for p in psutil.process_iter(["ppid"]):
        children.setdefault(p.info["ppid"], []).append(p.pid)
    return lambda pid: children.get(pid, [])


_PER_THREAD_CHILDREN = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def trees_rss(roots: Iterable[int],
              children: Callable[[int], list[int]] | None = None) -> dict[int, int]:
    """The resident bytes of each root process and all its descendants (0 if it is gone).
    The taskserver polls this 5 times a second: scanning every process on the node for
    parents cost it 2.6 ms a poll with 65 processes (more on a busy node); walking down
    from each root costs ~0.1 ms."""
    roots = list(roots)
    if not roots:
        return {}
    if children is None:
        children = children_of if _PER_THREAD_CHILDREN else scan_children()
    totals = {}
    for root in roots:
        total = 0
        tree = [root]
        while tree:
            pid = tree.pop()
            try:
                total += psutil.Process(pid).memory_info().rss
            except psutil.NoSuchProcess:   # ended meanwhile: it holds nothing now
                continue
            tree += children(pid)
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
