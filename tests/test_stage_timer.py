"""Per-attempt timing counters: reading, the user's operations and writing, measured by the
stage code in batches (StageTimer) and reported with the engine's counters."""
from __future__ import annotations

from itertools import chain

from minijet import jobconf as jc
from minijet.job import MapReduceJob
from minijet.splits import Segment
from minijet.taskhost import runner

from collected import Collected


class FakeClock:
    """Time advances only when the test says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_time_is_split_into_reading_processing_and_writing():
    clock = FakeClock()
    timer = runner.StageTimer(clock)

    def records():
        for i in range(600):   # three batches: each record costs 1ms to read
            clock.now += 0.001
            yield i

    def operation(items):
        for i in items:
            clock.now += 0.002  # 2ms of user code per record
            yield i, i

    clock.now += 0.5            # the shuffle, before the pipeline
    timer.read_outside(0.5)
    out = []
    for pair in chain.from_iterable(timer.producing(operation(timer.reading(records())))):
        clock.now += 0.003      # 3ms to write each pair
        out.append(pair)
    clock.now += 0.1            # closing the output
    assert out == [(i, i) for i in range(600)]
    progress = runner.Progress(lambda *a: None)
    timer.report(progress)
    got = {n: v for g, n, v in progress.counter_list()}
    assert abs(got["read_time_us"] - 1_100_000) <= 2
    assert abs(got["process_time_us"] - 1_200_000) <= 2
    assert abs(got["write_time_us"] - 1_900_000) <= 2


def test_after_the_first_batches_a_sample_of_them_gives_the_time_of_all():
    """Only some output batches are pulled apart and timed; with steady costs per pair the
    estimate is the time the exact count would give."""
    clock = FakeClock()
    timer = runner.StageTimer(clock)
    pairs = runner._TIMED_BATCH * runner._TIME_EVERY * 5 + 100

    def operation():
        for i in range(pairs):
            clock.now += 0.002  # 2ms of user code per pair
            yield i, i

    n = 0
    for pair in chain.from_iterable(timer.producing(operation())):
        clock.now += 0.003      # 3ms to write each pair
        n += 1
    assert n == pairs
    progress = runner.Progress(lambda *a: None)
    timer.report(progress)
    got = {n: v for g, n, v in progress.counter_list()}
    # the last, partial batch is the only one not like the others
    assert abs(got["process_time_us"] - pairs * 2000) <= pairs * 2000 * 0.01
    assert abs(got["write_time_us"] - pairs * 3000) <= pairs * 3000 * 0.01


def test_batches_keep_every_record_in_order():
    timer = runner.StageTimer()
    items = list(range(runner._TIMED_BATCH * runner._TIME_EVERY * 3 + 7))
    assert list(timer.reading(iter(items))) == items
    assert list(chain.from_iterable(timer.producing(iter(items)))) == items
    assert list(chain.from_iterable(timer.producing(x for x in []))) == []


def test_between_timed_batches_the_output_pulls_from_the_pipeline_itself():
    """After the first few, most pairs reach the output in one slice of the pipeline per
    sample: no list, and no iterator layered per pair."""
    timer = runner.StageTimer()
    items = list(range(runner._TIMED_BATCH * (runner._EXACT_BATCHES + runner._TIME_EVERY * 3)))
    lists, out = [], []
    for part in timer.producing(iter(items)):
        if isinstance(part, list):
            lists.append(len(part))
        out += part
    assert out == items
    assert lists == [runner._TIMED_BATCH] * (runner._EXACT_BATCHES + 3)


class Words(MapReduceJob):
    def mapper(self, key, value):
        for word in value.split():
            yield word, 1


def test_an_input_stage_reports_its_timing_counters(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("a b c\n" * 2000)
    conf = jc.compile_mapreduce("w", "w.py", "Words", {}, ["/in"], "/out", 1,
                                has_combiner=False)
    out = Collected()
    reports = []
    progress = runner.Progress(lambda f, c: reports.append(dict(((g, n), v) for g, n, v in c)))
    runner.run_input_stage(Words(), conf.stage("map"),
                           [Segment(str(path), 0, path.stat().st_size)],
                           lambda p: open(p, "rb"), lambda combiner: out, progress)
    assert len(out.pairs) == 6000
    final = reports[-1]
    for name in ("read_time_us", "process_time_us", "write_time_us"):
        assert final[("task", name)] > 0, name
