"""The "records" file format: (key, value) pairs in binary frames, splittable at any byte.

A file is a run of frames; a frame is a 16-byte sync marker, a header (body length and CRC-32
of the body, little-endian u32 each) and a body holding (keys, values), two lists of equal
length, as in shuffle segments (segments.py). Keys and values keep their Python types, so one
job's output is the next one's input unchanged.

A records file may have been written by anyone who could write to the DFS, so reading one
must never run code. The body is a marshal when marshal keeps every key and value (str,
bytes, int, float, bool, None, and tuples, lists, sets, dicts of those; the length's top bit
says so); else a pickle that uses, beyond those, only the value types of SAFE_CLASSES
(dates and times, Decimal, Fraction, UUID, OrderedDict, complex...). A pickle naming any
other class or function is refused when written and when read, before anything in it is
called. Files of earlier versions (every body a pickle) read the same.

Splits: like a text line, a frame belongs to the split holding its first byte. A reader of
[start, start+length) seeks to `start`, scans for the sync marker, and reads every frame
starting before the split's end (the last may run past it). A marker that turns up by chance
inside a body is skipped: its "frame" fails the CRC, and scanning goes on after it.
"""
from __future__ import annotations

import io
import marshal
import pickle
import struct
from itertools import chain, islice, starmap
from typing import Any, BinaryIO, Iterable, Iterator
from zlib import crc32

from minijet.errors import InvalidArgument
from minijet.formats import SplitReaderBase

SYNC = bytes.fromhex("8a4d4a52ecf1093b6e5aa7c21d0f5b33")
_HEADER = struct.Struct("<II")
_PREFIX = len(SYNC) + _HEADER.size
_MARSHAL_FLAG = 1 << 31
FRAME_TARGET_BYTES = 256 * 1024
CHUNK_SIZE = 1 << 20

# The classes a records file's pickles may name: value types whose unpickling runs no code
# of the file's choosing.
SAFE_CLASSES = frozenset({
    ("builtins", "complex"), ("builtins", "set"), ("builtins", "frozenset"),
    ("builtins", "bytearray"), ("collections", "OrderedDict"), ("datetime", "date"),
    ("datetime", "time"), ("datetime", "datetime"), ("datetime", "timedelta"),
    ("datetime", "timezone"), ("decimal", "Decimal"), ("fractions", "Fraction"),
    ("uuid", "UUID"), ("uuid", "SafeUUID")})


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in SAFE_CLASSES:
            raise pickle.UnpicklingError(
                f"{module}.{name}: a records file may hold only plain values (str, bytes, "
                "numbers, None, containers of those, dates, Decimal, Fraction, UUID)")
        return super().find_class(module, name)


def _loads(body: bytes, marshalled: bool) -> tuple[list, list]:
    if marshalled:
        return marshal.loads(body)
    return _SafeUnpickler(io.BytesIO(body)).load()


