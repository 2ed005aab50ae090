"""The jobserver's decisions: jobs -> stages -> tasks -> attempts, as a pure state machine.

No I/O, no threads, no clock: `JobServerCore.handle(event)` applies one event and returns
the actions that follow from it, in the order they must be carried out. The daemon is a
thin shell around it:

    core = JobServerCore.from_config(config)
    with lock:                                    # one lock around the core
        actions = core.handle(Heartbeat(...))     # every RPC becomes one event
    for action in actions:
        Persist        -> store.save(action.records)  (table, row) upserts for JobStore;
                          always first, so state is written before anything leaves
        LaunchAttempt, KillAttempt, CleanupJob
                       -> commands in the reply to the Heartbeat they came from: the core
                          queues commands per taskserver and hands them out only from that
                          taskserver's own Heartbeat, so every such action in a Heartbeat's
                          result goes into that heartbeat's reply
        CommitGranted / CommitDenied -> the reply to the CommitRequest
        JobFinished    -> the job's output commit is granted (when it has output paths),
                          once none of its attempts can still write under it:
                          succeeded: remove <out>/_temporary, write <out>/_SUCCESS;
                          failed/killed: remove the output paths (they did not exist
                          before the job, so no partial part files remain);
                          then the shell reports OutputCommitted, or OutputCommitFailed
                          with the DFS's error
    a timer sends Tick(now) about once a second (taskserver timeouts); at start-up the
    shell sends a JobRestored with the stored rows of each job of the store.

Events: JobCreated, JobSubmitted (conf + splits per input stage), Heartbeat (with an
AttemptStatus per attempt held), TaskServerLost, CommitRequest, FetchFailed, KillJob, Tick,
OutputCommitted, OutputCommitFailed, JobRestored, HistoryExpired.
LaunchAttempt.task says what the TaskHost runs: {"stage", "index", and "split"
(Split.to_dict()) for an input stage, or "producers" ({stage id: task count}) for a
consumer, which reads partition `index` of every producer's output}.

Reads for RPCs go through views returning plain, JSON-serialisable dicts shaped like the
protocol's messages: job_status, list_jobs, taskservers, map_output_locations. A user
mistake (unknown job, bad conf) raises a MinijetError from handle() or a view before
anything changes.

Heartbeat protocol: a taskserver reports every attempt it holds until it has reported it
final (minijet.taskserver.attempts); an attempt launched by an earlier reply and missing
from a heartbeat never started there and is lost. A running attempt the core has already
ended (killed, lost) is told again to die. A heartbeat also names the jobs the taskserver
holds local files of: one that ended, or that this jobserver does not know (its cleanup
order was lost with a jobserver restart), is cleaned up. Attempts on a taskserver silent for
`taskserver_timeout` are lost; its finished file-channel outputs still needed by a
consumer stage are lost too and their tasks run again, as when a consumer reports a
FetchFailed.

Failures (minijet.failures): a user error (the job's code, a timeout, the memory limit)
uses up one of a task's `max_task_attempts` and retries at once, on another node where
possible; a system error (a daemon unreachable, safe mode; `node`: a full disk, a TaskHost
that could not start, a lost attempt) does not: the task backs off exponentially, with
jitter from the given `rand`, before it is placed again (elsewhere, for a node error);
past `system_retries` system errors the job fails saying it was not the job's fault.

Commit: a task's attempt may rename its output into place only with a grant; while the
holder lives, or once it succeeded, every other attempt is denied. A holder that ends
without success releases the grant (it may or may not have renamed): the next holder must
rename without overwriting, and if the part file is already there, keep it and succeed.
So at most one attempt's output ever lands.

Speculation (`speculative`, and the job's conf.speculative): every Tick finds the
stragglers of the running jobs' stages (minijet.jobserver.speculation: far slower than the
stage's finished tasks, once most are done); a heartbeat with slots left after the
scheduler's pick launches a backup attempt of one there, never on the taskserver running
the original nor where the task failed. A task has at most one backup. The first attempt
to succeed wins (for DFS output: the first granted the commit; the other asking is denied
and killed) and the other is killed: a killed attempt is no failure of the task.

Bad nodes (minijet.jobserver.badnodes): each user error counts against its job on its
taskserver; a taskserver a job has failed on 3 times gets no more of that job's tasks, and
one that 3 jobs did that to is greylisted (no new tasks) until `greylist_forgive` later,
on a Tick. A resumed job counts its stored failed attempts again; greylists do not survive
a restart.

Isolation: a heartbeat says whether its taskserver runs each task as its job's user (it
runs as root: minijet.taskserver.taskuser); each attempt keeps what its taskserver said at
its launch, and a job's status names the taskservers that ran some of its attempts without
that isolation (stored with the attempt; attempts of older versions count as not isolated:
no taskserver isolated them).

Slow start: a consumer stage's tasks may start before all of its producers are done, once
`slow_start` (a fraction) of the producer tasks have succeeded and none is still waiting for a
slot; they fetch the outputs as they appear. So that early consumers never hold the slots a
producer needs (a retry, a lost output made again), at most half of the live slots go to
tasks started early; the other consumer tasks start when their inputs are complete.

Output commit: a job's output paths belong to it from JobSubmitted until its output is
committed or removed; another job naming one of them is refused. When the job ends, its
output first drains: every attempt told to die must be shown gone by its taskserver
(reported final, or missing from a later heartbeat) or its taskserver declared lost; only
then is JobFinished sent, so no attempt of a failed job recreates `<out>/_temporary/...`
after the removal. While the output drains and is committed or removed (no
OutputCommitted / OutputCommitFailed yet) the job is shown as running, so a client that
sees it succeeded can read the output at once. A failed commit fails a succeeded job
(SUCCEEDED -> FAILED); a failed removal leaves the job as it is. The output phase is not
stored: a job of an earlier run is shown as stored.

Restore: JobRestored rebuilds a job of an earlier run from its stored rows (the inverse of
Persist's records: with each task's split and commit grant, and the output's state), so its
status has the shape of a live job's. A finished job is listed as it was; one whose output
was draining, committed or removed has that done again (JobFinished: both are idempotent). A
created job stays created (its client may still run it). A running job resumes: its pending
tasks are placed again; its running attempts and the map outputs of its succeeded tasks are
taken back when their taskserver heartbeats (it kept running them: an attempt it does not
report is lost, as always), and lost, their tasks run again, if it has not within
taskserver_timeout of the restart. A commit granted before the restart stays granted to its
attempt. The shell stores a grant, and the attempts a heartbeat reply launches, before it
answers, so a restarted core never reuses an attempt id or grants a commit twice.

Retirement: a job whose output is closed leaves the core on the first Tick after it ended
`retire_after` ago, or once `retained_jobs` closed jobs ended after it: every reference to
it, its tasks and attempts goes (a zombie attempt of it is then killed as unknown, its local
files cleaned up as an unknown job's). Its rows, with its list view stored at its close
(jobs.summary_json) and each attempt's last progress, answer for it from then on
(stored_status, stored_summary: minijet.jobserver.history); JobRestored of a closed job
that ended `retire_after` ago is ignored. HistoryExpired (the shell deleted the rows of
old retired jobs) orders the taskservers that ran them to drop their logs.

Timestamps (the events' `now`, or the taskserver's clock where said; 0: not yet), so a
job's time can be accounted for (bench/latency.py). A job: submit_time (JobCreated), run_time
(RunJob arrived: JobSubmitted.run_time), start_time (its splits computed: JobSubmitted),
end_time (its tasks ended, or it failed), commit_time (its output committed or removed:
OutputCommitted, or its end when it has no output: its client sees it end from then). An
attempt: start_time (assigned: the heartbeat whose reply launches it), from its taskserver's
reports taskhost_start_time (its TaskHost runs it), input_end_time (its input read: a map's
splits, a reduce's fetched map outputs) and done_time (the TaskHost reported its result),
commit_time (its commit granted), end_time (a heartbeat reported it ended). All are stored.

Metrics (minijet.web.metrics): tallies() is what is current (unfinished jobs and tasks,
finished jobs held); totals() counts what happened since the core started (jobs finished,
attempts ended and failed, assignments by locality), so a job's retirement takes nothing
from them and a restored job's past is not counted again. A LaunchAttempt of a task the
scheduler placed carries how long the task was runnable before (`waited`: since its job
started, its inputs became ready, or its retry's back-off ended).

Every event carries an id (given, or "e<seq>"); every action names it as `cause`.
"""
from __future__ import annotations

import collections
import heapq
import json
import random
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Callable, Iterable

from minijet.errors import (AlreadyExists, ConfigError, FailedPrecondition, InvalidArgument,
                            MinijetError, NotFound)
from minijet.failures import NODE, SYSTEM, USER, is_system
from minijet.ids import make_attempt_id, make_task_id
from minijet.jobconf import FILE, JobConf
from minijet.jobserver import speculation
from minijet.jobserver.badnodes import BadNodes
from minijet.jobserver.scheduler import NODE_LOCAL, OFF_RACK, RACK_LOCAL, Scheduler, locality_of
from minijet.splits import Split
from minijet.states import (ASSIGNED, CREATED, FAILED, FINAL_STATES, KILLED, LOST, PENDING,
                            RUNNING, SUCCEEDED, WAITING)

