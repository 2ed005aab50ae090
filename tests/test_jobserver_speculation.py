"""Speculative execution in the jobserver core: a straggler, once most of its stage is done,
gets one backup attempt on another node; the first to finish wins, the other is killed and
is no failure. Taskservers are simulated by test_jobserver_model's Cluster."""
import pytest

from minijet.jobconf import compile_mapreduce
from minijet.jobserver.model import CommitDenied, CommitGranted, JobSubmitted, KillAttempt, Tick
from minijet.jobserver.speculation import MIN_RUN
from minijet.splits import Segment, Split

from test_jobserver_model import Cluster, launches, of


def job_counters(c, job_id="job_1"):
    return {x["name"]: x["value"] for x in c.status(job_id)["counters"] if x["group"] == "job"}


def attempts(c, job_id="job_1"):
    return {a["attempt_id"]: a for a in c.status(job_id)["attempts"]}


def three_of_four_maps_done(c, reducers=1):
    """Four maps on h1 and h2 (two slots each); all but map 0 finish in a second; h3 has
    its slots free. Returns the straggler's attempt id."""
    c.submit(nsplits=4, reducers=reducers)
    c.beat("h1"), c.beat("h2"), c.beat("h3")
    straggler, *others = c.running(stage="map")
    assert straggler == "job_1_map_00000_0" and straggler in c.held["h1"]
    c.now += 1.0
    for aid in others:
        if reducers:
            c.finish(aid)
        else:   # map-only: a map writes the DFS output, with a grant
            assert isinstance(c.commit(aid), CommitGranted)
            c.finish(aid)
    c.beat("h2"), c.beat("h1")
    c.held["h1"][straggler].progress = 0.1   # a tenth in MIN_RUN: the others took a second
    c.beat("h1")
    return straggler


@pytest.mark.parametrize("winner", ["backup", "original"])
def test_a_straggler_gets_one_backup_elsewhere_and_the_first_to_finish_wins(winner):
    c = Cluster(names=("h1", "h2", "h3"), speculative=True)
    straggler = three_of_four_maps_done(c)
    c.now = MIN_RUN - 0.5
    c.handle(Tick(c.now))
    assert not launches(c.beat("h3"))   # too early to judge it
    c.now = MIN_RUN
    c.handle(Tick(c.now))
    assert not launches(c.beat("h1"))   # not beside the original
    (backup,) = launches(c.beat("h3"))
    assert backup.task_id == "job_1_map_00000" and backup.attempt_id == "job_1_map_00000_1"
    assert attempts(c)[backup.attempt_id]["speculative"]
    assert job_counters(c)["speculative_attempts"] == 1
    c.now += 1.0
    c.handle(Tick(c.now))
    assert not launches(c.beat("h2"))   # one backup per task

    first, second = (backup.attempt_id, straggler) if winner == "backup" else \
        (straggler, backup.attempt_id)
    c.finish(first)
    kills = of(c.beat("h1") + c.beat("h3") + c.beat("h1") + c.beat("h3"), KillAttempt)
    assert [k.attempt_id for k in kills] == [second]
    seen = attempts(c)
    assert (seen[first]["state"], seen[second]["state"]) == ("succeeded", "killed")
    assert seen[second]["failure"] == ""
    counters = job_counters(c)
    assert counters["user_failed_attempts"] == counters["system_failed_attempts"] == 0
    assert c.core._tasks["job_1_map_00000"].failures == 0
    assert c.core.map_output_locations("job_1", "map")["outputs"][0]["attempt_id"] == first
    c.beat("h1"), c.beat("h2"), c.beat("h3")
    (reduce,) = c.running(stage="reduce")
    assert isinstance(c.commit(reduce), CommitGranted)
    c.finish(reduce)
    c.beat("h1"), c.beat("h2"), c.beat("h3")
    assert c.status()["state"] == "succeeded"


def test_dfs_output_the_first_granted_commits_and_the_other_is_killed_not_failed():
    c = Cluster(names=("h1", "h2", "h3"), speculative=True)
    straggler = three_of_four_maps_done(c, reducers=0)
    c.now = MIN_RUN + 1.0
    c.handle(Tick(c.now))
    (backup,) = launches(c.beat("h3"))
    assert isinstance(c.commit(straggler), CommitGranted)
    assert isinstance(c.commit(backup.attempt_id), CommitDenied)
    # the denied one lost the race: killed at once, whatever it reports afterwards
    assert [k.attempt_id for k in of(c.beat("h3"), KillAttempt)] == [backup.attempt_id]
    c.finish(straggler)
    c.beat("h1"), c.beat("h3")
    st = c.status()
    assert st["state"] == "succeeded"
    assert attempts(c)[backup.attempt_id]["state"] == "killed"
    assert job_counters(c)["user_failed_attempts"] == 0


