"""The taskserver daemon as a real process, driven through its real gRPC interfaces.

A real DFS (nameserver + one dataserver, tests/dfs_cluster.py) holds the job files and the
input. The test runs a minimal real gRPC JobServer servicer (a test harness: it records the
heartbeats and hands out the launch / kill / cleanup orders the test queues) and checks what
the taskserver does with real TaskHost processes: map output served by FetchMapOutput, a
reduce that fetches it and commits part files, a hanging task killed after task_timeout, a
crash and a user exception reported as failures with clear errors, cleanup of local files.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil
import pytest
import yaml

from minijet import config as configmod
from minijet import jobconf as jc
from minijet import jobauth, jobdir
from minijet import rpc
from minijet.errors import PermissionDenied
from minijet.formats import segments
from minijet.net import free_port
from minijet.proto import job_pb2, job_pb2_grpc

from dfs_cluster import DfsCluster
from polling import wait_for

JOB_FILE = '''
import os, time
from minijet import MapReduceJob

class WordCount(MapReduceJob):
    def mapper(self, key, value):
        print("mapping", key, key == 0 and "import os" in open("wcjob.py").read())  # in cwd
        for word in value.split():
            yield word, 1
    def combiner(self, key, values):
        yield key, sum(values)
    def reducer(self, key, values):
        yield key, sum(values)

class Hang(WordCount):
    def mapper(self, key, value):
        import subprocess
        subprocess.Popen(["sleep", "3601"])  # a child: killed with its TaskHost
        time.sleep(3600)
        yield key, value

class Crash(WordCount):
    def mapper(self, key, value):
        os._exit(3)

class Slow(WordCount):
    def mapper(self, key, value):
        if key == 0:
            time.sleep(1.5)
        yield from super().mapper(key, value)

class Crawl(WordCount):
    def mapper(self, key, value):
        time.sleep(0.01)
        yield from super().mapper(key, value)

class Boom(WordCount):
    def mapper(self, key, value):
        raise ValueError("bad record at %d" % key)
'''

OWNER = "ann"   # the user of every job launched here

TEXT = "".join(f"alpha beta {i % 5} gamma delta {i % 11}\n" for i in range(3000))
TASK_TIMEOUT = 3.0


class Harness(job_pb2_grpc.JobServerServicer):
    """The jobserver side of the protocol, as far as a test needs it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.commands: list[tuple[str | None, job_pb2.TaskServerCommand]] = []
        self.statuses: dict[str, job_pb2.AttemptStatus] = {}
        self.registration: job_pb2.HeartbeatRequest | None = None  # of the first taskserver
        self.heartbeats: dict[str, int] = {}  # per taskserver address
        self.outputs: dict[tuple[str, str], job_pb2.MapOutputsResponse] = {}
        self.committed: dict[str, str] = {}
        self.fetch_failures: list[job_pb2.FetchFailedRequest] = []

    def Heartbeats(self, requests, context):
        for request in requests:
            yield self._beat(request)

    def _beat(self, request):
        with self.lock:
            self.heartbeats[request.address] = self.heartbeats.get(request.address, 0) + 1
            if self.registration is None:
                self.registration = request
            for a in request.attempts:
                self.statuses[a.attempt_id] = a
            mine = [c for target, c in self.commands if target in (None, request.address)]
            self.commands = [(t, c) for t, c in self.commands
                             if t not in (None, request.address)]
        return job_pb2.HeartbeatResponse(commands=mine, heartbeat_interval=0.1)

    def ReportFetchFailure(self, request, context):
        with self.lock:
            self.fetch_failures.append(request)
        return job_pb2.Empty()

    def Commit(self, request, context):
        task = request.attempt_id.rsplit("_", 1)[0]
        with self.lock:
            winner = self.committed.setdefault(task, request.attempt_id)
        return job_pb2.CommitResponse(granted=winner == request.attempt_id)

    def GetMapOutputs(self, request, context):
        with self.lock:
            return self.outputs.get((request.job_id, request.stage_id),
                                    job_pb2.MapOutputsResponse(total=1))

    def order(self, target: str | None = None, **command) -> None:
        """Queue a command for the taskserver serving `target` (None: the next to ask)."""
        with self.lock:
            self.commands.append((target, job_pb2.TaskServerCommand(**command)))

    def wait_final(self, attempt_id: str, timeout: float = 30.0) -> job_pb2.AttemptStatus:
        return wait_for(lambda: self._final(attempt_id), timeout,
                        f"attempt {attempt_id} to end")

    def _final(self, attempt_id):
        with self.lock:
            s = self.statuses.get(attempt_id)
        return s if s is not None and s.state not in (job_pb2.ASSIGNED, job_pb2.RUNNING) \
            else None


