"""The console side of the job commands (`jetshell`, `jetshell streaming`, and their --local
runs): exit statuses, a job's progress and outcome for people, following a job to its end,
and the JetClient a command works with.

Exit status: 0 success; 1 an error (bad arguments, unknown job, cluster unreachable...);
2 the job failed; 3 the job was killed; 130 interrupted (the job keeps running).
"""
from __future__ import annotations

import logging
import shutil
import sys
import time
from typing import TextIO

import click

from minijet import daemon
from minijet.states import FAILED, KILLED, SUCCEEDED

EXIT_ERROR = 1
EXIT_FAILED = 2
EXIT_KILLED = 3
EXIT_INTERRUPTED = 130
OUTCOME_EXIT = {SUCCEEDED: 0, FAILED: EXIT_FAILED, KILLED: EXIT_KILLED}
PLAIN_PROGRESS_EVERY = 30.0  # seconds between unchanged progress lines off a terminal


def load_config(config_path: str | None, defines: tuple[str, ...]):
    """A command's configuration (--config, -D), and its logging set up from it."""
    config = daemon.load_client_config(config_path, defines)
    if config["logging"]["level"].lower() == "debug":
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    else:  # library warnings (a replica retried...) would break the one-line output
        logging.getLogger().addHandler(logging.NullHandler())
    return config


def make_client(config_path: str | None, defines: tuple[str, ...]):
    """A JetClient for a command (--config, -D)."""
    from minijet.client.jetclient import JetClient  # grpc and protos load only when needed

    return JetClient(load_config(config_path, defines))


def pct(fraction: float) -> int:
    return int(max(0.0, min(1.0, fraction)) * 100)  # floor: 100% only when done


def duration(start: float, end: float, now: float | None = None) -> str:
    if not start:
        return "-"
    seconds = (end or now or time.time()) - start
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def progress_text(status) -> str:
    """`map 45% reduce 0%`, or the job's state while it has no stages yet."""
    if not status.stages:
        return status.state
    return " ".join(f"{s.stage_id} {pct(s.progress)}%" for s in status.stages)


def _bar(fraction: float, width: int = 20) -> str:
    done = int(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * done + "-" * (width - done) + "]"


def bar_line(status, columns: int) -> str:
    """Each stage's bar and percentage, and the time so far, in fewer than `columns`
    characters (a redrawn line must not wrap): bars narrow for many stages, and give way
    to the plain percentages when even narrow ones do not fit."""
    tail = f"  {duration(status.start_time, status.end_time)}"
    stages = status.stages
    if not stages:
        return (status.state + tail)[:columns - 1]
    fixed = sum(len(s.stage_id) + 8 for s in stages) + 2 * (len(stages) - 1) + len(tail)
    width = min(20, (columns - 1 - fixed) // len(stages))
    if width < 5:
        return (progress_text(status) + tail)[:columns - 1]
    return "  ".join(f"{s.stage_id} {_bar(s.progress, width)} {pct(s.progress):3d}%"
                     for s in stages) + tail


class ProgressPrinter:
    """A progress_callback for wait_for_completion: a bar redrawn in place on a terminal
    (fitted to its width, `columns` if given), else a plain line whenever the progress
    changes (and every PLAIN_PROGRESS_EVERY seconds when it does not)."""

    def __init__(self, out: TextIO, tty: bool, columns: int | None = None):
        self.out = out
        self.tty = tty
        self.columns = columns
        self._last_text = ""
        self._last_time = 0.0

    def __call__(self, status) -> None:
        text = progress_text(status)
        if self.tty:
            line = bar_line(status, self.columns or shutil.get_terminal_size().columns)
            self.out.write("\r" + line.ljust(len(self._last_text)))
            self._last_text = line
            if status.state in OUTCOME_EXIT:
                self.out.write("\n")
        else:
            now = time.monotonic()
            if text != self._last_text or now - self._last_time >= PLAIN_PROGRESS_EVERY:
                self.out.write(text + "\n")
                self._last_text, self._last_time = text, now
        self.out.flush()


def counter_lines(counters) -> list[str]:
    groups: dict[str, list] = {}
    for c in counters:
        groups.setdefault(c.group, []).append(c)
    lines = [f"Counters: {len(counters)}"]
    for group, items in groups.items():
        lines.append(f"  {group}")
        width = max(len(c.name) for c in items)
        lines += [f"    {c.name.ljust(width)} = {c.value}" for c in items]
    return lines


def report_outcome(status) -> int:
    """Print how a finished job ended; return the exit status for it."""
    click.echo(f"job {status.job_id} {status.state} after "
               f"{duration(status.start_time or status.submit_time, status.end_time)}")
    if status.counters:
        click.echo("\n".join(counter_lines(status.counters)))
    if status.state == SUCCEEDED:
        if status.output_path:
            click.echo(f"output: {status.output_path}")
        return 0
    if status.state == FAILED:
        if status.traceback:
            click.echo(status.traceback.rstrip("\n"), err=True)
        click.echo(f"jetshell: error: job {status.job_id} failed: "
                   f"{status.error or 'no reason given'}", err=True)
        return EXIT_FAILED
    click.echo(f"jetshell: error: job {status.job_id} was killed", err=True)
    return EXIT_KILLED


def follow(client, job_id: str) -> int:
    """Show progress until the job ends; exit status of its outcome."""
    out = sys.stdout
    try:
        status = client.wait_for_completion(job_id, ProgressPrinter(out, out.isatty()))
    except KeyboardInterrupt:
        click.echo(f"\njetshell: interrupted; job {job_id} keeps running "
                   f"(stop it with: jetshell kill {job_id})", err=True)
        return EXIT_INTERRUPTED
    return report_outcome(status)
