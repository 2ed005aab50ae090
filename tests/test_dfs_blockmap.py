import random

from minijet.dfs.blockmap import STATES, BlockMap, DeleteBlocks, Replicate, SafeMode
from minijet.dfs.placement import choose_targets


def make(hosts=("h1", "h2", "h3", "h4"), racks=None, threshold=1.0, extension=0.0):
    bm = BlockMap(dead_timeout=10, replication_timeout=5,
                  safemode=SafeMode(threshold, extension), rng=random.Random(7))
    for h in hosts:
        bm.register(h, (racks or {}).get(h, "/r"), f"{h}:1", capacity=100, used=0, now=0)
    return bm


def closed_block(bm, block_id, hosts, expected=3, length=10):
    bm.add_block(block_id, expected)
    for h in hosts:
        bm.block_received(h, block_id, length)
    bm.complete_block(block_id, length, expected)


def replicates(work):
    return {(h, c.block_id, c.targets) for h, cs in work.items() for c in cs
            if isinstance(c, Replicate)}


def deletes(work):
    return {(h, b) for h, cs in work.items() for c in cs if isinstance(c, DeleteBlocks)
            for b in c.block_ids}


def test_heartbeat_and_dead_detection():
    bm = make()
    closed_block(bm, 1, ["h1", "h2", "h3"])
    assert bm.heartbeat("h1", 100, 10, 0, now=5)
    assert not bm.heartbeat("stranger", 100, 10, 0, now=5)
    for h in ("h1", "h2", "h4"):
        bm.heartbeat(h, 100, 10, 0, now=9)
    assert bm.check_dead(now=11) == ["h3"]
    assert bm.locations(1) == (["h1", "h2"], [])
    assert not bm.heartbeat("h3", 100, 10, 0, now=12)  # must register again
    assert bm.check_dead(now=12) == []


def test_dead_node_blocks_are_re_replicated_once():
    bm = make()
    closed_block(bm, 1, ["h1", "h2", "h3"])
    assert bm.replication_work(now=0) == {}
    for h in ("h1", "h2", "h4"):
        bm.heartbeat(h, 100, 10, 0, now=9)
    bm.check_dead(now=11)
    work = bm.replication_work(now=11)
    (source, block, targets), = replicates(work)
    assert block == 1 and source in ("h1", "h2") and targets == ("h4",)
    assert replicates(bm.replication_work(now=12)) == set()  # pending, not repeated
    bm.block_received("h4", 1, 10)
    assert bm.health(1, 3).state == "healthy"
    assert bm.replication_work(now=13) == {}


def test_unconfirmed_replication_is_retried_after_timeout():
    bm = make()
    closed_block(bm, 1, ["h1", "h2"])
    assert len(replicates(bm.replication_work(now=0))) == 1
    assert replicates(bm.replication_work(now=4)) == set()
    assert len(replicates(bm.replication_work(now=6))) == 1


def test_replication_capped_by_live_nodes_and_missing_blocks():
    bm = make(hosts=("h1", "h2"))
    closed_block(bm, 1, ["h1", "h2"], expected=3)
    assert bm.replication_work(now=0) == {}
    assert bm.health(1, 3).state == "healthy"  # all the cluster can hold
    closed_block(bm, 2, [], expected=2)
    assert bm.health(2, 2).state == "missing"
    assert bm.replication_work(now=1) == {}


def test_excess_replicas_are_deleted_keeping_rack_spread():
    bm = make(hosts=("a1", "a2", "b1", "b2"),
              racks={"a1": "/a", "a2": "/a", "b1": "/b", "b2": "/b"})
    closed_block(bm, 1, ["a1", "a2", "b1", "b2"], expected=2)
    work = bm.replication_work(now=0)
    removed = {h for h, _ in deletes(work)}
    assert len(removed) == 2
    live, _ = bm.locations(1)
    assert {h[0] for h in live} == {"a", "b"}
    assert bm.health(1, 2).state == "healthy"


def test_corrupt_replica_replaced_then_deleted():
    bm = make()
    closed_block(bm, 1, ["h1", "h2", "h3"])
    assert bm.mark_corrupt(1, "h2")
    assert bm.locations(1) == (["h1", "h3"], ["h2"])
    work = bm.replication_work(now=0)
    (_, _, targets), = replicates(work)
    assert targets == ("h4",) and deletes(work) == set()  # keep it until a good copy exists
    bm.block_received("h4", 1, 10)
    assert deletes(bm.replication_work(now=1)) == {("h2", 1)}
    assert bm.locations(1) == (["h1", "h3", "h4"], [])


