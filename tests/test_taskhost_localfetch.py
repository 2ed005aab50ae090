"""A consumer task reads a map output made on its own node from the file, not over gRPC: the
same bytes and record count the taskserver would serve; anything else is fetched."""
from __future__ import annotations

import pytest

from minijet import config as configmod
from minijet import jobconf as jc
from minijet.formats import segments
from minijet.proto import job_pb2
from minijet.taskdesc import TaskDescription
from minijet.taskhost.__main__ import Fetcher
from minijet.taskhost.linesort import LineSortBuffer
from minijet.taskhost.operations import RangePartitioner
from minijet.taskhost.runner import Progress
from minijet.taskserver.layout import Layout

JOB = "job_20261130000000_0001"
MAP_ATTEMPT = f"{JOB}_read-1_00000_0"


def fetcher(tmp_path, partition: int) -> tuple[Fetcher, Progress]:
    config = configmod.load(None)
    task = TaskDescription(job_id=JOB, task_id=f"{JOB}_sort-lines-2_{partition:05d}",
                           attempt_id=f"{JOB}_sort-lines-2_{partition:05d}_0",
                           stage="sort-lines-2", index=partition, partition=partition,
                           producer_stage="read-1")
    progress = Progress(lambda fraction, counters: None)
    attempts = Layout(tmp_path).job_dir(JOB)   # what the taskserver gives its TaskHosts
    return Fetcher(config, None, task, "a job's secret", progress, "read-1", attempts), progress


def test_an_output_made_here_is_read_from_its_file(tmp_path):
    lines = [b"%05d" % i for i in range(5000)][::-1]
    output = Layout(tmp_path).map_output(JOB, MAP_ATTEMPT)
    output.parent.mkdir(parents=True)
    buf = LineSortBuffer(2, output.parent / "spills", sort_buffer=1 << 20,
                         partitioner=RangePartitioner([jc.encode_key(b"02500")]))
    buf.collect_all([lines])
    entries = buf.finish(output)
    for partition in (0, 1):
        f, progress = fetcher(tmp_path, partition)
        # an address nothing listens on: a fetch over gRPC could not succeed
        location = job_pb2.MapOutputLocation(task_id=f"{JOB}_read-1_00000",
                                             attempt_id=MAP_ATTEMPT, address="127.0.0.1:1")
        data, records = f._fetch(location)
        assert data == segments.read_map_output_segment(output, partition)
        assert records == entries[partition].records == 2500
        assert progress.counter_list() == [("task", "shuffle_local_reads", 1)]


@pytest.mark.parametrize("attempt", [f"{JOB}_read-1_00001_0", f"{JOB}_/../../../etc",
                                     "job_20261130000000_0002_read-1_00000_0"])
def test_an_output_not_here_is_left_to_the_fetch(tmp_path, attempt):
    f, progress = fetcher(tmp_path, 0)
    assert f._read_local(attempt) is None
    assert progress.counter_list() == []