# ---- state transitions (anything not listed is a bug, and raises) ----

JOB_TRANSITIONS = {
    CREATED: {RUNNING, KILLED, FAILED},   # failed: by a jobserver restart
    RUNNING: {SUCCEEDED, FAILED, KILLED},
    SUCCEEDED: {FAILED},                  # its output could not be committed
}
# A job's output paths once the job has ended: the shell commits them (succeeded) or
# removes them (failed, killed), then reports; draining: some of its attempts were told to
# die and may still write under the output; closed: nothing (more) to do
OPEN, DRAINING, COMMITTING, REMOVING, CLOSED = \
    "open", "draining", "committing", "removing", "closed"
OUTPUT_TRANSITIONS = {
    OPEN: {DRAINING, CLOSED},   # closed: the job ended without output paths
    DRAINING: {COMMITTING, REMOVING},
    COMMITTING: {CLOSED},
    REMOVING: {CLOSED},
}
FINISHING = (DRAINING, COMMITTING, REMOVING)   # the job is shown as running meanwhile
TASK_TRANSITIONS = {
    WAITING: {PENDING, KILLED},
    PENDING: {RUNNING, WAITING, KILLED},
    RUNNING: {RUNNING, SUCCEEDED, PENDING, WAITING, FAILED, KILLED},   # running: a backup
    SUCCEEDED: {PENDING, WAITING},   # its shuffle output was lost: run again
}
ATTEMPT_TRANSITIONS = {
    ASSIGNED: {RUNNING, SUCCEEDED, FAILED, KILLED, LOST},
    RUNNING: {SUCCEEDED, FAILED, KILLED, LOST},
    SUCCEEDED: {LOST},               # its shuffle output was lost
}
ACTIVE = (ASSIGNED, RUNNING)
# an attempt's times beside start_time and end_time (see Timestamps); those its taskserver
# reports, and those the core stamps itself
REPORTED_TIMES = ("taskhost_start_time", "input_end_time", "done_time")
ATTEMPT_TIMES = REPORTED_TIMES + ("commit_time",)
TOTALS = ("jobs_finished", "attempts_ended", "attempts_failed", "assignments")
NO_LOCALITY = "none"   # assignments of tasks without an input location (see scheduler)
FETCH_FAILURE_REPORTS = 3   # consumers unable to fetch a map output before it is made again

# What a taskserver's report of an attempt does, by (state here, state reported). A pair
# not listed: the attempt already ended here; if it still runs there it is told to die.
ON_REPORT = {
    (ASSIGNED, ASSIGNED): "_progressed",
    (ASSIGNED, RUNNING): "_started",
    (RUNNING, RUNNING): "_progressed",
    (ASSIGNED, SUCCEEDED): "_succeeded",
    (RUNNING, SUCCEEDED): "_succeeded",
    (ASSIGNED, FAILED): "_failed",
    (RUNNING, FAILED): "_failed",
    (ASSIGNED, KILLED): "_failed",     # killed, but not on our order
    (RUNNING, KILLED): "_failed",
}

Counters = list[tuple[str, str, int]]   # (group, name, value)


def _move(obj: Any, table: dict[str, set[str]], new: str, attr: str = "state") -> None:
    old = getattr(obj, attr)
    if new not in table.get(old, ()):
        raise AssertionError(f"{obj.id}: illegal {attr} transition {old} -> {new}")
    setattr(obj, attr, new)


# ---- events ----


@dataclass
class JobCreated:
    job_id: str
    name: str
    user: str
    job_dir: str
    now: float
    id: str = ""
    request_id: str = ""   # the client's, to answer a CreateJob sent again with the same job


@dataclass
class JobSubmitted:
    job_id: str
    conf: JobConf
    splits: dict[str, list[Split]]   # input stage id -> its splits
    now: float
    job_dir: str = ""                # when there was no JobCreated
    id: str = ""
    secret: str = ""                 # the job's secret (made by the shell: the core is pure)
    run_time: float = 0.0            # when RunJob arrived, before the splits (`now`)
    prepared: PreparedJob | None = None   # from JobServerCore.prepare, its records stored


@dataclass
class PreparedJob:
    """A submitted job's stages and tasks, built by JobServerCore.prepare without the core's
    lock (a job of 100k tasks takes a second to build): the event then only swaps it in.
    `records` are its tasks' rows, which the shell stores before it sends the event, in as
    many transactions as it likes (a restart before the event finds a created job, whose
    client sends RunJob again)."""
    job: Job
    records: list[tuple[str, dict[str, Any]]]
    queue: Any   # its pending tasks, from Scheduler.queue_of


@dataclass
class AttemptStatus:
    attempt_id: str
    state: str            # assigned | running | succeeded | failed | killed
    progress: float = 0.0
    counters: Counters = field(default_factory=list)
    error: str = ""
    traceback: str = ""
    failure: str = ""     # a failed attempt's class: minijet.failures (user when not given)
    # the taskserver's clock (0: not yet): see Timestamps
    taskhost_start_time: float = 0.0
    input_end_time: float = 0.0
    done_time: float = 0.0


@dataclass
class Heartbeat:
    taskserver: str       # unique name
    host: str
    rack: str
    slots: int
    free_slots: int
    address: str          # its TaskServer service (shuffle)
    attempts: list[AttemptStatus]
    now: float
    id: str = ""
    jobs: list[str] = field(default_factory=list)   # jobs it holds local files of
    isolated: bool = False   # it runs each task as its job's user (see Isolation)


@dataclass
class TaskServerLost:
    taskserver: str
    now: float
    reason: str = "declared lost"
    id: str = ""


@dataclass
class CommitRequest:
    attempt_id: str
    now: float
    id: str = ""


@dataclass
class FetchFailed:
    attempt_id: str            # the consumer
    producer_attempt_id: str   # whose output could not be fetched
    error: str
    now: float
    id: str = ""


@dataclass
class KillJob:
    job_id: str
    now: float
    id: str = ""


@dataclass
class Tick:
    now: float
    id: str = ""


@dataclass
class OutputCommitted:
    """The shell carried out a JobFinished: the output is committed (or removed)."""
    job_id: str
    now: float
    id: str = ""


@dataclass
class OutputCommitFailed:
    """The shell could not commit (or remove) the output of a JobFinished."""
    job_id: str
    error: str
    now: float
    id: str = ""


@dataclass
class HistoryExpired:
    """The shell deleted these retired jobs' rows: their taskservers (those the attempts
    rows name) are to drop the jobs' attempt logs too."""
    jobs: dict[str, list[str]]   # job id -> taskservers that ran its attempts
    now: float
    id: str = ""


@dataclass
class JobRestored:
    """A job of an earlier run, as its rows in minijet.jobserver.store hold it."""
    job: dict[str, Any]
    tasks: list[dict[str, Any]]
    attempts: list[dict[str, Any]]
    now: float
    id: str = ""


# ---- actions ----


@dataclass
class Persist:
    records: list[tuple[str, dict[str, Any]]]   # (table, row) for minijet.jobserver.store
    cause: str = ""


@dataclass
class LaunchAttempt:
    taskserver: str
    job_id: str
    task_id: str
    attempt_id: str
    job_dir: str
    task: dict[str, Any]   # stage, index, split | producers: what the TaskHost runs
    cause: str = ""
    user: str = ""
    secret: str = ""       # the job's
    waited: float | None = None   # seconds its task was runnable before this launch (None:
    #                               a backup of a straggler: no task became runnable)


@dataclass
class KillAttempt:
    taskserver: str
    attempt_id: str
    cause: str = ""


@dataclass
class CleanupJob:
    taskserver: str
    job_id: str
    cause: str = ""
    logs: bool = False   # its attempt logs too (its history expired: see Retirement)


@dataclass
class CommitGranted:
    attempt_id: str
    cause: str = ""


@dataclass
class CommitDenied:
    attempt_id: str
    reason: str
    cause: str = ""


@dataclass
class JobFinished:
    job_id: str
    state: str               # succeeded | failed | killed
    output_paths: list[str]
    error: str = ""
    cause: str = ""


def changes_a_job(action: Any) -> bool:
    """Whether `action` says a job changed (what a client waiting on a job wakes for): it
    ended, or a row of the jobs table is written."""
    return isinstance(action, JobFinished) or (
        isinstance(action, Persist) and any(table == "jobs" for table, _ in action.records))


# ---- the model ----


class Job:
    def __init__(self, job_id: str, name: str, user: str, job_dir: str, now: float):
        self.id, self.name, self.user, self.job_dir = job_id, name, user, job_dir
        self.request_id = ""   # of the CreateJob that made it
        self.secret = ""       # given to its attempts: signs its shuffle (see JobSubmitted)
        self.state = CREATED
        self.output = OPEN
        self.conf: JobConf | None = None
        self.output_paths: list[str] = []
        self.stages: dict[str, Stage] = {}   # parents before children
        self.submit_time, self.start_time, self.end_time = now, 0.0, 0.0
        self.run_time = self.commit_time = 0.0   # see Timestamps
        self.error = self.traceback = ""
        self.taskservers: set[str] = set()   # ran its attempts: they get the cleanup
        self.dying: set[str] = set()         # attempts told to die, not yet seen gone

    def tasks(self) -> Iterable[Task]:
        for s in self.stages.values():
            yield from s.tasks


