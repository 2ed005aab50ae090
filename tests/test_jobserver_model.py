"""The jobserver core, driven by events; taskservers are simulated by the protocol they
follow (report every attempt held until reported final), and the shell's finisher by the
output commit it reports back."""
from dataclasses import replace

import pytest

from minijet.errors import AlreadyExists, FailedPrecondition, NotFound
from minijet.jobconf import DFS, FILE, JobConf, Operation, OutputSpec, StageConf, compile_mapreduce
from minijet.jobserver.model import (AttemptStatus, CleanupJob, CommitDenied, CommitGranted,
                                     CommitRequest, FetchFailed, Heartbeat, JobCreated,
                                     JobFinished, JobRestored, JobServerCore, JobSubmitted,
                                     KillAttempt, KillJob, LaunchAttempt, OutputCommitFailed,
                                     OutputCommitted, Persist, Tick, changes_a_job)
from minijet.jobserver.store import TABLES, JobStore
from minijet.splits import Segment, Split

FINAL = ("succeeded", "failed", "killed")
RACKS = {"h1": "/r1", "h2": "/r1", "h3": "/r2"}


class Cluster:
    """Taskservers as the core sees them: each holds attempts and heartbeats their state.
    A job's output is committed as soon as it finishes, unless `hold_output`: then its
    JobFinished waits in `finishing` for `commit_output`. No speculation unless asked for
    (`speculative=True`): running attempts here report no progress."""

    def __init__(self, names=("h1", "h2"), slots=2, hold_output=False, slow_kills=False,
                 isolating=(), **core_args):
        args = dict(max_task_attempts=3, taskserver_timeout=10.0, locality_delay=1.0,
                    rack_of=lambda h: RACKS.get(h, "/r1"), retry_backoff=0.0,
                    speculative=False)
        args.update(core_args)
        self.core_args = args
        self.core = JobServerCore(**args)
        self.slots = slots
        self.held = {n: {} for n in names}
        self.now = 0.0
        self.log = []   # every action, in order
        self.hold_output = hold_output
        self.finishing = {}   # job -> JobFinished whose output is not committed yet
        self.slow_kills = slow_kills   # a killed attempt runs on until kill_lands()
        self.killing = set()
        self.isolating = set(isolating)   # taskservers running tasks as their jobs' users

    def handle(self, event):
        return self.take(self.core.handle(event))

    def restart(self):
        """The jobserver restarts: a new core restored from everything stored so far, as
        JobServer._recover does; the taskservers keep what they hold."""
        self.core, actions = restore(stored_rows(self.log), self.now, **self.core_args)
        self.finishing = {}   # the finisher's queue died with the jobserver
        return self.take(actions)

    def take(self, actions):
        self.log += actions
        for a in of(actions, JobFinished):
            # nothing of the job may still run where it could write under the output,
            # unless on a taskserver declared lost (whose attempts are lost with it)
            alive = {t["name"] for t in self.core.taskservers() if t["alive"]}
            assert not [aid for n, held in self.held.items() if n in alive
                        for aid, s in held.items()
                        if aid.startswith(f"{a.job_id}_") and s.state == "running"]
            if a.output_paths:
                self.finishing[a.job_id] = a
                if not self.hold_output:
                    self.commit_output(a.job_id)
        return actions

    def commit_output(self, job_id="job_1", error=""):
        """The shell's finisher reports the output of a finished job committed (or removed),
        or that it could not: `error`."""
        del self.finishing[job_id]
        return self.handle(OutputCommitFailed(job_id, error, self.now) if error else
                           OutputCommitted(job_id, self.now))

    def submit(self, job_id="job_1", nsplits=4, reducers=2, hosts=None):
        conf = compile_mapreduce("wc", "wc.py", "WordCount", {}, ["/in"], "/out", reducers,
                                 True, user="ann")
        hosts = hosts or (lambda i: ("h1",) if i % 2 == 0 else ("h2",))
        splits = [Split((Segment("/in/f", i * 100, 100),), hosts(i)) for i in range(nsplits)]
        return self.handle(JobSubmitted(job_id, conf, {"map": splits}, self.now,
                                        job_dir=f"/jobs/{job_id}"))

    def beat(self, name, free=None):
        held = self.held.setdefault(name, {})
        busy = sum(1 for s in held.values() if s.state not in FINAL)
        sent = [replace(s, counters=list(s.counters)) for s in held.values()]
        actions = self.handle(Heartbeat(name, name, RACKS.get(name, "/r1"), self.slots,
                                        self.slots - busy if free is None else free,
                                        f"{name}:7000", sent, self.now,
                                        isolated=name in self.isolating))
        for s in sent:
            if s.state in FINAL:
                del held[s.attempt_id]
        for a in actions:
            if isinstance(a, (LaunchAttempt, KillAttempt, CleanupJob)):
                assert a.taskserver == name   # commands only go to their own taskserver
            if isinstance(a, LaunchAttempt):
                held[a.attempt_id] = AttemptStatus(a.attempt_id, "running", 0.0)
            elif isinstance(a, KillAttempt) and a.attempt_id in held:
                if self.slow_kills:
                    self.killing.add(a.attempt_id)
                else:
                    held[a.attempt_id].state = "killed"
        return actions

    def finish(self, attempt_id, state="succeeded", error="", traceback="", counters=(),
               failure=""):
        for held in self.held.values():
            if attempt_id in held:
                s = held[attempt_id]
                s.state, s.error, s.traceback, s.failure = state, error, traceback, failure
                s.progress = 1.0 if state == "succeeded" else s.progress
                s.counters = list(counters)
                return
        raise KeyError(attempt_id)

    def commit(self, attempt_id):
        (reply,) = [a for a in self.handle(CommitRequest(attempt_id, self.now))
                    if isinstance(a, (CommitGranted, CommitDenied))]
        return reply

    def running(self, name=None, stage=None):
        return sorted(aid for n, held in self.held.items() if name in (None, n)
                      for aid, s in held.items() if s.state == "running"
                      and (stage is None or f"_{stage}_" in aid))

    def status(self, job_id="job_1"):
        return self.core.job_status(job_id)