def test_no_backup_while_the_stage_is_mostly_running_or_keeps_pace():
    c = Cluster(names=("h1", "h2", "h3"), speculative=True)
    c.submit(nsplits=4, reducers=1)
    c.beat("h1"), c.beat("h2")
    running = c.running(stage="map")
    c.now += 1.0
    c.finish(running[1])   # one of four done
    c.beat("h1"), c.beat("h2")
    c.now = 2 * MIN_RUN
    c.handle(Tick(c.now))
    assert not launches(c.beat("h3"))
    c.finish(running[2])   # three of four done, the last at the stage's pace for its age
    c.finish(running[3])
    c.held["h1"][running[0]].progress = 0.95
    c.beat("h1"), c.beat("h2")
    c.handle(Tick(c.now))
    assert not launches(c.beat("h3"))
    assert job_counters(c)["speculative_attempts"] == 0


@pytest.mark.parametrize("off", ["cluster", "job"])
def test_no_backup_when_the_cluster_or_the_job_says_so(off):
    c = Cluster(names=("h1", "h2", "h3"), speculative=off != "cluster")
    if off == "job":   # a job with side effects: speculative = False on its class
        conf = compile_mapreduce("wc", "wc.py", "WordCount", {}, ["/in"], "/out", 1, True,
                                 user="ann", speculative=False)
        splits = [Split((Segment("/in/f", i * 100, 100),), ("h1",) if i % 2 == 0 else ("h2",))
                  for i in range(4)]
        c.handle(JobSubmitted("job_1", conf, {"map": splits}, c.now, job_dir="/jobs/job_1"))
        c.submit = lambda **kw: None   # submitted already
    three_of_four_maps_done(c)
    c.now = 3 * MIN_RUN
    c.handle(Tick(c.now))
    assert not launches(c.beat("h3"))


def test_a_backup_is_remembered_across_a_jobserver_restart():
    c = Cluster(names=("h1", "h2", "h3"), speculative=True)
    three_of_four_maps_done(c)
    c.now = MIN_RUN
    c.handle(Tick(c.now))
    (backup,) = launches(c.beat("h3"))
    c.restart()
    c.beat("h1"), c.beat("h2"), c.beat("h3")
    c.now += MIN_RUN
    c.handle(Tick(c.now))
    assert not launches(c.beat("h2"))   # still its one backup
    assert attempts(c)[backup.attempt_id]["speculative"]
    assert job_counters(c)["speculative_attempts"] == 1


def test_a_job_with_side_effects_turns_speculation_off_in_its_conf():
    from minijet import JobBuilderJob, MapReduceJob
    from minijet.job import build_conf
    from minijet.jobconf import JobConf

    class CallsAService(MapReduceJob):
        speculative = False

        def mapper(self, key, value):
            yield value, 1

        def reducer(self, key, values):
            yield key, sum(values)

    class Copies(JobBuilderJob):
        speculative = False

        def build_job(self, builder):
            builder.read("/in").write("/out")

    for cls in (CallsAService, Copies):
        args = [] if cls is Copies else ["/in", "/out"]
        conf = build_conf(cls, args, job_file="job.py")
        assert conf.speculative is False
        assert JobConf.from_dict(conf.to_dict()).speculative is False
    plain = compile_mapreduce("wc", "wc.py", "WordCount", {}, ["/in"], "/out", 1, True)
    assert plain.speculative is True and "speculative" not in plain.to_dict()


# ---- with real processes ----

def test_a_straggler_is_overtaken_by_its_backup_on_a_real_cluster(job_cluster):
    """Map 0's first attempt sleeps 300 s: its backup, launched once the other maps are
    done and it has run MIN_RUN, finishes the job within seconds; the straggler is killed
    and counted as no failure."""
    from minijet.client import JetClient

    from test_jobs_e2e import (TESTJOBS, block_size, expected_counts, make_text, put_bytes,
                               read_counts)

    dfs = job_cluster.client()
    text = make_text(seed=70, size=5 * block_size(job_cluster) - 1000)
    put_bytes(dfs, "/straggler/in.txt", text)
    with JetClient(job_cluster.config) as jc:
        job_id = jc.submit(TESTJOBS, "StragglerWordCount",
                           ["/straggler/in.txt", "/straggler/out", "--delay", "300"])
        st = jc.wait_for_completion(job_id, timeout=60)
    assert st.state == "succeeded", st.error
    assert st.end_time - st.start_time < 60
    assert read_counts(dfs, "/straggler/out") == expected_counts(text)
    first = [(a.state, a.speculative, a.failure) for a in st.attempts
             if a.task_id.endswith("_map_00000")]
    assert first == [("killed", False, ""), ("succeeded", True, "")]
    counters = {c.name: c.value for c in st.counters if c.group == "job"}
    assert counters["speculative_attempts"] >= 1 and counters["user_failed_attempts"] == 0
    dfs.close()
