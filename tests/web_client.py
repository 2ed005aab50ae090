"""Reading a live cluster's web pages in tests: real HTTP requests with urllib."""
from __future__ import annotations

import base64
import urllib.error
import urllib.request

from minijet.cluster import LocalCluster


def get(url: str, token: str = "", scheme: str = "Basic") -> tuple[int, str]:
    """(HTTP status, body) of a GET; `token` sent as basic auth's password or a bearer."""
    request = urllib.request.Request(url)
    if token:
        credential = base64.b64encode(f"me:{token}".encode()).decode() \
            if scheme == "Basic" else token
        request.add_header("Authorization", f"{scheme} {credential}")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def web(lc: LocalCluster, name: str) -> str:
    """The base URL ("http://host:port/") of daemon `name`'s pages."""
    url = {s.name: s.web for s in lc.status()}[name]
    assert url, f"{name} shows no web address"
    return url
