"""The local pseudo-cluster: every daemon as a background process on loopback, state in one dir.

`LocalCluster(dir)` is used by the `minijet cluster` commands and by the tests. On the first
`up` it picks a free nameserver port and writes DIR/minijet.yaml with timings suited to one
machine; each daemon then runs as `python ... --config DIR/minijet.yaml -D node.host=hostI ...`
with its output in DIR/logs/<name>.log. Pids live in DIR/cluster.json. `up` on an existing DIR
starts only the daemons that are not running and keeps all data.
"""
from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import click
import psutil
import yaml

from minijet import config as configmod
from minijet import health, rpc
from minijet.net import free_port
from minijet.errors import MinijetError
from minijet.proto import dfs_pb2, dfs_pb2_grpc
from minijet.web.server import web_url

DEFAULT_DIR = Path(".minijet")
DEFAULT_DATASERVERS = 3
# Module and entry point of each role; the job engine adds jobserver and taskserver.
ENTRY_POINTS = {
    "nameserver": "minijet.dfs.nameserver",
    "dataserver": "minijet.dfs.dataserver",
    "jobserver": "minijet.jobserver.jobserver",
    "taskserver": "minijet.taskserver.taskserver",
}
# `status` lists daemons in this order; nameserver and jobserver are one of a kind.
ROLE_ORDER = ("nameserver", "dataserver", "jobserver", "taskserver")
SINGLE = ("nameserver", "jobserver")


class ClusterError(MinijetError):
    """The local cluster cannot be started, reached or stopped."""


@dataclass
class DaemonStatus:
    name: str        # nameserver, dataserver1, ...
    role: str
    index: int       # 0 for the nameserver, 1.. for dataservers (matches hostI)
    host: str        # node identity ("" = this machine's name)
    address: str     # RPC or data-transfer address; "" when not known
    pid: int | None
    state: str       # running | stopped
    log: str
    # serving | not serving (the gRPC health service's word; a dataserver's at the health
    # address it registered with the nameserver) | no answer | "" (stopped)
    health: str = ""
    web: str = ""    # the URL of its pages and /metrics; "" when stopped or it has none


def _merge(base: dict, extra: dict) -> dict:
    result = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


def _daemon_name(role: str, index: int) -> str:
    return role if role in SINGLE else f"{role}{index}"


