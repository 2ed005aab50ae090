"""The real `nameserver` process, driven over gRPC, killed with SIGKILL and restarted."""
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from minijet import config as configmod
from minijet import rpc
from minijet.dfs.namespace import Totals, checkpoint_due
from minijet.errors import (AlreadyExists, FailedPrecondition, InvalidArgument, MinijetError,
                            NotFound, Unavailable)
from minijet.net import free_port
from minijet.proto import dfs_pb2 as pb
from minijet.proto import dfs_pb2_grpc

from polling import wait_for

START = "from minijet.dfs.nameserver import main; main()"



class NameServerProcess:
    def __init__(self, tmp_path, **settings):
        self.address = f"127.0.0.1:{free_port()}"
        self.conf_path = tmp_path / "minijet.yaml"
        self.conf_path.write_text(yaml.safe_dump({
            "nameserver": {"address": self.address, "http_address": "127.0.0.1:0",
                           "dir": str(tmp_path / "name"),
                           "checkpoint_edits": 5, "replication_interval": "0.1s", **settings},
            "rpc": {"timeout": "5s", "retries": 0}}))
        self.config = configmod.load(str(self.conf_path))
        self.log_path = tmp_path / "nameserver.log"
        self.log = open(self.log_path, "ab")
        self.proc = None
        self.channel = rpc.connect(self.config, self.address)
        self.stub = dfs_pb2_grpc.NameServerStub(self.channel)

    def start(self):
        self.proc = subprocess.Popen([sys.executable, "-c", START, "--config", str(self.conf_path)],
                                     stdout=self.log, stderr=self.log)
        wait_for(lambda: self.call("SafeMode", pb.SafeModeRequest()) is not None, 15,
                 "the nameserver to answer", ignoring=MinijetError)

    def call(self, method, request):
        if self.proc.poll() is not None:
            raise AssertionError(f"nameserver exited with {self.proc.returncode}")
        return rpc.call(self.config, getattr(self.stub, method), request, idempotent=False)

    def kill(self, sig=signal.SIGKILL):
        self.proc.send_signal(sig)
        return self.proc.wait(10)

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.channel.close()
        self.log.close()


@pytest.fixture
def nameserver(tmp_path):
    ns = NameServerProcess(tmp_path)
    try:
        ns.start()
        yield ns
    finally:
        ns.close()


@pytest.fixture
def fast_nameserver(tmp_path):
    """Dead dataservers and silent writers are noticed within a second."""
    ns = NameServerProcess(tmp_path, dead_timeout="1s", lease_timeout="1s",
                           replication_timeout="2s")
    try:
        ns.start()
        yield ns
    finally:
        ns.close()


def register(ns, host):
    ns.call("RegisterDataServer", pb.RegisterRequest(
        node=pb.NodeInfo(host=host, data_address="127.0.0.1:1"), capacity=1 << 40, used=0))


def write(ns, path, sizes, client="c1", host="h1", **kw):
    ns.call("Create", pb.CreateRequest(path=path, client_id=client, client_host=host,
                                       replication=1, **kw))
    prev = pb.Block()
    for size in sizes:
        lb = ns.call("AddBlock", pb.AddBlockRequest(path=path, client_id=client, previous=prev))
        ns.call("BlockReceived", pb.BlockReceivedRequest(
            host=lb.locations[0].host, block=pb.Block(block_id=lb.block.block_id, length=size)))
        prev = pb.Block(block_id=lb.block.block_id, length=size)
    ns.call("Complete", pb.CompleteRequest(path=path, client_id=client, last=prev))


def names(ns, path):
    return [e.path for e in ns.call("List", pb.ListRequest(path=path)).entries]


