"""The JobBuilder: each operation compiled and run through the runner's stage functions on
local files (several tasks per stage, real map output files and shuffle segments), checked
against the same computation in plain Python; then a few jobs on a live cluster."""
from __future__ import annotations

import collections
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from minijet import builder as bld
from minijet import jobconf as jc
from minijet.errors import InvalidArgument
from minijet.formats import segments
from minijet.formats.recordfile import SYNC, RecordsSplitReader, RecordsWriter
from minijet.formats.textoutput import TextOutputWriter
from minijet.job import Param
from minijet.splits import Segment
from minijet.taskhost import runner
from minijet.taskhost.operations import Descending, RangePartitioner, split_points


# ---- a small local driver over the runner's stage functions ----

class LocalOutput:
    """DFS output of one task, as a local part file."""

    def __init__(self, path: Path, writer: str):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "wb")
        self._writer = RecordsWriter(self._file) if writer == "records" else \
            TextOutputWriter(self._file)

    def write_all(self, pairs):
        self._writer.write_all(pairs)

    def finish(self, progress):
        self._writer.flush()
        self._file.close()

    def abort(self):
        self._file.close()


def local_files(path: str) -> list[tuple[str, int]]:
    p = Path(path)
    files = sorted(f for f in p.iterdir() if not f.name.startswith(("_", "."))) \
        if p.is_dir() else [p]
    return [(str(f), f.stat().st_size) for f in files]


def run_local(job, conf: jc.JobConf, work: Path, split_size: int = 700) -> dict:
    """Run every stage's tasks in order; returns the counters summed over all tasks."""
    if bld.needs_sampling(conf):
        bld.sample_split_points(conf, job, local_files, lambda p: open(p, "rb"))
    outputs: dict[str, list[Path]] = {}
    counters: collections.Counter = collections.Counter()

    def progress():
        return runner.Progress(lambda f, c: None)

    for stage in conf.topological_order():
        out = stage.output
        produced = outputs[stage.id] = []

        def make_output(index):
            def make(combiner):
                if out.channel == jc.FILE:
                    d = work / stage.id / str(index)
                    produced.append(d / "file.out")
                    return runner.MapOutputSink(d, out.partitions,
                                                runner.output_partitioner(job, out), 1 << 20,
                                                combiner)
                return LocalOutput(Path(out.path) / f"part-{index:05d}", out.writer)
            return make

        if stage.input:
            splits = [Segment(path, off, min(split_size, size - off))
                      for p in stage.input for path, size in local_files(p)
                      for off in range(0, max(size, 1), split_size)]
            for i, split in enumerate(splits):
                pr = progress()
                runner.run_input_stage(job, stage, [split], lambda p: open(p, "rb"),
                                       make_output(i), pr)
                counters.update(dict(((g, n), v) for g, n, v in pr.counter_list()))
        else:
            for part in range(conf.task_count(stage.id)):
                segs = []
                for parent in stage.inputs:
                    for f in outputs[parent]:
                        data = segments.read_map_output_segment(f, part)
                        segs.append((data, 0))
                pr = progress()
                runner.run_consumer_stage(job, stage, segs, len(segs),
                                          work / stage.id / f"shuffle{part}", 1 << 20,
                                          make_output(part), pr)
                counters.update(dict(((g, n), v) for g, n, v in pr.counter_list()))
    return counters


def compile_and_run(cls, params: dict, tmp_path: Path, **kw):
    conf = cls.compile_job(params, job_file="job.py", resolve_path=os.path.abspath)
    job = cls(params)
    counters = run_local(job, conf, tmp_path / "work", **kw)
    return conf, counters


def read_text(out: Path) -> list[str]:
    return [line for f in sorted(out.glob("part-*")) for line in f.read_text().splitlines()]


def read_records(out: Path) -> list:
    result = []
    for f in sorted(out.glob("part-*")):
        with open(f, "rb") as fh:
            result += list(RecordsSplitReader(fh, 0, f.stat().st_size))
    return result


