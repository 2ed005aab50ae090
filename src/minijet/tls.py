"""TLS for connections that are not gRPC (the DFS data-transfer port), with the same rules
as the gRPC channels of rpc.py, from the `security` section of the configuration:

- a daemon serves TLS when `tls_cert` (and `tls_key`) are set;
- a client uses TLS when `tls_ca` or `tls_cert` is set, and verifies the server's
  certificate chain against `tls_ca` (the system's CAs when unset) and its name against the
  host it dialled: a host name must be a DNS name of the certificate, an IP address one of
  its IP addresses. Dataservers are dialled at the IP address they advertise, so their
  certificates carry that address.

Both ends are minijet, so TLS 1.3 only: no renegotiation, which matters to DuplexSocket.
"""
from __future__ import annotations

import errno
import os
import select
import socket
import ssl
import threading

from minijet.errors import ConfigError

CHUNK = 256 * 1024  # bytes handed to OpenSSL at once


def client_uses_tls(security: dict) -> bool:
    return bool(security["tls_ca"] or security["tls_cert"])


def server_context(security: dict) -> ssl.SSLContext | None:
    """The context a daemon serves TLS with, or None when TLS is off."""
    if not security["tls_cert"]:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        context.load_cert_chain(security["tls_cert"], security["tls_key"] or None)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"cannot load security.tls_cert {security['tls_cert']} and "
                          f"tls_key {security['tls_key']}: {e}") from None
    return context


def client_context(security: dict) -> ssl.SSLContext | None:
    """The context a client verifies servers with, or None when TLS is off."""
    if not client_uses_tls(security):
        return None
    try:
        context = ssl.create_default_context(cafile=security["tls_ca"] or None)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"cannot load security.tls_ca {security['tls_ca']}: {e}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


def wrap_client(context: ssl.SSLContext, sock: socket.socket, host: str) -> "DuplexSocket":
    """`sock`, connected to `host`, after a TLS handshake that verified the server.
    Closes `sock` when the handshake fails."""
    try:
        return DuplexSocket(context.wrap_socket(sock, server_hostname=host))
    except BaseException:
        sock.close()
        raise


def wrap_server(context: ssl.SSLContext, sock: socket.socket) -> "DuplexSocket":
    """`sock`, accepted from a client, after the server's side of a TLS handshake."""
    return DuplexSocket(context.wrap_socket(sock, server_side=True))


class DuplexSocket:
    """A TLS connection that one thread may read while another writes, as the write
    pipeline does (packets go down while acks come up). OpenSSL forbids using one
    connection from two threads at once, and Python's SSLSocket does not guard it: both
    directions fail at random. So every TLS call is made under a lock, on a non-blocking
    socket, and the waits for the network happen outside the lock. The socket's methods
    that the data-transfer protocol uses, with the same timeouts (socket.timeout)."""

    def __init__(self, sock: ssl.SSLSocket):
        self._timeout = sock.gettimeout()
        sock.setblocking(False)
        self._sock = sock
        self._lock = threading.Lock()

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        return self._timeout

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "DuplexSocket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, op, *args):
        while True:
            with self._lock:
                try:
                    return op(*args)
                except ssl.SSLWantReadError:
                    events = select.POLLIN
                except ssl.SSLWantWriteError:
                    events = select.POLLOUT
            self._wait(events)

    def _wait(self, events: int) -> None:
        fd = self._sock.fileno()
        if fd < 0:
            raise OSError(errno.EBADF, "the connection is closed")
        poller = select.poll()
        poller.register(fd, events)
        if not poller.poll(None if self._timeout is None else self._timeout * 1000):
            raise socket.timeout("timed out")

    def recv_into(self, buffer, nbytes: int = 0) -> int:
        return self._call(self._sock.recv_into, buffer, nbytes)

    def recv(self, n: int) -> bytes:
        return self._call(self._sock.recv, n)

    def sendall(self, data) -> None:
        view = memoryview(data).cast("B")
        while view:
            view = view[self._call(self._sock.send, view[:CHUNK]):]

    def sendfile(self, file, offset: int, count: int) -> int:
        """Send `count` bytes of `file` from `offset` (read here: the kernel's sendfile
        cannot encrypt); returns the bytes sent, fewer at the end of the file."""
        buf = memoryview(bytearray(min(count, CHUNK)))
        sent = 0
        while sent < count:
            n = os.preadv(file.fileno(), [buf[:min(CHUNK, count - sent)]], offset + sent)
            if n == 0:
                break
            self.sendall(buf[:n])
            sent += n
        return sent