def test_namespace_over_grpc_survives_sigkill(nameserver):
    ns = nameserver
    register(ns, "h1")
    register(ns, "h2")
    ns.call("Mkdirs", pb.MkdirsRequest(path="/a//b/", parents=True))
    with pytest.raises(NotFound, match="/x"):
        ns.call("Mkdirs", pb.MkdirsRequest(path="/x/y"))
    for bad in ("relative", "/a/../b", "/a\0", "/" + "n" * 300):
        with pytest.raises(InvalidArgument, match="invalid path"):
            ns.call("GetFileInfo", pb.PathRequest(path=bad))

    ns.call("Create", pb.CreateRequest(path="/a/f", client_id="c1", client_host="h2",
                                       replication=2, block_size=100))
    with pytest.raises(NotFound):  # invisible while being written
        ns.call("GetFileInfo", pb.PathRequest(path="/a/f"))
    lb = ns.call("AddBlock", pb.AddBlockRequest(path="/a/f", client_id="c1"))
    assert [n.host for n in lb.locations] == ["h2", "h1"] and lb.offset == 0
    for host in ("h2", "h1"):
        ns.call("BlockReceived", pb.BlockReceivedRequest(
            host=host, block=pb.Block(block_id=lb.block.block_id, length=100)))
    lb2 = ns.call("AddBlock", pb.AddBlockRequest(
        path="/a/f", client_id="c1", previous=pb.Block(block_id=lb.block.block_id, length=100)))
    assert lb2.offset == 100
    ns.call("Complete", pb.CompleteRequest(path="/a/f", client_id="c1",
                                           last=pb.Block(block_id=lb2.block.block_id, length=7)))
    st = ns.call("GetFileInfo", pb.PathRequest(path="/a/f"))
    assert (st.length, st.replication, st.block_size) == (107, 2, 100)
    locs = ns.call("GetBlockLocations", pb.GetBlockLocationsRequest(
        path="/a/f", client_host="h1"))
    assert [b.offset for b in locs.blocks] == [0, 100]
    assert [n.host for n in locs.blocks[0].locations] == ["h1", "h2"]
    assert len(ns.call("GetBlockLocations", pb.GetBlockLocationsRequest(
        path="/a/f", offset=100)).blocks) == 1
    with pytest.raises(AlreadyExists):
        ns.call("Create", pb.CreateRequest(path="/a/f", client_id="c2"))

    write(ns, "/a/g", [5])
    ns.call("Rename", pb.RenameRequest(src="/a/g", dst="/a/b/g2"))
    with pytest.raises(AlreadyExists):
        ns.call("Rename", pb.RenameRequest(src="/a/b", dst="/a/f"))
    write(ns, "/tmp/junk", [1, 1])
    assert ns.call("Delete", pb.DeleteRequest(path="/tmp", recursive=True)).deleted
    assert not ns.call("Delete", pb.DeleteRequest(path="/tmp")).deleted
    for i in range(8):  # enough edits for a checkpoint (checkpoint_edits: 5)
        ns.call("Mkdirs", pb.MkdirsRequest(path=f"/many/d{i}", parents=True))
    fsck = ns.call("Fsck", pb.PathRequest(path="/"))
    # the last block of /a/f was never reported by a dataserver
    assert (fsck.total_blocks, fsck.healthy, fsck.missing) == (3, 2, 1)

    ns.call("SafeMode", pb.SafeModeRequest(action=pb.SafeModeRequest.ENTER))
    with pytest.raises(FailedPrecondition, match="safe mode"):
        ns.call("Mkdirs", pb.MkdirsRequest(path="/refused"))
    ns.call("SafeMode", pb.SafeModeRequest(action=pb.SafeModeRequest.LEAVE))

    g2_blocks = [pb.Block(block_id=b.block.block_id, length=b.block.length)
                 for b in ns.call("GetBlockLocations", pb.GetBlockLocationsRequest(
                     path="/a/b/g2")).blocks]
    assert ns.kill() == -signal.SIGKILL
    ns.start()
    assert (ns.config["nameserver"]["dir"] and
            any(p.endswith("image") for p in os.listdir(ns.config["nameserver"]["dir"])))
    assert names(ns, "/") == ["/a", "/many"]
    assert names(ns, "/a") == ["/a/b", "/a/f"]
    assert names(ns, "/a/b") == ["/a/b/g2"]
    assert len(names(ns, "/many")) == 8
    assert ns.call("GetFileInfo", pb.PathRequest(path="/a/f")).length == 107

    # block locations are not persisted: safe mode until the dataservers report again
    state = ns.call("SafeMode", pb.SafeModeRequest())
    assert state.on and "0 of 3 blocks" in state.reason
    # safe mode after a start passes by itself: Unavailable, which clients retry
    with pytest.raises(Unavailable, match="safe mode"):
        ns.call("Mkdirs", pb.MkdirsRequest(path="/refused", parents=True))
    # and a block no dataserver has reported yet is asked for again, not said to be lost
    with pytest.raises(Unavailable, match="safe mode"):
        ns.call("GetBlockLocations", pb.GetBlockLocationsRequest(path="/a/b/g2"))
    hb = ns.call("DataServerHeartbeat", pb.DataServerHeartbeatRequest(host="h1"))
    assert [c.WhichOneof("command") for c in hb.commands] == ["reregister"]
    register(ns, "h1")
    register(ns, "h2")
    ns.call("BlockReport", pb.BlockReportRequest(host="h1", blocks=[
        pb.Block(block_id=lb.block.block_id, length=100),
        pb.Block(block_id=lb2.block.block_id, length=7),
        pb.Block(block_id=424242, length=1)]))  # an orphan
    ns.call("BlockReport", pb.BlockReportRequest(host="h2", blocks=g2_blocks))
    assert not ns.call("SafeMode", pb.SafeModeRequest()).on
    ns.call("Mkdirs", pb.MkdirsRequest(path="/after", parents=True))

    def orphan_deleted():
        hb = ns.call("DataServerHeartbeat", pb.DataServerHeartbeatRequest(host="h1"))
        return any(424242 in c.delete_blocks.block_ids for c in hb.commands)
    wait_for(orphan_deleted, 15, "orphan block deletion", ignoring=MinijetError)

    assert ns.kill(signal.SIGTERM) == 0  # clean stop: flushed and checkpointed
    ns.start()
    assert names(ns, "/") == ["/a", "/after", "/many"]
    last_load = [line for line in ns.log_path.read_text().splitlines()
                 if "loaded namespace" in line][-1]
    assert " 0 journal records replayed" in last_load