def text_input(tmp_path: Path, lines: list[str], name: str = "in.txt") -> Path:
    p = tmp_path / name
    p.write_text("".join(line + "\n" for line in lines))
    return p


WORDS = [" ".join(random.Random(i).choice(["a", "b", "cc", "d", "eee", "f", "g"])
                  for _ in range(i % 9)) for i in range(300)]


# ---- jobs ----

class WordCount(bld.JobBuilderJob):
    params = [Param("input", nargs="+"), Param("output")]

    def build_job(self, builder):
        lines = builder.read(self.input)
        words = lines.flat_map(lambda off, line: ((w, 1) for w in line.split()))
        words.filter(lambda w, n: w != "g").aggregate(lambda a, b: a + b).write(self.output)


class Grouped(bld.JobBuilderJob):
    """map, group_by_key with a combiner, user counters, records output."""
    params = [Param("input"), Param("output")]

    def build_job(self, builder):
        from minijet import context

        def length(off, line):
            context.counter("user", "lines").increment()
            return len(line.split()), line

        def longest(key, values):
            yield key, max(values)

        builder.read(self.input).map(length).group_by_key(
            longest, combiner=longest, tasks=3).write(self.output, writer="records")


class SortJob(bld.JobBuilderJob):
    params = [Param("input"), Param("output"), Param("--reverse", bool, default=False),
              Param("--tasks", int, default=3), Param("--by-value", bool, default=False)]

    def build_job(self, builder):
        recs = builder.read(self.input).map(lambda off, line: (line, off))
        key = (lambda k, v: (v % 7, k)) if self.by_value else None
        recs.sort(key=key, reverse=self.reverse, tasks=self.tasks).write(self.output)


class JoinJob(bld.JobBuilderJob):
    params = [Param("left"), Param("right"), Param("output")]

    def build_job(self, builder):
        left = builder.read(self.left).map(lambda o, line: tuple(line.split(",", 1)))
        right = builder.read(self.right).map(lambda o, line: tuple(line.split(",", 1)))
        left.join(right, tasks=2).write(self.output, writer="records")


class SelfJoin(bld.JobBuilderJob):
    params = [Param("input"), Param("output")]

    def build_job(self, builder):
        pairs = builder.read(self.input).map(lambda o, line: tuple(line.split(",", 1)))
        pairs.join(pairs).write(self.output, writer="records")


class DistinctUnion(bld.JobBuilderJob):
    params = [Param("a"), Param("b"), Param("output")]

    def build_job(self, builder):
        a = builder.read(self.a).flat_map(lambda o, line: ((w, len(w)) for w in line.split()))
        b = builder.read(self.b).flat_map(lambda o, line: ((w, len(w)) for w in line.split()))
        builder.union(a, b, tasks=2).distinct(tasks=2).write(self.output, writer="records")


class UnionOnly(bld.JobBuilderJob):
    """A union written as it is: a stage without operations of its own."""
    params = [Param("a"), Param("b"), Param("output")]

    def build_job(self, builder):
        a = builder.read(self.a).map(lambda o, line: (line, "a"))
        b = builder.read(self.b).map(lambda o, line: (line, "b"))
        a.union(b, tasks=3).write(self.output)


class NoOps(bld.JobBuilderJob):
    """Stages without operations: a read grouped as it is, and a copy."""
    params = [Param("input"), Param("output"), Param("copy")]

    def build_job(self, builder):
        builder.read(self.input).group_by_key(
            lambda off, lines: [(off, len(list(lines)))], tasks=2).write(self.output)
        builder.read(self.input).write(self.copy)


class FileChannel(bld.JobBuilderJob):
    """Two shuffles and a custom (lambda) partitioner; a records reader in a second job."""
    params = [Param("input"), Param("output")]

    def build_job(self, builder):
        words = builder.read(self.input).flat_map(lambda o, line: ((w, 1) for w in line.split()))
        counted = words.map(lambda w, n: (w, n), channel="file", tasks=2,
                            partitioner=lambda k, n: len(k) % n)
        counted.aggregate(lambda a, b: a + b, combine=False, tasks=1).write(self.output)


