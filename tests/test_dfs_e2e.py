"""End-to-end DFS behaviour against real nameserver and dataserver processes."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from minijet.errors import AlreadyExists, InvalidArgument
from polling import wait_for

MiB = 1024 * 1024
BIN = Path(sys.executable).parent


def dfsshell(cluster, *args, text=True) -> subprocess.CompletedProcess:
    """Run the real `dfsshell` console script against `cluster`."""
    return subprocess.run([str(BIN / "dfsshell"), *args[:1], "--config", str(cluster.config_path),
                           *args[1:]], capture_output=True, text=text, timeout=60)


def blocks_healthy(client, path: str, replicas: int, not_on: dict[int, str] | None = None):
    """The file's BlockHealth list if every block is healthy with `replicas` live replicas and
    no corrupt ones, block `b` not on host `not_on[b]`; else None."""
    not_on = not_on or {}
    report = client.fsck(path)
    blocks = [b for f in report.files for b in f.blocks]
    ok = blocks and all(b.state == "healthy" and len(b.live_hosts) == replicas
                        and not b.corrupt_hosts and not_on.get(b.block.block_id) not in
                        b.live_hosts for b in blocks)
    return blocks if ok else None


def data_of(seed: str, size: int) -> bytes:
    """`size` reproducible pseudo-random bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest() * 64
        counter += 1
    return bytes(out[:size])


# ---- round trips (shared cluster) ----

