"""Running one task of a stage: the stage logic, apart from how it is driven.

`run_input_stage` and `run_consumer_stage` take the job object, the StageConf, their inputs
as plain objects (file openers for splits, files of fetched segments) and an output (a
MapOutputSink for a file channel, a DfsOutput for DFS output); they report through a
`Progress`. They know nothing of gRPC or processes, so the TaskHost process (__main__.py)
and an in-process local runner share them. The TaskHost's wiring (umbilical, DFS client,
shuffle fetches, commit) is in __main__.py.
"""
from __future__ import annotations

import inspect
import json
import logging
import time
from itertools import chain, count, islice, starmap
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Protocol

from minijet import context
from minijet import jobconf as jc
from minijet.errors import AlreadyExists, InvalidArgument
from minijet.formats.recordfile import RecordsSplitReader, RecordsWriter
from minijet.formats.segments import MAP_OUTPUT
from minijet.formats.textinput import SplitReader
from minijet.formats.textoutput import LinesWriter, TextOutputWriter
from minijet.job import MapReduceJob
from minijet.jobdir import JOB_CONF_FILE, make_attempt_dir, part_path, temporary_part_path
from minijet.splits import Segment
from minijet.taskhost import operations
from minijet.taskhost.linesort import LineShuffleMerger, LineSortBuffer
from minijet.taskhost.mapoutput import MapOutputBuffer
from minijet.taskhost.partition import Partitioner, load_partitioner
from minijet.taskhost.shuffle import ShuffleMerger, group_by_key

log = logging.getLogger(__name__)

GROUP = "task"            # counter group of the engine's counters
REPORT_INTERVAL = 0.33    # at most ~3 progress reports a second
_READ_BATCH = 64          # input records pulled per clock reading and progress check: a
#                           slow mapper still shows life
_TIMED_BATCH = 256        # output pairs pulled per clock reading
_EXACT_BATCHES = 4        # output batches all timed apart: a small task's times are exact
_TIME_EVERY = 16          # after them, one output batch in this many is timed apart


class Progress:
    """A task's progress fraction and counters, passed to `report(progress, counters)` at
    most every `interval` seconds (and always by `flush`); `on_input_end()` is called when
    the task has read its whole input."""

    def __init__(self, report: Callable[[float, list[tuple[str, str, int]]], None],
                 interval: float = REPORT_INTERVAL, clock: Callable[[], float] = time.monotonic,
                 on_input_end: Callable[[], None] = lambda: None):
        self._report = report
        self.input_ended = on_input_end
        self._interval = interval
        self._clock = clock
        self._last = -interval
        self.fraction = 0.0
        self.counters: dict[tuple[str, str], int] = {}

    def add(self, name: str, value: int, group: str = GROUP) -> None:
        self.counters[(group, name)] = self.counters.get((group, name), 0) + value

    def set(self, name: str, value: int, group: str = GROUP) -> None:
        self.counters[(group, name)] = value

    def counter_list(self) -> list[tuple[str, str, int]]:
        return [(g, n, v) for (g, n), v in sorted(self.counters.items())]

    def due(self) -> bool:
        """Whether a report would be sent now (cheap: lets callers skip gathering counters)."""
        return self._clock() - self._last >= self._interval

    def update(self, fraction: float | None = None, force: bool = False) -> None:
        if fraction is not None:
            self.fraction = min(1.0, max(0.0, fraction))
        now = self._clock()
        if force or now - self._last >= self._interval:
            self._last = now
            self._report(self.fraction, self.counter_list())

    def flush(self) -> None:
        self.update(force=True)


