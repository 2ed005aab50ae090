"""The locality-aware task scheduler: pure, no I/O, time passed in.

For a heartbeat with free slots it picks pending tasks, jobs in FIFO order, each slot going
node-local first, then rack-local, then anywhere, with delay scheduling (Zaharia et al.,
EuroSys 2010): a job that cannot place a task on this taskserver is skipped, and only once
it has been skipped there for `locality_delay` may it take a rack-local task there, and
after twice that any task. A node-local launch there resets the wait. The wait is kept per
(job, taskserver), not per job as in the paper: with a job-wide wait every node-local
launch elsewhere restarts it, so a taskserver without local data for the job could idle
until the job's end while others work through their local tasks. So a free slot idles at
most 2 x `locality_delay` while any job has pending tasks. Tasks without a location
preference (consumers of a shuffle) go anywhere at once. A retry is kept off the
taskservers where the task failed while it waits less than `locality_delay`, then goes
anywhere (so a one-node cluster still retries).

Cost: pending tasks are indexed per job by host, by rack and in one FIFO; each index is a
deque with lazy deletion (an entry assigned or removed is dropped when it reaches the
front), so a heartbeat costs O(jobs + assigned + stale entries it drops), and every entry
is dropped at most once: amortised O(assigned), not O(pending).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from itertools import chain
from typing import Callable, Collection, Iterable

NODE_LOCAL = "node-local"
RACK_LOCAL = "rack-local"
OFF_RACK = "off-rack"
NO_PREFERENCE = ""   # the task has no input location (e.g. a reduce task)


@dataclass(frozen=True)
class Assignment:
    job_id: str
    task_id: str
    locality: str
    pending_since: float = 0.0   # when the task was added (became runnable)


def locality_of(hosts: Collection[str], racks: Collection[str], host: str, rack: str) -> str:
    """Where a task whose input is on `hosts` (in `racks`) runs, if on `host` in `rack`."""
    if not hosts:
        return NO_PREFERENCE
    if host in hosts:
        return NODE_LOCAL
    return RACK_LOCAL if rack in racks else OFF_RACK


class _Entry:
    __slots__ = ("job_id", "task_id", "hosts", "racks", "avoid", "since", "live")

    def __init__(self, job_id, task_id, hosts, racks, avoid, since):
        self.job_id = job_id
        self.task_id = task_id
        self.hosts = hosts
        self.racks = racks
        self.avoid = avoid
        self.since = since
        self.live = True

    def locality(self, host: str, rack: str) -> str:
        return locality_of(self.hosts, self.racks, host, rack)


def _pop_live(queue: deque | None) -> _Entry | None:
    """The first live entry of a lazily-deleted queue (dropping dead ones), left in place."""
    while queue:
        if queue[0].live:
            return queue[0]
        queue.popleft()
    return None


class _JobQueue:
    __slots__ = ("by_host", "by_rack", "located", "free", "retries", "count", "skipped_since")

    def __init__(self) -> None:
        self.by_host: dict[str, deque[_Entry]] = {}
        self.by_rack: dict[str, deque[_Entry]] = {}
        self.located: deque[_Entry] = deque()   # every task with a location preference
        self.free: deque[_Entry] = deque()      # tasks without one
        self.retries: dict[str, _Entry] = {}    # tasks to keep off some taskservers (few)
        self.count = 0
        self.skipped_since: dict[str, float] = {}   # taskserver -> skipping the job since

    def add(self, e: _Entry) -> None:
        self.count += 1
        if e.avoid:
            self.retries[e.task_id] = e
        elif not e.hosts:
            self.free.append(e)
        else:
            for index, keys in ((self.by_host, e.hosts), (self.by_rack, e.racks)):
                for k in keys:
                    queue = index.get(k)
                    if queue is None:
                        queue = index[k] = deque()
                    queue.append(e)
            self.located.append(e)


class Scheduler:
    def __init__(self, locality_delay: float, rack_of: Callable[[str], str]):
        self.locality_delay = locality_delay
        self.rack_of = rack_of
        self._jobs: dict[str, _JobQueue] = {}   # FIFO: insertion order
        self._entries: dict[str, _Entry] = {}   # task id -> its live entry

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, task_id: str) -> bool:
        return task_id in self._entries

    def pending(self, job_id: str) -> int:
        """How many of the job's tasks wait for a slot."""
        q = self._jobs.get(job_id)
        return q.count if q is not None else 0

    def add_job(self, job_id: str, queue: _JobQueue | None = None) -> None:
        """Queue a job behind those added before it (FIFO), with the pending tasks of
        `queue` (from queue_of) if given."""
        if job_id in self._jobs:
            return
        self._jobs[job_id] = queue or _JobQueue()
        if queue is not None:
            self._entries.update((e.task_id, e) for e in chain(queue.located, queue.free))

    def queue_of(self, job_id: str, tasks: Iterable[tuple[str, Iterable[str]]],
                 now: float) -> _JobQueue:
        """A new job's pending tasks, (task id, hosts of its input) each, queued as add_task
        would, but apart from the scheduler's state: for add_job (see JobServerCore.prepare)."""
        q = _JobQueue()
        for task_id, hosts in tasks:
            q.add(self._entry(job_id, task_id, hosts, (), now))
        return q

    def remove_job(self, job_id: str) -> None:
        q = self._jobs.pop(job_id, None)
        if q is None:
            return
        for e in chain(q.located, q.free, q.retries.values()):
            if e.live:
                e.live = False
                del self._entries[e.task_id]

    def add_task(self, job_id: str, task_id: str, hosts: Iterable[str] = (),
                 avoid: Iterable[str] = (), now: float = 0.0) -> None:
        """Make a task pending. `hosts` hold its input; `avoid` are taskservers to keep it
        off (where it failed) for up to `locality_delay`."""
        q = self._jobs[job_id]
        if task_id in self._entries:
            return
        e = self._entries[task_id] = self._entry(job_id, task_id, hosts, avoid, now)
        q.add(e)

    def _entry(self, job_id: str, task_id: str, hosts: Iterable[str], avoid: Iterable[str],
               now: float) -> _Entry:
        hosts = tuple(hosts)
        return _Entry(job_id, task_id, hosts, frozenset(self.rack_of(h) for h in hosts),
                      frozenset(avoid), now)

    def remove_task(self, task_id: str) -> None:
        """The task is no longer pending (its job ended, or its inputs are gone again)."""
        e = self._entries.get(task_id)
        if e is not None:
            self._take(self._jobs[e.job_id], e)

    def _take(self, q: _JobQueue, e: _Entry) -> None:
        e.live = False
        del self._entries[e.task_id]
        q.retries.pop(e.task_id, None)
        q.count -= 1
        if q.count == 0:
            q.skipped_since.clear()

    def assign(self, taskserver: str, host: str, rack: str, slots: int,
               now: float, skip: Collection[str] = ()) -> list[Assignment]:
        """Up to `slots` tasks for this taskserver, best first; none of the jobs in `skip`
        (they blacklisted it)."""
        out: list[Assignment] = []
        while slots > 0:
            for job_id, q in self._jobs.items():
                if q.count and job_id not in skip:
                    e = self._choose(q, taskserver, host, rack, now)
                    if e is not None:
                        out.append(Assignment(job_id, e.task_id, e.locality(host, rack),
                                              e.since))
                        self._take(q, e)
                        slots -= 1
                        break
            else:
                break   # no job has anything for this taskserver now
        return out

    def _choose(self, q: _JobQueue, taskserver: str, host: str, rack: str,
                now: float) -> _Entry | None:
        for e in q.retries.values():
            if taskserver not in e.avoid or now - e.since >= self.locality_delay:
                return e
        e = _pop_live(q.by_host.get(host))
        if e is not None:
            q.skipped_since.pop(taskserver, None)
            return e
        e = _pop_live(q.free)
        if e is not None:
            return e
        if _pop_live(q.located) is None:
            return None   # only retries left, none allowed here
        waited = now - q.skipped_since.setdefault(taskserver, now)
        if waited >= self.locality_delay:
            e = _pop_live(q.by_rack.get(rack))
            if e is not None:
                return e
        if waited >= 2 * self.locality_delay:
            return _pop_live(q.located)
        return None
