"""JetClient: the Python API to the job engine (what `jetshell` uses).

    from minijet.client import JetClient
    with JetClient() as jc:
        job_id = jc.submit("wordcount.py", "WordCount", ["/input", "/output"])
        status = jc.wait_for_completion(job_id, progress_callback=print)

Submitting follows the life of a job: import the job file and compile its configuration
(bad arguments or job graph: InvalidArgument), check the paths in the DFS (a missing input:
NotFound; an existing output: AlreadyExists; both before the jobserver is asked anything:
see jobcompile.py), CreateJob, upload job.json, the job file and any extra files to the job
directory (minijet.jobdir), RunJob.
Every call has the configured deadline and names the client's user (acl.current_user(): $USER,
taken on trust, see minijet.acl), who owns the jobs it creates; errors are MinijetError
subclasses (an unknown job id is NotFound; an unreachable jobserver is Unavailable; killing
or reading the logs of another user's job is PermissionDenied, unless an admin).
"""
from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import time
from concurrent import futures
from typing import Callable, NamedTuple, Sequence

from minijet import config as configmod
from minijet import acl, jobdir, rpc
from minijet.errors import MinijetError, NotFound, PermissionDenied
from minijet.proto import job_pb2, job_pb2_grpc
from minijet.states import FINAL_STATES

log = logging.getLogger(__name__)

MAX_UPLOADS = 8   # job files written at the same time


class JobTimeout(MinijetError):
    """A job did not finish within the time the caller allowed."""


class AttemptLogs(NamedTuple):   # (not a dataclass: `jetshell status` needs none)
    """An attempt's stdout and stderr (the last MiB of each), or why they are missing."""
    attempt: job_pb2.AttemptInfo
    stdout: str = ""
    stderr: str = ""
    missing: str = ""   # e.g. the taskserver is lost, or no longer keeps them


def select_attempts(status: job_pb2.JobStatus, task: str = "") -> list[job_pb2.AttemptInfo]:
    """The job's attempts, or those of `task`: a stage, task or attempt id, in full or
    without the job id (`map_00001`). NotFound if it names nothing of the job."""
    if not task:
        return list(status.attempts)
    full = task if task.startswith(f"{status.job_id}_") else f"{status.job_id}_{task}"
    chosen = [a for a in status.attempts
              if full in (a.attempt_id, a.task_id, a.task_id.rsplit("_", 1)[0])]
    if not chosen:
        raise NotFound(f"job {status.job_id} has no task or attempt {task}")
    return chosen