class StageTimer:
    """Where a stage's time goes: reading its input, the user's operations, writing its output
    (counters read_time_us, process_time_us, write_time_us). The pipeline pulls records, so
    the time spent pulling input records is reading, the time spent pulling output pairs is
    reading + processing, and the rest of the stage is writing. Records are pulled in
    batches, so the clock is read twice per batch, not per record; between two input batches
    `tick` runs (progress reports), and `records` counts the input records pulled."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self._clock = clock
        self._start = clock()
        self.read = 0.0       # pulling input records, and reading before the pipeline runs
        self.upstream = 0.0   # pulling output pairs
        self.before = 0.0     # reading outside the pipeline (the shuffle)
        self.records = 0      # input records pulled

    def _batches(self, items: Iterable, size: int, into: str,
                 tick: Callable[[], None] | None = None,
                 weigh: Callable[[list], int] = len) -> Iterator[list]:
        it, clock = iter(items), self._clock
        while True:
            t = clock()
            batch = list(islice(it, size))
            setattr(self, into, getattr(self, into) + clock() - t)
            if not batch:
                return
            if tick is not None:   # input records
                self.records += weigh(batch)
                tick()
            yield batch

    def reading(self, records: Iterable, tick: Callable[[], None] = lambda: None) -> Iterator:
        return chain.from_iterable(self._batches(records, _READ_BATCH, "read", tick))

    def reading_blocks(self, blocks: Iterable[list],
                       tick: Callable[[], None] = lambda: None) -> Iterator[list]:
        """As reading(), for input that comes as lists of records (lines): a list at a
        time, its records counted."""
        return chain.from_iterable(self._batches(blocks, 1, "read", tick, _first_len))

    def producing(self, pairs: Iterable, batch: int = _TIMED_BATCH) -> Iterator[Iterable]:
        """Output pairs (or lists of records: batch=1) as parts for the output to take one
        after another, the clock read once per timed part. A timed part is pulled into a
        list before the output sees it; holding a list cost a WordCount map task 8% (its
        pairs leave the cache), so after the first few parts only one batch in _TIME_EVERY
        is timed, and between two timed batches the output pulls the rest straight from the
        pipeline (one slice, no layer per pair: a layer of iterators cost 5%). `upstream` is
        the timed batches' pulling time scaled from their share of their own cycles (pull +
        consume) to all cycles: exact while every part is timed, an estimate after."""
        it, clock = iter(pairs), self._clock
        pulling = timed_cycles = 0.0
        start = clock()
        for n in count():
            if n >= _EXACT_BATCHES:
                yield islice(it, batch * (_TIME_EVERY - 1))
            cycle_start = clock()
            sample = list(islice(it, batch))
            pulling += clock() - cycle_start
            if sample:
                yield sample
            now = clock()
            timed_cycles += now - cycle_start
            self.upstream = pulling * (now - start) / timed_cycles if timed_cycles else pulling
            if not sample:
                return

    def read_outside(self, seconds: float) -> None:
        self.read += seconds
        self.before += seconds

    def report(self, progress: "Progress") -> None:
        total = self._clock() - self._start
        process = max(0.0, self.upstream - (self.read - self.before))
        write = max(0.0, total - self.upstream - self.before)
        for name, seconds in (("read", self.read), ("process", process), ("write", write)):
            progress.set(f"{name}_time_us", int(seconds * 1e6))


def _first_len(batch: list) -> int:
    return len(batch[0])


# ---- outputs ----

class Output(Protocol):
    def write_all(self, pairs: Iterable) -> None: ...  # pairs, or lists of lines
    def finish(self, progress: Progress) -> None: ...
    def abort(self) -> None: ...


class MapOutputSink:
    """A file channel: partitioned, combined, sorted map output in `work_dir/file.out`; with
    `lines`, sorted lines (sort_lines: write_all takes lists of lines, and the partitioner
    is a RangePartitioner)."""

    def __init__(self, work_dir: Path, partitions: int, partitioner: str | Partitioner,
                 sort_buffer: int, combiner: Callable | None, lines: bool = False):
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        self.path = Path(work_dir) / MAP_OUTPUT
        if isinstance(partitioner, str):
            partitioner = load_partitioner(partitioner)
        spills = Path(work_dir) / "spills"
        self._buffer = LineSortBuffer(partitions, spills, sort_buffer=sort_buffer,
                                      partitioner=partitioner) if lines else \
            MapOutputBuffer(partitions, spills, sort_buffer=sort_buffer, combiner=combiner,
                            partitioner=partitioner)

    def write_all(self, pairs: Iterable) -> None:
        self._buffer.collect_all(pairs)

    def finish(self, progress: Progress) -> None:
        self._buffer.finish(self.path)
        for name, value in self._buffer.counters.items():
            progress.set(name, value)

    def abort(self) -> None:
        self._buffer.close()


class DfsOutput:
    """DFS output of task `index`: written to `<path>/_temporary/<attempt>/part-NNNNN`, renamed
    to `<path>/part-NNNNN` only if `ask_commit()` grants it; a denied attempt (another one of
    the task committed) deletes its temp file and ends quietly. `writer`: "text", "records",
    or "lines" (write_all takes lists of lines as bytes: sort_lines)."""

    def __init__(self, dfs, path: str, attempt_id: str, index: int,
                 ask_commit: Callable[[], bool], writer: str = "text"):
        self.final = part_path(path, index)
        self.temp = temporary_part_path(path, attempt_id, index)
        self._dfs = dfs
        self._ask_commit = ask_commit
        make_attempt_dir(dfs, path, attempt_id)   # never recreates a removed output
        self._file = dfs.create(self.temp, overwrite=True)
        self._writer = {"records": RecordsWriter, "lines": LinesWriter}.get(
            writer, TextOutputWriter)(self._file)
        self.committed = False

    def write_all(self, pairs: Iterable) -> None:
        self._writer.write_all(pairs)

    def finish(self, progress: Progress) -> None:
        self._writer.flush()
        self._file.close()
        progress.set("output_records", self._writer.records)
        progress.set("output_bytes", self._writer.bytes)
        progress.flush()
        if self._ask_commit():
            try:
                self._dfs.rename(self.temp, self.final)
            except AlreadyExists:
                # An earlier holder of the grant renamed its complete output, then died
                # before reporting: that output stands (renames are atomic).
                self._dfs.delete(self.temp)
                log.info("%s was committed by an earlier attempt; kept it", self.final)
            self.committed = True
            log.info("committed %s", self.final)
        else:
            self._dfs.delete(self.temp)
            log.info("commit denied (another attempt committed); deleted %s", self.temp)

    def abort(self) -> None:
        try:
            self._file.abort()
        except Exception as e:  # the attempt is failing anyway; the jobserver cleans up
            log.warning("cannot abort %s: %s", self.temp, e)


# ---- the stage logic ----

def output_partitioner(job: MapReduceJob, out: jc.OutputSpec) -> Partitioner:
    """The partitioner of a stage's file channel: hash, range (total order), a builder
    function ("fn:N"), or a module-level "module:function"."""
    if out.partitioner == jc.RANGE:
        return operations.RangePartitioner(out.split_points)
    if out.partitioner.startswith("fn:"):
        return job.function(int(out.partitioner[3:]))
    return load_partitioner(out.partitioner)


def _method(job: MapReduceJob, op: jc.Operation) -> Callable:
    method = getattr(job, op.method, None)
    if not callable(method):
        raise InvalidArgument(f"{type(job).__name__} has no method {op.method}() for its "
                              f"{op.op} operation")
    if inspect.isgeneratorfunction(method) or getattr(method, "whole_stream", False):
        return method
    name = f"{type(job).__name__}.{op.method}"

    def checked(key, value):  # a plain function may return a list; None is a mistake
        result = method(key, value)
        if result is None:
            raise TypeError(f"{name}() returned None; it must yield (key, value) pairs")
        return result

    return checked


def _chain_ops(job: MapReduceJob, stage: jc.StageConf, records: Iterable,
               grouped: bool, lines: bool = False) -> tuple[Iterable, Callable | None]:
    """Apply the stage's map/reduce operations to `records` ((key, value) pairs, or
    (key, values) groups when `grouped`, or text lines when `lines`: see _takes_lines);
    returns the output pairs and the combiner, which runs in the map output buffer."""
    if operations.uses_builder(stage):
        return (operations.chain_operations(job, stage, records, grouped),
                operations.combiner(job, stage))
    combiner = None
    for i, op in enumerate(stage.operations):
        method = _method(job, op)
        if getattr(method, "whole_lines", False) != (lines and i == 0):
            raise InvalidArgument(
                f"stage {stage.id}: {type(job).__name__}.{op.method}() is a whole_lines "
                "method: it can only be the map of a stage that reads text input")
        if op.op == "combine":
            combiner = method
        elif (op.op == "reduce") != grouped:
            raise InvalidArgument(
                f"stage {stage.id}: a {op.op} operation cannot take " +
                ("grouped input" if grouped else "ungrouped input (reduce needs a sorted "
                                                 "file channel)"))
        elif getattr(method, "whole_stream", False):
            records = method(records)
            grouped = False
        else:  # map over pairs, or reduce over groups: both call method(key, x) per item
            records = chain.from_iterable(starmap(method, records))
            grouped = False
    if grouped:
        raise InvalidArgument(f"stage {stage.id}: grouped input needs a reduce operation")
    return records, combiner


def _takes_lines(job: MapReduceJob, stage: jc.StageConf) -> bool:
    """Whether the stage's map is a whole_lines method: it then gets the text input's lines,
    not (offset, line) records (a stage that reads records files has no lines)."""
    if operations.uses_builder(stage) or stage.reader != "lines" or not stage.operations:
        return False
    return getattr(_method(job, stage.operations[0]), "whole_lines", False)


def run_input_stage(job: MapReduceJob, stage: jc.StageConf, splits: list[Segment],
                    open_file: Callable[[str], BinaryIO],
                    make_output: Callable[..., Output], progress: Progress) -> None:
    """Read every split's (offset, line) records, run the operations, write the output.
    A sort_lines stage reads lists of lines instead and writes them to
    make_output(None, lines=True)."""
    timer = StageTimer()
    raw = operations.raw_lines(stage)
    lines = _takes_lines(job, stage)
    total = sum(s.length for s in splits) or 1
    done_bytes = 0
    readers: list[SplitReader | RecordsSplitReader] = []
    make_reader = RecordsSplitReader if stage.reader == "records" else SplitReader

    def tick() -> None:
        if not readers or not progress.due():
            return
        current = readers[-1]
        progress.set("input_records", sum(r.records for r in readers))
        progress.set("input_bytes", sum(r.bytes_read for r in readers))
        progress.update((done_bytes + current.progress * (current.end - current.start)) / total)

    def split_done(split: Segment, f: BinaryIO) -> Iterator:
        """Closes the split's file when its records are read (yields nothing)."""
        nonlocal done_bytes
        f.close()
        done_bytes += split.length
        tick()
        return
        yield

    def split_records() -> Iterator[Iterator[tuple[int, str]]]:
        # No Python code per record: each split's reader (C iterators) is chained with the
        # code that runs after it. The timer reads ahead a batch at a time, so each split
        # is batched apart: the input path the user's code sees (context.input_path)
        # changes just between two splits.
        for split in splits:
            f = open_file(split.path)
            reader = make_reader(f, split.offset, split.length)
            readers.append(reader)
            context.set_input_path(split.path)
            if raw:
                yield timer.reading_blocks(chain(reader.lines(), split_done(split, f)), tick)
            elif lines:
                yield chain.from_iterable(
                    timer.reading_blocks(chain(reader.texts(), split_done(split, f)), tick))
            else:
                yield timer.reading(chain(reader, split_done(split, f)), tick)
        progress.input_ended()   # asked for the next split: every one is read

    records = chain.from_iterable(split_records())
    if raw:
        _write(make_output(None, lines=True), timer.producing(records, batch=1), progress)
    else:
        context.bind(progress)  # user counters count into this task
        pairs, combiner = _chain_ops(job, stage, records, grouped=False, lines=lines)
        _write(make_output(combiner), timer.producing(pairs), progress)
    timer.report(progress)
    progress.set("input_records", sum(r.records for r in readers))
    progress.set("input_bytes", sum(r.bytes_read for r in readers))
    progress.update(1.0, force=True)


