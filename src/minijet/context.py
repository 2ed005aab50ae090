"""The running task, as seen from the user's code: user counters, the input file, the
attempt and where it runs.

    from minijet import context
    context.counter("quality", "bad_lines").increment()
    context.input_path()      # the file the current record was read from
    context.attempt_id()      # job_..._map_00003_1: task map_00003, its second attempt
    context.host()            # the node running it (its taskserver's node.host)

works in methods and lambdas running in a task: the runner points this module at the task's
progress (`bind`), which reports the counters with the engine's; `jetshell status` shows them
summed over the job. Outside a task (e.g. while the client samples keys) counts go nowhere.
"""
from __future__ import annotations

from typing import Any

_progress: Any = None                          # the running task's runner.Progress
_counters: dict[tuple[str, str], "Counter"] = {}
_input_path: str | None = None                 # the file of the record being processed
_attempt_id: str | None = None
_host: str | None = None


class Counter:
    __slots__ = ("group", "name")

    def __init__(self, group: str, name: str):
        self.group, self.name = group, name

    def increment(self, n: int = 1) -> None:
        if _progress is not None:
            _progress.add(self.name, int(n), self.group)


def counter(group: str, name: str) -> Counter:
    """The user counter `name` of `group` (cheap to call per record)."""
    c = _counters.get((group, name))
    if c is None:
        if not isinstance(group, str) or not isinstance(name, str) or not group or not name:
            raise ValueError(f"a counter needs a non-empty group and name, got "
                             f"{group!r}, {name!r}")
        c = _counters[(group, name)] = Counter(group, name)
    return c


def input_path() -> str | None:
    """The file (a DFS path; a local one in the local runner) that the record being
    processed was read from, in a stage that reads input files, as Hadoop's map.input.file;
    None in a stage that reads a shuffle."""
    return _input_path


def attempt_id() -> str | None:
    """The running attempt's id, `<job>_<stage>_<task index>_<try>` (Hadoop's
    mapred.task.id); None outside a task."""
    return _attempt_id


def host() -> str | None:
    """The node identity of the machine running the attempt (node.host: its host name
    unless configured); None outside a task."""
    return _host


def set_attempt(attempt: str, node: str) -> None:
    """The TaskHost (or the local runner): the attempt running in this process, and where."""
    global _attempt_id, _host
    _attempt_id, _host = attempt, node


def bind(progress: Any) -> None:
    """The runner: counters go to `progress` (None: nowhere) from now on."""
    global _progress, _input_path
    _progress = progress
    _input_path = None


def set_input_path(path: str | None) -> None:
    """The runner: the records handed to the user's code from now on come from `path`."""
    global _input_path
    _input_path = path
