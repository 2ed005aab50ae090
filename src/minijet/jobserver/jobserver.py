"""The jobserver daemon: the gRPC JobServer service around the pure JobServerCore.

Every RPC becomes one event for the core, handled under one lock; the shell carries out the
returned actions: Persist -> the SQLite store (queued; written by the store's own thread),
launch / kill / cleanup commands -> the reply of the Heartbeat they came from, commit
grants -> the Commit reply, JobFinished -> the finisher thread, which commits or removes
the job's output in the DFS and reports the outcome back as OutputCommitted or
OutputCommitFailed, then removes the job dir. Network calls (DFS reads for RunJob, output
commits) happen outside the lock. A timer thread sends Tick so silent taskservers are
declared lost. Job states, including the output phase, are the core's (see model.py).

The server is gRPC's asyncio one (rpc.AioServer). Each taskserver keeps a Heartbeats stream
open, a heartbeat a message on it (a call set up per stream, not per heartbeat): a coroutine
on the server's event loop handles it (the lock held for its event only) and replies once
the store has made its launches durable (awaited, not blocking a thread). The other calls
are plain functions run in the server's thread pool: they may block (RunJob reads the DFS,
WaitJob is a long poll).

Permissions (minijet.acl): a job belongs to the user who sent its CreateJob (the caller
rpc.connect names); only its owner and security.admins may kill it; a refusal is logged.
Status and lists are open to all. The web pages read attempt logs from the taskservers as
acl.JOBSERVER (tasklogs.py).

With an auth token configured, each job gets a DFS credential (jobcreds.py): registered
with the nameserver by RunJob, sent with every LaunchAttempt, removed by the finisher.

Start-up: every job the store holds that the core would not have retired (history.py) is
fed to the core as a JobRestored; the core lists finished ones as they were and resumes those
that were running. A retired job is answered from the store; a sweep thread deletes the
history older than jobserver.history_retention.
"""
from __future__ import annotations

import contextlib
import logging
import posixpath
import queue
import secrets
import sys
import threading
import time
from typing import Any, Iterator

from minijet import acl, daemon, jobdir, rpc
from minijet.config import Config
from minijet.errors import FailedPrecondition, MinijetError, NotFound, PermissionDenied
from minijet.health import HEALTH_METHODS, AioHealthService
from minijet.ids import make_job_id
from minijet.jobserver import history, jobcreds, jobfiles, model, pacing, tasklogs
from minijet.jobserver.store import JobStore
from minijet.jobserver.wakeup import Waker
from minijet.proto import job_pb2, job_pb2_grpc
from minijet.splits import Split, input_splits
from minijet.states import FINAL_STATES as FINAL
from minijet.taskdesc import TaskDescription
from minijet.web.jobpages import JobServerPages
from minijet.web.metrics import JobServerMetrics
from minijet.web.server import WebServer

log = logging.getLogger("minijet.jobserver")

MAX_WAIT = 30.0               # seconds a WaitJob long poll may last
RECENT = 24 * 3600.0          # ListJobs without `all`: finished jobs younger than this
FINISH_RETRIES = 5            # tries to commit/remove a job's output while the DFS fails
STORE_BATCH = 5000            # rows of a submitted job's tasks per store transaction
LIST_LIMIT = 100              # finished jobs ListJobs shows when the request says no limit
HISTORY_SWEEP = 60.0          # seconds between sweeps of the expired history, at most
_ATTEMPT_STATES = {v: k.lower() for k, v in job_pb2.AttemptState.items()}


def task_json(action: model.LaunchAttempt) -> str:
    """LaunchAttempt.task_json (a TaskDescription, see minijet.taskdesc) from the core's
    launch action."""
    spec = action.task
    split = spec.get("split")
    producers = list(spec.get("producers") or {})
    return TaskDescription(
        action.job_id, action.task_id, action.attempt_id, spec["stage"], spec["index"],
        segments=list(Split.from_dict(split).segments) if split else [],
        # a consumer task reads the partition of its index from its producers
        partition=spec["index"] if producers else None,
        producer_stage=producers[0] if producers else None).to_json()


