"""Hadoop Streaming jobs: any executables as mapper, combiner and reducer, lines on stdin/stdout.

    jetshell streaming --input /in --output /out --mapper 'mapper.py' --reducer 'reducer.py' \
        --file mapper.py --file reducer.py

As Hadoop Streaming does it:
- the mapper's stdin gets the input lines (the line only, not its offset);
- each line a command writes on stdout is a record: the text up to the first TAB is the key,
  the rest the value (a line without a TAB is a key with value None, written back as the
  bare line);
- the reducer's stdin gets `key<TAB>value` lines sorted by key (all lines of a key together);
  its stdout lines are the job's output;
- a combiner (optional) runs over the mapper's output in sorted batches, as Hadoop runs it
  over each spill; a map-only job (no reducer, or --reducers 0) writes the mapper's lines;
- commands run with /bin/sh in the attempt's working directory, where the taskserver links
  the job's files: a `--file` shipped script is there by its plain name, made executable, and
  that directory comes first on PATH, so `--mapper mapper.py` runs it;
- a command that exits non-zero fails the attempt; the error shows the end of its stderr,
  which also goes to the attempt's log;
- stderr lines `reporter:counter:GROUP,NAME,AMOUNT` increment a user counter (shown by
  `jetshell status`), `reporter:status:MESSAGE` is logged (Hadoop's protocol).

The job file: the client uploads a one-line job file (STUB) that imports StreamingJob, so a
TaskHost loads it like any job, with the commands as the job's parameters. Each operation
is "whole stream" (minijet.job.whole_stream): one call gets the task's entire input and
pipes it through one process (`pipe_lines`: big pipe buffers, a writer thread, chunked
reads; no per-record round trips, no deadlock when the output is large).
"""
from __future__ import annotations

import collections
import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from itertools import chain, islice
from operator import itemgetter
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from minijet import context
from minijet.errors import InvalidArgument, MinijetError
from minijet.formats.textoutput import encode_text
from minijet.job import MapReduceJob, Param, whole_stream

log = logging.getLogger(__name__)

STUB_NAME = "streaming_job.py"
STUB = "from minijet.streaming import StreamingJob  # the job class of `jetshell streaming`\n"
JOB_CLASS = "StreamingJob"

PIPE_SIZE = 1 << 20          # asked of the kernel for each pipe (Linux caps it)
READ_SIZE = 1 << 20          # bytes per read from a command's stdout
WRITE_LINES = 2048           # lines per write to a command's stdin
COUNTERS = "streaming"       # counter group: <role>_input_lines, <role>_output_lines
STDERR_TAIL = 20             # stderr lines kept for the error message
STDERR_LINE = 1000           # characters kept of each
COMBINE_BATCH = 32 << 20     # estimated bytes of mapper output lines sorted per combiner run
_LINE_OVERHEAD = 50          # a str object's bytes beyond its characters (CPython)


class StreamingError(MinijetError):
    """A streaming command failed: it exited non-zero or could not be started.
    `user_traceback` is the end of its stderr: what the user needs, in place of our stack."""

    def __init__(self, message: str, user_traceback: str = ""):
        super().__init__(message)
        self.user_traceback = user_traceback


# ---- lines and records ----

def split_line(line: str) -> tuple[str, str | None]:
    """A command's output line as a record: key up to the first TAB, value the rest; no TAB:
    the whole line is the key and the value is None."""
    key, tab, value = line.partition("\t")
    return (key, value) if tab else (line, None)


def join_pair(key: Any, value: Any) -> str:
    """A record as a command's input line: `key<TAB>value`, or the key alone for None."""
    return f"{key}" if value is None else f"{key}\t{value}"


def _group_lines(groups: Iterable[tuple[Any, Iterable[Any]]]) -> Iterator[str]:
    """A reducer's input lines from grouped records, in their (sorted) order."""
    for key, values in groups:
        prefix = f"{key}\t"
        for value in values:
            yield f"{key}" if value is None else f"{prefix}{value}"


def sorted_batches(lines: Iterable[str], limit: int = COMBINE_BATCH) -> Iterator[list[str]]:
    """`lines` in batches of about `limit` bytes of memory, each sorted. Whole lines are
    sorted (in C), so all lines of a key are together, in key order (as `sort` orders them)."""
    batch: list[str] = []
    size = 0
    for line in lines:
        batch.append(line)
        size += len(line) + _LINE_OVERHEAD
        if size >= limit:
            batch.sort()
            yield batch
            batch, size = [], 0
    if batch:
        batch.sort()
        yield batch


# ---- running a command over a stream of lines ----

def _enlarge_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (AttributeError, OSError):  # not Linux, or above pipe-max-size: the default works
        pass


