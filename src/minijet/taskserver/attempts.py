"""The attempts a taskserver holds, and what their state is: a pure, I/O-free table.

The daemon feeds it what happened (launched, started, progress, done report, kill decided,
process exited) with the time passed in; it answers what to heartbeat, how many slots are
free and which attempts went silent past the task timeout. The final state of an attempt is
decided when its process has exited, from the TaskHost's own report and the exit code:

- killed on an order                      -> killed
- killed for silence (task timeout), or   -> failed (user), "no progress for N s" /
  over the memory limit                      "exceeded the memory limit of ..."
- reported success and exited 0           -> succeeded
- reported failure                        -> failed with the error, traceback and class
                                             (minijet.failures) the TaskHost reported
- exited without a report, or non-zero    -> failed (user), "TaskHost exited with code N" /
                                             "TaskHost killed by signal SIGx"; a node
                                             error if it never reported (did not start)
- its job files could not be copied, or   -> failed, a system or node error
  its process not started

A final attempt stays in the table until a heartbeat carrying it has been answered, so the
jobserver learns every outcome even when some heartbeats fail.

Times the jobserver records (see minijet.jobserver.model, Timestamps): the TaskHost's own, in
its reports (when it started running the attempt, when it had read its input), and when its
done report arrived; each heartbeat carries them.
"""
from __future__ import annotations

import signal
from dataclasses import dataclass, field

# here, assigned: accepted, job files being copied, no process yet; running: TaskHost started
from minijet.failures import NODE, USER
from minijet.states import ASSIGNED, FAILED, FINAL_STATES, RUNNING, SUCCEEDED

Counters = list[tuple[str, str, int]]  # (group, name, value)


@dataclass
class DoneReport:
    succeeded: bool
    counters: Counters
    error: str = ""
    traceback: str = ""
    failure: str = USER   # of a failure: minijet.failures
    taskhost_start_time: float = 0.0   # as in every report (0: not known)
    input_end_time: float = 0.0


@dataclass
class Attempt:
    attempt_id: str
    job_id: str
    task_id: str
    state: str = ASSIGNED
    progress: float = 0.0
    counters: Counters = field(default_factory=list)
    error: str = ""
    traceback: str = ""
    launched: float = 0.0
    last_progress: float = 0.0   # launch, start or last progress report
    finished: float = 0.0
    failure: str = ""
    heard: bool = False          # the TaskHost has reported something: it did start
    report: DoneReport | None = None
    kill: tuple[str, str, str] | None = None  # (final state, error, failure) decided on a kill
    taskhost_start_time: float = 0.0   # the TaskHost's times, from its reports
    input_end_time: float = 0.0
    done_time: float = 0.0             # its done report arrived


@dataclass(frozen=True)
class AttemptSnapshot:
    """What one heartbeat says about one attempt."""
    attempt_id: str
    job_id: str
    state: str
    progress: float
    counters: Counters
    error: str
    traceback: str
    failure: str
    taskhost_start_time: float
    input_end_time: float
    done_time: float


