"""`jetshell streaming`: a Hadoop Streaming job from the command line (see minijet.streaming).

Registered on jetshell's group by jetshell.py; the progress display and exit statuses are
the console module's.
"""
from __future__ import annotations

import click

from minijet import daemon
from minijet.client import console


@click.command(epilog="Example: jetshell streaming --input /books --output /counts "
                      "--mapper mapper.py --reducer reducer.py "
                      "--file mapper.py --file reducer.py")
@daemon.config_options
@click.option("--input", "inputs", multiple=True, required=True, metavar="PATH",
              help="Input file or directory in the DFS (repeatable).")
@click.option("--output", required=True, metavar="PATH",
              help="Output directory in the DFS; it must not exist.")
@click.option("--mapper", required=True, metavar="CMD",
              help="Mapper command: input lines on stdin, key<TAB>value lines on stdout.")
@click.option("--combiner", default="", metavar="CMD",
              help="Combiner command, run over sorted batches of the mapper's output.")
@click.option("--reducer", default="", metavar="CMD",
              help="Reducer command: key<TAB>value lines sorted by key on stdin; its stdout "
                   "is the output. Without one the job is map-only.")
@click.option("--reducers", type=click.IntRange(min=0), default=1, show_default=True,
              metavar="N", help="Number of reduce tasks; 0 makes a map-only job.")
@click.option("--file", "files", multiple=True, metavar="PATH",
              help="Ship this local file with the job (repeatable); commands find it in "
                   "their working directory by its plain name, executable.")
@click.option("--local", is_flag=True,
              help="Run the job in this process over local files, without a cluster; "
                   "commands run in the current directory.")
def streaming(config_path, defines, inputs, output, mapper, combiner, reducer, reducers,
              files, local):
    """Run executables as mapper, combiner and reducer, as Hadoop Streaming does.

    Commands run with /bin/sh in the task's working directory (which is first on PATH);
    a line's key is its text up to the first TAB. Shows progress and waits, like `run`."""
    from minijet import streaming as streaming_job

    args = streaming_job.job_args(inputs, output, mapper, combiner, reducer, reducers, files)
    if local:
        from minijet.client.localrun import run_streaming

        return run_streaming(console.load_config(config_path, defines), args, files)
    client = console.make_client(config_path, defines)
    try:
        job_id = streaming_job.submit(client, args, files)
        click.echo(f"streaming: submitted job {job_id}")
        return console.follow(client, job_id)
    finally:
        client.close()