class ReadRecords(bld.JobBuilderJob):
    params = [Param("input"), Param("output")]

    def build_job(self, builder):
        builder.read(self.input, reader="records").map(
            lambda k, v: (k, v[0] + "|" + v[1])).write(self.output)


# ---- operations against plain Python ----

def test_wordcount_flat_map_filter_aggregate(tmp_path):
    src = text_input(tmp_path, WORDS)
    conf, counters = compile_and_run(WordCount, {"input": [str(src)],
                                                 "output": str(tmp_path / "out")}, tmp_path)
    # read + flat_map + filter pipelined into one stage, with the combiner, then one shuffle
    assert [s.id for s in conf.stages] == ["read-1", "aggregate-2"]
    assert [o.op for o in conf.stages[0].operations] == ["flat_map", "filter", "combine"]
    got = dict(line.split("\t") for line in read_text(tmp_path / "out"))
    want = collections.Counter(w for line in WORDS for w in line.split() if w != "g")
    assert {k: int(v) for k, v in got.items()} == want
    assert counters[("task", "combine_input_records")] > counters[("task",
                                                                   "combine_output_records")]


def test_map_group_by_key_counters_and_records_output(tmp_path):
    src = text_input(tmp_path, WORDS)
    conf, counters = compile_and_run(Grouped, {"input": str(src), "output": str(tmp_path / "o")},
                                     tmp_path)
    got = read_records(tmp_path / "o")
    want = {}
    for line in WORDS:
        n = len(line.split())
        want[n] = max(want.get(n, line), line)
    assert sorted(got) == sorted(want.items())
    assert all(type(k) is int for k, _ in got)          # records keep their types
    assert len(list((tmp_path / "o").glob("part-*"))) == 3
    assert counters[("user", "lines")] == len(WORDS)


@pytest.mark.parametrize("reverse,tasks,by_value", [(False, 3, False), (True, 3, False),
                                                   (False, 1, False), (True, 4, True)])
def test_sort_is_total_order_across_part_files(tmp_path, reverse, tasks, by_value):
    rng = random.Random(5)
    lines = [f"{rng.randrange(10**6):07d}-{i}" for i in range(400)]
    src = text_input(tmp_path, lines)
    out = tmp_path / "sorted"
    conf, _ = compile_and_run(SortJob, {"input": str(src), "output": str(out),
                                        "reverse": reverse, "tasks": tasks,
                                        "by_value": by_value}, tmp_path)
    sort_stage = conf.stage("read-1")
    assert sort_stage.output.partitioner == jc.RANGE
    assert len(sort_stage.output.split_points) == tasks - 1
    parts = [f.read_text().splitlines() for f in sorted(out.glob("part-*"))]
    assert len(parts) == tasks
    assert all(parts), "the sampled split points spread the records over every part"
    got = [line.split("\t") for p in parts for line in p]
    offsets = {line: off for line, off in zip(lines, _offsets(lines))}
    assert sorted(k for k, _ in got) == sorted(lines)                # a permutation
    assert all(int(v) == offsets[k] for k, v in got)
    key = (lambda kv: (int(kv[1]) % 7, kv[0])) if by_value else (lambda kv: kv[0])
    keys = [key(kv) for kv in got]
    assert keys == sorted(keys, reverse=reverse)


def _offsets(lines):
    off = 0
    for line in lines:
        yield off
        off += len(line) + 1


