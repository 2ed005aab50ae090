"""Running a job in this process over local files, as Hadoop's local job runner does.

`jetshell run --local` (minijet.client.localrun) and `minijet.testing` use it to try and
test a job without a cluster. Only the plumbing differs from the cluster; the task code is
the engine's own:

- splits come from splits.input_splits (as the jobserver makes them), over a `LocalFiles`
  that answers its DFS calls from the local file system; "blocks" are split-size pieces of
  each file;
- every task runs through the TaskHost's run_input_stage / run_consumer_stage (SplitReader,
  the job's operations, partitioner, MapOutputBuffer, ShuffleMerger, grouping);
- a file channel is a real map output file per producer task, and a consumer task reads its
  partition of each as a taskserver serves it (formats.segments.partition_chunks);
- DFS output goes through the TaskHost's DfsOutput (temp file + rename) onto LocalFiles, and
  the job ends with jobdir.commit_output (`_SUCCESS`) or abort_output (nothing left behind).

Stages run one task at a time, parents before children (topological order), so any stage
graph the engine runs runs here. To catch code that works only with one partition, every
file channel gets at least `min_tasks` partitions (so as many consumer tasks) and the input
is cut into at least `min_tasks` splits (when it has that many bytes).

The job's code runs in the caller's process and working directory; a task failing stops the
job with JobFailed (the user's exception is its __cause__).
"""
from __future__ import annotations

import json
import math
import os
import platform
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from minijet import context
from minijet import jobconf as jc
from minijet import jobdir, taskhost
from minijet.dfs import BlockLocation, FileStatus
from minijet.dfs.paths import normalize
from minijet.errors import AlreadyExists, MinijetError, NotFound
from minijet.formats.segments import MAP_OUTPUT, partition_chunks
from minijet.ids import make_attempt_id, make_task_id
from minijet.splits import Split, input_splits

JOB_ID = "job_local"        # Hadoop's local runner's jobs are job_local...
MIN_TASKS = 2                     # map tasks (splits) and partitions, at least
DEFAULT_SPLIT_SIZE = 64 * 1024 ** 2
DEFAULT_SORT_BUFFER = 64 * 1024 ** 2

Counters = dict[tuple[str, str], int]


class JobFailed(MinijetError):
    """The job's code failed in a task (or while its input was sampled): `error` says where,
    then "ExcType: message" as a TaskHost reports it; `traceback` is the traceback;
    `__cause__` the exception itself."""

    def __init__(self, job: str, where: str, cause: BaseException):
        text = str(cause).strip()
        error = f"{type(cause).__name__}: {text.splitlines()[0]}" if text else \
            type(cause).__name__
        super().__init__(f"job {job} failed: {where}: {error}")
        self.error = f"{where}: {error}"
        # as a TaskHost reports it: an error may carry the user's own trace (a streaming
        # command's stderr) in place of our stack
        self.traceback = getattr(cause, "user_traceback", "") or "".join(
            traceback.format_exception(cause))


def local_path(path: str) -> str:
    """A job's input or output argument as an absolute, normalised local path."""
    return normalize(os.path.abspath(os.path.expanduser(path)))


# ---- the file system ----

class _LocalFile:
    """A file being written, with the DFS writer's abort()."""

    def __init__(self, path: str):
        self.path = path
        self._file = open(path, "wb")

    def write(self, data: bytes) -> int:
        return self._file.write(data)

    def close(self) -> None:
        self._file.close()

    def abort(self) -> None:
        self._file.close()
        Path(self.path).unlink(missing_ok=True)

    def __enter__(self) -> "_LocalFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalFiles:
    """The DfsClient calls the engine's job and task code makes, answered from local files
    (paths are absolute local paths). A file's blocks are `block_size` pieces, on no host."""

    def __init__(self, block_size: int = DEFAULT_SPLIT_SIZE):
        self.block_size = max(1, block_size)

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def stat(self, path: str) -> FileStatus:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise NotFound(f"{path} does not exist") from None
        return FileStatus(path, os.path.isdir(path), st.st_size, 1, self.block_size,
                          st.st_mtime)

    def list(self, path: str) -> list[FileStatus]:
        return [self.stat(os.path.join(path, name)) for name in sorted(os.listdir(path))]

    def block_locations(self, path: str) -> list[BlockLocation]:
        size = os.path.getsize(path)
        return [BlockLocation(0, offset, min(self.block_size, size - offset), [])
                for offset in range(0, size, self.block_size)]

    def open(self, path: str):
        return open(path, "rb")

    def mkdir(self, path: str, parents: bool = False) -> None:
        try:
            if parents:
                os.makedirs(path, exist_ok=True)
            else:
                os.mkdir(path)
        except FileExistsError:
            raise AlreadyExists(f"{path} already exists") from None
        except FileNotFoundError:
            raise NotFound(f"cannot make {path}: no such directory") from None

    def create(self, path: str, overwrite: bool = False) -> _LocalFile:
        if not overwrite and os.path.lexists(path):
            raise AlreadyExists(f"{path} already exists")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return _LocalFile(path)

    def rename(self, src: str, dst: str) -> None:
        if os.path.lexists(dst):
            raise AlreadyExists(f"cannot rename {src}: {dst} already exists")
        os.rename(src, dst)

    def delete(self, path: str, recursive: bool = False) -> bool:
        if os.path.isdir(path) and not os.path.islink(path):
            if recursive:
                shutil.rmtree(path)
            else:
                os.rmdir(path)
            return True
        try:
            os.unlink(path)
            return True
        except FileNotFoundError:
            return False


