"""The format of sorted segments and of map output files, and reading them back: written by
a TaskHost's map output buffer, served by the taskserver's shuffle service, merged by the
consumer TaskHost (and by the local runner, which does all three in one process).

A segment is the records of one partition of one map output, sorted by key. It is a run
of frames; a frame is a 4-byte little-endian header, a 16-byte MAC and a body holding
(keys, values), two lists of equal length, so that serialising costs little per record.
The MAC (HMAC-SHA256, truncated) of header and body is under the job's frame key
(minijet.jobauth.frame_key: `use_job_secret`, which a TaskHost calls at its start; else a
key of this process, for a local run), and is checked before a body is decoded: a frame
another job could have written is never unpickled. The body is a marshal
when every key and value is of a type marshal keeps exactly (str, bytes, int, float, bool,
None, and tuples, lists, dicts of those: what map outputs nearly always are), 1.7 times
faster to write than a pickle (a frame of TeraSort records); else a pickle (protocol 5).
The header's top bit says which, the other 31 bits give the body's length. A segment of
lines (sort_lines: lines sorted as bytes, no (key, value) records) has frames whose body is
the marshal (version 2) of a list of lines, which decode to that list.

A map output file (Hadoop's file.out) holds every partition's segment back to back; its
index file (file.out.index) gives, per partition, offset, length, records and CRC-32 of
the segment, so a segment can be served and checked without reading the rest.

A consumer fetches its partition's segment of each map output with FetchMapOutput: the
taskserver streams the segment's bytes (`partition_chunks`) and sends the number of records
in it as the initial metadata RECORDS_HEADER.
"""
from __future__ import annotations

import hashlib
import hmac
import marshal
import os
import pickle
import struct
from itertools import chain, islice, starmap
from operator import itemgetter
from typing import Any, BinaryIO, Callable, Iterable, Iterator, NamedTuple

# zlib's CRC-32 (the same values) from ISA-L, as the DFS's blocks: 8 times as fast; zlib's
# took an eighth of a TeraSort map task's time writing its output.
from isal.isal_zlib import crc32

from minijet import jobauth
from minijet.errors import ChecksumError, InvalidArgument, NotFound

_FRAME_HEADER = struct.Struct("<I")
_MAC_SIZE = 16
_FRAME_PREFIX = _FRAME_HEADER.size + _MAC_SIZE
_MARSHAL_FLAG = 1 << 31
_INDEX_HEADER = struct.Struct("<4sI")
_INDEX_ENTRY = struct.Struct("<QQQI")
_INDEX_TRAILER = struct.Struct("<I")
_INDEX_MAGIC = b"MJX1"
_KEY = itemgetter(0)
_VALUE = itemgetter(1)
# Frames of lines are marshal version 2: the same list of bytes when read back, written
# 2.3 times as fast as version 4 (the default), which enters every line that the buffer's
# list also holds in a table, to write a repeat of the same object as a reference.
_LINES_MARSHAL = 2

# Frames aim at this many bytes: big enough that per-frame costs vanish, small enough that
# a reader holds only a little of each segment in memory during a merge.
FRAME_TARGET_BYTES = 64 * 1024
_FIRST_FRAME_RECORDS = 64  # a small first frame measures the records

CHUNK_SIZE = 1024 * 1024               # bytes per chunk a segment is served in
RECORDS_HEADER = "x-minijet-records"   # initial metadata of FetchMapOutput: records in it


_mac_key = hmac.new(os.urandom(32), digestmod=hashlib.sha256)   # copied per frame


def use_job_secret(job_secret: str) -> None:
    """MAC this process's frames under the job's key, and accept only frames MAC'd so."""
    global _mac_key
    _mac_key = hmac.new(jobauth.frame_key(job_secret), digestmod=hashlib.sha256)


def _mac(header: bytes | memoryview, body: bytes | memoryview) -> bytes:
    h = _mac_key.copy()
    h.update(header)
    h.update(body)
    return h.digest()[:_MAC_SIZE]


class IndexEntry(NamedTuple):
    """Where one partition's segment lies in a map output file."""

    offset: int
    length: int
    records: int
    crc: int


