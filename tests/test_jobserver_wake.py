"""Work reaching idle taskservers at once: the core names the taskservers to wake (pure),
and on a live cluster whose taskservers heartbeat only every 30 s a job still starts, runs
its reduces and is seen finished by its client within moments."""
from __future__ import annotations

import time
from pathlib import Path

from minijet.client import JetClient
from minijet.jobconf import compile_mapreduce
from minijet.jobserver.model import Heartbeat, JobServerCore, JobSubmitted
from minijet.splits import Segment, Split

WORDCOUNT = str(Path(__file__).resolve().parents[1] / "examples" / "wordcount" / "wordcount.py")


def heartbeat(core, name, free, now=0.0):
    return core.handle(Heartbeat(name, name, "/r1", 2, free, f"{name}:7000", [], now))


def submit(core, nsplits):
    conf = compile_mapreduce("wc", "wc.py", "WordCount", {}, ["/in"], "/out", 1, True,
                             user="ann")
    splits = [Split((Segment("/in/f", i * 100, 100),), ()) for i in range(nsplits)]
    core.handle(JobSubmitted("job_1", conf, {"map": splits}, 0.0, job_dir="/jobs/job_1"))


def test_idle_taskservers_are_woken_once_per_pending_task_until_they_heartbeat():
    core = JobServerCore(locality_delay=0.0)
    for name in ("h1", "h2", "h3"):
        heartbeat(core, name, free=2)
    assert core.to_wake() == []          # nothing pending: nobody is woken
    submit(core, nsplits=2)
    woken = core.to_wake()
    assert len(woken) == 2 and set(woken) <= {"h1:7000", "h2:7000", "h3:7000"}
    assert core.to_wake() == []          # each once, until it heartbeats again
    heartbeat(core, woken[0].split(":")[0], free=2)   # takes both maps (2 free slots)
    assert core.to_wake() == []


def test_a_busy_or_lost_taskserver_is_not_woken():
    core = JobServerCore(locality_delay=0.0)
    heartbeat(core, "h1", free=0)
    submit(core, nsplits=1)
    assert core.to_wake() == []


def test_a_job_runs_at_once_although_taskservers_heartbeat_every_30s(fresh_job_cluster):
    lc = fresh_job_cluster(taskserver={"heartbeat_interval": "30s"},
                           jobserver={"locality_delay": "0s", "taskserver_timeout": "120s"})
    with JetClient(lc.config) as jc:
        with jc.dfs.create("/wake/in.txt") as f:
            f.write(b"a b a\nc a b\n" * 100)
        # every taskserver has heartbeated (registered) once at its start
        started = time.monotonic()
        job = jc.submit(WORDCOUNT, "WordCount", ["/wake/in.txt", "/wake/out", "--reducers", "3"])
        # polled every 60 s: only an answer at the job's end can return before that
        status = jc.wait_for_completion(job, poll=60, timeout=120)
        took = time.monotonic() - started
    assert status.state == "succeeded"
    assert took < 20, f"the job took {took:.1f}s: its tasks waited for heartbeats"
    reduces = [a for a in status.attempts if "_reduce_" in a.attempt_id]
    assert len({a.taskserver for a in reduces}) >= 2   # the idle taskservers got reduces too


def test_a_client_following_a_job_gets_its_attempts_only_at_the_end(job_cluster):
    """`jetshell run` shows a job's progress every half second: those statuses leave out
    the attempts (a big job has many thousands, built under the jobserver's lock and sent
    each time); the final status has them all."""
    testjobs = str(Path(__file__).parent / "jobs" / "testjobs.py")
    with JetClient(job_cluster.config) as jc:
        with jc.dfs.create("/follow/in.txt") as f:
            f.write(b"a b a\nc a b\n" * 100)
        job = jc.submit(testjobs, "SlowWordCount",
                        ["/follow/in.txt", "/follow/out", "--reducers", "2", "--delay", "1.5"])
        seen = []
        final = jc.wait_for_completion(job, seen.append, poll=0.1, timeout=120)
    assert final.state == "succeeded"
    assert len(seen) >= 5 and seen[-1] is final
    assert all(not st.attempts for st in seen[:-1])
    assert any(st.stages and st.stages[0].running for st in seen[:-1])   # progress shown
    assert {a.task_id.rsplit("_", 2)[-2] for a in final.attempts} == {"map", "reduce"}