class Stage:
    def __init__(self, job: Job, stage_id: str, file_output: bool):
        self.job, self.id, self.file_output = job, stage_id, file_output
        self.tasks: list[Task] = []
        self.parents: list[Stage] = []
        self.children: list[Stage] = []
        self.succeeded = 0
        # the task of each output made or lost, in order (Hadoop's map completion events):
        # a consumer asks for the changes since the length it saw
        self.output_log: list[Task] = []

    @property
    def complete(self) -> bool:
        return self.succeeded == len(self.tasks)

    def inputs_ready(self) -> bool:
        return all(p.complete for p in self.parents)

    def may_start_early(self, slow_start: float) -> bool:
        """Enough producer tasks are done for slow start (and the producers' own inputs are
        complete: none of them waits for another stage)."""
        if not self.parents or not all(p.inputs_ready() for p in self.parents):
            return False
        total = sum(len(p.tasks) for p in self.parents)
        return sum(p.succeeded for p in self.parents) >= slow_start * total

    def output_needed(self) -> bool:
        return self.job.state == RUNNING and not all(c.complete for c in self.children)


class Task:
    __slots__ = ("stage", "index", "split", "job", "id", "state", "attempts", "failures",
                 "system_failures", "avoid", "committer", "output")

    def __init__(self, stage: Stage, index: int, split: Split | None):
        self.stage, self.index, self.split = stage, index, split
        self.job = stage.job
        self.id = make_task_id(self.job.id, stage.id, index)
        self.state = WAITING
        self.attempts: list[Attempt] = []
        self.failures = 0                     # user errors: up to max_task_attempts
        self.system_failures = 0              # system errors: up to system_retries
        self.avoid: set[str] = set()          # taskservers where it failed
        self.committer: str | None = None     # the attempt holding the commit grant
        self.output: Attempt | None = None    # the succeeded attempt whose output counts

    def active(self) -> list[Attempt]:
        return [a for a in self.attempts if a.state in ACTIVE]


class Attempt:
    __slots__ = ("task", "id", "taskserver", "host", "locality", "state", "start_time",
                 "end_time", "launched_in", "progress", "counters", "error", "traceback",
                 "failure", "speculative", "fetch_failures", "isolated",
                 "taskhost_start_time", "input_end_time", "commit_time", "done_time")

    def __init__(self, task: Task, attempt_id: str, taskserver: str, host: str, locality: str,
                 now: float, launched_in: int = 0, speculative: bool = False):
        self.task = task
        self.id = attempt_id
        self.taskserver, self.host = taskserver, host
        self.locality = locality
        self.state = ASSIGNED
        self.start_time, self.end_time = now, 0.0
        self.launched_in = launched_in        # the heartbeat whose reply launches it
        self.progress = 0.0
        self.counters: Counters = []
        self.error = self.traceback = ""
        self.failure = ""                     # failed or lost: minijet.failures
        self.speculative = speculative        # a backup of a straggler (speculation.py)
        self.fetch_failures: set[str] = set()  # consumer attempts that could not fetch its output
        self.isolated = False                 # its taskserver ran it as the job's user
        self.taskhost_start_time = self.input_end_time = 0.0   # see Timestamps
        self.commit_time = self.done_time = 0.0


class TaskServer:
    def __init__(self, name: str):
        self.name = name
        self.host = self.rack = self.address = ""
        self.slots = 0
        self.last_heartbeat = 0.0
        self.alive = True
        self.heartbeats = 0
        self.failures = 0                          # attempts that failed here
        self.active: dict[str, Attempt] = {}       # assigned or running here
        self.outputs: dict[str, Attempt] = {}      # succeeded here, shuffle output held here
        self.outbox: list[Any] = []                # commands for its next heartbeat reply
        self.dying: dict[str, int] = {}            # attempt told to die -> heartbeats then
        self.isolated = False                      # runs tasks as their jobs' users