def describe_exit(returncode: int) -> str:
    """Why a TaskHost that did not report its result ended, in one line."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"TaskHost killed by signal {name}"
    if returncode == 0:
        return "TaskHost exited without reporting its result"
    return f"TaskHost exited with code {returncode}"


class AttemptTable:
    def __init__(self) -> None:
        self._attempts: dict[str, Attempt] = {}
        self.tally: dict[str, int] = {}   # attempts started and ended by state, since start

    def __contains__(self, attempt_id: str) -> bool:
        return attempt_id in self._attempts

    def get(self, attempt_id: str) -> Attempt | None:
        return self._attempts.get(attempt_id)

    def launched(self, attempt_id: str, job_id: str, task_id: str, now: float) -> bool:
        """A launch order arrived; False if the attempt is already known (a repeated order)."""
        if attempt_id in self._attempts:
            return False
        self._attempts[attempt_id] = Attempt(attempt_id, job_id, task_id,
                                             launched=now, last_progress=now)
        return True

    def started(self, attempt_id: str, now: float) -> bool:
        """Its process is about to start; False if it was killed meanwhile (don't start)."""
        a = self._attempts.get(attempt_id)
        if a is None or a.state != ASSIGNED:
            return False
        a.state = RUNNING
        a.last_progress = now
        self.tally["started"] = self.tally.get("started", 0) + 1
        return True

    def progress(self, attempt_id: str, progress: float, counters: Counters, now: float,
                 taskhost_start_time: float = 0.0, input_end_time: float = 0.0) -> bool:
        a = self._attempts.get(attempt_id)
        if a is None or a.state != RUNNING:
            return False
        a.progress = min(max(progress, 0.0), 1.0)
        a.counters = counters
        a.last_progress = now
        a.heard = True
        _take_times(a, taskhost_start_time, input_end_time)
        return True

    def done(self, attempt_id: str, report: DoneReport, now: float) -> bool:
        """The TaskHost reported its result; final once its process has exited."""
        a = self._attempts.get(attempt_id)
        if a is None or a.state != RUNNING or a.report is not None:
            return False
        a.report = report
        a.heard = True
        a.counters = report.counters
        a.done_time = now
        _take_times(a, report.taskhost_start_time, report.input_end_time)
        if report.succeeded:
            a.progress = 1.0
        a.last_progress = now
        return True

    def kill(self, attempt_id: str, state: str, error: str, now: float,
             failure: str = "") -> bool:
        """Decide to kill (`failure`: whose fault, when it is not on an order): returns True
        if a process must be killed. An attempt without a process yet becomes final at
        once."""
        a = self._attempts.get(attempt_id)
        if a is None or a.state in FINAL_STATES:
            return False
        if a.state == ASSIGNED:
            self._finish(a, state, error, "", now, failure)
            return False
        if a.kill is None:
            a.kill = (state, error, failure)
        return True

    def launch_failed(self, attempt_id: str, error: str, now: float, failure: str) -> None:
        a = self._attempts.get(attempt_id)
        if a is not None and a.state not in FINAL_STATES:
            self._finish(a, FAILED, error, "", now, failure)

    def exited(self, attempt_id: str, returncode: int, now: float) -> str | None:
        """Its process ended; returns the final state."""
        a = self._attempts.get(attempt_id)
        if a is None or a.state in FINAL_STATES:
            return None
        r = a.report
        if a.kill is not None:
            self._finish(a, a.kill[0], a.kill[1], "", now, a.kill[2])
        elif r is not None and not r.succeeded:
            self._finish(a, FAILED, r.error or describe_exit(returncode), r.traceback, now,
                         r.failure)
        elif r is not None and returncode == 0:
            self._finish(a, SUCCEEDED, "", "", now)
        elif r is not None:
            self._finish(a, FAILED, describe_exit(returncode) + " after reporting success",
                         "", now, USER)
        elif a.heard:
            self._finish(a, FAILED, describe_exit(returncode), "", now, USER)
        else:
            self._finish(a, FAILED, describe_exit(returncode) + " before it reported anything",
                         "", now, NODE)
        return a.state

    def _finish(self, a: Attempt, state: str, error: str, traceback: str, now: float,
                failure: str = "") -> None:
        a.state, a.error, a.traceback, a.finished = state, error, traceback, now
        a.failure = failure
        self.tally[state] = self.tally.get(state, 0) + 1

    def timed_out(self, now: float, timeout: float) -> list[str]:
        """Running attempts silent for longer than `timeout`, not already being killed."""
        return [a.attempt_id for a in self._attempts.values()
                if a.state == RUNNING and a.kill is None and a.report is None
                and now - a.last_progress > timeout]

    def busy_slots(self) -> int:
        return sum(1 for a in self._attempts.values() if a.state not in FINAL_STATES)

    def of_job(self, job_id: str) -> list[str]:
        return [a.attempt_id for a in self._attempts.values() if a.job_id == job_id]

    def running(self) -> list[tuple[str, str]]:
        """(attempt, job) of every attempt with a process, not already being killed."""
        return [(a.attempt_id, a.job_id) for a in self._attempts.values()
                if a.state == RUNNING and a.kill is None]

    def active(self) -> list[str]:
        return [a.attempt_id for a in self._attempts.values() if a.state not in FINAL_STATES]

    def snapshot(self) -> list[AttemptSnapshot]:
        """Every attempt the jobserver has not yet been told the end of."""
        return [AttemptSnapshot(a.attempt_id, a.job_id, a.state, a.progress, list(a.counters),
                                a.error, a.traceback, a.failure, a.taskhost_start_time,
                                a.input_end_time, a.done_time)
                for a in self._attempts.values()]

    def acknowledged(self, sent: list[AttemptSnapshot]) -> None:
        """A heartbeat carrying `sent` was answered: forget the attempts it reported final."""
        for s in sent:
            a = self._attempts.get(s.attempt_id)
            if a is not None and s.state in FINAL_STATES and a.state == s.state:
                del self._attempts[s.attempt_id]

    def forget_job(self, job_id: str) -> None:
        """The job was cleaned up: the jobserver needs nothing more about its attempts."""
        for attempt_id in self.of_job(job_id):
            if self._attempts[attempt_id].state in FINAL_STATES:
                del self._attempts[attempt_id]


def _take_times(a: Attempt, taskhost_start_time: float, input_end_time: float) -> None:
    """The TaskHost's times a report carries, once known (0: not yet)."""
    a.taskhost_start_time = taskhost_start_time or a.taskhost_start_time
    a.input_end_time = input_end_time or a.input_end_time
