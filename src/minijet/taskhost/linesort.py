"""sort_lines: text lines sorted as bytes, with no Python object per line but its bytes.

The builder's sort_lines() compiles to a map stage whose only operation is `sort_lines` and
a reduce stage whose only operation is `merge_lines`; the runner gives them lines instead of
(key, value) records, and these classes do the rest:

- map side, LineSortBuffer: a split's lines arrive a chunk at a time as lists of bytes
  (SplitReader.lines) and are held in one list until its estimated size passes the sort
  buffer; then they are sorted (list.sort: a memcmp per comparison) and cut into partitions
  at the sampled split points by bisection (RangePartitioner.cuts). Spills, their merge and
  the map output file are SpillingBuffer's; segments are frames of lines
  (SegmentWriter.write_lines) under the same MAC and CRC as every map output.
- reduce side, LineShuffleMerger: ShuffleMerger's memory budget and disk merges, over
  frames of lines; the merge is merge_runs (timsort over the runs' slices, in C), and
  formats.textoutput.LinesWriter writes the sorted blocks.

A line is the bytes between two newlines (a last line without one included), "\\r" and
undecodable bytes untouched; the output ends every line with a newline. Whole-line byte
order is what `LC_ALL=C sort` does without -k.
"""
from __future__ import annotations

import os
import sys
from typing import Iterable

from minijet.formats.segments import SegmentWriter
from minijet.taskhost.mapoutput import SpillingBuffer
from minijet.taskhost.operations import RangePartitioner
from minijet.taskhost.shuffle import ShuffleMerger, merge_runs

# What a held line costs beyond its bytes: the bytes object's header and its list slot.
_LINE_OVERHEAD = sys.getsizeof(b"") + 8


class LineSortBuffer(SpillingBuffer):
    """Collects a map task's lines into `partitions` sorted partitions, cut by
    `partitioner`'s split points."""

    def __init__(self, partitions: int, spill_dir: str | os.PathLike, *,
                 sort_buffer: int, partitioner: RangePartitioner):
        super().__init__(partitions, spill_dir, sort_buffer)
        self.partitioner = partitioner
        self._lines: list[bytes] = []
        self._bytes = 0   # estimated memory of _lines

    def collect_all(self, blocks: Iterable[list[bytes]]) -> None:
        """Adds every line of `blocks` (lists of lines without their newline)."""
        for lines in blocks:
            self._lines += lines
            self._bytes += sum(map(len, lines)) + _LINE_OVERHEAD * len(lines)
            self.counters["map_output_records"] += len(lines)
            if self._bytes > self.sort_buffer:
                self._spill()

    def _sorted_partitions(self) -> list[list[bytes]]:
        lines = self._lines
        lines.sort()
        if self.partitions == 1:
            return [lines]
        cuts = self.partitioner.cuts(lines, self.partitions)
        return [lines[a:b] for a, b in zip(cuts, cuts[1:])]

    def _write_part(self, writer: SegmentWriter, part: list[bytes]) -> None:
        writer.write_lines(part)

    def _merge_part(self, writer: SegmentWriter, runs: list[Iterable]) -> None:
        for block in merge_runs(runs):
            writer.write_lines(block)

    def _clear(self) -> None:
        self._lines = []
        self._bytes = 0


class LineShuffleMerger(ShuffleMerger):
    """Collects the sorted segments of lines of one reduce partition; blocks() gives them
    merged, as sorted lists of lines."""

    _merged = staticmethod(merge_runs)
    _write_block = staticmethod(SegmentWriter.write_lines)
