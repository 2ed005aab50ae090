"""The heartbeat budget (jobserver.heartbeats_per_second): the interval each reply names
grows with the cluster, and wakes spend only what the regular heartbeats leave."""
from minijet import config
from minijet.jobconf import compile_mapreduce
from minijet.jobserver import model
from minijet.jobserver.jobserver import JobServer
from minijet.jobserver.pacing import WakeBudget, heartbeat_interval
from minijet.proto import job_pb2
from minijet.splits import Segment, Split


def test_the_interval_is_the_configured_one_until_the_cluster_would_beat_over_budget():
    assert heartbeat_interval(live=10, minimum=1.0, per_second=1000) == 1.0
    assert heartbeat_interval(live=1000, minimum=1.0, per_second=1000) == 1.0
    assert heartbeat_interval(live=4000, minimum=1.0, per_second=1000) == 4.0
    assert heartbeat_interval(live=4000, minimum=5.0, per_second=1000) == 5.0


def test_wakes_spend_what_the_regular_heartbeats_leave_and_save_up_at_most_a_second():
    small = WakeBudget(minimum=1.0, per_second=100)
    assert small.allowed(live=20, now=0.0) == 80      # 100/s, 20 of them regular
    small.spend(80)
    assert small.allowed(live=20, now=0.5) == 40      # refilled at 80/s
    assert small.allowed(live=20, now=60.0) == 80     # never more than a second's worth
    # a cluster beating at the budget's edge is woken not at all
    edge = WakeBudget(minimum=1.0, per_second=100)
    assert edge.allowed(live=4000, now=0.0) == edge.allowed(live=4000, now=10.0) == 0


def test_to_wake_names_no_more_taskservers_than_the_limit():
    core = model.JobServerCore(locality_delay=0.0)
    for name in ("h1", "h2", "h3"):
        core.handle(model.Heartbeat(name, name, "/r1", 2, 2, f"{name}:7000", [], 0.0))
    conf = compile_mapreduce("wc", "wc.py", "WordCount", {}, ["/in"], "/out", 1, True)
    splits = [Split((Segment("/in/f", i * 100, 100),), ()) for i in range(5)]
    core.handle(model.JobSubmitted("job_1", conf, {"map": splits}, 0.0, job_dir="/j"))
    assert len(core.to_wake(limit=1)) == 1
    assert len(core.to_wake(limit=0)) == 0
    assert len(core.to_wake()) == 2                   # the others, once each
    assert core.live_taskservers() == 3


def test_each_reply_names_the_interval_for_the_live_taskservers(tmp_path):
    js = JobServer(config.from_dict({
        "jobserver": {"dir": str(tmp_path / "js"), "heartbeats_per_second": 2},
        "taskserver": {"heartbeat_interval": "1s"}}), dfs=_NoDfs())
    try:
        intervals = [js.heartbeat(job_pb2.HeartbeatRequest(
            name=f"h{i}", host=f"h{i}", rack="/r1", slots=1, free_slots=1,
            address=f"h{i}:7000"))[0].heartbeat_interval for i in range(5)]
    finally:
        js.stop()
    assert intervals == [1.0, 1.0, 1.5, 2.0, 2.5]    # 3 live at 2/s: every 1.5 s


class _NoDfs:
    def close(self):
        pass

