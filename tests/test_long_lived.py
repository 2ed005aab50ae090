"""A big job's objects are built with the garbage collector off and then frozen out of its
passes (minijet.daemon.building_long_lived); thawed, the dead ones are collected."""
import gc
import threading
import weakref

import pytest

from minijet import daemon


class Node:
    def __init__(self):
        self.peer = self   # a cycle: only the collector frees it


@pytest.fixture(autouse=True)
def _unfrozen():
    yield
    gc.unfreeze()
    gc.enable()


def test_objects_built_are_frozen_and_the_collector_is_back_on_after():
    assert gc.isenabled()
    with daemon.building_long_lived():
        assert not gc.isenabled()   # no pass scans the build while it grows
        node = Node()
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0
    assert not any(o is node for o in gc.get_objects())   # out of every generation


def test_a_frozen_cycle_that_dies_is_collected_once_thawed():
    with daemon.building_long_lived():
        dead = weakref.ref(Node())
    gc.collect()
    assert dead() is not None   # frozen: no pass looks at it
    daemon.thaw_long_lived()
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert dead() is None


def test_overlapping_builds_keep_the_collector_off_until_the_last_ends():
    first_in, second_done = threading.Event(), threading.Event()

    def other_build():
        with daemon.building_long_lived():
            first_in.set()
            second_done.wait(5)

    t = threading.Thread(target=other_build)
    t.start()
    assert first_in.wait(5)
    with daemon.building_long_lived():
        pass
    assert not gc.isenabled()   # the other build still runs
    daemon.thaw_long_lived()    # a retirement meanwhile: its build freezes them anyway
    second_done.set()
    t.join(5)
    assert gc.isenabled()


def test_a_collector_turned_off_before_stays_off():
    gc.disable()
    with daemon.building_long_lived():
        pass
    assert not gc.isenabled()
