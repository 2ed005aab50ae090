"""The data-transfer protocol: block bytes over raw TCP between clients and dataservers.

Like HDFS's DataTransferProtocol, block data never goes through gRPC. One connection
carries one operation.

Framing. A *message* is a 4-byte big-endian length and that many bytes of JSON; it opens
every connection (the op) and answers it (the status). Block data then flows in *packets*:
PACKET header (seqno, offset of the data in the block, data length, flags), one big-endian
CRC32 per `chunk_size` bytes of data, then the data. Acks are ACK (seqno, n) followed by n
one-byte statuses, one per node from the acking node to the end of the pipeline.

Every op carries the protocol version `v` and the cluster's `token` (security.auth_token),
which a dataserver checks when one is configured.

READ_BLOCK {op: read_block, block_id, offset, length (-1 = to the end)}
    -> {status: ok, chunk_size, start, end, block_length} then packets covering [start, end),
       which is the request widened to whole chunks so the reader can verify every CRC; the
       last packet has the LAST flag. Data goes out with sendfile(); the reader checks CRCs.

WRITE_BLOCK {op: write_block, block_id, chunk_size, targets: [downstream "ip:port", ...]}
    Each dataserver connects to targets[0] with targets[1:] (so the pipeline sets itself up
    hop by hop) and answers {status: ok} once its whole downstream is ready, or
    {status: error, index, message} where index is the failed node counted from the answering
    one. Then packets flow: each node receives a packet, forwards it downstream at once,
    verifies and writes it; a responder thread reads the downstream ack for that packet and
    sends upstream its own status in front of the downstream ones. The last packet is empty
    with the LAST flag; a node finalizes its replica and reports it to the nameserver
    (BlockReceived) before acking it, so a writer that holds the last ack knows every replica
    is durable and known. A node that sees a failure sends an ack whose statuses point at the
    failed node (its own index for a local fault, the next one when the downstream broke
    without saying why), then drains its upstream until the writer hangs up.
"""
from __future__ import annotations

import hmac
import json
import logging
import queue
import socket
import struct
import threading
from typing import Callable

from minijet.dfs import blockstore
from minijet.errors import AlreadyExists, ChecksumError, MinijetError, NotFound, Unavailable

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
LENGTH = struct.Struct(">I")
PACKET = struct.Struct(">qQIB")   # seqno, offset in block, data length, flags
ACK = struct.Struct(">qB")        # seqno, number of node statuses that follow
LAST = 1
SUCCESS, ERROR, ERROR_CHECKSUM = 0, 1, 2
STATUS_NAMES = {SUCCESS: "ok", ERROR: "failed", ERROR_CHECKSUM: "checksum error"}
MAX_MESSAGE = 1 << 20
MAX_PACKET = 64 << 20
CONNECT_TIMEOUT = 10.0


class ConnectionClosed(ConnectionError):
    """The peer closed the connection in the middle of the protocol."""


class PipelineError(Unavailable):
    """A write pipeline broke; `index` is the position of the node that failed."""

    def __init__(self, index: int, message: str):
        super().__init__(message)
        self.index = index


class ReplicaUnavailable(Unavailable):
    """A dataserver could not serve a replica (unreachable, no such replica, ...)."""


# ---- framing ----

def connect(address: str, timeout: float) -> socket.socket:
    host, _, port = address.rpartition(":")
    # A dead host should not hold up fail-over for a whole transfer timeout.
    sock = socket.create_connection((host.strip("[]"), int(port)),
                                    timeout=min(timeout, CONNECT_TIMEOUT))
    tune(sock, timeout)
    return sock


