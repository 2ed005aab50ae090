"""Testing a job class with pytest, without a cluster.

    from minijet.testing import run_job
    from wordcount import WordCount

    def test_counts_words():
        out = run_job(WordCount, input_lines=["a b", "b"])
        assert sorted(out) == [("a", "1"), ("b", "2")]

The job runs in the test's process through the local runner (minijet.localrunner), which
runs the engine's own task code: input split by the line rule, the job's methods, the
partitioner, map output buffer and combiner, the sorted shuffle and grouping, the text
output writer. It runs at least `min_tasks` (2) map tasks and 2 reduce tasks, so a job that
only works when one task sees all the data fails here, not on the cluster. The job's
parameters go through JSON as on a cluster (a tuple comes back as a list).

Output comes back as the output files hold it: text, or binary records. `run_job` returns
(key, value) pairs, part files in order (each part sorted by key when the job reduces): for
text output, strings, each line split at its first TAB (value None for a line without one);
for "records" output (JobBuilder's writer="records"), the pairs with their Python types.
`run` returns a LocalRun with each part file's contents, the counters and the number of
tasks per stage too. Undecodable input bytes come back as the same lone surrogates
("surrogateescape") the job saw.

Input: `input_lines` (str or bytes, one line each, written to a temporary file) or `inputs`
(local files or directories), then `args` are the job's other arguments (e.g.
["--min-count", "2"]); or `args` alone are all of its arguments (for a JobBuilderJob whose
parameters are not `input... output`). A task's exception is raised as it is, with the
job's traceback.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from minijet import jobconf as jc
from minijet import localrunner
from minijet.errors import InvalidArgument
from minijet.formats.recordfile import RecordsSplitReader
from minijet.formats.textoutput import encode_text
from minijet.job import build_conf
from minijet.jobdir import is_hidden

__all__ = ["run_job", "run", "LocalRun", "read_output", "parse_line"]

SORT_BUFFER = 1024 ** 2   # small, so that a test's few thousand records already spill


@dataclass
class LocalRun:
    # output file path -> its lines (text output) or its (key, value) records ("records"
    # output, with their Python types), part files in order
    parts: dict[str, list]
    counters: dict[tuple[str, str], int]      # (group, name) -> value, summed over tasks
    tasks: dict[str, int] = field(default_factory=dict)   # stage id -> tasks run
    text: set[str] = field(default_factory=set)           # which parts are text

    @property
    def lines(self) -> list[str]:
        """Every line of the text output files, in order."""
        return [line for path, lines in self.parts.items() if path in self.text
                for line in lines]

    @property
    def records(self) -> list[tuple[Any, Any]]:
        """Every output record, in order: text lines split at the first TAB."""
        return [parse_line(r) if path in self.text else r
                for path, items in self.parts.items() for r in items]

    def counter(self, name: str, group: str = "task") -> int:
        return self.counters.get((group, name), 0)


def parse_line(line: str) -> tuple[str, str | None]:
    """A text output line as (key, value): split at the first TAB."""
    key, tab, value = line.partition("\t")
    return (key, value) if tab else (key, None)


def read_output(path: str | os.PathLike, writer: str = "text") -> dict[str, list]:
    """The contents of each file of a job's output directory (part files in name order, not
    _SUCCESS or other hidden files): for text, its lines decoded as the job's input is
    (UTF-8, surrogateescape); for "records", its (key, value) pairs."""
    parts: dict[str, list] = {}
    for name in sorted(os.listdir(path)):
        if is_hidden(name):
            continue
        if writer == "records":
            with open(os.path.join(path, name), "rb") as f:
                size = os.fstat(f.fileno()).st_size
                parts[os.path.join(path, name)] = list(RecordsSplitReader(f, 0, size))
        else:
            data = Path(path, name).read_bytes().decode("utf-8", "surrogateescape")
            lines = data.split("\n")   # only "\n" ends a line, as for the job's input
            if lines[-1] == "":
                lines.pop()
            parts[os.path.join(path, name)] = lines
    return parts


def run_job(job_class: type, args: Sequence[str] = (), **options) -> list[tuple[str, Any]]:
    """Run `job_class` locally and return its output records; see `run` for the options."""
    return run(job_class, args, **options).records


def run(job_class: type, args: Sequence[str] = (), *,
        input_lines: Iterable[str | bytes] | None = None,
        inputs: Sequence[str | os.PathLike] | None = None,
        output: str | os.PathLike | None = None, min_tasks: int = localrunner.MIN_TASKS,
        sort_buffer: int = SORT_BUFFER) -> LocalRun:
    """Run `job_class` (a job class, not an instance) in this process over `input_lines` or
    the local `inputs`, writing to `output` (kept; it must not exist) or to a temporary
    directory: the job's arguments are the inputs, the output, then `args`. Without
    input_lines and inputs, `args` are all of the job's arguments (local paths)."""
    if isinstance(args, str):
        raise InvalidArgument(f"args must be a list of strings, not one string: {args!r}")
    if input_lines is not None and inputs is not None:
        raise InvalidArgument("give input_lines or inputs, not both")
    with tempfile.TemporaryDirectory(prefix="minijet-test-") as tmp:
        if input_lines is not None:
            inputs = [_write_lines(Path(tmp) / "input.txt", input_lines)]
        if inputs is not None:
            out = os.fspath(output) if output is not None else os.path.join(tmp, "output")
            args = [*map(os.fspath, inputs), out, *args]
        elif output is not None:
            raise InvalidArgument("output goes with input_lines or inputs; else give it "
                                  "in args")
        conf = build_conf(job_class, list(args), job_file=f"{job_class.__module__}.py",
                          prog=job_class.__name__, resolve_path=localrunner.local_path)

        def new_job():
            return job_class.from_params(runner.conf.params)  # the params after JSON

        runner = localrunner.LocalJobRunner(conf, new_job, Path(tmp) / "work",
                                            min_tasks=min_tasks, sort_buffer=sort_buffer)
        try:
            result = runner.run()
        except localrunner.JobFailed as e:
            failure = e.__cause__
        else:
            done = LocalRun({}, result.counters, result.tasks)
            for stage in result.conf.stages:
                if stage.output.channel == jc.DFS:
                    parts = read_output(stage.output.path, stage.output.writer)
                    done.parts.update(parts)
                    if stage.output.writer == "text":
                        done.text.update(parts)
            return done
    raise failure  # outside the except block: the job's exception as it was, no JobFailed


def _write_lines(path: Path, lines: Iterable[str | bytes]) -> str:
    with open(path, "wb") as f:
        for line in lines:
            f.write((line if isinstance(line, bytes) else encode_text(line)) + b"\n")
    return os.fspath(path)
