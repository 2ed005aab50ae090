"""Bad nodes in the jobserver core: a taskserver on which a job's attempts failed 3 times
(user errors) gets no more of that job's tasks; one that 3 jobs blacklisted is greylisted
for all jobs until forgiven. Taskservers are simulated by test_jobserver_model's Cluster."""
from minijet.jobconf import compile_mapreduce
from minijet.jobserver.badnodes import BadNodes
from minijet.jobserver.model import JobSubmitted, Tick
from minijet.splits import Segment, Split

from test_jobserver_model import Cluster, launches


def submit(c, job_id, nsplits=4):
    """A map-only job of its own output path, its splits on h1."""
    conf = compile_mapreduce("wc", "wc.py", "WordCount", {}, ["/in"], f"/out/{job_id}", 0,
                             False, user="ann")
    splits = [Split((Segment("/in/f", i * 100, 100),), ("h1",)) for i in range(nsplits)]
    c.handle(JobSubmitted(job_id, conf, {"map": splits}, c.now, job_dir=f"/jobs/{job_id}"))


def fail_everything_on(c, name, job_id):
    """Run `job_id`'s tasks on `name` and fail each by a user error until none is given."""
    failed = 0
    while True:
        given = [a for a in launches(c.beat(name)) if a.job_id == job_id]
        if not given:
            return failed
        for a in given:
            c.finish(a.attempt_id, "failed", "ImportError: no module named lxml",
                     failure="user")
            failed += 1


def node(c, name):
    (view,) = [t for t in c.core.taskservers() if t["name"] == name]
    return view


def test_a_node_failing_a_jobs_attempts_three_times_gets_no_more_of_its_tasks():
    c = Cluster(names=("h1", "h2"), max_task_attempts=4)
    submit(c, "job_1", nsplits=6)
    c.beat("h2", free=0)
    assert fail_everything_on(c, "h1", "job_1") == 4   # two slots: 2, then 2 more
    c.beat("h1")
    assert node(c, "h1")["blacklists"] == 1 and node(c, "h1")["greylisted_since"] == 0
    c.now += 10.0   # long past the locality delay: the failed tasks may go anywhere
    assert not launches(c.beat("h1"))
    assert len(launches(c.beat("h2"))) == 2   # the job goes on elsewhere
    submit(c, "job_2")
    assert [a.job_id for a in launches(c.beat("h1"))] == ["job_2", "job_2"]   # others run


def test_a_job_blacklisting_every_live_node_still_runs():
    c = Cluster(names=("h1",), max_task_attempts=5)
    submit(c, "job_1", nsplits=3)
    for a in launches(c.beat("h1")):
        c.finish(a.attempt_id, "failed", "ImportError: no module named lxml", failure="user")
    first, _ = launches(c.beat("h1"))
    c.finish(first.attempt_id, "failed", "ImportError: no module named lxml", failure="user")
    again = launches(c.beat("h1"))
    assert node(c, "h1")["blacklists"] == 1 and len(again) == 1   # nowhere else to go


def test_three_jobs_blacklisting_a_node_greylist_it_until_forgiven():
    c = Cluster(names=("h1", "h2"), max_task_attempts=4, greylist_forgive=60.0)
    c.beat("h2", free=0)
    for n, job_id in enumerate(["job_1", "job_2", "job_3"], 1):
        submit(c, job_id)
        c.now += 1.0
        assert fail_everything_on(c, "h1", job_id) >= 3
        c.beat("h1")
        assert node(c, "h1")["blacklists"] == n
    assert node(c, "h1")["greylisted_since"] == c.now
    submit(c, "job_4")
    c.now += 30.0
    c.beat("h2", free=0)
    assert not launches(c.beat("h1"))   # greylisted: not even a fresh job's tasks
    c.handle(Tick(c.now))
    c.now += 30.0
    c.beat("h2", free=0), c.beat("h1")
    c.handle(Tick(c.now))
    assert node(c, "h1")["greylisted_since"] == 0 and node(c, "h1")["blacklists"] == 0
    assert {a.job_id for a in launches(c.beat("h1"))} == {"job_4"}   # forgiven


