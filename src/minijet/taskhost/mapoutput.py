"""The map-side output buffer: partition, combine, sort, spill, merge into one output file.

Records from the mapper are held in memory until the estimated size passes the sort buffer
(taskserver.sort_buffer). With a combiner they go into one dict, key -> list of values, for
all partitions: a key's partition is computed once per spill, not once per record, and when
the buffer fills the combiner folds every list first, which usually frees most of it (word
counts shrink to one value per word). Only when that is not enough is the buffer spilled:
each partition sorted by key and written as a segment of a local spill file. Without a
combiner records are kept as a list of pairs, sorted by key (in C) at spill time.

In-mapper combining: most mappers with a combiner emit one constant value (WordCount's 1),
so a value that is the very object the task emitted first (an immutable scalar) is not
stored; a second dict counts how often each key got it, and the combiner later receives that
many copies (from an iterator: a combiner's values are an iterable, as a reducer's). One dict
update per such pair is all the engine adds to the mapper's own cost (a list per key cost
twice as much); the combiner sees the same values, in another order, which a combiner may
not rely on anyway.

finish() writes ONE map output file with every partition as a contiguous sorted segment,
plus its index (minijet.formats.segments), under a temporary name renamed into place when complete.
With spills, each partition's segments are merged (shuffle.merge_frames), the combiner applied to
each key's merged values again. Intermediate data is not fsync'd: a lost map output is
simply recomputed.
"""
from __future__ import annotations

import os
import sys
from itertools import chain, compress, groupby, islice, repeat
from operator import itemgetter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from minijet.errors import InvalidArgument
from minijet.formats.segments import (IndexEntry, SegmentWriter, index_path, iter_file_frames,
                                       write_index)
from minijet.taskhost.partition import Partitioner, hash_partition, str_hash_partitions
from minijet.taskhost.shuffle import MERGE_FACTOR, merge_frames, merge_sorted

Combiner = Callable[[Any, Iterable], Iterable[tuple[Any, Any]]]

_NOT_SEEN = object()      # _constant before the task's first value
_NO_CONSTANT = object()   # _constant when the first value was no scalar: nothing is counted

_KEY = itemgetter(0)
_VALUE = itemgetter(1)
# Rough CPython costs in bytes, for the memory estimate: a dict entry plus its value list,
# a list slot, a 2-tuple.
_GROUP_OVERHEAD = 120
_SLOT = 8
_PAIR_OVERHEAD = 64
_MAX_CHECK_EVERY = 4096
# Values that may stand for themselves by count: immutable, so copies are indistinguishable.
_SCALARS = (int, float, complex, str, bytes, bool, type(None))


