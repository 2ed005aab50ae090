"""Network addresses as the daemons' configuration writes them: "host:port", an IPv6 host in
brackets ("[::1]:50010"), an empty or "any" host to listen on every interface."""
from __future__ import annotations

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
