"""Shared fixtures: local clusters of real daemon processes in temporary directories.

`cluster` is one DFS cluster, `job_cluster` one cluster with the job engine (jobserver and
taskservers) too, each for the whole session, for tests that do not break them (every test
uses DFS paths of its own). `fresh_cluster(...)` and `fresh_job_cluster(...)` make a cluster
of a test's own, for a test that kills daemons or needs other settings. Every process is
stopped at the end, also when a test fails.
"""
from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from minijet.cluster import LocalCluster

# Small blocks so that small files span several, and quick dead-node detection.
TEST_CONFIG = {
    "dfs": {"block_size": "1MiB"},
    "nameserver": {"dead_timeout": "3s", "replication_interval": "0.5s"},
    "dataserver": {"heartbeat_interval": "0.5s"},
    "rpc": {"timeout": "10s"},
}

# For jobs: blocks small enough that inputs of a few hundred KB span several and their lines
# cross block boundaries; fast heartbeats; 2 slots per taskserver; a locality delay long
# enough that a map waits for a slot on its data's node rather than run elsewhere; an admin,
# who may kill any job and read its logs.
JOB_CONFIG = {
    "security": {"admins": ["jobadmin"]},
    "dfs": {"block_size": "64KiB"},
    "nameserver": {"dead_timeout": "5s", "replication_interval": "0.5s"},
    "dataserver": {"heartbeat_interval": "0.5s"},
    "jobserver": {"taskserver_timeout": "4s", "locality_delay": "3s"},
    "taskserver": {"heartbeat_interval": "0.2s", "slots": 2},
    "rpc": {"timeout": "10s"},
}
JOB_NODES = 3   # dataservers and taskservers of `job_cluster`: host1..host3


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


@pytest.fixture(scope="session")
def job_cluster(tmp_path_factory):
    """host1..host3, each with a dataserver and a taskserver, and a jobserver; JOB_CONFIG.
    The DFS block size is `job_cluster.config["dfs"]["block_size"]`."""
    lc = LocalCluster(tmp_path_factory.mktemp("job-cluster"), config=JOB_CONFIG)
    try:
        lc.up(dataservers=JOB_NODES, taskservers=JOB_NODES)
        yield lc
    finally:
        lc.down()


def _own_clusters(root, base: dict, dataservers: int, taskservers: int,
                  python: str = sys.executable):
    """A generator fixture's body: yields make(dataservers, taskservers, **sections) that
    starts a cluster under `root` with `sections` merged into `base`, its daemons run by
    `python`; stops them all."""
    made: list[LocalCluster] = []

    def make(dataservers: int = dataservers, taskservers: int = taskservers,
             **sections) -> LocalCluster:
        lc = LocalCluster(root / f"cluster{len(made)}", config=_merge(base, sections),
                          python=python)
        made.append(lc)
        lc.up(dataservers=dataservers, taskservers=taskservers)
        return lc

    try:
        yield make
    finally:
        for lc in made:
            lc.down()


@pytest.fixture
def fresh_cluster(tmp_path):
    """fresh_cluster(dataservers=4, **sections) -> a started LocalCluster of the test's own;
    sections are merged into the test config, e.g. dfs={"replication": 2}."""
    yield from _own_clusters(tmp_path, TEST_CONFIG, dataservers=4, taskservers=0)


@pytest.fixture
def fresh_job_cluster(tmp_path):
    """fresh_job_cluster(dataservers=3, taskservers=3, **sections) -> a started cluster with
    the job engine of the test's own, on JOB_CONFIG with `sections` merged in."""
    yield from _own_clusters(tmp_path, JOB_CONFIG, dataservers=JOB_NODES,
                             taskservers=JOB_NODES)


@contextlib.contextmanager
def passable_dir(prefix: str):
    """A new directory under the system's temp dir that any account may pass through but not
    list (pytest's own are root's 0700): for tests of tasks run as other users. Removed after."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path)
