"""TLS for connections that are not gRPC (the DFS data-transfer port), with the same rules
as the gRPC channels of rpc.py, from the `security` section of the configuration:

- a daemon serves TLS when `tls_cert` (and `tls_key`) are set;
- a client uses TLS when `tls_ca` or `tls_cert` is set, and verifies the server's
  certificate chain against `tls_ca` (the system's CAs when unset) and its name against the
  host it dialled: a host name must be a DNS name of the certificate, an IP address one of
  its IP addresses. Dataservers are dialled at the IP address they advertise, so their
  certificates carry that address.
"""
from __future__ import annotations

import socket
import ssl

from minijet.errors import ConfigError


def client_uses_tls(security: dict) -> bool:
    return bool(security["tls_ca"] or security["tls_cert"])


def server_context(security: dict) -> ssl.SSLContext | None:
    """The context a daemon serves TLS with, or None when TLS is off."""
    if not security["tls_cert"]:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
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
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def wrap_client(context: ssl.SSLContext, sock: socket.socket, host: str) -> ssl.SSLSocket:
    """`sock`, connected to `host`, after a TLS handshake that verified the server.
    Closes `sock` when the handshake fails."""
    try:
        return context.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise
