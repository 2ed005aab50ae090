"""The dataserver half of the data-transfer protocol (transfer_wire.py): a TCP server (over
TLS when given a context) that serves each connection in a thread of its own, and, for
short-circuit reads, a Unix socket handing a local client a replica's open file. Every
connection starts with the handshake (transfer_auth.py).

READ_BLOCK: the data goes out with sendfile() (read and sent over TLS), with the CRCs stored
beside the replica; the reader checks them.

WRITE_BLOCK: each dataserver connects to targets[0] with targets[1:] (so the pipeline sets
itself up hop by hop) and answers {status: ok} once its whole downstream is ready. Then
packets flow: each node receives a packet, forwards it downstream at once, verifies and
writes it; a responder thread reads the downstream ack for that packet and sends upstream
its own status in front of the downstream ones (the last node acks from the thread that
receives). On the LAST packet a node finalizes its
replica and reports it to the nameserver (BlockReceived, grouped with replicas finished
meanwhile: dfs/received.py) before acking it, so a writer that holds the last ack knows every
replica is durable and known. A LAST packet with the CLOSE flag is the writer's close: the
first node reports its replica only once the downstream acked it, with the close, and acks
CLOSED when the nameserver completed the file. A node that sees a failure
sends an ack whose statuses point at the failed node (its own index for a local fault, the
next one when the downstream broke without saying why), then drains its upstream until the
writer hangs up.
"""
from __future__ import annotations

import logging
import queue
import socket
import ssl
import threading
import time
from typing import Callable

from minijet import net, tls
from minijet.dfs import blockstore, blocktokens
from minijet.dfs.transfer_auth import (BlockAccess, Credentials, Refused, authenticate_client,
                                       dial)
from minijet.dfs.received import Close
from minijet.dfs.transfer_wire import (CLOSE, CLOSED, ERROR, ERROR_CHECKSUM, KEEPALIVE, LAST,
                                       MAX_PACKET, PACKET, STORED, SUCCESS, ConnectionClosed,
                                       local_socket_name, packet_size_for, recv_ack, recv_crcs,
                                       recv_idle, recv_into_exact, recv_message, recv_next_op,
                                       send_ack, send_message, tune, write_block_op)
from minijet.errors import (AlreadyExists, ChecksumError, MinijetError, NoSpace, NotFound,
                            Unavailable)

log = logging.getLogger(__name__)

# (block id, length, the writer's close or None) -> whether it closed the file
OnBlockReceived = Callable[[int, int, "Close | None"], bool]


def _this_machine_ip(towards: str) -> str:
    """An address of this machine that the host `towards` can reach."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((towards, 9))  # no packet is sent: this only picks a route
            return s.getsockname()[0]
    except OSError:
        return socket.gethostbyname(socket.gethostname())


# What OpenSSL says when the first bytes of a connection are not a TLS record.
_NOT_TLS = ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST", "RECORD_LAYER_FAILURE")


class TransferStats:
    """Totals since start, for the dataserver's /metrics (minijet.web.metrics)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes_read = self.bytes_written = self.checksum_errors = 0
        self.active = 0   # ops being served (not connections: a kept one may idle)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)