def test_join_inner_on_key(tmp_path):
    left = [f"k{i % 13},L{i}" for i in range(60)]
    right = [f"k{i % 17},R{i}" for i in range(40)] + ["only-right,x"]
    lp, rp = text_input(tmp_path, left, "l.txt"), text_input(tmp_path, right, "r.txt")
    conf, _ = compile_and_run(JoinJob, {"left": str(lp), "right": str(rp),
                                        "output": str(tmp_path / "j")}, tmp_path)
    assert conf.stage("join-3").inputs == ["read-1", "read-2"]
    want = sorted((lk, (lv, rv)) for lk, lv in (x.split(",") for x in left)
                  for rk, rv in (y.split(",") for y in right) if lk == rk)
    assert sorted(read_records(tmp_path / "j")) == want


def test_self_join(tmp_path):
    rows = [f"k{i % 7},v{i}" for i in range(30)]
    src = text_input(tmp_path, rows)
    compile_and_run(SelfJoin, {"input": str(src), "output": str(tmp_path / "j")}, tmp_path)
    pairs = [r.split(",") for r in rows]
    want = sorted((k, (a, b)) for k, a in pairs for k2, b in pairs if k == k2)
    assert sorted(read_records(tmp_path / "j")) == want


def test_union_and_distinct(tmp_path):
    a = text_input(tmp_path, WORDS[:150], "a.txt")
    b = text_input(tmp_path, WORDS[100:], "b.txt")
    compile_and_run(DistinctUnion, {"a": str(a), "b": str(b), "output": str(tmp_path / "d")},
                    tmp_path)
    want = sorted({(w, len(w)) for line in WORDS for w in line.split()})
    assert sorted(read_records(tmp_path / "d")) == want


def test_union_written_as_it_is(tmp_path):
    a = text_input(tmp_path, WORDS[:50], "a.txt")
    b = text_input(tmp_path, WORDS[30:90], "b.txt")
    conf, _ = compile_and_run(UnionOnly, {"a": str(a), "b": str(b),
                                          "output": str(tmp_path / "u")}, tmp_path)
    assert conf.stage("union-3").operations == []
    want = sorted([f"{w}\ta" for w in WORDS[:50]] + [f"{w}\tb" for w in WORDS[30:90]])
    assert sorted(read_text(tmp_path / "u")) == want


def test_stages_without_operations_pass_records_through(tmp_path):
    src = text_input(tmp_path, WORDS[:40])
    conf, _ = compile_and_run(NoOps, {"input": str(src), "output": str(tmp_path / "g"),
                                      "copy": str(tmp_path / "c")}, tmp_path)
    assert conf.stage("read-1").operations == [] and conf.stage("read-3").operations == []
    offsets = list(_offsets(WORDS[:40]))
    assert sorted(read_text(tmp_path / "g")) == sorted(f"{o}\t1" for o in offsets)
    assert sorted(read_text(tmp_path / "c")) == sorted(f"{o}\t{w}"
                                                       for o, w in zip(offsets, WORDS[:40]))


def test_file_channel_with_a_lambda_partitioner(tmp_path):
    src = text_input(tmp_path, WORDS)
    conf, _ = compile_and_run(FileChannel, {"input": str(src), "output": str(tmp_path / "o")},
                              tmp_path)
    assert [s.id for s in conf.stages] == ["read-1", "map-2", "aggregate-3"]
    assert conf.stage("read-1").output.partitioner.startswith("fn:")
    got = dict(line.split("\t") for line in read_text(tmp_path / "o"))
    want = collections.Counter(w for line in WORDS for w in line.split())
    assert {k: int(v) for k, v in got.items()} == want


def test_records_written_by_one_job_are_read_by_the_next(tmp_path):
    left = [f"k{i % 5},L{i}" for i in range(20)]
    right = [f"k{i % 3},R{i}" for i in range(9)]
    lp, rp = text_input(tmp_path, left, "l.txt"), text_input(tmp_path, right, "r.txt")
    compile_and_run(JoinJob, {"left": str(lp), "right": str(rp),
                              "output": str(tmp_path / "j")}, tmp_path)
    compile_and_run(ReadRecords, {"input": str(tmp_path / "j"), "output": str(tmp_path / "t")},
                    tmp_path, split_size=64)   # splits fall inside frames
    want = sorted(f"{k}\t{lv}|{rv}" for k, (lv, rv) in read_records(tmp_path / "j"))
    assert sorted(read_text(tmp_path / "t")) == want


