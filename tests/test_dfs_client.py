"""DfsClient end to end: a real nameserver and real dataserver processes."""
from __future__ import annotations

import glob
import hashlib
import os

import pytest

from minijet.dfs import transfer_client
from minijet.errors import NotFound, Unavailable
from dfs_cluster import DfsCluster, data_dir
from polling import wait_for

MiB = 1024 * 1024


def data_of(seed: str, size: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest() * 128
        counter += 1
    return bytes(out[:size])


def write(client, path, data, **kw):
    with client.create(path, **kw) as w:
        for i in range(0, len(data), 100_000):  # writes not aligned to packets or blocks
            w.write(data[i:i + 100_000])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with DfsCluster(tmp_path_factory.mktemp("dfs")) as c:
        yield c.start(dataservers=4)


@pytest.fixture
def client(cluster):
    with cluster.client() as c:
        yield c


def test_multi_block_round_trip_with_three_replicas(client, tmp_path):
    data = data_of("multi", 5 * MiB + 12345)
    write(client, "/rt/multi", data, replication=3)
    st = client.stat("/rt/multi")
    assert (st.length, st.replication, st.block_size, st.is_dir) == (len(data), 3, MiB, False)
    blocks = client.block_locations("/rt/multi")
    assert [b.offset for b in blocks] == [i * MiB for i in range(6)]
    assert all(len(set(b.hosts)) == 3 for b in blocks)
    with client.open("/rt/multi") as r:
        assert r.read() == data
    client.get("/rt/multi", str(tmp_path / "copy"))
    assert (tmp_path / "copy").read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["copy"]  # no temp file left


def test_empty_file_and_exact_multiple_of_the_block_size(client, tmp_path):
    write(client, "/rt/empty", b"")
    assert client.stat("/rt/empty").length == 0
    assert client.block_locations("/rt/empty") == []
    with client.open("/rt/empty") as r:
        assert r.read() == b"" and r.readline() == b"" and list(r) == []
    client.get("/rt/empty", str(tmp_path / "empty"))
    assert (tmp_path / "empty").read_bytes() == b""
    data = data_of("exact", 2 * MiB)
    src = tmp_path / "exact"
    src.write_bytes(data)
    client.put(str(src), "/rt/exact")
    assert [b.length for b in client.block_locations("/rt/exact")] == [MiB, MiB]
    with client.open("/rt/exact") as r:
        assert r.read() == data


def test_seek_read_and_readinto(client):
    data = data_of("seek", 3 * MiB + 777)
    write(client, "/rt/seek", data, replication=2)
    with client.open("/rt/seek") as r:
        for pos, n in [(0, 10), (MiB - 3, 6), (2 * MiB + 5, 100_000), (len(data) - 5, 100),
                       (17, 2 * MiB), (len(data), 10), (len(data) + 10, 10)]:
            assert r.seek(pos) == pos
            assert r.read(n) == data[pos:pos + n]
            assert r.tell() == min(pos + n, max(pos, len(data)))
        r.seek(-100, os.SEEK_END)
        assert r.read() == data[-100:]
        r.seek(1000)
        buf = bytearray(2 * MiB)
        assert r.readinto(buf) == 2 * MiB and buf == data[1000:1000 + 2 * MiB]
        r.seek(0)
        assert b"".join(iter(lambda: r.read(7777), b"")) == data  # small reads across packets


def test_lines_across_block_boundaries(client):
    lines = [b"%d %s\n" % (i, b"x" * (i % 300)) for i in range(20000)]
    data = b"".join(lines) + b"no newline at the end"
    assert len(data) > 2 * MiB
    write(client, "/rt/lines", data)
    with client.open("/rt/lines") as r:
        assert list(r) == lines + [b"no newline at the end"]
        r.seek(0)
        assert r.readline() == lines[0]
        assert r.readline(3) == lines[1][:3]


def test_file_is_invisible_until_close_and_abort_leaves_nothing(client):
    w = client.create("/vis/f")
    w.write(data_of("vis", MiB + 10))
    assert not client.exists("/vis/f")
    with pytest.raises(NotFound):
        client.open("/vis/f")
    w.close()
    assert client.stat("/vis/f").length == MiB + 10
    with pytest.raises(RuntimeError):
        with client.create("/vis/g") as w:
            w.write(b"partial")
            raise RuntimeError("user code failed")
    assert not client.exists("/vis/g")


def test_a_close_whose_last_ack_is_lost_finds_the_file_complete(client, monkeypatch):
    """The pipeline carried the writer's close and the nameserver completed the file, but
    the last ack never came back (say, the first dataserver died right then): close() asks
    the nameserver, finds the file complete with its block, and succeeds."""
    finish = transfer_client.BlockWriter.finish
    closes = []

    def finish_and_lose_the_last_ack(self, close=False):
        closes.append(finish(self, close))
        raise transfer_client.PipelineError(0, "lost the connection")

    monkeypatch.setattr(transfer_client.BlockWriter, "finish", finish_and_lose_the_last_ack)
    with client.create("/lost-ack", replication=2) as w:
        w.write(b"hello")
    monkeypatch.undo()
    assert closes == [True]
    with client.open("/lost-ack") as r:
        assert r.read() == b"hello"
    assert len(client.block_locations("/lost-ack")[0].hosts) == 2


def test_namespace_operations(client):
    client.mkdir("/ns/a/b", parents=True)
    write(client, "/ns/a/b/f", b"hello")
    client.rename("/ns/a/b/f", "/ns/a/g")
    assert sorted(s.path for s in client.list("/ns/a")) == ["/ns/a/b", "/ns/a/g"]
    assert [s.path for s in client.list("/ns/a/g")] == ["/ns/a/g"]
    assert client.delete("/ns/a", recursive=True)
    assert not client.exists("/ns/a/g")
    assert client.safemode("get")[0] is False


def test_corrupt_replica_is_skipped_and_reported(cluster, client):
    data = data_of("corrupt", MiB + 500)
    write(client, "/bad/f", data, replication=3)
    first = client.block_locations("/bad/f")[0]
    victim = first.hosts[0]
    path = os.path.join(data_dir(cluster, int(victim[4:])), "current",
                        f"blk_{first.block_id}")
    with open(path, "r+b") as f:
        f.seek(1000)
        f.write(bytes([data[1000] ^ 0x55]))
    with cluster.client(host=victim) as local:  # reads the corrupt replica first
        with local.open("/bad/f") as r:
            assert r.read() == data
    seen = []

    def replaced() -> bool:  # re-replicated from a good replica, then the corrupt one deleted
        health = [b for f in client.fsck("/bad/f").files for b in f.blocks
                  if b.block.block_id == first.block_id][0]
        seen[:] = [health]
        return (health.state == "healthy" and len(health.live_hosts) == 3
                and victim not in health.live_hosts and not health.corrupt_hosts
                and not os.path.exists(path))

    wait_for(replaced, 20, lambda: f"the corrupt replica to be replaced; last seen: {seen}")
    assert victim not in client.block_locations("/bad/f")[0].hosts


@pytest.fixture
def own_cluster(tmp_path):
    with DfsCluster(tmp_path) as c:
        yield c.start(dataservers=4)


def test_dataserver_killed_during_write_recovers_and_reads_fail_over(own_cluster):
    data = data_of("kill", 3 * MiB + 4321)
    with own_cluster.client(host="host1") as c:  # first replica of every block on host1
        w = c.create("/k/f", replication=3)
        w.write(data[:MiB + MiB // 2])
        own_cluster.kill(1)
        w.write(data[MiB + MiB // 2:])
        w.close()
        assert c.stat("/k/f").length == len(data)
        blocks = c.block_locations("/k/f")
        assert all("host1" not in b.hosts for b in blocks[1:])
        with c.open("/k/f") as r:  # the first block's replica on host1 is gone: fail over
            assert r.read() == data
    with own_cluster.client(host="host2") as c:
        with c.open("/k/f") as r:  # the replica being streamed dies mid-read
            head = r.read(1000)
            own_cluster.kill(2)
            assert head + r.read() == data
    assert not glob.glob(os.path.join(data_dir(own_cluster, 2), "tmp", "blk_*"))


def test_write_fails_clearly_when_no_pipeline_can_be_built(tmp_path):
    with DfsCluster(tmp_path, {"dfs": {"client_retries": 1}}) as cluster:
        cluster.start(dataservers=2)
        with cluster.client(host="host1") as c:
            w = c.create("/k/g", replication=2)
            w.write(data_of("g", MiB // 2))
            cluster.kill(1)
            cluster.kill(2)
            with pytest.raises(Unavailable) as e:
                w.write(data_of("g2", MiB))
                w.close()
            assert "/k/g" in str(e.value)
            with pytest.raises(Unavailable, match="/k/g was not written"):
                w.close()  # a failed writer never commits
            assert not c.exists("/k/g")


def test_text_io_wraps_reader_and_writer(client):
    import io
    with client.create("/text/t") as w:
        t = io.TextIOWrapper(w, encoding="utf-8")
        t.write("héllo\nwörld\n")
        t.flush()
        t.detach()
    with client.open("/text/t") as r:
        assert io.TextIOWrapper(r, encoding="utf-8").read().splitlines() == ["héllo", "wörld"]


def test_dataservers_wait_for_the_nameserver_restart_cleanly_and_report_again(tmp_path):
    with DfsCluster(tmp_path) as cluster:
        for i in (1, 2):  # before the nameserver: they retry registration until it is up
            cluster.start_dataserver(i)
        for i in (1, 2):
            wait_for(lambda: "(retrying)" in cluster.log(f"dataserver{i}"), 10,
                     f"dataserver{i} to fail to reach the nameserver")
        cluster.start_nameserver()
        cluster.wait_live(2)
        data = data_of("restart", MiB + 99)
        with cluster.client() as c:
            write(c, "/r/f", data, replication=2)
        with cluster.client() as c:
            old = {d.node.data_address for d in c.report().dataservers}
        for i in (1, 2):
            p = cluster.dataservers.pop(i)
            p.terminate()
            assert p.wait(10) == 0  # a clean stop on SIGTERM
        for i in (1, 2):
            cluster.start_dataserver(i)
        with cluster.client() as c:  # registered again on new ports, replicas reported
            wait_for(lambda: not {d.node.data_address for d in c.report().dataservers} & old
                     and all(len(b.hosts) == 2 for b in c.block_locations("/r/f")), 10,
                     "the replicas to be reported after the restart")
            with c.open("/r/f") as r:
                assert r.read() == data
        cluster.kill_nameserver()
        cluster.start_nameserver()  # knows no dataserver: they register and report again
        with cluster.client() as c:  # Unavailable: not listening yet
            wait_for(lambda: all(len(b.hosts) == 2 for b in c.block_locations("/r/f")), 15,
                     "the replicas to be reported to the new nameserver", ignoring=Unavailable)
            with c.open("/r/f") as r:
                assert r.read() == data


def test_cluster_with_an_auth_token(tmp_path):
    with DfsCluster(tmp_path, {"security": {"auth_token": "s3cret"}}) as cluster:
        cluster.start(dataservers=2)
        data = data_of("token", MiB + 1)
        with cluster.client() as c:
            write(c, "/t/f", data, replication=2)
            with c.open("/t/f") as r:
                assert r.read() == data


def test_a_block_without_a_good_replica_is_a_clear_checksum_error(cluster, client):
    from minijet.errors import ChecksumError
    write(client, "/bad/only", b"z" * 70_000, replication=1)
    block = client.block_locations("/bad/only")[0]
    path = os.path.join(data_dir(cluster, int(block.hosts[0][4:])), "current",
                        f"blk_{block.block_id}")
    with open(path + ".meta", "r+b") as f:
        f.truncate(10)  # checksums lost: the dataserver itself refuses the replica
    with client.open("/bad/only") as r:
        with pytest.raises(ChecksumError, match=f"cannot read /bad/only .*{block.block_id}"):
            r.read()


def test_middle_of_the_pipeline_killed_mid_block(own_cluster, caplog):
    data = data_of("middle", 2 * MiB + 100)
    with own_cluster.client() as c:
        w = c.create("/k/m", replication=3)
        w.write(data[:MiB // 2])  # the first block's pipeline is open, its packets in flight
        middle = w._block.locations[1].host
        own_cluster.kill(int(middle[4:]))
        w.write(data[MiB // 2:])
        w.close()
        assert all(middle not in b.hosts for b in c.block_locations("/k/m"))
        blamed = [r.getMessage() for r in caplog.records if "pipeline failed at" in r.getMessage()]
        assert blamed and all(f"pipeline failed at {middle} " in m for m in blamed)
        with c.open("/k/m") as r:
            assert r.read() == data


def test_concurrent_writers_and_readers(client):
    from concurrent.futures import ThreadPoolExecutor
    files = {f"/conc/f{i}": data_of(f"conc{i}", MiB + i * 7919) for i in range(8)}

    def round_trip(path):
        write(client, path, files[path], replication=2)
        with client.open(path) as r:
            return r.read() == files[path]

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(round_trip, files))
