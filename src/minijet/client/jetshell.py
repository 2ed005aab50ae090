"""`jetshell`: jobs from the command line (run, submit, status, list, wait, kill, logs, nodes).

Output is for people by default; status, list and nodes also have --json (the protocol's
messages, plus derived fields: per job and attempt, bytes and records in/out and the seconds
spent reading, processing and writing, from the engine's counters). Every command takes
--config and -D KEY=VALUE before its arguments (after JOBFILE CLASS, everything belongs to the
job). An error is one line `jetshell: error: ...` on stderr, never a traceback; the client
library's log lines show only with -D logging.level=debug.

Every command names its user ($USER) to the servers; only a job's owner and security.admins
may kill it or read its logs (minijet.acl), anyone may see its status.

Exit status: 0 success; 1 an error (bad arguments, unknown job, permission denied, cluster
unreachable...); 2 the job failed; 3 the job was killed; 130 interrupted (the job keeps
running). The exit statuses, progress display and following a job are the console module's,
shared with `jetshell streaming` and the --local runs.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import time
from typing import Callable, Iterable

import click

from minijet import daemon
from minijet.client import console, streaming_cli
from minijet.errors import MinijetError, NotFound
from minijet.ids import is_job_id
from minijet.quickexit import exit_now
from minijet.states import FINAL_STATES

ENGINE = "task"              # counter group of the engine's task counters (runner.GROUP)


def with_client(fn: Callable) -> Callable:
    """--config and -D, and a JetClient for the command: fn(client, **args)."""

    @daemon.config_options
    @functools.wraps(fn)
    def command(config_path, defines, **kwargs):
        client = console.make_client(config_path, defines)
        try:
            return fn(client, **kwargs)
        except MinijetError as e:
            raise daemon.unreached(client.config, e) from None
        finally:
            client.close()

    return command


@daemon.config_group(context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Exit status: 0 success; 1 error (bad arguments, unknown job, permission "
                    "denied, no logs, cluster unreachable); 2 the job failed; 3 the job was "
                    "killed; 130 interrupted (a job being waited for keeps running).")
def cli():
    """Run and manage jobs on a minijet cluster."""


class JobIdType(click.ParamType):
    """A job id as the jobserver makes them, checked before any server is asked."""
    name = "JOBID"

    def convert(self, value, param, ctx):
        if is_job_id(value):
            return value
        self.fail(f"{value!r} is not a job id (they look like job_20260101120000_0001)",
                  param, ctx)


JOB_ID = JobIdType()


# ---- formatting ----

def _when(t: float, with_date: bool = True) -> str:
    if not t:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S", time.localtime(t))


def _size(n: float) -> str:
    """Bytes for people: 512B, 8.0KiB, 1.2MiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{int(n)}B" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}TiB"


def _engine(counters) -> dict[str, int]:
    return {c.name: c.value for c in counters if c.group == ENGINE}


def attempt_metrics(a, now: float) -> dict:
    """What an attempt read and wrote (DFS input or shuffle in; DFS output or map output
    out) and where its time went (seconds), from its counters."""
    c = _engine(a.counters)
    end = a.end_time or now
    return {
        "duration": round(max(0.0, end - a.start_time), 3) if a.start_time else 0.0,
        "input_records": c.get("input_records", 0),
        "input_bytes": c.get("input_bytes", c.get("shuffle_bytes", 0)),
        "output_records": c.get("output_records", c.get("map_output_records", 0)),
        "output_bytes": c.get("output_bytes", c.get("map_output_bytes", 0)),
        **{f"{phase}_time": c.get(f"{phase}_time_us", 0) / 1e6
           for phase in ("read", "process", "write")},
    }


def job_metrics(j, now: float) -> dict:
    """A job's progress in tasks, retries, DFS bytes read and written, and the time its
    tasks spent reading, processing and writing (of the attempts that count), from its
    stages and counters (so also for `list`, which has no attempts)."""
    c = _engine(j.counters)
    lost = sum(x.value for x in j.counters if (x.group, x.name) == ("job", "lost_attempts"))
    return {
        "duration": round(max(0.0, (j.end_time or now) - j.start_time), 3)
        if j.start_time else 0.0,
        "tasks": sum(s.tasks for s in j.stages),
        "tasks_succeeded": sum(s.succeeded for s in j.stages),
        "retries": sum(s.failed_attempts for s in j.stages) + lost,
        "bytes_read": c.get("input_bytes", 0),
        "bytes_written": c.get("output_bytes", 0),
        "records_written": c.get("output_records", 0),
        **{f"{phase}_time": c.get(f"{phase}_time_us", 0) / 1e6
           for phase in ("read", "process", "write")},
    }


