"""`minijet cluster up/status/down` through the real commands, in the default ./.minijet dir
so that `dfsshell` finds the cluster with no flags."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from minijet.cluster import ClusterError, LocalCluster

from polling import wait_for

BIN = Path(sys.executable).parent


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MINIJET_CONF"}
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def status(cwd: Path) -> dict[str, dict]:
    r = run(cwd, "minijet", "cluster", "status", "--json")
    assert r.returncode == 0, r.stderr
    return {d["name"]: d for d in json.loads(r.stdout)}


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_up_status_restart_after_kill_and_down(tmp_path):
    try:
        # Two `up`s at once in one directory start each daemon once, and both succeed.
        env = {k: v for k, v in os.environ.items() if k != "MINIJET_CONF"}
        ups = [subprocess.Popen([str(BIN / "minijet"), "cluster", "up", "--dataservers", "2"],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
               for _ in range(2)]
        outputs = sorted(p.communicate(timeout=120)[0] for p in ups)
        assert [p.returncode for p in ups] == [0, 0]
        assert "all daemons already running" in outputs[0]
        assert "started: nameserver, dataserver1, dataserver2" in outputs[1]
        assert (tmp_path / ".minijet" / "minijet.yaml").is_file()
        daemons = status(tmp_path)
        assert sorted(daemons) == ["dataserver1", "dataserver2", "nameserver"]
        assert all(d["state"] == "running" and d["pid"] for d in daemons.values())
        assert daemons["dataserver1"]["host"] == "host1" and daemons["dataserver2"]["address"]

        (tmp_path / "hello.txt").write_text("hello, cluster\n")
        r = run(tmp_path, "dfsshell", "put", "hello.txt", "/hello.txt")  # no flags needed
        assert r.returncode == 0, r.stderr

        victim = daemons["dataserver1"]["pid"]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: gone(victim), 10, "the killed dataserver to exit")
        assert status(tmp_path)["dataserver1"]["state"] == "stopped"

        r = run(tmp_path, "minijet", "cluster", "up")
        assert r.returncode == 0, r.stderr
        assert "started: dataserver1" in r.stdout
        daemons = status(tmp_path)
        assert all(d["state"] == "running" for d in daemons.values())
        assert daemons["nameserver"]["pid"] != victim
        r = run(tmp_path, "dfsshell", "cat", "/hello.txt")
        assert (r.returncode, r.stdout) == (0, "hello, cluster\n"), r.stderr

        r = run(tmp_path, "minijet", "cluster", "up")
        assert r.returncode == 0 and "already running" in r.stdout

        r = run(tmp_path, "minijet", "cluster", "down")
        assert r.returncode == 0, r.stderr
        assert all(d["state"] == "stopped" for d in status(tmp_path).values())
        assert all(gone(d["pid"]) for d in daemons.values())
    finally:
        LocalCluster(tmp_path / ".minijet").down()


def test_status_without_a_cluster_is_one_clear_line(tmp_path):
    r = run(tmp_path, "minijet", "cluster", "status")
    assert r.returncode == 1
    assert r.stderr.startswith("minijet: error: no local cluster in") and \
        len(r.stderr.splitlines()) == 1


def test_daemon_dying_at_start_names_its_log(tmp_path):
    lc = LocalCluster(tmp_path / "c", config={"logging": {"level": "loud"}})
    try:
        with pytest.raises(ClusterError, match=r"(\w+) exited at start; see \S*/logs/\1\.log "
                                               r"\(last line: .*unknown level 'loud'\)"):
            lc.up(dataservers=1, timeout=30)
    finally:
        lc.down()
