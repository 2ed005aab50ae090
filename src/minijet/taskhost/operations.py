"""The JobBuilder's operations over a stage's records: pure functions of iterators.

A stage runs its operations one after another on (key, value) pairs (pipelined in one
process, nothing in between but generators); a stage reading a sorted file channel may start
with a grouped operation, which sees (key, values iterator) groups. The user's functions are
found by index in the job's function table (JobBuilderJob.function), as build_job()
registered them. The internal operations the builder puts around a shuffle:
  tag          (k, v) -> (k, (side, v))            before a join (a self-join: both sides)
  sort_key     (k, v) -> (key(k, v), (k, v)), or (k, v) with the key wrapped in
               Descending for reverse order        before a sort's range-partitioned shuffle
  unsort       the reverse of sort_key             after it
  distinct_key (k, v) -> ((k, v), None)            before distinct
  combine      the map-side combiner of aggregate / distinct (runs in the map output buffer)
  sort_lines   the map stage of sort_lines(), merge_lines its reduce stage: the runner
               gives them lines as bytes, not records (taskhost.linesort); as records
               (offset, line) -> (line's bytes, None), which is what split points sample
"""
from __future__ import annotations

import functools
from bisect import bisect_left, bisect_right
from itertools import chain, starmap
from typing import Any, Callable, Iterable, Iterator

from minijet import jobconf as jc
from minijet.errors import InvalidArgument
from minijet.formats.textoutput import encode_text


@functools.total_ordering
class Descending:
    """A key that sorts in reverse: the shuffle sorts ascending, so a reverse sort wraps."""

    __slots__ = ("key",)

    def __init__(self, key: Any):
        self.key = key

    def __lt__(self, other: "Descending") -> bool:
        return other.key < self.key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Descending) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __reduce__(self):
        return (Descending, (self.key,))

    def __repr__(self) -> str:
        return f"Descending({self.key!r})"


class RangePartitioner:
    """Total order: partition i holds the keys between split points i-1 and i, so the
    partitions concatenated are sorted (a Descending key counts from the last partition).
    `monotone`: partition numbers never decrease along the sort order, so the map output
    buffer may cut its sorted records instead of asking per key."""

    monotone = True

    def __init__(self, split_points: list[Any]):
        self.points = [jc.decode_key(p) for p in split_points]

    def __call__(self, key: Any, partitions: int) -> int:
        if type(key) is Descending:
            return partitions - 1 - min(bisect_right(self.points, key.key), partitions - 1)
        return min(bisect_right(self.points, key), partitions - 1)

    def cuts(self, keys: list, partitions: int) -> list[int]:
        """Where each partition begins in ascending sorted `keys` (partition i is
        keys[cuts[i]:cuts[i + 1]]; cuts[partitions] is len(keys)): a bisection per split
        point, as __call__ would place every key."""
        points = self.points[:partitions - 1]
        return [0, *(bisect_left(keys, p) for p in points),
                *[len(keys)] * (partitions - len(points))]


def uses_builder(stage: jc.StageConf) -> bool:
    """A JobBuilder stage: functions by index (a union's stage may have no operations)."""
    return not stage.operations or any(not op.method for op in stage.operations)


def raw_lines(stage: jc.StageConf) -> bool:
    """Whether a stage is a side of sort_lines(): lines as bytes, no (key, value) records."""
    return bool(stage.operations) and stage.operations[0].op in jc.LINE_OPS


def wants_groups(stage: jc.StageConf) -> bool:
    """Whether a consumer stage's operations take (key, values) groups."""
    if not stage.operations:
        return False
    first = stage.operations[0]
    return first.op == "reduce" if first.method else first.op in jc.GROUPED_OPS


def _fn(job: Any, stage: jc.StageConf, op: jc.Operation) -> Callable:
    try:
        return job.function(op.fn)
    except (AttributeError, IndexError):
        raise InvalidArgument(f"stage {stage.id}: {type(job).__name__} has no builder "
                              f"function {op.fn} for its {op.op} operation (does build_job "
                              "build the same job every time?)") from None


def _pairs_of(fn: Callable, name: str) -> Callable:
    def call(key, value):
        result = fn(key, value)
        if result is None:
            raise TypeError(f"the {name} function returned None; it must return "
                            "(key, value) pairs")
        return result
    return call


def _fold(fn: Callable) -> Callable:
    def combine(key, values):
        return ((key, functools.reduce(fn, values)),)
    return combine


