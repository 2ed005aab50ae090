"""The handshake that opens every data-transfer connection (transfer_wire.py tells the
messages): the version check, then mutual challenge-response on the cluster's auth token,
so that the token never crosses the wire, even without TLS.

Each side proves it knows the token with an HMAC-SHA256 of both sides' fresh nonces under
it; the two proofs are labelled apart so that one can never be replayed as the other. The
server proves itself only to a client that proved itself first: whoever can reach a data
port learns nothing from it. A client that holds a token insists on the server's proof, so
a process posing as a dataserver can neither take data written to it nor serve false data.
(The proofs stop no one who relays a whole connection between the two: TLS does.)

The server lists the methods it accepts; "token" is the one so far. Another (a per-job
block access token, say) would be another entry, with its own proof.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import socket
import ssl
from dataclasses import dataclass
from typing import NoReturn

from minijet import net, tls
from minijet.dfs.transfer_wire import PROTOCOL_VERSION, connect, recv_message, send_message

NONCE_SIZE = 32
CLIENT_LABEL = b"minijet data transfer v2: client"
SERVER_LABEL = b"minijet data transfer v2: server"
TOKEN = "token"


class Refused(ConnectionError):
    """The handshake failed: the message says why, for the side that failed it."""


@dataclass(frozen=True)
class Credentials:
    """What a client of data ports needs: the cluster's auth token ("" = none) and the TLS
    context it verifies dataservers with (None = plain TCP)."""
    token: str = ""
    tls: ssl.SSLContext | None = None

    @classmethod
    def of(cls, security: dict) -> "Credentials":
        """From the configuration's `security` section."""
        return cls(security["auth_token"], tls.client_context(security))


def proof(token: str, label: bytes, server_nonce: bytes, client_nonce: bytes) -> str:
    """HMAC-SHA256 under `token` of both nonces and the prover's label, in hex."""
    return hmac.new(token.encode(), server_nonce + client_nonce + label,
                    hashlib.sha256).hexdigest()


def _proven(message: dict, expected: str) -> bool:
    return hmac.compare_digest(str(message.get("proof", "")).encode(), expected.encode())


def _nonce_of(message: dict) -> bytes:
    nonce = bytes.fromhex(str(message.get("nonce", "")))
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"a nonce of {len(nonce)} bytes")
    return nonce


def dial(address: str, timeout: float, credentials: Credentials) -> socket.socket:
    """A connection to the data port at `address` (over TLS when `credentials.tls`), with
    the handshake done. Raises OSError (Refused when the handshake failed)."""
    sock = connect(address, timeout)
    if credentials.tls is not None:
        sock = tls.wrap_client(credentials.tls, sock, net.split_address(address)[0])
    try:
        authenticate_to_server(sock, credentials.token)
    except BaseException:
        sock.close()
        raise
    return sock


def authenticate_to_server(sock: socket.socket, token: str) -> None:
    """The client's side of the handshake on `sock`, connected to a dataserver. The message
    of Refused tells what the dataserver did."""
    client_nonce = secrets.token_bytes(NONCE_SIZE)
    send_message(sock, {"v": PROTOCOL_VERSION, "nonce": client_nonce.hex()})
    try:
        challenge = recv_message(sock)
    except ConnectionError:
        raise Refused("it hung up during the handshake (does it want TLS, or speak another "
                      "protocol version?)") from None
    _check_accepted(challenge)
    if challenge.get("v") != PROTOCOL_VERSION:
        raise Refused(f"it speaks protocol version {challenge.get('v')}, not "
                      f"{PROTOCOL_VERSION}")
    if token and TOKEN not in challenge.get("auth", []):
        raise Refused("it does not ask for the auth token: not a dataserver of this "
                      "cluster, or one without security.auth_token")
    try:
        server_nonce = _nonce_of(challenge)
    except ValueError as e:
        raise Refused(f"it sent a bad challenge: {e}") from None
    if token:
        send_message(sock, {"method": TOKEN,
                            "proof": proof(token, CLIENT_LABEL, server_nonce, client_nonce)})
    else:
        send_message(sock, {"method": "none"})
    verdict = recv_message(sock)
    _check_accepted(verdict)
    if token and not _proven(verdict, proof(token, SERVER_LABEL, server_nonce, client_nonce)):
        raise Refused("it failed to prove it knows the auth token: not a dataserver of this "
                      "cluster")


def _check_accepted(reply: dict) -> None:
    if reply.get("status") != "ok":
        raise Refused(f"refused: {reply.get('message')}")


def authenticate_client(sock: socket.socket, token: str) -> None:
    """The server's side of the handshake on `sock`: returns once the client is accepted,
    raises Refused (after telling the client why) if it is not."""
    hello = recv_message(sock)
    if hello.get("v") != PROTOCOL_VERSION:
        _refuse(sock, f"unsupported protocol version {hello.get('v')} (this dataserver "
                      f"speaks {PROTOCOL_VERSION})")
    try:
        client_nonce = _nonce_of(hello)
    except ValueError as e:
        _refuse(sock, f"bad hello: {e}")
    server_nonce = secrets.token_bytes(NONCE_SIZE)
    send_message(sock, {"status": "ok", "v": PROTOCOL_VERSION,
                        "auth": [TOKEN] if token else [], "nonce": server_nonce.hex()})
    answer = recv_message(sock)
    if not token:
        send_message(sock, {"status": "ok"})
        return
    if answer.get("method") != TOKEN or \
            not _proven(answer, proof(token, CLIENT_LABEL, server_nonce, client_nonce)):
        _refuse(sock, "missing or wrong auth token")
    send_message(sock, {"status": "ok",
                        "proof": proof(token, SERVER_LABEL, server_nonce, client_nonce)})


def _refuse(sock: socket.socket, why: str) -> NoReturn:
    send_message(sock, {"status": "error", "message": why})
    raise Refused(why)
