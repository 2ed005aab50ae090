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
    assert calls[0] == [(1, 10)]
    assert sorted(calls[1]) == [(i, 10 * i) for i in range(2, 12)] and len(calls) == 2


def test_an_announcement_alone_is_sent_at_once_and_errors_reach_every_announcer():
    calls = []
    reports = ReceivedReports(calls.append)
    reports.announce(7, 70)
    assert calls == [[(7, 70)]]

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
