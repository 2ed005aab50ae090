"""The client half of the data-transfer protocol (transfer_wire.py): BlockWriter streams a
block down a pipeline of dataservers, BlockReader streams a replica back, LocalBlockReader
reads a replica on this machine straight from its file (a short-circuit read). Used by the
DfsClient, and by a dataserver that replicates one of its replicas. Each opens its
connection with the handshake of transfer_auth.py, over TLS when the credentials say so;
a BlockWriter given a ConnectionPool takes a kept connection from it, and gives its own
back once the block is written."""
from __future__ import annotations

import os
import select
import socket
import threading
import time

from minijet.dfs import blockstore
from minijet.dfs.transfer_auth import BlockAccess, Credentials, authenticate_to_server, dial
from minijet.dfs.transfer_wire import (CLOSE, CLOSED, CONNECT_TIMEOUT, KEEPALIVE, LAST,
                                       MAX_PACKET, PACKET, STATUS_NAMES, STORED,
                                       ConnectionClosed,
                                       local_socket_name, packet_size_for, read_block_op,
                                       recv_ack, recv_crcs, recv_exact, recv_into_exact,
                                       recv_message, request_fds_op, send_message,
                                       write_block_op)
from minijet.errors import ChecksumError, Unavailable


class PipelineError(Unavailable):
    """A write pipeline broke; `index` is the position of the node that failed."""

    def __init__(self, index: int, message: str):
        super().__init__(message)
        self.index = index


class ReplicaUnavailable(Unavailable):
    """A dataserver could not serve a replica (unreachable, no such replica, ...)."""


class ConnectionPool:
    """Idle data-transfer connections, kept for the next block written to the same
    dataserver: a client writing many small files connects and shakes hands once per
    dataserver, not once per file. Only connections opened with the cluster's token, or
    in an open cluster, are kept (one opened with a block token serves that block only).
    A connection idle for half the dataserver's KEEPALIVE is closed rather than reused."""

    MAX_IDLE_PER_ADDRESS = 4

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[tuple, list[tuple[float, socket.socket]]] = {}
        self._pid = os.getpid()

    @staticmethod
    def _key(address: str, credentials: Credentials) -> tuple | None:
        if credentials.block is not None and not credentials.token:
            return None
        return address, credentials.token, credentials.tls

    def take(self, address: str, credentials: Credentials) -> socket.socket | None:
        """A kept connection to `address` opened with `credentials`, or None."""
        key = self._key(address, credentials)
        with self._lock:
            if self._pid != os.getpid():   # a forked child: its parent uses these sockets
                self._idle, self._pid = {}, os.getpid()
            idle = self._idle.get(key, [])
            while idle:
                since, sock = idle.pop()
                # not idle too long, and not closed by the dataserver (it would be readable)
                if time.monotonic() - since < KEEPALIVE / 2 and \
                        not select.select([sock], [], [], 0)[0]:
                    return sock
                sock.close()
        return None

    def give(self, address: str, credentials: Credentials, sock: socket.socket) -> None:
        """Keeps `sock`, whose last op ended cleanly, for the next one (or closes it)."""
        key = self._key(address, credentials)
        with self._lock:
            idle = self._idle.setdefault(key, []) if key is not None else None
            if idle is not None and len(idle) < self.MAX_IDLE_PER_ADDRESS and \
                    self._pid == os.getpid():
                idle.append((time.monotonic(), sock))
                return
        sock.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for kept in idle.values():
            for _, sock in kept:
                sock.close()


class _Connection:
    """One data-transfer connection to a dataserver."""

    _sock: socket.socket | None

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


# ---- WRITE_BLOCK ----

