"""The taskserver daemon: one per worker machine.

Threads around the pure AttemptTable:
- heartbeat: one heartbeat every interval (at once when an attempt ends), a message on a
  stream kept open to the jobserver (heartbeats.py), carrying every attempt not yet
  reported final; executes the launch / kill / cleanup commands of the reply.
  While the jobserver is unreachable it keeps trying, and attempts keep running.
- monitor: kills attempts silent for longer than taskserver.task_timeout.
- limits: kills attempts whose process tree holds more than taskserver.task_memory
  (memory.py), trims attempt logs to taskserver.log_limit (logcap.py), and sweeps old logs.
- one launcher thread per new attempt (copies the job files, then starts the TaskHost) and one
  waiter thread per TaskHost process (records its exit).
The gRPC service (service.py) serves shuffle fetches, logs and the TaskHosts' umbilical.
A job's logs go only to its owner (the user of its LaunchAttempts, kept by owners.py) and
security.admins (minijet.acl); a refusal is logged.

Local files (layout.py): a job's cache, work dirs and map outputs are deleted on the job's
cleanup order; every heartbeat names the jobs whose files are here, so a jobserver that lost
a cleanup order (it restarted) sends it again. Attempt logs stay for `jetshell logs` until
older than taskserver.log_retention (swept at start and every LOG_SWEEP_INTERVAL; with a
retention of 0 they go at the job's cleanup), or until the jobserver drops the job's history (a cleanup order for its
logs). Work left by an earlier run of this taskserver is deleted at start:
the jobserver treats that run's attempts as lost.

Task users (taskuser.py): running as root, it runs each TaskHost as the job's user (or
taskserver.task_user) with the job's directory private to that account, and says in every
heartbeat that its tasks are isolated; not as root (or with taskserver.isolate_tasks off),
they run as itself, not isolated. A job's directory holds files its code may have replaced
by links: map outputs are served only when they are the job's own files (layout.open_owned).
"""
from __future__ import annotations

import fcntl
import hmac
import logging
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

from minijet import acl, daemon, jobauth, net, rpc
from minijet.config import Config
from minijet.errors import (FailedPrecondition, MinijetError, NotFound, PermissionDenied,
                            Unauthenticated, Unavailable)
from minijet.failures import NODE, SYSTEM, USER
from minijet.formats import segments
from minijet.health import HEALTH_METHODS, HealthService
from minijet.proto import job_pb2, job_pb2_grpc
from minijet.states import FAILED, KILLED
from minijet.taskserver import launcher, logcap, memory, owners, reach, taskuser
from minijet.taskserver.attempts import AttemptSnapshot, AttemptTable, DoneReport
from minijet.taskserver.jobcache import JobCache
from minijet.taskserver.heartbeats import HeartbeatStream, heartbeat_wait
from minijet.taskserver.layout import Layout, check_id, open_owned
from minijet.taskserver.service import TASK_METHODS, TaskServerService
from minijet.taskcreds import TaskCredentials
from minijet.web.metrics import TaskServerMetrics
from minijet.web.server import WebServer

log = logging.getLogger("minijet.taskserver")

_STATES = {"assigned": job_pb2.ASSIGNED, "running": job_pb2.RUNNING,
           "succeeded": job_pb2.SUCCEEDED, "failed": job_pb2.FAILED, "killed": job_pb2.KILLED}
LOG_LIMIT = 1024 * 1024  # GetLogs returns at most a MiB of each stream: its head and tail
LOG_SWEEP_INTERVAL = 60.0   # seconds between two sweeps of logs past their retention