class RecordsWriter:
    """Writes (key, value) pairs as frames to a binary file object it does not own."""

    def __init__(self, file: BinaryIO, frame_records: int = 256):
        self.file = file
        self.records = 0
        self.bytes = 0
        self._frame_records = frame_records
        self._keys: list = []
        self._values: list = []

    def write_all(self, pairs: Iterable[tuple[Any, Any]]) -> None:
        it = iter(pairs)
        while True:
            batch = list(islice(it, self._frame_records - len(self._keys)))
            if not batch:
                return
            try:
                keys, values = zip(*batch)
            except (TypeError, ValueError):
                bad = next(r for r in batch if not isinstance(r, (tuple, list)) or len(r) != 2)
                raise InvalidArgument(f"records output must be (key, value) pairs, got "
                                      f"{bad!r}") from None
            self._keys += keys
            self._values += values
            if len(self._keys) >= self._frame_records:
                self.flush()

    def flush(self) -> None:
        """Writes the buffered records as one frame (does not flush the file)."""
        if not self._keys:
            return
        frame = (self._keys, self._values)
        try:
            body, flag = marshal.dumps(frame), _MARSHAL_FLAG
        except ValueError:   # a type marshal does not keep: a pickle of safe classes only
            try:
                body, flag = pickle.dumps(frame, protocol=5), 0
                _loads(body, False)
            except (pickle.PicklingError, TypeError, AttributeError) as e:
                raise InvalidArgument(f"records output must be picklable: {e}") from None
            except pickle.UnpicklingError as e:
                raise InvalidArgument(f"records output: {e}") from None
        if len(body) >= _MARSHAL_FLAG:
            raise InvalidArgument(f"a frame of {len(body)} bytes is too large: keep a record's "
                                  "key and value under 2 GiB")
        self.file.write(SYNC + _HEADER.pack(len(body) | flag, crc32(body)) + body)
        self.records += len(self._keys)
        self.bytes += _PREFIX + len(body)
        # Steer the next frame towards the target size.
        scaled = len(self._keys) * FRAME_TARGET_BYTES // max(1, len(body))
        self._frame_records = max(16, min(1 << 16, scaled))
        self._keys, self._values = [], []


class RecordsSplitReader(SplitReaderBase):
    """Iterates the (key, value) records of one split of a records file; the same counters
    as textinput.SplitReader (progress, bytes_read, records, start, end)."""

    def __init__(self, file: BinaryIO, start: int, length: int, chunk_size: int = CHUNK_SIZE):
        super().__init__(file, start, length)
        self.chunk_size = max(_PREFIX, chunk_size)
        self._buf = b""
        self._buf_start = start   # file offset of _buf[0]
        self._eof = False

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        return chain.from_iterable(starmap(zip, self._frames()))

    def _more(self) -> bool:
        if self._eof:
            return False
        data = self.file.read(self.chunk_size)
        if not data:
            self._eof = True
            return False
        self.bytes_read += len(data)
        self._buf += data
        return True

    def _have(self, offset: int, n: int) -> bool:
        """Whether the buffer holds [offset, offset+n), reading on as needed."""
        while self._buf_start + len(self._buf) < offset + n:
            if not self._more():
                return False
        return True

    def _frames(self) -> Iterator[tuple[list, list]]:
        if self.start >= self.end:
            return
        self.file.seek(self.start)
        pos = self.start   # where to look for the next marker
        while pos < self.end:
            # Drop what lies before `pos`, then find the marker at or after it.
            cut = pos - self._buf_start
            if cut > 0:
                self._buf, self._buf_start = self._buf[cut:], pos
            i = self._buf.find(SYNC)
            while i < 0:
                keep = max(0, len(self._buf) - len(SYNC) + 1)
                self._buf_start += keep
                self._buf = self._buf[keep:]
                if self._buf_start >= self.end or not self._more():
                    self._pos = self.end
                    return
                i = self._buf.find(SYNC)
            frame = self._buf_start + i
            if frame >= self.end:
                break
            if not self._have(frame, _PREFIX):
                break
            at = frame - self._buf_start + len(SYNC)
            size, crc = _HEADER.unpack_from(self._buf, at)
            marshalled, size = bool(size & _MARSHAL_FLAG), size & ~_MARSHAL_FLAG
            if not self._have(frame, _PREFIX + size):
                pos = frame + 1   # a marker inside a truncated tail: no frame there
                continue
            at = frame - self._buf_start + _PREFIX
            body = self._buf[at:at + size]
            if crc32(body) != crc:
                pos = frame + 1   # a marker inside some body, by chance
                continue
            try:
                keys, values = _loads(body, marshalled)
            except (pickle.UnpicklingError, ValueError, EOFError, TypeError) as e:
                raise InvalidArgument(f"a records frame at byte {frame} cannot be read: "
                                      f"{e}") from None
            self.records += len(keys)
            pos = frame + _PREFIX + size
            self._pos = min(pos, self.end)
            yield keys, values
        self._pos = self.end