def tune(sock: socket.socket, timeout: float) -> None:
    sock.settimeout(timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # Keep-alive finds a vanished peer while a connection legitimately idles (a slow writer).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


def recv_into_exact(sock: socket.socket, mv: memoryview) -> None:
    while mv:
        n = sock.recv_into(mv)
        if n == 0:
            raise ConnectionClosed("connection closed by the peer")
        mv = mv[n:]


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    recv_into_exact(sock, memoryview(buf))
    return bytes(buf)


def recv_idle(sock: socket.socket, n: int, stopping: threading.Event) -> bytes:
    """Like recv_exact, but waits for the first byte for as long as the peer stays alive:
    a writer may pause between packets for longer than the socket timeout."""
    buf = bytearray(n)
    mv = memoryview(buf)
    while True:
        try:
            got = sock.recv_into(mv)
            break
        except socket.timeout:
            if stopping.is_set():
                raise
    if got == 0:
        raise ConnectionClosed("connection closed by the peer")
    recv_into_exact(sock, mv[got:])
    return bytes(buf)


def send_message(sock: socket.socket, message: dict) -> None:
    data = json.dumps(message, separators=(",", ":")).encode()
    sock.sendall(LENGTH.pack(len(data)) + data)


def recv_message(sock: socket.socket) -> dict:
    (n,) = LENGTH.unpack(recv_exact(sock, LENGTH.size))
    if n > MAX_MESSAGE:
        raise ConnectionClosed(f"message of {n} bytes is too large: not a minijet peer?")
    return json.loads(recv_exact(sock, n))


def send_ack(sock: socket.socket, seqno: int, statuses: list[int]) -> None:
    sock.sendall(ACK.pack(seqno, len(statuses)) + bytes(statuses))


def recv_ack(sock: socket.socket) -> tuple[int, list[int]]:
    seqno, n = ACK.unpack(recv_exact(sock, ACK.size))
    return seqno, list(recv_exact(sock, n))


def packet_size_for(packet_size: int, chunk_size: int) -> int:
    """Packets carry whole chunks (except the last packet of a block)."""
    return max(chunk_size, packet_size - packet_size % chunk_size)


# ---- client side of WRITE_BLOCK ----

class BlockWriter:
    """Streams one block down a pipeline of dataservers (used by the DfsClient's writer and
    by a dataserver replicating a replica). write_packet() sends at once and returns without
    waiting for acks; finish() returns when every node has finalized its replica. Failures
    raise PipelineError with the index of the node to blame."""

    def __init__(self, targets: list[str], block_id: int, chunk_size: int, timeout: float,
                 token: str = ""):
        if not targets:
            raise PipelineError(0, f"block {block_id}: no dataserver to write to")
        self.targets = targets
        self.block_id = block_id
        self.chunk_size = chunk_size
        self.length = 0
        self._seqno = 0         # next packet to send
        self._acked = -1        # last packet every node acked
        self._last_seqno = -1
        self._error: PipelineError | None = None
        self._done = threading.Event()
        # Nodes along the pipeline time out first and blame precisely; the writer waits longer.
        try:
            self._sock = connect(targets[0], timeout * 1.5)
        except OSError as e:
            raise PipelineError(0, f"block {block_id}: cannot connect to dataserver "
                                   f"{targets[0]}: {e}") from None
        try:
            send_message(self._sock, {"op": "write_block", "v": PROTOCOL_VERSION,
                                      "token": token, "block_id": block_id,
                                      "chunk_size": chunk_size, "targets": targets[1:]})
            reply = recv_message(self._sock)
        except (OSError, ValueError) as e:
            self._sock.close()
            raise PipelineError(0, f"block {block_id}: dataserver {targets[0]} failed to set "
                                   f"up the pipeline: {e}") from None
        if reply.get("status") != "ok":
            self._sock.close()
            index = int(reply.get("index", 0))
            raise PipelineError(index, f"block {block_id}: pipeline set-up failed at "
                                       f"{self._name(index)}: {reply.get('message')}")
        self._acker = threading.Thread(target=self._read_acks, daemon=True,
                                       name=f"acks-blk_{block_id}")
        self._acker.start()

    def _name(self, index: int) -> str:
        return self.targets[index] if index < len(self.targets) else f"node {index}"

    def write_packet(self, data, crcs=None) -> None:
        """Send `data` (whole chunks unless it is the block's last data) and its CRCs."""
        if self._error:
            raise self._error
        if crcs is None:
            crcs = blockstore.checksums(data, self.chunk_size)
        try:
            self._sock.sendall(PACKET.pack(self._seqno, self.length, len(data), 0) + crcs)
            self._sock.sendall(data)
        except OSError as e:
            self._raise_from_acks(e)
        self._seqno += 1
        self.length += len(data)

    def finish(self) -> None:
        """Send the LAST packet and wait until every node has finalized the replica."""
        if self._error:
            raise self._error
        self._last_seqno = self._seqno
        try:
            self._sock.sendall(PACKET.pack(self._seqno, self.length, 0, LAST))
        except OSError as e:
            self._raise_from_acks(e)
        self._done.wait()
        self.close()
        if self._error:
            raise self._error

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass

    def _raise_from_acks(self, cause: Exception):
        # The acks in flight tell which node broke; the send failure alone does not.
        self._done.wait()
        self.close()
        raise self._error or PipelineError(0, f"block {self.block_id}: lost the connection "
                                              f"to {self.targets[0]}: {cause}")

    def _read_acks(self) -> None:
        try:
            while True:
                try:
                    seqno, statuses = recv_ack(self._sock)
                except socket.timeout:
                    if self._acked + 1 >= self._seqno and self._last_seqno < 0:
                        continue  # everything sent is acked: the writer is idle, not stuck
                    raise
                for index, status in enumerate(statuses):
                    if status != SUCCESS:
                        self._error = PipelineError(
                            index, f"block {self.block_id}: dataserver {self._name(index)} in "
                                   f"the pipeline reported {STATUS_NAMES.get(status, status)}")
                        return
                self._acked = seqno
                if seqno == self._last_seqno:
                    return
        except (OSError, ValueError) as e:
            self._error = PipelineError(0, f"block {self.block_id}: lost the connection to "
                                           f"{self.targets[0]}: {e or type(e).__name__}")
        finally:
            self._done.set()


# ---- client side of READ_BLOCK ----

class BlockReader:
    """Streams [offset, offset+length) of one replica, packet by packet, checking CRCs."""

    def __init__(self, address: str, block_id: int, offset: int, length: int, timeout: float,
                 token: str = ""):
        self.address = address
        self.block_id = block_id
        try:
            self._sock = connect(address, timeout)
        except OSError as e:
            raise ReplicaUnavailable(f"block {block_id}: cannot connect to dataserver "
                                     f"{address}: {e}") from None
        try:
            send_message(self._sock, {"op": "read_block", "v": PROTOCOL_VERSION,
                                      "token": token, "block_id": block_id, "offset": offset,
                                      "length": length})
            reply = recv_message(self._sock)
        except (OSError, ValueError) as e:
            self.close()
            raise ReplicaUnavailable(f"block {block_id}: dataserver {address} failed: {e}") \
                from None
        if reply.get("status") != "ok":
            self.close()
            cls = ChecksumError if reply.get("corrupt") else ReplicaUnavailable
            raise cls(f"block {block_id}: dataserver {address}: {reply.get('message')}")
        self.chunk_size = reply["chunk_size"]
        self.pos = reply["start"]      # block offset of the next packet's first byte
        self.end = reply["end"]
        self.block_length = reply["block_length"]
        self._pending: tuple[int, bytes] | None = None

    def next_length(self) -> int:
        """Read the next packet's header; the length of its data (0 when all is read)."""
        if self._pending is None:
            if self.pos >= self.end:
                return 0
            try:
                _, offset, n, _ = PACKET.unpack(recv_exact(self._sock, PACKET.size))
                if offset != self.pos or n > MAX_PACKET:
                    raise ConnectionClosed(f"bad packet (offset {offset}, length {n})")
                crcs = recv_exact(self._sock, blockstore.CRC_SIZE *
                                  blockstore.chunk_count(n, self.chunk_size))
            except (OSError, ValueError) as e:
                raise ReplicaUnavailable(f"block {self.block_id}: reading from {self.address} "
                                         f"failed: {e or type(e).__name__}") from None
            self._pending = (n, crcs)
        return self._pending[0]

    def read_into(self, dest: memoryview) -> int:
        """Receive the pending packet's data into dest (at least next_length() bytes)."""
        n, crcs = self._pending
        data = dest[:n]
        try:
            recv_into_exact(self._sock, data)
        except OSError as e:
            raise ReplicaUnavailable(f"block {self.block_id}: reading from {self.address} "
                                     f"failed: {e or type(e).__name__}") from None
        bad = blockstore.verify(data, crcs, self.chunk_size)
        if bad >= 0:
            raise ChecksumError(f"block {self.block_id}: checksum mismatch at byte "
                                f"{self.pos + bad * self.chunk_size} of the replica on "
                                f"{self.address}")
        self._pending = None
        self.pos += n
        return n

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass


# ---- server side ----

def serve(sock: socket.socket, store: blockstore.BlockStore, config: dict,
          on_block_received: Callable[[int, int], None], stopping: threading.Event) -> None:
    """Serve one data-transfer connection. `config` holds packet_size, timeout and token
    (the cluster's auth token: when set, an op must carry it);
    `on_block_received(block_id, length)` runs after a replica is finalized, before its
    last ack (it raises to fail the write)."""
    op = recv_message(sock)
    kind = op.get("op")
    if op.get("v") != PROTOCOL_VERSION:
        send_message(sock, {"status": "error", "index": 0,
                            "message": f"unsupported protocol version {op.get('v')}"})
    elif config["token"] and not hmac.compare_digest(str(op.get("token", "")),
                                                     config["token"]):
        send_message(sock, {"status": "error", "index": 0,
                            "message": "missing or wrong auth token"})
    elif kind == "read_block":
        _serve_read(sock, store, op, config["packet_size"])
    elif kind == "write_block":
        _BlockReceiver(sock, store, op, config, on_block_received, stopping).run()
    else:
        send_message(sock, {"status": "error", "index": 0, "message": f"unknown op {kind!r}"})


def _serve_read(sock: socket.socket, store: blockstore.BlockStore, op: dict,
                packet_size: int) -> None:
    block_id, offset, length = int(op["block_id"]), int(op["offset"]), int(op["length"])
    try:
        replica = store.open(block_id)
    except (NotFound, ChecksumError) as e:
        send_message(sock, {"status": "error", "message": str(e),
                            "corrupt": isinstance(e, ChecksumError)})
        return
    with replica:
        size, chunk = replica.length, replica.chunk_size
        if not 0 <= offset <= size:
            send_message(sock, {"status": "error",
                                "message": f"offset {offset} is outside block {block_id} "
                                           f"of {size} bytes"})
            return
        end = size if length < 0 else min(size, offset + length)
        start = offset - offset % chunk
        end = min(size, -(-end // chunk) * chunk)
        send_message(sock, {"status": "ok", "chunk_size": chunk, "start": start, "end": end,
                            "block_length": size})
        step = packet_size_for(packet_size, chunk)
        seqno, pos = 0, start
        try:
            while pos < end:
                n = min(step, end - pos)
                flags = LAST if pos + n >= end else 0
                sock.sendall(PACKET.pack(seqno, pos, n, flags) + replica.crcs(pos, n))
                if sock.sendfile(replica.data, pos, n) != n:
                    raise ConnectionClosed(f"block {block_id}: replica shrank while being read")
                pos += n
                seqno += 1
        except (BrokenPipeError, ConnectionResetError):
            # A reader that seeks elsewhere or stops early hangs up: that is no error.
            log.debug("block %d: reader left at byte %d", block_id, pos)


_MIRROR_FAILED = object()


class _BlockReceiver:
    """This node's part of a WRITE_BLOCK pipeline (see the module docstring)."""

    def __init__(self, upstream: socket.socket, store: blockstore.BlockStore, op: dict,
                 config: dict, on_block_received: Callable[[int, int], None],
                 stopping: threading.Event):
        self.upstream = upstream
        self.store = store
        self.block_id = int(op["block_id"])
        self.chunk_size = int(op["chunk_size"])
        self.targets = list(op.get("targets", []))
        self.timeout = config["timeout"]
        self.token = config["token"]
        self.on_block_received = on_block_received
        self.stopping = stopping
        self.mirror: socket.socket | None = None
        self.acks: queue.Queue = queue.Queue()
        self.failed = threading.Event()

    def run(self) -> None:
        try:
            replica = self.store.create(self.block_id, self.chunk_size)
        except (AlreadyExists, OSError) as e:
            send_message(self.upstream, {"status": "error", "index": 0, "message": str(e)})
            return
        finalized = False
        responder = None
        try:
            if not self._set_up_mirror():
                return
            send_message(self.upstream, {"status": "ok"})
            responder = threading.Thread(target=self._respond, daemon=True,
                                         name=f"responder-blk_{self.block_id}")
            responder.start()
            finalized = self._receive(replica)
        except (OSError, ValueError, ConnectionClosed) as e:
            log.info("block %d: write from upstream ended: %s", self.block_id,
                     e or type(e).__name__)
        finally:
            self.acks.put(None)
            if finalized:
                responder.join()  # it ends once the last ack went upstream
            else:
                replica.abort()
                if responder is not None:
                    self._drain()
            if self.mirror is not None:
                self.mirror.close()  # also wakes a responder still waiting for acks
            if responder is not None:
                responder.join(self.timeout * 2)

    def _set_up_mirror(self) -> bool:
        if not self.targets:
            return True
        target = self.targets[0]
        try:
            self.mirror = connect(target, self.timeout)
            send_message(self.mirror, {"op": "write_block", "v": PROTOCOL_VERSION,
                                       "token": self.token, "block_id": self.block_id,
                                       "chunk_size": self.chunk_size,
                                       "targets": self.targets[1:]})
            reply = recv_message(self.mirror)
        except (OSError, ValueError) as e:
            reply = {"status": "error", "index": 0, "message": f"cannot reach {target}: {e}"}
        if reply.get("status") != "ok":
            log.warning("block %d: pipeline set-up failed downstream: %s", self.block_id,
                        reply.get("message"))
            send_message(self.upstream, {"status": "error",
                                         "index": int(reply.get("index", 0)) + 1,
                                         "message": reply.get("message")})
            return False
        return True

    def _receive(self, replica: blockstore.ReplicaWriter) -> bool:
        """Receive, forward and store packets; True once the replica is finalized."""
        buf = memoryview(bytearray(0))
        mirror_ok = self.mirror is not None
        while not self.failed.is_set():
            header = recv_idle(self.upstream, PACKET.size, self.stopping)
            seqno, offset, n, flags = PACKET.unpack(header)
            if n > MAX_PACKET or offset != replica.length:
                raise ConnectionClosed(f"bad packet {seqno} (offset {offset}, length {n}) at "
                                       f"length {replica.length}")
            crcs = recv_exact(self.upstream, blockstore.CRC_SIZE *
                              blockstore.chunk_count(n, self.chunk_size))
            if len(buf) < n:
                buf = memoryview(bytearray(n))
            data = buf[:n]
            recv_into_exact(self.upstream, data)
            if mirror_ok:
                try:
                    self.mirror.sendall(header + crcs)
                    self.mirror.sendall(data)
                except OSError as e:
                    log.warning("block %d: forwarding to %s failed: %s", self.block_id,
                                self.targets[0], e)
                    self.acks.put(_MIRROR_FAILED)
                    return False
            status = self._store(replica, data, crcs, flags & LAST)
            self.acks.put((seqno, status))
            if status != SUCCESS:
                return False
            if flags & LAST:
                return True
        return False

    def _store(self, replica: blockstore.ReplicaWriter, data: memoryview, crcs: bytes,
               last: int) -> int:
        if blockstore.verify(data, crcs, self.chunk_size) >= 0:
            log.warning("block %d: checksum error in received data at byte %d",
                        self.block_id, replica.length)
            return ERROR_CHECKSUM
        try:
            replica.write(data, crcs)
            if last:
                replica.finalize()
                self.on_block_received(self.block_id, replica.length)
                log.info("block %d: replica finalized, %d bytes", self.block_id, replica.length)
        except (OSError, ValueError, MinijetError) as e:
            log.error("block %d: storing the replica failed: %s", self.block_id, e)
            if last and self.store.has(self.block_id):
                self.store.delete(self.block_id)
            return ERROR
        return SUCCESS

    def _respond(self) -> None:
        """Ack each packet upstream once it is stored here and acked downstream."""
        try:
            while True:
                item = self.acks.get()
                if item is None:
                    return
                if item is _MIRROR_FAILED:
                    self._send_up(-1, [SUCCESS] + self._downstream_verdict())
                    return
                seqno, status = item
                if status != SUCCESS:
                    self._send_up(seqno, [status])
                    return
                statuses = [SUCCESS]
                if self.mirror is not None:
                    try:
                        got, downstream = recv_ack(self.mirror)
                        if got != seqno and not any(downstream):  # an error ack may come early
                            raise ConnectionClosed(f"ack {got} for packet {seqno}")
                    except (OSError, ValueError) as e:
                        log.warning("block %d: no ack from %s: %s", self.block_id,
                                    self.targets[0], e or type(e).__name__)
                        downstream = [ERROR]
                    statuses += downstream
                self._send_up(seqno, statuses)
                if any(statuses):
                    return
        except OSError as e:
            log.info("block %d: upstream went away: %s", self.block_id, e)
            self.failed.set()

    def _downstream_verdict(self) -> list[int]:
        """After a failed forward: the downstream's own error ack if it sent one, else blame it."""
        try:
            while True:
                _, statuses = recv_ack(self.mirror)
                if any(statuses):
                    return statuses
        except (OSError, ValueError):
            return [ERROR]

    def _send_up(self, seqno: int, statuses: list[int]) -> None:
        if any(statuses):
            self.failed.set()
        send_ack(self.upstream, seqno, statuses)

    def _drain(self) -> None:
        """After a failure, read and drop what the upstream still sends until it hangs up,
        so that our error ack is not lost to a connection reset."""
        try:
            self.upstream.settimeout(self.timeout)
            while self.upstream.recv(1 << 16):
                pass
        except OSError:
            pass
