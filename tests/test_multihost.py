"""The multi-machine set-up for real: four hosts in network namespaces (tests/netns.py), each
with its own address and node name, nothing on 127.0.0.1. h0 runs the nameserver and the
jobserver; h1..h3 a dataserver and a taskserver each. WordCount runs over replication-2
input; mid-job one worker's link is cut (its switch port down, as a pulled cable): the job
still ends with exact counts, the node is declared lost, its blocks get their second replica
back elsewhere; restoring the link brings it back."""
from __future__ import annotations

import collections
import sys
from pathlib import Path

import pytest
import yaml

from minijet import config as configmod
from minijet.client import JetClient

import netns
from polling import wait_for
from test_jobs_e2e import TESTJOBS

WHY_NOT = netns.unavailable()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")

WORKERS = (1, 2, 3)
CUT = 3
DAEMONS = {"nameserver": "minijet.dfs.nameserver", "jobserver": "minijet.jobserver.jobserver",
           "dataserver": "minijet.dfs.dataserver", "taskserver": "minijet.taskserver.taskserver"}


def settings(net: netns.Network, tmp: Path, host: int) -> dict:
    master = net.address(0)
    me = net.address(host) if host >= 0 else f"{net.prefix}.254"
    return {
        "node": {"host": f"node{host}" if host >= 0 else "client"},
        "nameserver": {"address": f"{master}:9000", "dir": str(tmp / "name"),
                       "dead_timeout": "4s", "replication_interval": "0.5s"},
        "dataserver": {"address": f"{me}:9010", "dir": str(tmp / f"data{host}"),
                       "heartbeat_interval": "0.5s"},
        "jobserver": {"address": f"{master}:9100", "dir": str(tmp / "jobs"),
                      "taskserver_timeout": "4s", "locality_delay": "0s"},
        "taskserver": {"address": f"{me}:9110", "dir": str(tmp / f"task{host}"),
                       "heartbeat_interval": "0.3s", "slots": 1,
                       # tasks as root: the test's dirs are root's own (test_task_users.py
                       # runs them as their users)
                       "isolate_tasks": False},
        "dfs": {"block_size": "256KiB", "replication": 2},
        "rpc": {"timeout": "3s"},
    }


def start(net: netns.Network, tmp: Path, host: int, role: str) -> None:
    path = tmp / f"node{host}.yaml"
    path.write_text(yaml.safe_dump(settings(net, tmp, host)))
    net.start(host, [sys.executable, "-c",
                     f"from {DAEMONS[role]} import main; main(prog_name={role!r})",
                     "--config", str(path)], tmp / f"{role}{host}.log")


def logs(tmp: Path) -> str:
    return "\n".join(f"--- {p.name}\n" + p.read_text()[-3000:] for p in sorted(tmp.glob("*.log")))


def live(jc: JetClient) -> tuple[set[str], set[str]]:
    """The node names of the live dataservers and of the live taskservers."""
    data = {d.node.host for d in jc.dfs.report().dataservers if d.alive}
    tasks = {t.host for t in jc.list_taskservers() if t.alive}
    return data, tasks


@pytest.fixture
def net():
    with netns.Network(hosts=4) as network:
        yield network


def test_wordcount_across_four_hosts_survives_a_worker_cut_off_mid_job(net, tmp_path):
    for role in ("nameserver", "jobserver"):
        start(net, tmp_path, 0, role)
    for host in WORKERS:
        for role in ("dataserver", "taskserver"):
            start(net, tmp_path, host, role)
    client = configmod.from_dict(settings(net, tmp_path, -1), "test")
    words = [f"w{i % 997}" for i in range(120_000)]
    text = "\n".join(" ".join(words[i:i + 12]) for i in range(0, len(words), 12)) + "\n"
    expected = collections.Counter(text.split())
    everyone = {f"node{h}" for h in WORKERS}
    with JetClient(client) as jc:
        wait_for(lambda: live(jc) == (everyone, everyone), 60,
                 lambda: f"every worker to join, seen {live(jc)}\n{logs(tmp_path)}",
                 ignoring=Exception)
        with jc.dfs.create("/in/words.txt") as f:   # ~0.8 MB: 4 blocks, 2 replicas each
            f.write(text.encode())
        job = jc.submit(TESTJOBS, "SlowWordCount", ["/in/words.txt", "/out", "--reducers", "3",
                                                    "--delay", "2"])
        wait_for(lambda: any(a.host == f"node{CUT}" and a.state == "running"
                             for a in jc.get_status(job).attempts), 30,
                 f"an attempt running on node{CUT}")
        net.cut(CUT)

        status = jc.wait_for_completion(job, timeout=120)
        assert status.state == "succeeded", f"{status.error}\n{logs(tmp_path)}"
        got = collections.Counter()
        for st in jc.dfs.list("/out"):
            if st.path.rsplit("/", 1)[-1].startswith("part-"):
                with jc.dfs.open(st.path) as f:
                    for line in f.read().decode().splitlines():
                        word, n = line.split("\t")
                        got[word] += int(n)
        assert got == expected
        lost = [a for a in status.attempts if a.state == "lost"]
        assert lost and {a.host for a in lost} == {f"node{CUT}"}   # re-run on the others

        survivors = everyone - {f"node{CUT}"}
        wait_for(lambda: live(jc) == (survivors, survivors), 30,
                 lambda: f"node{CUT} to be declared lost, seen {live(jc)}")

        def healed():
            blocks = jc.dfs.block_locations("/in/words.txt")
            return all(len(set(b.hosts) - {f"node{CUT}"}) >= 2 for b in blocks)
        wait_for(healed, 60, "every block to have 2 replicas off the cut node")

        net.restore(CUT)
        wait_for(lambda: live(jc) == (everyone, everyone), 60,
                 lambda: f"node{CUT} to come back, seen {live(jc)}")
