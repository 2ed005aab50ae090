"""The jobserver daemon's translations: the core's launch action -> task_json (JOB_DESIGN.md)."""
import json

from minijet.jobserver import model
from minijet.jobserver.jobserver import task_json


def test_task_json_of_an_input_task_and_a_consumer_task():
    map_launch = model.LaunchAttempt(
        "host1:1", "job_1_0001", "job_1_0001_map_00002", "job_1_0001_map_00002_0", "/jobs/j",
        {"stage": "map", "index": 2,
         "split": {"segments": [["/in/a", 0, 10], ["/in/b", 0, 7]], "hosts": ["host1"]}})
    assert json.loads(task_json(map_launch)) == {
        "job_id": "job_1_0001", "task_id": "job_1_0001_map_00002",
        "attempt_id": "job_1_0001_map_00002_0", "stage": "map", "index": 2,
        "splits": [{"path": "/in/a", "offset": 0, "length": 10},
                   {"path": "/in/b", "offset": 0, "length": 7}],
        "partition": None, "producer_stage": None}

    reduce_launch = model.LaunchAttempt(
        "host2:1", "job_1_0001", "job_1_0001_reduce_00001", "job_1_0001_reduce_00001_3",
        "/jobs/j", {"stage": "reduce", "index": 1, "producers": {"map": 5}})
    spec = json.loads(task_json(reduce_launch))
    assert (spec["splits"], spec["partition"], spec["producer_stage"]) == ([], 1, "map")
