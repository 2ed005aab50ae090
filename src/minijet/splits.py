"""Input splits: the unit of work of an input stage's task.

One split per DFS block of each input file, carrying the hosts that hold the block's
replicas, so the scheduler can run the task next to its data. Runs of consecutive small
files (one block, shorter than a block) are combined into one split of at most a block,
so a directory of many tiny files does not become as many tasks. A split is a list of
(path, offset, length) segments; the task reads each segment with the usual line rule
(a segment that is a whole file simply starts at 0).

The jobserver computes a job's splits at RunJob and hands each input task its split's
segments in the task description (minijet.taskdesc); the local runner computes them the
same way over local files.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

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


def input_splits(fs, conf, block_size: int) -> dict[str, list[Split]]:
    """Stage id -> the splits of every input stage of JobConf `conf`, one per block (small
    files combined), each with the hosts of its block's replicas. `fs` is a DfsClient (the
    jobserver's, at RunJob) or the local runner's LocalFiles."""
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
        result[stage.id] = compute_splits(files, block_size)
    return result


def compute_splits(files: Iterable[InputFile], block_size: int) -> list[Split]:
    """Splits for the given files, in file order; empty files give none."""
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
        if len(blocks) == 1 and length < block_size:
            if small_bytes + length > block_size:
                flush()
            small.append((path, length, blocks))
            small_bytes += length
            continue
        flush()
        for offset, block_length, hosts in blocks:
            if block_length:
                splits.append(Split((Segment(path, offset, block_length),), tuple(hosts)))
    flush()
    return splits


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