class SegmentWriter:
    """Writes one sorted segment as frames to `file`, from its current position."""

    def __init__(self, file: BinaryIO):
        self.file = file
        self.offset = file.tell()
        self.length = 0
        self.records = 0
        self.crc = 0
        self._frame_records = _FIRST_FRAME_RECORDS

    def write(self, keys: list, values: list) -> None:
        """Appends records given as two columns (already in key order)."""
        count = len(keys)
        if count <= self._frame_records:
            self._write_frame(keys, values)
            return
        i = 0
        while i < count:
            j = i + self._frame_records
            self._write_frame(keys[i:j], values[i:j])
            i = j

    def write_block(self, pairs: list[tuple[Any, Any]]) -> None:
        """Appends a list of (key, value) pairs (already in key order), as merges yield."""
        self.write(list(map(_KEY, pairs)), list(map(_VALUE, pairs)))

    def write_pairs(self, pairs: Iterable[tuple[Any, Any]]) -> None:
        """Appends records from an iterator of (key, value) pairs (already in key order)."""
        it = iter(pairs)
        while True:
            batch = list(islice(it, self._frame_records))
            if not batch:
                return
            self._write_frame(list(map(_KEY, batch)), list(map(_VALUE, batch)))

    def write_lines(self, lines: list[bytes]) -> None:
        """Appends lines (bytes without their newline, already in byte order) as frames
        of lines: each frame's body is the marshal of a list of them, so it decodes to
        that list (see minijet.taskhost.linesort)."""
        i, count = 0, len(lines)
        while i < count:
            j = i + self._frame_records
            chunk = lines[i:j] if i or j < count else lines
            self._write_body(marshal.dumps(chunk, _LINES_MARSHAL), _MARSHAL_FLAG, len(chunk))
            i = j

    def _write_frame(self, keys: list, values: list) -> None:
        if not keys:
            return
        try:
            body = marshal.dumps((keys, values))
            flag = _MARSHAL_FLAG
        except ValueError:  # a type marshal does not keep (a class, a subclass of str...)
            flag = 0
            try:
                body = pickle.dumps((keys, values), protocol=5)
            except (pickle.PicklingError, TypeError, AttributeError) as e:
                raise InvalidArgument(f"keys and values passed between stages must be "
                                      f"picklable: {e}") from None
        self._write_body(body, flag, len(keys))

    def _write_body(self, body: bytes, flag: int, records: int) -> None:
        if len(body) >= _MARSHAL_FLAG:  # the length has 31 bits
            raise InvalidArgument(f"a frame of {len(body)} bytes is too large: keep a record's "
                                  "key and value under 2 GiB")
        header = _FRAME_HEADER.pack(len(body) | flag)
        prefix = header + _mac(header, body)
        self.file.write(prefix)
        self.file.write(body)
        self.crc = crc32(body, crc32(prefix, self.crc))
        self.length += len(prefix) + len(body)
        self.records += records
        # Steer the next frame towards the target size.
        scaled = self._frame_records * FRAME_TARGET_BYTES // max(1, len(body))
        self._frame_records = max(16, min(1 << 16, scaled))

    def entry(self) -> IndexEntry:
        return IndexEntry(self.offset, self.length, self.records, self.crc)


def iter_frames(data: bytes | memoryview) -> Iterator[tuple[list, list]]:
    """The (keys, values) frames of a segment held in memory."""
    view = memoryview(data)
    pos, end = 0, len(view)
    while pos < end:
        if pos + _FRAME_PREFIX > end:
            raise ChecksumError("truncated segment: partial frame header")
        prefix = view[pos:pos + _FRAME_PREFIX]
        (header,) = _FRAME_HEADER.unpack_from(prefix)
        size = header & ~_MARSHAL_FLAG
        pos += _FRAME_PREFIX
        if pos + size > end:
            raise ChecksumError("truncated segment: partial frame")
        yield _load(prefix, header, view[pos:pos + size])
        pos += size


def iter_file_frames(file: BinaryIO, offset: int, length: int) -> Iterator[tuple[list, list]]:
    """The frames of the segment at [offset, offset+length) of `file`, read one at a time."""
    file.seek(offset)
    left = length
    while left > 0:
        prefix = file.read(_FRAME_PREFIX)
        if len(prefix) < _FRAME_PREFIX:
            raise ChecksumError("truncated segment: partial frame header")
        (header,) = _FRAME_HEADER.unpack_from(prefix)
        size = header & ~_MARSHAL_FLAG
        body = file.read(size)
        if len(body) < size or _FRAME_PREFIX + size > left:
            raise ChecksumError("truncated segment: partial frame")
        left -= _FRAME_PREFIX + size
        yield _load(prefix, header, body)


