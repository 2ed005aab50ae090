"""`python -m minijet.taskhost`: the process running one task attempt for its taskserver.

    python -m minijet.taskhost --taskserver ADDRESS --attempt ATTEMPT_ID \
        --job-cache DIR --work-dir DIR [--attempts-dir DIR] [--config FILE]

The attempt is described by `task.json` in the work dir (a TaskDescription: see
minijet.taskdesc); the job's files (job.json, the user's .py: see minijet.jobdir) are in the
job cache. `--config` is the taskserver's own effective
configuration (it writes config.json into the work dir), so the TaskHost reaches the same DFS
with the same settings; with the job's DFS credential from credentials.json (see
minijet.taskcreds) when it has one, instead of the cluster token. Exit 0 after reporting
success; on any error it reports ReportDone(succeeded=false, "ExcType: message", traceback,
its class: minijet.failures) and exits 1.

This module is the process shell: the umbilical to the taskserver, the shuffle fetches from
producers' taskservers, the commit question. The stage logic itself is in runner.py.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from itertools import chain
from pathlib import Path
from typing import Iterator

import grpc

from minijet import config as configmod
from minijet import context
from minijet import failures
from minijet import jobconf as jc
from minijet import jobauth, rpc
from minijet.config import Config
from minijet.errors import MinijetError, NotFound, Unavailable
from minijet.formats import segments
from minijet.formats.segments import RECORDS_HEADER
from minijet.job import load_job
from minijet.proto import job_pb2, job_pb2_grpc
from minijet.quickexit import exit_now
from minijet.taskcreds import TaskCredentials
from minijet.taskdesc import TASK_FILE, TaskDescription
from minijet.taskhost import runner

log = logging.getLogger("minijet.taskhost")

POLL_INTERVAL = 0.2     # seconds between asks for producer outputs, when not long-polled
LONG_POLL = 5.0         # seconds the jobserver may hold an ask until an output is made
FETCH_TRIES = 3


class Umbilical:
    """The TaskHost's calls to its own taskserver. Every report carries when this TaskHost
    started (`start_time`) and when it had read its input (`input_ended`), once known."""

    def __init__(self, config: Config, address: str, attempt_id: str, attempt_secret: str,
                 start_time: float):
        self.config = config
        self.start_time = start_time
        self.input_end_time = 0.0
        self.address = address
        self.attempt_id = attempt_id
        self._metadata = jobauth.attempt_metadata(attempt_id, attempt_secret)
        self._channel = rpc.connect(config, address)
        self._stub = job_pb2_grpc.TaskServerStub(self._channel)
        self._parent = os.getppid()

    def input_ended(self) -> None:
        self.input_end_time = time.time()

    def _call(self, method, request, idempotent: bool, wait: float | None = None,
              timeout: float | None = None):
        return rpc.call(self.config, method, request, idempotent=idempotent,
                        address=self.address, wait=wait, metadata=self._metadata,
                        timeout=timeout)

    def _ask_jobserver(self, method, request, idempotent: bool, held: float = 0.0):
        """A call the taskserver passes on to the jobserver: waited for while the jobserver
        is unreachable (restarting), so the attempt goes on across a restart. `held`:
        seconds the jobserver may hold it (a long poll)."""
        return self._call(method, request, idempotent,
                          wait=self.config["jobserver"]["client_wait"],
                          timeout=self.config["rpc"]["timeout"] + held)

    def progress(self, fraction: float, counters: list[tuple[str, str, int]]) -> None:
        if os.getppid() != self._parent:  # our taskserver died: nobody wants this work
            raise Unavailable(f"the taskserver (pid {self._parent}) is gone")
        try:
            self._call(self._stub.ReportProgress, job_pb2.ProgressReport(
                attempt_id=self.attempt_id, progress=fraction, counters=_counters(counters),
                taskhost_start_time=self.start_time, input_end_time=self.input_end_time),
                idempotent=False)
        except Unavailable as e:  # a missed report is harmless; silence is judged over time
            log.warning("cannot report progress: %s", e)
        # NotFound (the taskserver does not know this attempt any more) ends the attempt

    def done(self, succeeded: bool, counters=(), error: str = "", traceback: str = "",
             failure: str = "") -> None:
        self._call(self._stub.ReportDone, job_pb2.DoneReport(
            attempt_id=self.attempt_id, succeeded=succeeded, counters=_counters(counters),
            error=error, traceback=traceback, failure=failure,
            taskhost_start_time=self.start_time, input_end_time=self.input_end_time),
            idempotent=True)

    def commit(self) -> bool:
        return self._ask_jobserver(self._stub.Commit, job_pb2.CommitRequest(
            attempt_id=self.attempt_id), idempotent=True).granted

    def map_outputs(self, job_id: str, stage_id: str, seen: int = 0,
                    wait: float = 0.0) -> job_pb2.MapOutputsResponse:
        """Where the stage's outputs are; with `wait`, a long poll: the reply comes once
        they differ from version `seen` (or after `wait` seconds)."""
        return self._ask_jobserver(self._stub.GetMapOutputs, job_pb2.MapOutputsRequest(
            job_id=job_id, stage_id=stage_id, seen=seen, wait=wait), idempotent=True,
            held=wait)

    def fetch_failed(self, producer_attempt_id: str, error: str) -> None:
        self._ask_jobserver(self._stub.ReportFetchFailure, job_pb2.FetchFailedRequest(
            attempt_id=self.attempt_id, producer_attempt_id=producer_attempt_id, error=error),
            idempotent=False)


def _counters(counters) -> list[job_pb2.Counter]:
    return [job_pb2.Counter(group=g, name=n, value=v) for g, n, v in counters]


class Fetcher:
    """This consumer task's partition of every output of one producer stage: asks the
    taskserver where the outputs are, fetches each from the taskserver holding it as soon as
    it is listed (with slow start, producers still run), and on a failed fetch tells the
    jobserver (so the producer runs again) and waits for the new location. An output made
    on this node is read from its file instead (Hadoop's LocalFetcher): it is in its
    attempt's work dir, `attempts_dir`/<attempt id>, in the taskserver's directory for the
    job, which only the job's account enters (None: every output is fetched)."""

    def __init__(self, config: Config, umbilical: Umbilical, task: TaskDescription,
                 job_secret: str, progress: runner.Progress, producer_stage: str | None = None,
                 attempts_dir: Path | None = None):
        self.config = config
        self.attempts_dir = attempts_dir
        self.job_secret = job_secret
        self.umbilical = umbilical
        self.task = task
        self.progress = progress
        self.producer_stage = producer_stage or task.producer_stage
        self._channels: dict[str, grpc.Channel] = {}

    def stream(self) -> tuple[int, Iterator[tuple[bytes, int]]]:
        """(producer tasks, their segments as each output appears): with slow start the
        consumer runs before every producer is done, and fetches while the rest work."""
        reply = self.umbilical.map_outputs(self.task.job_id, self.producer_stage)
        return reply.total, self._stream(reply)

    def _stream(self, reply: job_pb2.MapOutputsResponse) -> Iterator[tuple[bytes, int]]:
        fetched: set[str] = set()
        lost: dict[str, str] = {}   # attempt whose output could not be fetched -> error
        lost_since = 0.0
        timeout = self.config["taskserver"]["task_timeout"]
        outputs: dict[str, job_pb2.MapOutputLocation] = {}   # task id -> where its output is
        while len(fetched) < reply.total:
            if reply.full:
                outputs.clear()
            outputs.update((o.task_id, o) for o in reply.outputs)
            for task_id in reply.lost:
                outputs.pop(task_id, None)
            ready = [o for o in outputs.values()
                     if o.task_id not in fetched and o.attempt_id not in lost]
            for location in ready:
                try:
                    segment = self._fetch(location)
                except MinijetError as e:
                    error = f"cannot fetch {location.attempt_id} from {location.address}: {e}"
                    log.warning("attempt %s: %s; reporting it", self.task.attempt_id, error)
                    self.umbilical.fetch_failed(location.attempt_id, error)
                    lost[location.attempt_id] = error
                    lost_since = lost_since or time.monotonic()
                    continue
                fetched.add(location.task_id)
                self.progress.add("shuffle_fetches", 1)
                yield segment
            if len(fetched) >= reply.total:
                return
            if not ready:
                if lost and time.monotonic() - lost_since > timeout:
                    raise Unavailable(f"{next(iter(lost.values()))}, and it was not made "
                                      "again")
                self.progress.update()  # waiting is not silence
                reply = self._next(reply, min(LONG_POLL, timeout / 4))
            else:   # more may have been made meanwhile
                reply = self._next(reply, 0.0)

    def _next(self, reply: job_pb2.MapOutputsResponse,
              wait: float) -> job_pb2.MapOutputsResponse:
        """What changed since `reply`, now, or with `wait` once something does (a long poll,
        short enough for the progress reports that show this attempt alive). A jobserver
        that answers a long poll at once with nothing new (its long polls all taken, or an
        older version) is asked again after POLL_INTERVAL."""
        asked = time.monotonic()
        new = self.umbilical.map_outputs(self.task.job_id, self.producer_stage,
                                         seen=reply.version, wait=wait)
        if wait and new.version == reply.version:
            time.sleep(max(0.0, POLL_INTERVAL - (time.monotonic() - asked)))
        return new

    def _fetch(self, location: job_pb2.MapOutputLocation) -> tuple[bytes, int]:
        local = self._read_local(location.attempt_id)
        if local is not None:
            return local
        channel = self._channels.get(location.address)
        if channel is None:
            channel = self._channels[location.address] = rpc.connect(self.config,
                                                                     location.address)
        stub = job_pb2_grpc.TaskServerStub(channel)
        request = job_pb2.FetchRequest(job_id=self.task.job_id, attempt_id=location.attempt_id,
                                       partition=self.task.partition)
        signed = ((jobauth.FETCH_MAC_HEADER, jobauth.fetch_mac(
            self.job_secret, request.job_id, request.attempt_id, request.partition)),)
        backoff = self.config["rpc"]["retry_backoff"]
        for attempt in range(FETCH_TRIES):
            try:
                call = stub.FetchMapOutput(request, timeout=10 * self.config["rpc"]["timeout"],
                                           metadata=signed)
                data = b"".join(chunk.data for chunk in call)
                records = dict(call.initial_metadata()).get(RECORDS_HEADER, "0")
                return data, int(records) if records.isdigit() else 0
            except grpc.RpcError as e:
                error = rpc.to_error(e, location.address)
                if not isinstance(error, Unavailable) or attempt == FETCH_TRIES - 1:
                    raise error from None
                time.sleep(backoff * 2 ** attempt)
        raise AssertionError("unreachable")

    def _read_local(self, attempt_id: str) -> tuple[bytes, int] | None:
        """The segment from the map output file, when `attempt_id` ran on this node: no
        copies through the taskserver and gRPC (a TeraSort's sort task spent a seventh of its
        time fetching). None when it is not here or cannot be read: then it is fetched."""
        if self.attempts_dir is None or "/" in attempt_id or \
                not attempt_id.startswith(f"{self.task.job_id}_"):   # not a path elsewhere
            return None
        path = self.attempts_dir / attempt_id / segments.MAP_OUTPUT
        try:
            records, chunks = segments.partition_chunks(
                path, self.task.partition, f"map output of {attempt_id}", chunk_size=1 << 62)
            data = b"".join(chunks)   # one chunk: no copy
        except (MinijetError, OSError):
            return None
        self.progress.add("shuffle_local_reads", 1)
        return data, records

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()


def run_attempt(config: Config, task: TaskDescription, credentials: TaskCredentials,
                job_cache: Path, work_dir: Path, umbilical: Umbilical,
                attempts_dir: Path | None = None) -> list[tuple[str, str, int]]:
    """Run the attempt's stage; returns its counters. `attempts_dir`: see Fetcher."""
    from minijet.dfs import DfsClient

    conf = runner.read_jobconf(job_cache)
    stage = conf.stage(task.stage)
    context.set_attempt(task.attempt_id, config.host)
    job = load_job(job_cache, conf)
    progress = runner.Progress(umbilical.progress, on_input_end=umbilical.input_ended)
    progress.flush()  # alive: the task timeout counts from here, not from the first tick
    sort_buffer = config["taskserver"]["sort_buffer"]
    dfs = DfsClient(config, credential=credentials.dfs_token)
    out = stage.output

    def make_output(combiner, lines=False):
        if out.channel == jc.FILE:
            return runner.MapOutputSink(work_dir, out.partitions,
                                        runner.output_partitioner(job, out), sort_buffer,
                                        combiner, lines)
        return runner.DfsOutput(dfs, out.path, task.attempt_id, task.index, umbilical.commit,
                                "lines" if lines else out.writer)

    try:
        if stage.input:
            runner.run_input_stage(job, stage, task.segments, dfs.open, make_output, progress)
        else:
            if task.partition is None or not task.producer_stage:
                raise NotFound(f"task {task.task_id} of consumer stage {stage.id} has no "
                               "partition or producer stage")
            # one fetcher per parent stage (a join or union reads several)
            fetchers = [Fetcher(config, umbilical, task, credentials.job_secret, progress, parent,
                                attempts_dir) for parent in stage.inputs]
            try:
                streams = [f.stream() for f in fetchers]
                runner.run_consumer_stage(
                    job, stage, chain.from_iterable(segs for _, segs in streams),
                    sum(total for total, _ in streams), work_dir / "shuffle", sort_buffer,
                    make_output, progress)
            finally:
                for fetcher in fetchers:
                    fetcher.close()
    finally:
        dfs.close()
    return progress.counter_list()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minijet.taskhost",
                                     description="Run one task attempt (started by a taskserver).")
    parser.add_argument("--taskserver", required=True, help="the taskserver's address")
    parser.add_argument("--attempt", required=True, help="the attempt id")
    parser.add_argument("--job-cache", required=True, type=Path, help="the job's local files")
    parser.add_argument("--work-dir", required=True, type=Path, help="the attempt's work dir")
    parser.add_argument("--attempts-dir", type=Path,
                        help="the work dirs of the job's attempts on this node, each "
                             "DIR/<attempt id>: map outputs made here are read from there")
    parser.add_argument("--config", help="configuration file (default: the usual lookup)")
    args = parser.parse_args(argv)
    started = time.time()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s taskhost[{args.attempt}] %(message)s")
    umbilical = None
    try:
        config = configmod.load(args.config)
        credentials = TaskCredentials.read(args.work_dir)
        umbilical = Umbilical(config, args.taskserver, args.attempt, credentials.attempt_secret,
                              started)
        segments.use_job_secret(credentials.job_secret)
        task = TaskDescription.from_json((args.work_dir / TASK_FILE).read_text())
        log.info("attempt %s: running task %s (stage %s)", task.attempt_id, task.task_id,
                 task.stage)
        counters = run_attempt(config, task, credentials, args.job_cache, args.work_dir,
                               umbilical, args.attempts_dir)
        umbilical.done(True, counters)
    except BaseException as e:  # the user's code or ours: report it, exit non-zero
        text = str(e).strip()
        error = f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__
        tb = traceback.format_exc()
        log.error("attempt %s failed: %s\n%s", args.attempt, error, tb)
        if umbilical is not None:
            try:
                # an error may carry the user's own trace (a streaming command's stderr)
                umbilical.done(False, error=error,
                               traceback=getattr(e, "user_traceback", "") or tb,
                               failure=failures.classify(e))
            except Exception as report_error:  # the taskserver reports the exit code instead
                log.error("cannot report the failure to the taskserver: %s", report_error)
        return 1
    log.info("attempt %s succeeded", args.attempt)
    return 0


if __name__ == "__main__":
    exit_now(main())   # everything is reported and committed: the taskserver waits for this
