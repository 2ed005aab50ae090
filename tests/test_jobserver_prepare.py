"""A submitted job built outside the core's lock (JobServerCore.prepare) and swapped in
behaves as one handled whole; building it changes nothing in the core."""
from minijet.jobconf import compile_mapreduce
from minijet.jobserver.model import (Heartbeat, JobCreated, JobServerCore, JobSubmitted,
                                     LaunchAttempt, Persist)
from minijet.splits import Segment, Split

RACKS = {f"h{i}": f"/r{i % 2}" for i in range(4)}


def core():
    c = JobServerCore(locality_delay=0.0, rack_of=RACKS.__getitem__)
    c.handle(JobCreated("job_1", "wc", "ann", "/jobs/job_1", 0.0, request_id="req-1"))
    return c


def submitted():
    conf = compile_mapreduce("wc", "wc.py", "WordCount", {}, ["/in"], "/out", 2, True,
                             user="bob")
    splits = [Split((Segment("/in/f", i * 100, 100),), (f"h{i % 4}",)) for i in range(6)]
    return JobSubmitted("job_1", conf, {"map": splits}, 1.0, job_dir="/jobs/job_1")


def run(c):
    """Heartbeats of every host until nothing more is launched: what ran where."""
    launched = []
    for name in RACKS:
        launched += [(a.taskserver, a.task_id) for a in c.handle(
            Heartbeat(name, name, RACKS[name], 2, 2, f"{name}:7000", [], 2.0))
            if isinstance(a, LaunchAttempt)]
    return launched


def test_a_prepared_job_runs_as_one_handled_whole_and_its_rows_are_left_to_the_shell():
    whole, swapped = core(), core()
    [persist] = [a for a in whole.handle(submitted()) if isinstance(a, Persist)]

    ev = submitted()
    ev.prepared = swapped.prepare(ev)
    assert swapped.job_status("job_1")["state"] == "created"   # building changed nothing
    assert len(swapped.scheduler) == 0
    [swapped_persist] = [a for a in swapped.handle(ev) if isinstance(a, Persist)]

    # the job's own row under the lock; its tasks' rows were the shell's to store
    assert [t for t, _ in swapped_persist.records] == ["jobs"]
    assert sorted(ev.prepared.records + swapped_persist.records, key=repr) == \
        sorted(persist.records, key=repr)
    for c in (whole, swapped):
        st = c.job_status("job_1")
        assert (st["user"], st["state"], c.job_of_request("req-1")) == ("ann", "running",
                                                                         "job_1")
    assert whole.job_status("job_1") == swapped.job_status("job_1")
    launched = run(whole)
    assert launched == run(swapped) and len(launched) == 6   # every map, node-local