# ---- the job ----

def prepare_conf(conf: jc.JobConf, min_tasks: int = MIN_TASKS) -> jc.JobConf:
    """The JobConf as a task sees it (through JSON, as job.json), every file channel with at
    least `min_tasks` partitions, and its consumers with as many tasks. A total-order
    (range) output keeps its count when it has split points already, or cannot sample any
    (its stage reads a shuffle, not files)."""
    data = json.loads(json.dumps(conf.to_dict()))
    stages = {s["id"]: s for s in data["stages"]}
    for s in data["stages"]:
        out = s["output"]
        fixed = out["partitioner"] == jc.RANGE and (out["split_points"] or not s["input"])
        if out["channel"] == jc.FILE and not fixed:
            out["partitions"] = max(out["partitions"], min_tasks)
    for s in data["stages"]:
        if s["inputs"] and s["tasks"]:
            s["tasks"] = stages[s["inputs"][0]]["output"]["partitions"]
    return jc.JobConf.from_dict(data)


@dataclass
class LocalJobResult:
    conf: jc.JobConf                      # as run (after prepare_conf)
    counters: Counters                    # summed over every task, as the jobserver does
    stage_counters: dict[str, Counters] = field(default_factory=dict)   # per stage id
    tasks: dict[str, int] = field(default_factory=dict)   # stage id -> tasks run
    seconds: float = 0.0

    def counter_list(self) -> list[tuple[str, str, int]]:
        return [(g, n, v) for (g, n), v in sorted(self.counters.items())]


