"""A cluster with the auth token and TLS (a throwaway CA and a certificate for 127.0.0.1,
made with `openssl`): files and a job go through it with the real CLIs, and what speaks
plain text or does not know the token is refused, on the data ports as on gRPC.

Short-circuit reads are off so that reads go through the dataservers' TLS port (every
replica of a local cluster is on this machine)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from minijet import rpc, tls
from minijet.cluster import LocalCluster
from minijet.dfs import transfer_wire
from minijet.dfs.transfer_auth import Credentials
from minijet.dfs.dataserver import copy_replica
from minijet.dfs.transfer_client import BlockReader, PipelineError, ReplicaUnavailable
from minijet.errors import Unavailable
from minijet.proto import dfs_pb2, dfs_pb2_grpc

from conftest import _merge, JOB_CONFIG, JOB_NODES
from polling import wait_for
from test_dfs_datatransfer import CHUNK, Node, read_block, write_block
from test_jobs_e2e import (WORDCOUNT, expected_counts, jetshell, make_text, put_bytes,
                           read_counts)
from tls_certs import make_ca, make_server_cert

TOKEN = "tls-test-" + os.urandom(8).hex()
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("certs")
    ca = make_ca(directory)
    cert, key = make_server_cert(directory, ca)
    return {"tls_ca": str(ca), "tls_cert": str(cert), "tls_key": str(key)}


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory, certs):
    config = _merge(JOB_CONFIG, {"security": {"auth_token": TOKEN, **certs},
                                 "dfs": {"short_circuit": False}})
    lc = LocalCluster(tmp_path_factory.mktemp("tls-cluster"), config=config)
    try:
        lc.up(dataservers=JOB_NODES, taskservers=JOB_NODES)
        yield lc
    finally:
        lc.down()


@pytest.fixture
def tls_nodes(tmp_path, certs):
    """Three in-process data servers serving TLS, and the credentials of their clients."""
    security = {"auth_token": TOKEN, **certs}
    credentials = Credentials.of(security)
    made = [Node(tmp_path / f"n{i}", credentials=credentials,
                 tls_context=tls.server_context(security)) for i in range(3)]
    yield made, credentials
    for n in made:
        n.stop()


def test_a_write_pipeline_over_tls_stores_identical_replicas(tls_nodes):
    """Many small packets: each node sends packets down one TLS connection while another
    thread reads acks from it, the case OpenSSL does not allow without DuplexSocket."""
    nodes, credentials = tls_nodes
    for block_id in range(1, 13):
        data = os.urandom(2 * 1024 * 1024 + block_id)
        write_block([n.address for n in nodes], block_id, data, packet=CHUNK,
                    credentials=credentials)
        assert read_block(nodes[-1].address, block_id, credentials=credentials) == data
        assert read_block(nodes[0].address, block_id, 1000, 5000,
                          credentials=credentials) == data[1000:6000]


def test_re_replication_goes_over_tls(tls_nodes):
    nodes, credentials = tls_nodes
    data = os.urandom(300_000)
    write_block([nodes[0].address], 1, data, credentials=credentials)
    copy_replica(nodes[0].store, 1, [nodes[1].address, nodes[2].address], 64 * 1024, 5.0,
                 credentials)
    assert read_block(nodes[2].address, 1, credentials=credentials) == data
    with pytest.raises(PipelineError, match="hung up during the handshake"):
        copy_replica(nodes[0].store, 1, [nodes[1].address], 64 * 1024, 5.0,
                     Credentials(TOKEN))  # without TLS


def log_of(lc: LocalCluster, name: str) -> str:
    return (lc.dir / "logs" / f"{name}.log").read_text(errors="replace")


def data_addresses(lc: LocalCluster) -> dict[str, str]:
    """dataserver name (dataserver1, ...) -> its data-transfer address."""
    with lc.client() as dfs:
        return {"dataserver" + d.node.host.removeprefix("host"): d.node.data_address
                for d in dfs.report().dataservers}


def dfsshell(lc: LocalCluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "dfsshell"), args[0], "--config", str(lc.config_path),
                           *args[1:]], capture_output=True, timeout=60)


def test_dfsshell_put_and_get_round_trip_over_tls(tls_cluster, tmp_path):
    block = tls_cluster.config["dfs"]["block_size"]
    data = os.urandom(3 * block + 12_345)
    (tmp_path / "in.bin").write_bytes(data)
    put = dfsshell(tls_cluster, "put", str(tmp_path / "in.bin"), "/tls/file.bin")
    assert put.returncode == 0, put.stderr
    with tls_cluster.client() as dfs:
        assert len(dfs.block_locations("/tls/file.bin")) == 4
    got = dfsshell(tls_cluster, "get", "/tls/file.bin", str(tmp_path / "out.bin"))
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "out.bin").read_bytes() == data


def test_cluster_status_asks_each_daemon_over_tls(tls_cluster):
    def all_serving() -> dict[str, str] | None:
        shown = {s.name: s.health for s in tls_cluster.status()}
        return shown if set(shown.values()) == {"serving"} else None

    shown = wait_for(all_serving, 30, "every daemon to serve")
    assert {"dataserver1", "jobserver"} <= set(shown)   # the gRPC health services over TLS


def test_wordcount_runs_over_tls(tls_cluster):
    block = tls_cluster.config["dfs"]["block_size"]
    text = make_text(seed=10, size=3 * block - block // 3)
    with tls_cluster.client() as dfs:
        put_bytes(dfs, "/tls-wc/in/text.txt", text)
    result = jetshell(tls_cluster, "run", WORDCOUNT, "WordCount", "/tls-wc/in", "/tls-wc/out",
                      "--reducers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    with tls_cluster.client() as dfs:
        assert read_counts(dfs, "/tls-wc/out") == expected_counts(text)


def refusals(lc: LocalCluster, name: str, what: str) -> list[str]:
    return [line for line in log_of(lc, name).splitlines() if "refused" in line and what in line]


def test_a_plain_text_client_is_refused_by_the_data_port(tls_cluster):
    name, address = sorted(data_addresses(tls_cluster).items())[0]
    before = len(refusals(tls_cluster, name, "a plain-text client?"))
    # a client of the old protocol: its op, token and all, in clear
    with transfer_wire.connect(address, 5.0) as old:
        transfer_wire.send_message(old, {"op": "read_block", "v": 1, "token": TOKEN,
                                         "block_id": 1, "offset": 0, "length": -1})
        try:
            answer = old.recv(1 << 16)
        except ConnectionResetError:
            answer = b""
    assert answer == b""  # hung up on without a word
    # the current protocol without TLS
    with pytest.raises(ReplicaUnavailable, match="hung up during the handshake"):
        BlockReader(address, 1, 0, -1, 5.0, Credentials(TOKEN))
    wait_for(lambda: len(refusals(tls_cluster, name, "a plain-text client?")) == before + 2,
             10, "the dataserver to log both refusals")
    assert "Traceback" not in log_of(tls_cluster, name)


def test_a_grpc_client_without_tls_is_refused_by_the_nameserver(tls_cluster):
    plain = tls_cluster.config.with_overrides({"security.tls_ca": "", "security.tls_cert": "",
                                               "security.tls_key": "", "rpc.retries": 0})
    address = plain["nameserver"]["address"]
    with rpc.connect(plain, address) as channel:
        stub = dfs_pb2_grpc.NameServerStub(channel)
        with pytest.raises(Unavailable, match="if the cluster uses TLS, set security.tls_ca"):
            rpc.call(plain, stub.Report, dfs_pb2.Empty(), idempotent=True, timeout=3.0,
                     address=f"{address} (nameserver)")
    # the same call over TLS is answered
    with rpc.connect(tls_cluster.config, address) as channel:
        stub = dfs_pb2_grpc.NameServerStub(channel)
        assert rpc.call(tls_cluster.config, stub.Report, dfs_pb2.Empty(), idempotent=True,
                        timeout=5.0, address=address).dataservers


def test_a_client_with_a_wrong_token_is_refused_by_a_dataserver(tls_cluster):
    name, address = sorted(data_addresses(tls_cluster).items())[-1]
    before = len(refusals(tls_cluster, name, "missing or wrong auth token"))
    context = tls.client_context(tls_cluster.config["security"])
    with pytest.raises(ReplicaUnavailable, match="refused: missing or wrong auth token"):
        BlockReader(address, 1, 0, -1, 5.0, Credentials("not-" + TOKEN, context))
    wait_for(lambda: len(refusals(tls_cluster, name, "missing or wrong auth token"))
             == before + 1, 10, "the dataserver to log the refusal")


def test_a_client_checks_the_dataserver_certificate_against_its_ca(tls_cluster, tmp_path):
    other_ca = make_ca(tmp_path, "other-ca")
    context = tls.client_context({"tls_ca": str(other_ca), "tls_cert": ""})
    address = sorted(data_addresses(tls_cluster).values())[0]
    with pytest.raises(ReplicaUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        BlockReader(address, 1, 0, -1, 5.0, Credentials(TOKEN, context))


def test_a_client_checks_the_dataserver_certificate_names_the_address(tls_cluster, certs):
    """The certificate is for 127.0.0.1 and localhost: the same port reached as another of
    this machine's addresses is not the server the certificate names."""
    address = sorted(data_addresses(tls_cluster).values())[0]
    context = tls.client_context(tls_cluster.config["security"])
    with socket.create_connection(("127.0.0.1", int(address.rsplit(":", 1)[1])), 5) as raw:
        with pytest.raises(OSError, match="match|mismatch"):
            tls.wrap_client(context, raw, "127.0.0.2")