def status_json(st, now: float) -> dict:
    """`status --json`: the JobStatus message with job_metrics, and attempt_metrics on each
    attempt; records_read counts the input records of the input stages' counted attempts."""
    d = _as_json(st) | job_metrics(st, now)
    d["records_read"] = 0
    for a, ad in zip(st.attempts, d["attempts"]):
        ad.update(attempt_metrics(a, now))
        c = _engine(a.counters)
        if a.state == "succeeded" and "input_bytes" in c:
            d["records_read"] += c.get("input_records", 0)
    return d


def _table(headers: list[str], rows: Iterable[list[str]]) -> str:
    rows = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _as_json(message) -> dict:
    from google.protobuf import json_format

    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def _seconds(t: float) -> str:
    return f"{t:.2f}s"


def status_text(st, now: float | None = None) -> str:
    """A job's status for people: summary, stages, attempts, counters, the user's error."""
    now = time.time() if now is None else now
    m = job_metrics(st, now)
    parts = [_table(["job", st.job_id], [
        ["name", st.name], ["user", st.user], ["state", st.state],
        ["submitted", _when(st.submit_time)], ["started", _when(st.start_time)],
        ["finished", _when(st.end_time)],
        ["duration", console.duration(st.start_time, st.end_time)],
        ["tasks", f"{m['tasks_succeeded']}/{m['tasks']} done, {m['retries']} retries"],
        ["failures", _failures_text(st.counters)],
        ["read", _size(m["bytes_read"])], ["written", _size(m["bytes_written"])],
        ["task time", f"read {_seconds(m['read_time'])}, process "
                      f"{_seconds(m['process_time'])}, write {_seconds(m['write_time'])}"],
        ["output", st.output_path or "-"]])]
    if st.stages:
        parts.append(_table(["stage", "tasks", "succeeded", "running", "failed attempts",
                             "progress"],
                            [[s.stage_id, s.tasks, s.succeeded, s.running, s.failed_attempts,
                              f"{console.pct(s.progress)}%"] for s in st.stages]))
    if st.attempts:
        rows = []
        for a in st.attempts:
            am = attempt_metrics(a, now)
            io = [_size(am["input_bytes"]), _size(am["output_bytes"])] + [
                _seconds(am[f"{p}_time"]) for p in ("read", "process", "write")] \
                if a.counters else ["-"] * 5
            try_ = a.attempt_id[len(a.task_id) + 1:] or a.attempt_id
            rows.append([a.task_id, f"{try_} (backup)" if a.speculative else try_,
                         a.taskserver or "-", a.locality or "-", _when(a.start_time, False),
                         _when(a.end_time, False), *io,
                         f"{a.state} ({a.failure} error)" if a.failure else a.state, a.error])
        parts.append(_table(["task", "try", "taskserver", "locality", "start", "end", "in",
                             "out", "read", "process", "write", "state", "error"], rows))
    if st.counters:
        parts.append("\n".join(console.counter_lines(st.counters)))
    error, trace = st.error, st.traceback
    if st.state == "failed" and not trace:  # the job's reason may be short: show the user's
        failed = [a for a in st.attempts if a.traceback]
        if failed:
            error, trace = error or failed[-1].error, failed[-1].traceback
    if error or trace:
        parts.append("\n".join([f"error: {error}"] + ([trace.rstrip("\n")] if trace else [])))
    if st.unisolated_taskservers:
        parts.append(isolation_note(st.unisolated_taskservers))
    return "\n\n".join(parts)


def isolation_note(taskservers) -> str:
    """Said of a job some of whose attempts ran as their taskserver's own user."""
    return ("note: attempts of this job ran without isolation from other jobs on taskservers "
            f"{', '.join(taskservers)} (not running as root, or with "
            "taskserver.isolate_tasks off)")


def _failures_text(counters) -> str:
    """Failed and lost attempts by class (minijet.failures): only user errors use up a
    task's attempts."""
    c = {x.name: x.value for x in counters if x.group == "job"}
    return (f"attempts failed by user errors {c.get('user_failed_attempts', 0)}, "
            f"by system errors {c.get('system_failed_attempts', 0)}")


def jobs_table(jobs, now: float | None = None) -> str:
    """`list`: progress is tasks done/total; read and written are the job's DFS bytes."""
    now = time.time() if now is None else now
    rows = []
    for j in jobs:
        m = job_metrics(j, now)
        rows.append([j.job_id, j.name, j.user, _when(j.start_time or j.submit_time),
                     console.duration(j.start_time, j.end_time, now), m["retries"],
                     f"{m['tasks_succeeded']}/{m['tasks']}", _size(m["bytes_read"]),
                     _size(m["bytes_written"]), j.state])
    return _table(["job", "name", "user", "started", "duration", "retries", "progress",
                   "read", "written", "state"], rows)


