"""Restoring the jobserver core from its store (JobRestored), as a restarted jobserver does:
a finished job has the status it had live; a job that was going resumes: its running
attempts and map outputs are taken back when their taskservers heartbeat again, or lost
(and run again) when they do not come back within taskserver_timeout."""
import json
import random

import pytest

from minijet.jobserver.jobserver import status_proto
from minijet.jobserver.model import (CommitGranted, CommitRequest, Heartbeat, JobCreated,
                                     JobFinished, JobRestored, JobServerCore, KillAttempt,
                                     LaunchAttempt, OutputCommitted, Persist, Tick)
from test_jobserver_model import (Cluster, check_invariants, of, restore, run_to_success,
                                  run_with_faults, start_the_reduce, stored_in_a_job_store,
                                  stored_rows)


def without_progress(status):
    """A status less the attempts' progress, which the store does not keep."""
    return {**status, "attempts": [{k: v for k, v in a.items() if k != "progress"}
                                   for a in status["attempts"]]}


def test_a_finished_job_is_restored_through_the_store_with_its_live_status(tmp_path):
    c = Cluster()
    c.handle(JobCreated("job_1", "wc", "ann", "/jobs/job_1", 0.0))
    run_to_success(c)
    c.handle(JobCreated("job_2", "wc", "bob", "/jobs/job_2", 1.0))   # never submitted
    rows = stored_in_a_job_store(c.log, tmp_path)
    core, actions = restore(rows)
    live = c.status()
    assert live["state"] == "succeeded"
    assert core.job_status("job_1") == live   # progress too: its attempts all succeeded
    # the job created but not run yet stays so: its client may still upload and run it
    assert [(j["job_id"], j["state"]) for j in core.list_jobs()] == [
        ("job_1", "succeeded"), ("job_2", "created")]
    assert actions == []


def beat(core, name, held, now, free=1):
    return core.handle(Heartbeat(name, name, "/r1", 2, free, f"{name}:7000", held, now))


def test_a_running_job_resumes_with_its_attempts_and_map_outputs_when_taskservers_return():
    c = Cluster()
    reduce = start_the_reduce(c, nsplits=2)
    live = c.status()
    core, actions = restore(stored_rows(c.log), now=50.0)
    assert not of(actions, JobFinished)
    st = core.job_status("job_1")
    assert st["state"] == "running"
    assert [(a["attempt_id"], a["state"]) for a in st["attempts"]] == \
        [(a["attempt_id"], a["state"]) for a in live["attempts"]]
    # no taskserver heard from yet: no map output is known to be anywhere
    assert core.map_output_locations("job_1", "map") == {
        "outputs": [], "lost": [], "total": 2, "version": 0, "full": True}
    for name in ("h1", "h2"):   # they report what they still run; nothing is killed
        assert not of(beat(core, name, list(c.held[name].values()), 51.0), KillAttempt)
    view = core.map_output_locations("job_1", "map")
    assert len(view["outputs"]) == 2
    assert view["version"] == 2   # each output found again wakes the consumers' long polls
    assert of(core.handle(CommitRequest(reduce, 52.0)), CommitGranted)
    owner = "h1" if reduce in c.held["h1"] else "h2"
    c.held[owner][reduce].state = "succeeded"
    (done,) = of(beat(core, owner, [c.held[owner][reduce]], 53.0), JobFinished)
    assert (done.state, done.output_paths) == ("succeeded", ["/out"])
    check_invariants(core)


def test_what_a_taskserver_that_does_not_return_held_is_made_again_elsewhere():
    c = Cluster()
    reduce = start_the_reduce(c, nsplits=2)
    owner = "h1" if reduce in c.held["h1"] else "h2"
    other = "h2" if owner == "h1" else "h1"
    core, _ = restore(stored_rows(c.log), now=50.0)
    beat(core, other, list(c.held[other].values()), 51.0, free=0)
    actions = core.handle(Tick(61.0))   # taskserver_timeout (10 s) after the restart
    assert not of(actions, JobFinished)
    st = core.job_status("job_1")
    lost = {a["attempt_id"] for a in st["attempts"] if a["state"] == "lost"}
    on_owner = {a["attempt_id"] for a in st["attempts"] if a["taskserver"] == owner}
    assert reduce in lost and lost == on_owner   # its reduce, and its map's output
    assert not launches(beat(core, other, [], 62.0, free=2))   # not node-local: it waits
    relaunched = launches(beat(core, other, [], 68.5, free=2))  # off its rack: 2 delays on
    assert relaunched and all("_map_" in a.task_id for a in relaunched)   # the map first
    check_invariants(core)


def launches(actions):
    return of(actions, LaunchAttempt)


