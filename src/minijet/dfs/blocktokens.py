"""Block access tokens (HDFS's): what lets a client without the cluster token read or write
one block's bytes on a dataserver.

The nameserver hands one out with each block it locates (GetBlockLocations: read; AddBlock,
and Create's first block: write): "<expiry>:<key>", the key being an HMAC-SHA256 of (block id, mode, expiry) under a
key derived from the cluster token. Dataservers know the token, so they compute the key
themselves without asking anyone; the client proves it holds the key in the data-transfer
handshake (transfer_auth.py), so the key never crosses a dataserver's wire. It does cross
the nameserver's: a block token is a bearer token, good for that block and mode to whoever
holds it until it expires, which is why it is short-lived.
"""
from __future__ import annotations

import hashlib
import hmac

READ, WRITE = "read", "write"
_KEY_LABEL = b"minijet block tokens"


def key(cluster_token: str, block_id: int, mode: str, expires: int) -> str:
    """The secret of the token for `mode` access to block `block_id` until `expires`."""
    # a master key of its own: a block token never doubles as a proof made with the token
    master = hmac.new(cluster_token.encode(), _KEY_LABEL, hashlib.sha256).digest()
    return hmac.new(master, f"{block_id}:{mode}:{expires}".encode(), hashlib.sha256).hexdigest()


def make(cluster_token: str, block_id: int, mode: str, expires: float) -> str:
    """A token for `mode` access to block `block_id` until `expires` (epoch seconds)."""
    expires = int(expires)
    return f"{expires}:{key(cluster_token, block_id, mode, expires)}"


def parse(token: str) -> tuple[int, str]:
    """(expiry, key) of a token; ValueError for something else."""
    expires, sep, secret = token.partition(":")
    if not (expires.isdigit() and sep and secret):
        raise ValueError("not a block token")
    return int(expires), secret