class HarnessServer:
    """Serves the harness on one fixed port, so it can be stopped and started again."""

    def __init__(self, config, harness: Harness):
        self.config, self.harness = config, harness
        self.port = free_port()
        self.server = None

    def start(self) -> None:
        self.server, _ = rpc.start_server(
            self.config, f"127.0.0.1:{self.port}",
            [lambda s: job_pb2_grpc.add_JobServerServicer_to_server(self.harness, s)])

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(0).wait()
            self.server = None


def start_taskserver(root: Path, dfs: DfsCluster, jobserver_port: int, name: str,
                     **settings) -> tuple[subprocess.Popen, Path]:
    data = yaml.safe_load(dfs.config_path.read_text())
    data["jobserver"] = {"address": f"127.0.0.1:{jobserver_port}"}
    # tasks as this process's user: its dirs are root's own (test_task_users.py runs tasks
    # as their users)
    data["taskserver"] = {"address": "127.0.0.1:0", "dir": str(root / name), "slots": 2,
                          "heartbeat_interval": "0.1s", "task_timeout": TASK_TIMEOUT,
                          "isolate_tasks": False, **settings}
    config_path = root / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(data))
    with open(root / f"{name}.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "minijet.taskserver.taskserver",
                                 "--config", str(config_path), "-D", "node.host=host1"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return proc, config_path


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class TaskServer:
    proc: subprocess.Popen
    config: configmod.Config
    dir: Path       # taskserver.dir
    address: str    # its shuffle service, as it registered


# Module-scoped: started once, and every test can still run alone (each takes the fixtures it
# needs; none leaves state for another).

@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("taskserver")


@pytest.fixture(scope="module")
def dfs_cluster(root):
    with DfsCluster(root / "dfs", {"dfs": {"replication": 1}}) as dfs:
        yield dfs.start(dataservers=1)


@pytest.fixture(scope="module")
def jobserver(dfs_cluster):
    """The harness, served on a port of its own."""
    server = HarnessServer(dfs_cluster.config, Harness())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def taskserver(root, dfs_cluster, jobserver):
    """The taskserver every test uses (host1, taskserver.dir ROOT/task); the harness's
    `registration` is its first heartbeat."""
    proc, config_path = start_taskserver(root, dfs_cluster, jobserver.port, "task")
    try:
        registration = wait_for(lambda: jobserver.harness.registration, 20,
                                "the first heartbeat")
        yield TaskServer(proc, configmod.load(str(config_path)), root / "task",
                         registration.address)
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def harness(jobserver, taskserver) -> Harness:
    """The harness, with the taskserver registered."""
    return jobserver.harness


@pytest.fixture(scope="module")
def dfs(dfs_cluster):
    """A DFS client; the input, /in/words.txt (TEXT), is written."""
    with dfs_cluster.client("host1") as client:
        with client.create("/in/words.txt") as f:
            f.write(TEXT.encode())
        yield client


@pytest.fixture
def other_taskserver(root, dfs_cluster, jobserver, harness):
    """other_taskserver(name) -> (process, address): one more taskserver, on ROOT/<name>,
    once its first heartbeat is in; stopped at the end of the test."""
    started: list[subprocess.Popen] = []

    def new_heartbeat(known: set[str]) -> str | None:
        with harness.lock:
            return next((a for a in harness.heartbeats if a not in known), None)

    def start(name: str, **settings) -> tuple[subprocess.Popen, str]:
        with harness.lock:
            known = set(harness.heartbeats)
        proc, _ = start_taskserver(root, dfs_cluster, jobserver.port, name, **settings)
        started.append(proc)
        address = wait_for(lambda: new_heartbeat(known), 20,
                           f"the first heartbeat of taskserver {name}")
        return proc, address

    try:
        yield start
    finally:
        for proc in started:
            stop_process(proc)


def make_job(dfs, job_id: str, job_class: str, reducers: int = 2) -> tuple[str, jc.JobConf]:
    conf = jc.compile_mapreduce(job_id, "wcjob.py", job_class,
                                {"input": ["/in/words.txt"], "output": f"/out/{job_id}",
                                 "reducers": reducers},
                                ["/in/words.txt"], f"/out/{job_id}", reducers, has_combiner=True)
    job_dir = f"/jobs/{job_id}"
    jobdir.start_output(dfs, f"/out/{job_id}")   # as the jobserver does at RunJob
    with dfs.create(f"{job_dir}/job.json") as f:
        f.write(json.dumps(conf.to_dict()).encode())
    with dfs.create(f"{job_dir}/wcjob.py") as f:
        f.write(JOB_FILE.encode())
    return job_dir, conf


def launch(harness: Harness, job_id: str, job_dir: str, attempt_id: str, stage: str, index: int,
           target: str | None = None, **task):
    task_id = attempt_id.rsplit("_", 1)[0]
    spec = {"job_id": job_id, "task_id": task_id, "attempt_id": attempt_id, "stage": stage,
            "index": index, "splits": [], "partition": None, "producer_stage": None, **task}
    harness.order(target, launch=job_pb2.LaunchAttempt(
        job_id=job_id, task_id=task_id, attempt_id=attempt_id, job_dir=job_dir,
        task_json=json.dumps(spec), user=OWNER, job_secret=job_secret(job_id)))


def job_secret(job_id: str) -> str:
    return f"secret of {job_id}"


def signed(job_id: str, attempt_id: str, partition: int, secret: str | None = None):
    """The metadata of a fetch signed as the job's attempts sign it (minijet.jobauth)."""
    mac = jobauth.fetch_mac(secret or job_secret(job_id), job_id, attempt_id, partition)
    return ((jobauth.FETCH_MAC_HEADER, mac),)


def whole_input():
    return [{"path": "/in/words.txt", "offset": 0, "length": len(TEXT)}]


def hang_children() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "3601"]]