class DataTransferServer:
    """Accepts data-transfer connections and serves each in its own thread (`serve`).
    `credentials`: the cluster's token, which clients must prove they know, and how this
    server reaches the next node of a pipeline; `tls_context`: what it serves TLS with."""

    def __init__(self, store: blockstore.BlockStore, address: str,
                 on_block_received: OnBlockReceived, *, packet_size: int,
                 timeout: float, credentials: Credentials = Credentials(),
                 tls_context: ssl.SSLContext | None = None,
                 advertise_towards: str = "localhost", short_circuit: bool = True):
        host, port = net.split_address(address)
        try:
            self._listener = socket.create_server((host or "0.0.0.0", port), backlog=128)
        except OSError as e:
            raise Unavailable(f"cannot listen on {address}: {e.strerror or e}") from None
        self._listener.settimeout(0.5)
        bound_ip, self.port = self._listener.getsockname()[:2]
        ip = _this_machine_ip(advertise_towards) if net.is_any_address(host) else bound_ip
        self.address = net.join_address(ip, self.port)
        self.store = store
        self.on_block_received = on_block_received
        self.stats = TransferStats()
        self.settings = {"packet_size": packet_size, "timeout": timeout,
                         "credentials": credentials, "stats": self.stats}
        self._tls = tls_context
        self.stopping = threading.Event()
        self._threads = [threading.Thread(target=self._accept_loop,
                                          args=(self._listener, self._handle), daemon=True,
                                          name="data-accept")]
        self._local: socket.socket | None = None
        if short_circuit:
            self._local = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self._local.bind(local_socket_name(self.address))
            except OSError as e:  # reads still work, over TCP
                log.warning("no short-circuit reads: cannot bind the local socket: %s", e)
                self._local.close()
                self._local = None
            else:
                self._local.listen(128)
                self._local.settimeout(0.5)
                self._threads.append(threading.Thread(
                    target=self._accept_loop, args=(self._local, self._handle_local),
                    daemon=True, name="local-accept"))

    @property
    def active_transfers(self) -> int:
        return self.stats.active

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() at once on Linux
        except OSError:
            pass
        if self._local:  # a Unix listener is woken by a connection instead
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as wake:
                try:
                    wake.connect(self._local.getsockname())
                except OSError:
                    pass
        for thread in self._threads:
            thread.join()
        self._listener.close()
        if self._local:
            self._local.close()

    def _accept_loop(self, listener: socket.socket, handle: Callable) -> None:
        while not self.stopping.is_set():
            try:
                conn, peer = listener.accept()
            except socket.timeout:
                continue
            except OSError as e:
                if self.stopping.is_set():
                    return
                log.warning("accept failed: %s", e)
                time.sleep(0.1)
                continue
            if self.stopping.is_set():
                conn.close()
                return
            threading.Thread(target=handle, args=(conn, peer), daemon=True,
                             name=f"data-{peer}").start()

    def _handle_local(self, conn: socket.socket, peer) -> None:
        try:
            conn.settimeout(self.settings["timeout"])
            access = authenticate_client(conn, self.settings["credentials"].token)
            op = recv_message(conn)
            refusal = _outside(op, access) if op.get("op") == "request_fds" else \
                f"unknown op {op.get('op')!r} on the local socket"
            if refusal is not None:
                conn.sendall(b"F")
                send_message(conn, {"status": "error", "message": refusal})
            else:
                _serve_fds(conn, self.store, int(op["block_id"]))
        except Refused as e:
            log.warning("local data connection refused: %s", e)
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.info("local data connection ended: %s", e or type(e).__name__)
        finally:
            conn.close()

    def _handle(self, conn: socket.socket, peer) -> None:
        try:
            tune(conn, self.settings["timeout"])
            if self._tls is not None:
                try:
                    conn = tls.wrap_server(self._tls, conn)
                except ssl.SSLError as e:
                    hint = " (not TLS: a plain-text client?)" if e.reason in _NOT_TLS else ""
                    log.warning("data connection from %s:%s refused: TLS handshake failed: "
                                "%s%s", peer[0], peer[1], e.reason or e, hint)
                    return
            serve(conn, self.store, self.settings, self.on_block_received, self.stopping)
        except Refused as e:
            log.warning("data connection from %s:%s refused: %s", peer[0], peer[1], e)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            log.info("data connection from %s:%s ended: %s", peer[0], peer[1],
                     e or type(e).__name__)
        except Exception:
            log.exception("data connection from %s:%s failed", peer[0], peer[1])
        finally:
            conn.close()


def serve(sock: socket.socket, store: blockstore.BlockStore, config: dict,
          on_block_received: OnBlockReceived, stopping: threading.Event) -> None:
    """Serve one data-transfer connection: the handshake, then its ops one after another.
    A connection whose op ended cleanly is kept for the next, idle for up to KEEPALIVE, so a
    client writing many small files connects and shakes hands once, not once per block.
    `config` holds packet_size, timeout, credentials and stats; `on_block_received(block_id,
    length, close)` runs after a replica is finalized, before its last ack (it raises to
    fail the write), and says whether it closed the writer's file (close: (path, client
    id), or None). Raises Refused when the handshake fails."""
    access = authenticate_client(sock, config["credentials"].token)
    stats: TransferStats = config["stats"]
    op = recv_message(sock)
    while op is not None:
        stats.add("active")
        try:
            if not _serve_op(sock, store, op, access, config, on_block_received, stopping):
                return
        finally:
            stats.add("active", -1)
        op = recv_next_op(sock, KEEPALIVE, stopping)