def heartbeat(ns, host):
    return ns.call("DataServerHeartbeat", pb.DataServerHeartbeatRequest(
        host=host, capacity=1 << 40)).commands


def test_dead_dataserver_and_bad_replica_are_repaired_by_commands(fast_nameserver):
    ns = fast_nameserver
    for h in ("h1", "h2", "h3"):
        register(ns, h)
    ns.call("Create", pb.CreateRequest(path="/f", client_id="c", client_host="h1",
                                       replication=2))
    lb = ns.call("AddBlock", pb.AddBlockRequest(path="/f", client_id="c"))
    block = pb.Block(block_id=lb.block.block_id, length=10)
    pipeline = [n.host for n in lb.locations]
    assert pipeline[0] == "h1" and len(pipeline) == 2
    for h in pipeline:
        ns.call("BlockReceived", pb.BlockReceivedRequest(host=h, block=block))
    ns.call("Complete", pb.CompleteRequest(path="/f", client_id="c", last=block))
    spare = ({"h1", "h2", "h3"} - set(pipeline)).pop()
    victim = pipeline[1]

    # the victim stops heartbeating: after dead_timeout, h1 is told to copy to the spare
    def replicate_command():
        heartbeat(ns, spare)
        return [c.replicate for c in heartbeat(ns, "h1") if c.WhichOneof("command") == "replicate"]
    (cmd,), = [wait_for(replicate_command, 15, "a replicate command", ignoring=MinijetError)]
    assert cmd.block.block_id == block.block_id and cmd.block.length == 10
    assert [t.host for t in cmd.targets] == [spare]
    ns.call("BlockReceived", pb.BlockReceivedRequest(host=spare, block=block))
    fsck = ns.call("Fsck", pb.PathRequest(path="/f"))
    assert fsck.healthy == 1 and victim not in fsck.files[0].blocks[0].live_hosts
    report = {d.node.host: d for d in ns.call("Report", pb.Empty()).dataservers}
    assert sorted(report) == ["h1", "h2", "h3"] and not report[victim].alive
    assert report["h1"].alive and abs(report["h1"].last_heartbeat - time.time()) < 30
    assert report["h1"].blocks == 1 and report["h1"].node.data_address == "127.0.0.1:1"
    assert [c.WhichOneof("command") for c in heartbeat(ns, victim)] == ["reregister"]

    # a reader finds h1's replica corrupt: it is no longer offered, and is deleted once
    # a good copy exists elsewhere
    register(ns, victim)
    ns.call("ReportBadBlock", pb.ReportBadBlockRequest(block_id=block.block_id, host="h1"))
    locs = ns.call("GetBlockLocations", pb.GetBlockLocationsRequest(path="/f", client_host="h1"))
    assert [n.host for n in locs.blocks[0].locations] == [spare]

    def copy_to_victim():
        heartbeat(ns, "h1")
        return [c.replicate for c in heartbeat(ns, spare) if c.WhichOneof("command") == "replicate"]
    (cmd,), = [wait_for(copy_to_victim, 15, "re-replication of the corrupt replica",
                        ignoring=MinijetError)]
    assert [t.host for t in cmd.targets] == [victim]
    ns.call("BlockReceived", pb.BlockReceivedRequest(host=victim, block=block))

    def corrupt_deleted():
        heartbeat(ns, spare)
        heartbeat(ns, victim)
        return [c for c in heartbeat(ns, "h1") if block.block_id in c.delete_blocks.block_ids]
    wait_for(corrupt_deleted, 15, "deletion of the corrupt replica", ignoring=MinijetError)


def test_silent_writer_loses_its_file(fast_nameserver):
    ns = fast_nameserver
    register(ns, "h1")
    ns.call("Create", pb.CreateRequest(path="/open", client_id="gone", client_host="h1",
                                       replication=1))
    lb = ns.call("AddBlock", pb.AddBlockRequest(path="/open", client_id="gone"))
    ns.call("BlockReceived", pb.BlockReceivedRequest(
        host="h1", block=pb.Block(block_id=lb.block.block_id, length=3)))
    wait_for(lambda: [c for c in heartbeat(ns, "h1")
                      if lb.block.block_id in c.delete_blocks.block_ids], 15, "lease expiry",
             ignoring=MinijetError)
    with pytest.raises(NotFound, match="not open for writing"):
        ns.call("Complete", pb.CompleteRequest(path="/open", client_id="gone", last=pb.Block(
            block_id=lb.block.block_id, length=3)))
    ns.call("Create", pb.CreateRequest(path="/open", client_id="new", replication=1))


