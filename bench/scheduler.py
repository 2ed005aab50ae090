"""Benchmark of the jobserver's pure core with thousands of simulated taskservers.

    .venv/bin/python bench/scheduler.py [--taskservers 2000] [--tasks 100000] [--slots 4]
                                        [--reducers 200] [--replicas 3]

Two runs over the same simulated cluster (racks of 20 hosts, every taskserver heartbeating
once per simulated second, a task taking 5-15 simulated seconds, input blocks with
--replicas replicas on random hosts, locality_delay 3 s):

1. scheduler: the Scheduler alone, `assign` per heartbeat;
2. core: JobServerCore.handle for the whole job (a MapReduce job, one map task per split
   and --reducers reduce tasks): heartbeats carrying every held attempt's status, commit
   requests of the reduce attempts, the Persist records of every state change.

Only the CPU time inside the core is counted (not the simulation's own bookkeeping; CPU
time, so other load on the machine distorts it less than wall-clock time would).
Prints heartbeats per second, assignments per second and the fraction of node-local,
rack-local and off-rack map attempts.
"""
from __future__ import annotations

import argparse
import random
import time

from minijet.jobconf import compile_mapreduce
from minijet.jobserver.model import (AttemptStatus, CommitGranted, CommitRequest, Heartbeat,
                                     JobFinished, JobServerCore, JobSubmitted, LaunchAttempt,
                                     Persist)
from minijet.jobserver.scheduler import NODE_LOCAL, OFF_RACK, RACK_LOCAL, Scheduler
from minijet.splits import Segment, Split

DELAY = 3.0


def cluster(n: int, rng: random.Random) -> tuple[list[str], dict[str, str]]:
    hosts = [f"host{i:05d}" for i in range(n)]
    return hosts, {h: f"/rack{i // 20:03d}" for i, h in enumerate(hosts)}


def bench_scheduler(args) -> None:
    rng = random.Random(1)
    hosts, rack = cluster(args.taskservers, rng)
    s = Scheduler(DELAY, rack.__getitem__)
    s.add_job("job")
    for t in range(args.tasks):
        s.add_task("job", f"t{t}", rng.sample(hosts, args.replicas))
    running = {h: [] for h in hosts}
    counts = {NODE_LOCAL: 0, RACK_LOCAL: 0, OFF_RACK: 0}
    beats, busy, now = 0, 0.0, 0.0
    while len(s):
        now += 1.0
        for h in hosts:
            running[h] = [end for end in running[h] if end > now]
            free = args.slots - len(running[h])
            if free <= 0:
                continue   # the core asks the scheduler only when there are free slots
            start = time.process_time()
            assigned = s.assign(h, h, rack[h], free, now)
            busy += time.process_time() - start
            beats += 1
            for a in assigned:
                counts[a.locality] += 1
                running[h].append(now + rng.uniform(5, 15))
    report("scheduler (heartbeats with free slots)", beats, args.tasks, busy, now, counts)


def bench_core(args) -> None:
    rng = random.Random(2)
    hosts, rack = cluster(args.taskservers, rng)
    core = JobServerCore(max_task_attempts=4, taskserver_timeout=1e9, locality_delay=DELAY,
                         rack_of=rack.__getitem__)
    conf = compile_mapreduce("bench", "bench.py", "Bench", {}, ["/in"], "/out",
                             args.reducers, True)
    block = 64 << 20
    splits = [Split((Segment("/in/data", i * block, block),),
                    tuple(rng.sample(hosts, args.replicas))) for i in range(args.tasks)]
    busy = 0.0
    records = 0

    def handle(event):
        nonlocal busy, records
        start = time.process_time()
        actions = core.handle(event)
        busy += time.process_time() - start
        for a in actions:
            if isinstance(a, Persist):
                records += len(a.records)
        return actions

    handle(JobSubmitted("job_bench", conf, {"map": splits}, 0.0, job_dir="/jobs/job_bench"))
    submit_time = busy
    held = {h: {} for h in hosts}   # attempt id -> end time (simulated)
    beats, launched, now = 0, 0, 0.0
    finished = False
    while not finished:
        now += 1.0
        for h in hosts:
            statuses = []
            for aid, end in held[h].items():
                if end <= now:
                    if "_reduce_" in aid:
                        assert isinstance(handle(CommitRequest(aid, now))[-1], CommitGranted)
                    statuses.append(AttemptStatus(aid, "succeeded", 1.0, [("io", "in", 1)]))
                else:
                    statuses.append(AttemptStatus(aid, "running", 0.5, [("io", "in", 1)]))
            free = args.slots - sum(1 for s in statuses if s.state == "running")
            actions = handle(Heartbeat(h, h, rack[h], args.slots, free, f"{h}:7000",
                                       statuses, now))
            beats += 1
            for s in statuses:
                if s.state == "succeeded":
                    del held[h][s.attempt_id]
            for a in actions:
                finished = finished or isinstance(a, JobFinished)
                if isinstance(a, LaunchAttempt):
                    held[h][a.attempt_id] = now + rng.uniform(5, 15)
                    launched += 1
        if now > 100000:
            raise RuntimeError("the simulated job does not finish")
    st = core.job_status("job_bench")
    counts = {k: sum(1 for a in st["attempts"] if a["locality"] == k and "_map_" in a["task_id"])
              for k in (NODE_LOCAL, RACK_LOCAL, OFF_RACK)}
    print(f"core: JobSubmitted with {args.tasks} splits took {submit_time:.2f} s; "
          f"{records} Persist records in all")
    report("core", beats, launched, busy, now, counts)


def report(name: str, beats: int, assigned: int, busy: float, simulated: float,
           counts: dict[str, int]) -> None:
    total = sum(counts.values()) or 1
    print(f"{name}: {beats} heartbeats in {busy:.2f} s of core CPU time -> "
          f"{beats / busy:,.0f} heartbeats/s, {assigned / busy:,.0f} assignments/s "
          f"({simulated:.0f} simulated seconds)")
    print(f"{name}: map locality node-local {counts[NODE_LOCAL] / total:.1%}, "
          f"rack-local {counts[RACK_LOCAL] / total:.1%}, off-rack {counts[OFF_RACK] / total:.1%}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--taskservers", type=int, default=2000)
    p.add_argument("--tasks", type=int, default=100000)
    p.add_argument("--slots", type=int, default=4)
    p.add_argument("--reducers", type=int, default=200)
    p.add_argument("--replicas", type=int, default=3, help="hosts holding each input block")
    args = p.parse_args()
    print(f"{args.taskservers} taskservers x {args.slots} slots, {args.tasks} tasks, "
          f"{args.replicas} replicas per block")
    bench_scheduler(args)
    bench_core(args)


if __name__ == "__main__":
    main()
