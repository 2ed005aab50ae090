"""The jobserver daemon's shell: the core's launch action -> task_json (minijet.taskdesc); the
finisher's output commit and a restart, fed back to the core as events."""
import contextlib
import json
import logging
import re

import pytest

from minijet import config
from minijet.errors import FailedPrecondition, MinijetError, PermissionDenied
from minijet.jobconf import compile_mapreduce
from minijet.jobserver import model
from minijet.jobserver.jobserver import JobServer, task_json
from minijet.proto import job_pb2


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


# ---- the shell's I/O fed back to the core: output commit, restart (no processes) ----

class FakeDfs:
    """What the jobserver's finisher does to the DFS; `fail` makes each call raise."""

    def __init__(self, fail=""):
        self.fail, self.calls = fail, []

    def _do(self, *call):
        self.calls.append(call)
        if self.fail:
            raise MinijetError(self.fail)

    def delete(self, path, recursive=False):
        self._do("delete", path)

    def mkdir(self, path, parents=False):
        self._do("mkdir", path)

    def create(self, path, overwrite=False):
        self._do("create", path)
        return contextlib.nullcontext()

    def close(self):
        pass


def jobserver(tmp_path, dfs):
    return JobServer(config.from_dict({"jobserver": {"dir": str(tmp_path / "js"),
                                                     "job_dir": "/jobs"}}), dfs=dfs)


def submit(js, job_id="job_1"):
    """A job of one reduce task and no input (RunJob's DFS reads left out)."""
    conf = compile_mapreduce("wc", "wc.py", "WordCount", {}, ["/in"], "/out", 1, True)
    with js._lock:
        js._handle(model.JobSubmitted(job_id, conf, {"map": []}, 1.0, job_dir=f"/jobs/{job_id}"))


def beat(js, *attempts):
    reply, launches = js.heartbeat(job_pb2.HeartbeatRequest(
        name="h1:1", host="h1", rack="/r1", slots=2, free_slots=2 - len(attempts),
        address="h1:7000", attempts=[job_pb2.AttemptStatus(attempt_id=a, state=s)
                                     for a, s in attempts]))
    if launches:   # as the service does before it replies
        js.store.wait()
    return list(reply.commands)


def run_finisher(js):
    """The finisher thread's work so far, here; DFS failures are not retried (stopping)."""
    js._stop.set()
    js._finisher_queue.put(None)
    js._finish_loop()


def test_a_failed_output_commit_fails_the_job_and_stays_failed_after_a_restart(tmp_path):
    js = jobserver(tmp_path, FakeDfs(fail="no live dataserver"))
    submit(js)
    (launch,) = beat(js)
    aid = launch.launch.attempt_id
    assert js.commit(aid)
    beat(js, (aid, job_pb2.SUCCEEDED))
    assert js.job_status("job_1")["state"] == "running"   # the output is being committed
    run_finisher(js)
    error = "the job's output could not be committed: no live dataserver"
    st = js.job_status("job_1")
    assert (st["state"], st["error"]) == ("failed", error)
    js.stop()

    js = jobserver(tmp_path, FakeDfs())
    [listed] = js.list_jobs(all_jobs=True)
    assert (listed["state"], listed["error"], "attempts" in listed) == ("failed", error, False)
    assert js.job_status("job_1")["attempts"][0]["state"] == "succeeded"
    js.stop()


def _ends(caplog):
    """(level, state) of each attempt end the jobserver logged."""
    return [(r.levelname, m.group(1)) for r in caplog.records
            if (m := re.match(r"attempt \S+: (\w+) on ", r.getMessage()))]


def test_an_attempts_success_is_logged_at_debug_only_and_its_failure_as_a_warning(
        tmp_path, caplog):
    js = jobserver(tmp_path, FakeDfs())
    submit(js)
    (first,) = beat(js)
    with caplog.at_level(logging.INFO, logger="minijet.jobserver"):
        (retry,) = beat(js, (first.launch.attempt_id, job_pb2.FAILED))
        assert js.commit(retry.launch.attempt_id)
        beat(js, (retry.launch.attempt_id, job_pb2.SUCCEEDED))
    assert _ends(caplog) == [("WARNING", "failed")]
    caplog.clear()
    js2 = jobserver(tmp_path / "second", FakeDfs())
    submit(js2)
    (launch,) = beat(js2)
    assert js2.commit(launch.launch.attempt_id)
    with caplog.at_level(logging.DEBUG, logger="minijet.jobserver"):
        beat(js2, (launch.launch.attempt_id, job_pb2.SUCCEEDED))
    assert _ends(caplog) == [("DEBUG", "succeeded")]
    js.stop()
    js2.stop()


def test_a_restarted_jobserver_resumes_the_running_job_and_honours_its_commit_grant(
        tmp_path):
    js = jobserver(tmp_path, FakeDfs())
    submit(js)
    (launch,) = beat(js)
    aid = launch.launch.attempt_id
    assert js.commit(aid)   # stored before it was answered
    js.stop()   # as if killed while the attempt writes its output

    dfs = FakeDfs()
    js = jobserver(tmp_path, dfs)
    st = js.job_status("job_1")
    assert st["state"] == "running" and not st["error"]
    assert [(a["attempt_id"], a["state"]) for a in st["attempts"]] == [(aid, "assigned")]
    # the taskserver still runs it: it is taken back, not killed, and keeps its grant
    assert beat(js, (aid, job_pb2.RUNNING)) == []
    assert js.commit(aid)
    beat(js, (aid, job_pb2.SUCCEEDED))
    run_finisher(js)
    assert dfs.calls[:2] == [("delete", "/out/_temporary"), ("create", "/out/_SUCCESS")]
    assert js.job_status("job_1")["state"] == "succeeded"
    js.stop()

    js = jobserver(tmp_path, FakeDfs())   # the next restart finds it succeeded, as it was
    assert js.job_status("job_1")["state"] == "succeeded"
    assert js._finisher_queue.empty()
    js.stop()


def test_a_create_or_run_sent_again_after_a_lost_reply_gets_the_first_ones_answer(tmp_path):
    dfs = FakeDfs()
    js = jobserver(tmp_path, dfs)
    first = js.create_job("wc", "ann", request_id="r1")
    assert js.create_job("wc", "ann", request_id="r1") == first
    other = js.create_job("wc", "ann", request_id="r2")
    assert other != first
    assert [c for c in dfs.calls if c[0] == "mkdir"] == [("mkdir", first[1]), ("mkdir", other[1])]
    submit(js, first[0])
    js.run_job(first[0])   # sent again: it runs, as the first RunJob said
    assert js.job_status(first[0])["state"] == "running"
    with pytest.raises(PermissionDenied, match=r"bob may not kill job .* \(owned by ann\)"):
        js.kill_job(other[0], "bob")
    js.kill_job(other[0], "ann")
    with pytest.raises(FailedPrecondition, match="ended before it ran"):
        js.run_job(other[0])
    js.stop()

    js = jobserver(tmp_path, FakeDfs())   # the jobserver restarted before the reply went out
    assert js.create_job("wc", "ann", request_id="r1") == first
    js.run_job(first[0])
    assert [j["job_id"] for j in js.list_jobs(all_jobs=True)] == [first[0], other[0]]
    js.stop()