def test_checkpoints_grow_apart_with_the_namespace():
    """checkpoint_edits apart while the namespace is small; a quarter of its entries apart
    once that is more, so a checkpoint's cost per edit does not grow with the namespace."""
    small, big = Totals(directories=3, files=10), Totals(directories=10_000, files=1_000_000)
    assert not checkpoint_due(4, small, every=5) and checkpoint_due(5, small, every=5)
    assert not checkpoint_due(20_000, big, every=20_000)
    assert not checkpoint_due(252_499, big, every=20_000)
    assert checkpoint_due(252_500, big, every=20_000)


def test_a_first_block_comes_with_create_when_it_can_be_placed(nameserver):
    """Create's first block saves a small file's AddBlock; with no dataserver to place it
    on, an empty file is still made, and a block is refused as before when data comes."""
    ns = nameserver
    reply = ns.call("Create", pb.CreateRequest(path="/empty", client_id="c1", client_host="h1",
                                               replication=1, first_block=True))
    assert not reply.HasField("first_block")   # no dataserver yet
    ns.call("Complete", pb.CompleteRequest(path="/empty", client_id="c1"))
    assert ns.call("GetFileInfo", pb.PathRequest(path="/empty")).length == 0
    ns.call("Create", pb.CreateRequest(path="/data", client_id="c1", client_host="h1",
                                       replication=1, first_block=True))
    with pytest.raises(MinijetError, match="no live dataserver"):
        ns.call("AddBlock", pb.AddBlockRequest(path="/data", client_id="c1"))

    register(ns, "h1")
    reply = ns.call("Create", pb.CreateRequest(path="/small", client_id="c1", client_host="h1",
                                               replication=1, first_block=True))
    first = reply.first_block
    assert [n.host for n in first.locations] == ["h1"] and first.offset == 0
    ns.call("BlockReceived", pb.BlockReceivedRequest(
        host="h1", blocks=[pb.Block(block_id=first.block.block_id, length=7)]))
    ns.call("Complete", pb.CompleteRequest(
        path="/small", client_id="c1", last=pb.Block(block_id=first.block.block_id, length=7)))
    located = ns.call("GetBlockLocations", pb.GetBlockLocationsRequest(path="/small"))
    assert [b.block.block_id for b in located.blocks] == [first.block.block_id]
    assert [n.host for n in located.blocks[0].locations] == ["h1"]


def test_block_received_completes_the_files_whose_closes_it_carries(nameserver):
    """A pipeline's first node carries its writer's close with the replica: the call
    completes each file as Complete would (durably), says which closes it refused and why,
    and a retried close is no error."""
    ns = nameserver
    register(ns, "h1")
    firsts = {}
    for path in ("/a", "/b", "/c"):
        firsts[path] = ns.call("Create", pb.CreateRequest(
            path=path, client_id="c1", client_host="h1", replication=1,
            first_block=True)).first_block.block.block_id

    def close(path, client="c1", length=5):
        return pb.FileClose(path=path, client_id=client,
                            last=pb.Block(block_id=firsts[path], length=length))

    reply = ns.call("BlockReceived", pb.BlockReceivedRequest(
        host="h1", blocks=[pb.Block(block_id=firsts[p], length=5) for p in firsts],
        closes=[close("/a"), close("/b", client="someone-else"), close("/c")]))
    assert [r.error for r in reply.closes] == ["", "NotFound", ""]
    assert "/b is not open for writing by this client" in reply.closes[1].message
    with pytest.raises(NotFound):   # still being written: its writer completes it itself
        ns.call("GetFileInfo", pb.PathRequest(path="/b"))
    retried = ns.call("BlockReceived", pb.BlockReceivedRequest(
        host="h1", blocks=[pb.Block(block_id=firsts["/a"], length=5)], closes=[close("/a")]))
    assert [r.error for r in retried.closes] == [""]
    for path in ("/a", "/c"):
        located = ns.call("GetBlockLocations", pb.GetBlockLocationsRequest(path=path))
        assert [(b.block.block_id, b.block.length) for b in located.blocks] == \
            [(firsts[path], 5)]
        assert [n.host for n in located.blocks[0].locations] == ["h1"]

    assert ns.kill() == -signal.SIGKILL
    ns.start()
    for path in ("/a", "/c"):
        assert ns.call("GetFileInfo", pb.PathRequest(path=path)).length == 5