def test_multi_block_file_round_trips_through_dfsshell(cluster, tmp_path):
    data = os.urandom(10 * 1000 * 1000)
    local = tmp_path / "ten_mb"
    local.write_bytes(data)
    r = dfsshell(cluster, "put", "--replication", "3", str(local), "/e2e/ten_mb")
    assert r.returncode == 0, r.stderr

    r = dfsshell(cluster, "stat", "/e2e/ten_mb", "--json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["length"] == len(data) and st["block_size"] == MiB and st["replication"] == 3
    assert len(st["blocks"]) == 10
    assert [b["offset"] for b in st["blocks"]] == [i * MiB for i in range(10)]
    assert sum(b["length"] for b in st["blocks"]) == len(data)
    for b in st["blocks"]:
        assert len(set(b["hosts"])) == 3, b

    back = tmp_path / "back"
    r = dfsshell(cluster, "get", "/e2e/ten_mb", str(back))
    assert r.returncode == 0, r.stderr
    assert back.read_bytes() == data

    with closing(cluster.client()) as client, client.open("/e2e/ten_mb") as reader:
        reader.seek(3 * MiB - 10)
        assert reader.read(20) == data[3 * MiB - 10:3 * MiB + 10]


@pytest.mark.parametrize("size", [0, 2 * MiB, 1])
def test_empty_exact_block_multiple_and_tiny_files_round_trip(cluster, size):
    data = data_of(f"size{size}", size)
    path = f"/e2e/size_{size}"
    with closing(cluster.client()) as client:
        with client.create(path, replication=3) as writer:
            writer.write(data)
        assert client.stat(path).length == size
        assert len(client.block_locations(path)) == -(-size // MiB)
        with client.open(path) as reader:
            assert reader.read() == data


def nameserver_operations(cluster) -> dict[str, float]:
    """The nameserver's count of RPCs handled, by method (its /metrics)."""
    url = f"http://{cluster.config['nameserver']['http_address']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    return {s.labels["operation"]: s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == "minijet_nameserver_operations_total"}


def test_small_files_take_one_call_each_and_are_readable_once_closed(cluster):
    """A file's first block comes with Create, replicas are announced before the last ack,
    and the pipeline's first node carries the writer's close with its announcement: many
    small files written at once cost neither AddBlock nor Complete, and each one is
    readable with all its replicas known as soon as its writer closed it."""
    before = nameserver_operations(cluster)
    errors = []

    def write_and_read(i):
        try:
            with closing(cluster.client()) as client:
                data = data_of(f"small{i}", 100 + i)
                with client.create(f"/e2e/small/{i}", replication=3) as writer:
                    writer.write(data)
                assert len(client.block_locations(f"/e2e/small/{i}")[0].hosts) == 3
                with client.open(f"/e2e/small/{i}") as reader:
                    assert reader.read() == data
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=write_and_read, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    after = nameserver_operations(cluster)
    calls = {m: after.get(m, 0) - before.get(m, 0) for m in after}
    assert calls["Create"] == 12
    assert calls.get("AddBlock", 0) == calls.get("Complete", 0) == 0
    # a file's own events are logged at DEBUG: at INFO they cost the nameserver ~7%
    logs = cluster.dir / "logs"
    assert "/e2e/small/" not in (logs / "nameserver.log").read_text()
    assert not any("replica finalized" in p.read_text() for p in logs.glob("dataserver*.log"))
    assert 1 <= calls["BlockReceived"] <= 36   # 36 replicas, grouped when they meet


def test_shell_listing_stat_and_moves(cluster, tmp_path):
    local = tmp_path / "lines.txt"
    local.write_bytes(b"one\ntwo\nthree\n")
    assert dfsshell(cluster, "mkdir", "-p", "/shell/a/b").returncode == 0
    assert dfsshell(cluster, "put", str(local), "/shell/a/").returncode == 0
    r = dfsshell(cluster, "ls", "-R", "/shell")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [ln.split()[-1] for ln in lines] == ["/shell/a", "/shell/a/b", "/shell/a/lines.txt"]
    assert lines[2].split()[:3] == ["-", "3", "14"]

    assert dfsshell(cluster, "mv", "/shell/a/lines.txt", "/shell/a/b").returncode == 0
    r = dfsshell(cluster, "cat", "/shell/a/b/lines.txt")
    assert (r.returncode, r.stdout) == (0, "one\ntwo\nthree\n")
    r = dfsshell(cluster, "stat", "/shell/a/b/lines.txt")
    assert r.returncode == 0 and "Replication:  3" in r.stdout and "REPLICAS" in r.stdout

    r = dfsshell(cluster, "fsck", "/shell", "--json")
    assert r.returncode == 0, r.stderr
    fsck = json.loads(r.stdout)
    assert [f["path"] for f in fsck["files"]] == ["/shell/a/b/lines.txt"]
    assert fsck["total_blocks"] == fsck["healthy"] == 1
    assert fsck["missing"] == fsck["corrupt"] == fsck["under_replicated"] == 0
    assert dfsshell(cluster, "rm", "-r", "/shell").returncode == 0
    assert dfsshell(cluster, "ls", "/shell").returncode == 1

    r = dfsshell(cluster, "report")
    assert r.returncode == 0 and "4 alive" in r.stdout and "host4" in r.stdout
    r = dfsshell(cluster, "safemode", "get")
    assert (r.returncode, r.stdout.strip()) == (0, "Safe mode is OFF")
    r = dfsshell(cluster, "fsck", "/")
    assert r.returncode == 0 and "is HEALTHY" in r.stdout
    r = dfsshell(cluster, "report", "--json")
    assert r.returncode == 0, r.stderr
    assert sorted(d["host"] for d in json.loads(r.stdout) if d["alive"]) == \
        ["host1", "host2", "host3", "host4"]


def test_a_batch_applies_each_operation_on_its_own_in_one_call(cluster):
    with cluster.client() as client:
        client.mkdir("/batch")
        client.mkdir("/batch/taken")
        results = client.mkdirs_batch(["/batch/a", "/batch/taken", "/batch/b/c"])
        assert results[0] is None and results[2] is not None   # no parents asked for
        assert isinstance(results[1], AlreadyExists) and "/batch/taken" in str(results[1])
        results = client.create_empty_batch(
            ["/batch/a/f", "/batch/taken", "/batch/new/g", "relative"], replication=2)
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], AlreadyExists)
        assert isinstance(results[3], InvalidArgument)
        st = client.stat("/batch/new/g")
        assert (st.is_dir, st.length, st.replication) == (False, 0, 2)
        assert client.open("/batch/a/f").read() == b""
        assert [s.path for s in client.list("/batch")] == ["/batch/a", "/batch/new",
                                                           "/batch/taken"]


