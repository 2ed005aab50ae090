"""Bounded history: many small jobs in a row, the jobserver's memory and `jetshell list`.

    PYTHONPATH=$PWD/src python bench/history.py [--jobs 10000] [--every 1000] [--in-flight 4]

Starts a local cluster (1 dataserver, 2 taskservers of 2 slots; the jobserver's history
settings at their defaults: retained_jobs 100, retire_after 10m), puts a tiny text file into
it, then runs --jobs map-only WordCounts of it through JetClient in this process, --in-flight
at a time (each output deleted once its job succeeded, so the DFS stays the same size).
Every --every jobs, once the jobs in flight have ended (new ones wait meanwhile, so the
times are the jobserver's, not those of 2 cores shared with running tasks), it prints the
jobserver's resident memory (psutil), the wall time of `jetshell list` (the whole process,
median of LIST_RUNS) and of its ListJobs call alone (in this process). Target: the RSS stays
flat after the first 1,000 jobs, and `jetshell list` stays under TARGET_LIST seconds.
"""
from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from minijet.client import JetClient
from minijet.cluster import LocalCluster

ROOT = Path(__file__).resolve().parents[1]
WORDCOUNT = str(ROOT / "examples" / "wordcount" / "wordcount.py")
JETSHELL = [sys.executable, "-c", "from minijet.client.jetshell import main; main()"]
TARGET_LIST = 0.3   # seconds
LIST_RUNS = 3
MiB = 1024 ** 2


def list_time(lc: LocalCluster) -> float:
    times = []
    for _ in range(LIST_RUNS):
        start = time.perf_counter()
        subprocess.run(JETSHELL + ["list", "--config", str(lc.config_path)], check=True,
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def rpc_time(jc: JetClient) -> float:
    start = time.perf_counter()
    jc.list_jobs()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=1000, help="jobs between measurements")
    ap.add_argument("--in-flight", type=int, default=4, help="jobs submitted at a time")
    args = ap.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)   # as installed: modules are compiled once
    numbers = itertools.count()
    done = started = 0
    paused = False   # while measuring: no job starts
    counts = threading.Condition()
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(Path(tmp) / "cluster", config={
            "dfs": {"replication": 1}, "taskserver": {"slots": 2}}) as lc:
        lc.up(dataservers=1, taskservers=2)
        jobserver = psutil.Process(lc.pid("jobserver"))
        with JetClient(lc.config) as jc, jc.dfs.create("/in.txt") as f:
            f.write(b"to be or not to be\n")

        def run_jobs() -> None:
            nonlocal done, started
            with JetClient(lc.config) as jc:
                while True:
                    with counts:
                        counts.wait_for(lambda: not paused)
                        if (n := next(numbers)) >= args.jobs:
                            return
                        started += 1
                    out = f"/out/{n}"
                    job_id = jc.submit(WORDCOUNT, "WordCount",
                                       ["/in.txt", out, "--reducers", "0"])
                    state = jc.wait_for_completion(job_id).state
                    if state != "succeeded":
                        raise SystemExit(f"job {job_id} {state}")
                    jc.dfs.delete(out, recursive=True)
                    with counts:
                        done += 1
                        counts.notify_all()

        print(f"{'jobs':>7} {'RSS MiB':>8} {'list s':>7} {'rpc s':>7} {'jobs/s':>7}",
              flush=True)
        worst = ran = 0.0
        with ThreadPoolExecutor(args.in_flight) as pool:
            runners = [pool.submit(run_jobs) for _ in range(args.in_flight)]
            for mark in [*range(args.every, args.jobs, args.every), args.jobs]:
                begun = time.monotonic()
                with counts:
                    while done < mark:
                        counts.wait(1.0)
                        for r in runners:
                            if r.done():
                                r.result()   # a runner's failure ends the run
                    paused = True
                    counts.wait_for(lambda: done == started)
                ran += time.monotonic() - begun   # the pauses do not count
                with JetClient(lc.config) as jc:
                    listed, rpc = list_time(lc), rpc_time(jc)
                worst = max(worst, listed)
                print(f"{done:7d} {jobserver.memory_info().rss / MiB:8.1f} {listed:7.3f} "
                      f"{rpc:7.3f} {done / ran:7.1f}", flush=True)
                with counts:
                    paused = False
                    counts.notify_all()
        print(f"\n`jetshell list` at most {worst:.3f} s (target {TARGET_LIST} s: "
              f"{'met' if worst < TARGET_LIST else 'missed'})")


if __name__ == "__main__":
    main()
