"""Asking idle taskservers to heartbeat now, so pending tasks start within milliseconds
rather than at the next heartbeat interval. Only a hint: a wake that fails or arrives late
changes nothing, the taskserver's own interval still holds."""
from __future__ import annotations

import logging
import threading

import grpc

from minijet import rpc
from minijet.config import Config
from minijet.proto import job_pb2, job_pb2_grpc

log = logging.getLogger(__name__)

WAKE_TIMEOUT = 2.0   # seconds; a taskserver that does not answer by then heartbeats anyway


class Waker:
    def __init__(self, config: Config):
        self.config = config
        self._lock = threading.Lock()
        self._peers: dict[str, tuple[grpc.Channel, job_pb2_grpc.TaskServerStub]] = {}

    def wake(self, addresses: list[str]) -> None:
        """Send each a Wake without waiting for the answers."""
        for address in addresses:
            with self._lock:
                peer = self._peers.get(address)
                if peer is None:
                    channel = rpc.connect(self.config, address)
                    peer = self._peers[address] = (channel, job_pb2_grpc.TaskServerStub(channel))
            peer[1].Wake.future(job_pb2.Empty(), timeout=WAKE_TIMEOUT).add_done_callback(
                lambda f, address=address: self._answered(f, address))

    def _answered(self, future: grpc.Future, address: str) -> None:
        if future.cancelled() or future.exception() is None:
            return
        log.debug("cannot wake taskserver %s: %s", address, future.exception())
        with self._lock:   # gone, or moved to another port: forget its channel
            peer = self._peers.pop(address, None)
        if peer is not None:  # not from this callback's thread: it belongs to the channel
            threading.Thread(target=peer[0].close, daemon=True).start()

    def close(self) -> None:
        with self._lock:
            peers, self._peers = self._peers, {}
        for channel, _ in peers.values():
            channel.close()
