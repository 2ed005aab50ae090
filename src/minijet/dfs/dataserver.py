"""The dataserver daemon: stores block replicas and streams them.

It serves the data-transfer protocol on `dataserver.address` (transfer_server.py, one thread
per connection; over TLS when security.tls_cert is set); registers with the nameserver
(retrying while it is down), sends a block report, then heartbeats every
`dataserver.heartbeat_interval` and carries out the commands in the replies: replicate a
replica to other dataservers (through the same write pipeline as a client,
transfer_client.py), delete replicas, register again. Its only gRPC server is the standard
health service (minijet.health) on `dataserver.health_address`, whose address it registers.
"""
from __future__ import annotations

import logging
import threading
import time

from minijet import daemon, net, rpc, tls
from minijet.config import Config
from minijet.dfs.blockstore import BlockStore
from minijet.dfs.received import Close, ReceivedReports, Replica
from minijet.dfs.transfer_auth import Credentials
from minijet.dfs.transfer_client import BlockWriter
from minijet.dfs.transfer_server import DataTransferServer
from minijet.dfs.transfer_wire import packet_size_for
from minijet.errors import ChecksumError, FailedPrecondition, MinijetError, NotFound
from minijet.health import HEALTH_METHODS, HealthService
from minijet.proto import dfs_pb2, dfs_pb2_grpc
from minijet.web.metrics import dataserver_metrics
from minijet.web.server import WebServer

log = logging.getLogger(__name__)