class JobServerCore:
    def __init__(self, max_task_attempts: int = 4, taskserver_timeout: float = 30.0,
                 locality_delay: float = 3.0,
                 rack_of: Callable[[str], str] = lambda host: "/default-rack",
                 slow_start: float = 1.0, system_retries: int = 10,
                 retry_backoff: float = 1.0, rand: Callable[[], float] = random.random,
                 speculative: bool = True, greylist_forgive: float = 3600.0,
                 retire_after: float = 600.0, retained_jobs: int = 100):
        self.max_task_attempts = max_task_attempts
        self.system_retries = system_retries
        self.retry_backoff = retry_backoff
        self._rand = rand   # jitter of the back-off, in [0, 1): given, so tests repeat
        self.taskserver_timeout = taskserver_timeout
        self.scheduler = Scheduler(locality_delay, rack_of)
        self.slow_start = slow_start
        self.speculative = speculative
        self.bad_nodes = BadNodes(greylist_forgive)
        self.retire_after, self.retained_jobs = retire_after, retained_jobs
        self.jobs_retired = 0   # since start: the shell frees what they held (see _forget)
        self.outputs_changed = 0   # since start: the shell wakes consumers waiting for outputs
        self._stragglers: list[Task] = []   # to back up, slowest first (found by Tick)
        self._jobs: dict[str, Job] = {}
        self._closed: dict[str, float] = {}   # job whose output is closed -> its end_time
        self._tasks: dict[str, Task] = {}
        self._attempts: dict[str, Attempt] = {}
        self._taskservers: dict[str, TaskServer] = {}
        self._alive: set[str] = set()   # names of live taskservers
        self._idle: dict[str, None] = {}  # live, a slot free after their last heartbeat
        self._woken: set[str] = set()     # asked to heartbeat now, and not yet heartbeated
        self._writers: dict[str, str] = {}   # output path -> the job it belongs to
        self._requests: dict[str, str] = {}  # CreateJob request id -> the job it made
        self._backoff: dict[str, float] = {}  # pending task -> when it may be scheduled
        # after a restart: attempts (running, or holding a map output) of resumed jobs, by
        # taskserver, until it heartbeats again or the deadline passes
        self._awaited: dict[str, dict[str, Attempt]] = {}
        self._awaited_until = 0.0
        self._seq = 0
        # counts since this core started, for /metrics' counters (see totals)
        self._totals: dict[str, collections.Counter[str]] = {
            name: collections.Counter() for name in TOTALS}
        # per handle() call
        self._cause = ""
        self._actions: list[Any] = []
        self._dirty: dict[str, Any] = {}
        self._records: list[tuple[str, dict[str, Any]]] = []   # built before, to persist

    @classmethod
    def from_config(cls, config) -> "JobServerCore":
        js = config["jobserver"]
        if not 0.0 <= js["slow_start"] <= 1.0:
            raise ConfigError(f"config key jobserver.slow_start: expected a fraction from 0 "
                              f"to 1, got {js['slow_start']}")
        return cls(js["max_task_attempts"], js["taskserver_timeout"], js["locality_delay"],
                   config.rack_of, js["slow_start"], js["system_retries"], js["retry_backoff"],
                   speculative=js["speculative"], greylist_forgive=js["greylist_forgive"],
                   retire_after=js["retire_after"], retained_jobs=js["retained_jobs"])

    # ---- the one entry point ----

    def handle(self, event: Any) -> list[Any]:
        self._seq += 1
        self._cause = event.id or f"e{self._seq}"
        self._actions, self._dirty, self._records = [], {}, []
        getattr(self, _HANDLERS[type(event)])(event)
        actions = self._actions
        if self._dirty or self._records:
            actions.insert(0, Persist(self._records + [_record(o) for o in self._dirty.values()],
                                      self._cause))
        self._actions, self._dirty, self._records = [], {}, []
        return actions

    # ---- events ----

    def _on_job_created(self, ev: JobCreated) -> None:
        if ev.job_id in self._jobs:
            raise AlreadyExists(f"job {ev.job_id} already exists")
        job = self._jobs[ev.job_id] = Job(ev.job_id, ev.name, ev.user, ev.job_dir, ev.now)
        if ev.request_id:
            job.request_id = ev.request_id
            self._requests[ev.request_id] = job.id
        self._touch(job)

    def prepare(self, ev: JobSubmitted) -> PreparedJob:
        """The job of a JobSubmitted, built apart from the core's state (it reads only its
        settings, so the shell calls it without the lock); a bad conf raises here."""
        conf = ev.conf.validate()
        order = conf.topological_order()
        for s in order:
            if s.input and s.id not in ev.splits:
                raise InvalidArgument(f"job {ev.job_id}: no splits for input stage {s.id!r}")
        job = Job(ev.job_id, conf.name, conf.user, ev.job_dir, ev.now)
        job.conf, job.start_time, job.secret = conf, ev.now, ev.secret
        job.run_time = ev.run_time or ev.now
        pending = []
        for s in order:
            stage = job.stages[s.id] = Stage(job, s.id, s.output.channel == FILE)
            stage.parents = [job.stages[p] for p in s.inputs]
            for p in stage.parents:
                p.children.append(stage)
            splits = ev.splits.get(s.id, [])
            count = conf.task_count(s.id, len(splits))
            stage.tasks = [Task(stage, i, splits[i] if s.input else None)
                           for i in range(count)]
            if stage.inputs_ready():
                for task in stage.tasks:
                    _move(task, TASK_TRANSITIONS, PENDING)
                    pending.append((task.id, task.split.hosts if task.split else ()))
        return PreparedJob(job, [_task_row(t) for t in job.tasks()],
                           self.scheduler.queue_of(job.id, pending, ev.now))

    def _on_job_submitted(self, ev: JobSubmitted) -> None:
        prepared = ev.prepared or self.prepare(ev)
        job, conf = prepared.job, prepared.job.conf
        created = self._jobs.get(ev.job_id)
        if created is not None and created.state != CREATED:
            raise FailedPrecondition(f"job {ev.job_id} was already submitted ({created.state})")
        for path in conf.output_paths():
            if path in self._writers:
                raise FailedPrecondition(f"job {ev.job_id}: output path {path} is the "
                                         f"output of job {self._writers[path]}")
        if created is not None:   # its owner stays who created it (minijet.acl), not job.json's
            job.user, job.job_dir, job.submit_time = created.user, created.job_dir, \
                created.submit_time
            job.request_id = created.request_id
        self._jobs[job.id] = job
        self._own_outputs(job, conf.output_paths())
        _move(job, JOB_TRANSITIONS, RUNNING)
        self._touch(job)
        if ev.prepared is None:   # else the shell stored them
            self._records += prepared.records
        self.scheduler.add_job(job.id, prepared.queue)
        self._tasks.update((t.id, t) for t in job.tasks())
        self._check_done(job, ev.now)

    def _on_heartbeat(self, ev: Heartbeat) -> None:
        ts = self._taskservers.get(ev.taskserver)
        if ts is None or not ts.alive:   # new, or back after being declared lost
            ts = self._taskservers[ev.taskserver] = TaskServer(ev.taskserver)
            self._alive.add(ts.name)
        ts.host, ts.rack, ts.address = ev.host, ev.rack, ev.address
        ts.slots, ts.last_heartbeat, ts.isolated = ev.slots, ev.now, ev.isolated
        ts.heartbeats += 1
        self._adopt(ts)
        kills: dict[str, None] = {}
        reported = {st.attempt_id: st.state for st in ev.attempts}
        for st in ev.attempts:
            a = self._attempts.get(st.attempt_id)
            handler = ON_REPORT.get((a.state, st.state)) if a is not None and \
                a.taskserver == ts.name else None
            if handler:
                getattr(self, handler)(a, st, ev.now)
            elif st.state not in FINAL_STATES:
                kills[st.attempt_id] = None   # ended here (or unknown): a zombie
                if a is not None and a.taskserver == ts.name:
                    self._dying(a, ts)
        for a in list(ts.active.values()):   # (a job failed by a loss kills the others)
            if a.state in ACTIVE and a.id not in reported and a.launched_in < ts.heartbeats:
                self._lose(a, f"taskserver {ts.name} no longer has it", ev.now)
        # an attempt told to die is gone once reported final, or once missing from a
        # heartbeat sent after the one whose reply carried the order
        for aid, beat in list(ts.dying.items()):
            if reported[aid] in FINAL_STATES if aid in reported else ts.heartbeats > beat + 1:
                self._dead(ts, aid)
        self._cleanup_stale(ts, ev.jobs)
        self._release_backoffs(ev.now)
        free = min(ev.free_slots, ev.slots - len(ts.active))
        if self.bad_nodes.greylisted(ts.name, self._alive):
            free = 0
        if free > 0:
            skip = self.bad_nodes.excluded_jobs(ts.name, self._alive)
            assigned = self.scheduler.assign(ts.name, ts.host, ts.rack, free, ev.now, skip)
            for asg in assigned:
                self._launch(self._tasks[asg.task_id], asg.locality, ts,
                             pending_since=asg.pending_since)
            free -= len(assigned)
            # the last producer placed: consumers may start (slow start), to be woken for
            for job in {self._tasks[asg.task_id].job for asg in assigned}:
                if not self.scheduler.pending(job.id):
                    for stage in job.stages.values():
                        self._start_early(stage, ev.now)
            if free > 0 and self._stragglers:
                free -= self._back_up(ts, free, skip)
        self._woken.discard(ts.name)
        if free > 0:
            self._idle[ts.name] = None
        else:
            self._idle.pop(ts.name, None)
        commands, ts.outbox = ts.outbox, []
        for c in commands:
            if isinstance(c, KillAttempt):
                kills.pop(c.attempt_id, None)
        self._actions += commands
        self._actions += [KillAttempt(ts.name, aid, self._cause) for aid in kills]

    def _on_taskserver_lost(self, ev: TaskServerLost) -> None:
        ts = self._taskservers.get(ev.taskserver)
        if ts is None or not ts.alive:
            return
        ts.alive, ts.outbox = False, []
        self._alive.discard(ts.name)
        self._idle.pop(ts.name, None)
        self._woken.discard(ts.name)
        for aid in list(ts.dying):   # as dead as we will ever know
            self._dead(ts, aid)
        for a in list(ts.active.values()):
            if a.state in ACTIVE:   # (a job failed by a loss kills the others)
                self._lose(a, f"taskserver {ts.name} lost: {ev.reason}", ev.now)
        for a in list(ts.outputs.values()):
            if a.task.stage.output_needed():
                self._lose(a, f"output lost with taskserver {ts.name}: {ev.reason}", ev.now)
        ts.outputs.clear()

    def _on_commit_request(self, ev: CommitRequest) -> None:
        a = self._attempts.get(ev.attempt_id)
        reason = ""
        if a is None:
            reason = "unknown attempt"
        elif a.state not in ACTIVE:
            reason = f"attempt is {a.state}"
        elif a.task.job.state != RUNNING:
            reason = f"job is {a.task.job.state}"
        elif a.task.state == SUCCEEDED:
            reason = "task already succeeded"
        elif a.task.committer not in (None, a.id):
            reason = f"attempt {a.task.committer} holds the commit"
            self._kill(a, ev.now)   # it lost the race (a backup's, or the original's)
        if reason:
            self._actions.append(CommitDenied(ev.attempt_id, reason, self._cause))
        else:
            a.task.committer = a.id
            a.commit_time = a.commit_time or ev.now   # (a grant asked for again: the first)
            self._touch(a.task)   # a grant is stored before it is answered
            self._touch(a)
            self._actions.append(CommitGranted(ev.attempt_id, self._cause))

    def _on_fetch_failed(self, ev: FetchFailed) -> None:
        """A consumer could not fetch a map output (after its own tries): the output is
        taken for lost, and its task run again, once enough consumers say so (Hadoop's
        rule: FETCH_FAILURE_REPORTS of them, or half of those running), so that one
        consumer's own network trouble does not re-run maps."""
        p = self._attempts.get(ev.producer_attempt_id)
        if p is None or p.state != SUCCEEDED or p.task.output is not p \
                or not p.task.stage.output_needed():
            return
        p.fetch_failures.add(ev.attempt_id)
        running = sum(1 for child in p.task.stage.children for t in child.tasks if t.active())
        if len(p.fetch_failures) >= min(FETCH_FAILURE_REPORTS, max(1, (running + 1) // 2)):
            self._lose(p, f"output lost: {ev.attempt_id} could not fetch it: {ev.error}",
                       ev.now)

    def _on_kill_job(self, ev: KillJob) -> None:
        job = self._job(ev.job_id)
        if job.state in (CREATED, RUNNING):
            self._finish(job, KILLED, "killed by request", "", ev.now)

    def _on_tick(self, ev: Tick) -> None:
        self._retire(ev.now)
        self._release_backoffs(ev.now)
        self.bad_nodes.forgive_until(ev.now)
        if self.speculative:
            self._stragglers = speculation.slowest_first(
                (s for j in self._jobs.values() if j.state == RUNNING and j.conf is not None
                 and j.conf.speculative for s in j.stages.values()), ev.now)
        if self._awaited and ev.now > self._awaited_until:
            self._give_up_awaited(ev.now)
        for ts in list(self._taskservers.values()):
            if ts.alive and ev.now - ts.last_heartbeat > self.taskserver_timeout:
                self._on_taskserver_lost(TaskServerLost(
                    ts.name, ev.now, f"no heartbeat for {ev.now - ts.last_heartbeat:.0f}s"))

    def _on_output_committed(self, ev: OutputCommitted | OutputCommitFailed) -> None:
        job = self._job(ev.job_id)
        if isinstance(ev, OutputCommitFailed) and job.output == COMMITTING:
            _move(job, JOB_TRANSITIONS, FAILED)
            job.error = f"the job's output could not be committed: {ev.error}"
        # a removal that failed leaves the output as it is, and the job as it ended
        self._close(job, ev.now)
        for path in job.output_paths:
            if self._writers.get(path) == job.id:
                del self._writers[path]

    def _on_history_expired(self, ev: HistoryExpired) -> None:
        for job_id, taskservers in ev.jobs.items():
            for name in taskservers:
                ts = self._taskservers.get(name)
                if ts is not None and ts.alive:   # else its own log sweep removes them
                    ts.outbox.append(CleanupJob(name, job_id, self._cause, logs=True))

    def _on_job_restored(self, ev: JobRestored) -> None:
        job_id = ev.job["job_id"]
        if job_id in self._jobs:
            raise AlreadyExists(f"job {job_id} already exists")
        if _row_output(ev.job) == CLOSED and \
                (ev.job["end_time"] or 0.0) <= ev.now - self.retire_after:
            return   # retired before the restart: it stays in the store only
        job = self._jobs[job_id] = _restored_job(ev.job, ev.tasks, ev.attempts)
        if job.request_id:
            self._requests[job.request_id] = job.id
        for task in job.tasks():
            self._tasks[task.id] = task
            self._attempts.update((a.id, a) for a in task.attempts)
        if job.output == CLOSED:   # it had ended, and its output is as it left it
            self._closed[job.id] = job.end_time
            return
        self._own_outputs(job, job.output_paths)
        if job.state in FINAL_STATES:   # it ended; its output was not committed or removed
            # (a late attempt of a draining job cannot recreate the output: see jobdir)
            job.output = COMMITTING if job.state == SUCCEEDED else REMOVING
            self._touch(job)
            self._actions.append(JobFinished(job.id, job.state, list(job.output_paths),
                                             job.error, self._cause))
            return
        if job.state == CREATED:   # its client may still upload its files and run it
            return
        for task in job.tasks():
            for a in task.attempts:
                if a.state == FAILED and not is_system(a.failure):
                    self.bad_nodes.user_failure(job.id, a.taskserver, ev.now)
        self.scheduler.add_job(job.id)
        self._awaited_until = ev.now + self.taskserver_timeout
        for task in job.tasks():
            if task.state == SUCCEEDED:
                if task.stage.file_output and task.output is not None:
                    self._await(task.output)   # its shuffle output is on its taskserver
            elif task.state == RUNNING and task.active():
                for a in task.active():
                    self._await(a)
            elif task.state in (PENDING, RUNNING):   # (running: its attempts all ended)
                if task.state == RUNNING:
                    _move(task, TASK_TRANSITIONS, PENDING)
                    self._touch(task)
                self._place(task, ev.now)
        self._check_done(job, ev.now)

    def _await(self, a: Attempt) -> None:
        self._awaited.setdefault(a.taskserver, {})[a.id] = a

    def _adopt(self, ts: TaskServer) -> None:
        """A taskserver heard from after a restart: it still runs the resumed jobs' attempts
        it was given (those it does not report are lost, as with any heartbeat) and holds
        their map outputs."""
        for a in self._awaited.pop(ts.name, {}).values():
            a.task.job.taskservers.add(ts.name)
            if a.state in ACTIVE:
                a.launched_in = 0
                ts.active[a.id] = a
            elif a.state == SUCCEEDED and a.task.output is a:
                ts.outputs[a.id] = a
                self._output_changed(a.task)   # found again: its consumers may fetch

    def _give_up_awaited(self, now: float) -> None:
        """Taskservers silent since the restart for taskserver_timeout: their attempts and
        map outputs are lost, and their tasks run again."""
        awaited, self._awaited = self._awaited, {}
        for name, attempts in sorted(awaited.items()):
            for a in attempts.values():
                if a.task.job.state != RUNNING:
                    continue
                if a.state in ACTIVE or a.task.output is a and a.task.stage.output_needed():
                    self._lose(a, f"taskserver {name} did not come back after the jobserver "
                                  "restarted", now)

    # ---- attempt reports (ON_REPORT) ----

    def _progressed(self, a: Attempt, st: AttemptStatus, now: float) -> None:
        a.progress = min(max(st.progress, 0.0), 1.0)
        a.counters = list(st.counters)
        _take_times(a, st)

    def _started(self, a: Attempt, st: AttemptStatus, now: float) -> None:
        _move(a, ATTEMPT_TRANSITIONS, RUNNING)
        self._touch(a)
        self._progressed(a, st, now)

    def _succeeded(self, a: Attempt, st: AttemptStatus, now: float) -> None:
        task = a.task
        if not task.stage.file_output and task.committer != a.id:
            self._failed(a, AttemptStatus(a.id, FAILED, st.progress, st.counters,
                                          "finished without permission to commit"), now)
            return
        self._end(a, SUCCEEDED, now, st)
        a.progress = 1.0
        _move(task, TASK_TRANSITIONS, SUCCEEDED)
        self._touch(task)
        task.output = a
        if task.stage.file_output:
            self._taskservers[a.taskserver].outputs[a.id] = a
        for other in task.active():
            self._kill(other, now)
        stage = task.stage
        stage.succeeded += 1
        self._output_changed(task)
        if stage.complete:
            for child in stage.children:
                if child.inputs_ready():
                    for t in child.tasks:
                        if t.state == WAITING:
                            self._schedule(t, now)
        for child in stage.children:
            self._start_early(child, now)
        self._check_done(task.job, now)

    def _failed(self, a: Attempt, st: AttemptStatus, now: float) -> None:
        """A user error uses up one of the task's attempts; a system error does not, and
        the task backs off before it runs again (on another node if the node was the
        cause). An attempt killed on its taskserver's own account (it stopped) is the
        node's."""
        task = a.task
        self._end(a, FAILED, now, st)
        a.error = st.error or f"attempt reported {st.state}"
        a.failure = st.failure or (NODE if st.state == KILLED else USER)
        self._totals["attempts_failed"][a.failure] += 1
        if task.committer == a.id:
            task.committer = None
        if a.failure != SYSTEM:   # the node may be the cause
            task.avoid.add(a.taskserver)
        if is_system(a.failure):
            if self._system_failure(a, now):
                return
        else:
            self._taskservers[a.taskserver].failures += 1
            self.bad_nodes.user_failure(task.job.id, a.taskserver, now)
            task.failures += 1
            if task.failures >= self.max_task_attempts:
                _move(task, TASK_TRANSITIONS, FAILED)
                self._touch(task)
                self._finish(task.job, FAILED,
                             f"task {task.id} failed {task.failures} times; last attempt "
                             f"{a.id} on {a.host}: {a.error}", a.traceback, now)
                return
        if not task.active():
            self._schedule(task, now, delay=self._backoff_delay(task) if is_system(
                a.failure) else 0.0)

    # ---- transitions with their consequences ----

    def _launch(self, task: Task, locality: str, ts: TaskServer, speculative: bool = False,
                pending_since: float | None = None) -> None:
        """Assign an attempt of `task` to `ts`: a backup (`speculative`), or placed by the
        scheduler, where it was pending since `pending_since`."""
        job = task.job
        a = Attempt(task, make_attempt_id(task.id, len(task.attempts)), ts.name, ts.host,
                    locality, ts.last_heartbeat, ts.heartbeats, speculative)
        a.isolated = ts.isolated
        task.attempts.append(a)
        self._attempts[a.id] = a
        ts.active[a.id] = a
        job.taskservers.add(ts.name)
        _move(task, TASK_TRANSITIONS, RUNNING)
        self._touch(task)
        self._touch(a)
        spec: dict[str, Any] = {"stage": task.stage.id, "index": task.index}
        if task.split is not None:
            spec["split"] = task.split.to_dict()
        if task.stage.parents:
            spec["producers"] = {p.id: len(p.tasks) for p in task.stage.parents}
        self._totals["assignments"][locality or NO_LOCALITY] += 1
        waited = None if pending_since is None else a.start_time - pending_since
        ts.outbox.append(LaunchAttempt(ts.name, job.id, task.id, a.id, job.job_dir, spec,
                                       self._cause, job.user, job.secret, waited))

    def _back_up(self, ts: TaskServer, slots: int, skip: set[str]) -> int:
        """Launch backup attempts of stragglers in up to `slots` free slots of `ts`, never
        beside the original nor where the task failed; how many were launched."""
        launched = 0
        for task in self._stragglers:
            if launched == slots:
                break
            live = task.active()
            if task.state != RUNNING or len(live) != 1 or live[0].taskserver == ts.name \
                    or ts.name in task.avoid or task.job.id in skip \
                    or any(a.speculative for a in task.attempts):
                continue   # it ended or was backed up since the Tick; or not here
            hosts = task.split.hosts if task.split is not None else ()
            racks = {self.scheduler.rack_of(h) for h in hosts}
            self._launch(task, locality_of(hosts, racks, ts.host, ts.rack), ts,
                         speculative=True)
            launched += 1
        return launched

    def _end(self, a: Attempt, state: str, now: float, st: AttemptStatus | None = None) -> None:
        if a.state in ACTIVE:   # (not a finished attempt whose output was lost)
            self._totals["attempts_ended"][state] += 1
        _move(a, ATTEMPT_TRANSITIONS, state)
        a.end_time = a.end_time or now
        if st is not None:
            a.progress, a.counters = st.progress, list(st.counters)
            a.error, a.traceback = st.error, st.traceback
            _take_times(a, st)
        ts = self._taskservers.get(a.taskserver)   # None: an attempt of an earlier run
        if ts is not None and ts.active.get(a.id) is a:
            del ts.active[a.id]
        self._touch(a)

    def _kill(self, a: Attempt, now: float) -> None:
        self._end(a, KILLED, now)
        ts = self._taskservers.get(a.taskserver)   # None: not heard from since a restart
        if ts is not None and ts.alive:
            ts.outbox.append(KillAttempt(ts.name, a.id, self._cause))
            self._dying(a, ts)

    def _dying(self, a: Attempt, ts: TaskServer) -> None:
        """`a` was told to die on `ts` (in this event's commands) and may run until `ts`
        shows it gone: its job's output is not committed or removed before then."""
        ts.dying.setdefault(a.id, ts.heartbeats)
        a.task.job.dying.add(a.id)

    def _dead(self, ts: TaskServer, attempt_id: str) -> None:
        del ts.dying[attempt_id]
        job = self._attempts[attempt_id].task.job
        job.dying.discard(attempt_id)
        self._release_output(job)

    def _release_output(self, job: Job) -> None:
        """Hand the ended job's output to the shell once none of its attempts may run."""
        if job.output != DRAINING or job.dying:
            return
        _move(job, OUTPUT_TRANSITIONS, COMMITTING if job.state == SUCCEEDED else REMOVING,
              "output")
        self._touch(job)
        self._actions.append(JobFinished(job.id, job.state, list(job.output_paths),
                                         job.error, self._cause))

    def _cleanup_stale(self, ts: TaskServer, jobs: list[str]) -> None:
        """Local files of jobs that ended, or that this jobserver does not know (its store
        lost them), are cleaned up: after a jobserver restart the cleanups sent at a job's
        end may never have arrived."""
        for job_id in jobs:
            job = self._jobs.get(job_id)
            if job is None or job.state in FINAL_STATES and job.output != OPEN:
                ts.outbox.append(CleanupJob(ts.name, job_id, self._cause))

    def _lose(self, a: Attempt, reason: str, now: float) -> None:
        """A running attempt, or a finished one's shuffle output, is gone with its node: run
        the task again elsewhere (a system error of the node: not the task's failure)."""
        task, had_output = a.task, a.state == SUCCEEDED
        self._end(a, LOST, now)
        a.error, a.failure = reason, NODE
        self._totals["attempts_failed"][NODE] += 1
        task.avoid.add(a.taskserver)
        ts = self._taskservers.get(a.taskserver)   # None: not heard from since a restart
        if ts is not None:
            ts.outputs.pop(a.id, None)
        if task.committer == a.id:
            task.committer = None
        if not had_output and self._system_failure(a, now):
            return
        if had_output:
            task.output = None
            task.stage.succeeded -= 1
            self._output_changed(task)
            for child in task.stage.children:
                for t in child.tasks:
                    if t.state == PENDING:   # not started: wait for the output again
                        self._unschedule(t)
                        _move(t, TASK_TRANSITIONS, WAITING)
                        self._touch(t)
            self._schedule(task, now)
        elif not task.active():
            self._schedule(task, now, delay=self._backoff_delay(task))

    def _start_early(self, stage: Stage, now: float) -> None:
        """Slow start: make some of a consumer stage's waiting tasks pending before its
        inputs are complete, within half of the live slots (see the module doc)."""
        if self.slow_start >= 1.0 or stage.inputs_ready() or \
                not stage.may_start_early(self.slow_start) or \
                self.scheduler.pending(stage.job.id):   # a task still waits for a slot
            return
        slots = self.live_slots()
        early = sum(1 for s in stage.job.stages.values() if s.parents and not s.inputs_ready()
                    for t in s.tasks if t.state in (PENDING, RUNNING))
        for t in stage.tasks:
            if early >= slots // 2:
                return
            if t.state == WAITING:
                self._schedule(t, now, early=True)
                early += 1

    def _schedule(self, task: Task, now: float, early: bool = False, delay: float = 0.0) -> None:
        """Make the task pending if its inputs are there (or it starts `early`), else
        waiting for them; a pending task backs off for `delay` before it may be placed."""
        if task.state == WAITING and not task.stage.inputs_ready() and not early:
            return
        if not task.stage.inputs_ready() and not early:
            _move(task, TASK_TRANSITIONS, WAITING)
            self._touch(task)
            return
        _move(task, TASK_TRANSITIONS, PENDING)
        self._touch(task)
        if delay > 0:
            self._backoff[task.id] = now + delay
        else:
            self._place(task, now)

    def _place(self, task: Task, now: float) -> None:
        """Hand a pending task to the scheduler, away from the taskservers it failed on."""
        avoid = task.avoid & self._alive if task.avoid else ()
        if avoid and len(avoid) == len(self._alive):
            avoid = ()   # nowhere else to go
        hosts = task.split.hosts if task.split is not None else ()
        self.scheduler.add_task(task.job.id, task.id, hosts, avoid, now)

    def _unschedule(self, task: Task) -> None:
        """The pending task is no longer to be placed (its inputs are gone again)."""
        self.scheduler.remove_task(task.id)
        self._backoff.pop(task.id, None)

    def _release_backoffs(self, now: float) -> None:
        for task_id, due in list(self._backoff.items()):
            if due <= now:
                del self._backoff[task_id]
                # runnable since its back-off ended, whichever event noticed it
                self._place(self._tasks[task_id], due)

    def _backoff_delay(self, task: Task) -> float:
        """Exponential back-off after the task's latest system error, with jitter (half to
        all of it) so that tasks failed by one outage do not all come back at once."""
        if not task.system_failures:
            return 0.0
        base = self.retry_backoff * 2 ** min(task.system_failures - 1, 6)
        return base * (0.5 + 0.5 * self._rand())

    def _system_failure(self, a: Attempt, now: float) -> bool:
        """Count a system error of the attempt's task; True if that was one too many and
        the job has failed."""
        task = a.task
        task.system_failures += 1
        if task.system_failures <= self.system_retries:
            return False
        if task.state == RUNNING and not task.active():
            _move(task, TASK_TRANSITIONS, FAILED)
            self._touch(task)
        self._finish(task.job, FAILED,
                     f"task {task.id} hit {task.system_failures} system errors "
                     f"(retried with back-off; not the job's fault: check the cluster's "
                     f"health); last attempt {a.id} on {a.host}: {a.error}", "", now)
        return True

    def _check_done(self, job: Job, now: float) -> None:
        if job.state == RUNNING and all(s.complete for s in job.stages.values()):
            self._finish(job, SUCCEEDED, "", "", now)

    def _finish(self, job: Job, state: str, error: str, traceback: str, now: float) -> None:
        _move(job, JOB_TRANSITIONS, state)
        job.end_time, job.error, job.traceback = now, error, traceback
        self._touch(job)
        self.scheduler.remove_job(job.id)
        self.bad_nodes.job_ended(job.id)
        for task in job.tasks():
            for a in task.active():
                self._kill(a, now)
            if task.state in (WAITING, PENDING, RUNNING):
                self._backoff.pop(task.id, None)
                _move(task, TASK_TRANSITIONS, KILLED)
                self._touch(task)
            ts = self._taskservers.get(task.output.taskserver) if task.output else None
            if ts is not None:
                ts.outputs.pop(task.output.id, None)
        for name in sorted(job.taskservers):
            ts = self._taskservers.get(name)
            if ts is not None and ts.alive:
                ts.outbox.append(CleanupJob(name, job.id, self._cause))
        if job.output_paths:
            _move(job, OUTPUT_TRANSITIONS, DRAINING, "output")
            self._release_output(job)
        else:
            self._close(job, now)
            self._actions.append(JobFinished(job.id, state, [], error, self._cause))

    def _close(self, job: Job, now: float) -> None:
        """The ended job's output is committed or removed (or it had none): it is done, and
        retires (see Retirement)."""
        _move(job, OUTPUT_TRANSITIONS, CLOSED, "output")
        job.commit_time = now
        self._touch(job)
        self._closed[job.id] = job.end_time
        self._totals["jobs_finished"][job.state] += 1   # its state is final now

    def _retire(self, now: float) -> None:
        """Forget the closed jobs that ended retire_after ago, and those beyond the
        retained_jobs that ended last."""
        horizon = now - self.retire_after
        old = [j for j, end in self._closed.items() if end <= horizon]
        excess = len(self._closed) - len(old) - self.retained_jobs
        if excess > 0:
            young = sorted((end, j) for j, end in self._closed.items() if end > horizon)
            old += [j for _, j in young[:excess]]
        for job_id in old:
            self._forget(self._jobs[job_id])

    def _forget(self, job: Job) -> None:
        """Drop every reference to the job, its tasks and attempts (it was stored)."""
        del self._jobs[job.id], self._closed[job.id]
        self.jobs_retired += 1
        if self._requests.get(job.request_id) == job.id:
            del self._requests[job.request_id]
        self.scheduler.remove_job(job.id)   # (already, when it ended in this run)
        self.bad_nodes.job_ended(job.id)
        for task in job.tasks():
            del self._tasks[task.id]
            self._backoff.pop(task.id, None)
            for a in task.attempts:
                del self._attempts[a.id]
                ts = self._taskservers.get(a.taskserver)
                if ts is not None:   # a zombie still told to die: it is killed as unknown
                    ts.dying.pop(a.id, None)
                    ts.active.pop(a.id, None)
                    ts.outputs.pop(a.id, None)
                self._awaited.get(a.taskserver, {}).pop(a.id, None)

    def _output_changed(self, task: Task) -> None:
        task.stage.output_log.append(task)
        self.outputs_changed += 1

    def _own_outputs(self, job: Job, paths: list[str]) -> None:
        job.output_paths = list(paths)
        for path in paths:
            self._writers.setdefault(path, job.id)

    def _touch(self, obj: Any) -> None:
        self._dirty[obj.id] = obj   # job, task and attempt ids never collide

    def _job(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        return job

    # ---- views (plain dicts, JSON-serialisable) ----

    def job_of_request(self, request_id: str) -> str | None:
        """The job a CreateJob with this request id made, if any."""
        return self._requests.get(request_id) if request_id else None

    def job_owner(self, job_id: str) -> str:
        """The user the job belongs to (see minijet.acl); "" if unknown."""
        return self._job(job_id).user

    def job_state(self, job_id: str) -> str:
        """The state users see: running until its output is committed or removed."""
        return _shown_state(self._job(job_id))

    def job_status(self, job_id: str, attempts: bool = True,
                   attempt_limit: int | None = None) -> dict[str, Any]:
        """The job's view; with `attempt_limit`, at most that many of its attempts
        (some_attempts)."""
        return _status(self._job(job_id), attempts, attempt_limit)

    def holds(self, job_id: str) -> bool:
        """The job is in memory (not retired)."""
        return job_id in self._jobs

    def list_jobs(self) -> list[dict[str, Any]]:
        return [self.job_status(j, attempts=False) for j in self._jobs]

    def live_slots(self) -> int:
        """The task slots of the live taskservers."""
        return sum(self._taskservers[name].slots for name in self._alive)

    def live_taskservers(self) -> int:
        return len(self._alive)

    def to_wake(self, limit: int | None = None) -> list[str]:
        """The addresses of idle taskservers to ask for a heartbeat now, rather than at their
        next interval, because tasks are pending: at most one per pending task, and each once
        until it heartbeats again (so a cluster of thousands is not woken at once); at most
        `limit` (the shell's heartbeat budget: minijet.jobserver.pacing)."""
        woken = []
        wanted = min(len(self.scheduler) - len(self._woken), len(self._idle))
        for _ in range(wanted if limit is None else min(wanted, limit)):
            name = next(iter(self._idle))
            del self._idle[name]
            self._woken.add(name)
            woken.append(self._taskservers[name].address)
        return woken

    def attempt_status(self, job_id: str, attempt_id: str) -> dict[str, Any] | None:
        """One attempt of the job, as job_status lists it (None: the job has no such
        attempt), without building the job's whole status."""
        self._job(job_id)   # NotFound for a job not held
        a = self._attempts.get(attempt_id)
        return _attempt_view(a) if a is not None and a.task.job.id == job_id else None

    def taskservers(self) -> list[dict[str, Any]]:
        return [self._taskserver_view(t) for t in self._taskservers.values()]

    def taskserver(self, name: str) -> dict[str, Any] | None:
        """One taskserver, as taskservers() lists it (None: never heard of)."""
        t = self._taskservers.get(name)
        return self._taskserver_view(t) if t is not None else None

    def _taskserver_view(self, t: TaskServer) -> dict[str, Any]:
        return {"name": t.name, "host": t.host, "rack": t.rack, "slots": t.slots,
                "running": len(t.active), "last_heartbeat": t.last_heartbeat,
                "address": t.address, "failures": t.failures, "alive": t.alive,
                "isolated": t.isolated, **self.bad_nodes.view(t.name)}

    def tallies(self) -> dict[str, Any]:
        """For /metrics' gauges (minijet.web.metrics), what is current: the unfinished jobs
        by the state users see, their unfinished tasks by state, and how many finished jobs
        are held until they retire."""
        unfinished = [j for j in self._jobs.values() if j.id not in self._closed]
        return {"jobs": collections.Counter(_shown_state(j) for j in unfinished),
                "tasks": collections.Counter(t.state for j in unfinished for t in j.tasks()
                                             if t.state in (WAITING, PENDING, RUNNING)),
                "retained_jobs": len(self._closed)}

    def totals(self) -> dict[str, dict[str, int]]:
        """For /metrics' counters, counted as things happen since this core started, so
        they do not drop when jobs retire: jobs finished (their output closed) by state,
        attempts ended by state, failed or lost attempts (or their outputs) by failure
        class, and assignments by locality. A restored job counts only what happens
        after its restore."""
        return {name: dict(counts) for name, counts in self._totals.items()}

    def map_output_locations(self, job_id: str, stage_id: str, seen: int = 0) -> dict[str, Any]:
        """Where the finished outputs of a producer stage are: {outputs: [{task_id,
        attempt_id, address}], lost: [task_id], total: tasks in the stage, version: see
        output_version, full}; fewer outputs than total while some producers (re-)run.
        Given the version `seen` of an earlier answer, only the tasks whose output changed
        since: made (in outputs) or gone (in lost); so a consumer asking again and again
        costs what changed, not a walk over the stage's tasks. Else (`seen` 0, or from
        before a restart) `full`: every output."""
        stage = self._stage(job_id, stage_id)
        version = len(stage.output_log)
        full = not 0 < seen <= version
        outputs, lost = [], []
        for t in stage.tasks if full else dict.fromkeys(stage.output_log[seen:]):
            if t.output is not None and t.output.taskserver in self._taskservers:
                outputs.append({"task_id": t.id, "attempt_id": t.output.id,
                                "address": self._taskservers[t.output.taskserver].address})
            elif not full:   # (an output on a taskserver not seen since a restart: gone)
                lost.append(t.id)
        return {"outputs": outputs, "lost": lost, "total": len(stage.tasks),
                "version": version, "full": full}

    def output_version(self, job_id: str, stage_id: str) -> int:
        """A number that changes whenever an output of the stage is made or lost (in this
        run of the core: it starts again at 0)."""
        return len(self._stage(job_id, stage_id).output_log)

    def _stage(self, job_id: str, stage_id: str) -> Stage:
        stage = self._job(job_id).stages.get(stage_id)
        if stage is None:
            raise NotFound(f"job {job_id} has no stage {stage_id!r}")
        return stage


_HANDLERS = {
    JobCreated: "_on_job_created", JobSubmitted: "_on_job_submitted",
    Heartbeat: "_on_heartbeat", TaskServerLost: "_on_taskserver_lost",
    CommitRequest: "_on_commit_request", FetchFailed: "_on_fetch_failed",
    KillJob: "_on_kill_job", Tick: "_on_tick",
    OutputCommitted: "_on_output_committed", OutputCommitFailed: "_on_output_committed",
    JobRestored: "_on_job_restored", HistoryExpired: "_on_history_expired",
}


def _shown_state(job: Job) -> str:
    return RUNNING if job.output in FINISHING else job.state


def _status(job: Job, attempts: bool, attempt_limit: int | None = None) -> dict[str, Any]:
    """The view of a job (JobServerCore.job_status), in memory or restored from its rows."""
    counters: dict[tuple[str, str], int] = {}
    stages = []
    every: list[Attempt] = []
    for stage in job.stages.values():
        done = running = failed = 0
        progress = 0.0
        for task in stage.tasks:
            if not task.attempts and task.state != SUCCEEDED:
                continue   # not started: nothing to count (most of a big job's tasks, early)
            every += task.attempts
            failed += sum(1 for a in task.attempts if a.state == FAILED)
            live = task.active()
            if task.state == SUCCEEDED:
                done += 1
                progress += 1.0
            elif live:
                running += 1
                progress += max(a.progress for a in live)
            # a task's counters: its winning attempt's, or its live attempt's so far
            best = task.output or (live[0] if live else None)
            for g, n, v in (best.counters if best else ()):
                counters[(g, n)] = counters.get((g, n), 0) + v
        stages.append({"stage_id": stage.id, "tasks": len(stage.tasks),
                       "succeeded": done, "running": running, "failed_attempts": failed,
                       "progress": progress / len(stage.tasks) if stage.tasks else 1.0})
    for name, value in _attempt_counters(every).items():
        counters[("job", name)] = value
    status = {
        "job_id": job.id, "name": job.name, "user": job.user,
        "state": _shown_state(job),
        "submit_time": job.submit_time, "start_time": job.start_time,
        "end_time": job.end_time, "run_time": job.run_time,
        "commit_time": job.commit_time, "stages": stages,
        "counters": [{"group": g, "name": n, "value": v}
                     for (g, n), v in sorted(counters.items())],
        "error": job.error, "traceback": job.traceback,
        "output_path": ",".join(job.output_paths),
        "unisolated_taskservers": sorted({a.taskserver for a in every if not a.isolated}),
    }
    if attempts:
        shown = every if attempt_limit is None else some_attempts(every, attempt_limit)
        status["attempts"] = [_attempt_view(a) for a in shown]
    return status


def some_attempts(attempts: list[Attempt], limit: int) -> list[Attempt]:
    """At most `limit` of `attempts`, in their order: the failed and lost ones (the latest
    of them if too many), then the latest started. A page of a big job shows these rather
    than its every attempt (built under the jobserver's lock, rendered each refresh)."""
    if len(attempts) <= limit:
        return attempts
    troubled = [a for a in attempts if a.state in (FAILED, LOST)][-limit:]
    rest = [a for a in attempts if a.state not in (FAILED, LOST)]
    keep = {id(a) for a in troubled} | {
        id(a) for a in heapq.nlargest(limit - len(troubled), rest,
                                      key=attrgetter("start_time"))}
    return [a for a in attempts if id(a) in keep]


def stored_status(job: dict[str, Any], tasks: list[dict[str, Any]],
                  attempts: list[dict[str, Any]], with_attempts: bool = True,
                  attempt_limit: int | None = None) -> dict[str, Any]:
    """A retired job's status from its rows (minijet.jobserver.store), as job_status gave
    it in memory."""
    return _status(_restored_job(job, tasks, attempts), with_attempts, attempt_limit)


def stored_summary(job: dict[str, Any]) -> dict[str, Any] | None:
    """A closed job's status without attempts, as stored at its close (None: not stored,
    by an older version), so that a list of retired jobs reads no tasks or attempts."""
    return json.loads(job["summary_json"]) if job.get("summary_json") else None


def _attempt_counters(attempts: list[Attempt]) -> dict[str, int]:
    c = {"launched_attempts": len(attempts),
         "speculative_attempts": sum(1 for a in attempts if a.speculative)}
    for name, match in (("node_local_attempts", NODE_LOCAL), ("rack_local_attempts", RACK_LOCAL),
                        ("off_rack_attempts", OFF_RACK)):
        c[name] = sum(1 for a in attempts if a.locality == match)
    for state in (FAILED, KILLED, LOST):
        c[f"{state}_attempts"] = sum(1 for a in attempts if a.state == state)
    # failed and lost attempts by class: only user errors use up a task's attempts
    c["user_failed_attempts"] = sum(1 for a in attempts if a.failure == USER)
    c["system_failed_attempts"] = sum(1 for a in attempts if is_system(a.failure))
    return c


def _take_times(a: Attempt, st: AttemptStatus) -> None:
    """The attempt-side times a report carries, once known (a later report that has
    none, from a taskserver of an older version, keeps them)."""
    for name in REPORTED_TIMES:
        setattr(a, name, getattr(st, name) or getattr(a, name))


def _attempt_view(a: Attempt) -> dict[str, Any]:
    return {"attempt_id": a.id, "task_id": a.task.id, "taskserver": a.taskserver,
            "host": a.host, "locality": a.locality, "state": a.state,
            "start_time": a.start_time, "end_time": a.end_time, "progress": a.progress,
            "error": a.error, "traceback": a.traceback, "failure": a.failure,
            "speculative": a.speculative,
            "counters": [{"group": g, "name": n, "value": v} for g, n, v in a.counters],
            **{name: getattr(a, name) for name in ATTEMPT_TIMES}}


def _record(obj: Any) -> tuple[str, dict[str, Any]]:
    """The row minijet.jobserver.store writes for a job, task or attempt."""
    if isinstance(obj, Job):
        row = {"job_id": obj.id, "name": obj.name, "user": obj.user, "state": obj.state,
               "submit_time": obj.submit_time, "start_time": obj.start_time,
               "end_time": obj.end_time, "job_dir": obj.job_dir, "error": obj.error,
               "traceback": obj.traceback, "output_state": obj.output,
               "request_id": obj.request_id, "secret": obj.secret,
               "run_time": obj.run_time, "commit_time": obj.commit_time}
        if obj.conf is not None:
            row["conf_json"] = json.dumps(obj.conf.to_dict())
            row["output_path"] = ",".join(obj.output_paths)
        if obj.output == CLOSED:   # final: for stored_summary
            row["summary_json"] = json.dumps(_status(obj, attempts=False))
        return ("jobs", row)
    if isinstance(obj, Task):   # its row was written whole when the job was accepted
        return ("tasks", {"task_id": obj.id, "state": obj.state, "committer": obj.committer})
    return ("attempts", {"attempt_id": obj.id, "task_id": obj.task.id, "job_id": obj.task.job.id,
                         "taskserver": obj.taskserver, "host": obj.host,
                         "locality": obj.locality, "state": obj.state,
                         "start_time": obj.start_time, "end_time": obj.end_time,
                         "error": obj.error, "traceback": obj.traceback,
                         "counters_json": json.dumps(obj.counters), "failure": obj.failure,
                         "speculative": int(obj.speculative), "isolated": int(obj.isolated),
                         "progress": obj.progress,
                         **{name: getattr(obj, name) for name in ATTEMPT_TIMES}})


def _task_row(task: Task) -> tuple[str, dict[str, Any]]:
    """A new task's whole row; later records of it carry what changes (_record)."""
    return ("tasks", {**_record(task)[1], "job_id": task.job.id, "stage": task.stage.id,
                      "task_index": task.index,
                      "split_json": json.dumps(task.split.to_dict()) if task.split else None})


def _row_output(row: dict[str, Any]) -> str:
    """A stored job's output state; rows of older versions have none: an ended job's output
    counts as closed."""
    return row.get("output_state") or (CLOSED if row["state"] in FINAL_STATES else OPEN)


def _restored_job(row: dict[str, Any], tasks: list[dict[str, Any]],
                  attempts: list[dict[str, Any]]) -> Job:
    """A job, its tasks and attempts from the rows _record wrote (missing columns: None)."""
    job = Job(row["job_id"], row["name"] or "", row["user"] or "", row["job_dir"] or "",
              row["submit_time"] or 0.0)
    job.state, job.start_time, job.end_time = row["state"], row["start_time"] or 0.0, \
        row["end_time"] or 0.0
    job.error, job.traceback = row["error"] or "", row["traceback"] or ""
    job.request_id = row.get("request_id") or ""
    job.run_time, job.commit_time = row.get("run_time") or 0.0, row.get("commit_time") or 0.0
    job.secret = row.get("secret") or ""
    job.output_paths = row["output_path"].split(",") if row["output_path"] else []
    job.output = _row_output(row)
    try:
        job.conf = JobConf.from_dict(json.loads(row["conf_json"])) if row["conf_json"] else None
    except (ValueError, MinijetError):   # a conf this version no longer reads
        job.conf = None
    if job.conf is not None:
        for s in job.conf.topological_order():
            stage = job.stages[s.id] = Stage(job, s.id, s.output.channel == FILE)
            stage.parents = [job.stages[p] for p in s.inputs]
            for p in stage.parents:
                p.children.append(stage)
    by_id: dict[str, Task] = {}
    for t in sorted(tasks, key=lambda t: t["task_index"]):
        stage = job.stages.get(t["stage"]) or job.stages.setdefault(
            t["stage"], Stage(job, t["stage"], False))
        split = t.get("split_json")
        task = by_id[t["task_id"]] = Task(stage, t["task_index"],
                                          Split.from_dict(json.loads(split)) if split else None)
        task.state, task.committer = t["state"], t.get("committer")
        stage.tasks.append(task)
    for r in sorted(attempts, key=lambda r: int(r["attempt_id"].rsplit("_", 1)[1])):
        task = by_id[r["task_id"]]
        a = Attempt(task, r["attempt_id"], r["taskserver"] or "", r["host"] or "",
                    r["locality"] or "", r["start_time"] or 0.0)
        a.state, a.end_time = r["state"], r["end_time"] or 0.0
        a.error, a.traceback = r["error"] or "", r["traceback"] or ""
        a.failure = r.get("failure") or ""   # not in rows of older versions
        a.speculative = bool(r.get("speculative"))
        a.isolated = bool(r.get("isolated"))   # older versions isolated no attempt
        for name in ATTEMPT_TIMES:   # older versions recorded none: 0
            setattr(a, name, r.get(name) or 0.0)
        a.counters = [tuple(c) for c in json.loads(r["counters_json"] or "[]")]
        a.progress = r["progress"] if r.get("progress") is not None else \
            1.0 if a.state == SUCCEEDED else 0.0   # older versions did not store it
        task.attempts.append(a)
        if a.state == SUCCEEDED:
            task.output = a
        elif a.state == FAILED and not is_system(a.failure):
            task.failures += 1
    for stage in job.stages.values():
        stage.succeeded = sum(1 for t in stage.tasks if t.state == SUCCEEDED)
    return job