def command_env(cwd: str) -> dict[str, str]:
    """The command's environment: ours, with `cwd` (the shipped files) first on PATH and this
    interpreter's directory last (so `python3` is found where only a venv has it)."""
    path = os.environ.get("PATH", os.defpath)
    return {**os.environ, "PATH": os.pathsep.join([cwd, path, os.path.dirname(sys.executable)])}


class _Pump:
    """One command's process: a thread writes `lines` to its stdin, another keeps the tail
    of its stderr (copying it to ours), the caller reads its stdout (`lines()`)."""

    def __init__(self, command: str, role: str, lines: Iterable[str], cwd: str | None):
        self.command = command
        self.role = role
        cwd = cwd or os.getcwd()
        try:
            # Its own process group: a failure kills the whole shell pipeline, not only sh.
            self.proc = subprocess.Popen(command, shell=True, cwd=cwd, env=command_env(cwd),
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, bufsize=0,
                                         start_new_session=True)
        except OSError as e:
            raise StreamingError(f"{role} ({command}) cannot be started: {e}") from None
        for pipe in (self.proc.stdin, self.proc.stdout):
            _enlarge_pipe(pipe.fileno())
        self.input_error: BaseException | None = None
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)
        self._counts: dict[tuple[str, str], int] = {}  # from reporter lines, not yet counted
        self._counts_lock = threading.Lock()
        self.lines_in = self.lines_out = 0
        self._writer = threading.Thread(target=self._feed, args=(lines,), daemon=True,
                                        name=f"{role}-stdin")
        self._errors = threading.Thread(target=self._drain_stderr, daemon=True,
                                        name=f"{role}-stderr")
        self._writer.start()
        self._errors.start()

    def _feed(self, lines: Iterable[str]) -> None:
        stdin = self.proc.stdin
        it = iter(lines)
        try:
            while True:
                batch = list(islice(it, WRITE_LINES))
                if not batch:
                    break
                self.lines_in += len(batch)
                batch.append("")  # a newline after the last line too
                data = memoryview(encode_text("\n".join(batch)))
                while data:
                    data = data[stdin.write(data):]
        except BrokenPipeError:
            pass  # the command stopped reading (like `head`): its exit status decides
        except BaseException as e:  # reading the input failed: the command's output is moot
            self.input_error = e
            self.kill()
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def _drain_stderr(self) -> None:
        out = getattr(sys.stderr, "buffer", None)
        for raw in self.proc.stderr:
            if raw.startswith(b"reporter:") and self._reporter(raw):
                continue
            if out is not None:  # the attempt's log (`jetshell logs`)
                try:
                    out.write(raw)
                    out.flush()
                except (OSError, ValueError):
                    out = None
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.stderr_tail.append(line[:STDERR_LINE])

    def _reporter(self, raw: bytes) -> bool:
        """Hadoop Streaming's stderr protocol; False for a line that does not follow it."""
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if line.startswith("reporter:status:"):
            log.info("%s status: %s", self.role, line[len("reporter:status:"):])
            return True
        if not line.startswith("reporter:counter:"):
            return False
        names, _, amount = line[len("reporter:counter:"):].rpartition(",")
        group, _, name = names.partition(",")
        try:
            n = int(amount)
        except ValueError:
            return False
        if not group or not name:
            return False
        with self._counts_lock:
            self._counts[(group, name)] = self._counts.get((group, name), 0) + n
        return True

    def _count(self) -> None:
        """Counts the reporter lines' increments, in the caller's thread (the task's)."""
        if self._counts:
            with self._counts_lock:
                counts, self._counts = self._counts, {}
            for (group, name), n in counts.items():
                context.counter(group, name).increment(n)

    def lines(self) -> Iterator[str]:
        """The command's stdout lines (newline removed; a last line without one included),
        then its outcome: the input's error or StreamingError if it exited non-zero."""
        stdout = self.proc.stdout
        pending: list[bytes] = []  # a line still without its newline
        try:
            while True:
                chunk = stdout.read(READ_SIZE)
                if not chunk:
                    break
                self._count()
                cut = chunk.rfind(b"\n")
                if cut < 0:
                    pending.append(chunk)
                    continue
                data = b"".join(pending + [chunk[:cut]]) if pending else chunk[:cut]
                pending = [chunk[cut + 1:]] if cut + 1 < len(chunk) else []
                # split at newlines, which never fall inside a UTF-8 sequence
                lines = data.decode("utf-8", "surrogateescape").split("\n")
                self.lines_out += len(lines)
                yield from lines
            if pending:
                self.lines_out += 1
                yield b"".join(pending).decode("utf-8", "surrogateescape")
            self._finish()
        finally:
            self.close()

    def _finish(self) -> None:
        code = self.proc.wait()
        self._writer.join()
        self._errors.join()
        self._count()
        context.counter(COUNTERS, f"{self.role}_input_lines").increment(self.lines_in)
        context.counter(COUNTERS, f"{self.role}_output_lines").increment(self.lines_out)
        if self.input_error is not None:
            raise self.input_error
        if code != 0:
            raise self._failure(code)

    def _failure(self, code: int) -> StreamingError:
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        tail = [line for line in self.stderr_tail if line.strip()]
        first = f"{self.role} ({self.command}) {how}"
        if not tail:
            return StreamingError(first + " (no stderr output)")
        return StreamingError(f"{first}: {tail[-1].strip()}",
                              f"{self.role} stderr (last {len(tail)} lines):\n"
                              + "\n".join(tail) + "\n")

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def close(self) -> None:
        """Ends the process if it still runs (the reader stopped early or failed)."""
        if self.proc.returncode is None:
            self.kill()
            self.proc.wait()
        self._writer.join()
        self._errors.join()
        self.proc.stdout.close()
        self.proc.stderr.close()


