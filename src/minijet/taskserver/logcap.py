"""Attempt logs capped at taskserver.log_limit bytes per stream, keeping the head (how the
task started) and the tail (how it ended).

The TaskHost appends to its log files itself (O_APPEND), so the taskserver trims them in
place while it runs: the tail is copied to just after the head, behind a marker, and the
file truncated there; the TaskHost's next write lands at the new end. Output written in the
instant between reading the tail and truncating is dropped with the middle.
"""
from __future__ import annotations

from pathlib import Path

MARKER = b"\n[... cut here: taskserver.log_limit keeps the first %d bytes and the last ...]\n"


def cap(path: Path, limit: int) -> bool:
    """Trim the file to about `limit` bytes if it is longer; True if it was trimmed."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if limit <= 0 or size <= limit:
        return False
    head = limit // 2
    marker = MARKER % head
    keep = max(0, limit - head - len(marker))   # of the tail: the result is `limit` long
    with open(path, "r+b") as f:
        f.seek(size - keep)
        tail = f.read(keep)
        f.seek(head)
        f.write(marker + tail)
        f.truncate(head + len(marker) + len(tail))
    return True
