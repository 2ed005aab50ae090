"""Whether a daemon can do its job, told the standard way: the gRPC health service (grpc.health.v1, what grpc_health_probe, Kubernetes and load
  balancers ask) on the daemon's gRPC port: SERVING only while its `ready()` holds (the
  nameserver out of safe mode, a taskserver heard by the jobserver...). A probe holds no
  token, so these methods are open (HEALTH_METHODS): they tell nothing but that one word.
(Its start and stop are told to systemd by minijet.sdnotify.)
"""
from __future__ import annotations

import threading
from typing import Callable, Iterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
HEALTH_METHODS = frozenset({f"/{SERVICE}/Check", f"/{SERVICE}/Watch"})
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


def serving(channel: grpc.Channel, timeout: float = 2.0) -> bool | None:
    """Whether the daemon behind `channel` says it is SERVING; None when it does not answer."""
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                          timeout=timeout)
    except grpc.RpcError:
        return None
    return reply.status == _SERVING