class SpillingBuffer:
    """What every map output buffer does with its sorted partitions: spill them to local
    files, merge the spills (MERGE_FACTOR at a time) with what is left in memory, and write
    the map output file and its index under a temporary name renamed into place.
    Subclasses say what a partition is (as a decoded frame: (keys, values) columns, or a
    list of lines) by `_sorted_partitions`, `_write_part`, `_merge_part` and `_clear`."""

    def __init__(self, partitions: int, spill_dir: str | os.PathLike, sort_buffer: int):
        if partitions < 1:
            raise ValueError("a map output needs at least one partition")
        self.partitions = partitions
        self.spill_dir = Path(spill_dir)
        self.sort_buffer = max(1, sort_buffer)
        self.counters = {"map_output_records": 0, "map_output_bytes": 0, "spills": 0,
                         "spilled_records": 0}
        self._spills: list[tuple[Path, list[IndexEntry]]] = []
        self._spill_seq = 0

    def _sorted_partitions(self) -> list:
        """The buffer's records, one sorted partition (a decoded frame) per partition."""
        raise NotImplementedError

    def _write_part(self, writer: SegmentWriter, part: Any) -> None:
        """Writes one partition of `_sorted_partitions()` as a segment."""
        raise NotImplementedError

    def _merge_part(self, writer: SegmentWriter, runs: list[Iterable]) -> None:
        """Writes the merge of `runs` (of decoded frames) of one partition as a segment."""
        raise NotImplementedError

    def _clear(self) -> None:
        """Drops the records held in memory."""
        raise NotImplementedError

    # -- sorting and spilling --------------------------------------------------------

    def _spill_path(self) -> Path:
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        self._spill_seq += 1
        return self.spill_dir / f"spill{self._spill_seq}.out"

    def _spill(self) -> None:
        path = self._spill_path()
        entries = self._write_segments(path, self._sorted_partitions())
        self._spills.append((path, entries))
        self.counters["spills"] += 1
        self.counters["spilled_records"] += sum(e.records for e in entries)
        self._clear()

    def _write_segments(self, path: Path, parts: list) -> list[IndexEntry]:
        entries = []
        with open(path, "wb", buffering=1 << 20) as f:
            for part in parts:
                writer = SegmentWriter(f)
                self._write_part(writer, part)
                entries.append(writer.entry())
        return entries

    # -- the map output file ---------------------------------------------------------

    def finish(self, path: str | os.PathLike) -> list[IndexEntry]:
        """Writes the map output file `path` and its index; returns the index entries."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        try:
            if not self._spills:
                entries = self._write_segments(tmp, self._sorted_partitions())
            else:
                entries = self._merge_spills(tmp)
            write_index(tmp.with_name(tmp.name + ".index"), entries)
            os.replace(tmp, path)
            os.replace(tmp.with_name(tmp.name + ".index"), index_path(path))
        finally:
            self.close()
            for leftover in (tmp, tmp.with_name(tmp.name + ".index")):
                leftover.unlink(missing_ok=True)
        self.counters["map_output_bytes"] = sum(e.length for e in entries)
        return entries

    def _merge_spills(self, tmp: Path) -> list[IndexEntry]:
        memory = self._sorted_partitions()
        self._clear()
        # Merge at most MERGE_FACTOR runs at once (the buffer's records are one of them).
        while len(self._spills) >= MERGE_FACTOR:
            group = self._spills[:MERGE_FACTOR]
            path = self._spill_path()
            entries = self._merge(group, None, path)
            self._spills = self._spills[MERGE_FACTOR:] + [(path, entries)]
            for old, _ in group:
                old.unlink()
        return self._merge(self._spills, memory, tmp)

    def _merge(self, spills: list[tuple[Path, list[IndexEntry]]],
               memory: list | None, out_path: Path) -> list[IndexEntry]:
        """Merges each partition of the spill files (and of `memory`) into `out_path`."""
        files = [open(p, "rb") for p, _ in spills]
        try:
            entries = []
            with open(out_path, "wb", buffering=1 << 20) as out:
                for part in range(self.partitions):
                    runs = [iter_file_frames(f, e[part].offset, e[part].length)
                            for f, (_, e) in zip(files, spills)]
                    if memory is not None:
                        runs.append([memory[part]])
                    writer = SegmentWriter(out)
                    self._merge_part(writer, runs)
                    entries.append(writer.entry())
            return entries
        finally:
            for f in files:
                f.close()

    def close(self) -> None:
        """Drops the buffer and removes spill files (finish() does this; call it on failure)."""
        for path, _ in self._spills:
            path.unlink(missing_ok=True)
        self._spills = []
        self._clear()


class MapOutputBuffer(SpillingBuffer):
    """Collects a map task's (key, value) output into `partitions` sorted partitions."""

    def __init__(self, partitions: int, spill_dir: str | os.PathLike, *,
                 sort_buffer: int = 64 * 1024 * 1024, combiner: Combiner | None = None,
                 partitioner: Partitioner = hash_partition):
        super().__init__(partitions, spill_dir, sort_buffer)
        self.combiner = combiner
        self.partitioner = partitioner
        self.counters.update(combine_input_records=0, combine_output_records=0)
        self._groups: dict[Any, list] = {}                         # with a combiner
        self._counts: dict[Any, int] = {}   # with a combiner: key -> copies of _constant
        self._constant: Any = _NOT_SEEN     # the task's first value, if a scalar
        self._pairs: list[tuple[Any, Any]] = []                    # without
        self._pending = 0         # records collected since the last memory check
        self._pending_keys = 0    # of which keys added to _counts
        self._values = 0          # values held in _groups
        self._key_size = 50       # sampled sizes of a key and a value, for the estimate
        self._value_size = 28
        self._check_every = 16    # records between memory checks, adapted to record sizes

    # -- collecting ------------------------------------------------------------------

    def collect(self, key: Any, value: Any) -> None:
        self.collect_all(((key, value),))

    def collect_all(self, pairs: Iterable[tuple[Any, Any]]) -> None:
        """Adds every (key, value) pair of `pairs` (typically one mapper call's output)."""
        if self.combiner is None:
            it = iter(pairs)
            while True:
                records = self._pairs
                limit = self._check_every - self._pending
                before = len(records)
                records.extend(islice(it, limit))
                added = len(records) - before
                self._pending += added
                if added < limit:
                    return
                self._check_memory()
        it = iter(pairs)
        if self._constant is _NOT_SEEN:
            for first in it:
                value = first[1] if type(first) is tuple and len(first) == 2 else None
                self._constant = value if type(value) in _SCALARS else _NO_CONSTANT
                it = chain((first,), it)
                break
        constant = self._constant
        groups, counts = self._groups, self._counts
        get, count_of = groups.get, counts.get  # plain dicts beat defaultdict (CPython 3.11)
        limit = self._check_every - self._pending
        n = 0      # records that took memory (a value stored, a key added)
        keys = 0   # of which keys added to the counts
        for key, value in it:
            if value is constant:
                c = count_of(key)
                if c is not None:
                    counts[key] = c + 1
                    continue
                counts[key] = 1
                keys += 1
            else:
                values = get(key)
                if values is None:
                    groups[key] = [value]
                else:
                    values.append(value)
            n += 1
            if n >= limit:  # checked inside the loop: one call may yield a lot
                self._pending += n
                self._pending_keys += keys
                n = keys = 0
                self._check_memory()
                groups, counts = self._groups, self._counts  # a spill replaces them
                get, count_of = groups.get, counts.get
                limit = self._check_every
        self._pending += n
        self._pending_keys += keys

    def _check_memory(self) -> None:
        if self.combiner is None:
            self.counters["map_output_records"] += self._pending
            records = self._pairs
            sample = records[-1]
            self._sample_sizes(sample)
            self._pending = 0
            if self._estimate() > self.sort_buffer:
                self._spill()
            return
        self._flush_pending()
        groups = self._groups
        if groups:
            key = next(reversed(groups))
            self._sample_sizes((key, groups[key][-1] if groups[key] else None))
        elif self._counts:
            self._sample_sizes((next(reversed(self._counts)), self._constant))
        if self._estimate() > self.sort_buffer:
            self._combine_all()
            # Spill only when folding freed too little, so folds stay rare.
            if self._estimate() > self.sort_buffer // 2:
                self._spill()

    def _sample_sizes(self, pair: Any) -> None:
        try:
            key, value = pair
        except (TypeError, ValueError):
            return  # reported with a clear message when the buffer is written
        self._key_size = sys.getsizeof(key)
        # Small ints (like word counts' 1) are shared objects: only the list slot is new.
        small_int = type(value) is int and -5 <= value <= 256
        self._value_size = 0 if small_int else sys.getsizeof(value)

    def _estimate(self) -> int:
        estimate = self._estimate_bytes()
        # Check about 8 times per buffer fill: often enough for small buffers, rarely for big.
        per_record = _SLOT + self._value_size + (
            _PAIR_OVERHEAD + self._key_size if self.combiner is None else 0)
        self._check_every = max(16, min(_MAX_CHECK_EVERY, self.sort_buffer // per_record // 8))
        return estimate

    def _estimate_bytes(self) -> int:
        if self.combiner is None:
            return len(self._pairs) * (_PAIR_OVERHEAD + _SLOT + self._key_size + self._value_size)
        return ((len(self._groups) + len(self._counts)) * (_GROUP_OVERHEAD + self._key_size)
                + self._values * (_SLOT + self._value_size))

    # -- combining -------------------------------------------------------------------

    def _combine(self, key: Any, values: Iterable, count: int) -> list:
        """The values the combiner makes of one key's `count` values."""
        out = self._combined(key, values)
        self.counters["combine_input_records"] += count
        self.counters["combine_output_records"] += len(out)
        return out

    def _combined(self, key: Any, values: Iterable) -> list:
        out = []
        for out_key, value in self.combiner(key, values):
            if out_key != key:
                raise InvalidArgument(
                    f"the combiner was given key {key!r} and emitted key {out_key!r}: "
                    "a combiner must emit the key it was given")
            out.append(value)
        return out

    def _combine_all(self) -> None:
        """Folds every key's values (stored ones, then the constant's copies) with the
        combiner; a key's lone value is left as it is. Runs once per key of the buffer when
        it fills and at the end, so it keeps per-key work to a call of the combiner: the
        counters are summed once, and a key that has only copies of the constant (every
        key of a WordCount) gets its list here, not before."""
        combined, groups, counts, constant = self._combined, self._groups, self._counts, \
            self._constant
        n_in = n_out = 0
        for key, values in groups.items():
            if len(values) > 1 and key not in counts:
                n_in += len(values)
                values[:] = combined(key, values)
                n_out += len(values)
        if counts:
            self.counters["map_output_records"] += sum(counts.values())
            get = groups.get
            for key, count in counts.items():
                values = get(key)
                if values is None:
                    if count == 1:
                        groups[key] = [constant]
                        continue
                    n_in += count
                    groups[key] = values = combined(key, repeat(constant, count))
                else:  # never as a list: the copies join the key's other values
                    n_in += len(values) + count
                    values[:] = combined(key, chain(values, repeat(constant, count)))
                n_out += len(values)
            self._counts = {}
        self.counters["combine_input_records"] += n_in
        self.counters["combine_output_records"] += n_out
        self._values = sum(map(len, groups.values()))

    # -- sorting and spilling --------------------------------------------------------

    def _sorted_partitions(self) -> list[tuple[list, list]]:
        """The buffer's records as (keys, values) columns per partition, sorted by key."""
        self._flush_pending()
        n = self.partitions
        if self.combiner is not None:
            if self._counts and not self._groups:
                return self._count_columns()
            self._combine_all()
            groups = self._groups
            out = []
            for keys in self._key_partitions(list(groups)):
                _sort(keys)
                lists = list(map(groups.__getitem__, keys))
                values = list(chain.from_iterable(lists))
                if len(values) != len(keys) or min(map(len, lists), default=1) != 1:
                    keys = list(chain.from_iterable(map(repeat, keys, map(len, lists))))
                out.append((keys, values))
            return out
        records = self._pairs
        _check_pairs(records)
        _sort(records, key=_KEY)
        if n == 1:
            parts = [records]
        elif getattr(self.partitioner, "monotone", False):
            # partitions follow key order (a range partitioner): cut the sorted run by
            # bisection, a few partitioner calls per partition instead of one per key
            parts = _cut_sorted(records, self._part_of, n)
        else:  # a partitioner call per distinct key, not per record
            parts = [[] for _ in range(n)]
            part_of = self._part_of
            for key, run in groupby(records, _KEY):
                parts[part_of(key)].extend(run)
        return [(list(map(_KEY, p)), list(map(_VALUE, p))) for p in parts]

    def _count_columns(self) -> list[tuple[list, list]]:
        """_sorted_partitions when every value held is a copy of the constant (every
        WordCount's): the columns straight from the counts, no list per key. A key with one
        copy keeps it; the others get what the combiner makes of their copies, with a Python
        step only for them (on real text most keys have one copy)."""
        counts, constant = self._counts, self._constant
        self.counters["map_output_records"] += sum(counts.values())
        folded = {key: self._combined(key, repeat(constant, counts[key]))
                  for key in compress(counts, map((1).__lt__, counts.values()))}
        n_out = sum(map(len, folded.values()))
        self.counters["combine_input_records"] += sum(map(counts.__getitem__, folded))
        self.counters["combine_output_records"] += n_out
        single = set(map(len, folded.values())) <= {1}
        if single:
            folded = dict(zip(folded, map(itemgetter(0), folded.values())))
        out = []
        for keys in self._key_partitions(list(counts)):
            _sort(keys)
            if single:
                values = list(map(folded.get, keys, repeat(constant)))
            else:   # a combiner that emitted several values (or none) for some key
                lists = list(map(folded.get, keys, repeat((constant,))))
                values = list(chain.from_iterable(lists))
                keys = list(chain.from_iterable(map(repeat, keys, map(len, lists))))
            out.append((keys, values))
        self._counts = {}
        return out

    def _key_partitions(self, keys: list) -> list[list]:
        """`keys` split by partition."""
        if self.partitions == 1:
            return [keys]
        pids = self._partition_ids(keys)
        return _buckets(keys, pids if pids is not None else list(map(self._part_of, keys)),
                        self.partitions)

    def _partition_ids(self, keys: list) -> list[int] | None:
        """Every key's partition, computed in C, when that is possible (the default
        partitioner and str keys); else None."""
        if self.partitioner is hash_partition:
            return str_hash_partitions(keys, self.partitions)
        return None

    def _part_of(self, key: Any) -> int:
        p = self.partitioner(key, self.partitions)
        if type(p) is not int or not 0 <= p < self.partitions:
            raise InvalidArgument(f"the partitioner returned {p!r} for key {key!r}; "
                                  f"expected an int in range({self.partitions})")
        return p

    def _flush_pending(self) -> None:
        stored = self._pending - self._pending_keys  # the counts are counted when folded
        self.counters["map_output_records"] += stored
        self._values += stored
        self._pending = self._pending_keys = 0

    def _clear(self) -> None:
        self._groups = {}
        self._counts = {}
        self._pairs = []
        self._values = 0

    def _write_part(self, writer: SegmentWriter, part: tuple[list, list]) -> None:
        writer.write(*part)

    def _merge_part(self, writer: SegmentWriter, runs: list[Iterable]) -> None:
        if self.combiner is None:
            for block in merge_frames(runs):
                writer.write_block(block)
        else:
            writer.write_pairs(self._combine_groups(merge_sorted(runs)))

    def _combine_groups(self, merged: Iterator[tuple[Any, Any]]) -> Iterator[tuple[Any, Any]]:
        for key, run in groupby(merged, _KEY):
            values = list(map(_VALUE, run))
            if len(values) > 1:
                values = self._combine(key, values, len(values))
            for value in values:
                yield key, value


def _cut_sorted(records: list, part_of: Callable[[Any], int], n: int) -> list[list]:
    """Sorted `records` split into `n` partitions, for a partitioner whose partition numbers
    never decrease along the key order."""
    cuts = [0]
    for p in range(1, n):
        lo, hi = cuts[-1], len(records)
        while lo < hi:
            mid = (lo + hi) // 2
            if part_of(records[mid][0]) < p:
                lo = mid + 1
            else:
                hi = mid
        cuts.append(lo)
    cuts.append(len(records))
    return [records[cuts[i]:cuts[i + 1]] for i in range(n)]


def _buckets(items: list, pids: list[int], n: int) -> list[list]:
    """`items` split by partition id, keeping their order."""
    if n <= 8:  # a pass in C per partition beats a Python loop over the items
        return [list(compress(items, map(p.__eq__, pids))) for p in range(n)]
    buckets = [[] for _ in range(n)]
    appends = [b.append for b in buckets]
    for pid, item in zip(pids, items):
        appends[pid](item)
    return buckets


def _check_pairs(records: list) -> None:
    try:
        ok = set(map(type, records)) <= {tuple, list} and set(map(len, records)) <= {2}
    except TypeError:
        ok = False
    if not ok:
        bad = next(r for r in records if not isinstance(r, (tuple, list)) or len(r) != 2)
        raise InvalidArgument(f"map output must be (key, value) pairs, got {bad!r}")


def _sort(items: list, key=None) -> None:
    try:
        items.sort(key=key)
    except TypeError as e:
        raise InvalidArgument(f"map output keys must be mutually comparable to be sorted: {e}") \
            from None
