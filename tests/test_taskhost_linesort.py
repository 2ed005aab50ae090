"""sort_lines: its pure pieces (cutting sorted lines at split points, merging runs, the map
side's spills, the reduce side's disk merges, reading a split as lines), then whole jobs in
the local runner on awkward inputs, compared byte for byte with Python's sorted()."""
from __future__ import annotations

import io
import marshal
import os
import random
import struct
import zlib
from pathlib import Path

import pytest

from minijet import JobBuilderJob, Param
from minijet import jobconf as jc
from minijet.errors import ChecksumError, InvalidArgument
from minijet.formats import segments
from minijet.formats.textinput import SplitReader
from minijet.localrunner import run_local
from minijet.taskhost.linesort import LineShuffleMerger, LineSortBuffer
from minijet.taskhost.operations import RangePartitioner, split_points
from minijet.taskhost.shuffle import MERGE_FACTOR, merge_runs


def random_lines(n: int, seed: int) -> list[bytes]:
    """Lines of any bytes but newline: empty ones, "\\r", non-UTF-8, many repeated."""
    rng = random.Random(seed)
    lines = [bytes(rng.choice(b"ab\r\t \x00\xff\xc3") for _ in range(rng.randrange(6)))
             for _ in range(n)]
    return lines + lines[: n // 5]


def sorted_text(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in sorted(lines))


def partitioner(lines: list[bytes], n: int) -> RangePartitioner:
    return RangePartitioner([jc.encode_key(p) for p in split_points(lines[:200], n)])


def segment_lines(path: Path, partition: int) -> list[bytes]:
    data = segments.read_map_output_segment(path, partition)
    return [line for frame in segments.iter_frames(data) for line in frame]


@pytest.mark.parametrize("lines", [[], [b""], [b"", b""], [b"a", b"", b"\r"],
                                   random_lines(3000, 6)])
def test_frames_of_lines_read_back_exactly_and_keep_their_format(lines, monkeypatch):
    monkeypatch.setattr(segments, "_mac_key", segments._mac_key)   # restored after
    segments.use_job_secret("a job's secret")
    f = io.BytesIO()
    writer = segments.SegmentWriter(f)
    writer.write_lines(lines)
    data = f.getvalue()
    assert writer.entry().records == len(lines) and writer.entry().length == len(data)
    assert writer.entry().crc == zlib.crc32(data)
    assert (data == b"") == (lines == [])   # no frame of zero lines
    frames = list(segments.iter_frames(data))
    assert [line for frame in frames for line in frame] == lines
    assert list(segments.iter_file_frames(io.BytesIO(data), 0, len(data))) == frames
    # the format: each frame is its header (marshal flag, length), MAC, and the marshal
    # (version 2) of its list of lines
    bodies, pos = [], 0
    while pos < len(data):
        (header,) = struct.unpack_from("<I", data, pos)
        size = header & ~(1 << 31)
        assert header >> 31 == 1
        bodies.append(data[pos + 20:pos + 20 + size])
        pos += 20 + size
    assert bodies == [marshal.dumps(frame, 2) for frame in frames]
    if len(lines) > 1000:
        assert len(frames) > 1
    segments.use_job_secret("another job's secret")
    if lines:
        with pytest.raises(ChecksumError, match="fails its MAC"):
            list(segments.iter_frames(data))


@pytest.mark.parametrize("n", [1, 2, 5])
def test_cuts_put_each_line_where_the_range_partitioner_would(n):
    lines = sorted(random_lines(3000, 1))
    rp = partitioner(lines, n)
    cuts = rp.cuts(lines, n)
    assert len(cuts) == n + 1 and cuts[0] == 0 and cuts[-1] == len(lines)
    assert [rp(line, n) for line in lines] == [p for p in range(n)
                                               for _ in range(cuts[p + 1] - cuts[p])]
    # fewer split points than partitions - 1 (equal samples): the last partitions are empty
    few = RangePartitioner([jc.encode_key(b"b")])
    assert few.cuts([b"a", b"b", b"c"], 4) == [0, 1, 3, 3, 3]


def test_merge_runs_of_frames_is_sorted_and_keeps_every_line():
    rng = random.Random(2)
    everything = []
    runs = []
    for _ in range(7):
        run = sorted(random_lines(rng.randrange(0, 400), rng.randrange(100)))
        everything += run
        cut = sorted(rng.sample(range(len(run) + 1), min(4, len(run) + 1)))
        runs.append([run[a:b] for a, b in zip([0] + cut, cut + [len(run)])])  # some empty
    merged = [line for block in merge_runs(runs) for line in block]
    assert merged == sorted(everything)
    assert [line for b in merge_runs([[[1, 3], [5]]]) for line in b] == [1, 3, 5]


@pytest.mark.parametrize("sort_buffer", [1 << 30, 2000, 300])
def test_map_side_spills_when_the_buffer_fills_and_merges_them(tmp_path, sort_buffer):
    lines = random_lines(4000, 3)
    rp = partitioner(lines, 3)
    buf = LineSortBuffer(3, tmp_path / "spills", sort_buffer=sort_buffer, partitioner=rp)
    buf.collect_all(lines[i:i + 97] for i in range(0, len(lines), 97))
    entries = buf.finish(tmp_path / "file.out")
    parts = [segment_lines(tmp_path / "file.out", p) for p in range(3)]
    assert [line for p in parts for line in p] == sorted(lines)
    assert all(rp(line, 3) == p for p, part in enumerate(parts) for line in part)
    assert [e.records for e in entries] == list(map(len, parts))
    spills = buf.counters["spills"]
    assert spills == 0 if sort_buffer > 1 << 20 else spills > 1
    if sort_buffer == 300:
        assert spills > MERGE_FACTOR   # merged in passes
    assert buf.counters["map_output_records"] == len(lines)
    assert not list((tmp_path / "spills").glob("*")) if spills else True
    assert sorted(os.listdir(tmp_path)) == ["file.out", "file.out.index"] + \
        (["spills"] if spills else [])


def test_reduce_side_merges_on_disk_past_its_budget(tmp_path):
    runs = [sorted(random_lines(500, seed)) for seed in range(40)] + \
        [sorted(random_lines(5000, 40))]   # past a quarter of the budget: to disk at once
    merger = LineShuffleMerger(tmp_path, memory_budget=20000)
    for run in runs:
        f = io.BytesIO()
        writer = segments.SegmentWriter(f)
        writer.write_lines(run)
        assert writer.entry().records == len(run)
        merger.add_segment(f.getvalue(), writer.entry())
    assert merger.counters["reduce_disk_merges"] > 0
    merged = [line for block in merger.blocks() for line in block]
    merger.close()
    assert merged == sorted(line for run in runs for line in run)
    assert not list(tmp_path.glob("*"))


def test_a_split_read_as_lines_or_texts_gives_the_lines_the_records_give():
    data = b"\n".join(random_lines(2000, 4)) + "\r\nnaïve \xff été".encode() + b"\xff\n\nlast"
    for step in (1, 333, 4096, len(data)):
        lines, texts, records = [], [], []
        for start in range(0, len(data), step):
            length = min(step, len(data) - start)
            for way, into in (("lines", lines), ("texts", texts)):
                reader = SplitReader(io.BytesIO(data), start, length, chunk_size=512)
                blocks = list(getattr(reader, way)())
                assert reader.records == sum(map(len, blocks))
                into += [line for block in blocks for line in block]
            records += SplitReader(io.BytesIO(data), start, length, chunk_size=512)
        assert lines == data.split(b"\n")
        assert lines == [r.encode("utf-8", "surrogateescape") for _, r in records]
        assert texts == [r for _, r in records]


# ---- whole jobs in the local runner ----

class SortLines(JobBuilderJob):
    params = [Param("input"), Param("output"), Param("--tasks", int, default=3)]

    def build_job(self, builder):
        builder.read(self.input).sort_lines(tasks=self.tasks).write(self.output)


def run_sort(tmp_path: Path, data: bytes, tasks: int = 3, sort_buffer: int = 5000):
    src, out = tmp_path / "in.txt", tmp_path / "out"
    src.write_bytes(data)
    params = {"input": str(src), "output": str(out), "tasks": tasks}
    conf = SortLines.compile_job(params, job_file="job.py", resolve_path=os.path.abspath)
    result = run_local(conf, lambda: SortLines(params), min_tasks=tasks, split_size=4096,
                       sort_buffer=sort_buffer)
    parts = sorted(out.glob("part-*"))
    assert (out / "_SUCCESS").exists() and len(parts) == tasks
    return [p.read_bytes() for p in parts], result


@pytest.mark.parametrize("tasks", [1, 3])
def test_local_sort_lines_is_pythons_sorted_byte_for_byte(tmp_path, tasks):
    lines = random_lines(6000, 5)
    parts, result = run_sort(tmp_path, b"\n".join(lines), tasks)   # no newline at the end
    assert b"".join(parts) == sorted_text(lines)
    assert all(parts), "the sampled split points spread the lines over every part"
    per_stage = result.stage_counters
    map_stage, sort_stage = (per_stage[s.id] for s in result.conf.topological_order())
    assert map_stage[("task", "input_records")] == len(lines)
    assert map_stage[("task", "map_output_records")] == len(lines)
    assert map_stage[("task", "spills")] > 0          # 5000-byte sort buffer
    assert sort_stage[("task", "input_records")] == len(lines)
    assert sort_stage[("task", "output_records")] == len(lines)
    assert sort_stage[("task", "output_bytes")] == len(sorted_text(lines))
    for stage in (map_stage, sort_stage):
        assert {("task", f"{t}_time_us") for t in ("read", "process", "write")} <= set(stage)


@pytest.mark.parametrize("data", [b"", b"\n", b"same\nsame\nsame", b"b\r\na\r\n\xff\xfe\n"])
def test_local_sort_lines_of_tiny_inputs(tmp_path, data):
    parts, _ = run_sort(tmp_path, data)
    lines = data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n")
    assert b"".join(parts) == sorted_text(lines if data else [])


def test_sort_lines_mistakes_are_clear_errors():
    class AfterMap(JobBuilderJob):
        def build_job(self, b):
            b.read("/in").map(lambda k, v: (v, k)).sort_lines().write("/o")

    class MapAfter(JobBuilderJob):
        def build_job(self, b):
            b.read("/in").sort_lines().map(lambda k, v: (k, v)).write("/o")

    class AsRecords(JobBuilderJob):
        def build_job(self, b):
            b.read("/in").sort_lines().write("/o", writer="records")

    for cls, words in ((AfterMap, "sorts the lines of read"), (MapAfter, "can only be written"),
                       (AsRecords, "written as text")):
        with pytest.raises(InvalidArgument, match=words):
            cls.compile_job({}, job_file="j.py")
    conf = SortLines.compile_job({"input": "/in", "output": "/o", "tasks": 4},
                                 job_file="j.py")
    read, sort = conf.stages
    assert [o.op for o in read.operations] == ["sort_lines"]
    assert (read.output.partitioner, read.output.partitions) == (jc.RANGE, 4)
    assert [o.op for o in sort.operations] == ["merge_lines"] and sort.id == "sort-lines-2"
    # a conf that pairs merge_lines with another stage is refused as it is read back
    data = conf.to_dict()
    data["stages"][0]["operations"] = [{"op": "map", "fn": 0}]
    with pytest.raises(InvalidArgument, match="merge_lines reads only sort_lines"):
        jc.JobConf.from_dict(data)