def test_a_large_directory_lists_in_pages_complete_and_in_order(cluster):
    names = [f"e{i:05d}" for i in range(2500)]
    with cluster.client() as client:
        client.mkdir("/paged")
        for i in range(0, len(names), 1000):   # made out of name order
            batch = [f"/paged/{n}" for n in reversed(names[i:i + 1000])]
            assert client.mkdirs_batch(batch) == [None] * len(batch)
        pages = list(client.list_pages("/paged", page_size=300))
        assert [len(p.entries) for p in pages] == [300] * 8 + [100]
        assert [p.remaining for p in pages] == [2500 - 300 * (i + 1) for i in range(8)] + [0]
        assert [s.path for p in pages for s in p.entries] == [f"/paged/{n}" for n in names]
        first = next(client.list_pages("/paged", page_size=5000))
        assert (len(first.entries), first.remaining) == (1000, 1500)   # the server's page
        assert [s.path for s in client.list("/paged")] == [f"/paged/{n}" for n in names]
    r = dfsshell(cluster, "ls", "/paged")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "Found 2500 items"
    assert [ln.split()[-1] for ln in lines[1:]] == [f"/paged/{n}" for n in names]
    assert len({len(ln) for ln in lines[1:]}) == 1   # aligned across pages


# ---- bad inputs: one clear line through the real dfsshell ----

@pytest.fixture(scope="module")
def bad_input_setup(cluster, tmp_path_factory):
    local = tmp_path_factory.mktemp("bad") / "f.txt"
    local.write_text("x\n")
    assert dfsshell(cluster, "put", str(local), "/bad/exists.txt").returncode == 0
    return local


@pytest.mark.parametrize("args, words", [
    (["mkdir", "/bad/../etc"], "'..'"),
    (["put", "{local}", "/bad/exists.txt"], "already exists"),
    (["cat", "/bad/nosuch.txt"], "/bad/nosuch.txt"),
    (["get", "/bad/nosuch.txt", "{tmp}/out"], "/bad/nosuch.txt"),
    (["rm", "/bad"], "/bad"),
    (["put", "{tmp}/no_such_local_file", "/bad/x"], "no_such_local_file"),
    (["mv", "/bad/exists.txt", "/nodir/x/y"], "/nodir"),
    (["ls", "relative/path"], "absolute"),
    (["ls", "/", "-D", "nosuch.key=1"], "nosuch.key"),
])
def test_bad_inputs_give_one_clear_line(cluster, bad_input_setup, tmp_path, args, words):
    args = [a.format(local=bad_input_setup, tmp=tmp_path) for a in args]
    r = dfsshell(cluster, *args)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stdout == ""
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dfsshell: error: "), r.stderr
    assert words in lines[0]


def test_unreachable_nameserver_is_one_clear_line(cluster):
    from minijet.net import free_port
    r = dfsshell(cluster, "ls", "/", "-D", f"nameserver.address=127.0.0.1:{free_port()}",
                 "-D", "dfs.client_wait=1s", "-D", "rpc.timeout=2s")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert len(r.stderr.splitlines()) == 1 and "cannot reach" in r.stderr


# ---- faults ----

def test_corrupt_replica_is_read_around_and_replaced(cluster):
    data = data_of("corrupt", 3 * MiB)
    path = "/e2e/corrupt"
    with closing(cluster.client()) as client:
        with client.create(path, replication=3) as writer:
            writer.write(data)
        block = client.block_locations(path)[0]
        victim = block.hosts[0]
        block_file = cluster.dir / f"data{victim.removeprefix('host')}" / "current" / \
            f"blk_{block.block_id}"
        with open(block_file, "r+b") as f:
            f.seek(1000)
            original = f.read(16)
            f.seek(1000)
            f.write(bytes(b ^ 0xFF for b in original))

    # Readers on the victim's host try the corrupt replica first: through dfsshell (quietly)...
    r = dfsshell(cluster, "cat", path, "-D", f"node.host={victim}", text=False)
    assert (r.returncode, r.stderr) == (0, b"") and r.stdout == data
    with closing(cluster.client(host=victim)) as client:
        with client.open(path) as reader:  # ...and through the client
            assert reader.read() == data
        blocks = wait_for(lambda: blocks_healthy(client, path, 3, {block.block_id: victim}),
                          30, f"block {block.block_id} to have 3 good replicas besides {victim}")
        assert len(blocks) == 3
        with client.open(path) as reader:
            assert reader.read() == data


