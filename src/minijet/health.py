"""Whether a daemon can do its job, told the standard ways, SERVING only while its `ready()`
holds (the nameserver out of safe mode, a taskserver heard by the jobserver, a dataserver
registered with the nameserver and able to write its data dir...):
- the gRPC health service (grpc.health.v1, what grpc_health_probe, Kubernetes and load
  balancers ask) on the gRPC daemons' port, and on a dataserver's `dataserver.health_address`
  (its data port speaks its own protocol);
- GET /healthz on every daemon's web port (minijet.web.server): 200 `SERVING` or 503
  `NOT_SERVING`.
A probe holds no token, so both are open (HEALTH_METHODS, /healthz): they tell nothing but
that one word. (Its start and stop are told to systemd by minijet.sdnotify.)
"""
from __future__ import annotations

import asyncio
import threading
from typing import AsyncIterator, Callable, Iterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
HEALTH_METHODS = frozenset({f"/{SERVICE}/Check", f"/{SERVICE}/Watch"})
HEALTH_PATH = "/healthz"
WATCH_POLL = 0.5   # seconds between looks at ready() while a Watch stream is open

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthService(health_pb2_grpc.HealthServicer):
    """Answers for the whole daemon (service "" or any name) from `ready()`."""

    def __init__(self, ready: Callable[[], bool], stopping: threading.Event):
        self._ready, self._stopping = ready, stopping

    def _status(self) -> int:
        return _SERVING if not self._stopping.is_set() and self._ready() else _NOT_SERVING

    def Check(self, request, context):
        return health_pb2.HealthCheckResponse(status=self._status())

    def Watch(self, request, context) -> Iterator[health_pb2.HealthCheckResponse]:
        last = None
        while context.is_active() and not self._stopping.is_set():
            status = self._status()
            if status != last:
                last = status
                yield health_pb2.HealthCheckResponse(status=status)
            self._stopping.wait(WATCH_POLL)
        yield health_pb2.HealthCheckResponse(status=_NOT_SERVING)

    def add_to(self, server: grpc.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self, server)


class AioHealthService(HealthService):
    """HealthService on an aio server (minijet.rpc.AioServer): Watch a coroutine, which the
    server cancels when its client goes away (in its pool, a plain Watch could not tell)."""

    async def Watch(self, request, context) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        last = None
        while not self._stopping.is_set():
            status = self._status()
            if status != last:
                last = status
                yield health_pb2.HealthCheckResponse(status=status)
            await asyncio.sleep(WATCH_POLL)
        yield health_pb2.HealthCheckResponse(status=_NOT_SERVING)


def serving(channel: grpc.Channel, timeout: float = 2.0) -> bool | None:
    """Whether the daemon behind `channel` says it is SERVING; None when it does not answer."""
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                          timeout=timeout)
    except grpc.RpcError:
        return None
    return reply.status == _SERVING
