"""The TaskHost's stage logic without RPC: an input stage over splits of a local file into a
real map output file, then consumer stages over its segments."""
from collections import Counter
from pathlib import Path

import pytest

from minijet import jobconf as jc
from minijet import jobdir
from minijet.errors import InvalidArgument, NotFound
from minijet.formats import segments
from minijet.job import MapReduceJob, whole_lines
from minijet.splits import Segment
from minijet.taskhost import runner

from collected import Collected
from jobs.testjobs import WordCount

TEXT = "".join(f"the quick brown fox {i % 7} jumps over the lazy dog {i % 3}\n"
               for i in range(500))


class Boom(MapReduceJob):
    def mapper(self, key, value):
        if "fox 3" in value:
            raise ValueError("bad record")
        yield value, 1


def stages(reducers: int):
    conf = jc.compile_mapreduce("wc", "wc.py", "WordCount", {}, ["/in"], "/out", reducers,
                                has_combiner=True)
    return conf.stage("map"), conf.stage("reduce")


def splits_of(path: Path, size: int) -> list[Segment]:
    length = path.stat().st_size
    return [Segment(str(path), off, min(size, length - off)) for off in range(0, length, size)]


def run_maps(tmp_path: Path, reducers: int, reports: list) -> list[Path]:
    src = tmp_path / "input.txt"
    src.write_text(TEXT)
    map_stage, _ = stages(reducers)
    outputs = []
    for i, split in enumerate(splits_of(src, 3000)):  # split boundaries fall inside lines
        work = tmp_path / f"map{i}"
        progress = runner.Progress(lambda f, c: reports.append((f, dict(((g, n), v)
                                                                         for g, n, v in c))),
                                   interval=0)
        runner.run_input_stage(
            WordCount(), map_stage, [split], lambda p: open(p, "rb"),
            lambda combiner: runner.MapOutputSink(work, reducers, "hash", 1 << 20, combiner),
            progress)
        outputs.append(work / "file.out")
    return outputs


@pytest.mark.parametrize("reducers", [1, 3])
def test_map_then_reduce_equals_a_counter(tmp_path, reducers):
    reports = []
    outputs = run_maps(tmp_path, reducers, reports)
    assert reports[-1][0] == 1.0
    assert sum(r[1][("task", "input_bytes")] for r in reports if r[0] == 1.0) >= len(TEXT)
    _, reduce_stage = stages(reducers)
    total = Counter()
    for partition in range(reducers):
        out = Collected()
        segs = [(segments.read_map_output_segment(o, partition),
                 segments.read_index(segments.index_path(o))[partition].records)
                for o in outputs]
        runner.run_consumer_stage(WordCount(), reduce_stage, segs, len(segs),
                                  tmp_path / f"shuffle{partition}", 1 << 20,
                                  lambda combiner: out, runner.Progress(lambda f, c: None))
        assert out.finished
        keys = [k for k, _ in out.pairs]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
        assert not set(keys) & set(total)  # each key in exactly one partition
        total.update(dict(out.pairs))
    assert total == Counter(TEXT.split())


def test_user_exception_propagates_and_aborts_the_output(tmp_path):
    src = tmp_path / "input.txt"
    src.write_text(TEXT)
    out = Collected()
    stage = jc.compile_mapreduce("b", "b.py", "Boom", {}, ["/in"], "/out", 0,
                                 has_combiner=False).stage("map")
    with pytest.raises(ValueError, match="bad record"):
        runner.run_input_stage(Boom(), stage, splits_of(src, 10**6), lambda p: open(p, "rb"),
                               lambda combiner: out, runner.Progress(lambda f, c: None))
    assert out.aborted and not out.finished


def test_progress_reports_are_throttled():
    now = [0.0]
    seen = []
    p = runner.Progress(lambda f, c: seen.append(f), interval=0.33, clock=lambda: now[0])
    p.update(0.1)
    p.update(0.2)
    now[0] = 0.5
    p.update(0.3)
    p.update(0.4)
    p.flush()
    assert seen == [0.1, 0.3, 0.4]


def test_consumer_progress_follows_the_merged_records():
    import io

    def segment(keys):
        buf = io.BytesIO()
        w = segments.SegmentWriter(buf)
        w.write(keys, [1] * len(keys))
        return buf.getvalue(), len(keys)

    segs = [segment([f"k{i:05d}" for i in range(j, 2000, 2)]) for j in range(2)]
    seen = []
    out = Collected()
    _, reduce_stage = stages(1)
    runner.run_consumer_stage(WordCount(), reduce_stage, segs, 2, Path("/nonexistent"), 1 << 20,
                              lambda combiner: out,
                              runner.Progress(lambda f, c: seen.append(f), interval=0))
    assert len(out.pairs) == 2000
    assert seen[:2] == [0.25, 0.5] and seen[-1] == 1.0
    middle = [f for f in seen if 0.5 < f < 1.0]
    assert len(middle) > 10 and middle == sorted(middle)


