"""Attempt logs capped at taskserver.log_limit bytes per stream, keeping the head (how the
task started) and the tail (how it ended).

The TaskHost appends to its log files itself (O_APPEND), so the taskserver trims them in
place while it runs: the tail is copied to just after the head, behind a marker, and the
file truncated there; the TaskHost's next write lands at the new end. Output written in the
instant between reading the tail and truncating is dropped with the middle. `excerpt` shows
a log the same way without changing it (GetLogs sends at most a MiB of each stream).
"""
from __future__ import annotations

from pathlib import Path

MARKER = b"\n[... cut here: taskserver.log_limit keeps the first %d bytes and the last ...]\n"


def _split(limit: int) -> tuple[int, bytes, int]:
    """(head bytes, marker, tail bytes) of a log cut to `limit` bytes."""
    head = limit // 2
    marker = MARKER % head
    return head, marker, max(0, limit - head - len(marker))


def cap(path: Path, limit: int) -> bool:
    """Trim the file to `limit` bytes if it is longer; True if it was trimmed."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if limit <= 0 or size <= limit:
        return False
    head, marker, keep = _split(limit)
    with open(path, "r+b") as f:
        f.seek(size - keep)
        tail = f.read(keep)
        f.seek(head)
        f.write(marker + tail)
        f.truncate(head + len(marker) + len(tail))
    return True


def excerpt(path: Path, limit: int) -> bytes:
    """The file, or its head and tail as `cap` would leave them if it is longer than
    `limit`; b"" if it does not exist."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(0)
            if size <= limit:
                return f.read()
            head, marker, keep = _split(limit)
            first = f.read(head)
            f.seek(size - keep)
            return first + marker + f.read(keep)
    except FileNotFoundError:
        return b""