class BlockWriter(_Connection):
    """Streams one block down a pipeline of dataservers (used by the DfsClient's writer and
    by a dataserver replicating a replica). write_packet() sends at once and returns without
    waiting for acks; finish() returns when every node has finalized its replica. Failures
    raise PipelineError with the index of the node to blame. `file`: the writer's
    {path, client_id}, given by a client writing that file, so that finish() may close it."""

    def __init__(self, targets: list[str], block_id: int, chunk_size: int, timeout: float,
                 credentials: Credentials = Credentials(), size: int = 0,
                 file: dict | None = None, pool: ConnectionPool | None = None):
        if not targets:
            raise PipelineError(0, f"block {block_id}: no dataserver to write to")
        self.targets = targets
        self.block_id = block_id
        self.chunk_size = chunk_size
        self.length = 0
        self._seqno = 0         # next packet to send
        self._acked = -1        # last packet every node acked
        self._last_seqno = -1
        self._closed = False    # the first node's last ack said CLOSED
        self._error: PipelineError | None = None
        self._done = threading.Event()
        self._credentials = credentials
        self._pool = pool
        op = write_block_op(block_id, chunk_size, targets[1:], size, file)
        kept = _on_kept_connection(pool, targets[0], credentials, op)
        if kept is not None:
            self._sock, reply = kept
        else:
            # Nodes along the pipeline time out first and blame precisely; the writer waits
            # longer.
            try:
                self._sock = dial(targets[0], timeout * 1.5, credentials)
            except OSError as e:
                raise PipelineError(0, f"block {block_id}: cannot connect to dataserver "
                                       f"{targets[0]}: {e}") from None
            try:
                send_message(self._sock, op)
                reply = recv_message(self._sock)
            except (OSError, ValueError) as e:
                self._sock.close()
                raise PipelineError(0, f"block {block_id}: dataserver {targets[0]} failed to "
                                       f"set up the pipeline: {e}") from None
        if reply.get("status") != "ok":
            self._sock.close()
            index = int(reply.get("index", 0))
            raise PipelineError(index, f"block {block_id}: pipeline set-up failed at "
                                       f"{self._name(index)}: {reply.get('message')}")
        # Acks are read by a thread of their own once a second packet goes out, so that a
        # failure shows while the block streams; a block of one packet (a small file) reads
        # its acks in finish(), without a thread.
        self._acker: threading.Thread | None = None

    def _name(self, index: int) -> str:
        return self.targets[index] if index < len(self.targets) else f"node {index}"

    def write_packet(self, data, crcs=None) -> None:
        """Send `data` (whole chunks unless it is the block's last data) and its CRCs."""
        if self._error:
            raise self._error
        if crcs is None:
            crcs = blockstore.checksums(data, self.chunk_size)
        if self._seqno == 1:
            self._acker = threading.Thread(target=self._read_acks, daemon=True,
                                           name=f"acks-blk_{self.block_id}")
            self._acker.start()
        try:
            self._sock.sendall(PACKET.pack(self._seqno, self.length, len(data), 0) + crcs)
            self._sock.sendall(data)
        except OSError as e:
            self._raise_from_acks(e)
        self._seqno += 1
        self.length += len(data)

    def finish(self, close: bool = False) -> bool:
        """Send the LAST packet and wait until every node has finalized the replica. With
        `close` (the writer's file ends with this block) the pipeline may complete the file:
        whether it did."""
        if self._error:
            raise self._error
        self._last_seqno = self._seqno
        try:
            self._sock.sendall(PACKET.pack(self._seqno, self.length, 0,
                                           LAST | CLOSE if close else LAST))
        except OSError as e:
            self._raise_from_acks(e)
        self._wait_acks()
        if self._error:
            self.close()
            raise self._error
        if self._pool is not None:   # the connection is fit for another block
            sock, self._sock = self._sock, None
            self._pool.give(self.targets[0], self._credentials, sock)
        else:
            self.close()
        return self._closed

    def _wait_acks(self) -> None:
        if self._acker is None:
            self._read_acks()
        self._done.wait()

    def _raise_from_acks(self, cause: Exception):
        # The acks in flight tell which node broke; the send failure alone does not.
        self._wait_acks()
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
                    if status not in STORED:
                        self._error = PipelineError(
                            index, f"block {self.block_id}: dataserver {self._name(index)} in "
                                   f"the pipeline reported {STATUS_NAMES.get(status, status)}")
                        return
                self._acked = seqno
                if seqno == self._last_seqno:
                    self._closed = statuses[:1] == [CLOSED]
                    return
        except (OSError, ValueError) as e:
            self._error = PipelineError(0, f"block {self.block_id}: lost the connection to "
                                           f"{self.targets[0]}: {e or type(e).__name__}")
        finally:
            self._done.set()


