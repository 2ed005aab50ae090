"""The text output writer: one `key<TAB>value` line per record.

Keys and values are written with str(); a record whose value is None is written as its key
alone. Text is encoded as UTF-8 with surrogateescape, so bytes that were undecodable in the
input (see textinput.py) are written back unchanged; any other lone surrogate a job makes is
written as its UTF-8 form ("surrogatepass") rather than failing the task. LinesWriter
writes lines that are bytes already (sort_lines), each with a newline.
"""
from __future__ import annotations

import codecs
from typing import Any, BinaryIO, Iterable

_ERRORS = "minijet.text"


def _text_errors(exc: UnicodeError) -> tuple[bytes, int]:
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    out = bytearray()
    for ch in exc.object[exc.start:exc.end]:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # an escaped undecodable byte
            out.append(code - 0xDC00)
        else:
            out += ch.encode("utf-8", "surrogatepass")
    return bytes(out), exc.end


codecs.register_error(_ERRORS, _text_errors)


def encode_text(text: str) -> bytes:
    """UTF-8 bytes of `text`, undecodable input bytes restored (see module doc)."""
    return text.encode("utf-8", _ERRORS)


class TextOutputWriter:
    """Buffers lines and writes them, encoded, to a binary file object it does not own."""

    def __init__(self, file: BinaryIO, buffer_records: int = 8192):
        self.file = file
        self.buffer_records = max(1, buffer_records)
        self.records = 0
        self.bytes = 0
        self._lines: list[str] = []

    def write(self, key: Any, value: Any = None) -> None:
        self.write_all(((key, value),))

    def write_all(self, pairs: Iterable[tuple[Any, Any]]) -> None:
        """Writes every (key, value) pair of `pairs`, flushing as the buffer fills (so one
        call may be given a whole task's output)."""
        lines = self._lines
        append = lines.append
        limit = self.buffer_records
        for key, value in pairs:
            if value is None:
                append(f"{key}\n")
            else:
                append(f"{key}\t{value}\n")
            if len(lines) >= limit:
                self.flush()

    def flush(self) -> None:
        """Writes the buffered lines to the file (does not flush or close the file)."""
        lines = self._lines
        if lines:
            data = encode_text("".join(lines))
            self.records += len(lines)
            lines.clear()
            self.file.write(data)
            self.bytes += len(data)


class LinesWriter:
    """Writes lists of lines (bytes without their newline) to a binary file object it does
    not own, each line ended by a newline."""

    def __init__(self, file: BinaryIO):
        self.file = file
        self.records = 0
        self.bytes = 0

    def write_all(self, blocks: Iterable[list[bytes]]) -> None:
        for lines in blocks:
            if lines:
                data = b"\n".join(lines) + b"\n"
                self.file.write(data)
                self.records += len(lines)
                self.bytes += len(data)

    def flush(self) -> None:
        """Nothing is buffered here (as TextOutputWriter.flush, for DfsOutput)."""