def nodes_table(servers, now: float) -> str:
    """`blacklists`: jobs that stopped using it (3 failed attempts each) lately; a
    greylisted one gets no new tasks (see minijet.jobserver.badnodes). `isolated`: it runs
    each task as its job's user (it runs as root); if not, as itself: jobs not isolated."""
    return _table(
        ["taskserver", "host", "rack", "slots", "running", "last heartbeat", "failures",
         "blacklists", "isolated", "state"],
        [[t.name, t.host, t.rack, t.slots, t.running,
          f"{max(0.0, now - t.last_heartbeat):.1f}s ago" if t.last_heartbeat else "-",
          t.failures, t.blacklists,
          "yes" if t.isolated else "no",
          ("alive" if t.alive else "lost") + (
              f", greylisted since {_when(t.greylisted_since)}" if t.greylisted_since else "")]
         for t in servers])


# ---- commands ----

_JOB_ARGS = {"ignore_unknown_options": True, "allow_interspersed_args": False}


def _submit(client, job_file: str, class_name: str, args, files, command: str) -> str:
    return client.submit(job_file, class_name, list(args), files=list(files),
                         prog=f"jetshell {command} {job_file} {class_name}")


def _job_command(fn):
    """A command taking JOBFILE CLASS [ARGS]... (the job's own) and --file: run, submit."""
    for decorate in (click.argument("class_name", metavar="CLASS"),
                     click.argument("job_file", metavar="JOBFILE"),
                     click.option("--file", "files", multiple=True, metavar="PATH",
                                  help="Ship this local file with the job (repeatable)."),
                     with_client, cli.command(context_settings=_JOB_ARGS)):
        fn = decorate(fn)
    return fn


@_job_command
@click.option("--local", is_flag=True,
              help="Run the job in this process over local files, without a cluster "
                   "(at least 2 map and 2 reduce tasks), to try or debug it.")