class JetClient:
    def __init__(self, config: configmod.Config | None = None, dfs=None):
        """`config` defaults to the usual lookup (minijet.config.load()); `dfs` is a DfsClient
        to share (else one is made on first use and closed with this client)."""
        self.config = config if config is not None else configmod.load()
        self.address = self.config["jobserver"]["address"]
        self.user = acl.current_user()
        self._channel = rpc.connect(self.config, self.address, self.user)
        self._stub = job_pb2_grpc.JobServerStub(self._channel)
        self._reached = False   # the jobserver answered a call of this client
        self._dfs = dfs
        self._owns_dfs = dfs is None

    # ---- plumbing ----

    @property
    def dfs(self):
        if self._dfs is None:
            from minijet.dfs import DfsClient

            self._dfs = DfsClient(self.config)
        return self._dfs

    def close(self) -> None:
        self._channel.close()
        if self._owns_dfs and self._dfs is not None:
            self._dfs.close()
            self._dfs = None

    def __enter__(self) -> "JetClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method, request, *, idempotent: bool):
        # Once reached, a jobserver that goes away is waited for (a restart: its jobs
        # resume); one unreachable at the first call is an error at once.
        reply = rpc.call(self.config, method, request, idempotent=idempotent,
                         address=f"{self.address} (jobserver)",
                         wait=self.config["jobserver"]["client_wait"] if self._reached else None)
        self._reached = True
        return reply

    # ---- the jobserver's API ----

    def create_job(self, name: str) -> tuple[str, str]:
        """A new job of this client's user, its id and its DFS directory; the job runs only
        after run_job."""
        # the request id makes a CreateJob sent again (its reply lost) return the same job
        request = job_pb2.CreateJobRequest(name=name, user=self.user,
                                           request_id=secrets.token_hex(16))
        reply = self._call(self._stub.CreateJob, request, idempotent=True)
        return reply.job_id, reply.job_dir

    def run_job(self, job_id: str) -> None:
        # the jobserver answers a RunJob sent again for a started job as it did the first
        self._call(self._stub.RunJob, job_pb2.JobId(job_id=job_id), idempotent=True)

    def get_status(self, job_id: str) -> job_pb2.JobStatus:
        return self._call(self._stub.GetJobStatus, job_pb2.JobId(job_id=job_id), idempotent=True)

    def list_jobs(self, all: bool = False, limit: int = 0) -> list[job_pb2.JobStatus]:
        """Jobs (without their attempts), oldest first: every unfinished one and the `limit`
        finished ones that ended last (0: the jobserver's default, 100); only those of the
        last day unless `all`."""
        reply = self._call(self._stub.ListJobs, job_pb2.ListJobsRequest(all=all, limit=limit),
                           idempotent=True)
        return list(reply.jobs)

    def kill_job(self, job_id: str) -> None:
        self._call(self._stub.KillJob, job_pb2.JobId(job_id=job_id), idempotent=True)

    def list_taskservers(self) -> list[job_pb2.TaskServerStatus]:
        reply = self._call(self._stub.ListTaskServers, job_pb2.Empty(), idempotent=True)
        return list(reply.taskservers)

    def logs(self, job_id: str, task: str = "") -> list[AttemptLogs]:
        """The logs of the job's attempts (or of one task's: see select_attempts), asked of
        the taskservers that ran them; those keep them for taskserver.log_retention, also
        after the job ended. PermissionDenied unless the job's owner or an admin."""
        attempts = select_attempts(self.get_status(job_id), task)
        servers = {t.name: t for t in self.list_taskservers()}
        found: dict[str, job_pb2.AttemptLog] = {}
        why: dict[str, str] = {}   # taskserver -> why its logs are not available
        for name in sorted({a.taskserver for a in attempts if a.taskserver}):
            ts = servers.get(name)
            if ts is None or not ts.alive or not ts.address:
                why[name] = f"taskserver {name} is {'lost' if ts else 'unknown'}"
                continue
            channel = rpc.connect(self.config, ts.address, self.user)
            try:
                reply = rpc.call(self.config, job_pb2_grpc.TaskServerStub(channel).GetLogs,
                                 job_pb2.LogRequest(job_id=job_id), idempotent=True,
                                 address=f"{ts.address} (taskserver {name})")
                found.update((log_.attempt_id, log_) for log_ in reply.logs)
            except PermissionDenied:
                raise
            except MinijetError as e:
                why[name] = str(e)
            finally:
                channel.close()
        result = []
        for a in attempts:
            got = found.get(a.attempt_id)
            if got is not None:
                result.append(AttemptLogs(a, got.stdout, got.stderr))
            else:
                result.append(AttemptLogs(a, missing=why.get(a.taskserver) or (
                    f"taskserver {a.taskserver} keeps none (older than its log_retention, "
                    f"or the attempt never started)" if a.taskserver else "not started")))
        return result

    def wait_for_completion(self, job_id: str,
                            progress_callback: Callable[[job_pb2.JobStatus], None] | None = None,
                            poll: float = 0.5, timeout: float | None = None) -> job_pb2.JobStatus:
        """Wait until the job is succeeded, failed or killed; return that final status.
        The jobserver answers as soon as the job ends, or with its status after `poll`
        seconds: `progress_callback(status)` sees each of those, the final one included
        (only the final one lists the attempts).
        Raises JobTimeout after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            asked = time.monotonic()
            wait = poll if deadline is None else max(0.0, min(poll, deadline - asked))
            status = self._call(self._stub.WaitJob,   # attempts only in the final status
                                job_pb2.WaitJobRequest(job_id=job_id, timeout=wait,
                                                       progress_only=True),
                                idempotent=True)
            if progress_callback is not None:
                progress_callback(status)
            if status.state in FINAL_STATES:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise JobTimeout(f"job {job_id} did not finish within {timeout:g}s "
                                 f"(it is {status.state})")
            time.sleep(max(0.0, asked + poll - time.monotonic()))  # answered early: busy

    # ---- submitting ----

    def submit(self, job_file: str, class_name: str, args: Sequence[str],
               files: Sequence[str] = (), prog: str | None = None) -> str:
        """Compile, check, create, upload and run a job; return its id. `files` are local
        files shipped beside the job file (a task finds them in its working directory's job
        cache, and can import .py ones). `prog` names the command in argument errors."""
        conf = self.compile(job_file, class_name, args, files, prog)
        job_id, job_dir = self.create_job(conf.name)
        try:
            self.upload_job_files(job_dir, conf, [job_file, *files])
            self.run_job(job_id)
        except BaseException as e:
            self._abandon(job_id, job_dir, e)
            raise
        log.info("submitted job %s (%s) from %s", job_id, conf.name, job_file)
        return job_id

    def compile(self, job_file: str, class_name: str, args: Sequence[str],
                files: Sequence[str] = (), prog: str | None = None):
        """The JobConf `submit` would send (what `jetshell run --dry-run` prints): compiled,
        its paths checked in the DFS, the split points of its sorts sampled from its input
        (see jobcompile.compile_job)."""
        from minijet.client.jobcompile import compile_job   # the job's modules: only here

        return compile_job(self.dfs, job_file, class_name, args, files, prog)

    def check_paths(self, conf) -> None:
        """Refuse a job whose input is missing or whose output exists (never overwrite)."""
        jobdir.check_paths(conf, self.dfs.exists)

    def upload_job_files(self, job_dir: str, conf, local_files: Sequence[str]) -> None:
        """Write job.json (the JobConf) and the local files into the job's DFS directory, all
        at once: each small file waits for a few round trips and its replicas' fsyncs."""
        replication = self._job_file_replication()
        data = json.dumps(conf.to_dict(), indent=1, sort_keys=True).encode()

        def write_conf() -> None:
            with self.dfs.create(f"{job_dir}/{jobdir.JOB_CONF_FILE}",
                                 replication=replication) as out:
                out.write(data)

        uploads = [write_conf] + [functools.partial(
            self.dfs.put, local, f"{job_dir}/{os.path.basename(local)}", replication=replication)
            for local in local_files]
        with futures.ThreadPoolExecutor(min(len(uploads), MAX_UPLOADS)) as pool:
            for upload in [pool.submit(u) for u in uploads]:
                upload.result()   # raises the first error; the pool waits for the rest

    def _job_file_replication(self) -> int:
        """Many replicas, since every taskserver running the job reads these files; capped by
        the live dataservers so the files do not stay under-replicated."""
        live = sum(1 for d in self.dfs.report().dataservers if d.alive)
        return max(1, min(self.config["jobserver"]["job_file_replication"], live))

    def _abandon(self, job_id: str, job_dir: str, cause: BaseException) -> None:
        """A job created but not started must not linger: kill it, remove its files."""
        log.warning("submitting job %s failed (%s); killing it", job_id, cause)
        for undo in (lambda: self.kill_job(job_id),
                     lambda: self.dfs.delete(job_dir, recursive=True)):
            try:
                undo()
            except MinijetError as e:
                log.warning("cleaning up job %s: %s", job_id, e)
