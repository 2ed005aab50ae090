"""`jetshell run --local` and `jetshell streaming --local`: compile a job against local files
as `jetshell run` compiles it against the DFS, run it in this process with the local runner
(minijet.localrunner), print its progress and counters.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import click

from minijet import streaming
from minijet.client import console
from minijet.client.jobcompile import compile_job
from minijet.errors import MinijetError
from minijet.job import load_job
from minijet.localrunner import JOB_ID, JobFailed, LocalFiles, LocalJobRunner, local_path


def run_command(config, job_file: str, class_name: str, args, files=(), prog: str = "",
                dry_run: bool = False) -> int:
    """Compile the job as `jetshell run` does (local paths instead of DFS ones), run it here
    and print its progress and counters; the exit status (0, or the console's "job failed").
    Errors before the job runs (bad arguments, missing input, existing output) raise.
    `dry_run` prints the JobConf as it would run here (at least 2 partitions) instead."""

    def failed(e: JobFailed) -> int:
        click.echo(e.traceback.rstrip("\n"), err=True)
        click.echo(f"jetshell: error: job {JOB_ID} failed: {e.error}", err=True)
        return console.EXIT_FAILED

    try:  # the client's checks, on local files
        conf = compile_job(LocalFiles(), job_file, class_name, list(args), list(files),
                           prog=prog or f"jetshell run --local {job_file} {class_name}",
                           resolve_path=local_path)
    except MinijetError:
        raise
    except Exception as e:  # the job's code failed: build_job, or a sort's sampling
        return failed(JobFailed(class_name, "compiling the job", e))

    def on_task(stage: str, done: int, total: int) -> None:
        click.echo(f"{stage} {done}/{total} tasks")

    with tempfile.TemporaryDirectory(prefix="minijet-local-") as work:
        # a job cache as a taskserver makes one: tasks import the job (and shipped modules)
        # from there, so a module not shipped with --file is missed here too
        cache = Path(work) / "job"
        cache.mkdir()
        for path in [job_file, *files]:
            shutil.copy(path, cache / os.path.basename(path))
        local = LocalJobRunner(conf, lambda: load_job(cache, local.conf), work,
                               split_size=config["dfs"]["block_size"],
                               sort_buffer=config["taskserver"]["sort_buffer"], on_task=on_task)
        start = time.monotonic()
        try:
            if dry_run:
                click.echo(json.dumps(local.plan().to_dict(), indent=2))
                return 0
            click.echo(f"{class_name}: running job {JOB_ID} in this process (no cluster)")
            result = local.run()
        except JobFailed as e:
            return failed(e)
    click.echo(f"job {JOB_ID} succeeded after {time.monotonic() - start:.1f}s")
    click.echo("\n".join(console.counter_lines(
        [_Counter(g, n, v) for g, n, v in result.counter_list()])))
    click.echo(f"output: {','.join(result.conf.output_paths())}")
    return 0


def run_streaming(config, args: Sequence[str], files: Sequence[str] = ()) -> int:
    """Run a streaming job (streaming.job_args, local paths) in this process, as
    `jetshell run --local` runs a job; commands run in the current directory."""
    with streaming.stub_job_file() as stub:
        return run_command(config, stub, streaming.JOB_CLASS, list(args), list(files),
                           prog="jetshell streaming --local")


@dataclass
class _Counter:  # the shape of a job_pb2.Counter, for the console's counter lines
    group: str
    name: str
    value: int