def test_a_resumed_job_remembers_where_it_failed():
    c = Cluster(names=("h1", "h2"), max_task_attempts=4)
    submit(c, "job_1", nsplits=6)
    c.beat("h2", free=0)
    fail_everything_on(c, "h1", "job_1")
    c.beat("h1")
    c.restart()
    c.beat("h2")   # the restored tasks want h1: h2 waits out the locality delay
    c.now += 2.0
    assert not launches(c.beat("h1"))
    assert launches(c.beat("h2"))


def test_greylists_count_blacklistings_within_the_forgiveness_window():
    bad = BadNodes(forgive=100.0)
    alive = {"h1", "h2"}
    for job_id, when in (("j1", 0.0), ("j2", 50.0)):
        for _ in range(3):
            bad.user_failure(job_id, "h1", when)
    assert bad.excluded_jobs("h1", alive) == {"j1", "j2"} and not bad.excluded_jobs("h2", alive)
    bad.job_ended("j1")
    assert bad.excluded_jobs("h1", alive) == {"j2"}
    bad.forgive_until(120.0)   # j1's blacklisting is too old to count
    assert bad.view("h1") == {"blacklists": 1, "greylisted_since": 0.0}
    for job_id in ("j3", "j4"):
        for _ in range(3):
            bad.user_failure(job_id, "h1", 130.0)
    assert bad.view("h1") == {"blacklists": 3, "greylisted_since": 130.0}
    assert bad.greylisted("h1", alive) and not bad.greylisted("h1", {"h1"})   # the last one
    bad.forgive_until(229.0)
    assert bad.greylisted("h1", alive)
    bad.forgive_until(230.0)
    assert not bad.greylisted("h1", alive) and bad.view("h1")["blacklists"] == 0


# ---- with real processes ----

def test_a_node_failing_a_jobs_maps_stops_getting_its_tasks_on_a_real_cluster(job_cluster):
    """Every map attempt on host2 fails: after 3 failures there (at most 4: its two slots)
    host2 gets no more of the job's 12 maps nor its reduces, the job succeeds elsewhere,
    and `jetshell nodes` shows host2 blacklisted."""
    from minijet.client import JetClient

    from test_jobs_e2e import (TESTJOBS, block_size, expected_counts, jetshell, make_text,
                               put_bytes, read_counts)

    dfs = job_cluster.client()
    text = make_text(seed=71, size=12 * block_size(job_cluster))
    # whole lines in 12 blocks: every map then has records (a 13th block's few bytes may lie
    # inside a line begun before it, and its map would succeed on host2 without mapping)
    text = text[:text.rindex(b"\n", 0, 12 * block_size(job_cluster)) + 1]
    put_bytes(dfs, "/badnode/in.txt", text)
    with JetClient(job_cluster.config) as jc:
        job_id = jc.submit(TESTJOBS, "BadHostWordCount",
                           ["/badnode/in.txt", "/badnode/out", "--bad-host", "host2",
                            "--reducers", "3"])
        st = jc.wait_for_completion(job_id, timeout=60)
        nodes = {t.host: t for t in jc.list_taskservers()}
    assert st.state == "succeeded", st.error
    assert read_counts(dfs, "/badnode/out") == expected_counts(text)
    on_host2 = [a for a in st.attempts if a.host == "host2"]
    assert 3 <= len(on_host2) <= 4, [(a.attempt_id, a.state) for a in on_host2]
    assert all(a.state == "failed" and a.failure == "user" for a in on_host2), \
        [(a.attempt_id, a.state, a.failure, a.error) for a in on_host2]
    assert nodes["host2"].blacklists >= 1 and not nodes["host2"].greylisted_since
    header, *rows = jetshell(job_cluster, "nodes").stdout.splitlines()
    (row,) = [line.split() for line in rows if line.split()[1] == "host2"]
    assert header.split()[-3] == "blacklists" and int(row[-3]) >= 1
    dfs.close()
