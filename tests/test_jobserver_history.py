"""Bounded history, without processes: the core retires closed jobs (retire_after, the most
recent retained_jobs) and then holds nothing of them; a retired job's status from its rows in
a real JobStore is what the core showed; a restart does not bring it back; an expired job's
rows are deleted and its taskservers told to drop its logs."""
import gc
import types

import pytest

from minijet.errors import NotFound
from minijet.jobserver import history
from minijet.jobserver.model import (Attempt, CleanupJob, HistoryExpired, Heartbeat, Job, JobCreated,
                                     JobRestored, JobServerCore, Persist, Stage, Task, Tick)
from minijet.jobserver.store import JobStore
from test_jobserver_model import Cluster, of, run_to_success

NOT_WALKED = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
              types.MethodType)


def held_of(core, job_id):
    """Everything reachable from the core that belongs to the job: its Job, Stage, Task and
    Attempt objects, and strings naming it (its id, its tasks', its attempts')."""
    seen, stack, found = set(), [core], []
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, NOT_WALKED):
            continue
        seen.add(id(o))
        owner = o if isinstance(o, Job) else o.task.job if isinstance(o, Attempt) else \
            o.job if isinstance(o, (Stage, Task)) else None
        if owner is not None and owner.id == job_id or \
                isinstance(o, str) and o.startswith(job_id):
            found.append(o)
        stack.extend(gc.get_referents(o))
    return found


def store_of(c, directory):
    store = JobStore(directory)
    for p in of(c.log, Persist):
        store.save(p.records)
    store.wait()
    return store


def test_a_closed_job_retires_after_retire_after_and_the_core_holds_nothing_of_it():
    c = Cluster(retire_after=60.0)
    c.handle(JobCreated("job_1", "wc", "ann", "/jobs/job_1", 0.0, request_id="r1"))
    run_to_success(c)
    c.beat("h1"), c.beat("h2")   # the cleanup orders are delivered
    assert c.status()["state"] == "succeeded"
    end = c.status()["end_time"]
    c.handle(Tick(end + 59.0))
    assert c.core.holds("job_1") and c.core.job_of_request("r1") == "job_1"
    assert held_of(c.core, "job_1")   # (the walk finds it while held)
    assert c.core.jobs_retired == 0
    c.handle(Tick(end + 60.0))
    assert not c.core.holds("job_1")
    assert c.core.jobs_retired == 1   # the shell then thaws what its build froze
    with pytest.raises(NotFound):
        c.core.job_status("job_1")
    assert held_of(c.core, "job_1") == []
    assert c.core.list_jobs() == []
    # a taskserver still naming its files gets a cleanup order, as for any unknown job
    actions = c.handle(Heartbeat("h1", "h1", "/r1", 2, 2, "h1:7000", [], c.now,
                                 jobs=["job_1"]))
    assert [a.job_id for a in of(actions, CleanupJob)] == ["job_1"]


def test_a_job_still_draining_or_running_is_never_retired():
    c = Cluster(retire_after=1.0, retained_jobs=1, hold_output=True)
    run_to_success(c)                        # ended; its output not committed yet
    c.handle(Tick(c.now + 100.0))
    assert c.core.holds("job_1") and c.status()["state"] == "running"
    c.commit_output()
    c.handle(Tick(c.now + 100.0))
    assert not c.core.holds("job_1")


def test_beyond_the_retained_jobs_those_that_ended_first_retire():
    c = Cluster(retained_jobs=2)
    for n in (1, 2, 3):
        c.now += 1.0
        c.submit(f"job_{n}", nsplits=1, reducers=0)
        c.beat("h1"), c.beat("h2")
        for aid in c.running():
            c.commit(aid)
            c.finish(aid)
        c.beat("h1"), c.beat("h2")
        assert c.status(f"job_{n}")["state"] == "succeeded"
    c.handle(Tick(c.now))
    assert [j["job_id"] for j in c.core.list_jobs()] == ["job_2", "job_3"]
    assert held_of(c.core, "job_1") == []


def test_a_retired_jobs_status_from_the_store_is_what_the_core_showed(tmp_path):
    c = Cluster(retire_after=10.0)
    c.submit(nsplits=2, reducers=1)
    c.beat("h1"), c.beat("h2")
    first = c.running(stage="map")[0]
    c.held["h1"][first].progress = 0.4   # a failed attempt's progress is kept
    c.finish(first, "failed", "ValueError: x", "tb", counters=[("io", "records_out", 3)])
    while not c.running(stage="reduce"):
        c.now += 1.0
        c.beat("h1"), c.beat("h2")
        for aid in c.running(stage="map"):
            c.finish(aid, counters=[("io", "records_out", 5)])
    (reduce,) = c.running(stage="reduce")
    c.commit(reduce)
    c.finish(reduce)
    c.beat("h1"), c.beat("h2")
    before, listed = c.status(), c.core.list_jobs()
    assert before["state"] == "succeeded" and any(a["state"] == "failed"
                                                  for a in before["attempts"])
    c.handle(Tick(before["end_time"] + 10.0))
    assert not c.core.holds("job_1")
    store = store_of(c, tmp_path)
    try:
        # every field, the attempts' progress too (stored with them): none is live-only
        assert history.status(store, "job_1") == before
        assert history.finished(store, 0.0, 10) == listed == \
            [history.status(store, "job_1", attempts=False)]
        assert history.finished(store, before["end_time"], 10) == []   # ended before
    finally:
        store.close()


def test_a_restart_does_not_bring_a_retired_job_back(tmp_path):
    c = Cluster(retire_after=10.0, retained_jobs=5)
    run_to_success(c)
    end = c.status()["end_time"]
    store = store_of(c, tmp_path)
    try:
        assert store.restorable_jobs(end - 1.0, 5) != []
        assert store.restorable_jobs(end, 5) == []
        (row,) = store.rows("jobs")
        for now, held in ((end + 9.0, True), (end + 10.0, False)):
            core = JobServerCore(retire_after=10.0)   # also if the shell sends it
            assert core.handle(JobRestored(row, store.rows("tasks"), store.rows("attempts"),
                                           now)) == []
            assert core.holds("job_1") == held
    finally:
        store.close()


def test_an_expired_jobs_rows_go_and_its_taskservers_are_told_to_drop_its_logs(tmp_path):
    c = Cluster(retire_after=1.0)
    run_to_success(c)
    end = c.status()["end_time"]
    ran = sorted({a["taskserver"] for a in c.status()["attempts"]})
    store = store_of(c, tmp_path)
    deleted_dirs = []
    try:
        held = {"job_1"}
        assert history.expire(store, end + 1.0, lambda ids: held & set(ids),
                              deleted_dirs.append) == {}   # in memory: kept
        assert history.expire(store, end, lambda ids: set(), deleted_dirs.append) == {}
        c.handle(Tick(end + 1.0))
        expired = history.expire(store, end + 1.0, lambda ids: set(), deleted_dirs.append)
        assert sorted(expired["job_1"]) == ran and deleted_dirs == ["job_1"]
        assert all(store.rows(t) == [] for t in ("jobs", "tasks", "attempts"))
        with pytest.raises(NotFound):
            history.status(store, "job_1")
    finally:
        store.close()
    assert c.handle(HistoryExpired({"job_1": ["h1", "gone"]}, c.now)) == []   # queued
    (order,) = of(c.beat("h1"), CleanupJob)
    assert (order.job_id, order.logs) == ("job_1", True)
