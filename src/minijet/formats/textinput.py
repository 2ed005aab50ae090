"""Reading the lines of a text split.

A split [start, start+length) of a file owns exactly the lines whose first byte lies in it:
a split that does not start at 0 skips the partial line before its first line start, and
the line that crosses its end is read whole by it. So every line of a file is read exactly
once over all splits, wherever the split boundaries fall (Hadoop's LineRecordReader rule).

Lines are split on b"\\n" only (a "\\r" stays part of the line), the newline is removed,
and the text is decoded as UTF-8 with errors="surrogateescape", so undecodable bytes reach
the output unchanged (see textoutput.py). Records are (byte offset of the line, line).

Speed: the file is read in large chunks, each chunk is decoded and split in C, and the
records of a chunk are handed out by C iterators (zip over accumulated offsets), so no
Python bytecode runs per line.
"""
from __future__ import annotations

from itertools import accumulate, chain, count
from operator import add
from typing import BinaryIO, Callable, Iterable, Iterator, TypeVar

from minijet.formats import SplitReaderBase

T = TypeVar("T")
CHUNK_SIZE = 1 << 20
_TAIL_READ = 4096


class SplitReader(SplitReaderBase):
    """Iterates the (offset, line) records of one split of a seekable binary file object.

    `progress` is the fraction of the split handed out so far (0..1), `bytes_read` the
    bytes taken from the file, `records` the lines handed out; all advance a chunk at a time.
    """

    def __init__(self, file: BinaryIO, start: int, length: int, chunk_size: int = CHUNK_SIZE):
        super().__init__(file, start, length)
        self.chunk_size = max(1, chunk_size)
        self._file_pos = start  # where the next read starts

    def __iter__(self) -> Iterator[tuple[int, str]]:
        return chain.from_iterable(self._chunks(self._records))

    def lines(self) -> Iterator[list[bytes]]:
        """The split's lines as bytes without their newline, a list per chunk read (for
        sort_lines, which needs no offsets and no text)."""
        return self._chunks(self._lines)

    def texts(self) -> Iterator[list[str]]:
        """The split's lines as text (the records' values), a list per chunk read (for a
        whole_lines mapper, which needs no offsets)."""
        return self._chunks(self._texts)

    def _read(self) -> bytes:
        # Past the split's end only the rest of one line is ours: read a little at a time
        # there (it may be the next block, on another machine).
        left = self.end - self._file_pos
        size = self.chunk_size if left >= self.chunk_size else max(left, 0) + _TAIL_READ
        data = self.file.read(size)
        self.bytes_read += len(data)
        self._file_pos += len(data)
        return data

    def _chunks(self, records: Callable[[bytes, int], Iterable[T]]) -> Iterator[Iterable[T]]:
        """Yields records(block, offset) per block of complete lines."""
        end = self.end
        if self.start >= end:
            self._pos = end
            return
        self._file_pos = max(0, self.start - 1)
        self.file.seek(self._file_pos)
        if self.start == 0:
            pos, buf = 0, b""
        else:
            # The byte before the split tells whether a line starts exactly at `start`;
            # everything through the first newline from there belongs to the previous split.
            pos, buf = self.start - 1, b""
            while True:
                data = self._read()
                if not data:
                    self._pos = end
                    return
                nl = data.find(b"\n")
                if nl >= 0:
                    pos += nl + 1
                    buf = data[nl + 1:]
                    break
                pos += len(data)
            if pos >= end:
                self._pos = end
                return
        # Invariant: `buf` holds the file's bytes from `pos`, a line start before `end`.
        while True:
            # Our last line is the one holding byte end-1: it ends at the first newline there.
            cut = buf.find(b"\n", max(0, end - 1 - pos))
            if cut >= 0:
                yield records(buf[:cut], pos)
                self._pos = end
                return
            last = buf.rfind(b"\n")
            if last >= 0:
                yield records(buf[:last], pos)
                pos += last + 1
                buf = buf[last + 1:]
                self._pos = pos
            data = self._read()
            if not data:
                if buf:  # a last line without a newline
                    yield records(buf, pos)
                self._pos = end
                return
            if buf and data.find(b"\n") < 0:
                # A line longer than a chunk: gather pieces, join once (no quadratic copying).
                pieces = [buf, data]
                while data and data.find(b"\n") < 0:
                    data = self._read()
                    pieces.append(data)
                buf = b"".join(pieces)
            else:
                buf = buf + data if buf else data

    def _lines(self, block: bytes, pos: int) -> list[bytes]:
        lines = block.split(b"\n")
        self.records += len(lines)
        return lines

    def _texts(self, block: bytes, pos: int) -> list[str]:
        text = block.decode("ascii") if block.isascii() else \
            block.decode("utf-8", "surrogateescape")
        lines = text.split("\n")
        self.records += len(lines)
        return lines

    def _records(self, block: bytes, pos: int) -> Iterator[tuple[int, str]]:
        """The records of `block`, complete lines joined by b"\\n", the first at offset `pos`."""
        lines = self._texts(block, pos)
        # One character per byte only for ASCII: else take the offsets from the bytes.
        lengths = map(len, lines if block.isascii() else block.split(b"\n"))
        # offset of line i = pos + (lengths of lines before it) + i newlines
        return zip(map(add, accumulate(lengths, initial=pos), count()), lines)