def taskhost_running(attempt_id: str) -> bool:
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or []).split()  # a forked TaskHost sets its title
        if "minijet.taskhost" in cmd and attempt_id in cmd:
            return True
    return False


def test_registers_with_its_identity_and_served_address(harness):
    reg = harness.registration
    assert reg.host == "host1" and reg.rack == "/default-rack" and reg.slots == 2
    assert reg.address.startswith("127.0.0.1:") and reg.name == f"host1:{reg.address[10:]}"


def test_map_output_is_served_and_reduce_commits_part_files(harness, dfs, taskserver):
    job = "job_20260101000000_0001"
    job_dir, _ = make_job(dfs, job, "WordCount")
    half = len(TEXT) // 2  # two splits: the boundary falls inside a line
    maps = [f"{job}_map_00000_0", f"{job}_map_00001_0"]
    launch(harness, job, job_dir, maps[0], "map", 0,
           splits=[{"path": "/in/words.txt", "offset": 0, "length": half}])
    launch(harness, job, job_dir, maps[1], "map", 1,
           splits=[{"path": "/in/words.txt", "offset": half, "length": len(TEXT) - half}])
    for attempt in maps:
        status = harness.wait_final(attempt)
        assert status.state == job_pb2.SUCCEEDED, status.error + status.traceback
        counters = {(c.group, c.name): c.value for c in status.counters}
        assert counters[("task", "input_records")] > 0 and status.progress == 1.0

    # FetchMapOutput: each partition of each map output, as the reduce side reads it
    address = taskserver.address
    stub = job_pb2_grpc.TaskServerStub(rpc.connect(taskserver.config, address))
    fetched = Counter()
    records = 0
    segments.use_job_secret(job_secret(job))   # this process reads the job's frames
    for attempt in maps:
        for partition in range(2):
            call = stub.FetchMapOutput(job_pb2.FetchRequest(
                job_id=job, attempt_id=attempt, partition=partition),
                metadata=signed(job, attempt, partition))
            data = b"".join(c.data for c in call)
            pairs = list(segments.read_segment(data))
            assert dict(call.initial_metadata())["x-minijet-records"] == str(len(pairs))
            fetched.update(dict(pairs))
            records += len(pairs)
    assert fetched == Counter(TEXT.split())
    with pytest.raises(Exception) as missing:
        list(stub.FetchMapOutput(job_pb2.FetchRequest(job_id=job, attempt_id=f"{job}_map_9_0",
                                                      partition=0),
                                 metadata=signed(job, f"{job}_map_9_0", 0)))
    assert "not here" in str(missing.value)
    # a fetch not signed with the job's secret is refused: unsigned, another job's, or the
    # MAC of another partition
    for metadata in ((), signed(job, maps[0], 0, secret=job_secret("job_other")),
                     signed(job, maps[0], 1)):
        with pytest.raises(grpc.RpcError) as refused:
            list(stub.FetchMapOutput(job_pb2.FetchRequest(job_id=job, attempt_id=maps[0],
                                                          partition=0), metadata=metadata))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "not signed with the secret of job" in refused.value.details()

    # two reduce tasks fetch their partition from both maps and commit part files
    with harness.lock:
        harness.outputs[(job, "map")] = job_pb2.MapOutputsResponse(total=2, outputs=[
            job_pb2.MapOutputLocation(task_id=a.rsplit("_", 1)[0], attempt_id=a,
                                      address=address) for a in maps])
    reduces = [f"{job}_reduce_0000{i}_0" for i in range(2)]
    for i, attempt in enumerate(reduces):
        launch(harness, job, job_dir, attempt, "reduce", i, partition=i, producer_stage="map")
    reduced = 0
    for attempt in reduces:
        status = harness.wait_final(attempt)
        assert status.state == job_pb2.SUCCEEDED, status.error + status.traceback
        counters = {(c.group, c.name): c.value for c in status.counters}
        reduced += counters[("task", "input_records")]
    assert reduced == records
    result = Counter()
    for i in range(2):
        with dfs.open(f"/out/{job}/part-0000{i}") as f:
            for line in f.read().decode().splitlines():
                word, count = line.split("\t")
                result[word] += int(count)
    assert result == Counter(TEXT.split())

    # logs, for the job's owner: the user's prints are in the attempt's stdout
    with rpc.connect(taskserver.config, address, OWNER) as channel:
        owners_stub = job_pb2_grpc.TaskServerStub(channel)
        logs = owners_stub.GetLogs(job_pb2.LogRequest(job_id=job, attempt_id=maps[0]))
        assert "mapping 0 True" in logs.logs[0].stdout
        assert len(owners_stub.GetLogs(job_pb2.LogRequest(job_id=job)).logs) == 4

    # cleanup deletes the job's cache and map outputs; logs stay for `jetshell logs`
    job_local = taskserver.dir / "jobs" / job
    assert (job_local / maps[0] / "file.out").is_file() and (job_local / "_cache").is_dir()
    harness.order(cleanup=job_pb2.CleanupJob(job_id=job))
    wait_for(lambda: not job_local.exists(), 10, "the job's local files to be deleted")
    assert (taskserver.dir / "logs" / job / maps[0] / "stdout").is_file()


