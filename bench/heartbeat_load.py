"""The real jobserver under the heartbeats of thousands of simulated taskservers.

    .venv/bin/python bench/heartbeat_load.py [--taskservers 4000] [--slots 4] [--maps 100000]
        [--reducers 200] [--duration 60] [--clients 3] [--heartbeats-per-second N]
        [--knee] [--profile FILE] [--restart-after S] [--waiters N]

Starts a nameserver, one dataserver (for the job's own files) and a jobserver as daemons
(as `minijet cluster` does), then simulated dataservers holding an input of --maps / 4
blocks of 64 MiB, cut into 16 MiB splits (3 replicas a block on the simulated hosts, racks
of --rack-size; see simulated_nodes.py: blocks without bytes), and, from --clients
processes (grpc.aio), --taskservers simulated taskservers on those hosts. Each heartbeats at the interval the jobserver's reply
names and "runs" what it is given for --task-time seconds. A WordCount job of one map per
block and --reducers reduces is submitted through JetClient once every taskserver has
joined; the run lasts --duration seconds from the submission (or until the job ends).

Prints: heartbeats/s and latency p50/p99/max over the steady window (from 5 s after the
first assignment to the end), assignments/s, the map attempts' locality, the jobserver's
CPU (cores used in that window) and peak RSS, the time from submit to the first
assignment, heartbeat latency while the job was being submitted (RunJob in progress), and
the wakes the jobserver sent. What is simulated: attempts do no work and read nothing;
reduces ask GetMapOutputs once and Commit, and fetch nothing; wakes are counted, not obeyed.

--knee: after the job starts, the taskservers heartbeat at imposed intervals, shrinking
step by step (--step seconds each), whatever the jobserver says; prints each step's
offered and served rate and latency, and the first step whose p99 passes 1 s.
--profile FILE: run the jobserver under cProfile and write its profile to FILE.
--waiters N: N clients follow the job from its acceptance as `jetshell run` does
(JetClient.wait_for_completion, a status every 0.5 s); prints how many statuses they got and
their mean size.
--restart-after S: kill -9 the jobserver S seconds after the job is accepted and start it
again; prints how long it took to serve again (its jobs restored from the store) and to
assign again, and the heartbeats before the kill and after the restart (the CPU and RSS
figures are the first jobserver's).

The simulated clients share the machine's cores with the jobserver: on a small machine
the clients' own CPU lowers the figures.
"""
from __future__ import annotations

import argparse
import multiprocessing
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from minijet import rpc
from minijet.client import JetClient, JobTimeout
from minijet.cluster import LocalCluster
from minijet.proto import job_pb2, job_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import profiled  # noqa: E402  (beside this file)
import simulated_nodes as sim  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORDCOUNT = str(ROOT / "examples" / "wordcount" / "wordcount.py")
BLOCK = 64 << 20     # the input files' block size
SPLIT = 16 << 20     # the jobserver's dfs.block_size and min_split_size: 4 splits a block
FILES = 100          # the input's files; its blocks are spread evenly over them
SETTLE = 5.0         # seconds after the first assignment before the steady window
KNEE_INTERVALS = (4.0, 2.0, 1.5, 1.0, 0.75, 0.5, 0.35, 0.25)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


class Sampler(threading.Thread):
    """The jobserver's CPU time and RSS, every 0.2 s."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.samples: list[tuple[float, float, int]] = []   # (time, cpu seconds, rss)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            try:
                cpu = self.proc.cpu_times()
                self.samples.append((time.time(), cpu.user + cpu.system,
                                     self.proc.memory_info().rss))
            except psutil.NoSuchProcess:
                return

    def cpu_between(self, start: float, end: float) -> float:
        return sim.cores_between(self.samples, start, end)

    def peak_rss(self) -> int:
        return max((s[2] for s in self.samples), default=0)


class Follower(threading.Thread):
    """A client following the job as `jetshell run` does (JetClient.wait_for_completion,
    its progress shown every 0.5 s) until `stop_at`; records each status's size."""

    def __init__(self, config, job_id: str, stop_at: float):
        super().__init__(daemon=True)
        self.config, self.job_id, self.stop_at = config, job_id, stop_at
        self.sizes: list[int] = []
        self.start()

    def run(self) -> None:
        with JetClient(self.config) as jc:
            try:
                jc.wait_for_completion(self.job_id, lambda st: self.sizes.append(st.ByteSize()),
                                       timeout=max(0.0, self.stop_at - time.time()))
            except JobTimeout:
                pass