class LocalCluster:
    """A nameserver, N dataservers and (with taskservers) a jobserver and M taskservers on
    this machine, all state under `dir`. Dataserver i and taskserver i are node `host<i>`.

    `config` (a nested dict, e.g. {"dfs": {"block_size": "1MiB"}}) is merged over the local
    defaults when DIR/minijet.yaml is first written; an existing file is kept as it is.
    `python`: the interpreter the daemons run with (and so the TaskHosts).
    """

    def __init__(self, dir: str | os.PathLike = DEFAULT_DIR, config: dict | None = None,
                 python: str = sys.executable):
        self.python = python
        self.dir = Path(dir).resolve()
        self.config_path = self.dir / "minijet.yaml"
        self.state_path = self.dir / "cluster.json"
        self._extra_config = config or {}
        self._children: dict[int, subprocess.Popen] = {}  # processes this object started

    # ---- configuration and state files ----

    def _local_defaults(self) -> dict[str, Any]:
        return {
            "nameserver": {
                "address": f"127.0.0.1:{free_port()}",
                "http_address": f"127.0.0.1:{free_port()}",
                "dir": str(self.dir / "name"),
                "dead_timeout": "10s",
                "replication_interval": "1s",
                "safemode_extension": "0s",
            },
            "dataserver": {
                "address": "127.0.0.1:0",
                "http_address": "127.0.0.1:0",   # each gets a free port of its own (_start)
                "health_address": "127.0.0.1:0",  # each registers its own with the nameserver
                "dir": str(self.dir / "data"),
                "heartbeat_interval": "1s",
            },
            "dfs": {"replication": 3},
            # one machine: fast heartbeats, quick loss detection, and no waiting for a
            # node-local slot (every replica is on this machine: a short-circuit read)
            "jobserver": {"address": f"127.0.0.1:{free_port()}", "dir": str(self.dir / "jobs"),
                          "http_address": f"127.0.0.1:{free_port()}",
                          "taskserver_timeout": "10s", "locality_delay": "0s"},
            # the tasks run as you: your jobs, on your machine (a taskserver run as root
            # would run them as their users, who must then reach this dir and the Python)
            "taskserver": {"address": "127.0.0.1:0", "http_address": "127.0.0.1:0",
                           "dir": str(self.dir / "task"),
                           "heartbeat_interval": "0.5s", "isolate_tasks": False},
            "logging": {"file": ""},
        }

    def _ensure_config(self) -> None:
        if self.config_path.exists():
            return
        data = _merge(self._local_defaults(), self._extra_config)
        configmod.from_dict(data, str(self.config_path))  # refuse bad extra config up front
        self.dir.mkdir(parents=True, exist_ok=True)
        header = ("# Written by `minijet cluster up` for the local cluster in this directory.\n"
                  "# Every key is documented in conf/minijet.yaml; edit, then `minijet cluster"
                  " down` and `up`.\n")
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(header + yaml.safe_dump(data, sort_keys=False))
        tmp.chmod(0o600)   # it may hold the auth token
        os.replace(tmp, self.config_path)

    @property
    def config(self) -> configmod.Config:
        """The cluster's configuration, as clients should use it."""
        if not self.config_path.exists():
            raise ClusterError(f"no local cluster in {self.dir} (run `minijet cluster up`)")
        return configmod.load(str(self.config_path))

    def _load_state(self) -> dict[str, Any]:
        if not self.state_path.exists():
            return {"dataservers": 0, "taskservers": 0, "daemons": {}}
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError) as e:
            raise ClusterError(f"cannot read {self.state_path}: {e}") from None

    def _save_state(self, state: dict[str, Any]) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.state_path)

    # ---- processes ----

    def _process(self, entry: dict[str, Any] | None) -> psutil.Process | None:
        """The live process recorded in `entry`, if it is still ours (pid reuse is checked
        by start time and command line)."""
        if not entry or not entry.get("pid"):
            return None
        pid = entry["pid"]
        child = self._children.get(pid)
        if child is not None and child.poll() is not None:  # reap our own dead child
            return None
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            if abs(proc.create_time() - entry["create_time"]) > 1.0:
                return None
            cmdline = proc.cmdline()
            # A process that has only just started can show an empty command line for a
            # moment; its pid and start time already identify it.
            if cmdline and str(self.config_path) not in cmdline:
                return None
            return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None

    def _command(self, role: str, index: int, task_slots: int, web: str) -> list[str]:
        # `python -c` with the interpreter itself: works in a venv without relying on PATH.
        code = f"from {ENTRY_POINTS[role]} import main; main(prog_name={role!r})"
        cmd = [self.python, "-c", code, "--config", str(self.config_path)]
        if role not in SINGLE and web:
            cmd += ["-D", f"{role}.http_address={web}"]
        if role == "dataserver":
            cmd += ["-D", f"node.host=host{index}",
                    "-D", f"dataserver.dir={self.dir / f'data{index}'}"]
        elif role == "taskserver":  # paired with dataserver i: the same node identity
            cmd += ["-D", f"node.host=host{index}",
                    "-D", f"taskserver.dir={self.dir / f'task{index}'}"]
            if task_slots:
                cmd += ["-D", f"taskserver.slots={task_slots}"]
        return cmd

    def _web_address(self, config: configmod.Config, role: str) -> str:
        """Where the daemon serves its pages: the configured address, but a port of its own
        for each dataserver and taskserver whose configured port is 0 (so that `status` can
        name it)."""
        address = config[role]["http_address"]
        if role in SINGLE or not address or not address.endswith(":0"):
            return address
        return f"{address[:-2]}:{free_port()}"

    def _start(self, role: str, index: int, task_slots: int,
               config: configmod.Config) -> dict[str, Any]:
        name = _daemon_name(role, index)
        web = self._web_address(config, role)
        log_path = self.dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.parent.chmod(0o700)   # the daemons' logs name every job, file and attempt
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(log_path, "ab") as log:
            log.write(f"---- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}\n".encode())
            log.flush()
            # A new session: Ctrl-C in the shell that ran `up` does not stop the cluster.
            proc = subprocess.Popen(self._command(role, index, task_slots, web),
                                    stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, cwd=self.dir, env=env,
                                    start_new_session=True, close_fds=True)
        self._children[proc.pid] = proc
        return {"role": role, "index": index, "pid": proc.pid,
                "create_time": psutil.Process(proc.pid).create_time(),
                "host": f"host{index}" if role in ("dataserver", "taskserver") else "",
                "log": str(log_path), "started": time.time(), "web": web}

    def _wanted(self, state: dict[str, Any]) -> list[tuple[str, int]]:
        wanted = [("nameserver", 0)] + [("dataserver", i)
                                        for i in range(1, state["dataservers"] + 1)]
        if state.get("taskservers"):
            wanted += [("jobserver", 0)] + [("taskserver", i)
                                            for i in range(1, state["taskservers"] + 1)]
        return wanted

    def up(self, dataservers: int | None = None, taskservers: int = 0,
           timeout: float = 60.0) -> list[str]:
        """Start every daemon that is not running and wait until the cluster is ready.
        Returns the names of the daemons started."""
        with self._locked():
            state, started = self._start_missing(dataservers, taskservers)
        deadline = time.monotonic() + timeout
        self._wait_ready(state, started, timeout)
        if state["taskservers"]:
            self._wait_taskservers(state, started, deadline - time.monotonic())
        return started

    @contextlib.contextmanager
    def _locked(self):
        """One `up` or `down` at a time in a directory (they read and write cluster.json)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "cluster.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _start_missing(self, dataservers: int | None,
                       taskservers: int) -> tuple[dict[str, Any], list[str]]:
        self._ensure_config()
        config = configmod.load(str(self.config_path))  # a broken file fails before any start
        state = self._load_state()
        if dataservers is not None:
            if dataservers < 1:
                raise ClusterError("--dataservers must be at least 1")
            if dataservers < state["dataservers"]:
                raise ClusterError(
                    f"the cluster in {self.dir} has {state['dataservers']} dataservers; it can "
                    f"grow but not shrink (run `minijet cluster down` and remove the directory)")
            state["dataservers"] = dataservers
        elif state["dataservers"] == 0:
            state["dataservers"] = DEFAULT_DATASERVERS
        state["taskservers"] = max(state.get("taskservers", 0), taskservers)
        # slots: 0 is all the cores for one taskserver; the local ones share this machine's
        task_slots = 0 if config["taskserver"]["slots"] else \
            max(1, (os.cpu_count() or 1) // max(1, state["taskservers"]))
        started = []
        try:
            for role, index in self._wanted(state):
                name = _daemon_name(role, index)
                if self._process(state["daemons"].get(name)) is None:
                    state["daemons"][name] = self._start(role, index, task_slots, config)
                    started.append(name)
        finally:
            self._save_state(state)
        return state, started

    def _died_at_start(self, state: dict[str, Any], names: list[str]) -> None:
        for name in names:
            entry = state["daemons"][name]
            if self._process(entry) is None:
                tail = _tail(Path(entry["log"]))
                raise ClusterError(f"{name} exited at start; see {entry['log']}"
                                   + (f" (last line: {tail})" if tail else ""))

    def _wait_ready(self, state: dict[str, Any], started: list[str], timeout: float) -> None:
        """Until the nameserver answers, every dataserver is alive in its report (the
        restarted ones with a heartbeat since their start) and safe mode is off."""
        config = self.config.with_overrides({"rpc.retries": 0})
        address = config["nameserver"]["address"]
        with rpc.connect(config, address) as channel:
            stub = dfs_pb2_grpc.NameServerStub(channel)

            def waiting_for() -> str | None:
                report = rpc.call(config, stub.Report, dfs_pb2.Empty(), idempotent=True,
                                  timeout=2.0, address=address)
                alive = {d.node.host: d.last_heartbeat for d in report.dataservers if d.alive}
                missing = self._not_heard_from(state, started, "dataserver", alive)
                if missing:
                    return "registration of " + ", ".join(missing)
                mode = rpc.call(config, stub.SafeMode, dfs_pb2.SafeModeRequest(),
                                idempotent=True, timeout=2.0, address=address)
                return f"the nameserver to leave safe mode ({mode.reason})" if mode.on else None

            self._wait_until(state, started, timeout, "the nameserver to answer", waiting_for)

    def _wait_taskservers(self, state: dict[str, Any], started: list[str],
                          timeout: float) -> None:
        """Until the jobserver lists every taskserver alive (the restarted ones with a
        heartbeat since their start)."""

        def waiting_for() -> str | None:
            heard: dict[str, float] = {}
            for t in self._taskservers(self.config):
                if t.alive:
                    heard[t.host] = max(heard.get(t.host, 0.0), t.last_heartbeat)
            missing = self._not_heard_from(state, started, "taskserver", heard)
            return "heartbeats of " + ", ".join(missing) if missing else None

        self._wait_until(state, started, max(timeout, 1.0), "the jobserver to answer",
                         waiting_for)

    @staticmethod
    def _not_heard_from(state: dict[str, Any], started: list[str], role: str,
                        heard: dict[str, float]) -> list[str]:
        """The daemons of `role` whose host's last heartbeat (in `heard`) is missing, or for
        those started now, older than their start."""
        return sorted(name for name, entry in state["daemons"].items()
                      if entry["role"] == role and heard.get(entry["host"], -1.0)
                      < (entry["started"] - 1.0 if name in started else 0.0))

    def _wait_until(self, state: dict[str, Any], started: list[str], timeout: float,
                    first: str, waiting_for: Callable[[], str | None]) -> None:
        """Poll `waiting_for` (None once ready, else what is awaited; a MinijetError while
        the daemon does not answer yet, awaiting `first`) until it is ready; raise
        ClusterError after `timeout` or when a daemon just started has exited."""
        deadline = time.monotonic() + timeout
        awaited = first
        while True:
            self._died_at_start(state, started)
            try:
                awaited = waiting_for()
                if awaited is None:
                    return
            except MinijetError:
                pass
            if time.monotonic() > deadline:
                raise ClusterError(f"cluster in {self.dir} not ready after {timeout:.0f}s: "
                                   f"waiting for {awaited}; see {self.dir / 'logs'}")
            time.sleep(0.1)

    def _taskservers(self, config: configmod.Config) -> list:
        """The jobserver's list of taskservers (raises MinijetError if it does not answer)."""
        from minijet.proto import job_pb2, job_pb2_grpc
        config = config.with_overrides({"rpc.retries": 0})
        address = config["jobserver"]["address"]
        with rpc.connect(config, address) as channel:
            return list(rpc.call(config, job_pb2_grpc.JobServerStub(channel).ListTaskServers,
                                 job_pb2.Empty(), idempotent=True, timeout=2.0,
                                 address=address).taskservers)

    def _task_addresses(self, config: configmod.Config) -> dict[str, str]:
        """host -> shuffle address of its live taskserver, as the jobserver knows them."""
        try:
            return {t.host: t.address for t in self._taskservers(config) if t.alive}
        except MinijetError:
            return {}

    def status(self) -> list[DaemonStatus]:
        state = self._load_state()
        if not state["daemons"] and not self.config_path.exists():
            raise ClusterError(f"no local cluster in {self.dir} (run `minijet cluster up`)")
        config = self.config
        reported = self._dataservers(config)
        data_addresses = {d.node.host: d.node.data_address for d in reported}
        data_health = {d.node.host: d.health_address for d in reported}
        task_addresses = self._task_addresses(config) if state.get("taskservers") else {}
        result = []
        for name, entry in sorted(state["daemons"].items(), key=lambda kv: (
                ROLE_ORDER.index(kv[1]["role"]), kv[1]["index"])):
            proc = self._process(entry)
            if entry["role"] in SINGLE:
                address = config[entry["role"]]["address"]
            elif entry["role"] == "taskserver":
                address = task_addresses.get(entry["host"], "") if proc else ""
            else:
                address = data_addresses.get(entry["host"], "") if proc else ""
            web = web_url(config, config[entry["role"]]["http_address"]
                          if entry["role"] in SINGLE else entry.get("web", ""))
            if not proc:
                said = ""
            elif entry["role"] == "dataserver":   # at the health address it registered
                said = self._health(config, data_health.get(entry["host"], ""))
            else:
                said = self._health(config, address)
            result.append(DaemonStatus(name, entry["role"], entry["index"], entry["host"],
                                       address, proc.pid if proc else None,
                                       "running" if proc else "stopped", entry["log"], said,
                                       web if proc else ""))
        return result

    @staticmethod
    def _health(config: configmod.Config, address: str) -> str:
        """What the gRPC health service at `address` says (minijet.health)."""
        if not address:
            return "no answer"
        with rpc.connect(config, address) as channel:
            return _said(health.serving(channel))


    def _dataservers(self, config: configmod.Config) -> list:
        """The dataservers in the nameserver's report ([] when it does not answer)."""
        config = config.with_overrides({"rpc.retries": 0})
        address = config["nameserver"]["address"]
        try:
            with rpc.connect(config, address) as channel:
                report = rpc.call(config, dfs_pb2_grpc.NameServerStub(channel).Report,
                                  dfs_pb2.Empty(), idempotent=True, timeout=2.0)
        except MinijetError:
            return []
        return list(report.dataservers)

    def _data_addresses(self, config: configmod.Config) -> dict[str, str]:
        """host -> data-transfer address of each dataserver, as the nameserver knows them."""
        return {d.node.host: d.node.data_address for d in self._dataservers(config)}

    def address(self, role: str, index: int = 0) -> str:
        """The nameserver's or jobserver's RPC address, a dataserver's data-transfer
        address, or a taskserver's shuffle address."""
        if role in SINGLE:
            return self.config[role]["address"]
        if role == "taskserver":
            return self._task_addresses(self.config).get(f"host{index}", "")
        return self._data_addresses(self.config).get(f"host{index}", "")

    def pid(self, role: str, index: int = 0) -> int | None:
        proc = self._process(self._load_state()["daemons"].get(_daemon_name(role, index)))
        return proc.pid if proc else None

    def kill(self, role: str, index: int = 0) -> None:
        """SIGKILL one daemon (a crash) and wait until it is gone."""
        name = _daemon_name(role, index)
        proc = self._process(self._load_state()["daemons"].get(name))
        if proc is None:
            raise ClusterError(f"{name} is not running")
        proc.kill()
        self._reap([proc], timeout=10.0)

    def restart(self, timeout: float = 60.0) -> list[str]:
        """Start whatever is not running (after `kill`), keeping all data."""
        return self.up(timeout=timeout)

    def down(self, timeout: float = 10.0) -> list[str]:
        """SIGTERM every daemon, wait up to `timeout`, then SIGKILL the stragglers.
        Returns the names of the daemons that were running."""
        if not self.state_path.exists():
            return []
        with self._locked():
            return self._stop_all(timeout)

    def _stop_all(self, timeout: float) -> list[str]:
        state = self._load_state()
        running = {name: p for name, entry in state["daemons"].items()
                   if (p := self._process(entry)) is not None}
        for proc in running.values():
            try:
                proc.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        stragglers = self._reap(list(running.values()), timeout)
        for proc in stragglers:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        self._reap(stragglers, timeout=10.0)
        return sorted(running)

    def _reap(self, procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
        """Wait for `procs` to exit (reaping our own children); return those still alive."""
        gone, alive = psutil.wait_procs(procs, timeout=timeout)
        for proc in gone:
            child = self._children.pop(proc.pid, None)
            if child is not None:
                child.wait()
        return alive

    def client(self, host: str | None = None):
        """A DfsClient for this cluster (host: the node identity the client claims)."""
        from minijet.dfs import DfsClient
        return DfsClient(config=self.config, host=host)

    def __enter__(self) -> "LocalCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.down()


def _said(serving: bool | None) -> str:
    """A health check's answer (None: none) as `status` shows it."""
    return "no answer" if serving is None else "serving" if serving else "not serving"


def _tail(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


# ---- the `minijet` command ----

def _message(e: Exception) -> str:
    if isinstance(e, OSError) and e.filename is not None:
        return f"{e.filename}: {e.strerror or e}"
    return str(e)


def _fail(message: str) -> None:
    click.echo(f"minijet: error: {message}", err=True)
    sys.exit(1)


@click.group(help="Administer minijet clusters.")
def main() -> None:
    pass


@main.group(help="A local pseudo-cluster: every daemon as a background process on this "
                 "machine, state under one directory.")
def cluster() -> None:
    pass


_dir_option = click.option("--dir", "directory", default=str(DEFAULT_DIR), show_default=True,
                           type=click.Path(file_okay=False),
                           help="Directory holding the cluster's config, data, logs and pids.")


@cluster.command(help="Start the local cluster (or whatever of it is not running) and wait "
                      "until it is ready. Data in DIR is kept.")
@click.option("--dataservers", type=int, default=None,
              help=f"Number of dataservers (hosts host1..hostN; default "
                   f"{DEFAULT_DATASERVERS}, or as many as DIR had).")
@click.option("--taskservers", type=int, default=0,
              help="Number of taskservers (hosts host1..hostM, each paired with the "
                   "dataserver of that host); with any, the jobserver runs too.")
@click.option("--timeout", type=float, default=60.0, show_default=True,
              help="Seconds to wait for the cluster to be ready.")
@_dir_option
def up(dataservers, taskservers, timeout, directory):
    lc = LocalCluster(directory)
    try:
        started = lc.up(dataservers=dataservers, taskservers=taskservers, timeout=timeout)
        statuses = lc.status()
    except (MinijetError, OSError) as e:
        _fail(_message(e))
    click.echo(f"started: {', '.join(started)}" if started else "all daemons already running")
    _print_status(statuses)
    if Path(directory).resolve() != DEFAULT_DIR.resolve():
        click.echo(f"clients find this cluster with: export MINIJET_CONF={lc.config_path}")


@cluster.command(help="List each daemon of the local cluster: role, address, pid, state.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_dir_option
def status(as_json, directory):
    try:
        statuses = LocalCluster(directory).status()
    except (MinijetError, OSError) as e:
        _fail(_message(e))
    if as_json:
        click.echo(json.dumps([asdict(s) for s in statuses], indent=2))
    else:
        _print_status(statuses)


@cluster.command(help="Stop every daemon of the local cluster (SIGTERM, then SIGKILL). "
                      "Data is kept.")
@_dir_option
def down(directory):
    lc = LocalCluster(directory)
    if not lc.state_path.exists():
        _fail(f"no local cluster in {lc.dir}")
    try:
        stopped = lc.down()
    except (MinijetError, OSError) as e:
        _fail(_message(e))
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


def _print_status(statuses: list[DaemonStatus]) -> None:
    rows = [("NAME", "ROLE", "HOST", "ADDRESS", "PID", "STATE", "HEALTH", "WEB")]
    rows += [(s.name, s.role, s.host or "-", s.address or "-", str(s.pid or "-"), s.state,
              s.health or "-", s.web or "-") for s in statuses]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


if __name__ == "__main__":
    main()