def _counters(items) -> list[job_pb2.Counter]:
    return [job_pb2.Counter(group=c["group"], name=c["name"], value=c["value"]) for c in items]


def status_proto(s: dict[str, Any]) -> job_pb2.JobStatus:
    """A job status view (the core's job_status shape) as the protocol's JobStatus."""
    return job_pb2.JobStatus(
        job_id=s["job_id"], name=s["name"], user=s["user"], state=s["state"],
        submit_time=s["submit_time"], start_time=s["start_time"], end_time=s["end_time"],
        run_time=s["run_time"], commit_time=s["commit_time"],
        stages=[job_pb2.StageInfo(**st) for st in s["stages"]],
        attempts=[job_pb2.AttemptInfo(**{**a, "counters": _counters(a["counters"])})
                  for a in s.get("attempts", [])],
        counters=_counters(s["counters"]), error=s["error"], traceback=s["traceback"],
        output_path=s["output_path"], unisolated_taskservers=s["unisolated_taskservers"])


class JobServer:
    def __init__(self, config: Config, dfs=None):
        self.config = config
        js = config["jobserver"]
        self.job_root = js["job_dir"]
        self.heartbeat_interval = config["taskserver"]["heartbeat_interval"]   # the shortest
        self.heartbeats_per_second = js["heartbeats_per_second"]
        self._wake_budget = pacing.WakeBudget(self.heartbeat_interval, self.heartbeats_per_second)
        self.secured = bool(config["security"]["auth_token"])   # jobs get DFS credentials
        self.store = JobStore(js["dir"])
        self.core = model.JobServerCore.from_config(config)
        if dfs is None:
            from minijet.dfs import DfsClient
            dfs = DfsClient(config, host=config.host)
        self.dfs = dfs
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)   # after every event: for WaitJob
        self._outputs = threading.Condition(self._lock)   # for consumers awaiting outputs
        self._waker = Waker(config)
        # long polls hold a server thread each: keep most threads for heartbeats
        self._long_polls = threading.BoundedSemaphore(
            max(1, config["rpc"]["server_threads"] // 4))
        self._output_polls = threading.BoundedSemaphore(
            max(1, config["rpc"]["server_threads"] // 4))
        self._started = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        self._seq = 0
        self._submitting: set[str] = set()       # RunJob in progress (reading the DFS)
        self._creating: set[str] = set()         # request ids of CreateJobs in progress
        self._restored = 0                       # jobs of earlier runs (from the store)
        self._live_taskservers: set[str] = set()          # for join / loss log lines
        self._finisher_queue: queue.Queue[model.JobFinished | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server = None
        self.port = 0
        self.metrics = JobServerMetrics(self)
        self.web = WebServer(config, "jobserver.http_address", JobServerPages(self).routes(),
                             self.metrics.registry)
        self._recover()

    # ---- life cycle ----

    def start(self) -> None:
        self.web.start()   # first: its address may be taken
        health = AioHealthService(lambda: True, self._stop)   # its jobs are recovered by now
        self._server = rpc.AioServer(
            self.config, self.config["jobserver"]["address"],
            [lambda s: job_pb2_grpc.add_JobServerServicer_to_server(JobServerService(self), s),
             health.add_to], open_methods=HEALTH_METHODS)
        self.port = self._server.port
        for target, name in ((self._tick_loop, "tick"), (self._finish_loop, "finisher"),
                             (self._history_loop, "history")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        log.info("jobserver serving on %s (port %d), store %s, %d jobs from earlier runs",
                 self.config["jobserver"]["address"], self.port, self.store.path,
                 self._restored)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._changed.notify_all()   # end the long polls
            self._outputs.notify_all()
        self._finisher_queue.put(None)
        self.web.stop()
        if self._server is not None:
            self._server.stop(grace=1)
        for t in self._threads:
            t.join(timeout=10)
        self.store.close()
        self._waker.close()
        self.dfs.close()
        log.info("jobserver stopped")

    def _recover(self) -> None:
        """Hand the jobs of earlier runs to the core: those still going resume, those whose
        output was being committed or removed have that done (again)."""
        now = time.time()
        for row in self.store.rows("jobs", "job_id LIKE ?", (f"job_{self._started}_%",)):
            self._seq = max(self._seq, int(row["job_id"].rsplit("_", 1)[1]))
        for row in self.store.restorable_jobs(now - self.core.retire_after,
                                              self.core.retained_jobs):
            of_job = ("job_id = ?", (row["job_id"],))
            event = model.JobRestored(row, self.store.rows("tasks", *of_job),
                                      self.store.rows("attempts", *of_job), now)
            with self._lock:
                for action in self._handle(event):
                    log.error("unexpected action from JobRestored: %s", action)
            self._restored += 1
        self.store.wait()

    # ---- the core, under the lock ----

    def _handle(self, event) -> list:
        """Apply one event (the lock held) and carry out what does not go into a reply."""
        outputs_changed = self.core.outputs_changed
        actions = self.core.handle(event)
        if any(map(model.changes_a_job, actions)):   # not every heartbeat: each wakes
            self._changed.notify_all()                 # every WaitJob long poll
            self._outputs.notify_all()                 # (a job ended: its consumers stop)
        elif self.core.outputs_changed != outputs_changed:
            self._outputs.notify_all()
        budget = self._wake_budget.allowed(self.core.live_taskservers(), time.monotonic())
        woken = self.core.to_wake(budget)
        self._wake_budget.spend(len(woken))
        self._waker.wake(woken)
        replies = []
        for action in actions:
            if isinstance(action, model.Persist):
                self.store.save(action.records)
                _log_attempt_ends(action)
            elif isinstance(action, model.JobFinished):
                log.info("job %s: %s%s (cause %s)", action.job_id, action.state,
                         f": {action.error}" if action.error else "", action.cause)
                self._finisher_queue.put(action)
            else:
                replies.append(action)
        return replies

    def _tick_loop(self) -> None:
        period = max(0.05, min(1.0, self.config["jobserver"]["taskserver_timeout"] / 5))
        while not self._stop.wait(period):
            with self._lock:
                retired = self.core.jobs_retired
                for action in self._handle(model.Tick(time.time())):
                    log.error("unexpected action from Tick: %s", action)
                if self.core.jobs_retired != retired:   # built frozen: see run_job
                    daemon.thaw_long_lived()
                if self._live_taskservers:
                    alive = {t["name"] for t in self.core.taskservers() if t["alive"]}
                    for name in sorted(self._live_taskservers - alive):
                        log.warning("taskserver %s lost: silent for more than %gs", name,
                                    self.config["jobserver"]["taskserver_timeout"])
                    self._live_taskservers &= alive

    def _history_loop(self) -> None:
        retention = self.config["jobserver"]["history_retention"]
        while not self._stop.wait(min(HISTORY_SWEEP, max(0.05, retention / 4))):
            try:
                self._expire_history(time.time() - retention)
            except Exception:   # the store or the DFS failed: the next sweep tries again
                log.exception("history sweep failed")

    def _expire_history(self, ended_before: float) -> None:
        def held(job_ids: list[str]) -> set[str]:
            with self._lock:
                return {j for j in job_ids if self.core.holds(j)}

        self.store.wait()   # no write of a job's rows is still queued when they go
        expired = history.expire(
            self.store, ended_before, held,
            lambda job_id: self._with_retries(job_id, "job dir", lambda: self.dfs.delete(
                self._job_dir(job_id), recursive=True)))
        if expired:
            with self._lock:
                for action in self._handle(model.HistoryExpired(expired, time.time())):
                    log.error("unexpected action from HistoryExpired: %s", action)
            log.info("history of %d jobs expired: rows, job dirs and logs deleted",
                     len(expired))

    # ---- job end: the output in the DFS ----

    def _finish_loop(self) -> None:
        while True:
            action = self._finisher_queue.get()
            if action is None:
                return
            if self.secured:
                # none of its attempts may run any more (see JobFinished); a restart before
                # the end of its output is recorded removes it again
                self._with_retries(action.job_id, "DFS credential",
                                   lambda: self.dfs.remove_job_credential(action.job_id))
            if action.output_paths:
                error = self._with_retries(action.job_id, "output",
                                           lambda: self._finish_output(action))
                event = model.OutputCommitFailed(action.job_id, error, time.time()) if error \
                    else model.OutputCommitted(action.job_id, time.time())
                with self._lock:
                    for unexpected in self._handle(event):
                        log.error("unexpected action from %s: %s", event, unexpected)
                log.info("job %s: output %s", action.job_id,
                         "committed" if action.state == model.SUCCEEDED and not error else
                         "removed" if not error else f"left as it is ({error})")
            self._with_retries(action.job_id, "job dir", lambda: self.dfs.delete(
                self._job_dir(action.job_id), recursive=True))

    def _with_retries(self, job_id: str, what: str, work) -> str:
        """Run DFS work, retrying while the DFS fails; the last error, or "" on success."""
        error = ""
        for attempt in range(FINISH_RETRIES):
            try:
                work()
                return ""
            except MinijetError as e:
                error = str(e)
                log.warning("job %s: cleaning up its %s failed (try %d): %s", job_id, what,
                            attempt + 1, e)
                if self._stop.wait(0.5 * 2 ** attempt):
                    break
        return error

    def _finish_output(self, action: model.JobFinished) -> None:
        for path in action.output_paths:
            if action.state == model.SUCCEEDED:
                jobdir.commit_output(self.dfs, path)
            else:
                jobdir.abort_output(self.dfs, path)

    def _job_dir(self, job_id: str) -> str:
        return posixpath.join(self.job_root, job_id)

    # ---- the service's work ----

    def create_job(self, name: str, user: str, request_id: str = "") -> tuple[str, str]:
        """A new job; or, for a request id seen before (the client sent its CreateJob
        again, having lost the reply), the job that request made."""
        with self._lock:
            self._changed.wait_for(lambda: not request_id or request_id not in self._creating)
            job_id = self.core.job_of_request(request_id)
            if job_id is None:
                self._seq += 1
                job_id = make_job_id(self._started, self._seq)
                if request_id:
                    self._creating.add(request_id)
                made = True
            else:
                made = False
        job_dir = self._job_dir(job_id)
        if made:
            try:
                self.dfs.mkdir(job_dir, parents=True)
                with self._lock:
                    self._handle(model.JobCreated(job_id, name, user, job_dir, time.time(),
                                                  request_id=request_id))
            finally:
                with self._lock:
                    self._creating.discard(request_id)
                    self._changed.notify_all()
        self.store.wait()   # a created job is durable before the client hears of it
        log.info("job %s: %s (%s, user %s), job dir %s", job_id,
                 "created" if made else "asked for again", name, user, job_dir)
        return job_id, job_dir

    def run_job(self, job_id: str) -> None:
        """Start a created job. Sent again for a job already started (the client lost the
        first reply), it replies as the first did: the job runs."""
        asked = time.time()
        with self._lock:
            self._changed.wait_for(lambda: job_id not in self._submitting)
            held = self.core.holds(job_id)
            if held:
                status = self.core.job_status(job_id, attempts=False)
                if status["state"] == model.CREATED:
                    self._submitting.add(job_id)
        if not held:   # retired: it ended
            status = self._retired_status(job_id, attempts=False)
        if status["state"] != model.CREATED:
            if not status["start_time"]:
                raise FailedPrecondition(f"job {job_id} ended before it ran "
                                         f"({status['state']}: {status['error']})")
            self.store.wait()
            return
        secret = secrets.token_hex(32)
        try:
            job_dir = self._job_dir(job_id)
            conf = jobfiles.read_job_conf(self.dfs, job_id, job_dir)
            for path in conf.output_paths():   # an earlier try's, cut short by a restart
                if jobdir.started_by(self.dfs, path, job_id):
                    jobdir.abort_output(self.dfs, path)
            jobfiles.check_paths(self.dfs, job_id, conf)
            with self._lock:
                slots = self.core.live_slots()
            with daemon.building_long_lived():   # its splits and tasks live as long as it
                splits = self._build_job(job_id, job_dir, conf, slots, secret, status["user"],
                                         asked)
        finally:
            with self._lock:
                self._submitting.discard(job_id)
                self._changed.notify_all()   # a RunJob sent again waits for this one
        self.store.wait()   # job acceptance is durable before RunJob replies
        log.info("job %s: running, %s", job_id, ", ".join(
            f"stage {s} {len(v)} splits" for s, v in splits.items()))

    def _build_job(self, job_id: str, job_dir: str, conf, slots: int, secret: str,
                   user: str, asked: float) -> dict:
        """The job's splits, computed, stored and handed to the core; its splits."""
        splits = input_splits(self.dfs, conf, self.config["dfs"]["block_size"], slots,
                              self.config["jobserver"]["min_split_size"])
        if self.secured:   # first: a failure here leaves no output directory behind
            jobcreds.register(self.dfs, job_id, secret, user, conf, job_dir,
                              self.config["jobserver"]["job_credential_lifetime"])
        for path in conf.output_paths():   # before any attempt can need it
            jobdir.start_output(self.dfs, path, job_id)
        event = model.JobSubmitted(job_id, conf, splits, time.time(), job_dir=job_dir,
                                   secret=secret, run_time=asked)
        try:
            # a big job is built and stored without the lock: heartbeats go on meanwhile
            event.prepared = self.core.prepare(event)
            self._store_in_batches(event.prepared.records)
            with self._lock:   # refused if an unfinished job writes one of its outputs
                self._handle(event)
        except MinijetError:   # the output paths did not exist: leave none behind
            for path in conf.output_paths():
                jobdir.abort_output(self.dfs, path)
            if self.secured:
                self.dfs.remove_job_credential(job_id)
            raise
        return splits

    def _store_in_batches(self, records: list) -> None:
        """Durable, a batch at a time: the writes of heartbeats queued meanwhile wait for
        one batch, not for all of them."""
        for start in range(0, len(records), STORE_BATCH):
            self.store.wait(self.store.save(records[start:start + STORE_BATCH]))

    def job_status(self, job_id: str, attempts: bool = True,
                   attempt_limit: int | None = None) -> dict[str, Any]:
        """The job's view; with `attempt_limit`, at most that many of its attempts (the
        web page's: see model.some_attempts)."""
        with self._lock:
            if self.core.holds(job_id):
                return self.core.job_status(job_id, attempts, attempt_limit)
        return self._retired_status(job_id, attempts, attempt_limit)

    def _retired_status(self, job_id: str, attempts: bool = True,
                        attempt_limit: int | None = None) -> dict[str, Any]:
        self.store.wait()   # the rows of a job retired a moment ago are written
        return history.status(self.store, job_id, attempts, attempt_limit)

    def wait_job(self, job_id: str, timeout: float,
                 progress_only: bool = False) -> dict[str, Any]:
        """The job's status once it is final, or after `timeout` seconds (at most
        MAX_WAIT) if sooner: a client sees the end of a job at once without polling. With
        `progress_only`, the status of a job not yet final leaves out its attempts: a
        client following a big job's progress every half second would otherwise have its
        every attempt built under the lock and sent each time."""
        with self._long_poll(self._long_polls, timeout) as deadline:
            with self._lock:
                while (self.core.holds(job_id) and self.core.job_state(job_id) not in FINAL
                       and not self._stop.is_set()
                       and (left := deadline - time.monotonic()) > 0):
                    self._changed.wait(left)
                if self.core.holds(job_id):
                    final = self.core.job_state(job_id) in FINAL
                    return self.core.job_status(job_id, attempts=final or not progress_only)
            return self._retired_status(job_id)

    @contextlib.contextmanager
    def _long_poll(self, polls: threading.BoundedSemaphore, wait: float) -> Iterator[float]:
        """The deadline of a long poll of `wait` seconds (at most MAX_WAIT); now when all of
        `polls` are taken (each holds a server thread): the asker then polls."""
        held = wait > 0 and polls.acquire(blocking=False)
        try:
            yield time.monotonic() + (min(wait, MAX_WAIT) if held else 0)
        finally:
            if held:
                polls.release()

    def list_jobs(self, all_jobs: bool, limit: int = 0) -> list[dict[str, Any]]:
        """Every unfinished job, and the `limit` (0: LIST_LIMIT) finished ones that ended
        last: only those of the last day unless `all_jobs`; oldest first."""
        limit = limit or LIST_LIMIT
        ended_after = 0.0 if all_jobs else time.time() - RECENT
        with self._lock:
            live = {s["job_id"]: s for s in self.core.list_jobs()}
        # the store holds a closed job in memory too, or not yet (its rows are being written)
        retired = [s for s in history.finished(self.store, ended_after, limit)
                   if s["job_id"] not in live]
        ended = sorted([s for s in live.values()
                        if s["state"] in FINAL and s["end_time"] > ended_after] + retired,
                       key=lambda s: -s["end_time"])[:limit]
        return sorted([s for s in live.values() if s["state"] not in FINAL] + ended,
                      key=lambda s: (s["submit_time"], s["job_id"]))

    def kill_job(self, job_id: str, user: str) -> None:
        """Kill a created or running job, if `user` may (its owner or an admin); a job that
        already ended is left as it is. A kill during RunJob wins: RunJob then finds the
        job killed."""
        with self._lock:
            owner = self.core.job_owner(job_id) if self.core.holds(job_id) else None
        if owner is None:   # retired: it ended
            owner = history.job_row(self.store, job_id)["user"]
        try:
            acl.check(user, acl.KILL, job_id, owner, self.config["security"]["admins"])
        except PermissionDenied as e:
            log.warning("job %s: kill refused: %s", job_id, e)
            raise
        with self._lock:
            if self.core.holds(job_id):   # (one retired meanwhile had ended)
                self._handle(model.KillJob(job_id, time.time()))
        log.info("job %s: kill requested by %s", job_id, user)

    def taskservers(self) -> list[dict[str, Any]]:
        with self._lock:
            return self.core.taskservers()

    def attempt_logs(self, job_id: str, attempt_id: str) -> tuple[dict[str, Any],
                                                                   tasklogs.AttemptLogs]:
        """The attempt's view and its logs, asked of the taskserver that ran it (NotFound:
        the job has no such attempt)."""
        with self._lock:   # one attempt's view: a big job's whole status would hold the lock
            held = self.core.holds(job_id)
            attempt = self.core.attempt_status(job_id, attempt_id) if held else None
        if not held:
            attempt = next((a for a in self._retired_status(job_id)["attempts"]
                            if a["attempt_id"] == attempt_id), None)
        if attempt is None:
            raise NotFound(f"job {job_id} has no attempt {attempt_id!r}")
        name = attempt["taskserver"]
        with self._lock:
            taskserver = self.core.taskserver(name)
        return attempt, tasklogs.fetch(self.config, name, taskserver, job_id, attempt_id)

    def tallies(self) -> dict[str, Any]:
        """The core's tallies and totals, for /metrics."""
        with self._lock:
            return {**self.core.tallies(), **self.core.totals()}

    def heartbeat(self, request: job_pb2.HeartbeatRequest
                  ) -> tuple[job_pb2.HeartbeatResponse, bool]:
        """The reply to a taskserver's heartbeat, and whether it launches attempts: then it
        must not be sent before the store has made them durable."""
        event = model.Heartbeat(
            request.name, request.host, request.rack, request.slots, request.free_slots,
            request.address,
            [model.AttemptStatus(a.attempt_id, _ATTEMPT_STATES[a.state], a.progress,
                                 [(c.group, c.name, c.value) for c in a.counters],
                                 a.error, a.traceback, a.failure, a.taskhost_start_time,
                                 a.input_end_time, a.done_time) for a in request.attempts],
            time.time(), jobs=list(request.jobs), isolated=request.isolated)
        with self._lock:
            if request.name not in self._live_taskservers:
                self._live_taskservers.add(request.name)
                log.info("taskserver %s joined (host %s, rack %s, %d slots, shuffle at %s)",
                         request.name, request.host, request.rack, request.slots,
                         request.address)
            actions = self._handle(event)
            interval = pacing.heartbeat_interval(self.core.live_taskservers(),
                                                 self.heartbeat_interval,
                                                 self.heartbeats_per_second)
        commands = []
        for action in actions:
            if isinstance(action, model.LaunchAttempt):
                log.debug("attempt %s: launch on %s", action.attempt_id, action.taskserver)
                if action.waited is not None:
                    self.metrics.task_assigned(action.waited)
                commands.append(job_pb2.TaskServerCommand(launch=job_pb2.LaunchAttempt(
                    job_id=action.job_id, task_id=action.task_id,
                    attempt_id=action.attempt_id, job_dir=action.job_dir,
                    task_json=task_json(action), user=action.user,
                    job_secret=action.secret, dfs_token=self._dfs_token(action))))
            elif isinstance(action, model.KillAttempt):
                log.info("attempt %s: kill on %s", action.attempt_id, action.taskserver)
                commands.append(job_pb2.TaskServerCommand(
                    kill=job_pb2.KillAttempt(attempt_id=action.attempt_id)))
            elif isinstance(action, model.CleanupJob):
                commands.append(job_pb2.TaskServerCommand(
                    cleanup=job_pb2.CleanupJob(job_id=action.job_id, logs=action.logs)))
            else:
                log.error("unexpected action from Heartbeat: %s", action)
        return (job_pb2.HeartbeatResponse(commands=commands, heartbeat_interval=interval),
                any(c.HasField("launch") for c in commands))

    def _dfs_token(self, action: model.LaunchAttempt) -> str:
        """The job's DFS credential for its attempts ("" in an open cluster, or for a job
        of an older store, which has no secret: its attempts use the cluster token)."""
        if not (self.secured and action.secret):
            return ""
        return jobcreds.dfs_token(action.job_id, action.secret)

    def commit(self, attempt_id: str) -> bool:
        with self._lock:
            actions = self._handle(model.CommitRequest(attempt_id, time.time()))
        for action in actions:
            if isinstance(action, model.CommitGranted):
                self.store.wait()   # stored before it is told: a restart honours it
                log.info("attempt %s: commit granted", attempt_id)
                return True
            if isinstance(action, model.CommitDenied):
                log.info("attempt %s: commit denied: %s", attempt_id, action.reason)
                return False
        raise AssertionError(f"no commit decision for {attempt_id}: {actions}")

    def map_outputs(self, job_id: str, stage_id: str, seen: int = 0,
                    wait: float = 0.0) -> dict[str, Any]:
        """Where the stage's outputs are (model.map_output_locations); with `wait`, once
        their version differs from `seen`, the job is no longer running, or `wait` seconds
        (at most MAX_WAIT) pass: a consumer started early fetches each output as soon as it
        is made."""
        with self._long_poll(self._output_polls, wait) as deadline, self._lock:
            while (self.core.job_state(job_id) == model.RUNNING
                   and self.core.output_version(job_id, stage_id) == seen
                   and not self._stop.is_set()
                   and (left := deadline - time.monotonic()) > 0):
                self._outputs.wait(left)
            return self.core.map_output_locations(job_id, stage_id, seen)

    def fetch_failed(self, request: job_pb2.FetchFailedRequest) -> None:
        log.warning("attempt %s could not fetch the output of %s: %s", request.attempt_id,
                    request.producer_attempt_id, request.error)
        with self._lock:
            for action in self._handle(model.FetchFailed(
                    request.attempt_id, request.producer_attempt_id, request.error,
                    time.time())):
                log.error("unexpected action from FetchFailed: %s", action)


def _log_attempt_ends(action: model.Persist) -> None:
    # A successful attempt is logged at DEBUG only: a big cluster ends a thousand a second
    # (at INFO that was ~5% of the jobserver's time, and gigabytes of log a day), and each
    # is in its job's status and history. Failures and losses are warnings.
    logged = (model.FAILED, model.LOST) + (
        (model.SUCCEEDED,) if log.isEnabledFor(logging.DEBUG) else ())
    for table, row in action.records:
        if table == "attempts" and row["state"] in logged:
            level = logging.DEBUG if row["state"] == model.SUCCEEDED else logging.WARNING
            log.log(level, "attempt %s: %s on %s%s (cause %s)", row["attempt_id"],
                    row["state"], row["taskserver"],
                    f": {row['error']}" if row["error"] else "", action.cause)


class JobServerService(job_pb2_grpc.JobServerServicer):
    def __init__(self, server: JobServer):
        self._js = server

    @rpc.translate_errors
    def CreateJob(self, request, context):
        # the owner is the caller; a client too old to name itself is taken at its word
        job_id, job_dir = self._js.create_job(request.name,
                                              rpc.caller(context) or request.user,
                                              request.request_id)
        return job_pb2.CreateJobResponse(job_id=job_id, job_dir=job_dir)

    @rpc.translate_errors
    def RunJob(self, request, context):
        self._js.run_job(request.job_id)
        return job_pb2.Empty()

    @rpc.translate_errors
    def GetJobStatus(self, request, context):
        return status_proto(self._js.job_status(request.job_id))

    @rpc.translate_errors
    def WaitJob(self, request, context):
        return status_proto(self._js.wait_job(request.job_id, request.timeout,
                                              request.progress_only))

    @rpc.translate_errors
    def ListJobs(self, request, context):
        return job_pb2.ListJobsResponse(
            jobs=[status_proto(s) for s in self._js.list_jobs(request.all, request.limit)])

    @rpc.translate_errors
    def KillJob(self, request, context):
        self._js.kill_job(request.job_id, rpc.caller(context))
        return job_pb2.Empty()

    @rpc.translate_errors
    def ListTaskServers(self, request, context):
        return job_pb2.ListTaskServersResponse(
            taskservers=[job_pb2.TaskServerStatus(**t) for t in self._js.taskservers()])

    async def Heartbeats(self, requests, context):
        # one taskserver's stream, on the aio server's loop: the jobserver's hot path
        async for request in requests:
            started = time.perf_counter()
            try:
                reply, launches = self._js.heartbeat(request)
                if launches:   # a restarted jobserver knows every attempt it launched
                    await self._js.store.durable()
            except MinijetError as e:
                await rpc.abort_async(context, e)
            self._js.metrics.heartbeat_handled(time.perf_counter() - started)
            yield reply

    @rpc.translate_errors
    def Commit(self, request, context):
        return job_pb2.CommitResponse(granted=self._js.commit(request.attempt_id))

    @rpc.translate_errors
    def GetMapOutputs(self, request, context):
        # (an older TaskHost sends no `seen`: 0, so it gets every output, as it expects)
        view = self._js.map_outputs(request.job_id, request.stage_id, request.seen,
                                    request.wait)
        return job_pb2.MapOutputsResponse(
            outputs=[job_pb2.MapOutputLocation(**o) for o in view["outputs"]],
            total=view["total"], version=view["version"], lost=view["lost"], full=view["full"])

    @rpc.translate_errors
    def ReportFetchFailure(self, request, context):
        self._js.fetch_failed(request)
        return job_pb2.Empty()


# The heartbeats' event loop shares the GIL with the threads running Python (RunJob building
# a big job, the store's writer), and waits up to the switch interval (5 ms by default)
# each time it wants it back. While a 100k-split job was accepted, 5 ms put heartbeat p50
# at 1.0-1.3 s against 0.2 s with 0.5 ms (bench/RESULTS.md, 2026-11-30).
SWITCH_INTERVAL = 0.0005


def _serve(config: Config) -> JobServer:
    sys.setswitchinterval(SWITCH_INTERVAL)
    daemon.for_a_big_heap()   # a 100k-task job is a million objects and more
    return JobServer(config)


main = daemon.main_of("jobserver", "Run the jobserver: accepts jobs, schedules their tasks on "
                                  "the taskservers, and keeps job state in a SQLite store.",
                      _serve)


if __name__ == "__main__":
    main()