def test_a_restored_job_as_a_status():
    conf = {"name": "WordCount", "user": "ann", "job_file": "wc.py", "job_class": "WordCount",
            "stages": [{"id": "map", "input": ["/in"], "operations": [{"op": "map", "fn": 0}],
                        "output": {"channel": "file", "partitions": 1, "sort": True}},
                       {"id": "reduce", "inputs": ["map"],
                        "operations": [{"op": "reduce", "fn": 1}],
                        "output": {"channel": "dfs", "path": "/out"}}]}
    job = dict.fromkeys(["job_dir", "status_blob"]) | {
        "job_id": "job_1_0001", "name": "WordCount", "user": "ann", "state": "failed",
        "submit_time": 1.0, "start_time": 2.0, "end_time": 9.0, "output_path": "/out",
        "conf_json": json.dumps(conf), "error": "the jobserver restarted", "traceback": None}
    tasks = [{"task_id": "job_1_0001_map_00000", "stage": "map", "task_index": 0,
              "state": "succeeded"},
             {"task_id": "job_1_0001_map_00001", "stage": "map", "task_index": 1,
              "state": "killed"},
             {"task_id": "job_1_0001_reduce_00000", "stage": "reduce", "task_index": 0,
              "state": "killed"}]
    attempts = [
        {"attempt_id": "job_1_0001_map_00000_0", "task_id": "job_1_0001_map_00000",
         "taskserver": "host1:1", "host": "host1", "locality": "node-local",
         "state": "succeeded", "start_time": 2.0, "end_time": 3.0, "error": "",
         "traceback": "", "counters_json": json.dumps([["task", "input_records", 7]])},
        {"attempt_id": "job_1_0001_map_00001_0", "task_id": "job_1_0001_map_00001",
         "taskserver": "host2:1", "host": "host2", "locality": "rack-local", "state": "failed",
         "start_time": 2.0, "end_time": 4.0, "error": "ValueError: x", "traceback": "tb",
         "counters_json": "[]"}]
    core = JobServerCore()
    assert core.handle(JobRestored(job, tasks, attempts, 10.0)) == []
    st = status_proto(core.job_status("job_1_0001"))
    assert (st.job_id, st.state, st.error, st.output_path, st.end_time) == \
        ("job_1_0001", "failed", "the jobserver restarted", "/out", 9.0)
    assert [(s.stage_id, s.tasks, s.succeeded, s.failed_attempts, s.progress)
            for s in st.stages] == [("map", 2, 1, 1, 0.5), ("reduce", 1, 0, 0, 0.0)]
    assert [(a.attempt_id, a.state, a.locality, a.error, a.progress) for a in st.attempts] == [
        ("job_1_0001_map_00000_0", "succeeded", "node-local", "", 1.0),
        ("job_1_0001_map_00001_0", "failed", "rack-local", "ValueError: x", 0.0)]
    counters = {(c.group, c.name): c.value for c in st.counters}
    assert counters[("task", "input_records")] == 7
    assert (counters[("job", "launched_attempts")], counters[("job", "failed_attempts")]) == \
        (2, 1)


@pytest.mark.parametrize("seed", range(6))
def test_random_faults_then_a_restart_at_any_moment(seed):
    """The randomized fault run, its store restored at random steps and at its end: a job
    still going resumes with the attempts it had; one whose output was being committed or
    removed has that done again."""
    steps = []   # (actions so far, the job's status) after each step

    def snapshot(c, step):
        steps.append((len(c.log), c.status()))

    c, _, _ = run_with_faults(seed, snapshot)
    rng = random.Random(seed)
    # going: the job had not ended in the store (a job that ended but whose output drains,
    # e.g. while a losing backup attempt dies, is finished again when restored: below)
    ended = next(i for i, a in enumerate(c.log) if isinstance(a, Persist) and any(
        table == "jobs" and row["state"] != "running" for table, row in a.records))
    going = [(n, live) for n, live in steps if n <= ended]
    for n, live in rng.sample(going, 3):
        core, actions = restore(stored_rows(c.log[:n]))
        assert not of(actions, JobFinished)
        st = core.job_status("job_1")
        assert st.keys() == live.keys() and st["state"] == "running"
        assert [(a["attempt_id"], a["state"]) for a in st["attempts"]] == \
            [(a["attempt_id"], a["state"]) for a in live["attempts"]]
        assert [s["succeeded"] for s in st["stages"]] == \
            [s["succeeded"] for s in live["stages"]]
        check_invariants(core)

    # while the output was committed: the store has the job's end, and the commit is redone
    (n, live), = [(n, live) for n, live in steps if of(c.log[:n], JobFinished)][:1]
    core, actions = restore(stored_rows(c.log[:n]))
    (again,) = of(actions, JobFinished)
    assert again.state == of(c.log, JobFinished)[0].state and live["state"] == "running"
    core.handle(OutputCommitted("job_1", 101.0))
    assert core.job_status("job_1")["state"] == again.state

    # at the end: as it was
    core, actions = restore(stored_rows(c.log))
    assert actions == []