def _distinct_combine(key, values):
    return ((key, None),)


def combiner(job: Any, stage: jc.StageConf) -> Callable | None:
    """The map-side combiner of the stage's output, if any."""
    for op in stage.operations:
        if op.op == "combine" and not op.method:
            if op.args.get("distinct"):
                return _distinct_combine
            fn = _fn(job, stage, op)
            # group_by_key's combiner makes pairs itself; aggregate's function folds two values
            return _pairs_of(fn, "combiner") if op.args.get("combiner") else _fold(fn)
    return None


def chain_operations(job: Any, stage: jc.StageConf, records: Iterable,
                     grouped: bool) -> Iterable:
    """Apply the stage's builder operations to `records` (groups when `grouped`)."""
    for op in stage.operations:
        kind = op.op
        if grouped != (kind in jc.GROUPED_OPS):
            raise InvalidArgument(f"stage {stage.id}: a {kind} operation cannot take "
                                  + ("grouped input" if grouped else "ungrouped input"))
        grouped = False
        if kind == "map":
            records = starmap(_fn(job, stage, op), records)
        elif kind == "flat_map":
            records = chain.from_iterable(starmap(_pairs_of(_fn(job, stage, op), "flat_map"),
                                                  records))
        elif kind == "filter":
            records = _filter(_fn(job, stage, op), records)
        elif kind == "reduce":
            records = chain.from_iterable(starmap(_pairs_of(_fn(job, stage, op), "reduce"),
                                                  records))
        elif kind == "aggregate":
            fn = _fn(job, stage, op)
            records = ((k, functools.reduce(fn, vs)) for k, vs in records)
        elif kind == "join":
            records = _join(records)
        elif kind == "distinct":
            records = (key for key, _ in records)
        elif kind == "tag":
            side = op.args.get("side", 0)
            records = _tag_both(records) if side == "both" else \
                ((k, (side, v)) for k, v in records)
        elif kind == "sort_key":
            records = _sort_key(job, stage, op, records)
        elif kind == "unsort":
            records = _unsort(op, records)
        elif kind == "distinct_key":
            records = ((kv, None) for kv in map(tuple, records))
        elif kind == "sort_lines":
            records = ((encode_text(line), None) for _, line in records)
        # "combine" runs in the map output buffer (see combiner())
    if grouped:
        raise InvalidArgument(f"stage {stage.id}: grouped input needs a grouped operation")
    return records


def _filter(fn: Callable, records: Iterable) -> Iterator:
    for key, value in records:
        if fn(key, value):
            yield key, value


def _tag_both(records: Iterable) -> Iterator:
    for key, value in records:
        yield key, (0, value)
        yield key, (1, value)


def _join(groups: Iterable) -> Iterator:
    """Inner join of a key's tagged values: (key, (left, right)) for every pair."""
    for key, values in groups:
        left, right = [], []
        for side, value in values:
            (right if side else left).append(value)
        for lv in left:
            for rv in right:
                yield key, (lv, rv)


def _sort_key(job: Any, stage: jc.StageConf, op: jc.Operation, records: Iterable) -> Iterable:
    reverse = op.args.get("reverse", False)
    if op.fn >= 0:
        fn = _fn(job, stage, op)
        if reverse:
            return ((Descending(fn(k, v)), (k, v)) for k, v in records)
        return ((fn(k, v), (k, v)) for k, v in records)
    if reverse:
        return ((Descending(k), v) for k, v in records)
    return records


def _unsort(op: jc.Operation, records: Iterable) -> Iterable:
    if op.args.get("keyed"):
        return (kv for _, kv in records)
    if op.args.get("reverse"):
        return ((k.key, v) for k, v in records)
    return records


def shuffle_keys(job: Any, stage: jc.StageConf, records: Iterable) -> list:
    """The keys a stage sends to its range-partitioned output for `records` (read at the
    client for sampling), unwrapped from Descending."""
    keys = [k for k, _ in chain_operations(job, stage, records, grouped=False)]
    return [k.key if type(k) is Descending else k for k in keys]


def split_points(keys: list, partitions: int) -> list:
    """partitions - 1 keys cutting sorted `keys` into partitions of about equal size."""
    keys = sorted(keys)
    if not keys or partitions < 2:
        return []
    points = []
    for i in range(1, partitions):
        p = keys[min(len(keys) - 1, i * len(keys) // partitions)]
        if not points or points[-1] < p:
            points.append(p)
    return points