def test_a_mapper_returning_none_gets_a_clear_error(tmp_path):
    class NoYield(MapReduceJob):
        def mapper(self, key, value):
            value.split()  # forgot to yield

    class Lists(MapReduceJob):
        def mapper(self, key, value):
            return [(w, 1) for w in value.split()]

    src = tmp_path / "input.txt"
    src.write_text(TEXT)
    stage = jc.compile_mapreduce("b", "b.py", "X", {}, ["/in"], "/out", 0,
                                 has_combiner=False).stage("map")
    with pytest.raises(TypeError, match=r"NoYield.mapper\(\) returned None"):
        runner.run_input_stage(NoYield(), stage, splits_of(src, 10**6), lambda p: open(p, "rb"),
                               lambda combiner: Collected(), runner.Progress(lambda f, c: None))
    out = Collected()
    runner.run_input_stage(Lists(), stage, splits_of(src, 10**6), lambda p: open(p, "rb"),
                           lambda combiner: out, runner.Progress(lambda f, c: None))
    assert Counter(k for k, _ in out.pairs) == Counter(TEXT.split())


def test_dfs_output_commit_keeps_an_earlier_holders_output(cluster):
    """The grant passes on when its holder dies after renaming: the next holder finds the
    part file in place, keeps it, and still succeeds."""
    dfs = cluster.client()
    out = "/runner-commit/out"
    jobdir.start_output(dfs, out)
    progress = runner.Progress(lambda *a: None)
    earlier = runner.DfsOutput(dfs, out, "t_reduce_00000_0", 0, lambda: True)
    earlier.write_all([("a", 1)])
    earlier.finish(progress)
    later = runner.DfsOutput(dfs, out, "t_reduce_00000_1", 0, lambda: True)
    later.write_all([("a", 2)])
    later.finish(progress)
    assert later.committed
    with dfs.open(f"{out}/part-00000") as f:
        assert f.read() == b"a\t1\n"
    assert not dfs.exists(f"{out}/_temporary/t_reduce_00000_1/part-00000")


def test_an_attempt_never_recreates_an_output_its_job_gave_up(cluster):
    """A late attempt of a failed job, its output removed, cannot create anything there."""
    dfs = cluster.client()
    out = "/runner-given-up/out"
    jobdir.start_output(dfs, out)
    runner.DfsOutput(dfs, out, "t_map_00000_0", 0, lambda: False).abort()
    jobdir.abort_output(dfs, out)   # the job failed
    with pytest.raises(NotFound):
        runner.DfsOutput(dfs, out, "t_map_00001_0", 1, lambda: False)
    assert not dfs.exists(out)


class LineCount(MapReduceJob):
    """A whole_lines mapper: counts its task's words with one Counter."""

    @whole_lines
    def mapper(self, lines):
        self.calls = getattr(self, "calls", 0) + 1
        return Counter(word for line in lines for word in line.split()).items()

    def combiner(self, key, values):
        yield key, sum(values)

    @whole_lines
    def reducer(self, key, values):
        yield key, sum(values)


def test_a_whole_lines_mapper_gets_every_line_of_its_splits_once_in_one_call(tmp_path):
    src = tmp_path / "input.txt"
    text = TEXT + "été naïve\r\nlast line without newline"
    src.write_text(text)
    map_stage, _ = stages(1)
    job, progress = LineCount(), runner.Progress(lambda f, c: None)
    out = Collected()
    runner.run_input_stage(job, map_stage, splits_of(src, 3000), lambda p: open(p, "rb"),
                           lambda combiner: out, progress)
    assert job.calls == 1 and out.finished
    assert Counter(dict(out.pairs)) == Counter(text.split())
    assert progress.counters[("task", "input_records")] == text.count("\n") + 1


def test_a_whole_lines_method_anywhere_but_a_text_map_is_a_clear_error(tmp_path):
    import dataclasses

    src = tmp_path / "input.txt"
    src.write_text(TEXT)
    map_stage, reduce_stage = stages(1)
    records_stage = dataclasses.replace(map_stage, reader="records")
    with pytest.raises(InvalidArgument, match=r"LineCount.mapper\(\) is a whole_lines method"):
        runner.run_input_stage(LineCount(), records_stage, splits_of(src, 10**6),
                               lambda p: open(p, "rb"), lambda combiner: Collected(),
                               runner.Progress(lambda f, c: None))
    with pytest.raises(InvalidArgument, match=r"LineCount.reducer\(\) is a whole_lines method"):
        runner.run_consumer_stage(LineCount(), reduce_stage, [], 0, tmp_path / "shuffle",
                                  1 << 20, lambda combiner: Collected(),
                                  runner.Progress(lambda f, c: None))
