"""How a task proves what it may do without the cluster's token (issue 10): the headers and
MACs shared by the TaskHosts, which sign, and the taskservers, which check.

- An attempt's calls to its own taskserver (the umbilical) carry its id and the secret its
  taskserver made for it (minijet.taskcreds): an attempt speaks only for itself.
- A shuffle fetch carries an HMAC of the request under the job's secret (Hadoop's job
  token): only the job's own attempts can fetch its map outputs.
- Map-output frames carry a MAC under a key derived from the job's secret
  (minijet.formats.segments), checked before a frame is decoded: bytes another job could
  have written are never unpickled.
"""
from __future__ import annotations

import hashlib
import hmac

ATTEMPT_HEADER = "x-minijet-attempt"
ATTEMPT_SECRET_HEADER = "x-minijet-attempt-secret"
FETCH_MAC_HEADER = "x-minijet-fetch-mac"


def attempt_metadata(attempt_id: str, secret: str) -> tuple[tuple[str, str], ...]:
    return ((ATTEMPT_HEADER, attempt_id), (ATTEMPT_SECRET_HEADER, secret))


def fetch_mac(job_secret: str, job_id: str, attempt_id: str, partition: int) -> str:
    """The MAC a fetch of one partition of one map output carries."""
    request = f"fetch\n{job_id}\n{attempt_id}\n{partition}".encode()
    return hmac.new(job_secret.encode(), request, hashlib.sha256).hexdigest()


def fetch_allowed(job_secret: str, job_id: str, attempt_id: str, partition: int,
                  mac: str) -> bool:
    return bool(job_secret) and hmac.compare_digest(
        fetch_mac(job_secret, job_id, attempt_id, partition), mac)


def frame_key(job_secret: str) -> bytes:
    """The key of the MACs on the job's map-output frames (not the secret itself: a key
    used for one purpose only)."""
    return hmac.new(job_secret.encode(), b"map output frames", hashlib.sha256).digest()