@click.option("--dry-run", is_flag=True,
              help="Print the compiled job configuration (JSON: stages, channels, "
                   "operations, sampled split points) and exit without submitting.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(client, job_file, class_name, args, files, local, dry_run):
    """Submit a job, show its progress, wait for it and print its counters.

    ARGS are the job's own (input, output, --reducers N, ...): see
    `jetshell run JOBFILE CLASS --help`. The job id is the last word of the first line."""
    if local:
        from minijet.client.localrun import run_command

        return run_command(client.config, job_file, class_name, args, files, dry_run=dry_run)
    if dry_run:
        conf = client.compile(job_file, class_name, list(args), list(files),
                              prog=f"jetshell run {job_file} {class_name}")
        click.echo(json.dumps(conf.to_dict(), indent=2))
        return 0
    job_id = _submit(client, job_file, class_name, args, files, "run")
    click.echo(f"{class_name}: submitted job {job_id}")
    page = job_page(client.config, job_id)
    if page:
        click.echo(f"watch it at {page}")
    return console.follow(client, job_id)


def job_page(config, job_id: str) -> str:
    """The URL of the job's page on the jobserver ("" if the configuration cannot tell)."""
    from minijet import net
    from minijet.web.server import web_url

    base = web_url(config, config["jobserver"]["http_address"],
                   net.split_address(config["jobserver"]["address"])[0])
    return f"{base}job?id={job_id}" if base else ""


@_job_command
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def submit(client, job_file, class_name, args, files):
    """Submit a job and print only its id; do not wait."""
    click.echo(_submit(client, job_file, class_name, args, files, "submit"))


@cli.command()
@with_client
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.argument("job_id", metavar="JOBID", type=JOB_ID)
def status(client, job_id, as_json):
    """Show a job: state, progress per stage, every attempt (with its bytes in and out and
    the time it spent reading, processing and writing), the error if it failed."""
    st = client.get_status(job_id)
    if as_json:
        click.echo(json.dumps(status_json(st, time.time()), indent=2))
        return
    click.echo(status_text(st))


@cli.command(name="list")
@with_client
@click.option("--all", "all_jobs", is_flag=True, help="Also list old finished jobs.")
@click.option("--limit", type=click.IntRange(min=0), default=0,
              help="Finished jobs to list, those that ended last (default: 100).")
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as JSON.")
def list_(client, all_jobs, limit, as_json):
    """List jobs: id, name, user, started, duration, retries, progress (tasks done/total),
    bytes read and written, state. Every unfinished job, and the finished ones that ended
    last (--limit); without --all, only those that ended within a day."""
    jobs = client.list_jobs(all=all_jobs, limit=limit)
    if as_json:
        now = time.time()
        click.echo(json.dumps([_as_json(j) | job_metrics(j, now) for j in jobs], indent=2))
        return
    click.echo(jobs_table(jobs))


@cli.command()
@with_client
@click.argument("job_id", metavar="JOBID", type=JOB_ID)
def wait(client, job_id):
    """Wait for a job to end, showing its progress; the exit status is its outcome
    (0 succeeded, 2 failed, 3 killed)."""
    return console.follow(client, job_id)


@cli.command()
@with_client
@click.argument("job_id", metavar="JOBID", type=JOB_ID)
def kill(client, job_id):
    """Kill a job: its running attempts are stopped and its partial output removed.
    A job that already ended is left as it is (exit status 0). Only the job's owner and
    security.admins may."""
    state = client.get_status(job_id).state
    if state in FINAL_STATES:
        click.echo(f"job {job_id} already {state}")
        return
    client.kill_job(job_id)
    click.echo(f"killing job {job_id}")


@cli.command()
@with_client
@click.argument("job_id", metavar="JOBID", type=JOB_ID)
@click.argument("task", metavar="[TASK]", required=False, default="")
def logs(client, job_id, task):
    """Print the stdout and stderr of a job's task attempts: all of them, or those of TASK
    (a stage, task or attempt id, with or without the job id: map, map_00001,
    map_00001_1). Finished jobs too, while the taskservers keep their logs
    (taskserver.log_retention). Only the job's owner and security.admins may. Exit status 1
    if none are available."""
    found = client.logs(job_id, task)
    if not found:
        raise NotFound(f"job {job_id} has no task attempts yet")
    if all(entry.missing for entry in found):
        raise NotFound(f"no logs of job {job_id}{f' task {task}' if task else ''}: "
                       f"{found[0].missing}")
    for entry in found:
        a = entry.attempt
        head = f"{a.attempt_id} ({a.state} on {a.taskserver})"
        if entry.missing:
            click.echo(f"==> {head}: no logs: {entry.missing} <==")
            continue
        for stream, text in (("stdout", entry.stdout), ("stderr", entry.stderr)):
            click.echo(f"==> {head} {stream} <==")
            if text:
                click.echo(text.rstrip("\n"))


@cli.command()
@with_client
@click.option("--json", "as_json", is_flag=True, help="Print the taskservers as JSON.")
def nodes(client, as_json):
    """List taskservers: name, host, rack, slots, running attempts, last heartbeat, failed
    attempts, jobs that blacklisted it, whether it runs tasks as their jobs' users,
    greylisted."""
    servers = client.list_taskservers()
    if as_json:
        click.echo(json.dumps([_as_json(t) for t in servers], indent=2))
        return
    click.echo(nodes_table(servers, time.time()))


cli.add_command(streaming_cli.streaming)  # `jetshell streaming` (minijet.streaming)


def main(argv: list[str] | None = None) -> None:
    """Run a command: of `argv` for a caller in this process (it raises SystemExit with the
    exit status), else of the command line, ending the process at once when it is done."""
    from minijet.job import HelpRequested

    try:
        code = cli.main(args=argv, prog_name="jetshell", standalone_mode=False)
    except HelpRequested as h:
        click.echo(h.text.rstrip("\n"))
        code = 0
    except MinijetError as e:
        click.echo(f"jetshell: error: {e}", err=True)
        code = console.EXIT_ERROR
    except BrokenPipeError:  # the reader went away (| head): stop quietly
        sys.stdout = open(os.devnull, "w")  # nothing left to flush at exit
        code = console.EXIT_ERROR
    except OSError as e:  # a local file (an extra --file, the terminal) cannot be used
        where = f"{e.filename}: " if e.filename else ""
        click.echo(f"jetshell: error: {where}{e.strerror or e}", err=True)
        code = console.EXIT_ERROR
    except click.UsageError as e:
        where = e.ctx.command_path if e.ctx else "jetshell"
        click.echo(f"jetshell: error: {e.format_message()} (see '{where} --help')", err=True)
        code = console.EXIT_ERROR
    except click.ClickException as e:
        click.echo(f"jetshell: error: {e.format_message()}", err=True)
        code = console.EXIT_ERROR
    except (KeyboardInterrupt, click.Abort):
        click.echo("jetshell: interrupted", err=True)
        code = console.EXIT_INTERRUPTED
    if argv is None:   # the process is this command: nothing is left to do
        exit_now(code or 0)
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
