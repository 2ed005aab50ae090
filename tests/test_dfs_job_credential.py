"""A job's DFS credential on a real DFS cluster with an auth token: registered through the
nameserver's RPC, a client holding only it (no cluster token) reads and writes within the
job's scope, block bytes included, and nothing else; it survives a nameserver restart and
is refused once removed or expired. Block tokens open only their own block."""
from __future__ import annotations

import signal

import pytest

from minijet.dfs import DfsClient, blocktokens, transfer_client
from minijet.dfs.transfer_auth import BlockAccess, Credentials
from minijet.errors import PermissionDenied, Unauthenticated

from dfs_cluster import DfsCluster
from polling import wait_for

MiB = 1024 * 1024
TOKEN = "cluster-s3cret"
INPUT = bytes(range(256)) * (5 * 1024) + b"tail"   # 1.25 MiB: two blocks


@pytest.fixture
def secured(tmp_path):
    with DfsCluster(tmp_path, {"security": {"auth_token": TOKEN}}) as cluster:
        cluster.start(dataservers=2)
        with cluster.client() as admin:
            with admin.create("/in/file", replication=2) as f:
                f.write(INPUT)
            with admin.create("/secret/file") as f:
                f.write(b"not yours")
            admin.mkdir("/out")
            admin.add_job_credential("job_1", "job-s3cret", "alice", ["/in"], ["/out"], 3600)
        yield cluster


def task_client(cluster: DfsCluster, credential: str = "job_1:job-s3cret",
                short_circuit: bool = True) -> DfsClient:
    """A client as a task holds it: the job's credential and no cluster token."""
    config = cluster.config.with_overrides({"security.auth_token": "",
                                            "dfs.short_circuit": short_circuit})
    return DfsClient(config, host="client", credential=credential)


def test_a_job_credential_reads_and_writes_only_within_its_scope(secured):
    data = bytes(reversed(INPUT)) * 2
    for short_circuit in (True, False):   # block bytes from the replica's file, and over TCP
        with task_client(secured, short_circuit=short_circuit) as task:
            with task.open("/in/file") as r:
                assert r.read() == INPUT
            out = f"/out/x{int(short_circuit)}"
            with task.create(out, replication=2) as w:   # a pipeline of two dataservers
                w.write(data)
            task.rename(out, out + ".done")
            with task.open(out + ".done") as r:
                assert r.read() == data
            assert out + ".done" in [s.path for s in task.list("/out")]

    with task_client(secured) as task:
        refused = [
            ("may not read /secret/file", lambda: task.open("/secret/file")),
            ("may not read /", lambda: task.list("/")),
            ("may not change /in/y", lambda: task.create("/in/y")),
            ("may not change /in/file", lambda: task.delete("/in/file")),
            ("may not change /elsewhere", lambda: task.rename("/out/x1.done", "/elsewhere")),
            ("'..' components are not allowed", lambda: task.stat("/out/../secret/file")),
            ("'..' components are not allowed", lambda: task.create("/out/../secret/x")),
            ("SafeMode is not open to a job's credential", lambda: task.safemode("leave")),
            ("Report is not open", task.report),
            ("AddJobCredential is not open", lambda: task.add_job_credential(
                "job_1", "x", "mallory", ["/"], ["/"], 60)),
        ]
        for why, call in refused:
            with pytest.raises(PermissionDenied, match="permission denied to job job_1's DFS "
                                                       f"credential: .*{why}"):
                call()
    with task_client(secured, credential="job_1:guess") as task:
        with pytest.raises(Unauthenticated, match="no valid DFS credential for job job_1"):
            task.stat("/in/file")

    log = secured.log("nameserver")
    assert "job job_1: first call with its DFS credential" in log
    assert "job job_1 (user alice): refused GetBlockLocations: the job may not read " \
           "/secret/file" in log