def _on_kept_connection(pool: ConnectionPool | None, address: str, credentials: Credentials,
                        op: dict) -> tuple[socket.socket, dict] | None:
    """`op` sent on a kept connection to `address`, and the dataserver's answer; None when
    the pool has none, or the dataserver closed it meanwhile (a fresh one is then made)."""
    sock = pool.take(address, credentials) if pool is not None else None
    if sock is None:
        return None
    try:
        send_message(sock, op)
        return sock, recv_message(sock)
    except (OSError, ValueError):
        sock.close()
        return None


# ---- READ_BLOCK ----

class BlockReader(_Connection):
    """Streams [offset, offset+length) of one replica, packet by packet, checking CRCs."""

    def __init__(self, address: str, block_id: int, offset: int, length: int, timeout: float,
                 credentials: Credentials = Credentials()):
        self.address = address
        self.block_id = block_id
        try:
            self._sock = dial(address, timeout, credentials)
        except OSError as e:
            raise ReplicaUnavailable(f"block {block_id}: cannot connect to dataserver "
                                     f"{address}: {e}") from None
        try:
            send_message(self._sock, read_block_op(block_id, offset, length))
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
                crcs = recv_crcs(self._sock, n, self.chunk_size)
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
        blockstore.check(data, crcs, self.chunk_size, self.block_id, self.pos,
                         f"the replica on {self.address}")
        self._pending = None
        self.pos += n
        return n


# ---- short-circuit READ ----

class LocalBlockReader:
    """Reads [offset, offset+length) of a replica on this machine from the replica's own file,
    `packet_size` at a time, checking its CRCs; the same interface as BlockReader."""

    def __init__(self, fd: int, block_id: int, chunk_size: int, block_length: int,
                 crcs: bytes, offset: int, length: int, packet_size: int):
        self.block_id = block_id
        self.chunk_size = chunk_size
        self.block_length = block_length
        self._fd = fd
        self._crcs = crcs
        self.pos, self.end = blockstore.chunk_span(offset, length, block_length, chunk_size)
        self._step = packet_size_for(packet_size, chunk_size)

    def next_length(self) -> int:
        return min(self._step, self.end - self.pos) if self.pos < self.end else 0

    def read_into(self, dest: memoryview) -> int:
        n = self.next_length()
        data = dest[:n]
        if os.preadv(self._fd, [data], self.pos) != n:
            raise ReplicaUnavailable(f"block {self.block_id}: the local replica shrank")
        blockstore.check(data, blockstore.crcs_of(self._crcs, self.pos, n, self.chunk_size),
                         self.chunk_size, self.block_id, self.pos, "the local replica")
        self.pos += n
        return n

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def open_local(address: str, block_id: int, offset: int, length: int, packet_size: int,
               timeout: float, token: str = "",
               block: BlockAccess | None = None) -> LocalBlockReader | None:
    """A short-circuit reader of the replica held by the dataserver at `address`, or None
    when that dataserver is not on this machine (`block`: its block token, used without a
    token). Raises as BlockReader does when it is but cannot serve the replica."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(min(timeout, CONNECT_TIMEOUT))
        try:
            sock.connect(local_socket_name(address))
        except (ConnectionRefusedError, FileNotFoundError):
            return None
        sock.settimeout(timeout)
        authenticate_to_server(sock, token, block)
        send_message(sock, request_fds_op(block_id))
        _, fds, _, _ = socket.recv_fds(sock, 1, 1)
        try:
            reply = recv_message(sock)
            if reply.get("status") != "ok" or len(fds) != 1:
                cls = ChecksumError if reply.get("corrupt") else ReplicaUnavailable
                raise cls(f"block {block_id}: dataserver {address}: {reply.get('message')}")
            crcs = recv_exact(sock, blockstore.CRC_SIZE * blockstore.chunk_count(
                reply["block_length"], reply["chunk_size"]))
            reader = LocalBlockReader(fds[0], block_id, reply["chunk_size"],
                                      reply["block_length"], crcs, offset, length, packet_size)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return reader
    except (OSError, ValueError, KeyError) as e:
        raise ReplicaUnavailable(f"block {block_id}: dataserver {address} failed a local "
                                 f"read: {e or type(e).__name__}") from None
    finally:
        sock.close()
