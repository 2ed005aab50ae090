"""`jetshell`: jobs from the command line (run, submit, status, list, wait, kill, nodes).

Output is for people by default; status, list and nodes also have --json. Every command takes
--config and -D KEY=VALUE before its arguments (after JOBFILE CLASS, everything belongs to the
job). An error is one line `jetshell: error: ...` on stderr, never a traceback; the client
library's log lines show only with -D logging.level=debug.

Exit status: 0 success; 1 an error (bad arguments, unknown job, cluster unreachable...);
2 the job failed; 3 the job was killed; 130 interrupted (the job keeps running).
"""
from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from typing import Callable, Iterable, TextIO

import click

from minijet import daemon
from minijet.client import streaming_cli
from minijet.errors import MinijetError

EXIT_ERROR = 1
EXIT_FAILED = 2
EXIT_KILLED = 3
EXIT_INTERRUPTED = 130
OUTCOME_EXIT = {"succeeded": 0, "failed": EXIT_FAILED, "killed": EXIT_KILLED}
PLAIN_PROGRESS_EVERY = 30.0  # seconds between unchanged progress lines off a terminal


def _client(config_path: str | None, defines: tuple[str, ...]):
    from minijet.client.jetclient import JetClient  # grpc and protos load only when needed

    config = daemon.load_config(config_path, defines)
    if config["logging"]["level"].lower() == "debug":
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    else:  # library warnings (a replica retried...) would break the one-line output
        logging.getLogger().addHandler(logging.NullHandler())
    return JetClient(config)


def with_client(fn: Callable) -> Callable:
    """--config and -D, and a JetClient for the command: fn(client, **args)."""

    @daemon.config_options
    @functools.wraps(fn)
    def command(config_path, defines, **kwargs):
        client = _client(config_path, defines)
        try:
            return fn(client, **kwargs)
        finally:
            client.close()

    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Exit status: 0 success, 1 error, 2 job failed, 3 job killed.")
def cli():
    """Run and manage jobs on a minijet cluster."""


# ---- formatting ----

def _pct(fraction: float) -> int:
    return int(max(0.0, min(1.0, fraction)) * 100)  # floor: 100% only when done


def _when(t: float, with_date: bool = True) -> str:
    if not t:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S", time.localtime(t))


def _duration(start: float, end: float) -> str:
    if not start:
        return "-"
    seconds = (end or time.time()) - start
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def _table(headers: list[str], rows: Iterable[list[str]]) -> str:
    rows = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _as_json(message) -> dict:
    from google.protobuf import json_format

    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def progress_text(status) -> str:
    """`map 45% reduce 0%`, or the job's state while it has no stages yet."""
    if not status.stages:
        return status.state
    return " ".join(f"{s.stage_id} {_pct(s.progress)}%" for s in status.stages)