def stored_rows(actions):
    """The store's rows after the Persists among `actions`, upserted by primary key as
    JobStore does (columns never written are None)."""
    tables = {table: {} for table in TABLES}
    for p in of(actions, Persist):
        for table, row in p.records:
            key, columns = TABLES[table]
            tables[table].setdefault(row[key], dict.fromkeys([key, *columns])).update(row)
    return {table: list(rows.values()) for table, rows in tables.items()}


def stored_in_a_job_store(actions, directory):
    """The rows a real JobStore in `directory` holds after the Persists among `actions`."""
    store = JobStore(directory)
    try:
        for p in of(actions, Persist):
            store.save(p.records)
        store.wait()
        return {table: store.rows(table) for table in TABLES}
    finally:
        store.close()


def restore(rows, now=100.0, **core_args):
    """A new core fed every stored job, as JobServer._recover does: (core, actions)."""
    core = JobServerCore(**(core_args or {"max_task_attempts": 3, "taskserver_timeout": 10.0}))
    actions = []
    for job in rows["jobs"]:
        of_job = {t: [r for r in rows[t] if r["job_id"] == job["job_id"]]
                  for t in ("tasks", "attempts")}
        actions += core.handle(JobRestored(job, of_job["tasks"], of_job["attempts"], now))
    return core, actions


def launches(actions):
    return [a for a in actions if isinstance(a, LaunchAttempt)]


