"""A dataserver's replica announcements: grouped while a call is in flight, never lost,
never sent twice, and each announcer learns its call's fate."""
import threading

import pytest

from minijet.dfs.received import ReceivedReports
from minijet.errors import Unavailable
from polling import wait_for


def test_announcements_during_a_call_go_together_in_the_next():
    calls, release = [], threading.Event()

    def send(replicas):
        calls.append(list(replicas))
        if len(calls) == 1:
            release.wait(10)
        return [False] * len(replicas)

    reports = ReceivedReports(send)
    first = threading.Thread(target=reports.announce, args=(1, 10))
    first.start()
    wait_for(lambda: len(calls) == 1, timeout=10, what="the first call")
    others = [threading.Thread(target=reports.announce, args=(i, 10 * i))
              for i in range(2, 12)]
    for t in others:
        t.start()
    wait_for(lambda: len(reports._queue) == 10, timeout=10, what="ten waiting announcements")
    release.set()
    for t in [first] + others:
        t.join(10)
        assert not t.is_alive()
    assert calls[0] == [(1, 10, None)]
    assert sorted(calls[1]) == [(i, 10 * i, None) for i in range(2, 12)] and len(calls) == 2


def test_an_announcement_alone_is_sent_at_once_and_errors_reach_every_announcer():
    calls = []

    def send(replicas):
        calls.append(replicas)
        return [False]

    reports = ReceivedReports(send)
    assert reports.announce(7, 70) is False
    assert calls == [[(7, 70, None)]]

    release = threading.Event()
    failures = []

    def failing(replicas):
        release.wait(10)
        raise Unavailable("nameserver down")

    reports = ReceivedReports(failing)

    def announce(i):
        try:
            reports.announce(i, i)
        except Unavailable as e:
            failures.append((i, str(e)))

    threads = [threading.Thread(target=announce, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    wait_for(lambda: len(reports._queue) == 4, timeout=10, what="four waiting announcements")
    release.set()
    for t in threads:
        t.join(10)
    assert sorted(failures) == [(i, "nameserver down") for i in range(5)]
    with pytest.raises(Unavailable):   # and the next announcement tries again
        release.set()
        reports.announce(9, 9)


def test_each_announcer_learns_whether_its_own_close_was_done():
    release = threading.Event()
    calls = []

    def send(replicas):
        calls.append(replicas)
        release.wait(10)
        # the nameserver closes the files of even blocks only
        return [close is not None and block_id % 2 == 0 for block_id, _, close in replicas]

    reports = ReceivedReports(send)
    results = {}

    def announce(i):
        results[i] = reports.announce(i, 1, (f"/f{i}", "c") if i else None)

    threads = [threading.Thread(target=announce, args=(i,)) for i in range(5)]
    threads[0].start()
    wait_for(lambda: len(calls) == 1, timeout=10, what="the first call")
    for t in threads[1:]:
        t.start()
    wait_for(lambda: len(reports._queue) == 4, timeout=10, what="four waiting announcements")
    release.set()
    for t in threads:
        t.join(10)
    assert results == {0: False, 1: False, 2: True, 3: False, 4: True}
    assert sorted(calls[1]) == [(i, 1, (f"/f{i}", "c")) for i in range(1, 5)]
