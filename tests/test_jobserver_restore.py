"""Restoring the jobserver core from its store (JobRestored), as a restarted jobserver does:
a finished job has the status it had live; a job that was going is failed as a live job
fails, and its output removal is granted."""
import json
import random

import pytest

from minijet.jobserver.jobserver import status_proto
from minijet.jobserver.model import (CommitDenied, CommitRequest, Heartbeat, JobCreated,
                                     JobFinished, JobRestored, JobServerCore, KillAttempt,
                                     OutputCommitted, Persist)
from minijet.jobserver.store import TABLES, JobStore
from test_jobserver_model import (Cluster, check_invariants, of, run_to_success,
                                  run_with_faults, start_the_reduce)

RESTART = "the jobserver restarted while the job was"


def stored_rows(actions):
    """The store's rows after the Persists among `actions`, upserted by primary key as
    JobStore does (columns never written are None)."""
    tables = {table: {} for table in TABLES}
    for p in of(actions, Persist):
        for table, row in p.records:
            key, columns = TABLES[table]
            tables[table].setdefault(row[key], dict.fromkeys([key, *columns])).update(row)
    return {table: list(rows.values()) for table, rows in tables.items()}


def restore(rows, now=100.0):
    """A new core fed every stored job, as JobServer._recover does: (core, actions)."""
    core = JobServerCore(max_task_attempts=3, taskserver_timeout=10.0)
    actions = []
    for job in rows["jobs"]:
        of_job = {t: [r for r in rows[t] if r["job_id"] == job["job_id"]]
                  for t in ("tasks", "attempts")}
        actions += core.handle(JobRestored(job, of_job["tasks"], of_job["attempts"], now))
    return core, actions


def without_progress(status):
    """A status less the attempts' progress, which the store does not keep."""
    return {**status, "attempts": [{k: v for k, v in a.items() if k != "progress"}
                                   for a in status["attempts"]]}


def test_a_finished_job_is_restored_through_the_store_with_its_live_status(tmp_path):
    c = Cluster()
    c.handle(JobCreated("job_1", "wc", "ann", "/jobs/job_1", 0.0))
    run_to_success(c)
    c.handle(JobCreated("job_2", "wc", "bob", "/jobs/job_2", 1.0))   # never submitted
    store = JobStore(tmp_path)
    try:
        for p in of(c.log, Persist):
            store.save(p.records)
        store.wait()
        rows = {table: store.rows(table) for table in TABLES}
    finally:
        store.close()
    core, actions = restore(rows)
    live = c.status()
    assert live["state"] == "succeeded"
    assert core.job_status("job_1") == live   # progress too: its attempts all succeeded
    assert [(j["job_id"], j["state"]) for j in core.list_jobs()] == [
        ("job_1", "succeeded"), ("job_2", "failed")]
    # only the job created but not submitted changes: it was going; it has no output
    (done,) = of(actions, JobFinished)
    assert (done.job_id, done.state, done.output_paths) == ("job_2", "failed", [])
    assert done.error.startswith(f"{RESTART} created")
    assert [(t, row["job_id"]) for p in of(actions, Persist) for t, row in p.records] == [
        ("jobs", "job_2")]


def test_a_running_job_is_failed_its_attempts_lost_and_its_output_removal_granted():
    c = Cluster()
    reduce = start_the_reduce(c, nsplits=2)
    live = c.status()
    core, actions = restore(stored_rows(c.log), now=50.0)

    (done,) = of(actions, JobFinished)
    assert (done.job_id, done.state, done.output_paths) == ("job_1", "failed", ["/out"])
    assert done.error == f"{RESTART} running; resuming jobs after a restart is not " \
                         f"supported yet"
    st = core.job_status("job_1")
    assert st.keys() == live.keys()
    assert (st["state"], st["end_time"], st["error"]) == ("running", 50.0, done.error)
    assert [(s["stage_id"], s["tasks"], s["succeeded"], s["running"]) for s in st["stages"]] \
        == [("map", 2, 2, 0), ("reduce", 1, 0, 0)]
    assert [a["attempt_id"] for a in st["attempts"]] == \
        [a["attempt_id"] for a in live["attempts"]]
    (lost,) = [a for a in st["attempts"] if a["state"] == "lost"]
    assert (lost["attempt_id"], lost["error"], lost["end_time"]) == \
        (reduce, "jobserver restarted", 50.0)
    # what is written: the job failed, its unfinished task killed, its attempt lost
    written = {row.get("job_id") if t == "jobs" else row.get("task_id") if t == "tasks"
               else row["attempt_id"]: row["state"]
               for p in of(actions, Persist) for t, row in p.records}
    assert written == {"job_1": "failed", "job_1_reduce_00000": "killed", reduce: "lost"}
    check_invariants(core)

    # no taskserver has come back yet: no map output is known to be anywhere
    assert core.map_output_locations("job_1", "map") == {"outputs": [], "total": 2}
    # the job's own TaskHost is still there: denied the commit, and told to die
    assert isinstance(core.handle(CommitRequest(reduce, 51.0))[0], CommitDenied)
    owner = "h1" if reduce in c.held["h1"] else "h2"
    beat = core.handle(Heartbeat(owner, owner, "/r1", 2, 1, f"{owner}:7000",
                                 [c.held[owner][reduce]], 51.0))
    assert [k.attempt_id for k in of(beat, KillAttempt)] == [reduce]

    # shown as running until its partial output is removed, then failed
    assert core.handle(OutputCommitted("job_1", 52.0)) == []
    st = core.job_status("job_1")
    assert (st["state"], st["error"]) == ("failed", done.error)
    assert without_progress(st)["attempts"][0] == without_progress(live)["attempts"][0]
    check_invariants(core)


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
    """The randomized fault run, its store restored at random steps and at its end."""
    steps = []   # (actions so far, the job's status) after each step

    def snapshot(c, step):
        steps.append((len(c.log), c.status()))

    c, _, _ = run_with_faults(seed, snapshot)
    rng = random.Random(seed)
    going = [(n, live) for n, live in steps if not of(c.log[:n], JobFinished)]
    for n, live in rng.sample(going, 3):
        # failed as a live job fails; nothing it ran is left going
        core, actions = restore(stored_rows(c.log[:n]))
        st = core.job_status("job_1")
        (done,) = of(actions, JobFinished)
        assert (done.state, done.output_paths) == ("failed", ["/out"])
        assert st.keys() == live.keys() and st["state"] == "running"   # removing its output
        assert [a["attempt_id"] for a in st["attempts"]] == \
            [a["attempt_id"] for a in live["attempts"]]
        for was, now in zip(live["attempts"], st["attempts"]):
            assert now["state"] == ("lost" if was["state"] in ("assigned", "running") else
                                    was["state"])
        assert [s["succeeded"] for s in st["stages"]] == \
            [s["succeeded"] for s in live["stages"]]
        assert all(s["running"] == 0 for s in st["stages"])
        check_invariants(core)
        core.handle(OutputCommitted("job_1", 101.0))
        check_invariants(core)
        assert core.job_status("job_1")["state"] == "failed"

    # while the output was committed: the store has the job's end, not its output's
    (n, live), = [(n, live) for n, live in steps if of(c.log[:n], JobFinished)][:1]
    core, actions = restore(stored_rows(c.log[:n]))
    assert live["state"] == "running" and actions == []
    assert core.job_status("job_1")["state"] == of(c.log, JobFinished)[0].state

    # at the end: as it was
    core, actions = restore(stored_rows(c.log))
    assert actions == []
    assert without_progress(core.job_status("job_1")) == without_progress(c.status())
    check_invariants(core)
