"""context.input_path(): the file of the record the user's code is handed, exact at split
boundaries although the stage reads its input ahead in batches."""
from __future__ import annotations

from minijet import context
from minijet import jobconf as jc
from minijet.job import MapReduceJob
from minijet.splits import Segment
from minijet.taskhost import runner

from collected import Collected


class PathOfEachLine(MapReduceJob):
    reducers = 0

    def mapper(self, offset, line):
        yield line, context.input_path()


def test_each_record_sees_its_own_file(tmp_path):
    # sizes around the read-ahead batch (256 records), and an empty file, in one task
    sizes = {"a": 300, "b": 1, "empty": 0, "c": 256, "d": 700}
    splits, expected = [], []
    for name, n in sizes.items():
        path = tmp_path / name
        path.write_text("".join(f"{name}{i}\n" for i in range(n)))
        splits.append(Segment(str(path), 0, path.stat().st_size))
        expected += [(f"{name}{i}", str(path)) for i in range(n)]
    conf = jc.compile_mapreduce("p", "p.py", "PathOfEachLine", {}, ["/in"], "/out", 0,
                                has_combiner=False)
    out = Collected()
    runner.run_input_stage(PathOfEachLine(), conf.stage("map"), splits,
                           lambda p: open(p, "rb"), lambda combiner: out,
                           runner.Progress(lambda f, c: None))
    assert out.pairs == expected


def test_no_input_path_outside_a_stage_reading_files():
    context.bind(None)
    assert context.input_path() is None
