"""Several hosts on one machine: Linux network namespaces joined by a bridge.

`Network(n)` makes hosts h0..h{n-1}, each a network namespace with its own address on one
/24 (veth pairs to a bridge that lives in a namespace of its own, so the machine's own
network is untouched), plus a leg for this process (the test's client) at .254. A host's
link can be cut and restored (`cut`, `restore`: the switch port goes down, as a pulled
cable). `start(host, argv, log)` runs a process inside a host's namespace. Everything is
removed on close, processes first. Needs root and iproute2: `unavailable()` says why not.
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

from minijet.taskserver.launcher import kill_tree


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root to make network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2 (the ip command)"
    name = f"mjprobe{os.getpid()}"
    probe = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make a network namespace: {probe.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Network:
    def __init__(self, hosts: int):
        tag = f"{os.getpid() % 10000}{random.randrange(100)}"
        self.prefix = f"10.{random.randrange(64, 250)}.{random.randrange(1, 250)}"
        self.switch = f"mjsw{tag}"
        self.hosts = [f"mjh{tag}-{i}" for i in range(hosts)]
        self._procs: list[subprocess.Popen] = []
        self._leg = f"mjc{tag}"
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def address(self, host: int) -> str:
        return f"{self.prefix}.{host + 1}"

    def _port(self, host: int) -> str:
        return f"{self.switch[2:]}p{host}"   # the switch side of a host's veth pair

    def _build(self) -> None:
        _ip("netns", "add", self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for i, ns in enumerate(self.hosts):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("link", "add", self._port(i), "type", "veth", "peer", "name", "eth0",
                "netns", ns)
            self._plug(self._port(i))
            _ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
        # this process's leg on the bridge: the client side of the test
        _ip("link", "add", self._leg, "type", "veth", "peer", "name", f"{self._leg}s")
        self._plug(f"{self._leg}s")
        _ip("addr", "add", f"{self.prefix}.254/24", "dev", self._leg)
        _ip("link", "set", self._leg, "up")

    def _plug(self, port: str) -> None:
        _ip("link", "set", port, "netns", self.switch)
        _ip("-n", self.switch, "link", "set", port, "master", "br0")
        _ip("-n", self.switch, "link", "set", port, "up")

    def cut(self, host: int) -> None:
        _ip("-n", self.switch, "link", "set", self._port(host), "down")

    def restore(self, host: int) -> None:
        _ip("-n", self.switch, "link", "set", self._port(host), "up")

    def start(self, host: int, argv: list[str], log: Path) -> subprocess.Popen:
        with open(log, "ab") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", self.hosts[host], *argv],
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self._procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self._procs:   # a daemon and whatever it started (TaskHosts)
            kill_tree(proc.pid)
            proc.wait(10)
        subprocess.run(["ip", "link", "del", self._leg], capture_output=True)
        for ns in [*self.hosts, self.switch]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def __enter__(self) -> "Network":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
