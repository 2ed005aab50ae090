"""The data-transfer protocol's wire format: block bytes over raw TCP between clients and
dataservers, shared by both halves (transfer_client.py sends ops, transfer_server.py on a
dataserver answers them; transfer_auth.py runs the handshake).

Like HDFS's DataTransferProtocol, block data never goes through gRPC. A connection carries
operations one after another, after a handshake: once an op ended cleanly (every packet of a
read sent, a write's last ack sent) the dataserver waits up to KEEPALIVE for the next op
before it closes the connection, and a client may keep it for its next op there (one opened
with a block token serves that block only, so only token and open-cluster connections are
worth keeping).

Framing. A *message* is a 4-byte big-endian length and that many bytes of JSON; the
handshake, the op and its status are messages. Block data then flows in *packets*:
PACKET header (seqno, offset of the data in the block, data length, flags), one big-endian
CRC32 per `chunk_size` bytes of data, then the data. Acks are ACK (seqno, n) followed by n
one-byte statuses, one per node from the acking node to the end of the pipeline.

TLS. When the dataserver has security.tls_cert, its TCP port speaks TLS and everything
below runs inside it; the client verifies the server's certificate (see minijet/tls.py).
The Unix socket of short-circuit reads never uses TLS: it does not leave the machine.

Handshake, on every connection (TCP or Unix socket). Nonces are 32 random bytes, in hex;
token = security.auth_token; HMAC = HMAC-SHA256, in hex;
CLIENT_LABEL = b"minijet data transfer v2: client", SERVER_LABEL = b"... v2: server".
  client: HELLO {v: PROTOCOL_VERSION, nonce: Nc}
  server: {status: ok, v, auth: ["token", "block_token"] (or [] without a token), nonce: Ns}
          or {status: error, message} when v is not its version
  client: {method: "token", proof: HMAC(token, Ns + Nc + CLIENT_LABEL)}
          or, without the token but with a block token "<expiry>:<key>" (a task's, see
          blocktokens.py): {method: "block_token", block_id, mode: read|write, expires,
          proof: HMAC(key, Ns + Nc + CLIENT_LABEL)}
          or {method: "none"} when the client has neither
  server: {status: ok, proof: HMAC(token or key, Ns + Nc + SERVER_LABEL)} (no proof
          without a token) once it checked the client's proof, else {status: error, message}
  The client with a token or a block token refuses a server that does not ask for it or
  whose proof is wrong. Only then does the client send its op; after a block token, only
  an op on that block in that mode is served (read: READ_BLOCK, REQUEST_FDS; write:
  WRITE_BLOCK, whose downstream nodes the dataserver reaches with the token). Neither the
  token nor a block token's key crosses the wire.

READ_BLOCK {op: read_block, block_id, offset, length (-1 = to the end)}
    -> {status: ok, chunk_size, start, end, block_length} then packets covering [start, end),
       which is the request widened to whole chunks so the reader can verify every CRC; the
       last packet has the LAST flag.

WRITE_BLOCK {op: write_block, block_id, chunk_size, targets: [downstream "ip:port", ...],
             size, file: {path, client_id} (from a client writing that file)}
    -> {status: ok} once the whole pipeline is ready, or {status: error, index, message}
       where index is the failed node counted from the answering one. Then packets flow
       down the pipeline and acks come back up; the last packet is empty with the LAST flag.
       (transfer_server.py tells what each node does.)
       A writer closing its file with this block adds the CLOSE flag to the LAST packet:
       once every node has its replica, the first node asks the nameserver to complete the
       file with the block's BlockReceived report, and answers CLOSED instead of SUCCESS
       for itself when it did; the writer then makes no Complete call. Any other answer
       leaves the closing to the writer.

Any other answer is {status: error, message} (with index 0 to a WRITE_BLOCK).

Short-circuit reads (HDFS's): a client on the dataserver's own machine asks, over the
dataserver's Unix socket (`local_socket_name`), for the replica's open file instead of its
bytes, then reads the file and checks the CRCs itself: no byte crosses a socket and no
dataserver CPU is spent.
REQUEST_FDS {op: request_fds, block_id}
    -> one byte carrying the data file's descriptor (SCM_RIGHTS; none on an error), then
       {status: ok, chunk_size, block_length} and the block's CRCs (4 bytes per chunk).
"""
from __future__ import annotations

import json
import select
import socket
import ssl
import struct
import threading
import time

from minijet import net
from minijet.dfs import blockstore