def of(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def run_maps(c, counters=(("io", "records_out", 10),)):
    c.beat("h1"), c.beat("h2")
    c.beat("h1"), c.beat("h2")
    for aid in c.running(stage="map"):
        c.finish(aid, counters=counters)


def test_happy_path_map_then_reduce_then_success():
    c = Cluster()
    first = c.submit()
    assert isinstance(first[0], Persist)   # the job and its tasks are written at once
    tables = {t for t, _ in first[0].records}
    assert tables == {"jobs", "tasks"}

    a1, a2 = launches(c.beat("h1")), launches(c.beat("h2"))
    assert [a.task_id for a in a1] == ["job_1_map_00000", "job_1_map_00002"]
    assert [a.task_id for a in a2] == ["job_1_map_00001", "job_1_map_00003"]
    spec = a1[0].task
    assert spec["stage"] == "map" and spec["split"]["segments"] == [["/in/f", 0, 100]]
    assert a1[0].attempt_id == "job_1_map_00000_0" and a1[0].job_dir == "/jobs/job_1"
    st = c.status()
    assert {a["locality"] for a in st["attempts"]} == {"node-local"}

    for aid in c.running(stage="map")[:3]:
        c.finish(aid, counters=[("io", "records_out", 10)])
    c.beat("h1"), c.beat("h2")
    assert c.running(stage="reduce") == []   # a producer is still running
    assert c.status()["stages"][0]["progress"] == pytest.approx(0.75)

    c.finish(c.running(stage="map")[0], counters=[("io", "records_out", 10)])
    reduces = launches(c.beat("h2")) + launches(c.beat("h1"))
    assert sorted(a.task_id for a in reduces) == ["job_1_reduce_00000", "job_1_reduce_00001"]
    assert reduces[0].task["producers"] == {"map": 4} and "split" not in reduces[0].task
    assert {a["locality"] for a in c.status()["attempts"] if "reduce" in a["task_id"]} == {""}

    locs = c.core.map_output_locations("job_1", "map")
    assert locs["total"] == 4 and len(locs["outputs"]) == 4
    assert {o["address"] for o in locs["outputs"]} == {"h1:7000", "h2:7000"}

    for r in reduces:
        assert isinstance(c.commit(r.attempt_id), CommitGranted)
        c.finish(r.attempt_id, counters=[("io", "records_out", 3)])
    out = c.beat("h1") + c.beat("h2") + c.beat("h1")
    (done,) = of(c.log, JobFinished)
    assert (done.job_id, done.state, done.output_paths) == ("job_1", "succeeded", ["/out"])
    assert sorted(a.taskserver for a in of(out, CleanupJob)) == ["h1", "h2"]

    st = c.status()
    assert st["state"] == "succeeded" and st["end_time"] == c.now
    assert [s["progress"] for s in st["stages"]] == [1.0, 1.0]
    counters = {(x["group"], x["name"]): x["value"] for x in st["counters"]}
    assert counters[("io", "records_out")] == 4 * 10 + 2 * 3
    assert counters[("job", "node_local_attempts")] == 4
    assert counters[("job", "launched_attempts")] == 6
    assert c.core.list_jobs()[0]["state"] == "succeeded"


def test_persisted_records_fit_the_job_store(tmp_path):
    c = Cluster()
    c.handle(JobCreated("job_1", "wc", "ann", "/jobs/job_1", 0.0))
    c.submit()
    run_maps(c)
    c.beat("h1")
    store = JobStore(tmp_path)
    try:
        for p in of(c.log, Persist):
            store.save(p.records)
        store.wait()
        (job,) = store.rows("jobs")
        assert (job["state"], job["output_path"], job["job_dir"]) == ("running", "/out",
                                                                      "/jobs/job_1")
        states = {r["task_id"]: r["state"] for r in store.rows("tasks")}
        assert states["job_1_map_00000"] == "succeeded"
        assert states["job_1_reduce_00000"] == "waiting"   # maps on h2 not reported yet
        attempt = store.rows("attempts", "attempt_id = ?", ("job_1_map_00000_0",))[0]
        assert (attempt["state"], attempt["locality"], attempt["taskserver"]) == (
            "succeeded", "node-local", "h1")
    finally:
        store.close()


def test_a_job_names_the_taskservers_that_ran_its_attempts_without_isolation():
    c = Cluster(isolating={"h1"})   # h1 runs as root; h2 does not
    c.submit()
    run_maps(c)
    assert {t["name"]: t["isolated"] for t in c.core.taskservers()} == {"h1": True,
                                                                         "h2": False}
    assert c.status()["unisolated_taskservers"] == ["h2"]
    c.isolating.add("h2")   # restarted as root: what ran there before was not isolated
    c.beat("h2")
    assert c.core.taskservers()[1]["isolated"] and c.status()["unisolated_taskservers"] == ["h2"]
    c.restart()             # kept with each attempt
    assert c.status()["unisolated_taskservers"] == ["h2"]
    isolated = Cluster(isolating={"h1", "h2"})
    isolated.submit()
    run_maps(isolated)
    assert isolated.status()["unisolated_taskservers"] == []


def test_retries_elsewhere_then_job_fails_keeping_the_user_error():
    c = Cluster(slots=3)
    c.submit(nsplits=4)
    c.beat("h1"), c.beat("h2")
    bad = "job_1_map_00000_0"
    assert bad in c.held["h1"]
    c.finish(bad, "failed", "ValueError: bad record 'x'", "Traceback ...\nValueError")
    retry = launches(c.beat("h1"))
    assert retry == []   # prefers another taskserver for the retry
    retry = launches(c.beat("h2"))
    assert [a.attempt_id for a in retry] == ["job_1_map_00000_1"]
    c.finish("job_1_map_00000_1", "failed", "ValueError: bad record 'x'", "tb 2")
    c.beat("h2")
    c.now += 1.0   # both taskservers failed it: it may go anywhere now
    (third,) = launches(c.beat("h1"))
    assert third.attempt_id == "job_1_map_00000_2"
    others = sorted(set(c.running()) - {third.attempt_id})
    c.finish(third.attempt_id, "failed", "ValueError: bad record 'x'",
             "Traceback (most recent call last):\n  ...\nValueError: bad record 'x'")
    out = c.beat("h1")
    st = c.status()
    assert "job_1_map_00000 failed 3 times" in st["error"]
    assert st["traceback"].endswith("ValueError: bad record 'x'")
    # the job's other attempts are killed, each via its own taskserver's heartbeat...
    kills = of(out, KillAttempt) + of(c.beat("h2"), KillAttempt)
    assert sorted(k.attempt_id for k in kills) == others
    assert {a["state"] for a in st["attempts"] if a["attempt_id"] in others} == {"killed"}
    assert of(c.log, CleanupJob)
    # ...and its output is removed only once every taskserver has shown them gone
    assert not of(c.log, JobFinished) and st["state"] == "running"
    c.beat("h1"), c.beat("h2")
    (done,) = of(c.log, JobFinished)
    assert done.state == "failed" and "ValueError: bad record 'x'" in done.error
    assert c.status()["state"] == "failed"
    assert not launches(c.beat("h1"))
    assert isinstance(c.commit(others[0]), CommitDenied)


def test_at_most_one_commit_per_task_even_with_a_zombie_attempt():
    c = Cluster(max_task_attempts=4)
    c.submit(nsplits=2, reducers=1)
    run_maps(c)
    c.beat("h1"), c.beat("h2")
    (first,) = c.running(stage="reduce")
    owner = "h1" if first in c.held["h1"] else "h2"
    other = "h2" if owner == "h1" else "h1"
    # the owner stops heartbeating (a partition): its attempt is lost and re-run elsewhere,
    # and its map output is needed again too
    c.now += 11.0
    c.beat(other)
    c.handle(Tick(c.now))
    for _ in range(4):
        c.now += 1.0
        c.beat(other)
        for aid in c.running(other, stage="map"):
            c.finish(aid)
    (second,) = c.running(other, stage="reduce")
    assert second != first
    assert isinstance(c.commit(first), CommitDenied)     # the zombie is lost
    assert isinstance(c.commit(second), CommitGranted)
    assert isinstance(c.commit(second), CommitGranted)   # asking again is harmless
    # the zombie's taskserver comes back and says its copy finished: it is told to die
    c.finish(first)
    c.beat(owner)
    states = {a["attempt_id"]: a["state"] for a in c.status()["attempts"]}
    assert states[first] == "lost" and c.status()["stages"][1]["succeeded"] == 0
    # the grant holder fails after its grant: the grant is released to the next attempt
    c.finish(second, "failed", "OSError: disk full")
    c.beat(other)
    c.now += 2.0
    c.beat(owner), c.beat(other)
    (third,) = c.running(stage="reduce")
    assert isinstance(c.commit(third), CommitGranted)
    c.finish(third)
    c.beat(owner), c.beat(other)
    assert c.status()["state"] == "succeeded"
    assert isinstance(c.commit(third), CommitDenied)
    grants = [a.attempt_id for a in of(c.log, CommitGranted)]
    assert grants == [second, second, third]


def test_two_live_attempts_only_one_is_granted():
    c = Cluster()
    c.submit(nsplits=1, reducers=1)
    run_maps(c)
    c.beat("h1"), c.beat("h2")
    (first,) = c.running(stage="reduce")
    owner = "h1" if first in c.held["h1"] else "h2"
    # the owner drops the attempt without a word (restarted): the core re-runs it
    del c.held[owner][first]
    c.beat(owner)
    c.beat("h1"), c.beat("h2")
    (second,) = c.running(stage="reduce")
    c.held[owner][first] = AttemptStatus(first, "running")   # it was alive after all
    assert isinstance(c.commit(second), CommitGranted)
    assert isinstance(c.commit(first), CommitDenied)
    kills = of(c.beat(owner), KillAttempt)
    assert [k.attempt_id for k in kills] == [first]


def test_dfs_output_without_a_commit_grant_is_a_failure():
    c = Cluster()
    c.submit(nsplits=1, reducers=0)   # map-only: maps write the DFS output
    c.beat("h1")
    (aid,) = c.running()
    c.finish(aid)
    c.beat("h1")
    st = c.status()
    assert st["attempts"][0]["state"] == "failed"
    assert "without permission to commit" in st["attempts"][0]["error"]
    assert st["state"] == "running"


def test_lost_taskserver_reruns_running_attempts_and_needed_map_outputs():
    c = Cluster(names=("h1", "h2", "h3"))
    c.submit(nsplits=4, reducers=2)
    run_maps(c)
    c.beat("h2", free=0), c.beat("h1")
    on_h1 = c.running("h1")   # both reduces run on h1
    assert len(on_h1) == 2 and all("_reduce_" in a for a in on_h1)
    c.now += 5.0
    c.beat("h2"), c.beat("h3")
    c.now += 6.0   # h1 silent for 11s > 10s
    c.beat("h2"), c.beat("h3")
    c.handle(Tick(c.now))
    st = c.status()
    states = {a["attempt_id"]: a["state"] for a in st["attempts"]}
    assert {states[a] for a in on_h1} == {"lost"}
    # its two map outputs are needed by the unfinished reduces: lost and run again
    lost_maps = [a for a, s in states.items() if s == "lost" and "_map_" in a]
    assert sorted(lost_maps) == ["job_1_map_00000_0", "job_1_map_00002_0"]
    assert len(c.core.map_output_locations("job_1", "map")["outputs"]) == 2
    assert st["stages"][0]["succeeded"] == 2
    (h1,) = [t for t in c.core.taskservers() if t["name"] == "h1"]
    assert not h1["alive"]
    # the maps re-run elsewhere; the reduces then too; losing is not failing
    for _ in range(3):
        c.now += 1.0
        for n in ("h2", "h3"):
            c.beat(n)
            for aid in c.running(n, stage="map"):
                c.finish(aid)
    for aid in c.running(stage="reduce"):
        c.commit(aid)
        c.finish(aid)
    c.beat("h2"), c.beat("h3")
    st = c.status()
    assert st["state"] == "succeeded"
    assert all(s["failed_attempts"] == 0 for s in st["stages"])
    counters = {(x["group"], x["name"]): x["value"] for x in st["counters"]}
    assert counters[("job", "lost_attempts")] == 2 + len(on_h1)


def test_attempt_missing_from_heartbeat_is_lost_and_rerun():
    c = Cluster()
    c.submit(nsplits=1, reducers=1)
    (l,) = launches(c.beat("h1"))
    del c.held["h1"][l.attempt_id]   # the reply never arrived
    again = launches(c.beat("h1"))
    assert [a.attempt_id for a in again] == ["job_1_map_00000_1"]
    assert c.status()["attempts"][0]["state"] == "lost"


def test_fetch_failure_reruns_the_producer_once():
    c = Cluster()
    c.submit(nsplits=2, reducers=2)
    run_maps(c)
    c.beat("h1"), c.beat("h2")
    r1, r2 = c.running(stage="reduce")
    producer = c.core.map_output_locations("job_1", "map")["outputs"][0]["attempt_id"]
    c.handle(FetchFailed(r1, producer, "connection refused", c.now))
    c.handle(FetchFailed(r2, producer, "connection refused", c.now))   # same loss
    st = c.status()
    assert [a["state"] for a in st["attempts"] if a["attempt_id"] == producer] == ["lost"]
    assert st["stages"][0]["succeeded"] == 1
    c.now += 2.0
    c.beat("h1"), c.beat("h2")
    reruns = c.running(stage="map")
    assert len(reruns) == 1 and reruns[0].startswith(producer[:-1])
    assert set(c.running(stage="reduce")) == {r1, r2}   # consumers keep running
    c.finish(reruns[0])
    c.beat("h1"), c.beat("h2")
    locs = c.core.map_output_locations("job_1", "map")["outputs"]
    assert reruns[0] in {o["attempt_id"] for o in locs}


def test_a_map_output_is_made_again_once_enough_consumers_cannot_fetch_it():
    """With six reduces running, three of them must report (Hadoop's rule: 3 reports, or
    half of the running consumers); one reporting twice counts once."""
    c = Cluster(slots=4)
    c.submit(nsplits=2, reducers=6)
    run_maps(c)
    for _ in range(2):
        c.beat("h1"), c.beat("h2")
    reduces = c.running(stage="reduce")
    assert len(reduces) == 6
    producer = c.core.map_output_locations("job_1", "map")["outputs"][0]["attempt_id"]

    def state():
        return [a["state"] for a in c.status()["attempts"] if a["attempt_id"] == producer]
    for reporter in (reduces[0], reduces[0], reduces[1]):
        c.handle(FetchFailed(reporter, producer, "connection refused", c.now))
        assert state() == ["succeeded"]
    c.handle(FetchFailed(reduces[2], producer, "connection refused", c.now))
    assert state() == ["lost"]


def test_kill_job():
    c = Cluster()
    c.submit(nsplits=4)
    c.beat("h1"), c.beat("h2")
    running = c.running()
    assert not of(c.handle(KillJob("job_1", c.now)), JobFinished)
    kills = of(c.beat("h1") + c.beat("h2"), KillAttempt)
    assert sorted(k.attempt_id for k in kills) == running
    assert sorted(a.taskserver for a in of(c.log, CleanupJob)) == ["h1", "h2"]
    assert c.handle(KillJob("job_1", c.now)) == []   # already over
    # its output is removed once both taskservers have shown their attempts dead
    assert c.status()["state"] == "running"
    assert not of(c.beat("h1"), JobFinished)
    assert [(a.state, a.output_paths) for a in of(c.beat("h2"), JobFinished)] == [
        ("killed", ["/out"])]
    assert c.status()["state"] == "killed"
    assert c.running() == []
    with pytest.raises(NotFound):
        c.handle(KillJob("job_9", c.now))


def test_created_job_and_errors():
    c = Cluster()
    c.handle(JobCreated("job_1", "wc", "ann", "/jobs/job_1", 0.0))
    assert c.status()["state"] == "created"
    with pytest.raises(AlreadyExists):
        c.handle(JobCreated("job_1", "wc", "ann", "/jobs/job_1", 0.0))
    c.handle(KillJob("job_1", 0.0))
    assert c.status()["state"] == "killed"
    with pytest.raises(NotFound):
        c.core.job_status("nope")


def test_a_job_belongs_to_who_created_it_whatever_its_conf_says():
    c = Cluster()
    c.handle(JobCreated("job_1", "wc", "bob", "/jobs/job_1", 0.0))
    c.submit()   # job.json names "ann"
    assert c.core.job_owner("job_1") == c.status()["user"] == "bob"
    assert {a.user for a in of(c.beat("h1"), LaunchAttempt)} == {"bob"}
    with pytest.raises(NotFound):
        c.core.job_owner("job_9")


def test_empty_input_still_runs_the_reducers():
    c = Cluster()
    c.submit(nsplits=0, reducers=2)
    c.beat("h1")
    for aid in c.running():
        c.commit(aid)
        c.finish(aid)
    c.beat("h1")
    assert c.status()["state"] == "succeeded"


def test_event_ids_are_carried_as_causes():
    c = Cluster()
    c.submit()
    actions = c.core.handle(Heartbeat("h1", "h1", "/r1", 2, 2, "h1:1", [], 0.0, id="hb-7"))
    assert actions and {a.cause for a in actions} == {"hb-7"}


def test_three_stage_chain_and_outputs_no_longer_needed_are_not_rerun():
    conf = JobConf(name="chain", job_file="c.py", job_class="C", stages=[
        StageConf(id="a", input=["/in"], operations=[Operation("map", "m")],
                  output=OutputSpec(channel=FILE, partitions=2, sort=True)),
        StageConf(id="b", inputs=["a"], operations=[Operation("reduce", "r")],
                  output=OutputSpec(channel=FILE, partitions=1, sort=True)),
        StageConf(id="c", inputs=["b"], operations=[Operation("reduce", "r")],
                  output=OutputSpec(channel=DFS, path="/out")),
    ])
    c = Cluster(names=("h1", "h2", "h3"))
    splits = [Split((Segment("/in/f", i, 1),), ("h1",)) for i in range(2)]
    c.handle(JobSubmitted("job_1", conf, {"a": splits}, 0.0))
    c.beat("h1")
    for aid in c.running("h1", stage="a"):
        c.finish(aid)
    c.beat("h1")                         # a done: both b tasks start on h1
    assert len(c.running("h1", stage="b")) == 2
    for aid in c.running("h1", stage="b"):
        c.finish(aid)
    c.beat("h1", free=0)
    (last,) = [a.attempt_id for a in launches(c.beat("h2"))]
    assert "_c_" in last
    # h1 goes silent: a's outputs there are no longer needed (b is complete), b's are
    c.now += 11.0
    c.beat("h2"), c.beat("h3")
    c.handle(Tick(c.now))
    lost = sorted(a["attempt_id"] for a in c.status()["attempts"] if a["state"] == "lost")
    assert lost == ["job_1_b_00000_0", "job_1_b_00001_0"]
    assert c.running(stage="c") == [last]   # the consumer keeps running, waiting
    view = c.core.map_output_locations("job_1", "b")
    assert (view["outputs"], view["total"]) == ([], 2)
    c.beat("h2"), c.beat("h3")
    for aid in c.running(stage="b"):
        c.finish(aid)
    c.beat("h2"), c.beat("h3")
    assert len(c.core.map_output_locations("job_1", "b")["outputs"]) == 2
    assert isinstance(c.commit(last), CommitGranted)
    c.finish(last)
    c.beat("h2")
    assert c.status()["state"] == "succeeded"


def start_the_reduce(c, nsplits=1):
    """Run the maps of a one-reduce job_1 and launch its reduce; its attempt id."""
    c.submit(nsplits=nsplits, reducers=1)
    run_maps(c)
    c.beat("h1"), c.beat("h2")
    (reduce,) = c.running(stage="reduce")
    return reduce


def run_to_success(c):
    """Run a one-map, one-reduce job_1 until its last attempt is reported succeeded."""
    reduce = start_the_reduce(c)
    assert isinstance(c.commit(reduce), CommitGranted)
    c.finish(reduce)
    c.beat("h1"), c.beat("h2")


def test_a_job_is_running_until_its_output_is_committed():
    c = Cluster(hold_output=True)
    run_to_success(c)
    (done,) = of(c.log, JobFinished)
    assert (done.state, done.output_paths) == ("succeeded", ["/out"])
    assert c.status()["state"] == "running"    # no _SUCCESS yet: not final for clients
    assert [j["state"] for j in c.core.list_jobs()] == ["running"]
    assert c.handle(KillJob("job_1", c.now)) == []   # it has ended: nothing to kill
    with pytest.raises(FailedPrecondition, match="/out is the output of job job_1"):
        c.submit("job_2")
    with pytest.raises(NotFound):
        c.status("job_2")                      # refused before anything changed
    (stored,) = c.commit_output()              # the store holds "succeeded" already:
    assert [(t, r["state"], r["output_state"]) for t, r in stored.records] == \
        [("jobs", "succeeded", "closed")]      # only the output's state changes
    assert c.status()["state"] == "succeeded"
    c.submit("job_2")                          # the path is free (the DFS check is the shell's)
    assert c.status("job_2")["state"] == "running"
    with pytest.raises(AssertionError, match="illegal output transition closed -> closed"):
        c.handle(OutputCommitted("job_1", c.now))   # reported twice: a bug in the shell


def test_a_job_records_when_each_step_happened_and_keeps_it_across_a_restart(tmp_path):
    c = Cluster(hold_output=True)
    c.handle(JobCreated("job_1", "wc", "ann", "/jobs/job_1", 1.0))
    conf = compile_mapreduce("wc", "wc.py", "WordCount", {}, ["/in"], "/out", 1, True,
                             user="ann")
    c.now = 2.0   # the splits are computed after RunJob arrived
    c.handle(JobSubmitted("job_1", conf, {"map": [Split((Segment("/in/f", 0, 100),), ("h1",))]},
                          c.now, run_time=1.5))
    c.now = 3.0
    (m,) = launches(c.beat("h1"))
    held = c.held["h1"][m.attempt_id]
    held.taskhost_start_time, held.input_end_time = 3.1, 3.2   # the taskserver's clock
    c.now = 3.3
    c.beat("h1")
    assert {k: c.status()["attempts"][0][k] for k in (
        "start_time", "taskhost_start_time", "input_end_time", "done_time", "end_time")} == {
        "start_time": 3.0, "taskhost_start_time": 3.1, "input_end_time": 3.2,
        "done_time": 0.0, "end_time": 0.0}
    c.finish(m.attempt_id)
    held.done_time = 3.4
    c.now = 3.5
    (r,) = launches(c.beat("h1"))   # the map's end makes the reduce runnable at once
    c.held["h1"][r.attempt_id].taskhost_start_time = 3.6
    c.now = 3.8
    assert isinstance(c.commit(r.attempt_id), CommitGranted)
    c.now = 3.9
    assert isinstance(c.commit(r.attempt_id), CommitGranted)   # asked again: the first
    c.finish(r.attempt_id)
    held = c.held["h1"][r.attempt_id]
    held.input_end_time, held.done_time = 3.7, 3.95
    c.now = 4.0
    c.beat("h1")
    assert c.status()["commit_time"] == 0.0   # its output is not committed yet
    c.now = 4.5
    c.commit_output()

    def times(status):
        return ({k: status[k] for k in ("submit_time", "run_time", "start_time", "end_time",
                                        "commit_time")},
                [(a["start_time"], a["taskhost_start_time"], a["input_end_time"],
                  a["commit_time"], a["done_time"], a["end_time"]) for a in status["attempts"]])

    expected = ({"submit_time": 1.0, "run_time": 1.5, "start_time": 2.0, "end_time": 4.0,
                 "commit_time": 4.5},
                [(3.0, 3.1, 3.2, 0.0, 3.4, 3.5), (3.5, 3.6, 3.7, 3.8, 3.95, 4.0)])
    assert times(c.status()) == expected
    c.restart()
    assert times(c.status()) == expected
    rows = stored_in_a_job_store(c.log, tmp_path)   # the store has a column for each
    assert times(restore(rows)[0].job_status("job_1")) == expected


def test_a_failed_output_commit_fails_the_job():
    c = Cluster(hold_output=True)
    run_to_success(c)
    (persist,) = c.commit_output(error="no live dataserver")
    ((table, row),) = persist.records
    assert (table, row["state"]) == ("jobs", "failed")
    st = c.status()
    assert st["state"] == "failed"
    assert st["error"] == "the job's output could not be committed: no live dataserver"
    assert st["stages"][1]["succeeded"] == 1   # the tasks did succeed
    c.submit("job_2")                          # the output path is free again


def test_a_failed_removal_leaves_the_job_as_it_ended():
    c = Cluster(hold_output=True)
    c.submit()
    c.handle(KillJob("job_1", c.now))   # before any attempt ran: no one to wait for
    (done,) = of(c.log, JobFinished)
    assert (done.state, done.output_paths) == ("killed", ["/out"])
    assert c.status()["state"] == "running"    # while its output is removed
    assert not of(c.commit_output(error="no live dataserver"), JobFinished)
    assert (c.status()["state"], c.status()["error"]) == ("killed", "killed by request")
    # a job killed before it was submitted has no output: final at once
    c.handle(JobCreated("job_2", "wc", "ann", "/jobs/job_2", c.now))
    (done,) = of(c.handle(KillJob("job_2", c.now)), JobFinished)
    assert done.output_paths == [] and not c.finishing
    assert c.status("job_2")["state"] == "killed"


def check_invariants(core):
    for task in core._tasks.values():
        active = task.active()
        # one attempt at a time, and a backup beside it at most, once in the task's life
        assert len(active) <= 1 + sum(a.speculative for a in active), task.id
        assert sum(a.speculative for a in task.attempts) <= 1, task.id
        assert len({a.taskserver for a in active}) == len(active), task.id
        placed = task.id in core.scheduler
        assert not (placed and task.id in core._backoff), task.id
        assert (placed or task.id in core._backoff) == (task.state == "pending"), task.id
        assert (task.output is not None) == (task.state == "succeeded"), task.id
        if task.state == "running":
            assert active, task.id
        if task.state == "pending" and task.job.state == "running":
            assert task.stage.inputs_ready(), task.id
        if task.committer is not None:
            holder = core._attempts[task.committer]
            assert holder.state in ("assigned", "running", "succeeded"), task.id
    for job in core._jobs.values():
        for stage in job.stages.values():
            assert stage.succeeded == sum(t.state == "succeeded" for t in stage.tasks)
    for ts in core._taskservers.values():
        for a in ts.active.values():
            assert a.state in ("assigned", "running") and a.taskserver == ts.name
    for job in core._jobs.values():   # a job's output paths are its own until closed
        owned = [p for p in job.output_paths if core._writers.get(p) == job.id]
        assert owned == (job.output_paths if job.output != "closed" else []), job.id
        assert (job.output == "open") == (job.state in ("created", "running")), job.id


def run_with_faults(seed, each_step=lambda c, step: None, max_task_attempts=6, restarts=(),
                    **limits):
    """A job of 30 maps and 4 reduces on four taskservers that crash, come back, fail
    attempts (by user and system errors) and lose map outputs for 300 steps, then behave;
    stragglers get backup attempts (running attempts report no progress), nodes are
    blacklisted for the job after 3 user errors there;
    killed attempts die some steps after the order; the finisher commits (or removes) the
    job's output some steps after the job ends, or fails to; the jobserver restarts at the
    steps in `restarts`. `each_step(c, step)` is called after every step. Returns
    (cluster, landed, commit error)."""
    import random
    rng = random.Random(seed)
    names = ["h1", "h2", "h3", "h4"]
    c = Cluster(names=names, max_task_attempts=max_task_attempts, hold_output=True,
                slow_kills=True, retry_backoff=1.0, rand=rng.random, speculative=True,
                **limits)
    c.submit(nsplits=30, reducers=4, hosts=lambda i: (names[i % 4], names[(i + 1) % 4]))
    landed = {}   # task -> attempt whose rename landed (a part file exists)
    down = set()
    commit_error = ""
    for step in range(1000):
        chaos = step < 300
        c.now += 0.5
        if step in restarts:
            c.restart()
            check_invariants(c.core)
        for n in names:
            if n in down:
                if not chaos or rng.random() < 0.05:   # it comes back, holding nothing
                    down.discard(n)
                    c.held[n] = {}
                continue
            if chaos and rng.random() < 0.02:
                down.add(n)   # silent from now on (crashed or cut off)
                continue
            for aid, s in list(c.held[n].items()):
                if s.state != "running":
                    continue
                if aid in c.killing and rng.random() < 0.3:
                    c.killing.discard(aid)
                    s.state = "killed"
                    continue
                r = rng.random()
                if r < 0.1:
                    if "_reduce_" in aid:
                        if not isinstance(c.commit(aid), CommitGranted):
                            continue
                        task = aid.rsplit("_", 1)[0]
                        landed.setdefault(task, aid)   # rename only if no part file yet
                    c.finish(aid)
                elif chaos and r < 0.11:
                    c.finish(aid, "failed", "RuntimeError: flaky", failure="user")
                elif chaos and r < 0.12:
                    c.finish(aid, "failed", "Unavailable: nameserver",
                             failure=rng.choice(["system", "node"]))
                elif chaos and r < 0.13 and "_reduce_" in aid:
                    outputs = c.core.map_output_locations("job_1", "map")["outputs"]
                    if outputs:
                        victim = rng.choice(outputs)["attempt_id"]
                        c.handle(FetchFailed(aid, victim, "connection reset", c.now))
            c.beat(n)
            check_invariants(c.core)
        c.handle(Tick(c.now))
        check_invariants(c.core)
        each_step(c, step)
        if "job_1" in c.finishing:
            assert c.status()["state"] == "running"   # until the output is committed
            if rng.random() < 0.2:
                commit_error = "DataServer unavailable" if rng.random() < 0.3 else ""
                c.commit_output("job_1", commit_error)
                check_invariants(c.core)
        if c.status()["state"] != "running":
            break
    return c, landed, commit_error


def grants_by_task(log):
    """task id -> the attempts granted its commit, over every CommitGranted in `log`."""
    grants = {}
    for g in of(log, CommitGranted):
        grants.setdefault(g.attempt_id.rsplit("_", 1)[0], set()).add(g.attempt_id)
    return grants


def winners_of(status):
    return {a["task_id"]: a["attempt_id"] for a in status["attempts"]
            if a["state"] == "succeeded"}


@pytest.mark.parametrize("seed", range(10))
def test_random_faults_keep_the_state_consistent_and_the_job_finishes(seed):
    c, landed, commit_error = run_with_faults(seed)
    st = c.status()
    (done,) = of(c.log, JobFinished)
    assert st["state"] in ("succeeded", "failed"), st["state"]
    assert c.core._writers == {}   # the output is free for the next job
    grants = grants_by_task(c.log)
    if done.state == "succeeded":
        winners = winners_of(st)
        assert len(winners) == 30 + 4
        for task, aid in winners.items():
            if "_reduce_" in task:
                assert aid in grants[task]
                assert landed[task] in grants[task]
        if commit_error:
            assert st["state"] == "failed"
            assert st["error"] == f"the job's output could not be committed: {commit_error}"
        else:
            assert st["state"] == "succeeded"
    else:
        assert st["state"] == "failed" and ("RuntimeError: flaky" in st["error"]
                                            or "system errors" in st["error"]), st["error"]
    for task in c.core._tasks.values():   # only user errors use up a task's attempts
        assert task.failures == sum(a.failure == "user" for a in task.attempts)


def test_one_attempt_or_taskserver_is_viewed_as_the_whole_lists_show_it():
    """`jetshell logs` looks up one attempt and its taskserver without building the job's
    whole status; what it finds is what the lists hold."""
    c, _, _ = run_with_faults(3)
    core = c.core
    attempts = core.job_status("job_1")["attempts"]
    assert len(attempts) > 34   # faults made retries
    for a in attempts:
        assert core.attempt_status("job_1", a["attempt_id"]) == a
    assert core.attempt_status("job_1", "job_1_map_00000_99") is None
    with pytest.raises(NotFound):
        core.attempt_status("job_9", attempts[0]["attempt_id"])
    for t in core.taskservers():
        assert core.taskserver(t["name"]) == t
    assert core.taskserver("nobody") is None


@pytest.mark.parametrize("seed", range(8))
def test_random_faults_and_jobserver_restarts_still_finish_the_job_exactly_once(seed):
    """The same run, the jobserver restarting three times at random steps (the chaos phase
    included): the job resumes each time and ends; at most one attempt's output landed per
    reduce task, and it held a grant; a succeeded job has every task's winner."""
    import random
    restarts = set(random.Random(seed).sample(range(5, 400), 3))
    c, landed, commit_error = run_with_faults(seed + 200, restarts=restarts)
    st = c.status()
    assert st["state"] in ("succeeded", "failed"), st["state"]
    assert c.core._writers == {}
    grants = grants_by_task(c.log)
    for task, aid in landed.items():
        assert aid in grants[task]
    if st["state"] == "succeeded":
        winners = winners_of(st)
        assert len(winners) == 30 + 4
        for task, aid in winners.items():
            if "_reduce_" in task:
                assert aid in grants[task]
    else:
        assert commit_error or "RuntimeError: flaky" in st["error"] \
            or "system errors" in st["error"], st["error"]


@pytest.mark.parametrize("seed", range(5))
def test_random_faults_with_tight_limits_end_the_job_cleanly(seed):
    """With 2 attempts and 2 system retries per task, jobs also fail by either limit: the
    output is still released only once no attempt of the job can run (Cluster.handle)."""
    c, _, _ = run_with_faults(seed + 100, max_task_attempts=2, system_retries=2)
    assert c.status()["state"] in ("succeeded", "failed")
    assert c.core._writers == {}


def test_system_errors_back_off_and_do_not_use_up_attempts():
    c = Cluster(max_task_attempts=2, system_retries=3, retry_backoff=1.0,
                rand=lambda: 1.0)   # no jitter: whole back-offs
    c.submit(nsplits=1, reducers=1)
    (first,) = launches(c.beat("h1"))
    tries = [first.attempt_id]
    for backoff in (1.0, 2.0, 4.0):
        c.finish(tries[-1], "failed", "Unavailable: cannot reach the nameserver",
                 failure="system")
        c.beat("h1")
        c.now += backoff - 0.1
        assert not launches(c.beat("h1"))   # still backing off
        c.now += 0.1
        (again,) = launches(c.beat("h1"))   # the same node: the cluster was the cause
        tries.append(again.attempt_id)
    st = c.status()
    assert st["state"] == "running"   # three system errors and max_task_attempts=2
    assert [a["failure"] for a in st["attempts"]] == ["system"] * 3 + [""]
    counters = {x["name"]: x["value"] for x in st["counters"] if x["group"] == "job"}
    assert (counters["system_failed_attempts"], counters["user_failed_attempts"]) == (3, 0)
    # one more is past system_retries: the job fails, saying it was not the job's fault
    c.finish(tries[-1], "failed", "FailedPrecondition: nameserver is in safe mode",
             failure="system")
    c.beat("h1")
    st = c.status()
    assert st["state"] == "failed"
    assert st["error"].startswith("task job_1_map_00000 hit 4 system errors")
    assert "not the job's fault" in st["error"] and "safe mode" in st["error"]


def test_a_node_error_moves_the_task_and_a_user_error_counts():
    c = Cluster(max_task_attempts=2, retry_backoff=1.0, rand=lambda: 0.0)
    c.submit(nsplits=1, reducers=1, hosts=lambda i: ("h1",))
    c.beat("h2", free=0)
    (first,) = launches(c.beat("h1"))
    c.finish(first.attempt_id, "failed", "OSError: [Errno 28] No space left on device",
             failure="node")
    c.beat("h1")
    c.now += 0.5   # half the back-off (jitter 0)
    assert not launches(c.beat("h1"))   # h1 is avoided
    (second,) = launches(c.beat("h2"))
    c.finish(second.attempt_id, "failed", "ValueError: bad record", "tb", failure="user")
    c.beat("h2")
    (third,) = launches(c.beat("h1"))   # a user error: retried at once
    c.finish(third.attempt_id, "failed", "ValueError: bad record", "tb", failure="user")
    c.beat("h1")
    c.beat("h1"), c.beat("h2")
    st = c.status()
    assert st["state"] == "failed" and "failed 2 times" in st["error"]
    assert [a["failure"] for a in st["attempts"]] == ["node", "user", "user"]


def test_a_lost_attempt_is_a_node_error_and_backs_off():
    c = Cluster(retry_backoff=2.0, rand=lambda: 1.0)
    c.submit(nsplits=1, reducers=1)
    (first,) = launches(c.beat("h1"))
    del c.held["h1"][first.attempt_id]   # the taskserver restarted and lost it
    assert not launches(c.beat("h1") + c.beat("h2"))
    c.now += 2.0
    assert len(launches(c.beat("h2"))) == 1
    st = c.status()
    assert [(a["state"], a["failure"]) for a in st["attempts"]] == [("lost", "node"),
                                                                    ("assigned", "")]


def test_the_output_waits_for_a_silent_taskserver_to_be_declared_lost():
    c = Cluster(names=("h1", "h2"), slots=1)
    c.submit(nsplits=2, reducers=1)
    c.beat("h1"), c.beat("h2")
    c.beat("h1"), c.beat("h2")
    assert len(c.running("h2")) == 1
    c.now += 5.0
    c.handle(KillJob("job_1", c.now))
    c.beat("h1"), c.beat("h1")   # h1's attempt is gone; h2 says nothing (cut off)
    assert not of(c.log, JobFinished) and c.status()["state"] == "running"
    c.now += 11.0
    c.beat("h1")
    c.handle(Tick(c.now))   # h2 declared lost: its attempts are as dead as can be known
    (done,) = of(c.log, JobFinished)
    assert done.state == "killed" and c.status()["state"] == "killed"


def test_a_zombie_reported_while_the_output_waits_is_waited_for_too():
    c = Cluster(slow_kills=True)
    c.submit(nsplits=1, reducers=1)
    (first,) = launches(c.beat("h1"))
    c.handle(KillJob("job_1", c.now))
    c.beat("h1"), c.beat("h1"), c.beat("h1")   # the kill has not landed: still running
    assert not of(c.log, JobFinished)
    assert [k.attempt_id for k in of(c.log, KillAttempt)] == [first.attempt_id] * 3
    c.held["h1"][first.attempt_id].state = "killed"
    c.beat("h1")
    (done,) = of(c.log, JobFinished)
    assert done.state == "killed"


def test_taskservers_are_told_to_clean_up_jobs_that_ended_or_are_unknown():
    c = Cluster()
    c.submit(nsplits=1, reducers=1)
    c.beat("h1")
    beat = Heartbeat("h2", "h2", "/r1", 2, 2, "h2:7000", [], c.now,
                     jobs=["job_1", "job_0_earlier"])   # e.g. after a jobserver restart
    assert [(a.taskserver, a.job_id) for a in of(c.handle(beat), CleanupJob)] == [
        ("h2", "job_0_earlier")]   # job_1 runs: its files stay
    c.handle(KillJob("job_1", c.now))
    beat.now = c.now = c.now + 1
    assert [a.job_id for a in of(c.handle(beat), CleanupJob)] == ["job_1", "job_0_earlier"]


def test_a_page_of_a_big_job_shows_its_troubled_and_latest_attempts():
    """With attempt_limit a job's view carries at most that many attempts, in their order:
    the failed and lost ones first, then the latest started; the rest is as without."""
    c, _, _ = run_with_faults(3)
    core = c.core
    whole = core.job_status("job_1")
    every = whole["attempts"]
    troubled = [a for a in every if a["state"] in ("failed", "lost")]
    limit = len(troubled) + 5
    assert troubled and limit < len(every)
    some = core.job_status("job_1", attempt_limit=limit)
    shown = some["attempts"]
    assert len(shown) == limit and all(a in shown for a in troubled)
    assert shown == [a for a in every if a in shown]   # in the job's order
    others = sorted((a for a in every if a not in troubled), key=lambda a: a["start_time"])
    assert min(a["start_time"] for a in shown if a not in troubled) >= \
        others[-5]["start_time"]
    assert {k: v for k, v in some.items() if k != "attempts"} == \
        {k: v for k, v in whole.items() if k != "attempts"}
    assert core.job_status("job_1", attempt_limit=len(every))["attempts"] == every
    few = core.job_status("job_1", attempt_limit=2)["attempts"]   # the latest troubles
    assert few == troubled[-2:]


def test_only_a_jobs_own_changes_wake_its_waiters():
    # a heartbeat that only launches or reports progress leaves a job's waiters asleep
    c = Cluster()
    assert any(map(changes_a_job, c.submit()))
    launched = c.beat("h1")
    assert launches(launched) and not any(map(changes_a_job, launched))
    for aid in c.running(stage="map"):
        c.finish(aid)
    ended = c.beat("h1")   # maps succeeded: their attempts' and tasks' rows only
    assert any(isinstance(a, Persist) for a in ended) and not any(map(changes_a_job, ended))
    killed = c.handle(KillJob("job_1", c.now))   # the job's row, and its end
    assert [changes_a_job(a) for a in killed] == [True, True]
