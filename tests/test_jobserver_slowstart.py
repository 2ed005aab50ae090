"""Slow start in the jobserver core: consumer tasks start once a fraction of their producers is
done, never while a producer waits for a slot, and with at most half of the slots."""
from minijet.jobserver.model import FetchFailed
from test_jobserver_model import Cluster, launches


def stage_launches(actions, stage):
    return [a for a in launches(actions) if a.task["stage"] == stage]


def run_maps(c, nsplits):
    """Every map launched (two slots on each of h1 and h2), none finished."""
    maps = stage_launches(c.beat("h1") + c.beat("h2"), "map")
    assert len(maps) == nsplits
    return [a.attempt_id for a in maps]


def test_reducers_start_when_the_fraction_of_maps_is_done():
    c = Cluster(slow_start=0.5)
    c.submit(nsplits=4, reducers=2)
    maps = run_maps(c, 4)
    c.finish(maps[0])
    assert stage_launches(c.beat("h1"), "reduce") == []      # 1 of 4 done: too early
    c.finish(maps[1])
    early = stage_launches(c.beat("h1"), "reduce")           # 2 of 4: the reducers start
    assert len(early) == 2
    assert len(c.running(stage="map")) == 2                  # while two maps still run
    for m in maps[2:]:
        c.finish(m)
    c.beat("h2")
    for r in early:
        c.finish(r.attempt_id)
        c.commit(r.attempt_id)
    c.beat("h1")
    assert c.status()["state"] == "succeeded"


def test_early_consumers_take_at_most_half_of_the_slots():
    c = Cluster(slow_start=0.25)
    c.submit(nsplits=4, reducers=4)
    maps = run_maps(c, 4)
    c.finish(maps[0])
    c.finish(maps[1])
    early = stage_launches(c.beat("h1"), "reduce") + stage_launches(c.beat("h2"), "reduce")
    assert len(early) == 2                                   # 4 slots: 2 for early starts
    for m in maps[2:]:
        c.finish(m)
    rest = stage_launches(c.beat("h2") + c.beat("h1"), "reduce")
    assert len(rest) == 2                                    # the others once maps are done


def test_no_early_start_while_a_producer_waits_for_a_slot():
    c = Cluster(slow_start=0.1)
    c.submit(nsplits=6, reducers=2)
    first = stage_launches(c.beat("h1") + c.beat("h2"), "map")
    assert len(first) == 4                                   # two maps wait for a slot
    c.finish(first[0].attempt_id)
    actions = c.beat(first[0].taskserver)
    assert stage_launches(actions, "reduce") == []           # the free slot goes to a map
    assert len(stage_launches(actions, "map")) == 1


def test_at_0_consumers_start_once_the_last_producer_has_its_slot():
    c = Cluster(slow_start=0.0)
    c.submit(nsplits=1, reducers=1)
    assert len(stage_launches(c.beat("h1"), "map")) == 1     # no producer waits now
    early = stage_launches(c.beat("h2"), "reduce")
    assert len(early) == 1                                   # so the reducer starts with it
    (m,) = c.running(stage="map")
    assert c.core.output_version("job_1", "map") == 0
    c.finish(m)
    c.beat("h1")
    assert c.core.output_version("job_1", "map") == 1       # what its long poll waits for
    view = c.core.map_output_locations("job_1", "map")
    assert ([o["attempt_id"] for o in view["outputs"]], view["version"]) == ([m], 1)
    # asked again by a consumer that has them: not sent again (no walk over the tasks)
    again = c.core.map_output_locations("job_1", "map", seen=1)
    assert (again["outputs"], again["lost"], again["full"]) == ([], [], False)
    assert c.core.map_output_locations("job_1", "map", seen=0)["outputs"] == view["outputs"]


def test_a_consumer_asking_again_gets_what_changed_since_its_version():
    c = Cluster(slow_start=0.0)
    c.submit(nsplits=3, reducers=1)
    maps = run_maps(c, 3)
    c.finish(maps[0])
    c.beat("h1"), c.beat("h2")
    first = c.core.map_output_locations("job_1", "map")
    assert (len(first["outputs"]), first["version"], first["full"]) == (1, 1, True)
    c.finish(maps[1])
    c.finish(maps[2])
    c.beat("h1"), c.beat("h2")
    delta = c.core.map_output_locations("job_1", "map", seen=first["version"])
    assert sorted(o["attempt_id"] for o in delta["outputs"]) == sorted(maps[1:])
    assert (delta["lost"], delta["version"], delta["full"]) == ([], 3, False)
    # an output lost (its fetch failed): the consumer is told its task's output is gone
    (reduce,) = c.running(stage="reduce")
    c.handle(FetchFailed(reduce, maps[1], "connection refused", c.now))
    gone = c.core.map_output_locations("job_1", "map", seen=delta["version"])
    assert (gone["outputs"], gone["lost"]) == ([], [maps[1].rsplit("_", 1)[0]])
    # a version from before a restart (greater than this core's): every output again
    again = c.core.map_output_locations("job_1", "map", seen=99)
    assert again["full"] and len(again["outputs"]) == 2


def test_without_slow_start_consumers_wait_for_every_producer():
    c = Cluster()   # slow_start 1.0
    c.submit(nsplits=4, reducers=2)
    maps = run_maps(c, 4)
    for m in maps[:3]:
        c.finish(m)
    assert stage_launches(c.beat("h1") + c.beat("h2"), "reduce") == []
    c.finish(maps[3])
    assert len(stage_launches(c.beat("h1") + c.beat("h2"), "reduce")) == 2


def test_slow_start_comes_from_the_config_and_must_be_a_fraction():
    import pytest

    from minijet import config as configmod
    from minijet.errors import ConfigError
    from minijet.jobserver.model import JobServerCore

    assert JobServerCore.from_config(configmod.from_dict(None, "defaults")).slow_start == 0.0
    for bad in (1.5, -0.1):  # refused when the configuration is loaded
        with pytest.raises(ConfigError, match="jobserver.slow_start"):
            JobServerCore.from_config(
                configmod.from_dict({"jobserver": {"slow_start": bad}}, "test"))