def _bar(fraction: float, width: int = 20) -> str:
    done = int(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * done + "-" * (width - done) + "]"


class ProgressPrinter:
    """A progress_callback for wait_for_completion: a bar redrawn in place on a terminal,
    else a plain line whenever the progress changes (and now and then when it does not)."""

    def __init__(self, out: TextIO, tty: bool):
        self.out = out
        self.tty = tty
        self._last_text = ""
        self._last_time = 0.0

    def __call__(self, status) -> None:
        text = progress_text(status)
        if self.tty:
            bars = "  ".join(f"{s.stage_id} {_bar(s.progress)} {_pct(s.progress):3d}%"
                             for s in status.stages) or status.state
            line = f"{bars}  {_duration(status.start_time, status.end_time)}"
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


def _counter_lines(counters) -> list[str]:
    groups: dict[str, list] = {}
    for c in counters:
        groups.setdefault(c.group, []).append(c)
    lines = [f"Counters: {len(counters)}"]
    for group, items in groups.items():
        lines.append(f"  {group}")
        width = max(len(c.name) for c in items)
        lines += [f"    {c.name.ljust(width)} = {c.value}" for c in items]
    return lines


def _report_outcome(status) -> int:
    """Print how a finished job ended; return the exit status for it."""
    click.echo(f"job {status.job_id} {status.state} after "
               f"{_duration(status.start_time or status.submit_time, status.end_time)}")
    if status.counters:
        click.echo("\n".join(_counter_lines(status.counters)))
    if status.state == "succeeded":
        if status.output_path:
            click.echo(f"output: {status.output_path}")
        return 0
    if status.state == "failed":
        if status.traceback:
            click.echo(status.traceback.rstrip("\n"), err=True)
        click.echo(f"jetshell: error: job {status.job_id} failed: "
                   f"{status.error or 'no reason given'}", err=True)
        return EXIT_FAILED
    click.echo(f"jetshell: error: job {status.job_id} was killed", err=True)
    return EXIT_KILLED


def _follow(client, job_id: str) -> int:
    """Show progress until the job ends; exit status of its outcome."""
    out = sys.stdout
    try:
        status = client.wait_for_completion(job_id, ProgressPrinter(out, out.isatty()))
    except KeyboardInterrupt:
        click.echo(f"\njetshell: interrupted; job {job_id} keeps running "
                   f"(stop it with: jetshell kill {job_id})", err=True)
        return EXIT_INTERRUPTED
    return _report_outcome(status)


def status_text(st) -> str:
    """A job's status for people: summary, stages, attempts, counters, the user's error."""
    parts = [_table(["job", st.job_id], [
        ["name", st.name], ["user", st.user], ["state", st.state],
        ["submitted", _when(st.submit_time)], ["started", _when(st.start_time)],
        ["finished", _when(st.end_time)], ["duration", _duration(st.start_time, st.end_time)],
        ["output", st.output_path or "-"]])]
    if st.stages:
        parts.append(_table(["stage", "tasks", "succeeded", "running", "failed attempts",
                             "progress"],
                            [[s.stage_id, s.tasks, s.succeeded, s.running, s.failed_attempts,
                              f"{_pct(s.progress)}%"] for s in st.stages]))
    if st.attempts:
        parts.append(_table(["task", "try", "taskserver", "locality", "start", "end", "state",
                             "error"],
                            [[a.task_id, a.attempt_id[len(a.task_id) + 1:] or a.attempt_id,
                              a.taskserver or "-", a.locality or "-",
                              _when(a.start_time, False), _when(a.end_time, False), a.state,
                              a.error] for a in st.attempts]))
    if st.counters:
        parts.append("\n".join(_counter_lines(st.counters)))
    error, trace = st.error, st.traceback
    if st.state == "failed" and not trace:  # the job's reason may be short: show the user's
        failed = [a for a in st.attempts if a.traceback]
        if failed:
            error, trace = error or failed[-1].error, failed[-1].traceback
    if error or trace:
        parts.append("\n".join([f"error: {error}"] + ([trace.rstrip("\n")] if trace else [])))
    return "\n\n".join(parts)


def jobs_table(jobs) -> str:
    rows = []
    for j in jobs:
        total = sum(s.tasks for s in j.stages)
        done = sum(s.succeeded for s in j.stages)
        rows.append([j.job_id, j.name, j.user, _when(j.start_time or j.submit_time),
                     _duration(j.start_time, j.end_time),
                     sum(s.failed_attempts for s in j.stages), f"{done}/{total}", j.state])
    return _table(["job", "name", "user", "started", "duration", "retries", "tasks", "state"],
                  rows)


def nodes_table(servers, now: float) -> str:
    return _table(
        ["taskserver", "host", "rack", "slots", "running", "last heartbeat", "failures",
         "state"],
        [[t.name, t.host, t.rack, t.slots, t.running,
          f"{max(0.0, now - t.last_heartbeat):.1f}s ago" if t.last_heartbeat else "-",
          t.failures, "alive" if t.alive else "lost"] for t in servers])


# ---- commands ----

_JOB_ARGS = {"ignore_unknown_options": True, "allow_interspersed_args": False}


def _submit(client, job_file: str, class_name: str, args, files, command: str) -> str:
    return client.submit(job_file, class_name, list(args), files=list(files),
                         prog=f"jetshell {command} {job_file} {class_name}")


@cli.command(context_settings=_JOB_ARGS)
@with_client
@click.option("--file", "files", multiple=True, metavar="PATH",
              help="Ship this local file with the job (repeatable).")
@click.argument("job_file", metavar="JOBFILE")
@click.argument("class_name", metavar="CLASS")
@click.option("--local", is_flag=True,
              help="Run the job in this process over local files, without a cluster "
                   "(at least 2 map and 2 reduce tasks), to try or debug it.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(client, job_file, class_name, args, files, local):
    """Submit a job, show its progress, wait for it and print its counters.

    ARGS are the job's own (input, output, --reducers N, ...): see
    `jetshell run JOBFILE CLASS --help`. The job id is the last word of the first line."""
    if local:
        from minijet.localrunner import run_command

        return run_command(client.config, job_file, class_name, args, files)
    job_id = _submit(client, job_file, class_name, args, files, "run")
    click.echo(f"{class_name}: submitted job {job_id}")
    return _follow(client, job_id)


@cli.command(context_settings=_JOB_ARGS)
@with_client
@click.option("--file", "files", multiple=True, metavar="PATH",
              help="Ship this local file with the job (repeatable).")
@click.argument("job_file", metavar="JOBFILE")
@click.argument("class_name", metavar="CLASS")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def submit(client, job_file, class_name, args, files):
    """Submit a job and print only its id; do not wait."""
    click.echo(_submit(client, job_file, class_name, args, files, "submit"))


@cli.command()
@with_client
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.argument("job_id", metavar="JOBID")
def status(client, job_id, as_json):
    """Show a job: state, progress per stage, every attempt, the error if it failed."""
    st = client.get_status(job_id)
    if as_json:
        click.echo(json.dumps(_as_json(st), indent=2))
        return
    click.echo(status_text(st))


@cli.command(name="list")
@with_client
@click.option("--all", "all_jobs", is_flag=True, help="Also list old finished jobs.")
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as JSON.")
def list_(client, all_jobs, as_json):
    """List jobs: id, name, user, started, duration, retries, progress, state."""
    jobs = client.list_jobs(all=all_jobs)
    if as_json:
        click.echo(json.dumps([_as_json(j) for j in jobs], indent=2))
        return
    click.echo(jobs_table(jobs))


@cli.command()
@with_client
@click.argument("job_id", metavar="JOBID")
def wait(client, job_id):
    """Wait for a job to end, showing its progress; the exit status is its outcome."""
    return _follow(client, job_id)


@cli.command()
@with_client
@click.argument("job_id", metavar="JOBID")
def kill(client, job_id):
    """Kill a job: its running attempts are stopped and its partial output removed."""
    client.kill_job(job_id)
    click.echo(f"killing job {job_id}")


@cli.command()
@with_client
@click.option("--json", "as_json", is_flag=True, help="Print the taskservers as JSON.")
def nodes(client, as_json):
    """List taskservers: name, host, rack, slots, running attempts, last heartbeat."""
    servers = client.list_taskservers()
    if as_json:
        click.echo(json.dumps([_as_json(t) for t in servers], indent=2))
        return
    click.echo(nodes_table(servers, time.time()))


cli.add_command(streaming_cli.streaming)  # `jetshell streaming` (minijet.streaming)


def main(argv: list[str] | None = None) -> None:
    from minijet.job import HelpRequested

    try:
        code = cli.main(args=argv, prog_name="jetshell", standalone_mode=False)
    except HelpRequested as h:
        click.echo(h.text.rstrip("\n"))
        code = 0
    except MinijetError as e:
        click.echo(f"jetshell: error: {e}", err=True)
        code = EXIT_ERROR
    except BrokenPipeError:  # the reader went away (| head): stop quietly
        sys.stdout = open(os.devnull, "w")  # nothing left to flush at exit
        code = EXIT_ERROR
    except OSError as e:  # a local file (an extra --file, the terminal) cannot be used
        where = f"{e.filename}: " if e.filename else ""
        click.echo(f"jetshell: error: {where}{e.strerror or e}", err=True)
        code = EXIT_ERROR
    except click.UsageError as e:
        where = e.ctx.command_path if e.ctx else "jetshell"
        click.echo(f"jetshell: error: {e.format_message()} (see '{where} --help')", err=True)
        code = EXIT_ERROR
    except click.ClickException as e:
        click.echo(f"jetshell: error: {e.format_message()}", err=True)
        code = EXIT_ERROR
    except (KeyboardInterrupt, click.Abort):
        click.echo("jetshell: interrupted", err=True)
        code = EXIT_INTERRUPTED
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