def test_corrupt_replica_deleted_first_when_no_other_host_is_free():
    bm = make(hosts=("h1", "h2", "h3"))
    closed_block(bm, 1, ["h1", "h2", "h3"])
    bm.mark_corrupt(1, "h3")
    assert deletes(bm.replication_work(now=0)) == {("h3", 1)}
    (_, _, targets), = replicates(bm.replication_work(now=1))
    assert targets == ("h3",)


def test_wrong_length_replica_is_corrupt():
    bm = make()
    closed_block(bm, 1, ["h1", "h2"])
    bm.block_received("h3", 1, 7)
    assert bm.locations(1) == (["h1", "h2"], ["h3"])


def test_block_report_orphans_and_deleted_files():
    bm = make()
    closed_block(bm, 1, ["h1", "h2", "h3"])
    closed_block(bm, 2, ["h1"], expected=1)
    orphans = bm.block_report("h1", {1: 10, 99: 5})  # block 2 is gone from h1
    assert orphans == [99]
    assert bm.locations(2) == ([], [])
    bm.remove_block(1)  # its file was deleted
    work = bm.replication_work(now=0)
    assert deletes(work) == {("h1", 99), ("h1", 1), ("h2", 1), ("h3", 1)}
    bm.block_received("h4", 55, 3)  # a replica of no file
    assert deletes(bm.replication_work(now=1)) == {("h4", 55)}


def test_blocks_under_construction_are_not_replicated_or_counted():
    bm = make()
    bm.add_block(1, 3)
    bm.block_received("h1", 1, 4)
    assert bm.replication_work(now=0) == {}
    assert (bm.total_complete, bm.reachable_complete) == (0, 0)


def test_safemode_only_hands_out_deletes():
    bm = make()
    closed_block(bm, 1, ["h1"])
    bm.block_received("h2", 77, 1)
    work = bm.replication_work(now=0, replicate=False)
    assert replicates(work) == set() and deletes(work) == {("h2", 77)}
    assert len(replicates(bm.replication_work(now=1))) == 1  # the block was kept for later


def test_safemode_threshold_extension_and_manual():
    bm = make(hosts=(), threshold=0.5, extension=2)
    assert bm.safemode_status(0) == (False, "")  # no blocks
    bm = make(hosts=(), threshold=0.5, extension=2)
    for i in range(4):
        bm.complete_block(i, 10, 1)
    on, reason = bm.safemode_status(0)
    assert on and "0 of 4 blocks" in reason
    bm.register("h1", "/r", "h1:1", 100, 0, now=0)
    bm.block_report("h1", {0: 10, 1: 10})
    on, reason = bm.safemode_status(1)
    assert on and "leaving safe mode in 2.0s" in reason
    assert bm.safemode_status(3) == (False, "")
    bm.check_dead(now=100)  # once left, losing replicas does not re-enter it
    assert not bm.safemode_status(100)[0]
    bm.safemode.enter()
    assert bm.safemode_status(101)[0]
    bm.safemode.leave()
    assert not bm.safemode_status(101)[0]


def test_counters_follow_replica_changes():
    bm = make()
    closed_block(bm, 1, ["h1", "h2"])
    closed_block(bm, 2, [])
    assert (bm.total_complete, bm.reachable_complete) == (2, 1)
    bm.mark_corrupt(1, "h1")
    bm.mark_corrupt(1, "h2")
    assert bm.reachable_complete == 0
    bm.block_received("h3", 2, 10)
    assert bm.reachable_complete == 1
    bm.remove_block(2)
    assert (bm.total_complete, bm.reachable_complete) == (1, 0)


def test_copies_in_flight_per_source_are_capped_across_rounds():
    bm = make(hosts=("h1", "h2", "h3"))
    for i in range(1, 11):
        closed_block(bm, i, ["h1"], expected=2)  # h1 is the only source
    first = replicates(bm.replication_work(now=0))
    assert len(first) == bm.max_streams
    assert replicates(bm.replication_work(now=1)) == set()  # h1 is still busy
    done = next(iter(first))
    bm.block_received(done[2][0], done[1], 10)
    (_, block, _), = replicates(bm.replication_work(now=2))  # one slot came free
    assert block != done[1]


def test_copies_to_or_from_a_dead_host_are_rescheduled_at_once():
    bm = make()
    closed_block(bm, 1, ["h1", "h2"])
    (source, _, (target,)), = replicates(bm.replication_work(now=0))
    for h in {"h1", "h2", "h3", "h4"} - {target}:
        bm.heartbeat(h, 100, 0, 0, now=9)
    assert bm.check_dead(now=11) == [target]
    (_, _, (again,)), = replicates(bm.replication_work(now=11))  # not after the timeout
    assert again not in (target, "h1", "h2")


