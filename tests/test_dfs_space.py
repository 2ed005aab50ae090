"""Disk space with real processes: dataservers with `dataserver.capacity` accept replicas
only with room for them, report real capacity, used and free, and a full cluster says so in
one line."""
from __future__ import annotations

import subprocess

import pytest

from dfs_cluster import BIN, DfsCluster
from polling import wait_for

MiB = 1024 * 1024


@pytest.fixture
def cluster(tmp_path):
    settings = {"dataserver": {"capacity": "3MiB"},
                "dfs": {"replication": 2, "client_wait": "10s"}}
    with DfsCluster(tmp_path, settings) as c:
        yield c.start(dataservers=2)


def usage(cluster) -> dict[str, tuple[int, int, int]]:
    with cluster.client() as client:
        return {d.node.host: (d.capacity, d.used, d.free) for d in client.report().dataservers}


def test_a_full_cluster_refuses_a_block_with_one_clear_line(cluster, tmp_path):
    assert usage(cluster) == {"host1": (3 * MiB, 0, 3 * MiB), "host2": (3 * MiB, 0, 3 * MiB)}
    with cluster.client() as client, client.create("/fills") as w:
        w.write(b"x" * (5 * MiB // 2))  # 2.5 MiB: 3 blocks on both hosts
    wait_for(lambda: usage(cluster) == {h: (3 * MiB, 5 * MiB // 2, MiB // 2)
                                        for h in ("host1", "host2")},
             10, lambda: f"the dataservers to report their use ({usage(cluster)})")

    local = tmp_path / "one-block"
    local.write_bytes(b"y" * MiB)
    r = subprocess.run([str(BIN / "dfsshell"), "put", str(local), "/too-much", "--config",
                        str(cluster.config_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "dfsshell: error: cannot write /too-much: no dataserver has room for a 1 MiB block "
        "(free: host1 512 KiB, host2 512 KiB)"]
    with cluster.client() as client:
        assert not client.exists("/too-much")
        # a block needs room for its whole size; smaller blocks still fit
        with client.create("/still-fits", block_size=MiB // 2) as w:
            w.write(b"z" * (MiB // 2))
    wait_for(lambda: all(used <= cap for cap, used, _ in usage(cluster).values())
             and sum(used for _, used, _ in usage(cluster).values()) == 6 * MiB,
             10, lambda: f"the dataservers to report their use ({usage(cluster)})")
