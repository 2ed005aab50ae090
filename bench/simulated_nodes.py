"""Simulated nodes for bench/heartbeat_load.py, speaking the real protocols over grpc.aio.

Dataservers (as Hadoop's NNThroughputBenchmark does): the input's files are made with the
client protocol (Create, AddBlock, Complete) with no bytes written, then every simulated host
registers and block-reports the replicas it "holds" (3 per block, spread as HDFS's default
policy would), so the DFS holds a file system of many blocks spread over the simulated
hosts, as a jobserver reading an input's block locations sees a real one. They say they are
full, so that real files (the job's) go to the one real dataserver.

Taskservers: each heartbeats at the interval the jobserver's reply names (or, in the knee
search, at an imposed one), reporting every attempt it holds as a real taskserver does
(minijet.taskserver.attempts): running with its progress until it ends, then succeeded once.
An attempt "runs" for a random time and does no work. A consumer (reduce) attempt asks
GetMapOutputs for its producer stage once when it starts, and Commit before it reports
success, as a TaskHost does through its taskserver; it fetches nothing. Kill orders end an
attempt, reported as killed. Each process serves one TaskServer Wake endpoint, which all its
taskservers name as their address: wakes are counted, not acted on (a wake does not say
which of them it is for).
"""
from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field

import grpc

from minijet.proto import dfs_pb2, dfs_pb2_grpc, job_pb2, job_pb2_grpc
from minijet.taskserver.heartbeats import heartbeat_wait

OPTIONS = [("grpc.max_send_message_length", 256 << 20),
           ("grpc.max_receive_message_length", 256 << 20)]
CONCURRENCY = 64   # calls in flight per process while making the input


def host_name(i: int) -> str:
    return f"node{i:05d}"


def rack_name(i: int, rack_size: int) -> str:
    return f"/rack{i // rack_size:03d}"


# ---- dataservers and the input ----

async def _bounded(starts, limit: int = CONCURRENCY):
    """Await the calls `starts` make (functions of no arguments), `limit` at a time: a call
    starts when it is made, so a burst of thousands would all be in flight at once."""
    sem = asyncio.Semaphore(limit)

    async def one(start):
        async with sem:
            return await start()

    return await asyncio.gather(*(one(s) for s in starts))


def make_input(address: str, hosts: list[str], racks: list[str], files: list[str],
               blocks_per_file: int, block_size: int, excluded: list[str]) -> int:
    """Create `files` of `blocks_per_file` blocks each, then register `hosts` as dataservers
    holding 3 replicas of every block (none on `excluded`). Returns the number of blocks."""
    return asyncio.run(_make_input(address, hosts, racks, files, blocks_per_file, block_size,
                                   excluded))


def replica_hosts(count: int, racks: list[str], rng: random.Random) -> list[list[int]]:
    """3 hosts (indexes into `racks`) for each of `count` blocks, as HDFS's default policy
    spreads a block written from a random node: that node, then two nodes of one other
    rack."""
    by_rack: dict[str, list[int]] = {}
    for i, r in enumerate(racks):
        by_rack.setdefault(r, []).append(i)
    names = list(by_rack)
    out = []
    for _ in range(count):
        first = rng.randrange(len(racks))
        other = [r for r in rng.sample(names, min(2, len(names))) if r != racks[first]][:1]
        pool = by_rack[other[0]] if other else [i for i in range(len(racks)) if i != first]
        out.append([first, *rng.sample(pool, min(2, len(pool)))])
    return out