class LocalJobRunner:
    """Runs `conf`'s stages in this process. `new_job()` makes the job object for a task (as
    a TaskHost does once per attempt); `on_task(stage_id, done, total)` is told as each task
    ends; `work_dir` holds map outputs and spills while the job runs."""

    def __init__(self, conf: jc.JobConf, new_job: Callable[[], Any], work_dir: str | Path, *,
                 min_tasks: int = MIN_TASKS, split_size: int = DEFAULT_SPLIT_SIZE,
                 sort_buffer: int = DEFAULT_SORT_BUFFER,
                 on_task: Callable[[str, int, int], None] | None = None):
        self.conf = prepare_conf(conf, min_tasks)
        self.new_job = new_job
        self.work_dir = Path(work_dir)
        self.min_tasks = max(1, min_tasks)
        self.split_size = max(1, split_size)
        self.sort_buffer = sort_buffer
        self.on_task = on_task or (lambda stage, done, total: None)
        self.files = LocalFiles()
        self._map_outputs: dict[str, list[Path]] = {}   # producer stage -> output per task
        self._counters: dict[str, Counters] = {}   # stage id -> summed task counters

    def check_paths(self) -> None:
        """The cluster client's checks and errors: a missing input, an existing output."""
        jobdir.check_paths(self.conf, self.files.exists)

    def splits(self) -> dict[str, list[Split]]:
        """Input stage -> its splits, as the jobserver makes them, with the split size cut
        down so that each stage has at least `min_tasks` splits (given as many bytes)."""
        whole = input_splits(LocalFiles(1 << 62), self.conf, 1 << 62)
        size = self.split_size
        for splits in whole.values():
            total = sum(s.length for s in splits)
            if total:
                size = min(size, math.ceil(total / self.min_tasks))
        files = LocalFiles(size)
        return input_splits(files, self.conf, files.block_size)

    def plan(self) -> jc.JobConf:
        """Check the paths and sample the split points of sorts (as the client does before
        submitting); the JobConf to run."""
        from minijet import builder

        self.check_paths()
        if builder.needs_sampling(self.conf):
            try:
                self.conf = builder.sample_split_points(
                    self.conf, self.new_job(), lambda path: jobdir.file_sizes(self.files, path),
                    self.files.open)
            except MinijetError:
                raise
            except Exception as e:  # the job's code, on a sample of the input
                raise JobFailed(self.conf.name, "sampling split points", e) from e
        return self.conf

    def run(self) -> LocalJobResult:
        """Plan, run every stage, commit the output; on any failure remove the output (it did
        not exist before) and raise (JobFailed for the job's error)."""
        start = time.monotonic()
        self.plan()
        tasks: dict[str, int] = {}
        try:
            for path in self.conf.output_paths():
                jobdir.start_output(self.files, path)
            splits = self.splits()
            for stage in self.conf.topological_order():
                if stage.input:
                    tasks[stage.id] = self._run_input_stage(stage, splits[stage.id])
                else:
                    tasks[stage.id] = self._run_consumer_stage(stage)
            for path in self.conf.output_paths():
                jobdir.commit_output(self.files, path)
        except BaseException:
            for path in self.conf.output_paths():
                jobdir.abort_output(self.files, path)
            raise
        counters: Counters = {("job", "launched_attempts"): sum(tasks.values())}
        for stage_counters in self._counters.values():
            for key, value in stage_counters.items():
                counters[key] = counters.get(key, 0) + value
        return LocalJobResult(self.conf, counters, self._counters, tasks,
                              time.monotonic() - start)

    # ---- tasks ----

    def _run_input_stage(self, stage: jc.StageConf, splits: list[Split]) -> int:
        for index, split in enumerate(splits):
            segments = list(split.segments)
            self._task(stage, index, len(splits), lambda job, output, progress:
                       taskhost.run_input_stage(job, stage, segments, self.files.open, output,
                                                progress))
        return len(splits)

    def _run_consumer_stage(self, stage: jc.StageConf) -> int:
        count = self.conf.task_count(stage.id)
        for index in range(count):
            producers = [p for parent in stage.inputs for p in self._map_outputs.get(parent, [])]
            segments = self._segments(producers, index)
            work = self._task_dir(stage, index)
            self._task(stage, index, count, lambda job, output, progress:
                       taskhost.run_consumer_stage(job, stage, segments, len(producers),
                                                   work / "shuffle", self.sort_buffer, output,
                                                   progress))
        return count

    def _segments(self, outputs: list[Path], partition: int) -> Iterator[tuple[bytes, int]]:
        """Partition `partition` of each map output, read as a taskserver serves it."""
        for path in outputs:
            records, chunks = partition_chunks(path, partition, f"map output {path}")
            yield b"".join(chunks), records

    def _task_dir(self, stage: jc.StageConf, index: int) -> Path:
        return self.work_dir / stage.id / str(index)

    def _task(self, stage: jc.StageConf, index: int, total: int, run: Callable) -> None:
        task_id = make_task_id(JOB_ID, stage.id, index)
        attempt_id = make_attempt_id(task_id, 0)
        work = self._task_dir(stage, index)
        out = stage.output

        progress = taskhost.Progress(lambda fraction, counters: None)
        context.set_attempt(attempt_id, platform.node())
        try:
            job = self.new_job()

            def make_output(combiner, lines=False):  # as the TaskHost's, on local files
                if out.channel == jc.FILE:
                    return taskhost.MapOutputSink(work, out.partitions,
                                                  taskhost.output_partitioner(job, out),
                                                  self.sort_buffer, combiner, lines)
                return taskhost.DfsOutput(self.files, out.path, attempt_id, index,
                                          lambda: True, "lines" if lines else out.writer)

            run(job, make_output, progress)
        except Exception as e:  # the user's code or ours: the job fails with it, as on a cluster
            raise JobFailed(self.conf.name, f"task {task_id}", e) from e
        if out.channel == jc.FILE:
            self._map_outputs.setdefault(stage.id, []).append(work / MAP_OUTPUT)
        stage_counters = self._counters.setdefault(stage.id, {})
        for key, value in progress.counters.items():
            stage_counters[key] = stage_counters.get(key, 0) + value
        self.on_task(stage.id, index + 1, total)


def run_local(conf: jc.JobConf, new_job: Callable[[], Any], **options) -> LocalJobResult:
    """Run a job in this process with a temporary work dir (see LocalJobRunner's options)."""
    with tempfile.TemporaryDirectory(prefix="minijet-local-") as work:
        return LocalJobRunner(conf, new_job, work, **options).run()