def test_placement_counts_blocks_being_written_until_they_are_received():
    bm = make(["h1", "h2"])
    for h in ("h1", "h2"):
        bm.heartbeat(h, 100, 0, 0, now=1, free=100)
    bm.add_block(1, 1, size=60, targets=("h1",))
    assert [bm.servers[h].node().free for h in ("h1", "h2")] == [40, 100]
    assert [n.host for n in choose_targets(1, [s.node() for s in bm.live_servers()],
                                           size=60)] == ["h2"]
    bm.block_received("h1", 1, 50)       # counted as its next report will count it
    assert bm.servers["h1"].node().free == 50
    bm.heartbeat("h1", 100, 50, 0, now=2, free=50)
    bm.add_block(2, 2, size=60, targets=("h1", "h2"))
    bm.remove_block(2)                   # abandoned: nothing is coming
    bm.add_block(3, 1, size=60, targets=("h2",))
    bm.complete_block(3, 10, 1)          # closed without h2's replica: h2 failed
    assert [bm.servers[h].node().free for h in ("h1", "h2")] == [50, 100]


def recount(bm):
    """Blocks of closed files by state, by a look at every block (as fsck does)."""
    states = dict.fromkeys(STATES, 0)
    live_count = len(bm.live_servers())
    for block_id, b in bm.blocks.items():
        if b.complete:
            states[bm.health(block_id, b.expected, live_count).state] += 1
    return states


def test_block_states_stay_equal_to_a_recount_through_random_changes():
    rng = random.Random(12)
    hosts = ["h1", "h2", "h3", "h4", "h5"]
    bm = make(hosts)
    now, next_id, silent = 0.0, 1, set()
    length = {}   # block id -> its length once written
    seen = set()

    def live():
        return sorted(h for h in hosts if bm.is_live(h))

    def heartbeats():
        for h in live():
            if h not in silent:
                bm.heartbeat(h, 100, 0, 0, now)

    for step in range(3000):
        now += 1
        heartbeats()
        op = rng.choice(["write", "write", "received", "report", "corrupt", "remove",
                         "replication", "silence", "dead", "register", "work"])
        block = rng.choice(sorted(bm.blocks)) if bm.blocks else 0
        if op == "write":   # replicas arrive before, or (late) after the file is closed
            expected, targets = rng.randint(1, 3), rng.sample(live(), min(2, len(live())))
            bm.add_block(next_id, expected, 10, tuple(targets))
            length[next_id] = rng.randint(0, 10)
            late = rng.sample(targets, rng.randint(0, len(targets)))
            for h in set(targets) - set(late):
                bm.block_received(h, next_id, length[next_id])
            bm.complete_block(next_id, length[next_id], expected)
            for h in late:
                bm.block_received(h, next_id, length[next_id])
            next_id += 1
        elif op == "received" and live():   # of the right length, or not (corrupt)
            bm.block_received(rng.choice(live()), block,
                              length.get(block, 0) + rng.choice([0, 0, 1]))
        elif op == "report" and live():     # what a node really holds, as it says
            host = rng.choice(live())
            held = rng.sample(sorted(length), min(len(length), rng.randint(0, 8)))
            bm.block_report(host, {b: length[b] for b in held})
        elif op == "corrupt" and live():
            bm.mark_corrupt(block, rng.choice(live()))
        elif op == "remove":                # its file deleted
            bm.remove_block(block)
        elif op == "replication" and block in bm.blocks:   # the factor changed
            bm.complete_block(block, length[block], rng.randint(1, 4))
        elif op == "silence" and live():
            silent.add(rng.choice(live()))
        elif op == "dead":                  # the silent ones are declared dead
            now += 11
            heartbeats()
            bm.check_dead(now)
        elif op == "register" and silent:   # a lost node is back, with its replicas
            host = silent.pop()
            bm.register(host, "/r", f"{host}:1", capacity=100, used=0, now=now)
            bm.block_report(host, {b: length[b] for b in length if rng.random() < 0.3})
        elif op == "work":                  # some of the copies it asks for arrive
            for source, commands in bm.replication_work(now).items():
                for c in commands:
                    if isinstance(c, Replicate) and rng.random() < 0.7:
                        for target in c.targets:
                            bm.block_received(target, c.block_id, c.length)
        states = bm.block_states()
        assert states == recount(bm), (step, op)
        assert bm.total_complete == sum(states.values())
        assert bm.reachable_complete == bm.total_complete - states["corrupt"] - states["missing"]
        seen |= {state for state, n in states.items() if n}
    assert seen == set(STATES)