PROTOCOL_VERSION = 2  # 2: the handshake; ops carry no token
LENGTH = struct.Struct(">I")
PACKET = struct.Struct(">qQIB")   # seqno, offset in block, data length, flags
ACK = struct.Struct(">qB")        # seqno, number of node statuses that follow
LAST, CLOSE = 1, 2     # packet flags
SUCCESS, ERROR, ERROR_CHECKSUM, CLOSED = 0, 1, 2, 3
STATUS_NAMES = {SUCCESS: "ok", ERROR: "failed", ERROR_CHECKSUM: "checksum error",
                CLOSED: "ok, file closed"}
STORED = (SUCCESS, CLOSED)   # the statuses of a node that has the packet
MAX_MESSAGE = 1 << 20
MAX_PACKET = 64 << 20
CONNECT_TIMEOUT = 10.0
KEEPALIVE = 10.0   # seconds a dataserver keeps an idle connection for the next op


class ConnectionClosed(ConnectionError):
    """The peer closed the connection in the middle of the protocol."""


# ---- ops ----

def read_block_op(block_id: int, offset: int, length: int) -> dict:
    return {"op": "read_block", "block_id": block_id, "offset": offset, "length": length}


def write_block_op(block_id: int, chunk_size: int, targets: list[str], size: int,
                   file: dict | None = None) -> dict:
    """WRITE_BLOCK to the first node of a pipeline, `targets` being the nodes after it;
    `size`: the most the block will hold (each node needs that much room); `file`: the
    writer's {path, client_id}, for a close carried by the pipeline."""
    op = {"op": "write_block", "block_id": block_id, "chunk_size": chunk_size,
          "targets": targets, "size": size}
    if file is not None:
        op["file"] = file
    return op


def request_fds_op(block_id: int) -> dict:
    return {"op": "request_fds", "block_id": block_id}


def local_socket_name(address: str) -> str:
    """The abstract Unix socket of the dataserver whose data address is `address`. It exists
    only on that dataserver's machine (in its network namespace): a client that can connect
    to it shares the machine, so it can open the replica's file."""
    return f"\0minijet-dataserver-{address}"


# ---- sockets ----

def connect(address: str, timeout: float) -> socket.socket:
    host, port = net.split_address(address)
    # A dead host should not hold up fail-over for a whole transfer timeout.
    sock = socket.create_connection((host, port), timeout=min(timeout, CONNECT_TIMEOUT))
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


# ---- messages, packets, acks ----

def send_message(sock: socket.socket, message: dict) -> None:
    data = json.dumps(message, separators=(",", ":")).encode()
    sock.sendall(LENGTH.pack(len(data)) + data)


def recv_message(sock: socket.socket) -> dict:
    (n,) = LENGTH.unpack(recv_exact(sock, LENGTH.size))
    return _message_body(sock, n)


def _message_body(sock: socket.socket, n: int) -> dict:
    if n > MAX_MESSAGE:
        raise ConnectionClosed(f"message of {n} bytes is too large: not a minijet peer?")
    return json.loads(recv_exact(sock, n))


def recv_next_op(sock: socket.socket, idle: float, stopping: threading.Event) -> dict | None:
    """The next op on a kept connection, waited for up to `idle` seconds; None when none
    comes, the peer hangs up in between, or `stopping` is set."""
    deadline = time.monotonic() + idle
    while not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
        left = deadline - time.monotonic()
        if left <= 0 or stopping.is_set():
            return None
        if select.select([sock], [], [], min(left, 0.5))[0]:
            break
    try:
        (n,) = LENGTH.unpack(recv_exact(sock, LENGTH.size))
    except ConnectionClosed:   # the client closed the connection it kept
        return None
    return _message_body(sock, n)


def recv_crcs(sock: socket.socket, n: int, chunk_size: int) -> bytes:
    """The CRCs that follow the header of a packet of `n` data bytes."""
    return recv_exact(sock, blockstore.CRC_SIZE * blockstore.chunk_count(n, chunk_size))


def send_ack(sock: socket.socket, seqno: int, statuses: list[int]) -> None:
    sock.sendall(ACK.pack(seqno, len(statuses)) + bytes(statuses))


def recv_ack(sock: socket.socket) -> tuple[int, list[int]]:
    seqno, n = ACK.unpack(recv_exact(sock, ACK.size))
    return seqno, list(recv_exact(sock, n))


def packet_size_for(packet_size: int, chunk_size: int) -> int:
    """Packets carry whole chunks (except the last packet of a block)."""
    return max(chunk_size, packet_size - packet_size % chunk_size)