def get_logs(config, address: str, job_id: str, user: str) -> list[str]:
    """The attempts whose logs the taskserver at `address` gives `user`."""
    with rpc.connect(config, address, user) as channel:
        reply = rpc.call(config, job_pb2_grpc.TaskServerStub(channel).GetLogs,
                         job_pb2.LogRequest(job_id=job_id), idempotent=True)
    return [a.attempt_id for a in reply.logs]


def test_logs_go_to_the_jobs_owner_alone_also_after_a_restart(harness, dfs, taskserver,
                                                               other_taskserver):
    job = "job_20260101000000_0013"
    job_dir, _ = make_job(dfs, job, "WordCount")
    proc, address = other_taskserver("owned")
    attempt = f"{job}_map_00000_0"
    launch(harness, job, job_dir, attempt, "map", 0, target=address, splits=whole_input())
    assert harness.wait_final(attempt).state == job_pb2.SUCCEEDED
    for restarted in (False, True):
        if restarted:   # the owner is kept with the logs, not only in memory
            stop_process(proc)
            proc, address = other_taskserver("owned")
        assert get_logs(taskserver.config, address, job, OWNER) == [attempt]
        with pytest.raises(PermissionDenied) as refused:
            get_logs(taskserver.config, address, job, "bob")
        assert str(refused.value) == (f"permission denied: bob may not read the logs of job "
                                      f"{job} (owned by {OWNER})")
        with pytest.raises(PermissionDenied, match="an unnamed user may not"):
            get_logs(taskserver.config, address, job, "")