def run_consumer_stage(job: MapReduceJob, stage: jc.StageConf,
                       segments_in: Iterable[tuple[bytes, int]], count: int, spill_dir: Path,
                       memory_budget: int, make_output: Callable[..., Output],
                       progress: Progress) -> None:
    """Collect the `count` sorted segments of this task's partition as they are fetched
    ((data, records in it) pairs; records 0 if unknown), merge them, group by key, run the
    operations, write the output (a merge_lines stage: merge lines, write them to
    make_output(None, lines=True)). Progress: the shuffle is the first half, the merged
    records passed to the operations the second."""
    timer = StageTimer()
    raw = operations.raw_lines(stage)
    merger = (LineShuffleMerger if raw else ShuffleMerger)(spill_dir, memory_budget)
    total = 0
    try:
        shuffle_start = time.perf_counter()
        for i, (data, records) in enumerate(segments_in, 1):
            merger.add_segment(data)
            total += records
            for name, value in merger.counters.items():
                progress.set(name, value)
            progress.update(0.5 * i / max(1, count))
        timer.read_outside(time.perf_counter() - shuffle_start)
        progress.input_ended()
        progress.update(0.5)

        def tick() -> None:
            if not progress.due():
                return
            progress.set("input_records", timer.records)
            progress.update(0.5 + 0.5 * min(1.0, timer.records / total) if total else 0.5)

        if raw:
            blocks = timer.reading_blocks(merger.blocks(), tick)
            _write(make_output(None, lines=True), timer.producing(blocks, batch=1), progress)
        else:
            merged = timer.reading(merger.pairs(), tick)
            grouped = not operations.uses_builder(stage) or operations.wants_groups(stage)
            context.bind(progress)  # user counters count into this task
            pairs, combiner = _chain_ops(job, stage,
                                         group_by_key(merged) if grouped else merged,
                                         grouped=grouped)
            _write(make_output(combiner), timer.producing(pairs), progress)
        timer.report(progress)
        progress.set("input_records", timer.records)
        for name, value in merger.counters.items():
            progress.set(name, value)
    finally:
        merger.close()
    progress.update(1.0, force=True)


def _write(output: Output, parts: Iterable[Iterable], progress: Progress) -> None:
    """Stream the pairs of `parts` (StageTimer.producing) into `output`, a call per part: the
    map output buffer and the text writer watch their memory inside their loops, and parts
    are long (small batches here cost a map task 16-29%)."""
    try:
        for part in parts:
            output.write_all(part)
        output.finish(progress)
    except BaseException:
        output.abort()
        raise


# ---- the TaskHost's wiring ----

def read_jobconf(job_cache: Path) -> jc.JobConf:
    return jc.JobConf.from_dict(json.loads((Path(job_cache) / JOB_CONF_FILE).read_text()))