async def _make_input(address, hosts, racks, files, blocks_per_file, block_size, excluded):
    room = 1 << 60
    seeds = ["seed1", "seed2", "seed3"]
    async with grpc.aio.insecure_channel(address, options=OPTIONS) as channel:
        ns = dfs_pb2_grpc.NameServerStub(channel)

        def register(host: str, rack: str, free: int):
            return ns.RegisterDataServer(dfs_pb2.RegisterRequest(
                node=dfs_pb2.NodeInfo(host=host, rack=rack, data_address="127.0.0.1:9"),
                capacity=room, used=room - free, free=free))

        # the nameserver places the replicas on a few seeds (its placement looks at every
        # live dataserver for each block: thousands would make this slow) ...
        await _bounded(lambda h=h: register(h, "/seeds", room) for h in seeds)
        made: list[int] = []
        last: dict[str, dfs_pb2.Block] = {}

        async def one_file(path: str) -> None:
            await ns.Create(dfs_pb2.CreateRequest(path=path, replication=3,
                                                  block_size=block_size, client_id="bench"))
            previous = None
            for _ in range(blocks_per_file):
                located = await ns.AddBlock(dfs_pb2.AddBlockRequest(
                    path=path, client_id="bench", previous=previous, excluded_hosts=excluded))
                previous = dfs_pb2.Block(block_id=located.block.block_id, length=block_size)
                made.append(previous.block_id)
            last[path] = previous

        await _bounded(lambda p=p: one_file(p) for p in files)
        # ... which never receive them: the simulated hosts report holding them instead, as
        # dataservers do after a restart; all of them full, so that new files (the job's)
        # go to the real dataserver
        held: dict[int, list[int]] = {i: [] for i in range(len(hosts))}
        for block_id, replicas in zip(made, replica_hosts(len(made), racks,
                                                          random.Random(len(made)))):
            for i in replicas:
                held[i].append(block_id)
        await _bounded(lambda h=h: register(h, "/seeds", 0) for h in seeds)
        await _bounded(lambda h=h, r=r: register(h, r, 0) for h, r in zip(hosts, racks))
        await _bounded(lambda i=i, ids=ids: ns.BlockReport(dfs_pb2.BlockReportRequest(
            host=hosts[i], blocks=[dfs_pb2.Block(block_id=b, length=block_size) for b in ids]))
            for i, ids in held.items())
        # closed once every replica is known: the nameserver's re-replication never sees
        # a finished block short of replicas
        await _bounded(lambda p=p: ns.Complete(dfs_pb2.CompleteRequest(
            path=p, client_id="bench", last=last[p])) for p in files)
    return len(made)


# ---- taskservers ----

@dataclass
class Plan:
    """What one process simulates, and when."""
    jobserver: str
    first: int               # index of its first taskserver
    count: int
    slots: int
    rack_size: int
    task_time: tuple[float, float]
    stop_at: float           # wall-clock time to stop heartbeating
    intervals: list[tuple[float, float]] = field(default_factory=list)  # knee: (from, s)


@dataclass
class Held:
    attempt_id: str
    ends: float
    consumer: str = ""       # job id and producer stage: a reduce that must commit
    job_id: str = ""
    state: str = "running"   # running | succeeded | failed | killed


class Recorder:
    def __init__(self) -> None:
        self.beats: list[tuple[float, float, int]] = []   # (sent, latency, launches)
        self.calls: dict[str, list[float]] = {"Commit": [], "GetMapOutputs": []}
        self.errors: dict[str, int] = {}
        self.wakes = 0
        self.denied = 0
        self.intervals: set[float] = set()
        self.cpu: list[tuple[float, float]] = []   # (time, this process's CPU seconds)

    def error(self, method: str, e: Exception) -> None:
        key = (f"{method}: {e.code().name} ({e.details()})"
               if isinstance(e, grpc.aio.AioRpcError) else f"{method}: {e!r}")
        self.errors[key] = self.errors.get(key, 0) + 1


class WakeCounter(job_pb2_grpc.TaskServerServicer):
    def __init__(self, rec: Recorder):
        self.rec = rec

    async def Wake(self, request, context):
        self.rec.wakes += 1
        return job_pb2.Empty()


def imposed_interval(plan: Plan, now: float) -> float | None:
    """The knee search's interval at `now`: the last step begun, if any."""
    current = None
    for start, interval in plan.intervals:
        if now >= start:
            current = interval
    return current


