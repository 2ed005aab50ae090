"""The jobserver daemon's translations: the core's launch action -> task_json (minijet.taskdesc),
and stored rows of an earlier run -> a JobStatus."""
import json

from minijet.jobserver import model
from minijet.jobserver.jobserver import _history_status, status_proto, task_json


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


def test_a_job_of_an_earlier_run_as_a_status():
    job = {"job_id": "job_1_0001", "name": "WordCount", "user": "ann", "state": "failed",
           "submit_time": 1.0, "start_time": 2.0, "end_time": 9.0, "output_path": "/out",
           "error": "the jobserver restarted", "traceback": None}
    tasks = [{"task_id": "job_1_0001_map_00000", "stage": "map", "state": "succeeded"},
             {"task_id": "job_1_0001_map_00001", "stage": "map", "state": "killed"},
             {"task_id": "job_1_0001_reduce_00000", "stage": "reduce", "state": "killed"}]
    attempts = [
        {"attempt_id": "job_1_0001_map_00000_0", "task_id": "job_1_0001_map_00000",
         "taskserver": "host1:1", "host": "host1", "locality": "node-local",
         "state": "succeeded", "start_time": 2.0, "end_time": 3.0, "error": "",
         "traceback": "", "counters_json": json.dumps([["task", "input_records", 7]])},
        {"attempt_id": "job_1_0001_map_00001_0", "task_id": "job_1_0001_map_00001",
         "taskserver": "host2:1", "host": "host2", "locality": "rack-local", "state": "failed",
         "start_time": 2.0, "end_time": 4.0, "error": "ValueError: x", "traceback": "tb",
         "counters_json": "[]"}]
    st = status_proto(_history_status(job, tasks, attempts))
    assert (st.job_id, st.state, st.error, st.output_path) == \
        ("job_1_0001", "failed", "the jobserver restarted", "/out")
    assert [(s.stage_id, s.tasks, s.succeeded, s.failed_attempts) for s in st.stages] == \
        [("map", 2, 1, 1), ("reduce", 1, 0, 0)]
    assert [(a.attempt_id, a.state, a.locality, a.error) for a in st.attempts] == [
        ("job_1_0001_map_00000_0", "succeeded", "node-local", ""),
        ("job_1_0001_map_00001_0", "failed", "rack-local", "ValueError: x")]
    assert [(c.group, c.name, c.value) for c in st.counters] == [("task", "input_records", 7)]