# ---- the pieces ----

def test_records_file_splits_at_any_byte_read_every_record_once(tmp_path):
    path = tmp_path / "r.rec"
    rng = random.Random(1)
    records = [(i, ("v" * rng.randrange(300), SYNC if i % 50 == 0 else b"")) for i in range(3000)]
    with open(path, "wb") as f:
        w = RecordsWriter(f, frame_records=37)
        w.write_all(records)
        w.flush()
    size = path.stat().st_size
    for split in (97, 333, 4096, 100_000, size):
        got = []
        with open(path, "rb") as f:
            for off in range(0, size, split):
                got += list(RecordsSplitReader(f, off, min(split, size - off), chunk_size=1000))
        assert got == records, split


def test_range_partitioner_and_split_points():
    points = split_points(list(range(100)), 4)
    assert points == [25, 50, 75]
    rp = RangePartitioner([jc.encode_key(p) for p in points])
    assert [rp(k, 4) for k in (0, 25, 49, 50, 99)] == [0, 1, 1, 2, 3]
    assert [rp(Descending(k), 4) for k in (0, 25, 50, 99)] == [3, 2, 1, 0]
    assert split_points([1, 1, 1, 1], 3) == [1]
    for key in ("a", 3, 2.5, None, (1, "x", (b"z",)), b"\x00\xff", frozenset({1})):
        assert jc.decode_key(json.loads(json.dumps(jc.encode_key(key)))) == key


def test_compiled_configuration_is_json_and_reads_back(tmp_path):
    conf = JoinJob.compile_job({"left": "/l", "right": "/r", "output": "/o"}, job_file="j.py")
    text = json.dumps(conf.to_dict(), indent=1)
    assert jc.JobConf.from_dict(json.loads(text)).to_dict() == conf.to_dict()
    ops = json.loads(text)["stages"][0]["operations"]
    assert ops[0]["op"] == "map" and ops[0]["fn"] == 0 and ops[1] == {"op": "tag",
                                                                      "args": {"side": 0}}


def test_builder_mistakes_are_clear_errors():
    class Twice(bld.JobBuilderJob):
        def build_job(self, b):
            d = b.read("/in")
            d.map(lambda k, v: (k, v)).write("/a")
            d.filter(lambda k, v: True).write("/b")

    class Dangling(bld.JobBuilderJob):
        def build_job(self, b):
            b.read("/in").map(lambda k, v: (k, v))

    class LateSort(bld.JobBuilderJob):
        def build_job(self, b):
            b.read("/in").aggregate(max).sort(tasks=3).write("/o")

    class NoBuild(bld.JobBuilderJob):
        pass

    class Buggy(bld.JobBuilderJob):
        def build_job(self, b):
            b.read(self.no_such_param)

    for cls, words in ((Twice, "already feeds"), (Dangling, "never written"),
                       (LateSort, "tasks=1"), (NoBuild, "no build_job"),
                       (Buggy, r"Buggy.build_job\(\) failed, line \d+: AttributeError")):
        with pytest.raises(InvalidArgument, match=words):
            cls.compile_job({}, job_file="j.py")
    # a late sort with one task is fine
    class LateSortOne(bld.JobBuilderJob):
        def build_job(self, b):
            b.read("/in").aggregate(max).sort().write("/o")
    conf = LateSortOne.compile_job({}, job_file="j.py")
    assert conf.stage("sort-3").tasks == 1


# ---- on the job cluster (conftest.py: its 64KiB blocks make these inputs span several) ----

BUILDER_JOBS = str(Path(__file__).parent / "jobs" / "builderjobs.py")