class DataServer:
    def __init__(self, config: Config):
        self.config = config
        self.host = config.host
        self.rack = config.rack_of(self.host)
        ds = config["dataserver"]
        try:
            self.store = BlockStore(ds["dir"], fsync=ds["fsync"], capacity=ds["capacity"],
                                    reserved=ds["reserved"])
        except OSError as e:
            raise MinijetError(f"cannot use dataserver.dir {ds['dir']}: "
                               f"{e.strerror or e}") from None
        ns_address = config["nameserver"]["address"]
        self.timeout = config["dfs"]["socket_timeout"]
        self.credentials = Credentials.of(config["security"])
        self.server = DataTransferServer(
            self.store, ds["address"], self._block_received,
            packet_size=config["dfs"]["packet_size"], timeout=self.timeout,
            credentials=self.credentials, tls_context=tls.server_context(config["security"]),
            advertise_towards=net.split_address(ns_address)[0],
            short_circuit=config["dfs"]["short_circuit"])
        self.node = dfs_pb2.NodeInfo(host=self.host, rack=self.rack,
                                     data_address=self.server.address)
        self.web = WebServer(config, "dataserver.http_address", {},
                             dataserver_metrics(self.server.stats, self.store), self.ready)
        self._channel = rpc.connect(config, ns_address)
        self._ns = dfs_pb2_grpc.NameServerStub(self._channel)
        self._ns_address = ns_address
        self._stopping = threading.Event()
        self._health_server = None
        self.health_address = ""   # where its health service is, once started
        self._registered = False
        self._heard = False   # the last heartbeat reached the nameserver
        self._last_report = 0.0
        self._received_during_report: list[tuple[int, int]] | None = None
        self._received = ReceivedReports(self._send_received)
        self._replications = 0
        self._lock = threading.Lock()
        self._heartbeats = threading.Thread(target=self._heartbeat_loop, daemon=True,
                                            name="heartbeat")

    def start(self) -> None:
        self.web.start()
        self.server.start()
        bind = self.config["dataserver"]["health_address"]
        self._health_server, port = rpc.start_server(
            self.config, bind, [HealthService(self.ready, self._stopping).add_to],
            open_methods=HEALTH_METHODS)
        host = net.split_address(bind)[0]   # "any": the host its data address advertises
        self.health_address = net.join_address(net.split_address(
            self.server.address if net.is_any_address(host) else bind)[0], port)
        log.info("dataserver %s (rack %s) serving data on %s, health on %s, %d replicas in %s",
                 self.host, self.rack, self.server.address, self.health_address,
                 len(self.store.replicas()), self.store.root)
        self._heartbeats.start()

    def ready(self) -> bool:
        """Whether it can do its job, for health probes: registered with a nameserver that
        hears its heartbeats, and able to write its data dir."""
        return (self._registered and self._heard and not self._stopping.is_set()
                and self.store.writable())

    def stop(self) -> None:
        self._stopping.set()
        if self._health_server is not None:
            self._health_server.stop(grace=1).wait()
        self.server.stop()
        self._heartbeats.join(5)  # it may be inside an RPC to a nameserver that is down
        self._channel.close()
        self.web.stop()
        log.info("dataserver %s stopped", self.host)

    # ---- nameserver protocol ----

    def _call(self, method, request, idempotent: bool = True):
        return rpc.call(self.config, method, request, idempotent=idempotent,
                        address=f"{self._ns_address} (nameserver)")

    def _register(self) -> None:
        self._call(self._ns.RegisterDataServer, dfs_pb2.RegisterRequest(
            node=self.node, capacity=self.store.capacity(), used=self.store.used(),
            free=self.store.free(), health_address=self.health_address))
        self._block_report()
        self._registered = True
        log.info("registered with the nameserver at %s as %s", self._ns_address, self.host)

    def _block_report(self) -> None:
        # A report replaces what the nameserver knows of this node, so a replica finalized
        # after the snapshot (and announced before the report lands) is announced again.
        with self._lock:
            self._received_during_report = []
        try:
            blocks = [dfs_pb2.Block(block_id=r.block_id, length=r.length)
                      for r in self.store.replicas()]
            self._call(self._ns.BlockReport, dfs_pb2.BlockReportRequest(host=self.host,
                                                                        blocks=blocks))
        finally:
            with self._lock:
                late, self._received_during_report = self._received_during_report, None
        self._last_report = time.monotonic()
        log.info("block report sent: %d replicas", len(blocks))
        for block_id, length in late:
            self._block_received(block_id, length)

    def _heartbeat_loop(self) -> None:
        interval = self.config["dataserver"]["heartbeat_interval"]
        report_every = self.config["dataserver"]["block_report_interval"]
        warned = False
        while not self._stopping.is_set():
            try:
                if not self._registered:
                    self._register()
                reply = self._call(self._ns.DataServerHeartbeat,
                                   dfs_pb2.DataServerHeartbeatRequest(
                                       host=self.host, capacity=self.store.capacity(),
                                       used=self.store.used(), free=self.store.free(),
                                       active_transfers=self.server.active_transfers
                                       + self._replications))
                self._heard = True
                if warned:
                    log.info("nameserver at %s reachable again", self._ns_address)
                    warned = False
                for command in reply.commands:
                    self._execute(command)
                if time.monotonic() - self._last_report >= report_every:
                    self._block_report()
            except MinijetError as e:
                self._heard = False
                if not warned:
                    log.warning("nameserver at %s: %s (retrying)", self._ns_address, e)
                    warned = True
                if isinstance(e, (NotFound, FailedPrecondition)):
                    self._registered = False
            except Exception:  # a bug must not silence the heartbeats: log it, go on
                log.exception("heartbeat round failed")
            self._stopping.wait(interval)

    def _execute(self, command: dfs_pb2.DataServerCommand) -> None:
        kind = command.WhichOneof("command")
        if kind == "reregister":
            log.info("nameserver asked to register again")
            self._registered = False
            self._register()
        elif kind == "delete_blocks":
            for block_id in command.delete_blocks.block_ids:
                if self.store.delete(block_id):
                    log.info("block %d: replica deleted", block_id)
        elif kind == "replicate":
            threading.Thread(target=self._replicate, args=(command.replicate,), daemon=True,
                             name=f"replicate-blk_{command.replicate.block.block_id}").start()

    def _block_received(self, block_id: int, length: int, close: Close | None = None) -> bool:
        """Announces a finalized replica, with its writer's close if it carries one;
        whether that completed the file."""
        with self._lock:
            if self._received_during_report is not None:
                self._received_during_report.append((block_id, length))
        return self._received.announce(block_id, length, close)

    def _send_received(self, replicas: list[Replica]) -> list[bool]:
        closing = [(i, close) for i, (_, _, close) in enumerate(replicas) if close]
        try:
            reply = self._call(self._ns.BlockReceived, dfs_pb2.BlockReceivedRequest(
                host=self.host,
                blocks=[dfs_pb2.Block(block_id=b, length=n) for b, n, _ in replicas],
                closes=[dfs_pb2.FileClose(path=close[0], client_id=close[1],
                                          last=dfs_pb2.Block(block_id=replicas[i][0],
                                                             length=replicas[i][1]))
                        for i, close in closing]))
        except FailedPrecondition:
            self._registered = False  # the nameserver forgot us: register again
            raise
        closed = [False] * len(replicas)
        for (i, close), result in zip(closing, reply.closes):
            if result.error:   # its writer calls Complete, which tells it why
                log.info("block %d: the nameserver did not close %s: %s: %s",
                         replicas[i][0], close[0], result.error, result.message)
            closed[i] = not result.error
        return closed

    def _replicate(self, command: dfs_pb2.ReplicateCommand) -> None:
        block_id = command.block.block_id
        targets = [t.data_address for t in command.targets]
        with self._lock:
            self._replications += 1
        try:
            copy_replica(self.store, block_id, targets, self.config["dfs"]["packet_size"],
                         self.timeout, self.credentials)
            log.info("block %d: replicated to %s", block_id,
                     ", ".join(t.host for t in command.targets))
        except ChecksumError as e:
            log.error("%s; reporting the replica as bad", e)
            try:
                self._call(self._ns.ReportBadBlock, dfs_pb2.ReportBadBlockRequest(
                    block_id=block_id, host=self.host))
            except MinijetError as report_error:
                log.warning("block %d: cannot report bad replica: %s", block_id, report_error)
        except MinijetError as e:
            log.warning("block %d: replication to %s failed: %s", block_id, targets, e)
        finally:
            with self._lock:
                self._replications -= 1


def copy_replica(store: BlockStore, block_id: int, targets: list[str], packet_size: int,
                 timeout: float, credentials: Credentials = Credentials()) -> None:
    """Send a local replica down a write pipeline to `targets`, checking its CRCs as it goes."""
    with store.open(block_id) as replica:
        writer = BlockWriter(targets, block_id, replica.chunk_size, timeout, credentials,
                             replica.length)
        try:
            step = packet_size_for(packet_size, replica.chunk_size)
            for pos in range(0, replica.length, step):
                data, crcs = replica.read_verified(pos, min(step, replica.length - pos))
                writer.write_packet(data, crcs)
            writer.finish()
        finally:
            writer.close()


main = daemon.main_of("dataserver", "Store DFS block replicas and stream them to clients.",
                      DataServer)
