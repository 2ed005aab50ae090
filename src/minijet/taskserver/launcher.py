"""Starting a TaskHost as its own OS process, and killing it with everything it started."""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from minijet.config import Config
from minijet.taskcreds import CREDENTIALS_FILE, TaskCredentials
from minijet.taskdesc import TASK_FILE
from minijet.taskserver.layout import give, private_dir
from minijet.taskserver.taskuser import TaskUser

log = logging.getLogger(__name__)

CONFIG_JSON = "config.json"
TMP_DIR = "tmp"   # the TaskHost's TMPDIR: its temporary files stay in its private dir


def start_taskhost(config: Config, umbilical: str, attempt_id: str, task_json: str,
                   credentials: TaskCredentials, job_cache: Path, work_dir: Path,
                   attempts_dir: Path, log_dir: Path, forks: "ForkServer | None",
                   user: TaskUser | None = None):
    """Write the attempt's task.json, its credentials and the taskserver's configuration
    less its secrets (task_config) into its work dir, then start the TaskHost as `user`
    (None: as this process's user), with stdout/stderr going to the attempt's log files:
    forked by `forks` when given, else as a fresh `python -m minijet.taskhost`. Returns its
    process (a Popen, or a ForkedTaskHost with the same pid/poll/wait). `attempts_dir` holds
    the work dirs of the job's attempts here, where the TaskHost reads local map outputs."""
    _fresh_dir(work_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_dir.parent.chmod(0o700)   # the job's logs: the taskserver's, read through it
    (work_dir / TASK_FILE).write_text(task_json)
    credentials.write(work_dir)
    # the job's files in the attempt's working directory too, so the user's code opens an
    # extra file by its plain name (as with Hadoop's distributed cache)
    for entry in job_cache.iterdir():
        if entry.name not in (TASK_FILE, CONFIG_JSON, CREDENTIALS_FILE, TMP_DIR):
            (work_dir / entry.name).symlink_to(entry)
    fd = os.open(work_dir / CONFIG_JSON, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(task_config(config), f)
    (work_dir / TMP_DIR).mkdir()
    for made in work_dir.iterdir():
        give(made, user)
    private_dir(work_dir, user)   # last: the task's account gets in only once all is ready
    env = {**_TASKHOST_ENV, "TMPDIR": str(work_dir / TMP_DIR), **(user.env() if user else {})}
    args = ["--taskserver", umbilical, "--attempt", attempt_id, "--job-cache", str(job_cache),
            "--work-dir", str(work_dir), "--attempts-dir", str(attempts_dir),
            "--config", str(work_dir / CONFIG_JSON)]
    if forks is not None:
        return forks.start(args, work_dir, log_dir / "stdout", log_dir / "stderr", env, user)
    ids = {"user": user.uid, "group": user.gid, "extra_groups": list(user.groups)} \
        if user else {}
    # the log files are opened here, as the taskserver: the task's account cannot open them
    with open(log_dir / "stdout", "ab") as out, open(log_dir / "stderr", "ab") as err:
        # its own session: a signal meant for the taskserver's terminal does not reach it
        return subprocess.Popen([sys.executable, "-m", "minijet.taskhost", *args], cwd=work_dir,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True, env=env, **ids)


def _fresh_dir(path: Path) -> None:
    """A new attempt's work dir, made by the taskserver (root's until it is handed over).
    Attempt ids are never reused: anything already there was planted by the job's code (the
    job's directory is its), maybe links to make the taskserver write elsewhere."""
    if path.is_symlink():
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700)


_TASKHOST_ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def task_config(config: Config) -> dict:
    """The configuration a TaskHost gets: the taskserver's, less the cluster's token and the
    daemon's TLS key. A task reaches its taskserver, the shuffle and the DFS with its own
    credentials (minijet.taskcreds), and still checks servers against the same CA."""
    settings = config.as_dict()
    settings["security"] = {**settings["security"], "auth_token": "", "tls_key": ""}
    return settings


class ForkedTaskHost:
    """A TaskHost forked by the fork server: not our child, so its exit comes as a message."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None
        self._exited = threading.Event()

    def exited(self, code: int) -> None:
        self.returncode = code
        self._exited.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self) -> int:
        self._exited.wait()
        return self.returncode


class ForkServer:
    """The taskserver's side of `python -m minijet.taskhost.forkserver` (see there): started
    on first use, and again after it died."""

    def __init__(self):
        self._lock = threading.Lock()
        self._current: _ForkServerProcess | None = None

    def running(self) -> "_ForkServerProcess":
        """The fork server, started now if it is not running (at the taskserver's start, so
        that the first attempt does not wait for its imports)."""
        with self._lock:
            if self._current is None or not self._current.alive():
                self._current = _ForkServerProcess()
            return self._current

    def start(self, args: list[str], cwd: Path, stdout: Path, stderr: Path,
              env: dict[str, str] | None = None, user: TaskUser | None = None
              ) -> ForkedTaskHost:
        """Fork a TaskHost with `env` (its whole environment; default the fork server's),
        running as `user` (None: as the fork server's user)."""
        request = {"args": args, "cwd": str(cwd), "stdout": str(stdout), "stderr": str(stderr)}
        if env is not None:
            request["env"] = env
        if user is not None:
            request["user"] = {"uid": user.uid, "gid": user.gid, "groups": list(user.groups)}
        return self.running().fork(request)

    def close(self) -> None:
        """Stop the fork server (the taskserver has killed the TaskHosts already)."""
        with self._lock:
            server, self._current = self._current, None
        if server is not None:
            server.close()


class _ForkServerProcess:
    """One run of the fork server, and a reader thread for its messages."""

    def __init__(self):
        self._lock = threading.Lock()
        self._seq = 0
        self._replies: dict[int, tuple[threading.Event, dict]] = {}
        self._children: dict[int, ForkedTaskHost] = {}   # only the reader thread touches it
        self._sock, theirs = socket.socketpair()
        with theirs:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "minijet.taskhost.forkserver", "--fd",
                 str(theirs.fileno())], pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                env=_TASKHOST_ENV)
        threading.Thread(target=self._read, name="forkserver", daemon=True).start()
        log.info("TaskHost fork server started, pid %d", self._proc.pid)

    def alive(self) -> bool:
        return self._proc.poll() is None

    def fork(self, request: dict) -> ForkedTaskHost:
        done, reply = threading.Event(), {}
        with self._lock:
            self._seq += 1
            request_id = self._seq
            self._replies[request_id] = (done, reply)
            try:
                self._sock.sendall(json.dumps({"id": request_id, **request}).encode() + b"\n")
            except OSError as e:
                self._replies.pop(request_id, None)
                raise OSError(f"the TaskHost fork server is gone: {e}") from None
        if not done.wait(30) or "child" not in reply:
            with self._lock:
                self._replies.pop(request_id, None)
            raise OSError(reply.get("error", "the TaskHost fork server did not answer"))
        return reply["child"]

    def _read(self) -> None:
        with self._sock.makefile("rb") as lines:
            for line in lines:
                message = json.loads(line)
                if "exit" in message:  # told after the fork's reply, on this same stream
                    child = self._children.pop(message["exit"], None)
                    if child is not None:
                        child.exited(message["code"])
                    continue
                if "pid" in message:
                    message["child"] = self._children[message["pid"]] = \
                        ForkedTaskHost(message["pid"])
                with self._lock:
                    done, reply = self._replies.pop(message["id"], (None, {}))
                reply.update(message)
                if done is not None:
                    done.set()
        self._proc.wait()
        if self._proc.returncode:
            log.warning("TaskHost fork server (pid %d) ended with code %s", self._proc.pid,
                        self._proc.returncode)
        with self._lock:
            for done, _ in self._replies.values():
                done.set()
            self._replies.clear()
        for child in self._children.values():  # their exits will not be told: watch them
            threading.Thread(target=_await_orphan, args=(child,), daemon=True).start()

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._sock.close()


def _await_orphan(child: ForkedTaskHost) -> None:
    while psutil.pid_exists(child.pid):
        try:
            if psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    child.exited(-9)


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants. They are stopped first so none can start
    new children (or be reparented away) between listing the tree and killing it."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = [root]
    for _ in range(2):  # stop, then look again for children started meanwhile
        try:
            procs = [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            pass
        for p in procs:
            try:
                p.suspend()
            except psutil.NoSuchProcess:
                pass
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    log.debug("killed process tree of %d (%d processes)", pid, len(procs))