def _serve_op(sock: socket.socket, store: blockstore.BlockStore, op: dict,
              access: BlockAccess | None, config: dict, on_block_received: OnBlockReceived,
              stopping: threading.Event) -> bool:
    """Serves one op; whether it ended cleanly, leaving the connection fit for another."""
    kind = op.get("op")
    refusal = _outside(op, access)
    if refusal is not None:
        send_message(sock, {"status": "error", "index": 0, "message": refusal})
    elif kind == "read_block":
        return _serve_read(sock, store, op, config["packet_size"], config["stats"])
    elif kind == "write_block":
        return _BlockReceiver(sock, store, op, config, on_block_received, stopping).run()
    else:
        send_message(sock, {"status": "error", "index": 0, "message": f"unknown op {kind!r}"})
    return False


_MODES = {"read_block": blocktokens.READ, "request_fds": blocktokens.READ,
          "write_block": blocktokens.WRITE}


def _outside(op: dict, access: BlockAccess | None) -> str | None:
    """Why `op` is not one the connection's block access allows (None: any op is)."""
    if access is None or (op.get("block_id"), _MODES.get(op.get("op"))) == \
            (access.block_id, access.mode):
        return None
    log.warning("refused %s of block %s on a connection opened for %s access to block %s",
                op.get("op"), op.get("block_id"), access.mode, access.block_id)
    return f"the block token opens block {access.block_id} for {access.mode} access only"


def _serve_fds(sock: socket.socket, store: blockstore.BlockStore, block_id: int) -> None:
    """REQUEST_FDS: the replica's data file (the descriptor is the client's own copy) and
    its CRCs, or why not."""
    try:
        replica = store.open(block_id)
    except (NotFound, ChecksumError) as e:
        sock.sendall(b"F")
        send_message(sock, {"status": "error", "message": str(e),
                            "corrupt": isinstance(e, ChecksumError)})
        return
    with replica:
        socket.send_fds(sock, [b"F"], [replica.data.fileno()])
        crcs = replica.crcs(0, replica.length)
        send_message(sock, {"status": "ok", "chunk_size": replica.chunk_size,
                            "block_length": replica.length})
        sock.sendall(crcs)


def _serve_read(sock: socket.socket, store: blockstore.BlockStore, op: dict,
                packet_size: int, stats: TransferStats) -> bool:
    """READ_BLOCK; whether every packet asked for was sent."""
    block_id, offset, length = int(op["block_id"]), int(op["offset"]), int(op["length"])
    try:
        replica = store.open(block_id)
    except (NotFound, ChecksumError) as e:
        if isinstance(e, ChecksumError):
            stats.add("checksum_errors")
        send_message(sock, {"status": "error", "message": str(e),
                            "corrupt": isinstance(e, ChecksumError)})
        return False
    with replica:
        size, chunk = replica.length, replica.chunk_size
        if not 0 <= offset <= size:
            send_message(sock, {"status": "error",
                                "message": f"offset {offset} is outside block {block_id} "
                                           f"of {size} bytes"})
            return False
        start, end = blockstore.chunk_span(offset, length, size, chunk)
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
                stats.add("bytes_read", n)
                pos += n
                seqno += 1
        except (BrokenPipeError, ConnectionResetError):
            # A reader that seeks elsewhere or stops early hangs up: that is no error.
            log.debug("block %d: reader left at byte %d", block_id, pos)
            return False
    return True


_MIRROR_FAILED = object()


def _failed(statuses: list[int]) -> bool:
    return any(s not in STORED for s in statuses)


