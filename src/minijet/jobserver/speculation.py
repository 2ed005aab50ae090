"""Speculative execution: which running tasks deserve a backup attempt. Pure, time passed in.

A stage is looked at once most of it is done and nothing of it waits: at least
`DONE_FRACTION` of its tasks succeeded and none is pending or waiting (its last tasks run,
and slots free up). Its mean duration is that of its succeeded tasks (their winning
attempts). A running task is a straggler when its only attempt has run for at least
`MIN_RUN` seconds and its progress rate (progress / time run, from the heartbeats) is less
than `SLOW_FRACTION` of the stage's mean rate (1 / the mean duration): at that pace it would
take more than twice as long as a typical task, and a fresh attempt would likely finish
first. A task gets at most one backup in its life (Hadoop's rule, as in its 0.20 scheduler
with rates as in LATE; the numbers are Hadoop-like but tuned for short tasks).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from minijet.states import PENDING, RUNNING, SUCCEEDED, WAITING

if TYPE_CHECKING:
    from minijet.jobserver.model import Stage, Task

DONE_FRACTION = 0.6   # of a stage's tasks succeeded before any of it is speculated
MIN_RUN = 5.0         # seconds an attempt runs before it may be judged slow
SLOW_FRACTION = 0.5   # of the stage's mean progress rate: below it, a straggler


def stragglers(stage: Stage, now: float) -> list[tuple[float, Task]]:
    """(progress rate, task) of the stage's tasks that deserve a backup attempt now."""
    tasks = stage.tasks
    if stage.complete or not stage.succeeded or stage.succeeded < DONE_FRACTION * len(tasks) \
            or any(t.state in (PENDING, WAITING) for t in tasks):
        return []   # (checked cheaply first: a Tick looks at every running stage)
    done = [t.output for t in tasks if t.state == SUCCEEDED]
    mean = sum(a.end_time - a.start_time for a in done) / len(done)
    slow = []
    for t in tasks:
        if t.state != RUNNING or any(a.speculative for a in t.attempts):
            continue
        live = t.active()
        if len(live) != 1:
            continue
        ran = now - live[0].start_time
        # rate < SLOW_FRACTION / mean, without dividing by a duration that may be 0
        if ran >= MIN_RUN and live[0].progress * mean < SLOW_FRACTION * ran:
            slow.append((live[0].progress / ran, t))
    return slow


def slowest_first(stages: Iterable[Stage], now: float) -> list[Task]:
    """The stragglers of `stages`, slowest first."""
    found = [s for stage in stages for s in stragglers(stage, now)]
    return [t for _, t in sorted(found, key=lambda s: s[0])]
