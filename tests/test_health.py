"""Readiness as operators' tools ask for it (minijet.health): the standard gRPC health
service on each daemon's port, SERVING only while it can do its job, open to a probe without
the token; systemd's notify protocol (READY=1, STOPPING=1) on a fake NOTIFY_SOCKET; and
`minijet cluster status` showing both."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from minijet import config as configmod
from minijet import rpc, sdnotify

from dfs_cluster import free_port
from polling import wait_for

BIN = Path(sys.executable).parent
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def check(address: str) -> int:
    """The health service's answer to a probe that holds no token and no TLS."""
    with grpc.insecure_channel(address) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                         timeout=5).status


def test_a_daemon_tells_systemd_when_it_is_ready_and_when_it_stops(tmp_path):
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(30)
    conf = tmp_path / "minijet.yaml"
    port = free_port()
    conf.write_text(yaml.safe_dump({"nameserver": {"address": f"127.0.0.1:{port}",
                                                   "http_address": "127.0.0.1:0",
                                                   "dir": str(tmp_path / "name")}}))
    proc = subprocess.Popen([str(BIN / "nameserver"), "--config", str(conf)],
                            env={**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify")},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert notify.recv(64) == b"READY=1"
        # serving by then: it answers (no dataserver yet, so it waits in safe mode)
        assert check(f"127.0.0.1:{port}") == NOT_SERVING
        proc.send_signal(signal.SIGTERM)
        assert notify.recv(64) == b"STOPPING=1"
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()
        notify.close()


def test_notify_speaks_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sdnotify.notify("READY=1")
    name = f"@minijet-test-{os.getpid()}"   # an abstract socket, as systemd may give
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name[1:])
        monkeypatch.setenv("NOTIFY_SOCKET", name)
        assert sdnotify.notify("STOPPING=1")
        assert s.recv(64) == b"STOPPING=1"


def test_the_nameserver_serves_only_out_of_safe_mode_and_probes_need_no_token(fresh_cluster):
    lc = fresh_cluster(dataservers=1, security={"auth_token": "s3cret"})
    address = lc.config["nameserver"]["address"]
    wait_for(lambda: check(address) == SERVING, 30, "the nameserver to serve")
    with lc.client() as dfs:
        dfs.safemode("enter")
        assert check(address) == NOT_SERVING
        dfs.safemode("leave")
    assert check(address) == SERVING
    # only the health methods are open: anything else still needs the token
    plain = configmod.from_dict({"rpc": {"retries": 0}})
    from minijet.proto import dfs_pb2, dfs_pb2_grpc
    with rpc.connect(plain, address) as channel:
        with pytest.raises(Exception, match="auth token"):
            rpc.call(plain, dfs_pb2_grpc.NameServerStub(channel).Report, dfs_pb2.Empty(),
                     idempotent=True)


def test_a_taskserver_serves_while_the_jobserver_hears_it_and_cluster_status_says_so(
        fresh_job_cluster):
    lc = fresh_job_cluster(dataservers=1, taskservers=1)

    def statuses() -> dict[str, dict]:
        result = subprocess.run([str(BIN / "minijet"), "cluster", "status", "--json", "--dir",
                                 str(lc.dir)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return {s["name"]: s for s in json.loads(result.stdout)}

    def all_serving() -> dict | None:
        shown = statuses()
        return shown if all(d["health"] == "serving" for d in shown.values()) else None

    shown = wait_for(all_serving, 30, "every daemon to serve")
    assert set(shown) == {"nameserver", "dataserver1", "jobserver", "taskserver1"}
    task_address = shown["taskserver1"]["address"]
    assert check(task_address) == SERVING
    lc.kill("jobserver")
    wait_for(lambda: check(task_address) == NOT_SERVING, 30,
             "the taskserver to say it is not serving")
    assert statuses()["jobserver"]["health"] == ""   # stopped
    lc.restart()
    wait_for(lambda: check(task_address) == SERVING, 30, "the taskserver to serve again")