def pipe_lines(command: str, lines: Iterable[str], role: str = "command",
               cwd: str | None = None) -> Iterator[str]:
    """Run `command` with /bin/sh in `cwd` (default: the current directory), its stdin the
    `lines`, and yield its stdout lines. Raises StreamingError (with the end of its stderr)
    when it exits non-zero, or the error that reading `lines` raised. Stopping early kills it.
    The process starts on the first next()."""
    pump = _Pump(command, role, lines, cwd)
    yield from pump.lines()


# ---- the job ----

class StreamingJob(MapReduceJob):
    """Hadoop Streaming: commands as mapper, combiner and reducer (see minijet.streaming)."""

    params = [
        Param("--mapper-command", help="the mapper: a shell command"),
        Param("--combiner-command", default="", help="the combiner: a shell command"),
        Param("--reducer-command", default="", help="the reducer: a shell command"),
        Param("--file", nargs="*", default=[], metavar="NAME",
              help="names of the files shipped with the job (made executable)"),
    ]

    def _prepare(self) -> None:
        """Shipped files (linked into the working directory) become executable, as Hadoop's
        PipeMapRed makes its program executable. Only links: a local run (the working
        directory is the user's) leaves the user's files alone."""
        for name in self.file:
            path = Path(name)
            if path.is_symlink() and path.is_file():
                mode = path.stat().st_mode
                if mode & 0o111 != 0o111:
                    path.chmod(mode | 0o111)

    @whole_stream
    def mapper(self, records: Iterable[tuple[Any, str]]) -> Iterator[tuple[str, str | None]]:
        self._prepare()
        lines = pipe_lines(self.mapper_command, map(itemgetter(1), records), "mapper")
        if self.combiner_command and self.reducers > 0:
            lines = chain.from_iterable(pipe_lines(self.combiner_command, batch, "combiner")
                                        for batch in sorted_batches(lines))
        yield from map(split_line, lines)

    @whole_stream
    def reducer(self, groups: Iterable[tuple[Any, Iterable[Any]]]
                ) -> Iterator[tuple[str, str | None]]:
        self._prepare()
        yield from map(split_line, pipe_lines(self.reducer_command, _group_lines(groups),
                                              "reducer"))


def job_args(inputs: Sequence[str], output: str, mapper: str, combiner: str = "",
             reducer: str = "", reducers: int = 1, files: Sequence[str] = ()) -> list[str]:
    """StreamingJob's arguments for a `jetshell streaming` command line. No reducer command
    means a map-only job (as does reducers == 0)."""
    if not mapper.strip():
        raise InvalidArgument("streaming: --mapper must be a command")
    if not inputs:
        raise InvalidArgument("streaming: give at least one --input path")
    if STUB_NAME in {os.path.basename(f) for f in files}:
        raise InvalidArgument(f"streaming: a shipped file cannot be named {STUB_NAME}")
    # option=value: a command starting with "-" stays a value
    args = [*inputs, output, f"--reducers={reducers if reducer.strip() else 0}",
            f"--mapper-command={mapper}", f"--combiner-command={combiner}",
            f"--reducer-command={reducer}"]
    if files:
        args += ["--file", *[os.path.basename(f) for f in files]]
    return args


@contextlib.contextmanager
def stub_job_file() -> Iterator[str]:
    """The job file of a streaming job (STUB), in a temporary directory while in use."""
    with tempfile.TemporaryDirectory(prefix="minijet-streaming-") as tmp:
        stub = Path(tmp) / STUB_NAME
        stub.write_text(STUB)
        yield str(stub)


def submit(client, args: Sequence[str], files: Sequence[str] = ()) -> str:
    """Submit a streaming job (`job_args`) through `client` (a JetClient); return its id.
    The job file uploaded with the `files` is the one-line STUB."""
    with stub_job_file() as stub:
        return client.submit(stub, JOB_CLASS, list(args), files=list(files),
                             prog="jetshell streaming")

