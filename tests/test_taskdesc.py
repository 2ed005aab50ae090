"""The task description: the jobserver writes it, the TaskHost reads it back unchanged."""
import json

import pytest

from minijet.errors import InvalidArgument
from minijet.jobserver import model
from minijet.jobserver.jobserver import task_json
from minijet.splits import Segment
from minijet.taskdesc import TaskDescription


def test_an_input_task_round_trips():
    task = TaskDescription("job_1_0001", "job_1_0001_map_00002", "job_1_0001_map_00002_0",
                           "map", 2, [Segment("/in/a", 0, 10), Segment("/in/b", 5, 7)])
    assert TaskDescription.from_json(task.to_json()) == task
    assert json.loads(task.to_json()) == {
        "job_id": "job_1_0001", "task_id": "job_1_0001_map_00002",
        "attempt_id": "job_1_0001_map_00002_0", "stage": "map", "index": 2,
        "splits": [{"path": "/in/a", "offset": 0, "length": 10},
                   {"path": "/in/b", "offset": 5, "length": 7}],
        "partition": None, "producer_stage": None}


def test_a_consumer_task_round_trips():
    task = TaskDescription("j", "j_reduce_00001", "j_reduce_00001_3", "reduce", 1,
                           partition=1, producer_stage="map")
    assert TaskDescription.from_json(task.to_json()) == task


def test_what_the_jobserver_writes_the_taskhost_reads():
    launch = model.LaunchAttempt(
        "host1:1", "job_1_0001", "job_1_0001_map_00002", "job_1_0001_map_00002_0", "/jobs/j",
        {"stage": "map", "index": 2,
         "split": {"segments": [["/in/a", 0, 10]], "hosts": ["host1"]}})
    task = TaskDescription.from_json(task_json(launch))
    assert task == TaskDescription("job_1_0001", "job_1_0001_map_00002",
                                    "job_1_0001_map_00002_0", "map", 2,
                                    [Segment("/in/a", 0, 10)])
    consumer = model.LaunchAttempt("host1:1", "j", "j_reduce_00001", "j_reduce_00001_0", "/j",
                                   {"stage": "reduce", "index": 1, "producers": {"map": 4}})
    task = TaskDescription.from_json(task_json(consumer))
    assert (task.segments, task.partition, task.producer_stage) == ([], 1, "map")


@pytest.mark.parametrize("text", ['{"job_id": "j"}', "[1]", "not json",
                                  '{"job_id": "j", "task_id": "t", "attempt_id": "a", '
                                  '"stage": "map", "index": "x"}'])
def test_a_bad_description_is_invalid_argument(text):
    with pytest.raises(InvalidArgument, match="bad task description"):
        TaskDescription.from_json(text)