class _BlockReceiver:
    """This node's part of a WRITE_BLOCK pipeline (see the module docstring)."""

    def __init__(self, upstream: socket.socket, store: blockstore.BlockStore, op: dict,
                 config: dict, on_block_received: OnBlockReceived,
                 stopping: threading.Event):
        self.upstream = upstream
        self.store = store
        self.block_id = int(op["block_id"])
        self.chunk_size = int(op["chunk_size"])
        self.size = int(op.get("size", 0))
        self.targets = list(op.get("targets", []))
        file = op.get("file")   # the writer's, when it is a client writing a file
        self.file: Close | None = (str(file["path"]), str(file["client_id"])) \
            if isinstance(file, dict) else None
        self.length = 0   # the finalized replica's
        self.timeout = config["timeout"]
        self.credentials = config["credentials"]
        self.on_block_received = on_block_received
        self.stopping = stopping
        self.stats: TransferStats = config["stats"]
        self.mirror: socket.socket | None = None
        self.acks: queue.SimpleQueue = queue.SimpleQueue()
        self.failed = threading.Event()

    def run(self) -> bool:
        """Receives the block; whether it ended cleanly: the replica finalized and the
        last ack sent upstream."""
        try:
            replica = self.store.create(self.block_id, self.chunk_size, self.size)
        except (AlreadyExists, NoSpace, OSError) as e:
            send_message(self.upstream, {"status": "error", "index": 0, "message": str(e)})
            return False
        finalized = answering = False
        responder = None
        try:
            if not self._set_up_mirror():
                return False
            send_message(self.upstream, {"status": "ok"})
            answering = True
            if self.mirror is not None:  # downstream acks come back while packets go down
                responder = threading.Thread(target=self._respond, daemon=True,
                                             name=f"responder-blk_{self.block_id}")
                responder.start()
            finalized = self._receive(replica)
        except (OSError, ValueError, ConnectionClosed) as e:
            log.info("block %d: write from upstream ended: %s", self.block_id,
                     e or type(e).__name__)
        finally:
            if responder is not None:
                self.acks.put(None)   # ends the responder once it has acked all before
            if finalized:
                if responder is not None:
                    responder.join()  # it ends once the last ack went upstream
            else:
                replica.abort()
                if answering:
                    self._drain()
            if self.mirror is not None:
                self.mirror.close()  # also wakes a responder still waiting for acks
            if responder is not None:
                responder.join(self.timeout * 2)
        return finalized and not self.failed.is_set()

    def _set_up_mirror(self) -> bool:
        if not self.targets:
            return True
        target = self.targets[0]
        try:
            self.mirror = dial(target, self.timeout, self.credentials)
            send_message(self.mirror, write_block_op(self.block_id, self.chunk_size,
                                                     self.targets[1:], self.size))
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
            crcs = recv_crcs(self.upstream, n, self.chunk_size)
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
            status = self._store(replica, data, crcs, flags)
            outcome = (seqno, status, status == SUCCESS and self._closing(flags))
            if self.mirror is not None:   # to the responder thread
                self.acks.put(outcome)
            else:   # the last node answers here: no thread per block
                self._answer(outcome)
            if status != SUCCESS:
                return False
            if flags & LAST:
                return True
        return False

    def _closing(self, flags: int) -> bool:
        """Whether the packet is the writer's close, carried by this node."""
        return bool(flags & LAST and flags & CLOSE) and self.file is not None

    def _store(self, replica: blockstore.ReplicaWriter, data: memoryview, crcs: bytes,
               flags: int) -> int:
        if blockstore.verify(data, crcs, self.chunk_size) >= 0:
            log.warning("block %d: checksum error in received data at byte %d",
                        self.block_id, replica.length)
            self.stats.add("checksum_errors")
            return ERROR_CHECKSUM
        try:
            replica.write(data, crcs)
            self.stats.add("bytes_written", len(data))
            if flags & LAST:
                replica.finalize()
                self.length = replica.length
                if not self._closing(flags):  # else reported once the downstream has it too
                    self._report(None)
        except (OSError, ValueError, MinijetError) as e:
            log.error("block %d: storing the replica failed: %s", self.block_id, e)
            if flags & LAST and self.store.has(self.block_id):
                self.store.delete(self.block_id)
            return ERROR
        return SUCCESS

    def _report(self, close: Close | None) -> bool:
        closed = self.on_block_received(self.block_id, self.length, close)
        log.debug("block %d: replica finalized, %d bytes", self.block_id, self.length)
        return closed

    def _report_closing(self) -> int:
        """The writer's close, once every node has the replica: this node's status."""
        try:
            return CLOSED if self._report(self.file) else SUCCESS
        except (OSError, ValueError, MinijetError) as e:
            log.error("block %d: reporting the replica failed: %s", self.block_id, e)
            self.store.delete(self.block_id)
            return ERROR

    def _respond(self) -> None:
        """The responder thread of a node with a downstream: acks each packet upstream once
        it is stored here and acked downstream."""
        while self._answer(self.acks.get()):
            pass

    def _answer(self, item) -> bool:
        """Acks one packet upstream (`item`: what the receiver made of it); whether more
        acks may follow."""
        try:
            if item is None:
                return False
            if item is _MIRROR_FAILED:
                self._send_up(-1, [SUCCESS] + self._downstream_verdict())
                return False
            seqno, status, closing = item
            if status != SUCCESS:
                self._send_up(seqno, [status])
                return False
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
            if closing and not any(statuses):
                statuses[0] = self._report_closing()
            self._send_up(seqno, statuses)
            return not _failed(statuses)
        except OSError as e:
            log.info("block %d: upstream went away: %s", self.block_id, e)
            self.failed.set()
            return False

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
        if _failed(statuses):
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