def _load(prefix: bytes | memoryview, header: int,
          body: bytes | memoryview) -> tuple[list, list] | list[bytes]:
    """A frame's (keys, values) (a frame of lines: its list of lines), once its MAC shows
    this job wrote it."""
    if not hmac.compare_digest(_mac(prefix[:_FRAME_HEADER.size], body),
                               prefix[_FRAME_HEADER.size:]):
        raise ChecksumError("a map output frame fails its MAC: not written by this job's "
                            "attempts (or damaged)")
    return marshal.loads(body) if header & _MARSHAL_FLAG else pickle.loads(body)


def frames_to_pairs(frames: Iterable[tuple[list, list]]) -> Iterator[tuple[Any, Any]]:
    """The (key, value) records of a run of frames; C iterators, no bytecode per record."""
    return chain.from_iterable(starmap(zip, frames))


def read_segment(data: bytes | memoryview,
                 entry: IndexEntry | None = None) -> Iterator[tuple[Any, Any]]:
    """The records of a segment held in memory; checked against its index entry if given."""
    if entry is not None:
        check_segment(data, entry)
    return frames_to_pairs(iter_frames(data))


def check_segment(data: bytes | memoryview, entry: IndexEntry) -> None:
    if len(data) != entry.length:
        raise ChecksumError(f"segment has {len(data)} bytes, its index says {entry.length}")
    if crc32(data) != entry.crc:
        raise ChecksumError("segment does not match its CRC-32")


# A map output's file name in its attempt's work dir: the TaskHost writes it there, the
# taskserver serves it from there, and a consumer on the same node reads it from there.
MAP_OUTPUT = "file.out"


def index_path(output_path: str | os.PathLike) -> str:
    """The index file of a map output file."""
    return os.fspath(output_path) + ".index"


def write_index(path: str | os.PathLike, entries: list[IndexEntry]) -> None:
    parts = [_INDEX_HEADER.pack(_INDEX_MAGIC, len(entries))]
    parts.extend(_INDEX_ENTRY.pack(*e) for e in entries)
    body = b"".join(parts)
    with open(path, "wb") as f:
        f.write(body + _INDEX_TRAILER.pack(crc32(body)))


def _open(path: str | os.PathLike) -> BinaryIO:
    return open(path, "rb")


def read_index(path: str | os.PathLike,
               opener: Callable[[str | os.PathLike], BinaryIO] = _open) -> list[IndexEntry]:
    with opener(path) as f:
        data = f.read()
    if len(data) < _INDEX_HEADER.size + _INDEX_TRAILER.size:
        raise ChecksumError(f"map output index {path} is truncated")
    body, (crc,) = data[:-4], _INDEX_TRAILER.unpack(data[-4:])
    magic, count = _INDEX_HEADER.unpack_from(body)
    if magic != _INDEX_MAGIC or crc32(body) != crc or \
            len(body) != _INDEX_HEADER.size + count * _INDEX_ENTRY.size:
        raise ChecksumError(f"map output index {path} is corrupt")
    return [IndexEntry(*_INDEX_ENTRY.unpack_from(body, _INDEX_HEADER.size + i * _INDEX_ENTRY.size))
            for i in range(count)]


def read_map_output_segment(output_path: str | os.PathLike, partition: int) -> bytes:
    """One partition's segment of a map output file, checked against its index."""
    entries = read_index(index_path(output_path))
    entry = entries[partition]
    with open(output_path, "rb") as f:
        f.seek(entry.offset)
        data = f.read(entry.length)
    check_segment(data, entry)
    return data


def partition_chunks(output: str | os.PathLike, partition: int, what: str,
                     chunk_size: int = CHUNK_SIZE,
                     opener: Callable[[str | os.PathLike], BinaryIO] = _open
                     ) -> tuple[int, Iterator[bytes]]:
    """The records in `partition`'s segment, and its bytes in pieces of at most `chunk_size`
    (as a taskserver serves it), the index and the file opened by `opener`. They are opened
    now, so a missing output raises NotFound before anything is streamed."""
    try:
        entries = read_index(index_path(output), opener)
        f = opener(output)
    except FileNotFoundError:
        raise NotFound(f"{what} is not here (never written, or cleaned up)") from None
    if not 0 <= partition < len(entries):
        f.close()
        raise InvalidArgument(f"{what} has partitions 0..{len(entries) - 1}, not {partition}")
    entry = entries[partition]
    return entry.records, _read_chunks(f, entry.offset, entry.length, chunk_size)


def _read_chunks(f: BinaryIO, offset: int, length: int, chunk_size: int) -> Iterator[bytes]:
    with f:
        f.seek(offset)
        left = length
        while left > 0:
            data = f.read(min(chunk_size, left))
            if not data:
                raise NotFound("map output file is shorter than its index says")
            left -= len(data)
            yield data
