"""Serving one partition of a finished map output (file.out + file.out.index) as chunks."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from minijet.errors import InvalidArgument, NotFound
from minijet.taskhost import segments

CHUNK_SIZE = 1024 * 1024
RECORDS_HEADER = "x-minijet-records"  # initial metadata of FetchMapOutput: records in it


def partition_chunks(output: Path, partition: int, what: str,
                     chunk_size: int = CHUNK_SIZE) -> tuple[int, Iterator[bytes]]:
    """The records in `partition`'s segment, and its bytes in pieces of at most `chunk_size`.
    The index and the file are opened now, so a missing output raises NotFound before
    anything is streamed."""
    try:
        entries = segments.read_index(segments.index_path(output))
        f = open(output, "rb")
    except FileNotFoundError:
        raise NotFound(f"{what} is not here (never written, or cleaned up)") from None
    if not 0 <= partition < len(entries):
        f.close()
        raise InvalidArgument(f"{what} has partitions 0..{len(entries) - 1}, not {partition}")
    entry = entries[partition]
    return entry.records, _read(f, entry.offset, entry.length, chunk_size)


def _read(f, offset: int, length: int, chunk_size: int) -> Iterator[bytes]:
    with f:
        f.seek(offset)
        left = length
        while left > 0:
            data = f.read(min(chunk_size, left))
            if not data:
                raise NotFound("map output file is shorter than its index says")
            left -= len(data)
            yield data
