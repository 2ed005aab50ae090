import random

from minijet.jobserver.scheduler import (NO_PREFERENCE, NODE_LOCAL, OFF_RACK, RACK_LOCAL,
                                         Scheduler)

RACKS = {"h1": "/r1", "h2": "/r1", "h3": "/r2", "h4": "/r2"}


def sched(delay=1.0):
    return Scheduler(delay, lambda h: RACKS.get(h, "/r1"))


def assign(s, host, slots=1, now=0.0, taskserver=None):
    return [(a.task_id, a.locality) for a in
            s.assign(taskserver or host, host, RACKS.get(host, "/r1"), slots, now)]


def test_node_local_first_even_behind_other_tasks():
    s = sched()
    s.add_job("j")
    s.add_task("j", "t1", ["h1"])
    s.add_task("j", "t2", ["h3", "h2"])
    s.add_task("j", "t3", ["h2"])
    assert assign(s, "h2", slots=2) == [("t2", NODE_LOCAL), ("t3", NODE_LOCAL)]
    assert assign(s, "h1") == [("t1", NODE_LOCAL)]
    assert len(s) == 0 and assign(s, "h1") == []


def test_delay_scheduling_is_bounded_rack_then_any():
    s = sched(delay=1.0)
    s.add_job("j")
    s.add_task("j", "near", ["h1"])    # rack /r1
    s.add_task("j", "far", ["h3"])     # rack /r2
    assert assign(s, "h2", now=10.0) == []        # skipped: starts waiting
    assert assign(s, "h2", now=10.9) == []
    assert assign(s, "h2", now=11.0) == [("near", RACK_LOCAL)]   # waited the delay
    assert assign(s, "h2", now=11.5) == []        # rack-local only until 2x the delay
    assert assign(s, "h2", now=12.0) == [("far", OFF_RACK)]


def test_the_wait_is_per_taskserver_and_reset_by_a_local_launch_there():
    s = sched(delay=1.0)
    s.add_job("j")
    for t, h in (("a", "h1"), ("b", "h1"), ("c", "h1"), ("d", "h2")):
        s.add_task("j", t, [h])
    assert assign(s, "h2", now=0.0) == [("d", NODE_LOCAL)]
    assert assign(s, "h2", now=0.25) == []             # h2 starts waiting
    assert assign(s, "h1", now=0.5) == [("a", NODE_LOCAL)]
    assert assign(s, "h2", now=1.25) == [("b", RACK_LOCAL)]   # h1's launch did not reset it
    s.add_task("j", "e", ["h2"])
    s.add_task("j", "f", ["h3"])
    assert assign(s, "h2", now=1.5) == [("e", NODE_LOCAL)]   # resets h2's wait
    assert assign(s, "h2", now=1.75) == []
    assert assign(s, "h2", now=2.75) == [("c", RACK_LOCAL)]
    assert assign(s, "h2", now=3.5) == []
    assert assign(s, "h2", now=3.75) == [("f", OFF_RACK)]


def test_skewed_data_does_not_leave_a_taskserver_idle():
    # every block is on h1, which launches node-local work each second; h2 still helps
    # after the delay instead of idling until the job's end
    s = sched(delay=2.0)
    s.add_job("j")
    for i in range(20):
        s.add_task("j", f"t{i}", ["h1"])
    got = {}
    for now in range(6):
        for host in ("h1", "h2"):
            got.setdefault(host, []).extend(assign(s, host, now=float(now)))
    assert [loc for _, loc in got["h2"]] == [RACK_LOCAL] * 4   # from t=2 on
    assert [loc for _, loc in got["h1"]] == [NODE_LOCAL] * 6


def test_fifo_over_jobs_and_a_waiting_job_lets_the_next_one_run():
    s = sched(delay=5.0)
    s.add_job("first")
    s.add_job("second")
    s.add_task("second", "s1", ["h1"])
    s.add_task("first", "f1", ["h1"])
    s.add_task("first", "f2", ["h3"])
    assert assign(s, "h1", slots=3, now=0.0) == [("f1", NODE_LOCAL), ("s1", NODE_LOCAL)]
    s.add_task("second", "s2", [])
    assert assign(s, "h1", now=1.0) == [("s2", NO_PREFERENCE)]   # first waits for h3


def test_tasks_without_location_go_anywhere_at_once():
    s = sched(delay=100.0)
    s.add_job("j")
    s.add_task("j", "r0")
    s.add_task("j", "r1")
    assert assign(s, "h4", slots=5) == [("r0", NO_PREFERENCE), ("r1", NO_PREFERENCE)]


def test_retry_kept_off_the_failed_taskserver_for_the_delay():
    s = sched(delay=2.0)
    s.add_job("j")
    s.add_task("j", "t", ["h1"], avoid={"ts1"}, now=0.0)
    assert assign(s, "h1", taskserver="ts1", now=0.0) == []
    assert assign(s, "h2", taskserver="ts2", now=0.1) == [("t", RACK_LOCAL)]
    s.add_task("j", "u", ["h1"], avoid={"ts1"}, now=5.0)
    assert assign(s, "h1", taskserver="ts1", now=6.0) == []
    assert assign(s, "h1", taskserver="ts1", now=7.0) == [("u", NODE_LOCAL)]   # only one


def test_removed_tasks_and_jobs_are_not_assigned():
    s = sched()
    s.add_job("j")
    s.add_job("k")
    for i in range(5):
        s.add_task("j", f"j{i}", ["h1"])
        s.add_task("k", f"k{i}", ["h1"])
    s.remove_task("j0")
    s.remove_task("j3")
    s.remove_job("k")
    assert "j1" in s and "j0" not in s and "k1" not in s
    assert [t for t, _ in assign(s, "h1", slots=10)] == ["j1", "j2", "j4"]
    s.add_task("j", "j0", ["h1"])   # pending again after being taken
    assert assign(s, "h1") == [("j0", NODE_LOCAL)]


def simulate(taskservers, tasks, slots=2, delay=3.0, replicas=1, seed=1):
    """Every taskserver heartbeats once a second; a task takes one to three seconds.
    Returns (locality counts, seconds simulated)."""
    rng = random.Random(seed)
    hosts = [f"host{i}" for i in range(taskservers)]
    rack = {h: f"/rack{i // 20}" for i, h in enumerate(hosts)}
    s = Scheduler(delay, rack.__getitem__)
    s.add_job("job")
    for t in range(tasks):
        s.add_task("job", f"t{t}", rng.sample(hosts, replicas))
    running = {h: [] for h in hosts}   # end times
    counts = {NODE_LOCAL: 0, RACK_LOCAL: 0, OFF_RACK: 0}
    now = 0.0
    while len(s):
        now += 1.0
        for h in hosts:
            running[h] = [end for end in running[h] if end > now]
            for a in s.assign(h, h, rack[h], slots - len(running[h]), now):
                counts[a.locality] += 1
                running[h].append(now + rng.choice((1.0, 2.0, 3.0)))
    return counts, now


def test_mostly_node_local_with_free_slots():
    counts, _ = simulate(taskservers=20, tasks=1000, replicas=1)
    assert sum(counts.values()) == 1000
    assert counts[NODE_LOCAL] / 1000 >= 0.9, counts


def test_thousands_of_taskservers_and_tasks():
    # an O(pending) heartbeat would make this take minutes, not a second or two
    counts, seconds = simulate(taskservers=2000, tasks=20000, replicas=3)
    assert sum(counts.values()) == 20000
    assert counts[NODE_LOCAL] / 20000 >= 0.9, counts