class TaskServerSim:
    def __init__(self, index: int, plan: Plan, stub, address: str, rec: Recorder,
                 rng: random.Random):
        self.name = self.host = host_name(index)
        self.rack = rack_name(index, plan.rack_size)
        self.plan, self.stub, self.address, self.rec, self.rng = plan, stub, address, rec, rng
        self.held: dict[str, Held] = {}
        self.jobs: set[str] = set()
        self.interval = 1.0
        self.heartbeats = None   # the Heartbeats stream

    def _statuses(self, now: float) -> list[job_pb2.AttemptStatus]:
        out = []
        for a in self.held.values():
            if a.state == "running" and now >= a.ends:
                a.state = "succeeded"
            state = {"running": job_pb2.RUNNING, "succeeded": job_pb2.SUCCEEDED,
                     "failed": job_pb2.FAILED, "killed": job_pb2.KILLED}[a.state]
            out.append(job_pb2.AttemptStatus(attempt_id=a.attempt_id, state=state,
                                             progress=1.0 if a.state != "running" else 0.5))
        return out

    async def _finish_consumers(self, now: float) -> None:
        """A reduce that has run its time asks for the commit first, as a TaskHost does."""
        for a in self.held.values():
            if a.consumer and a.state == "running" and now >= a.ends:
                granted = await self._call("Commit", job_pb2.CommitRequest(
                    attempt_id=a.attempt_id))
                if granted is None or not granted.granted:
                    self.rec.denied += granted is not None
                    a.state = "failed"
                else:
                    a.state = "succeeded"

    async def _call(self, method: str, request):
        started = time.perf_counter()
        try:
            reply = await getattr(self.stub, method)(request, timeout=60)
        except grpc.aio.AioRpcError as e:
            self.rec.error(method, e)
            return None
        self.rec.calls[method].append(time.perf_counter() - started)
        return reply

    async def _start_consumer(self, a: Held, producer: str) -> None:
        await self._call("GetMapOutputs", job_pb2.MapOutputsRequest(job_id=a.job_id,
                                                                   stage_id=producer))

    async def beat(self) -> None:
        now = time.time()
        await self._finish_consumers(now)
        statuses = self._statuses(now)
        running = sum(1 for a in self.held.values() if a.state == "running")
        request = job_pb2.HeartbeatRequest(
            name=self.name, host=self.host, rack=self.rack, slots=self.plan.slots,
            free_slots=max(0, self.plan.slots - running), address=self.address,
            attempts=statuses, jobs=sorted(self.jobs))
        sent = time.time()
        started = time.perf_counter()
        try:   # on the stream this taskserver keeps open, as a taskserver does
            if self.heartbeats is None:
                self.heartbeats = self.stub.Heartbeats()
            await self.heartbeats.write(request)
            reply = await asyncio.wait_for(self.heartbeats.read(), 60)
            if reply is grpc.aio.EOF:
                raise ConnectionError("the jobserver ended the heartbeat stream")
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, ConnectionError,
                TimeoutError) as e:   # (InvalidStateError: written after the stream ended)
            self.rec.error("Heartbeats", e)
            self.heartbeats.cancel()
            self.heartbeats = None
            return
        latency = time.perf_counter() - started
        for a in list(self.held.values()):   # reported final: forgotten
            if a.state != "running":
                del self.held[a.attempt_id]
        launches = 0
        for command in reply.commands:
            kind = command.WhichOneof("command")
            if kind == "launch":
                launches += 1
                order = command.launch
                task = json.loads(order.task_json)
                a = Held(order.attempt_id, time.time() + self.rng.uniform(*self.plan.task_time),
                         job_id=order.job_id)
                self.held[a.attempt_id] = a
                self.jobs.add(order.job_id)
                if task.get("producer_stage"):
                    a.consumer = task["producer_stage"]
                    asyncio.ensure_future(self._start_consumer(a, a.consumer))
            elif kind == "kill":
                a = self.held.get(command.kill.attempt_id)
                if a is not None and a.state == "running":
                    a.state = "killed"
            elif kind == "cleanup":
                self.jobs.discard(command.cleanup.job_id)
        self.rec.beats.append((sent, latency, launches))
        if reply.heartbeat_interval > 0:
            self.interval = reply.heartbeat_interval
            self.rec.intervals.add(round(reply.heartbeat_interval, 3))

    async def run(self) -> None:
        # first beats spread over a second, as a cluster's nodes start at different times
        await asyncio.sleep(self.rng.uniform(0, 1.0))
        while time.time() < self.plan.stop_at:
            started = time.monotonic()
            await self.beat()
            imposed = imposed_interval(self.plan, time.time())
            # the knee search sends at a fixed rate; else the interval counts from the reply,
            # jittered as a taskserver's is
            wait = imposed - (time.monotonic() - started) if imposed else \
                heartbeat_wait(self.interval, rng=self.rng)
            await asyncio.sleep(max(0.0, wait))
        if self.heartbeats is not None:
            self.heartbeats.cancel()


def run_taskservers(plan: Plan) -> Recorder:
    return asyncio.run(_run_taskservers(plan))


def cores_between(samples: list[tuple], start: float, end: float) -> float:
    """The cores used from `start` to `end`, from (time, CPU seconds, ...) samples."""
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2:
        return float("nan")
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


async def _sample_cpu(rec: Recorder, stop_at: float) -> None:
    """The process's CPU time (its gRPC threads' too) every 0.5 s: the simulation's own
    cost, which the jobserver's share of the machine's cores is not."""
    while time.time() < stop_at:
        rec.cpu.append((time.time(), time.process_time()))
        await asyncio.sleep(0.5)


async def _run_taskservers(plan: Plan) -> Recorder:
    rec = Recorder()
    sampler = asyncio.ensure_future(_sample_cpu(rec, plan.stop_at))
    server = grpc.aio.server(options=OPTIONS)
    job_pb2_grpc.add_TaskServerServicer_to_server(WakeCounter(rec), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    rng = random.Random(plan.first)
    async with grpc.aio.insecure_channel(plan.jobserver, options=OPTIONS) as channel:
        stub = job_pb2_grpc.JobServerStub(channel)
        sims = [TaskServerSim(i, plan, stub, f"127.0.0.1:{port}", rec, rng)
                for i in range(plan.first, plan.first + plan.count)]
        await asyncio.gather(*(s.run() for s in sims))
    await sampler
    await server.stop(0)
    return rec
