"""A small DFS cluster of real processes for tests: one nameserver, N dataservers
(host identities host1..hostN), each logging to ROOT/logs/<name>.log."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from minijet import config as configmod
from minijet.net import free_port
from minijet.dfs import DfsClient

from polling import wait_for

BIN = Path(sys.executable).parent



class DfsCluster:
    def __init__(self, root: Path, settings: dict | None = None):
        self.root = Path(root)
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        data = {
            # web ports: any free one (two test clusters may run at once)
            "nameserver": {"address": f"127.0.0.1:{free_port()}", "http_address": "127.0.0.1:0",
                           "dir": str(self.root / "name"), "dead_timeout": "3s",
                           "replication_interval": "0.5s"},
            "dataserver": {"address": "127.0.0.1:0", "http_address": "127.0.0.1:0",
                           "heartbeat_interval": "0.5s",
                           "fsync": False},
            "dfs": {"block_size": "1MiB", "checksum_chunk_size": "16KiB",
                    "packet_size": "256KiB", "socket_timeout": "5s"},
            "rpc": {"timeout": "10s", "retries": 2, "retry_backoff": "100ms"},
        }
        for section, keys in (settings or {}).items():
            data.setdefault(section, {}).update(keys)
        self.config_path = self.root / "minijet.yaml"
        self.config_path.write_text(yaml.safe_dump(data))
        self.config = configmod.load(str(self.config_path))
        self.nameserver: subprocess.Popen | None = None
        self.dataservers: dict[int, subprocess.Popen] = {}

    def _spawn(self, name: str, command: str, *defines: str) -> subprocess.Popen:
        args = [str(BIN / command), "--config", str(self.config_path)]
        for d in defines:
            args += ["-D", d]
        log = open(self.root / "logs" / f"{name}.log", "ab")
        try:
            return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        finally:
            log.close()

    def start_nameserver(self) -> None:
        self.nameserver = self._spawn("nameserver", "nameserver")

    def start_dataserver(self, i: int) -> None:
        self.dataservers[i] = self._spawn(f"dataserver{i}", "dataserver", f"node.host=host{i}",
                                          f"dataserver.dir={self.root / f'data{i}'}")

    def start(self, dataservers: int) -> "DfsCluster":
        self.start_nameserver()
        for i in range(1, dataservers + 1):
            self.start_dataserver(i)
        self.wait_live(dataservers)
        return self

    def client(self, host: str | None = None) -> DfsClient:
        return DfsClient(self.config, host=host or "client")

    def live_hosts(self) -> set[str]:
        with self.client() as c:
            try:
                report = c.report()
            except Exception:
                return set()
        return {d.node.host for d in report.dataservers if d.alive}

    def wait_live(self, count: int, timeout: float = 20.0) -> None:
        def live() -> bool:
            for name, p in [("nameserver", self.nameserver), *self.dataservers.items()]:
                if p is not None and p.poll() is not None:
                    raise RuntimeError(f"{name} exited with {p.returncode}; see "
                                       f"{self.root / 'logs'}")
            return len(self.live_hosts()) >= count

        wait_for(live, timeout, f"{count} dataservers to register")

    def log(self, name: str) -> str:
        """What daemon `name` (nameserver, dataserver1, ...) has logged so far."""
        path = self.root / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, i: int) -> None:
        p = self.dataservers.pop(i)
        p.send_signal(signal.SIGKILL)
        p.wait()

    def kill_nameserver(self) -> None:
        self.nameserver.send_signal(signal.SIGKILL)
        self.nameserver.wait()
        self.nameserver = None

    def stop(self) -> None:
        procs = list(self.dataservers.values()) + ([self.nameserver] if self.nameserver else [])
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.dataservers.clear()
        self.nameserver = None

    def __enter__(self) -> "DfsCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def data_dir(cluster: DfsCluster, i: int) -> str:
    return os.path.join(cluster.root, f"data{i}")
