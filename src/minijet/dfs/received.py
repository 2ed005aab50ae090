"""A dataserver's announcements of finalized replicas (HDFS's incremental block reports),
several in one BlockReceived call when several replicas finish at about the same time.

A receiver thread announces its replica and waits until a call carrying it has returned:
the nameserver then knows the replica before the writer gets its last ack, so a reader
right after the writer's close finds it. No call waits for company: the first announcer
sends at once; those that come while a call is in flight go together in the next one (a
group commit). Many small files written at once cost the nameserver one call for a group
of replicas instead of one each.

The first node of a pipeline may carry its writer's close with the replica (path, client
id): the same call completes the file, and the announcer learns whether it did.
"""
from __future__ import annotations

import threading
from typing import Callable


Close = tuple[str, str]   # a writer's file closing with the replica: (path, client id)
Replica = tuple[int, int, "Close | None"]   # (block id, length, close)


class _Announcement:
    __slots__ = ("replica", "done", "error", "closed")

    def __init__(self, replica: Replica):
        self.replica = replica
        self.done = False
        self.error: BaseException | None = None
        self.closed = False


class ReceivedReports:
    """`send(replicas)` makes one call with a list of (block id, length, close) and
    returns, for each, whether its close completed the file; `announce` is called by any
    number of threads at once."""

    def __init__(self, send: Callable[[list[Replica]], list[bool]]):
        self._send = send
        self._cond = threading.Condition()
        self._queue: list[_Announcement] = []
        self._sending = False

    def announce(self, block_id: int, length: int, close: Close | None = None) -> bool:
        """Returns once a call with this replica has reached the nameserver: whether it
        completed the file of `close`. Raises what that call raised."""
        mine = _Announcement((block_id, length, close))
        with self._cond:
            self._queue.append(mine)
            while self._sending and not mine.done:
                self._cond.wait()
            if not mine.done:   # no call in flight: this thread sends all that waits
                batch, self._queue = self._queue, []
                self._sending = True
        if not mine.done:
            error, closed = None, [False] * len(batch)
            try:
                closed = self._send([a.replica for a in batch])
            except BaseException as e:
                error = e
            with self._cond:
                for a, c in zip(batch, closed):
                    a.done, a.error, a.closed = True, error, c
                self._sending = False
                self._cond.notify_all()
        if mine.error is not None:
            raise mine.error
        return mine.closed