class TaskServer:
    def __init__(self, config: Config):
        self.config = config
        ts = config["taskserver"]
        self.layout = Layout(ts["dir"])
        self.slots = ts["slots"] or os.cpu_count() or 1
        self.task_timeout = ts["task_timeout"]
        self.task_memory = ts["task_memory"] or memory.default_limit(self.slots)
        self.log_limit = ts["log_limit"]
        self.isolated = taskuser.isolates(os.geteuid(), ts["isolate_tasks"])
        self._taskhost_paths = reach.taskhost_paths()
        self._peaks: dict[str, int] = {}          # attempt -> most memory its tree held
        self._heard = False   # the last heartbeat reached the jobserver: health's SERVING
        self._attempt_secrets: dict[str, str] = {}  # attempt -> its umbilical's secret
        self._job_secrets: dict[str, str] = {}      # job -> its secret: signs its fetches
        self._cleaning: set[str] = set()          # jobs whose cleanup is under way
        self._log_lock = threading.Lock()         # one trim of a log at a time
        self.host = config.host
        self.rack = config.rack_of(self.host)
        self._table = AttemptTable()
        self._procs: dict[str, subprocess.Popen | launcher.ForkedTaskHost] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._dfs_client = None
        self._dfs_lock = threading.Lock()
        self.cache = JobCache(self.layout, self._dfs)
        self._jobserver_channel = self._retired_channel = None
        self._heartbeats = HeartbeatStream(config["jobserver"]["address"],
                                           config["rpc"]["timeout"])
        self._connect_jobserver()
        self._interval = ts["heartbeat_interval"]
        self._forks = launcher.ForkServer() if ts["fork_server"] else None
        self._server = None
        self._dir_lock = None
        self.address = self.name = self.umbilical = ""
        self.metrics = TaskServerMetrics(self)
        self.web = WebServer(config, "taskserver.http_address", {}, self.metrics.registry,
                             self.ready)

    # ---- life cycle ----

    def start(self) -> None:
        self._lock_dir()
        self.web.start()
        shutil.rmtree(self.layout.jobs, ignore_errors=True)
        self.layout.jobs.mkdir(parents=True, exist_ok=True)
        self.layout.jobs.chmod(0o711)   # tasks pass through to their job's dir, list nothing
        self._sweep_logs()
        bind = self.config["taskserver"]["address"]
        self._server, port = rpc.start_server(
            self.config, bind,
            [lambda s: job_pb2_grpc.add_TaskServerServicer_to_server(TaskServerService(self), s),
             HealthService(self.ready, self._stop).add_to],
            open_methods=TASK_METHODS | HEALTH_METHODS)
        bind_host = bind.rsplit(":", 1)[0]
        anywhere = net.is_any_address(bind_host)
        self.address = f"{socket.gethostname() if anywhere else bind_host}:{port}"
        self.name = f"{self.host}:{port}"
        self.umbilical = f"{'localhost' if anywhere else bind_host}:{port}"
        log.info("taskserver %s (host %s, rack %s, %d slots) serving on %s, jobserver %s; "
                 "%s", self.name, self.host, self.rack, self.slots, self.address,
                 self.config["jobserver"]["address"],
                 "tasks run as their jobs' users" if self.isolated else
                 "tasks run as this taskserver's user, not isolated from each other")
        if self._forks is not None:
            self._forks.running()
        for target, name in ((self._heartbeat_loop, "heartbeat"), (self._monitor_loop, "monitor"),
                             (self._limits_loop, "limits")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def _lock_dir(self) -> None:
        """Hold an exclusive lock on taskserver.dir while running: a second taskserver on
        the same dir would delete this one's work at its start."""
        self.layout.root.mkdir(parents=True, exist_ok=True)
        self._dir_lock = open(self.layout.root / "lock", "w")
        try:
            fcntl.flock(self._dir_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._dir_lock.close()
            raise FailedPrecondition(f"taskserver.dir {self.layout.root} is in use by another "
                                     "taskserver; give each taskserver its own dir") from None

    def ready(self) -> bool:
        """Whether it can do its job, for health probes: heard by the jobserver, and not
        stopping (its web port is the last thing it closes)."""
        return self._heard and not self._stop.is_set()

    def stop(self) -> None:
        """Kill every TaskHost, wait for them, stop serving."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            active = self._table.active()
        for attempt_id in active:
            self.kill(attempt_id, KILLED, "taskserver stopped", NODE)
        self._wait_exited(active, timeout=10)
        for t in self._threads:
            t.join(timeout=5)
        if self._server is not None:
            self._server.stop(grace=1).wait()
        if self._forks is not None:
            self._forks.close()
        self._heartbeats.close()
        self._jobserver_channel.close()
        if self._retired_channel is not None:
            self._retired_channel.close()
        self.web.stop()
        if self._dfs_client is not None:
            self._dfs_client.close()
        self._dir_lock.close()
        log.info("taskserver %s stopped", self.name)

    def _connect_jobserver(self) -> None:
        """A new channel: gRPC backs off reconnecting a failed channel for up to minutes,
        far longer than the jobserver waits before declaring a silent taskserver lost. The
        one before is closed a reconnection later: a TaskHost's call passed on just then
        (a long poll for outputs) still ends on it, or is tried again on the new one."""
        if self._retired_channel is not None:
            self._retired_channel.close()
        self._retired_channel = self._jobserver_channel
        self._jobserver_channel = rpc.connect(self.config, self.config["jobserver"]["address"])
        self._jobserver = job_pb2_grpc.JobServerStub(self._jobserver_channel)

    def _dfs(self):
        with self._dfs_lock:
            if self._dfs_client is None:
                from minijet.dfs import DfsClient
                self._dfs_client = DfsClient(self.config, host=self.host)
            return self._dfs_client

    # ---- heartbeats ----

    def _heartbeat_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.heartbeat()
                self._heard = True
                if failures:
                    log.info("jobserver %s reachable again", self.config["jobserver"]["address"])
                failures = 0
            except MinijetError as e:
                self._heard = False   # not serving: the jobserver does not hear from it
                if not failures:
                    log.warning("heartbeat to jobserver failed (will keep trying): %s", e)
                failures += 1
                self._connect_jobserver()
            except Exception:
                log.exception("heartbeat failed")
            self._wake.wait(heartbeat_wait(self._interval, failures))

    def heartbeat(self) -> None:
        with self._lock:
            sent = self._table.snapshot()
            busy = self._table.busy_slots()
            cleaning = set(self._cleaning)
        jobs = sorted(p.name for p in self.layout.jobs.iterdir() if p.name not in cleaning) \
            if self.layout.jobs.is_dir() else []
        request = job_pb2.HeartbeatRequest(
            name=self.name, host=self.host, rack=self.rack, slots=self.slots,
            free_slots=max(0, self.slots - busy), address=self.address,
            attempts=[_status_proto(s) for s in sent], jobs=jobs, isolated=self.isolated)
        reply = self._heartbeats.beat(self._jobserver, request)
        with self._lock:
            self._table.acknowledged(sent)
        if reply.heartbeat_interval > 0:
            self._interval = reply.heartbeat_interval
        for command in reply.commands:
            kind = command.WhichOneof("command")
            if kind == "launch":
                self.launch(command.launch)
            elif kind == "kill":
                self.kill(command.kill.attempt_id, KILLED, "killed by the jobserver")
            elif kind == "cleanup" and command.cleanup.logs:
                self.drop_logs(command.cleanup.job_id)
            elif kind == "cleanup":
                self.cleanup(command.cleanup.job_id)

    def wake(self) -> None:
        """Heartbeat now: the jobserver has pending tasks and saw a free slot here."""
        self._wake.set()

    # ---- commands ----

    def launch(self, order: job_pb2.LaunchAttempt) -> None:
        if self._stop.is_set():
            return
        try:
            check_id("job id", order.job_id)
            check_id("attempt id", order.attempt_id)
        except MinijetError as e:
            log.error("refusing launch of %r: %s", order.attempt_id, e)
            return
        with self._lock:
            if not self._table.launched(order.attempt_id, order.job_id, order.task_id,
                                        time.time()):
                return
        log.info("attempt %s: launch (job %s, task %s)", order.attempt_id, order.job_id,
                 order.task_id)
        threading.Thread(target=self._start_attempt, args=(order,),
                         name=f"launch-{order.attempt_id}", daemon=True).start()

    def _start_attempt(self, order: job_pb2.LaunchAttempt) -> None:
        try:  # this node's setup: another node may do
            user = taskuser.choose(order.user, self.config["taskserver"]["task_user"],
                                   self.isolated)
            self._check_reach(user)
        except FailedPrecondition as e:
            self._launch_failed(order.attempt_id, str(e), NODE)
            return
        try:
            owners.remember(self.layout.job_owner(order.job_id), order.user, order.attempt_id)
            cache = self.cache.localize(order.job_id, order.job_dir, user)
        except Exception as e:  # the DFS's problem, or this node's (its disk): retried
            error = str(e) if isinstance(e, MinijetError) else f"{type(e).__name__}: {e}"
            self._launch_failed(order.attempt_id, error,
                                SYSTEM if isinstance(e, MinijetError) else NODE)
            return
        with self._lock:
            if self._stop.is_set() or not self._table.started(order.attempt_id, time.time()):
                return  # killed (or stopping) while its job files were being copied
            try:
                credentials = TaskCredentials(secrets.token_hex(16), order.job_secret,
                                              order.dfs_token)
                self._attempt_secrets[order.attempt_id] = credentials.attempt_secret
                self._job_secrets[order.job_id] = order.job_secret
                proc = launcher.start_taskhost(
                    self.config, self.umbilical, order.attempt_id, order.task_json,
                    credentials, cache,
                    self.layout.work_dir(order.job_id, order.attempt_id),
                    self.layout.job_dir(order.job_id),
                    self.layout.log_dir(order.job_id, order.attempt_id), self._forks, user)
            except OSError as e:
                self._table.launch_failed(order.attempt_id, f"cannot start TaskHost: {e}",
                                          time.time(), NODE)
                self._wake.set()
                log.error("attempt %s: cannot start TaskHost: %s", order.attempt_id, e)
                return
            self._procs[order.attempt_id] = proc
            self.metrics.taskhost_started(time.time() - self._table.get(order.attempt_id).launched)
        log.info("attempt %s: TaskHost started, pid %d", order.attempt_id, proc.pid)
        threading.Thread(target=self._wait_attempt, args=(order.attempt_id, proc),
                         name=f"wait-{order.attempt_id}", daemon=True).start()

    def _check_reach(self, user: taskuser.TaskUser | None) -> None:
        if user is None:
            return
        for path, read in [(p, True) for p in self._taskhost_paths] + [(self.layout.jobs,
                                                                         False)]:
            problem = reach.blocked(path, user, read)
            if problem:
                raise FailedPrecondition(
                    f"cannot run tasks as {user.name}: {problem}, on the way to {path}; "
                    "make it reachable by all users (or install minijet where it is)")

    def _launch_failed(self, attempt_id: str, error: str, failure: str) -> None:
        with self._lock:
            self._table.launch_failed(attempt_id, error, time.time(), failure)
        self._wake.set()
        log.error("attempt %s: failed before start: %s", attempt_id, error)

    def _wait_attempt(self, attempt_id: str,
                      proc: subprocess.Popen | launcher.ForkedTaskHost) -> None:
        code = proc.wait()
        with self._lock:
            state = self._table.exited(attempt_id, code, time.time())
            self._procs.pop(attempt_id, None)
            self._peaks.pop(attempt_id, None)
            self._attempt_secrets.pop(attempt_id, None)
            a = self._table.get(attempt_id)
            error = a.error if a else ""
        if a is not None:
            self._cap_logs(a.job_id, attempt_id)
        self._wake.set()
        log.info("attempt %s: %s (exit code %d)%s", attempt_id, state, code,
                 f": {error}" if error else "")

    def kill(self, attempt_id: str, state: str, error: str, failure: str = "") -> None:
        with self._lock:
            must_kill = self._table.kill(attempt_id, state, error, time.time(), failure)
            proc = self._procs.get(attempt_id)
            if must_kill and proc is not None:
                launcher.kill_tree(proc.pid)
        if must_kill:
            log.info("attempt %s: killed (%s)", attempt_id, error)
        self._wake.set()

    def cleanup(self, job_id: str) -> None:
        try:
            check_id("job id", job_id)
        except MinijetError as e:
            log.error("refusing cleanup: %s", e)
            return
        with self._lock:
            if job_id in self._cleaning:
                return
            self._cleaning.add(job_id)
        threading.Thread(target=self._cleanup, args=(job_id,), name=f"cleanup-{job_id}",
                         daemon=True).start()

    def drop_logs(self, job_id: str) -> None:
        """The job's history expired on the jobserver (jobserver.history_retention): its
        logs go now, however young (its local files went at its cleanup)."""
        try:
            shutil.rmtree(self.layout.job_logs(job_id), ignore_errors=True)
        except MinijetError as e:   # not a job id
            log.error("refusing to drop logs: %s", e)

    def _cleanup(self, job_id: str) -> None:
        with self._lock:
            active = [a for a in self._table.of_job(job_id) if a in self._table.active()]
        for attempt_id in active:
            self.kill(attempt_id, KILLED, "job cleaned up")
        self._wait_exited(active, timeout=30)
        self.cache.remove(job_id)
        with self._lock:
            self._table.forget_job(job_id)
            self._job_secrets.pop(job_id, None)
            self._cleaning.discard(job_id)
        # Logs past their retention go in the periodic sweep: sweeping here too walked every
        # job's logs at each job's end, which slowed a run of 5,000 jobs to half its rate.
        if self.config["taskserver"]["log_retention"] <= 0:   # 0: they go with the job
            self.drop_logs(job_id)
        log.info("job %s: local files deleted", job_id)

    def _wait_exited(self, attempt_ids: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not any(a in self._procs for a in attempt_ids):
                    return
            time.sleep(0.02)

    def _sweep_logs(self) -> None:
        with self._lock:
            active_jobs = {self._table.get(a).job_id for a in self._table.active()}
        sweep_logs(self.layout.logs, time.time() - self.config["taskserver"]["log_retention"],
                   active_jobs)

    # ---- timeouts ----

    def _monitor_loop(self) -> None:
        period = min(1.0, max(0.05, self.task_timeout / 4))
        while not self._stop.wait(period):
            with self._lock:
                silent = self._table.timed_out(time.time(), self.task_timeout)
            for attempt_id in silent:
                log.warning("attempt %s: no progress for %gs, killing it", attempt_id,
                            self.task_timeout)
                self.kill(attempt_id, FAILED,
                          f"Task attempt timed out: no progress for {self.task_timeout:g}s", USER)

    # ---- limits on user code ----

    def _limits_loop(self) -> None:
        swept = time.monotonic()
        while not self._stop.wait(memory.POLL_INTERVAL):
            with self._lock:
                running = [(a, job, self._procs[a].pid) for a, job in self._table.running()
                           if a in self._procs]
            held = memory.trees_rss(pid for _, _, pid in running)
            for attempt_id, job_id, pid in running:
                self._check_memory(attempt_id, held[pid])
                self._cap_logs(job_id, attempt_id)
            if time.monotonic() - swept > LOG_SWEEP_INTERVAL:
                swept = time.monotonic()
                self._sweep_logs()

    def _check_memory(self, attempt_id: str, rss: int) -> None:
        with self._lock:
            peak = self._peaks[attempt_id] = max(rss, self._peaks.get(attempt_id, 0))
        if rss > self.task_memory:
            error = memory.over_limit(self.task_memory, peak)
            log.warning("attempt %s: %s, killing it", attempt_id, error)
            self.kill(attempt_id, FAILED, error, USER)

    def _cap_logs(self, job_id: str, attempt_id: str) -> None:
        for stream in ("stdout", "stderr"):
            path = self.layout.log_dir(job_id, attempt_id) / stream
            with self._log_lock:
                trimmed = logcap.cap(path, self.log_limit)
            if trimmed:
                log.info("attempt %s: %s trimmed to taskserver.log_limit", attempt_id, stream)

    # ---- the service's work ----

    def report_progress(self, attempt_id: str, progress: float, counters,
                        taskhost_start_time: float, input_end_time: float) -> None:
        with self._lock:
            if attempt_id not in self._table:
                raise NotFound(f"unknown attempt {attempt_id}")
            self._table.progress(attempt_id, progress, counters, time.time(),
                                 taskhost_start_time, input_end_time)

    def report_done(self, attempt_id: str, report: DoneReport) -> None:
        with self._lock:
            if attempt_id not in self._table:
                raise NotFound(f"unknown attempt {attempt_id}")
            self._table.done(attempt_id, report, time.time())
        log.info("attempt %s: TaskHost reports %s%s", attempt_id,
                 "success" if report.succeeded else "failure",
                 f": {report.error}" if report.error else "")

    def call_jobserver(self, method: str, request, idempotent: bool, held: float = 0.0):
        """`held`: seconds the jobserver may hold the call (a long poll) before replying.
        Each try goes on the channel of the moment (see _connect_jobserver)."""
        def on_current_channel(request, **kwargs):
            try:
                return getattr(self._jobserver, method)(request, **kwargs)
            except ValueError as e:   # closed under it: the jobserver's channel was replaced
                raise Unavailable(f"the jobserver's channel was replaced ({e})") from None

        return rpc.call(self.config, on_current_channel, request,
                        idempotent=idempotent, address=self.config["jobserver"]["address"],
                        timeout=self.config["rpc"]["timeout"] + held)

    def check_attempt(self, attempt_id: str, secret: str) -> None:
        """Unauthenticated unless `secret` is the one made for this running attempt."""
        with self._lock:
            known = self._attempt_secrets.get(attempt_id, "")
        if not known or not hmac.compare_digest(known, secret):
            log.warning("refused a call for attempt %s: wrong or missing attempt secret",
                        attempt_id)
            raise Unauthenticated(f"attempt {attempt_id}: wrong or missing attempt secret")

    def check_job(self, attempt_id: str, job_id: str) -> None:
        """PermissionDenied unless the attempt belongs to `job_id`."""
        with self._lock:
            a = self._table.get(attempt_id)
        if a is None or a.job_id != job_id:
            raise PermissionDenied(f"attempt {attempt_id} may not ask about job {job_id}")

    def check_fetch(self, job_id: str, attempt_id: str, partition: int, mac: str,
                    peer: str) -> None:
        """PermissionDenied unless the fetch is signed with the job's secret."""
        with self._lock:
            secret = self._job_secrets.get(job_id, "")
        if not jobauth.fetch_allowed(secret, job_id, attempt_id, partition, mac):
            log.warning("refused a fetch of %s partition %d (job %s) from %s: not signed "
                        "with the job's secret", attempt_id, partition, job_id, peer)
            raise PermissionDenied(f"fetch of {attempt_id} refused: not signed with the "
                                   f"secret of job {job_id}")

    def map_output_chunks(self, job_id: str, attempt_id: str, partition: int
                          ) -> tuple[int, Iterator[bytes]]:
        owner = self.layout.job_dir(job_id)
        records, chunks = segments.partition_chunks(
            self.layout.map_output(job_id, attempt_id), partition,
            what=f"map output of {attempt_id} (job {job_id})",
            opener=lambda path: open_owned(path, owner))
        return records, self.metrics.fetch_served(chunks)

    def tallies(self) -> tuple[int, int, dict[str, int]]:
        """For /metrics: slots, slots busy, attempts started and ended by state."""
        with self._lock:
            return self.slots, self._table.busy_slots(), dict(self._table.tally)

    def logs(self, job_id: str, attempt_id: str, user: str) -> list[tuple[str, str, str]]:
        """(attempt id, stdout, stderr) of the job's attempts here, or of one; for its owner
        and the admins only (PermissionDenied), as soon as this taskserver has any."""
        if self.layout.job_logs(job_id).is_dir():
            try:
                acl.check(user, acl.READ_LOGS, job_id,
                          owners.owner(self.layout.job_owner(job_id)),
                          self.config["security"]["admins"])
            except PermissionDenied as e:
                log.warning("job %s: logs refused: %s", job_id, e)
                raise
        if attempt_id:
            dirs = [self.layout.log_dir(job_id, attempt_id)]
        else:
            job_logs = self.layout.job_logs(job_id)
            dirs = sorted(job_logs.iterdir()) if job_logs.is_dir() else []
        return [(d.name, _excerpt(d / "stdout"), _excerpt(d / "stderr"))
                for d in dirs if d.is_dir()]


def sweep_logs(logs: Path, horizon: float, keep: set[str]) -> list[str]:
    """Delete the log dirs of jobs (not in `keep`) whose newest file is older than `horizon`
    (a time.time() value); returns the jobs deleted."""
    if not logs.is_dir():
        return []
    deleted = []
    for job_logs in sorted(logs.iterdir()):
        if job_logs.name in keep:
            continue
        try:
            newest = max([p.stat().st_mtime for p in job_logs.rglob("*")]
                         + [job_logs.stat().st_mtime])
        except OSError:
            continue
        if newest < horizon:
            shutil.rmtree(job_logs, ignore_errors=True)
            deleted.append(job_logs.name)
    return deleted


def _excerpt(path: Path) -> str:
    return logcap.excerpt(path, LOG_LIMIT).decode("utf-8", "replace")


def _status_proto(s: AttemptSnapshot) -> job_pb2.AttemptStatus:
    return job_pb2.AttemptStatus(
        attempt_id=s.attempt_id, state=_STATES[s.state], progress=s.progress,
        counters=[job_pb2.Counter(group=g, name=n, value=v) for g, n, v in s.counters],
        error=s.error, traceback=s.traceback, failure=s.failure,
        taskhost_start_time=s.taskhost_start_time, input_end_time=s.input_end_time,
        done_time=s.done_time)


main = daemon.main_of("taskserver", "Run a taskserver: runs task attempts of the jobserver's "
                      "jobs on this machine and serves their map output.", TaskServer)


if __name__ == "__main__":
    main()
