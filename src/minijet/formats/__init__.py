"""The formats of what tasks read and write, shared by every process that touches them:
text input lines (textinput), text output (textoutput), "records" files (recordfile), and
map output segments and their index (segments: written by a TaskHost, served by its
taskserver, merged by the consumer TaskHost)."""
from __future__ import annotations

from typing import BinaryIO


class SplitReaderBase:
    """What a reader of one split [start, start+length) of a file counts, whatever its format:
    `progress`, the fraction of the split handed out so far (0..1), `bytes_read`, the bytes
    taken from the file, `records`, the records handed out."""

    def __init__(self, file: BinaryIO, start: int, length: int):
        if start < 0 or length < 0:
            raise ValueError(f"bad split: start {start}, length {length}")
        self.file = file
        self.start = start
        self.end = start + length
        self.bytes_read = 0
        self.records = 0
        self._pos = start  # offset up to which records have been handed out

    @property
    def progress(self) -> float:
        span = self.end - self.start
        if span <= 0:
            return 1.0
        return min(1.0, max(0.0, (self._pos - self.start) / span))