def test_hanging_task_is_killed_after_the_task_timeout(harness, dfs):
    job = "job_20260101000000_0002"
    job_dir, _ = make_job(dfs, job, "Hang")
    attempt = f"{job}_map_00000_0"
    started = time.monotonic()
    launch(harness, job, job_dir, attempt, "map", 0, splits=whole_input())
    wait_for(lambda: hang_children(), 10, "the TaskHost to start its child")
    status = harness.wait_final(attempt, timeout=TASK_TIMEOUT + 15)
    assert status.state == job_pb2.FAILED
    assert status.error == f"Task attempt timed out: no progress for {TASK_TIMEOUT:g}s"
    assert time.monotonic() - started >= TASK_TIMEOUT
    assert not taskhost_running(attempt)
    wait_for(lambda: not hang_children(), 5, "the TaskHost's child to be gone")


def test_crash_and_user_exception_are_failures_with_clear_errors(harness, dfs):
    job = "job_20260101000000_0003"
    job_dir, _ = make_job(dfs, job, "Crash")
    crash = f"{job}_map_00000_0"
    launch(harness, job, job_dir, crash, "map", 0, splits=whole_input())
    job2 = "job_20260101000000_0004"
    job_dir2, _ = make_job(dfs, job2, "Boom")
    boom = f"{job2}_map_00000_0"
    launch(harness, job2, job_dir2, boom, "map", 0, splits=whole_input())

    status = harness.wait_final(crash)
    assert status.state == job_pb2.FAILED and status.error == "TaskHost exited with code 3"
    status = harness.wait_final(boom)
    assert status.state == job_pb2.FAILED
    assert status.error == "ValueError: bad record at 0"
    assert "raise ValueError" in status.traceback and "wcjob.py" in status.traceback


def test_kill_order_kills_the_process_tree(harness, dfs, taskserver):
    job = "job_20260101000000_0005"
    job_dir, _ = make_job(dfs, job, "Hang")
    attempt = f"{job}_map_00000_0"
    launch(harness, job, job_dir, attempt, "map", 0, splits=whole_input())
    wait_for(lambda: hang_children(), 10, "the TaskHost to start its child")

    # only the attempt itself, with the secret its taskserver gave it, reports for it
    stub = job_pb2_grpc.TaskServerStub(rpc.connect(taskserver.config, taskserver.address))
    done = job_pb2.DoneReport(attempt_id=attempt, succeeded=True)
    secret = json.loads((taskserver.dir / "jobs" / job / attempt /
                         "credentials.json").read_text())["attempt_secret"]
    for metadata, code in (((), grpc.StatusCode.UNAUTHENTICATED),
                           (jobauth.attempt_metadata(attempt, "guessed"),
                            grpc.StatusCode.UNAUTHENTICATED),
                           (jobauth.attempt_metadata(f"{job}_map_00001_0", secret),
                            grpc.StatusCode.UNAUTHENTICATED)):
        with pytest.raises(grpc.RpcError) as refused:
            stub.ReportDone(done, metadata=metadata)
        assert refused.value.code() == code
    with pytest.raises(grpc.RpcError) as refused:   # its own job's outputs only
        stub.GetMapOutputs(job_pb2.MapOutputsRequest(job_id="job_20260101000000_0001",
                                                     stage_id="map"),
                           metadata=jobauth.attempt_metadata(attempt, secret))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert harness._final(attempt) is None   # the refused report changed nothing
    harness.order(kill=job_pb2.KillAttempt(attempt_id=attempt))
    status = harness.wait_final(attempt)
    assert status.state == job_pb2.KILLED and status.error == "killed by the jobserver"
    assert not taskhost_running(attempt)
    wait_for(lambda: not hang_children(), 5, "the TaskHost's child to be gone")


