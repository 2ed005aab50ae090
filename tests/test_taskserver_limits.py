"""Limits on user code, as the taskserver applies them: failure classes of exceptions, the
memory of a whole process tree, and logs cut to their head and tail."""
from __future__ import annotations

import errno
import subprocess
import sys

import psutil

from minijet.errors import FailedPrecondition, NotFound, Unavailable
from minijet.failures import classify
from minijet.taskserver import logcap, memory

from polling import wait_for


def test_exceptions_are_classed_by_whose_fault_they_are():
    assert classify(ValueError("bad record")) == "user"
    assert classify(NotFound("no such file /in")) == "user"
    assert classify(Unavailable("cannot reach the nameserver")) == "system"
    assert classify(FailedPrecondition("nameserver is in safe mode: 3 of 9 blocks")) == "system"
    assert classify(FailedPrecondition("output path exists")) == "user"
    assert classify(OSError(errno.ENOSPC, "No space left on device")) == "node"
    assert classify(OSError(errno.EACCES, "Permission denied")) == "user"


def test_a_log_keeps_its_head_and_tail_within_the_limit(tmp_path):
    log = tmp_path / "stdout"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(10000)))
    shown = logcap.excerpt(log, 1000)   # as GetLogs shows it: the file is left as it is
    assert logcap.cap(log, 1000)
    assert log.read_bytes() == shown
    text = log.read_bytes()
    assert len(text) == 1000
    assert text.startswith(b"line 0\nline 1\n") and text.endswith(b"line 9999\n")
    assert b"cut here: taskserver.log_limit keeps the first 500 bytes" in text
    assert not logcap.cap(log, 1000)   # within the limit: left alone
    assert logcap.excerpt(log, 2000) == text
    with open(log, "ab") as f:   # the TaskHost goes on appending
        f.write(b"last words\n" * 100)
    assert logcap.cap(log, 1000)
    text = log.read_bytes()
    assert text.startswith(b"line 0\n") and text.endswith(b"last words\n")
    assert len(text) == 1000 and text.count(b"cut here") == 1
    assert not logcap.cap(tmp_path / "missing", 1000)


def test_the_memory_of_a_tree_counts_its_children():
    code = ("import subprocess, sys, time; "
            "c = subprocess.Popen([sys.executable, '-c', "
            "'b = bytes(range(256)) * (800 * 2**10); print(1, flush=True); import time; time.sleep(60)'],"
            " stdout=subprocess.PIPE); c.stdout.readline(); print(1, flush=True); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        parent.stdout.readline()   # the child holds its 200 MiB
        assert memory.tree_rss(parent.pid) > 200 * 2**20
        child = psutil.Process(parent.pid).children()[0].pid
        assert memory.children_of(parent.pid) == [child]
        assert memory.children_of(child) == []
        # the whole-table scan, for kernels without per-thread children lists, agrees
        walked = memory.trees_rss([parent.pid, child])
        scanned = memory.trees_rss([parent.pid, child], memory.scan_children())
        assert abs(walked[parent.pid] - scanned[parent.pid]) < 8 * 2**20
        assert abs(walked[child] - scanned[child]) < 8 * 2**20
    finally:
        for p in psutil.Process(parent.pid).children(recursive=True) + [psutil.Process(parent.pid)]:
            p.kill()
        parent.wait()
    wait_for(lambda: memory.tree_rss(parent.pid) == 0, 5, "the tree to be gone")
    assert memory.children_of(parent.pid) == []
    assert memory.over_limit(2 * 2**30, int(2.3 * 2**30)) == \
        "exceeded the memory limit of 2.0 GiB (peak 2.3 GiB)"
    assert memory.size_text(300 * 2**20) == "300.0 MiB"
