"""Input splits: the unit of work of an input stage's task.

A split is a list of (path, offset, length) segments, carrying the hosts that hold its bytes'
replicas, so the scheduler can run the task next to its data; the task reads each segment
with the usual line rule (a segment that is a whole file simply starts at 0).

Split size (Hadoop's goal size): the input is cut into a multiple of the cluster's task slots
of even pieces, at most a block each, so every wave of map tasks keeps every slot busy and no
core idles while the reduces wait for one large task. Blocks stay whole where they already
make whole waves of even tasks; else a piece may cross a block boundary, and its hosts are
those of the block holding most of it. Pieces are never smaller than
`min_split_size` (a task costs a process start), and without a slot count each block is a
split. Runs of consecutive small files (shorter than a piece) are combined into one split,
so a directory of many tiny files does not become as many tasks.

The jobserver computes a job's splits at RunJob and hands each input task its split's
segments in the task description (minijet.taskdesc); the local runner computes them the
same way over local files.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

from minijet.jobdir import files_of

# (offset, length, replica hosts) of one block
Block = tuple[int, int, Sequence[str]]
# (path, file length, blocks in order)
InputFile = tuple[str, int, Sequence[Block]]


@dataclass(frozen=True)
class Segment:
    """[offset, offset + length) of the file at `path`: what a task reads of one file."""
    path: str
    offset: int
    length: int


@dataclass(frozen=True)
class Split:
    segments: tuple[Segment, ...]
    hosts: tuple[str, ...]   # where the data is, best first

    @property
    def length(self) -> int:
        return sum(s.length for s in self.segments)

    def to_dict(self) -> dict[str, Any]:
        return {"segments": [[s.path, s.offset, s.length] for s in self.segments],
                "hosts": list(self.hosts)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Split":
        return cls(tuple(Segment(p, o, n) for p, o, n in d["segments"]), tuple(d["hosts"]))


def input_splits(fs, conf, block_size: int, slots: int = 0,
                 min_split_size: int = 1) -> dict[str, list[Split]]:
    """Stage id -> the splits of every input stage of JobConf `conf`, sized for `slots` task
    slots, each with the hosts of its bytes' replicas. `fs` is a DfsClient (the jobserver's,
    at RunJob) or the local runner's LocalFiles."""
    result: dict[str, list[Split]] = {}
    for stage in conf.stages:
        if not stage.input:
            continue
        files = []
        for path in stage.input:
            for file_path in files_of(fs, path):
                blocks = [(b.offset, b.length, list(b.hosts))
                          for b in fs.block_locations(file_path)]
                length = sum(b[1] for b in blocks)
                files.append((file_path, length, blocks))
        result[stage.id] = compute_splits(files, block_size, slots, min_split_size)
    return result


def compute_splits(files: Sequence[InputFile], block_size: int, slots: int = 0,
                   min_split_size: int = 1) -> list[Split]:
    """Splits for the given files, in file order, for a cluster of `slots` task slots
    (0: one split per block); empty files give none."""
    goal = goal_size(sum(length for _, length, _ in files), block_size, slots, min_split_size)
    splits: list[Split] = []
    small: list[InputFile] = []   # the current run of small files to combine
    small_bytes = 0

    def flush() -> None:
        nonlocal small, small_bytes
        if small:
            splits.append(_combined(small))
        small, small_bytes = [], 0

    for path, length, blocks in files:
        if length == 0:
            continue
        if len(blocks) == 1 and length < goal:
            if small_bytes + length > goal:
                flush()
            small.append((path, length, blocks))
            small_bytes += length
            continue
        flush()
        if slots <= 0 or goal >= blocks[0][1] or _blocks_fill_waves(blocks, goal, slots):
            splits.extend(Split((Segment(path, offset, n),), tuple(hosts))
                          for offset, n, hosts in blocks if n)
            continue
        pieces = max(1, round(length / goal))
        cuts = [length * i // pieces for i in range(pieces + 1)]
        starts = [offset for offset, _, _ in blocks]
        splits.extend(Split((Segment(path, start, end - start),),
                            _hosts_of(blocks, starts, start, end))
                      for start, end in zip(cuts, cuts[1:]))
    flush()
    return splits


def _blocks_fill_waves(blocks: Sequence[Block], goal: int, slots: int) -> bool:
    """Whether a split per block is as good as even pieces: whole waves of about even
    tasks (every block within 10% of the goal size)."""
    lengths = [n for _, n, _ in blocks if n]
    return len(lengths) % slots == 0 and all(abs(n - goal) <= goal // 10 for n in lengths)


def goal_size(total: int, block_size: int, slots: int, min_split_size: int = 1) -> int:
    """The size of a split: `total` over a multiple of `slots`, at most a block, at least
    `min_split_size` (a block without a slot count)."""
    if slots <= 0 or total <= 0:
        return block_size
    waves = -(-total // (slots * block_size))
    return min(block_size, max(min_split_size, -(-total // (slots * waves))))


def _hosts_of(blocks: Sequence[Block], starts: Sequence[int], start: int,
              end: int) -> tuple[str, ...]:
    """The replica hosts of the block holding most of [start, end); `starts`: the blocks'
    offsets (found by bisection: a file of 25k blocks is cut into 100k pieces)."""
    def overlap(block: Block) -> int:
        offset, length, _ = block
        return min(end, offset + length) - max(start, offset)
    first = max(0, bisect_right(starts, start) - 1)
    last = max(first + 1, bisect_left(starts, end, lo=first))
    return tuple(max(blocks[first:last], key=overlap)[2])


def _combined(files: list[InputFile]) -> Split:
    """One split over whole small files; hosts ranked by how many of its bytes they hold,
    as many as the best-replicated file has replicas (a host holding little of the split
    would make 'node-local' meaningless)."""
    held: Counter[str] = Counter()
    for _, length, blocks in files:
        for host in blocks[0][2]:
            held[host] += length
    replicas = max(len(blocks[0][2]) for _, _, blocks in files)
    hosts = sorted(held, key=lambda h: (-held[h], h))[:replicas]
    return Split(tuple(Segment(path, 0, length) for path, length, _ in files), tuple(hosts))
