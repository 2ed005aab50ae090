"""Network addresses as the daemons' configuration writes them: "host:port", an IPv6 host in
brackets ("[::1]:50010"), an empty or "any" host to listen on every interface."""
from __future__ import annotations

import random
import socket

from minijet.errors import Unavailable

ANY_HOSTS = ("", "0.0.0.0", "::")


def is_any_address(host: str) -> bool:
    """Whether `host` (bracketed or not) means every interface: such a listener must
    advertise some other name for itself."""
    return host.strip("[]") in ANY_HOSTS


def split_address(address: str) -> tuple[str, int]:
    """("host", port) of "host:port"; the brackets of an IPv6 host are removed."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise Unavailable(f"bad address {address!r}: expected host:port")
    return host.strip("[]"), int(port)


def join_address(host: str, port: int) -> str:
    """"host:port", with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_EPHEMERAL_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"
_LOWEST = 10000
# Ports this process has handed out: a port is free until its daemon binds it, so two
# choices before the first daemon starts (a local cluster's ten listeners) could collide.
_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` now, for a daemon to listen on. It is taken below the range
    the kernel hands out to outgoing connections (Linux's ip_local_port_range) when there
    is room: a port from bind(0) is in that range, and a local cluster's nameserver once
    lost its port to a connection opened between the choice and its own bind. No port is
    handed out twice by one process."""
    try:
        with open(_EPHEMERAL_RANGE) as f:
            first_ephemeral = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        first_ephemeral = 0
    for _ in range(100 if first_ephemeral > _LOWEST else 0):
        port = random.randrange(_LOWEST, first_ephemeral)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue   # taken (or closing): try another
        _handed_out.add(port)
        return port
    while True:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
