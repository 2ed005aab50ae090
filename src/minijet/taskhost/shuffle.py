"""The reduce side of the shuffle: merge many sorted segments and group them by key.

Fetched segments (serialised, see minijet.formats.segments) are kept in memory up to a budget of
serialised bytes. A segment bigger than a quarter of the budget goes straight to a local
file; when the segments in memory pass the budget they go to local files as they are while
the files are few, else they are merged into one sorted file (Hadoop's in-memory merge). At
the end the segments in memory and the files on disk are merged by merge_runs, which
decodes one frame of each at a time. So memory stays bounded
by about the budget plus a decoded frame per segment and file.
"""
from __future__ import annotations

import os
from bisect import bisect_right
from itertools import chain, groupby
from operator import itemgetter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from minijet.formats.segments import (IndexEntry, SegmentWriter, check_segment,
                                       iter_file_frames, iter_frames)

_KEY = itemgetter(0)
_VALUE = itemgetter(1)
# Most sorted files merged at once (Hadoop's io.sort.factor): more are merged in passes,
# which bounds open files and the work of each merge round.
MERGE_FACTOR = 32


def merge_frames(runs: list[Iterable[tuple[list, list]]]) -> Iterator[list[tuple[Any, Any]]]:
    """Merges runs of sorted (keys, values) frames; yields sorted lists of (key, value)."""
    return merge_runs([map(_frame_pairs, run) for run in runs], _KEY)


def _frame_pairs(frame: tuple[list, list]) -> list[tuple[Any, Any]]:
    return list(zip(*frame))


def merge_runs(runs: list[Iterable[list]], key: Callable | None = None) -> Iterator[list]:
    """Merges runs, each a sequence of sorted lists (frames) that continue one another;
    yields sorted lists of the items (ordered by `key`, or themselves).

    A block merge instead of an item-at-a-time heap: each round takes, from every run,
    the items up to the smallest last key among the runs' current frames (found by
    bisection), and sorts them together; timsort sees the runs already sorted and merges
    them in C. Every round uses up at least one frame, and holds one frame per run.
    """
    last = itemgetter(-1) if key is None else (lambda items: key(items[-1]))
    heads = []  # [items, position, the run's remaining frames]
    for run in runs:
        head = _next_head(iter(run))
        if head is not None:
            heads.append(head)
    while len(heads) > 1:
        bound = min(last(head[0]) for head in heads)
        block = []
        for head in heads:
            items, pos, _ = head
            end = bisect_right(items, bound, pos, key=key)
            if end > pos:
                block += items[pos:end]
                head[1] = end
        block.sort(key=key)
        yield block
        heads = [h if h[1] < len(h[0]) else _next_head(h[2]) for h in heads]
        heads = [h for h in heads if h is not None]
    if heads:
        items, pos, rest = heads[0]
        yield items[pos:] if pos else items
        for items in rest:
            if items:
                yield items


def _next_head(frames: Iterator[list]) -> list | None:
    for items in frames:
        if items:
            return [items, 0, frames]
    return None


def merge_sorted(runs: list[Iterable[tuple[list, list]]]) -> Iterator[tuple[Any, Any]]:
    """One sorted stream of (key, value) records from runs of sorted (keys, values) frames."""
    return chain.from_iterable(merge_frames(runs))


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
        self._file_seq = 0

    def add_segment(self, data: bytes, entry: IndexEntry | None = None) -> None:
        """Adds one fetched segment, checked against its index entry when given."""
        if entry is not None:
            check_segment(data, entry)
        self.counters["shuffle_segments"] += 1
        self.counters["shuffle_bytes"] += len(data)
        if not data:
            return
        if len(data) > self.memory_budget // 4:
            self._to_file(data)
            return
        self._memory.append(data)
        self._memory_bytes += len(data)
        if self._memory_bytes > self.memory_budget:
            self._memory_to_disk()

    def _to_file(self, data: bytes) -> None:
        with open(self._new_file(), "wb") as f:
            f.write(data)

    def _memory_to_disk(self) -> None:
        """Frees the memory the segments take. While the files stay few (half MERGE_FACTOR),
        each segment goes to a file as it is: no decoding, no MAC to check and make again,
        and the final merge reads it as one of its runs. Past that they are merged into one
        file (Hadoop's in-memory merge), so the final merge never has too many runs."""
        if len(self._files) + len(self._memory) <= MERGE_FACTOR // 2:
            for data in self._memory:
                self._to_file(data)
            self._memory, self._memory_bytes = [], 0
        else:
            self._merge_to_file(self._memory_runs())

    def _new_file(self) -> Path:
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        path = self.spill_dir / f"shuffle{self._file_seq}.seg"
        self._file_seq += 1
        self._files.append(path)
        return path

    def _memory_runs(self) -> list[Iterator]:
        """The segments held in memory as runs of frames, decoded a frame at a time: decoded
        all at once they would take several times the budget (a small record is ~10 bytes
        serialised and ~150 as Python objects)."""
        runs = [iter_frames(data) for data in self._memory]
        self._memory, self._memory_bytes = [], 0
        return runs

    # What the merger's records are: (key, value) pairs here; lines in linesort.
    @staticmethod
    def _merged(runs: list[Iterable]) -> Iterator[list]:
        """Sorted blocks of the records of `runs` (of decoded frames)."""
        return merge_frames(runs)

    _write_block = staticmethod(SegmentWriter.write_block)

    def _merge_to_file(self, runs: list[Iterable]) -> None:
        with open(self._new_file(), "wb", buffering=1 << 20) as f:
            writer = SegmentWriter(f)
            for block in self._merged(runs):
                self._write_block(writer, block)
        self.counters["reduce_disk_merges"] += 1

    def _merge_files(self, paths: list[Path]) -> None:
        """Replaces the sorted files `paths` by one."""
        self._files = [p for p in self._files if p not in paths]
        self._merge_to_file([_file_frames(p) for p in paths])
        for path in paths:
            path.unlink()

    def blocks(self) -> Iterator[list]:
        """Every record of every segment in sorted blocks. Call once, after the last
        segment."""
        while len(self._files) > MERGE_FACTOR:
            self._merge_files(self._files[:MERGE_FACTOR])
        return self._merged([_file_frames(p) for p in self._files] + self._memory_runs())

    def pairs(self) -> Iterator[tuple[Any, Any]]:
        """Every record of every segment, sorted by key. Call once, after the last segment."""
        return chain.from_iterable(self.blocks())

    def groups(self) -> Iterator[tuple[Any, Iterator[Any]]]:
        """(key, values iterator) per key, sorted by key; see group_by_key."""
        return group_by_key(self.pairs())

    def close(self) -> None:
        """Removes the local files (call when the reduce is done or has failed)."""
        for path in self._files:
            path.unlink(missing_ok=True)
        self._files = []
        self._memory, self._memory_bytes = [], 0


def _file_frames(path: Path) -> Iterator:
    with open(path, "rb") as f:
        yield from iter_file_frames(f, 0, os.fstat(f.fileno()).st_size)
