"""What the jobserver core gives /metrics, without processes: how long each task was runnable
before its attempt was assigned (LaunchAttempt.waited), totals counted as things happen that
keep their values when jobs retire and count a restored job's past nowhere, and tallies of
what is current."""
from minijet.jobserver.model import KillJob, Tick
from test_jobserver_model import Cluster, launches


def test_a_launch_says_how_long_its_task_was_runnable():
    c = Cluster(retry_backoff=1.0, rand=lambda: 1.0)   # no jitter: a 1s back-off
    c.submit(nsplits=1, reducers=1)                    # its map is runnable at 0
    c.now = 2.0
    (first,) = launches(c.beat("h1"))
    assert first.waited == 2.0
    c.finish(first.attempt_id, "failed", "Unavailable: no nameserver", failure="system")
    c.now = 3.0
    assert not launches(c.beat("h1", free=0))   # its failure seen at 3: eligible at 4
    c.now = 4.5
    (retry,) = launches(c.beat("h1"))
    assert retry.waited == 0.5                  # from the end of the back-off
    c.finish(retry.attempt_id)
    c.now = 6.0
    assert not launches(c.beat("h1", free=0))   # the map's end seen at 6: the reduce is ready
    c.now = 7.0
    (reduce,) = launches(c.beat("h2"))
    assert reduce.waited == 1.0


def run_on(c, name, job_id="job_1"):
    """Heartbeat from `name` until the job ends, every attempt launched succeeding."""
    for _ in range(5):
        c.beat(name)
        for aid in c.running(name):
            c.commit(aid)
            c.finish(aid)
    assert c.status(job_id)["state"] == "succeeded"


def test_totals_keep_counting_through_retirement_and_a_restart_counts_nothing_twice():
    c = Cluster(retained_jobs=1)
    c.submit(nsplits=1, reducers=1)
    (m,) = launches(c.beat("h1"))
    c.finish(m.attempt_id, "failed", "ValueError: bad record", failure="user")
    assert c.core.tallies() == {"jobs": {"running": 1}, "tasks": {"running": 1, "waiting": 1},
                                "retained_jobs": 0}
    run_on(c, "h1")   # (the only taskserver known: the retry runs there too)
    totals = {"jobs_finished": {"succeeded": 1},
              "attempts_ended": {"failed": 1, "succeeded": 2},
              "attempts_failed": {"user": 1},
              "assignments": {"node-local": 2, "none": 1}}
    assert c.core.totals() == totals
    assert c.core.tallies() == {"jobs": {}, "tasks": {}, "retained_jobs": 1}

    c.now = 10.0
    c.submit("job_2", nsplits=1, reducers=1)
    c.handle(KillJob("job_2", c.now))
    c.handle(Tick(c.now))   # job_1 retires: one finished job is retained
    assert not c.core.holds("job_1") and c.core.tallies()["retained_jobs"] == 1
    totals["jobs_finished"]["killed"] = 1
    assert c.core.totals() == totals   # job_1's figures stay counted

    # a restart: the finished jobs restored count nothing; a running one counts its end once
    c.submit("job_3", nsplits=1, reducers=1)
    c.restart()
    c.handle(Tick(c.now))
    assert c.core.totals() == {name: {} for name in totals}
    assert c.core.tallies() == {"jobs": {"running": 1}, "tasks": {"pending": 1, "waiting": 1},
                                "retained_jobs": 1}
    run_on(c, "h1", "job_3")
    assert c.core.totals() == {"jobs_finished": {"succeeded": 1},
                               "attempts_ended": {"succeeded": 2}, "attempts_failed": {},
                               "assignments": {"node-local": 1, "none": 1}}
