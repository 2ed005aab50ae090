"""Shared fixtures: local clusters of real daemon processes in temporary directories.

`cluster` is one cluster for the whole session, for tests that do not break it (they use
their own paths). `fresh_cluster(...)` makes a cluster of its own for a test that kills
daemons. Every process is stopped at the end, also when a test fails.
"""
from __future__ import annotations

import pytest

from minijet.cluster import LocalCluster

# Small blocks so that small files span several, and quick dead-node detection.
TEST_CONFIG = {
    "dfs": {"block_size": "1MiB"},
    "nameserver": {"dead_timeout": "3s", "replication_interval": "0.5s"},
    "dataserver": {"heartbeat_interval": "0.5s"},
    "rpc": {"timeout": "10s"},
}


def _merge(base: dict, extra: dict) -> dict:
    result = {k: dict(v) for k, v in base.items()}
    for section, keys in extra.items():
        result.setdefault(section, {}).update(keys)
    return result


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    lc = LocalCluster(tmp_path_factory.mktemp("cluster"), config=TEST_CONFIG)
    try:
        lc.up(dataservers=4)
        yield lc
    finally:
        lc.down()


@pytest.fixture
def fresh_cluster(tmp_path):
    """fresh_cluster(dataservers=4, **sections) -> a started LocalCluster of the test's own;
    sections are merged into the test config, e.g. dfs={"replication": 2}."""
    made: list[LocalCluster] = []

    def make(dataservers: int = 4, **sections) -> LocalCluster:
        lc = LocalCluster(tmp_path / f"cluster{len(made)}", config=_merge(TEST_CONFIG, sections))
        made.append(lc)
        lc.up(dataservers=dataservers)
        return lc

    try:
        yield make
    finally:
        for lc in made:
            lc.down()
