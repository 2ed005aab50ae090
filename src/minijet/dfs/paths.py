"""DFS path rules: absolute, "/"-separated, normalised ("/a//b/" -> "/a/b").

Refused with InvalidArgument naming the path: relative paths, "." and ".." components,
NUL, components longer than MAX_COMPONENT bytes, paths longer than MAX_PATH bytes; and, by
the client before it sends one, paths that are not valid UTF-8 (`check_text`).
"""
from __future__ import annotations

from minijet.errors import InvalidArgument

ROOT = "/"
MAX_PATH = 4096       # bytes, UTF-8
MAX_COMPONENT = 255   # bytes, UTF-8


def normalize(path: str) -> str:
    """The canonical form of `path`, or InvalidArgument saying what is wrong with it."""
    if not isinstance(path, str) or not path:
        raise InvalidArgument("invalid path '': a DFS path must be absolute, e.g. /data/file")
    if not path.startswith("/"):
        raise InvalidArgument(f"invalid path {path!r}: a DFS path must be absolute (start with /)")
    if "\0" in path:
        raise InvalidArgument(f"invalid path {path!r}: contains a NUL character")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH:
        raise InvalidArgument(f"invalid path {path[:64]!r}...: longer than {MAX_PATH} bytes")
    parts = [p for p in path.split("/") if p]
    for part in parts:
        if part in (".", ".."):
            raise InvalidArgument(f"invalid path {path!r}: '{part}' components are not allowed")
        if len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT:
            raise InvalidArgument(
                f"invalid path {path!r}: component {part[:32]!r}... is longer than "
                f"{MAX_COMPONENT} bytes")
    return "/" + "/".join(parts)


def check_text(path: str) -> str:
    """`path` if it can be sent: a command-line argument holding bytes that are not UTF-8
    arrives with surrogate escapes, which no request can carry."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"invalid path {path!r}: not valid UTF-8 (DFS paths are "
                              "text)") from None
    return path


def components(path: str) -> list[str]:
    """The names along a normalised path; [] for the root."""
    return [p for p in path.split("/") if p]


def parent(path: str) -> str:
    """The parent of a normalised path (the root is its own parent)."""
    head = path.rsplit("/", 1)[0]
    return head or ROOT


def name(path: str) -> str:
    return path.rsplit("/", 1)[1]


def join(directory: str, child: str) -> str:
    return directory.rstrip("/") + "/" + child


def is_within(path: str, ancestor: str) -> bool:
    """True when `path` is `ancestor` or lies below it (both normalised)."""
    return ancestor == ROOT or path == ancestor or path.startswith(ancestor + "/")
