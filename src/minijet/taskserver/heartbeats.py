"""A taskserver's heartbeats as messages on one stream to the jobserver (its Heartbeats
call), each request answered by one reply, in order.

Each wait between heartbeats is the jobserver's interval ±10% at random (`heartbeat_wait`).
Heartbeats answered together (after a stall of the jobserver, say) would otherwise come
back together an interval later, and again after that: without the jitter, the simulated
cluster of bench/heartbeat_load.py sent in bunches of up to 2.4x its mean rate, and its
p99 was twice as long.

A unary call per heartbeat costs the jobserver the set-up of a call each time (most of what
Python's gRPC spends per heartbeat); on a stream kept open it is paid once. A heartbeat still
has a deadline: with no reply in time, or when the stream fails, `beat` raises as a failed
call would and drops the stream, and the next heartbeat opens a new one (on a new channel,
if the caller made one).
"""
from __future__ import annotations

import queue
import random
import threading

import grpc

from minijet import errors, rpc
from minijet.proto import job_pb2

_END = object()   # the server ended the stream
JITTER = 0.1


def heartbeat_wait(interval: float, failures: int = 0,
                   rng: random.Random | None = None) -> float:
    """Seconds to wait before the next heartbeat: `interval` ±JITTER at random (its mean,
    so the cluster's rate, stays the interval's); after `failures` heartbeats in a row
    failed (the jobserver not started yet, or restarting), sooner, backing off with jitter
    so that many taskservers spread out, never longer than the interval."""
    rng = rng or random
    if failures:
        return min(interval, 0.1 * 2 ** min(failures, 10) * rng.uniform(0.5, 1.5))
    return interval * rng.uniform(1 - JITTER, 1 + JITTER)


class HeartbeatStream:
    def __init__(self, address: str, timeout: float):
        self._address = address
        self._timeout = timeout
        self._call = None
        self._requests: queue.Queue | None = None
        self._replies: queue.Queue | None = None

    def beat(self, stub, request: job_pb2.HeartbeatRequest) -> job_pb2.HeartbeatResponse:
        """The jobserver's reply to `request`, over `stub`'s channel (the stream is opened
        on the first heartbeat and after a failure). Raises the MinijetError of a failed
        call."""
        if self._call is None:
            self._open(stub)
        self._requests.put(request)
        try:
            reply = self._replies.get(timeout=self._timeout)
        except queue.Empty:
            self.close()
            raise errors.Unavailable(f"the jobserver at {self._address} did not answer a "
                                     f"heartbeat within {self._timeout:g}s") from None
        if isinstance(reply, job_pb2.HeartbeatResponse):
            return reply
        self.close()
        if reply is _END:
            raise errors.Unavailable(f"the jobserver at {self._address} ended the "
                                     "heartbeat stream")
        raise rpc.to_error(reply, f"{self._address} (jobserver)")

    def _open(self, stub) -> None:
        requests: queue.Queue = queue.Queue()
        replies: queue.Queue = queue.Queue()
        call = stub.Heartbeats(iter(requests.get, None))
        threading.Thread(target=_read, args=(call, replies), name="heartbeat-replies",
                         daemon=True).start()
        self._call, self._requests, self._replies = call, requests, replies

    def close(self) -> None:
        """Ends the stream (if open); its threads end with it."""
        if self._call is not None:
            self._requests.put(None)   # ends the requests gRPC's thread is reading
            self._call.cancel()
            self._call = self._requests = self._replies = None


def _read(call, replies: queue.Queue) -> None:
    try:
        for reply in call:
            replies.put(reply)
        replies.put(_END)
    except grpc.RpcError as e:
        replies.put(e)
