import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from minijet.dfs import journal
from minijet.dfs.namespace import Namespace


def write(directory, records, last_txid=0):
    j = journal.Journal(directory, last_txid)
    for r in records:
        j.wait(j.append(r))
    j.close()


def test_append_and_recover(tmp_path):
    write(tmp_path, [{"op": "x", "i": i} for i in range(5)])
    rec = journal.recover(tmp_path)
    assert rec.image is None and rec.last_txid == 5
    assert [r["i"] for r in rec.records] == list(range(5))
    # a restart continues in a new segment after the last txid
    write(tmp_path, [{"op": "x", "i": 5}], last_txid=rec.last_txid)
    rec = journal.recover(tmp_path)
    assert [r["i"] for r in rec.records] == list(range(6)) and rec.last_txid == 6


@pytest.mark.parametrize("damage", ["half_header", "half_payload", "bad_crc", "garbage",
                                    "zeros"])
def test_torn_tail_is_truncated(tmp_path, damage):
    write(tmp_path, [{"op": "x", "i": i} for i in range(3)])
    (_, seg), = journal.segments(tmp_path)
    good_size = seg.stat().st_size
    frame = journal.encode_frame(b'{"t":4,"r":{"op":"x","i":3}}')
    tail = {"half_header": frame[:5], "half_payload": frame[:-3],
            "bad_crc": frame[:4] + b"\0\0\0\0" + frame[8:],
            "garbage": b"\xff" * 40, "zeros": bytes(4096)}[damage]
    with open(seg, "ab") as f:
        f.write(tail)
    rec = journal.recover(tmp_path)
    assert [r["i"] for r in rec.records] == [0, 1, 2]
    assert rec.truncated_bytes == len(tail) and seg.stat().st_size == good_size
    write(tmp_path, [{"op": "x", "i": 3}], last_txid=rec.last_txid)
    assert [r["i"] for r in journal.recover(tmp_path).records] == [0, 1, 2, 3]


def test_damage_in_an_older_segment_is_refused(tmp_path):
    write(tmp_path, [{"op": "x", "i": 0}, {"op": "x", "i": 1}])
    write(tmp_path, [{"op": "x", "i": 2}], last_txid=2)
    (_, old), _ = journal.segments(tmp_path)
    data = bytearray(old.read_bytes())
    data[-2] ^= 0xFF
    old.write_bytes(bytes(data))
    with pytest.raises(journal.JournalError, match="not the newest"):
        journal.recover(tmp_path)


def test_checkpoint_then_replay(tmp_path):
    ns = Namespace()
    j = journal.Journal(tmp_path, 0)
    j.wait(j.append(ns.start_epoch().record))
    for i in range(10):
        j.wait(j.append(ns.mkdirs(f"/d{i}", parents=False, now=i).record))
    txid = j.roll()          # snapshot and roll at the same instant
    image = ns.to_image()
    for i in range(10, 13):
        j.append(ns.mkdirs(f"/d{i}", parents=False, now=i).record)
    journal.write_image(tmp_path, txid, image)
    j.close()
    assert [first for first, _ in journal.segments(tmp_path)] == [txid + 1]
    rec = journal.recover(tmp_path)
    assert rec.image_txid == txid == 11 and len(rec.records) == 3 and rec.last_txid == 14
    loaded = Namespace.from_image(rec.image)
    for r in rec.records:
        loaded.apply(r)
    assert loaded.to_image() == ns.to_image()


def test_the_waiter_writes_the_queue_itself_and_close_writes_what_nobody_waited_for(tmp_path):
    """No journal thread: wait() writes and fsyncs what is queued in the caller's own
    thread, so a record is on disk when wait returns (read here while the journal is
    open); a record appended but never waited for, and a roll, are written at close."""
    threads = threading.active_count()
    j = journal.Journal(tmp_path, 0)
    assert threading.active_count() == threads
    j.wait(j.append({"op": "a"}))
    assert [r["op"] for r in journal.recover(tmp_path).records] == ["a"]
    j.append({"op": "b"})
    j.roll()
    j.append({"op": "c"})
    with pytest.raises(ValueError):
        j.wait(99)    # never appended: an error, not a hang
    j.close()
    assert len(journal.segments(tmp_path)) == 2
    assert [r["op"] for r in journal.recover(tmp_path).records] == ["a", "b", "c"]


def test_a_failed_write_fails_every_waiter_and_later_appends(tmp_path, monkeypatch):
    j = journal.Journal(tmp_path, 0)
    j.wait(j.append({"op": "a"}))

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal.os, "fsync", no_space)
    txid = j.append({"op": "b"})
    with pytest.raises(journal.JournalError, match="No space"):
        j.wait(txid)
    with pytest.raises(journal.JournalError):
        j.append({"op": "c"})
    with pytest.raises(journal.JournalError):
        j.close()


