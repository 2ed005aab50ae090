"""The reduce side of the shuffle: merge many sorted segments and group them by key.

Fetched segments (serialised, see segments.py) are kept in memory up to a budget of
serialised bytes. A segment bigger than a quarter of the budget goes straight to a local
file; when the segments in memory pass the budget they are merged into one sorted file
(Hadoop's in-memory merge). At the end the segments in memory are decoded and sorted at
once (timsort merges the sorted runs in C), and merged with the files on disk by
heapq.merge, which reads one frame of each file at a time. So memory stays bounded by about
the budget (times the cost of Python objects over their serialised form) plus a frame per file.
"""
from __future__ import annotations

import heapq
import os
from itertools import chain, groupby
from operator import itemgetter
from pathlib import Path
from typing import Any, Iterable, Iterator

from minijet.taskhost.segments import (IndexEntry, SegmentWriter, check_segment, frames_to_pairs,
                                       iter_file_frames, iter_frames)

_KEY = itemgetter(0)
_VALUE = itemgetter(1)


def merge_sorted(runs: list[Iterable[tuple[Any, Any]]]) -> Iterator[tuple[Any, Any]]:
    """One sorted stream of (key, value) from runs each sorted by key."""
    if len(runs) == 1:
        return iter(runs[0])
    return heapq.merge(*runs, key=_KEY)


def group_by_key(pairs: Iterable[tuple[Any, Any]]) -> Iterator[tuple[Any, Iterator[Any]]]:
    """(key, values) for each run of equal keys of a sorted stream, like itertools.groupby:
    a key's values iterator is valid only until the next key is taken."""
    for key, run in groupby(pairs, _KEY):
        yield key, map(_VALUE, run)


class ShuffleMerger:
    """Collects the sorted segments of one reduce partition and merges them by key."""

    def __init__(self, spill_dir: str | os.PathLike, memory_budget: int = 64 * 1024 * 1024):
        self.spill_dir = Path(spill_dir)
        self.memory_budget = max(1, memory_budget)
        self.counters = {"shuffle_segments": 0, "shuffle_bytes": 0, "reduce_disk_merges": 0}
        self._memory: list[bytes] = []
        self._memory_bytes = 0
        self._files: list[Path] = []

    def add_segment(self, data: bytes, entry: IndexEntry | None = None) -> None:
        """Adds one fetched segment, checked against its index entry when given."""
        if entry is not None:
            check_segment(data, entry)
        self.counters["shuffle_segments"] += 1
        self.counters["shuffle_bytes"] += len(data)
        if not data:
            return
        if len(data) > self.memory_budget // 4:
            path = self._new_file()
            with open(path, "wb") as f:
                f.write(data)
            return
        self._memory.append(data)
        self._memory_bytes += len(data)
        if self._memory_bytes > self.memory_budget:
            self._merge_memory_to_disk()

    def _new_file(self) -> Path:
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        path = self.spill_dir / f"shuffle{len(self._files)}.seg"
        self._files.append(path)
        return path

    def _sorted_memory(self) -> list[tuple[Any, Any]]:
        records = list(chain.from_iterable(frames_to_pairs(iter_frames(d)) for d in self._memory))
        records.sort(key=_KEY)  # stable; timsort merges the sorted segments as runs
        self._memory, self._memory_bytes = [], 0
        return records

    def _merge_memory_to_disk(self) -> None:
        records = self._sorted_memory()
        with open(self._new_file(), "wb", buffering=1 << 20) as f:
            SegmentWriter(f).write(list(map(_KEY, records)), list(map(_VALUE, records)))
        self.counters["reduce_disk_merges"] += 1

    def pairs(self) -> Iterator[tuple[Any, Any]]:
        """Every record of every segment, sorted by key. Call once, after the last segment."""
        runs: list[Iterable] = [self._sorted_memory()] if self._memory else []
        for path in self._files:
            runs.append(_file_pairs(path))
        if not runs:
            return iter(())
        return merge_sorted(runs)

    def groups(self) -> Iterator[tuple[Any, Iterator[Any]]]:
        """(key, values iterator) per key, sorted by key; see group_by_key."""
        return group_by_key(self.pairs())

    def close(self) -> None:
        """Removes the local files (call when the reduce is done or has failed)."""
        for path in self._files:
            path.unlink(missing_ok=True)
        self._files = []
        self._memory, self._memory_bytes = [], 0


def _file_pairs(path: Path) -> Iterator[tuple[Any, Any]]:
    with open(path, "rb") as f:
        yield from frames_to_pairs(iter_file_frames(f, 0, os.fstat(f.fileno()).st_size))