def cluster_config(args, work: Path) -> dict:
    racks = {sim.host_name(i): sim.rack_name(i, args.rack_size)
             for i in range(args.taskservers)}
    # splits of exactly SPLIT bytes, each inside one block: --maps tasks from a quarter as
    # many blocks (made 4x faster; a split's hosts are its block's)
    js = {"taskserver_timeout": "30s", "locality_delay": "3s", "min_split_size": SPLIT,
          "job_file_replication": 1}
    if args.heartbeats_per_second:
        js["heartbeats_per_second"] = args.heartbeats_per_second
    return {"nameserver": {"dead_timeout": "1h"},   # the simulated dataservers beat once
            "dfs": {"replication": 1, "block_size": SPLIT},
            "jobserver": js,
            "taskserver": {"heartbeat_interval": "1s"},
            "topology": {"racks": racks},
            "rpc": {"max_message_size": "256MiB"}}


def start_jobserver(lc: LocalCluster, profile: str) -> subprocess.Popen:
    cmd = profiled.command("minijet.jobserver.jobserver", profile)
    cmd += ["--config", str(lc.config_path)]
    log = open(lc.dir / "logs" / "jobserver.log", "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=lc.dir)
    config = lc.config
    address = config["jobserver"]["address"]
    deadline = time.monotonic() + 60
    with rpc.connect(config, address) as channel:
        stub = job_pb2_grpc.JobServerStub(channel)
        while True:
            try:
                stub.ListJobs(job_pb2.ListJobsRequest(), timeout=2)
                return proc
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the jobserver did not start; see {log.name}")
                time.sleep(0.2)


def live_taskservers(config) -> int:
    with JetClient(config) as jc:
        return sum(1 for t in jc.list_taskservers() if t.alive)


def plans(args, jobserver: str, stop_at: float, knee_from: float) -> list[sim.Plan]:
    per = -(-args.taskservers // args.clients)
    steps = [(knee_from + i * args.step, iv) for i, iv in enumerate(KNEE_INTERVALS)] \
        if args.knee else []
    return [sim.Plan(jobserver, first, min(per, args.taskservers - first), args.slots,
                     args.rack_size, (args.task_min, args.task_max), stop_at, steps)
            for first in range(0, args.taskservers, per)]


def window(beats, start: float, end: float):
    inside = [b for b in beats if start <= b[0] < end]
    return inside, [b[1] for b in inside]


BIN = 0.1   # seconds: heartbeats sent in bunches show as bins far above the mean rate


def report_window(name: str, beats, start: float, end: float) -> None:
    inside, lat = window(beats, start, end)
    span = max(end - start, 1e-9)
    print(f"{name}: {len(inside) / span:,.0f} heartbeats/s over {span:.1f} s; latency p50 "
          f"{ms(percentile(lat, .5))}, p99 {ms(percentile(lat, .99))}, "
          f"max {ms(max(lat, default=float('nan')))}; "
          f"{sum(b[2] for b in inside) / span:,.0f} assignments/s; "
          f"sent at up to {busiest(inside, start, end):,.0f}/s (busiest {BIN * 1000:.0f} ms)")


def busiest(beats, start: float, end: float) -> float:
    """The highest send rate over the window's BIN-long bins."""
    bins = [0] * max(1, int((end - start) / BIN))
    for sent, _, _ in beats:
        bins[min(len(bins) - 1, int((sent - start) / BIN))] += 1
    return max(bins) / BIN


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--taskservers", type=int, default=4000)
    p.add_argument("--slots", type=int, default=4)
    p.add_argument("--rack-size", type=int, default=40)
    p.add_argument("--maps", type=int, default=100_000)
    p.add_argument("--reducers", type=int, default=200)
    p.add_argument("--duration", type=float, default=60.0,
                   help="seconds from the submission to the end of the run")
    p.add_argument("--clients", type=int, default=3, help="processes simulating taskservers")
    p.add_argument("--task-min", type=float, default=5.0)
    p.add_argument("--task-max", type=float, default=15.0)
    p.add_argument("--heartbeats-per-second", type=float, default=0,
                   help="jobserver.heartbeats_per_second (default: the configured default)")
    p.add_argument("--knee", action="store_true", help="find the heartbeat rate where p99 > 1 s")
    p.add_argument("--step", type=float, default=8.0, help="seconds per --knee step")
    p.add_argument("--profile", default="", help="cProfile the jobserver into this file")
    p.add_argument("--waiters", type=int, default=0,
                   help="clients following the job's progress as `jetshell run` does")
    p.add_argument("--restart-after", type=float, default=0, metavar="S",
                   help="kill -9 the jobserver S seconds after the job is accepted, and "
                        "start it again")
    p.add_argument("--dir", default="", help="work directory (default: a temporary one)")
    args = p.parse_args()
    if args.knee:
        args.duration = max(args.duration, SETTLE + 2 + args.step * len(KNEE_INTERVALS))
    work = Path(args.dir or tempfile.mkdtemp(prefix="minijet-hbload-"))
    print(f"{args.taskservers} taskservers x {args.slots} slots (racks of {args.rack_size}), "
          f"{args.maps} maps, {args.reducers} reduces, tasks of {args.task_min:g}-"
          f"{args.task_max:g} s, {args.clients} client processes; work dir {work}")
    lc = LocalCluster(work / "cluster", cluster_config(args, work))
    jobserver = None
    try:
        lc.up(dataservers=1)
        config = lc.config
        started = time.monotonic()
        hosts = [sim.host_name(i) for i in range(args.taskservers)]
        blocks = -(-args.maps // (BLOCK // SPLIT))
        per_file = -(-blocks // FILES)
        files = [f"/bench/in/part-{i:04d}" for i in range(-(-blocks // per_file))]
        made = sim.make_input(config["nameserver"]["address"], hosts,
                              [sim.rack_name(i, args.rack_size) for i in range(len(hosts))],
                              files, per_file, BLOCK, excluded=["host1"])
        print(f"input: {made} blocks of {BLOCK >> 20} MiB in {len(files)} files on the "
              f"simulated dataservers, made in {time.monotonic() - started:.1f} s")
        daemon = [start_jobserver(lc, args.profile)]
        jobserver = daemon[0]
        sampler = Sampler(jobserver.pid)
        sampler.start()
        run(args, lc, config, sampler, daemon)
    finally:
        if jobserver is not None:
            daemon[0].send_signal(signal.SIGTERM)
            daemon[0].wait(60)
        lc.down()


def restart_jobserver(lc: LocalCluster, daemon: list) -> tuple[float, float]:
    """kill -9 the jobserver and start it again; (when killed, when it answered again)."""
    daemon[0].kill()
    daemon[0].wait(60)
    killed = time.time()
    daemon[0] = start_jobserver(lc, "")
    return killed, time.time()


def run(args, lc: LocalCluster, config, sampler: Sampler, daemon: list) -> None:
    address = config["jobserver"]["address"]
    join_by = time.time() + 15.0
    stop_at = join_by + args.duration
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(len(plans(args, address, stop_at, 0))) as pool:
        results = pool.map_async(sim.run_taskservers,
                                 plans(args, address, stop_at, join_by + SETTLE))
        deadline = time.monotonic() + 60
        while live_taskservers(config) < args.taskservers:
            if time.monotonic() > deadline or results.ready():
                raise RuntimeError("the simulated taskservers did not all join")
            time.sleep(0.5)
        idle_from = time.time()
        time.sleep(max(0.0, join_by - time.time()))
        with JetClient(config) as jc:
            submitted = time.time()
            job_id = jc.submit(WORDCOUNT, "WordCount",
                               ["/bench/in", "/bench/out", "--reducers", str(args.reducers)])
            accepted = time.time()
            followers = [Follower(config, job_id, stop_at) for _ in range(args.waiters)]
            restart = None
            if args.restart_after:
                time.sleep(max(0.0, accepted + args.restart_after - time.time()))
                restart = restart_jobserver(lc, daemon)
            recs = results.get()
            for f in followers:
                f.join(60)
            status = [s for s in jc.list_jobs(all=True) if s.job_id == job_id][0]
    sampler.stop.set()
    beats = sorted(b for r in recs for b in r.beats)
    first = min((b[0] + b[1] for b in beats if b[2]), default=float("nan"))
    end = min(stop_at, status.end_time or stop_at)
    told = {i for r in recs for i in r.intervals}
    print(f"job {job_id}: {status.state}; RunJob {accepted - submitted:.2f} s; submit to first "
          f"assignment {first - submitted:.2f} s; intervals told {min(told):g}-{max(told):g} s")
    report_window("idle (joined, no job)", beats, idle_from, submitted)
    report_window("during submission (RunJob)", beats, submitted, accepted)
    if restart is None:
        report_window("steady", beats, first + SETTLE, end)
    else:
        killed, up = restart
        again = min((b[0] + b[1] for b in beats if b[2] and b[0] >= up), default=float("nan"))
        print(f"jobserver killed {killed - accepted:.1f} s after the job was accepted; "
              f"serving again {up - killed:.2f} s after the kill (its jobs restored from the "
              f"store); first assignment {again - up:.2f} s after that; job {status.state} "
              "at the end of the run")
        report_window("steady, before the kill", beats, first + SETTLE, killed)
        report_window("after the restart", beats, up, end)
        report_window("steady after the restart", beats, again + SETTLE, end)
    if args.knee:
        knee(args, beats, join_by + SETTLE)
    counters = {c.name: c.value for c in status.counters if c.group == "job"}
    local = [counters.get(k, 0) for k in ("node_local_attempts", "rack_local_attempts",
                                          "off_rack_attempts")]
    total = sum(local) or 1
    print(f"map locality: node-local {local[0] / total:.1%}, rack-local {local[1] / total:.1%},"
          f" off-rack {local[2] / total:.1%} of {sum(local)} map attempts")
    for method in ("Commit", "GetMapOutputs"):
        lat = [x for r in recs for x in r.calls[method]]
        if lat:
            print(f"{method}: {len(lat)} calls, p50 {ms(percentile(lat, .5))}, "
                  f"p99 {ms(percentile(lat, .99))}, max {ms(max(lat))}")
    if followers:
        sizes = [n for f in followers for n in f.sizes]
        print(f"followers: {len(followers)} clients waiting on the job as `jetshell run` does "
              f"(WaitJob, a status every 0.5 s): {len(sizes)} statuses, mean "
              f"{statistics.mean(sizes) / 1024 if sizes else 0:,.0f} KiB")
    sims = sum(sim.cores_between(r.cpu, first + SETTLE, end) for r in recs)
    print(f"jobserver: {sampler.cpu_between(first + SETTLE, end):.2f} cores in the steady "
          f"window (the simulated taskservers' processes {sims:.2f}), peak RSS "
          f"{sampler.peak_rss() / 2**20:,.0f} MiB; wakes received "
          f"{sum(r.wakes for r in recs)}; commits denied {sum(r.denied for r in recs)}")
    errors: dict[str, int] = {}
    for r in recs:
        for k, v in r.errors.items():
            errors[k] = errors.get(k, 0) + v
    if errors:
        print(f"errors: {errors}")


def knee(args, beats, start: float) -> None:
    found = None
    for i, interval in enumerate(KNEE_INTERVALS):
        s = start + i * args.step
        inside, lat = window(beats, s + 1.0, s + args.step)   # a second to settle
        p99 = percentile(lat, .99)
        print(f"knee: interval {interval:g} s, offered {args.taskservers / interval:,.0f}/s, "
              f"served {len(inside) / (args.step - 1.0):,.0f}/s, p50 {ms(percentile(lat, .5))},"
              f" p99 {ms(p99)}")
        if found is None and p99 > 1.0:
            found = interval
    print(f"knee: p99 passes 1 s at interval {found:g} s "
          f"({args.taskservers / found:,.0f} heartbeats/s offered)" if found else
          "knee: p99 stayed under 1 s at every step")


if __name__ == "__main__":
    main()