def test_a_block_token_opens_its_own_block_for_its_own_mode_only(secured):
    with task_client(secured) as task:
        first, second = task._locations("/in/file").blocks
        address = second.locations[0].data_address
        timeout = secured.config["dfs"]["socket_timeout"]
        read = task.block_credentials(second, blocktokens.READ)
        assert read.token == "" and read.block.token == second.block_token
    second_id = second.block.block_id

    def access(block_id, mode, token):
        return Credentials(block=BlockAccess(block_id, mode, token))

    transfer_client.BlockReader(address, second_id, 0, -1, timeout, read).close()
    refused = [(access(second_id, blocktokens.READ, first.block_token), "not valid for read "
                f"access to block {second_id}"),
               (access(second_id, blocktokens.READ, "junk"), "no valid block token"),
               (Credentials(), "missing or wrong auth token")]
    for credentials, why in refused:
        with pytest.raises(transfer_client.ReplicaUnavailable, match=why):
            transfer_client.BlockReader(address, second_id, 0, -1, timeout, credentials)
    # a read token claimed for writing, and a token for one block used on another
    with pytest.raises(transfer_client.PipelineError, match="not valid for write access"):
        transfer_client.BlockWriter([address], second_id, 16 * 1024, timeout,
                                    access(second_id, blocktokens.WRITE, second.block_token))
    with pytest.raises(transfer_client.ReplicaUnavailable,
                       match=f"opens block {second_id} for read access only"):
        transfer_client.BlockReader(address, first.block.block_id, 0, -1, timeout, read)
    reader = transfer_client.open_local(address, second_id, 0, -1, MiB, timeout,
                                        block=read.block)
    assert reader is not None
    reader.close()
    with pytest.raises(transfer_client.ReplicaUnavailable, match="opens block"):
        transfer_client.open_local(address, first.block.block_id, 0, -1, MiB, timeout,
                                   block=read.block)
    assert "refused read_block of block" in secured.log(f"dataserver{1}") + \
        secured.log(f"dataserver{2}")


def test_a_job_credential_survives_nameserver_restarts_and_ends_when_removed(secured):
    for stop in (signal.SIGKILL, signal.SIGTERM):   # from the journal, then from the image
        secured.nameserver.send_signal(stop)
        secured.nameserver.wait()
        secured.start_nameserver()
        with task_client(secured) as task:
            with task.open("/in/file") as r:   # waits out the restart and safe mode
                assert r.read() == INPUT
            with task.create(f"/out/after-{stop.name}") as w:
                w.write(b"still mine")
    loaded = [line for line in secured.log("nameserver").splitlines()
              if "loaded namespace" in line]
    assert "checkpoint written" in secured.log("nameserver")
    assert " 0 journal records replayed" in loaded[-1] and "1 job credentials" in loaded[-1]

    with task_client(secured) as task:
        with secured.client() as admin:
            admin.remove_job_credential("job_1")
            admin.remove_job_credential("job_1")   # idempotent
        for call in (lambda: task.stat("/in/file"), lambda: task.open("/in/file"),
                     lambda: task.create("/out/y"), lambda: task.list("/out")):
            with pytest.raises(Unauthenticated, match="removed at the job's end"):
                call()
    assert "job job_1: DFS credential removed" in secured.log("nameserver")


def test_an_expired_job_credential_is_dropped(secured):
    with secured.client() as admin:
        admin.add_job_credential("job_2", "short-lived", "bob", ["/in"], [], 1.0)
    with task_client(secured, credential="job_2:short-lived") as task:
        assert task.stat("/in/file").length == len(INPUT)
        wait_for(lambda: "job job_2: DFS credential expired" in secured.log("nameserver"), 10,
                 "the nameserver to drop the expired credential")
        with pytest.raises(Unauthenticated, match="job_2"):
            task.stat("/in/file")


def test_without_a_cluster_token_nothing_is_checked(tmp_path):
    with DfsCluster(tmp_path) as cluster:
        cluster.start(dataservers=1)
        with DfsClient(cluster.config, host="client", credential="job_9:unknown") as task:
            with task.create("/anything/f") as w:   # an open cluster: no credential needed
                w.write(b"open")
            assert [b.block_token for b in task._locations("/anything/f").blocks] == [""]
