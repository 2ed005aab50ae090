"""systemd's notify protocol: a daemon started by a unit of Type=notify (which sets
$NOTIFY_SOCKET) says READY=1 once it serves and STOPPING=1 when it begins to stop
(minijet.daemon.run_until_stopped)."""
from __future__ import annotations

import os
import socket


def notify(state: str) -> bool:
    """Tell systemd `state` (e.g. "READY=1") if it asked to be told ($NOTIFY_SOCKET); whether
    it was sent. A leading "@" names an abstract socket."""
    path = os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(state.encode(), address)
    except OSError:
        return False
    return True
