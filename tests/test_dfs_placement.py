import random
from collections import Counter

from minijet.dfs.placement import Node, choose_targets, sort_for_reader


def nodes(spec):
    """spec: {host: rack}"""
    return [Node(h, r, used=0, capacity=100) for h, r in spec.items()]


ONE_RACK = nodes({f"h{i}": "/r1" for i in range(1, 6)})
TWO_RACKS = nodes({"a1": "/ra", "a2": "/ra", "a3": "/ra", "b1": "/rb", "b2": "/rb"})


def test_first_replica_on_writer_then_other_hosts():
    for seed in range(20):
        t = choose_targets(3, ONE_RACK, writer_host="h3", rng=random.Random(seed))
        assert t[0].host == "h3" and len({n.host for n in t}) == 3


def test_writer_not_a_dataserver_or_excluded():
    t = choose_targets(3, ONE_RACK, writer_host="client-only", rng=random.Random(1))
    assert len({n.host for n in t}) == 3
    t = choose_targets(3, ONE_RACK, writer_host="h3", excluded={"h3", "h4"},
                       rng=random.Random(1))
    assert {n.host for n in t}.isdisjoint({"h3", "h4"}) and len(t) == 3


def test_capped_by_available_hosts_never_two_on_one_host():
    t = choose_targets(10, ONE_RACK, writer_host="h1", rng=random.Random(1))
    assert sorted(n.host for n in t) == ["h1", "h2", "h3", "h4", "h5"]
    assert choose_targets(3, [], writer_host="h1") == []
    assert choose_targets(0, ONE_RACK, writer_host="h1") == []


def test_spread_over_racks():
    for seed in range(50):
        t = choose_targets(3, TWO_RACKS, writer_host="a1", rng=random.Random(seed))
        assert t[0].host == "a1"
        assert {n.rack for n in t} == {"/ra", "/rb"}


def test_re_replication_goes_to_another_rack_and_other_hosts():
    existing = [n for n in TWO_RACKS if n.host in ("a1", "a2")]
    for seed in range(20):
        t = choose_targets(1, TWO_RACKS, existing=existing, writer_host="a3",
                           rng=random.Random(seed))
        assert len(t) == 1 and t[0].rack == "/rb"


def test_prefers_less_used_nodes():
    live = [Node("full1", "/r", 95, 100), Node("full2", "/r", 90, 100),
            Node("empty1", "/r", 1, 100), Node("empty2", "/r", 2, 100)]
    picks = Counter(choose_targets(1, live, rng=random.Random(s))[0].host for s in range(400))
    assert picks["empty1"] + picks["empty2"] > 300
    assert picks["full1"] == 0  # the fullest node loses every two-way choice


def test_sort_for_reader():
    racks = {"h1": "/r1", "h2": "/r1", "h3": "/r2", "h4": "/r2"}.get
    hosts = ["h4", "h3", "h2", "h1"]
    for seed in range(10):
        order = sort_for_reader(hosts, "h2", racks, random.Random(seed))
        assert order[0] == "h2" and order[1] == "h1" and set(order[2:]) == {"h3", "h4"}
    assert sort_for_reader(["h3"], "", racks) == ["h3"]
    assert sorted(sort_for_reader(hosts, "elsewhere", lambda h: "/x")) == sorted(hosts)


def test_full_nodes_are_skipped():
    live = [Node("full", "/r", 95, 100, free=5), Node("roomy", "/r", 10, 100, free=90),
            Node("unknown", "/r")]
    t = choose_targets(3, live, writer_host="full", size=10, rng=random.Random(1))
    assert sorted(n.host for n in t) == ["roomy", "unknown"]