def jetshell(lc, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, MINIJET_CONF=str(lc.config_path))
    return subprocess.run([sys.executable, "-c", "from minijet.client.jetshell import main; "
                           "main()", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def put_lines(dfs, path: str, lines: list[str]) -> None:
    with dfs.create(path) as f:
        f.write("".join(line + "\n" for line in lines).encode())


def dfs_parts(dfs, out: str) -> list[list[str]]:
    names = sorted(s.path for s in dfs.list(out) if s.path.rsplit("/", 1)[-1].startswith("part-"))
    parts = []
    for name in names:
        path = name if name.startswith("/") else f"{out}/{name}"
        with dfs.open(path) as f:
            parts.append(f.read().decode().splitlines())
    return parts


def test_live_multi_stage_pipeline_and_file_channels_with_user_counters(job_cluster):
    dfs = job_cluster.client()
    lines = [" ".join(random.Random(i).choice(["ab", "c", "def", "ghij", "kl", "mnopq"])
                      for _ in range(i % 11)) for i in range(6000)]
    put_lines(dfs, "/b-wl/in.txt", lines)
    assert len(dfs.block_locations("/b-wl/in.txt")) >= 2
    dry = jetshell(job_cluster, "run", "--dry-run", BUILDER_JOBS, "WordLengths", "/b-wl/in.txt",
                   "/b-wl/out")
    assert dry.returncode == 0, dry.stderr
    stages = json.loads(dry.stdout)["stages"]
    assert [s["id"] for s in stages] == ["read-1", "map-2", "aggregate-3"]
    assert [o["op"] for o in stages[0]["operations"]] == ["flat_map", "filter"]
    assert not dfs.exists("/b-wl/out")   # a dry run submits nothing

    result = jetshell(job_cluster, "run", BUILDER_JOBS, "WordLengths", "/b-wl/in.txt", "/b-wl/out")
    assert result.returncode == 0, result.stdout + result.stderr
    want = collections.Counter(len(w) for line in lines for w in line.split() if len(w) > 1)
    got = {int(k): int(v) for p in dfs_parts(dfs, "/b-wl/out") for k, v in
           (line.split("\t") for line in p)}
    assert got == want
    job_id = result.stdout.splitlines()[0].split()[-1]
    status = jetshell(job_cluster, "status", job_id)
    assert status.returncode == 0
    seen = sum(len(line.split()) for line in lines)
    assert any(line.split() == ["seen", "=", str(seen)] for line in status.stdout.splitlines()), \
        status.stdout
    dfs.close()


def test_live_join(job_cluster):
    dfs = job_cluster.client()
    left = [f"k{i % 37},L{i}" for i in range(400)]
    right = [f"k{i % 23},R{i}" for i in range(150)] + ["nomatch,R"]
    put_lines(dfs, "/b-join/left.txt", left)
    put_lines(dfs, "/b-join/right.txt", right)
    result = jetshell(job_cluster, "run", BUILDER_JOBS, "Join", "/b-join/left.txt",
                      "/b-join/right.txt", "/b-join/out")
    assert result.returncode == 0, result.stdout + result.stderr
    want = sorted(f"{lk}\t{lv}+{rv}" for lk, lv in (x.split(",") for x in left)
                  for rk, rv in (y.split(",") for y in right) if lk == rk)
    assert sorted(line for p in dfs_parts(dfs, "/b-join/out") for line in p) == want
    dfs.close()


def test_live_sort_is_globally_ordered_across_part_files(job_cluster):
    dfs = job_cluster.client()
    rng = random.Random(7)
    lines = [f"{rng.randrange(10**9):010d} {rng.random()}" for _ in range(6000)]
    put_lines(dfs, "/b-sort/in.txt", lines)
    assert len(dfs.block_locations("/b-sort/in.txt")) >= 3
    result = jetshell(job_cluster, "run", BUILDER_JOBS, "Sort", "/b-sort/in.txt", "/b-sort/out",
                      "--tasks", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    parts = dfs_parts(dfs, "/b-sort/out")
    assert len(parts) == 3 and all(parts)
    concatenated = [line for p in parts for line in p]
    assert concatenated == sorted(lines)      # globally ordered, and a permutation
    dfs.close()


def test_live_sort_lines_is_pythons_sorted_of_the_lines_byte_for_byte(job_cluster):
    """Bytes that are not UTF-8, "\r\n" ends, equal and empty lines, no newline at the
    end: part files concatenated are sorted() of the lines, each ended by a newline."""
    dfs = job_cluster.client()
    rng = random.Random(8)
    lines = [bytes(rng.choice(b"abc \t\r\x00\xff\xe9") for _ in range(rng.randrange(12)))
             for _ in range(30000)]
    lines += lines[:3000]
    with dfs.create("/b-lines/in.txt") as f:
        f.write(b"\n".join(lines))
    assert len(dfs.block_locations("/b-lines/in.txt")) >= 3
    result = jetshell(job_cluster, "run", BUILDER_JOBS, "SortLines", "/b-lines/in.txt",
                      "/b-lines/out", "--tasks", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    names = sorted(s.path for s in dfs.list("/b-lines/out") if "part-" in s.path)
    parts = []
    for name in names:
        with dfs.open(name if name.startswith("/") else f"/b-lines/out/{name}") as f:
            parts.append(f.read())
    assert len(parts) == 3 and all(parts)
    assert b"".join(parts) == b"".join(line + b"\n" for line in sorted(lines))
    assert re.search(rf"\n +output_records += {len(lines)}\n", result.stdout), result.stdout
    # the map outputs made on a sort task's own node are read from their files
    assert re.search(r"\n +shuffle_local_reads += [1-9]", result.stdout), result.stdout
    dfs.close()


@pytest.mark.parametrize("reverse", [False, True])
def test_map_output_cuts_range_partitions_like_asking_per_key(tmp_path, reverse):
    from minijet.taskhost.mapoutput import MapOutputBuffer

    rng = random.Random(3)
    keys = [rng.randrange(1000) for _ in range(5000)]
    rp = RangePartitioner([jc.encode_key(p) for p in split_points(keys[:300], 5)])
    wrap = Descending if reverse else (lambda k: k)
    outputs = []
    for name, partitioner in (("cut", rp), ("per-key", lambda k, n: rp(k, n))):
        buf = MapOutputBuffer(5, tmp_path / name, sort_buffer=1 << 16, partitioner=partitioner)
        buf.collect_all((wrap(k), i) for i, k in enumerate(keys))   # spills too
        entries = buf.finish(tmp_path / f"{name}.out")
        outputs.append([sorted(segments.read_segment(
            segments.read_map_output_segment(tmp_path / f"{name}.out", p)),
            key=lambda kv: kv[1]) for p in range(5)])
        assert sum(e.records for e in entries) == len(keys)
    assert outputs[0] == outputs[1]


def test_live_records_written_by_one_job_keep_their_types_in_the_next(job_cluster):
    dfs = job_cluster.client()
    lines = [f"{i} {'w' * (i % 100)}" for i in range(8000)]
    put_lines(dfs, "/b-rec/in.txt", lines)
    first = jetshell(job_cluster, "run", BUILDER_JOBS, "ToRecords", "/b-rec/in.txt", "/b-rec/mid")
    assert first.returncode == 0, first.stdout + first.stderr
    # frames start anywhere in the file's blocks: splits begin and end inside frames
    assert len(dfs.block_locations("/b-rec/mid/part-00000")) >= 4
    second = jetshell(job_cluster, "run", BUILDER_JOBS, "FromRecords", "/b-rec/mid", "/b-rec/out")
    assert second.returncode == 0, second.stdout + second.stderr
    got = sorted(line for p in dfs_parts(dfs, "/b-rec/out") for line in p)
    assert got == sorted(f"{i}\t{'w' * (i % 100)}:{i / 2}" for i in range(8000))
    dfs.close()