def test_a_checkpoint_bigger_than_a_journal_record_loads(tmp_path):
    """A million files make a ~70 MB image: one frame past MAX_RECORD, which bounds only
    the edits' records. It loads; a damaged one is refused."""
    ns = Namespace()
    for i in range(3):
        ns.apply({"op": "mkdirs", "path": f"/d{i}", "mtime": i})
    image = {**ns.to_image(), "padding": "x" * (journal.MAX_RECORD + 1)}
    journal.write_image(tmp_path, 3, image)
    assert (tmp_path / journal.IMAGE).stat().st_size > journal.MAX_RECORD
    rec = journal.recover(tmp_path)
    assert rec.image_txid == 3 and rec.image == image
    with open(tmp_path / journal.IMAGE, "r+b") as f:
        f.seek(journal.MAX_RECORD)
        f.write(b"y")
    with pytest.raises(journal.JournalError, match="corrupt"):
        journal.recover(tmp_path)


def test_segments_covered_by_the_image_are_not_read(tmp_path):
    """A crash between writing the image and deleting old segments leaves them behind."""
    write(tmp_path, [{"op": "mkdirs", "path": "/a", "mtime": 1}])
    write(tmp_path, [{"op": "mkdirs", "path": "/b", "mtime": 2}], last_txid=1)
    (_, old), _ = journal.segments(tmp_path)
    ns = Namespace()
    ns.apply({"op": "mkdirs", "path": "/a", "mtime": 1})
    image = ns.to_image()
    journal.write_image(tmp_path, 1, image)
    old.write_bytes(b"damaged beyond repair")  # as if left behind and then damaged
    rec = journal.recover(tmp_path)
    assert rec.image_txid == 1 and [r["path"] for r in rec.records] == ["/b"]


def test_group_commit_shares_fsyncs(tmp_path, monkeypatch):
    calls = []
    real_fsync = os.fsync

    def counting_fsync(fd):
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(journal.os, "fsync", counting_fsync)
    j = journal.Journal(tmp_path, 0)
    lock = threading.Lock()   # the nameserver's core lock orders appends

    def client(n):
        for i in range(25):
            with lock:
                txid = j.append({"op": "x", "c": n, "i": i})
            j.wait(txid)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    j.close()
    records = journal.recover(tmp_path).records
    assert len(records) == 200
    for n in range(8):
        assert [r["i"] for r in records if r["c"] == n] == list(range(25))
    assert len(calls) < 200  # concurrent waiters shared fsyncs


CHILD = textwrap.dedent("""
    import sys, threading
    from minijet import config
    from minijet.dfs.nameserver import NameServer
    cfg = config.from_dict({"nameserver": {"dir": sys.argv[1], "checkpoint_edits": 37}})
    server = NameServer(cfg)
    out = threading.Lock()

    def client(n):
        i = 0
        while True:
            server.mkdirs(f"/loop/t{n}/d{i}", parents=True)
            if i % 3 == 0:
                server.rename(f"/loop/t{n}/d{i}", f"/loop/t{n}/r{i}")
            with out:
                print(n, i, flush=True)   # acknowledged
            i += 1

    for n in range(4):
        threading.Thread(target=client, args=(n,)).start()
""")


def test_sigkill_mid_loop_keeps_every_acknowledged_change(tmp_path):
    """Four concurrent clients (sharing fsyncs), checkpoints every 37 edits, SIGKILL."""
    name_dir = tmp_path / "name"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(name_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    acked = {n: -1 for n in range(4)}
    try:
        deadline = time.monotonic() + 30
        while sum(acked.values()) < 600 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            n, i = map(int, line.split())
            acked[n] = i
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert sum(acked.values()) >= 600, "child did not make progress"
    assert list(name_dir.glob("image")), "no checkpoint was written"
    rec = journal.recover(name_dir)
    ns = Namespace.from_image(rec.image)
    for r in rec.records:
        ns.apply(r)
    for n, last in acked.items():
        names = {s.path for s in ns.list(f"/loop/t{n}")}
        for i in range(last + 1):
            assert f"/loop/t{n}/{'r' if i % 3 == 0 else 'd'}{i}" in names


def test_directory_lock_refuses_a_second_user(tmp_path):
    held = journal.lock_dir(tmp_path)
    try:
        code = ("import sys, pathlib; from minijet.dfs import journal\n"
                "try:\n    journal.lock_dir(pathlib.Path(sys.argv[1]))\n"
                "except journal.JournalError as e:\n    print(e)\n")
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                             text=True, timeout=30).stdout
        assert f"in use by another nameserver (pid {os.getpid()})" in out
    finally:
        held.close()
    journal.lock_dir(tmp_path).close()