@pytest.mark.parametrize("short_circuit", [True, False])
def test_local_replicas_are_read_from_their_files_unless_turned_off(cluster, monkeypatch,
                                                                   short_circuit):
    from minijet.dfs import DfsClient, transfer_client

    data = data_of("short-circuit", 3 * MiB + 17)
    local_reads = []
    read_into = transfer_client.LocalBlockReader.read_into
    monkeypatch.setattr(transfer_client.LocalBlockReader, "read_into",
                        lambda self, dest: local_reads.append(self.block_id) or
                        read_into(self, dest))
    config = cluster.config.with_overrides({"dfs.short_circuit": short_circuit})
    with closing(DfsClient(config)) as client:
        with client.create(f"/e2e/sc-{short_circuit}", replication=2) as writer:
            writer.write(data)
        with client.open(f"/e2e/sc-{short_circuit}") as reader:
            assert reader.read() == data
        blocks = {b.block_id for b in client.block_locations(f"/e2e/sc-{short_circuit}")}
        # every dataserver of the local cluster is on this machine
        assert client.remote_dataservers == set()
    assert (set(local_reads) == blocks) if short_circuit else not local_reads


def test_dead_dataserver_blocks_are_rereplicated(fresh_cluster):
    lc = fresh_cluster(dataservers=4)
    data = data_of("dead", 5 * MiB + 123)
    path = "/e2e/dead"
    with closing(lc.client()) as client:
        with client.create(path, replication=3) as writer:
            writer.write(data)
        blocks = client.block_locations(path)
        victim = blocks[0].hosts[0]
        lc.kill("dataserver", int(victim.removeprefix("host")))
        with client.open(path) as reader:  # at once, before the nameserver notices
            assert reader.read() == data
        gone = {b.block_id: victim for b in blocks}
        wait_for(lambda: blocks_healthy(client, path, 3, gone), 30,
                 f"every block back to 3 live replicas without {victim}")
        with client.open(path) as reader:
            assert reader.read() == data


WRITER = r"""
import sys
from minijet import config
from minijet.dfs import DfsClient
from minijet.errors import MinijetError

cfg = config.load(sys.argv[1]).with_overrides({"rpc.retries": 0, "rpc.timeout": 3})
client = DfsClient(cfg)
i = 0
while True:
    path = f"/crash/f{i:05d}"
    i += 1
    try:
        with client.create(path) as writer:
            writer.write(path.encode() * (1 + i % 50))
    except MinijetError as e:
        print("failed", path, e, file=sys.stderr, flush=True)
        continue
    print(path, flush=True)  # acknowledged: close() returned
"""


def test_acknowledged_files_survive_nameserver_kill(fresh_cluster):
    lc = fresh_cluster(dataservers=3)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(lc.config_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    acked: list[str] = []

    def collect():
        for line in writer.stdout:
            if line.endswith("\n"):
                acked.append(line.strip())

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    try:
        wait_for(lambda: len(acked) >= 20, 60, "20 acknowledged files")
        lc.kill("nameserver")
        before_restart = len(acked)
        lc.restart()
        wait_for(lambda: len(acked) >= before_restart + 10, 60, "writes after the restart")
    finally:
        writer.kill()
        writer.wait()
        reader.join(10)

    with closing(lc.client()) as client:
        for path in acked:
            i = int(path.removeprefix("/crash/f")) + 1
            with client.open(path) as r:
                assert r.read() == path.encode() * (1 + i % 50), path