def test_missing_job_files_fail_the_attempt(harness):
    job = "job_20260101000000_0006"
    attempt = f"{job}_map_00000_0"
    launch(harness, job, "/jobs/nosuch", attempt, "map", 0, splits=whole_input())
    status = harness.wait_final(attempt)
    assert status.state == job_pb2.FAILED
    assert "cannot copy the job files" in status.error and "/jobs/nosuch" in status.error


def run_map(harness: Harness, job: str, job_dir: str, index: int = 0) -> str:
    attempt = f"{job}_map_{index:05d}_0"
    launch(harness, job, job_dir, attempt, "map", index, splits=whole_input())
    status = harness.wait_final(attempt)
    assert status.state == job_pb2.SUCCEEDED, status.error + status.traceback
    return attempt


def test_reduce_reports_a_lost_map_output_and_fetches_its_new_location(harness, dfs,
                                                                       taskserver):
    job = "job_20260101000000_0007"
    job_dir, _ = make_job(dfs, job, "WordCount", reducers=1)
    good = run_map(harness, job, job_dir)
    address = taskserver.address
    lost = f"{job}_map_00000_9"  # an output this taskserver does not have
    with harness.lock:
        harness.outputs[(job, "map")] = job_pb2.MapOutputsResponse(total=1, outputs=[
            job_pb2.MapOutputLocation(task_id=f"{job}_map_00000", attempt_id=lost,
                                      address=address)])
    reduce_attempt = f"{job}_reduce_00000_0"
    launch(harness, job, job_dir, reduce_attempt, "reduce", 0, partition=0, producer_stage="map")
    failure = wait_for(lambda: harness.fetch_failures and harness.fetch_failures[-1], 20,
                       "a fetch failure report")
    assert failure.attempt_id == reduce_attempt and failure.producer_attempt_id == lost
    assert "not here" in failure.error
    with harness.lock:  # the jobserver re-ran the producer: here is its new output
        harness.outputs[(job, "map")] = job_pb2.MapOutputsResponse(total=1, outputs=[
            job_pb2.MapOutputLocation(task_id=f"{job}_map_00000", attempt_id=good,
                                      address=address)])
    status = harness.wait_final(reduce_attempt)
    assert status.state == job_pb2.SUCCEEDED, status.error + status.traceback
    with dfs.open(f"/out/{job}/part-00000") as f:
        lines = f.read().decode().splitlines()
    assert Counter({w: int(c) for w, c in (l.split("\t") for l in lines)}) == \
        Counter(TEXT.split())
    assert not dfs.exists(f"/out/{job}/_temporary/{reduce_attempt}/part-00000")


def test_attempt_ending_while_the_jobserver_is_down_is_reported_when_it_is_back(
        harness, dfs, jobserver, taskserver):
    job = "job_20260101000000_0008"
    job_dir, _ = make_job(dfs, job, "Slow")
    attempt = f"{job}_map_00000_0"
    launch(harness, job, job_dir, attempt, "map", 0, splits=whole_input())
    wait_for(lambda: taskhost_running(attempt), 10, "the TaskHost to start")
    jobserver.stop()
    try:
        wait_for(lambda: not taskhost_running(attempt), 20, "the attempt to finish")
        assert taskserver.proc.poll() is None  # the taskserver lives on, retrying
    finally:
        jobserver.start()
    status = harness.wait_final(attempt)
    assert status.state == job_pb2.SUCCEEDED, status.error + status.traceback


def test_with_no_log_retention_a_jobs_logs_go_at_its_cleanup(root, harness, dfs,
                                                             other_taskserver):
    _, address = other_taskserver("forgetful", log_retention="0s")
    job = "job_20260101000000_0014"
    job_dir, _ = make_job(dfs, job, "WordCount")
    attempt = f"{job}_map_00000_0"
    launch(harness, job, job_dir, attempt, "map", 0, target=address, splits=whole_input())
    assert harness.wait_final(attempt).state == job_pb2.SUCCEEDED
    logs = root / "forgetful" / "logs" / job
    assert (logs / attempt / "stdout").is_file()
    harness.order(address, cleanup=job_pb2.CleanupJob(job_id=job))
    wait_for(lambda: not logs.exists(), 10, "the job's logs to be deleted with its files")


