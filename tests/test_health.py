"""Readiness as operators' tools ask for it (minijet.health): the standard gRPC health
service on each daemon's port and GET /healthz on each one's web port, SERVING only while it
can do its job, open to a probe without the token; systemd's notify protocol (READY=1,
STOPPING=1) on a fake NOTIFY_SOCKET; and `minijet cluster status` showing them."""
from __future__ import annotations

import json
import os
import shutil
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

from minijet.net import free_port
from polling import wait_for
from web_client import get, web

BIN = Path(sys.executable).parent
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def check(address: str) -> int:
    """The health service's answer to a probe that holds no token and no TLS."""
    with grpc.insecure_channel(address) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                         timeout=5).status


def healthz(base_url: str) -> tuple[int, str]:
    """(status, body) of a probe of /healthz, holding no token."""
    return get(f"{base_url}healthz")


SERVING_HTTP = (200, "SERVING\n")
NOT_SERVING_HTTP = (503, "NOT_SERVING\n")


def statuses(lc) -> dict[str, dict]:
    """What `minijet cluster status --json` shows of each daemon, by name."""
    result = subprocess.run([str(BIN / "minijet"), "cluster", "status", "--json", "--dir",
                             str(lc.dir)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return {s["name"]: s for s in json.loads(result.stdout)}


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
    address, base = lc.config["nameserver"]["address"], web(lc, "nameserver")
    wait_for(lambda: check(address) == SERVING, 30, "the nameserver to serve")
    assert healthz(base) == SERVING_HTTP
    assert healthz(web(lc, "dataserver1")) == SERVING_HTTP
    assert get(base)[0] == get(f"{web(lc, 'dataserver1')}metrics")[0] == 401   # the rest: no
    with lc.client() as dfs:
        dfs.safemode("enter")
        assert check(address) == NOT_SERVING
        assert healthz(base) == NOT_SERVING_HTTP
        dfs.safemode("leave")
    assert check(address) == SERVING
    assert healthz(base) == SERVING_HTTP
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

    def all_serving() -> dict | None:
        shown = statuses(lc)
        return shown if all(d["health"] == "serving" for d in shown.values()) else None

    shown = wait_for(all_serving, 30, "every daemon to serve")
    assert set(shown) == {"nameserver", "dataserver1", "jobserver", "taskserver1"}
    assert all(healthz(d["web"]) == SERVING_HTTP for d in shown.values())
    task_address, task_web = shown["taskserver1"]["address"], shown["taskserver1"]["web"]
    assert check(task_address) == SERVING
    lc.kill("jobserver")
    wait_for(lambda: check(task_address) == NOT_SERVING, 30,
             "the taskserver to say it is not serving")
    assert healthz(task_web) == NOT_SERVING_HTTP
    assert statuses(lc)["jobserver"]["health"] == ""   # stopped
    lc.restart()
    wait_for(lambda: check(task_address) == SERVING, 30, "the taskserver to serve again")
    assert healthz(task_web) == SERVING_HTTP


def test_a_dataserver_serves_only_while_registered_with_a_live_nameserver(tmp_path):
    """Both its /healthz and its gRPC health service (dataserver.health_address), which a
    probe without the cluster's token may ask."""
    ns_port, web_port, health_port = free_port(), free_port(), free_port()
    conf = tmp_path / "minijet.yaml"
    conf.write_text(yaml.safe_dump({
        "nameserver": {"address": f"127.0.0.1:{ns_port}", "http_address": "",
                       "dir": str(tmp_path / "name")},
        "dataserver": {"address": "127.0.0.1:0", "http_address": f"127.0.0.1:{web_port}",
                       "health_address": f"127.0.0.1:{health_port}",
                       "dir": str(tmp_path / "data"), "heartbeat_interval": "0.2s"},
        "security": {"auth_token": "s3cret"},
        "rpc": {"timeout": "2s"}}))
    url = f"http://127.0.0.1:{web_port}/"
    started = []

    def start(role: str) -> subprocess.Popen:
        log = open(tmp_path / f"{role}.log", "ab")
        started.append(subprocess.Popen([str(BIN / role), "--config", str(conf)],
                                        stdout=log, stderr=log))
        log.close()
        return started[-1]

    def answer():   # (/healthz's, the gRPC health service's)
        if started[0].poll() is not None:
            return (-1, "dataserver exited"), None
        return healthz(url), check(f"127.0.0.1:{health_port}")

    not_serving, serving = (NOT_SERVING_HTTP, NOT_SERVING), (SERVING_HTTP, SERVING)
    try:
        start("dataserver")   # its nameserver is not up yet: it cannot register
        assert wait_for(answer, 30, "the dataserver's ports to answer",
                        ignoring=(OSError, grpc.RpcError)) == not_serving
        nameserver = start("nameserver")
        wait_for(lambda: answer() == serving, 30, "the dataserver to register and serve")
        nameserver.kill()
        wait_for(lambda: answer() == not_serving, 30,
                 "the dataserver to stop serving when its nameserver is gone")
        assert started[0].poll() is None
    finally:
        for proc in started:
            proc.kill()
            proc.wait()


def test_cluster_status_takes_a_dataservers_health_from_its_health_service(fresh_cluster):
    # no web port, so no /healthz: what status shows comes from the health service whose
    # address the dataserver registered (the nameserver's report goes on saying alive)
    lc = fresh_cluster(dataservers=1, dataserver={"http_address": ""})
    wait_for(lambda: statuses(lc)["dataserver1"]["health"] == "serving", 30,
             "dataserver1 to serve")
    with lc.client() as dfs:
        health_address = dfs.report().dataservers[0].health_address
    assert check(health_address) == SERVING
    tmp = lc.dir / "data1" / "tmp"   # where its replicas start: make it unwritable
    shutil.rmtree(tmp)
    tmp.write_text("not a directory")
    shown = statuses(lc)["dataserver1"]
    assert shown["web"] == "" and check(health_address) == NOT_SERVING
    assert shown["health"] == "not serving"
    with lc.client() as dfs:   # though its nameserver hears it as ever
        assert [d.alive for d in dfs.report().dataservers] == [True]
    tmp.unlink()
    tmp.mkdir()
    assert statuses(lc)["dataserver1"]["health"] == "serving"
