"""Block access tokens (HDFS's): what lets a client without the cluster token read or write
one block's bytes on a dataserver.

The nameserver hands one out with each block it locates (GetBlockLocations: read; AddBlock:
write): "<expiry>:<HMAC-SHA256 of (block id, mode, expiry)>" under a key derived from the
cluster token. Dataservers know the token, so they verify a token without asking anyone.
A token is a bearer token: whoever holds it has that access to that block until it expires
(in clear on the wire without TLS), which is why it is short-lived.
"""
from __future__ import annotations

import hashlib
import hmac

READ, WRITE = "read", "write"
_KEY_LABEL = b"minijet block tokens"


def _key(cluster_token: str) -> bytes:
    # a key of its own: a block token's MAC never doubles as a proof made with the token
    return hmac.new(cluster_token.encode(), _KEY_LABEL, hashlib.sha256).digest()


def _mac(cluster_token: str, block_id: int, mode: str, expires: int) -> str:
    message = f"{block_id}:{mode}:{expires}".encode()
    return hmac.new(_key(cluster_token), message, hashlib.sha256).hexdigest()


def make(cluster_token: str, block_id: int, mode: str, expires: float) -> str:
    """A token for `mode` access to block `block_id` until `expires` (epoch seconds)."""
    expires = int(expires)
    return f"{expires}:{_mac(cluster_token, block_id, mode, expires)}"


def refusal(cluster_token: str, token: str, block_id: int, mode: str, now: float) -> str | None:
    """Why `token` does not open block `block_id` for `mode` at `now`, or None."""
    if not token:
        return "missing or wrong auth token, and no block token"
    expiry, _, mac = str(token).partition(":")
    if not expiry.isdigit() or \
            not hmac.compare_digest(mac.encode(), _mac(cluster_token, block_id, mode,
                                                       int(expiry)).encode()):
        return f"the block token is not valid for {mode} access to block {block_id}"
    if int(expiry) <= now:
        return f"the block token for block {block_id} has expired"
    return None