def test_sigterm_stops_the_taskserver_and_kills_its_taskhosts(harness, dfs, other_taskserver):
    proc, address = other_taskserver("other")
    job = "job_20260101000000_0009"
    job_dir, _ = make_job(dfs, job, "Hang")
    attempt = f"{job}_map_00000_0"
    launch(harness, job, job_dir, attempt, "map", 0, target=address, splits=whole_input())
    wait_for(lambda: taskhost_running(attempt), 10, "the TaskHost to start")
    proc.terminate()
    assert proc.wait(15) == 0
    assert not taskhost_running(attempt)


def test_job_cache_copies_a_job_once_for_concurrent_attempts(dfs, tmp_path):
    from minijet.taskserver.jobcache import JobCache
    from minijet.taskserver.layout import Layout

    job = "job_20260101000000_0010"
    job_dir, _ = make_job(dfs, job, "WordCount")
    with dfs.create(f"{job_dir}/lib/helper.txt") as f:  # extra files, in a subdir too
        f.write(b"extra")
    copies = []

    class CountingDfs:  # the real client; only counts the copies made through it
        def list(self, path):
            return dfs.list(path)

        def get(self, src, dst):
            copies.append(src)
            dfs.get(src, dst)

    layout = Layout(tmp_path)
    cache = JobCache(layout, CountingDfs)
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.localize(job, job_dir)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and len(results) == 4
    local = results[0]
    assert sorted(copies) == sorted([f"{job_dir}/job.json", f"{job_dir}/wcjob.py",
                                     f"{job_dir}/lib/helper.txt"])
    assert (local / "lib" / "helper.txt").read_bytes() == b"extra"
    assert [p.name for p in local.parent.iterdir()] == ["_cache"]  # no temp dirs left
    cache.remove(job)
    assert not layout.job_dir(job).exists()


def test_second_taskserver_on_the_same_dir_is_refused(root, dfs_cluster, jobserver, taskserver):
    proc, _ = start_taskserver(root, dfs_cluster, jobserver.port, "task")
    try:
        assert proc.wait(20) == 1
    finally:
        stop_process(proc)
    log = (root / "task.log").read_text()
    assert "is in use by another taskserver" in log
    assert taskserver.proc.poll() is None and (taskserver.dir / "jobs").is_dir()


def test_taskhost_of_a_killed_taskserver_stops_by_itself(root, harness, dfs, other_taskserver):
    proc, address = other_taskserver("doomed")
    job = "job_20260101000000_0011"
    job_dir, _ = make_job(dfs, job, "Crawl")
    attempt = f"{job}_map_00000_0"
    launch(harness, job, job_dir, attempt, "map", 0, target=address, splits=whole_input())
    stderr = root / "doomed" / "logs" / job / attempt / "stderr"
    wait_for(lambda: stderr.is_file() and "running task" in stderr.read_text(), 20,
             "the attempt to run its task")
    proc.kill()
    proc.wait()
    wait_for(lambda: not taskhost_running(attempt), 10, "the orphaned TaskHost to exit")


def test_reduce_gives_up_when_a_lost_map_output_is_not_made_again(harness, dfs, taskserver):
    job = "job_20260101000000_0012"
    job_dir, _ = make_job(dfs, job, "WordCount", reducers=1)
    lost = f"{job}_map_00000_9"
    with harness.lock:  # the jobserver keeps listing an output that is gone
        harness.outputs[(job, "map")] = job_pb2.MapOutputsResponse(total=1, outputs=[
            job_pb2.MapOutputLocation(task_id=f"{job}_map_00000", attempt_id=lost,
                                      address=taskserver.address)])
    attempt = f"{job}_reduce_00000_0"
    launch(harness, job, job_dir, attempt, "reduce", 0, partition=0, producer_stage="map")
    status = harness.wait_final(attempt, timeout=TASK_TIMEOUT + 20)
    assert status.state == job_pb2.FAILED
    assert status.error.startswith(f"Unavailable: cannot fetch {lost} from ")
    assert status.error.endswith("and it was not made again")
