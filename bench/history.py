"""Bounded history: many small jobs in a row, the jobserver's memory and `jetshell list`.

    PYTHONPATH=$PWD/src python bench/history.py [--jobs 10000] [--every 1000] [--in-flight 4]

Starts a local cluster (1 dataserver, 2 taskservers of 2 slots; the jobserver's history
settings at their defaults: retained_jobs 100, retire_after 10m), puts a tiny text file into
it, then runs --jobs map-only WordCounts of it through JetClient in this process, --in-flight
at a time (each output deleted once its job succeeded, so the DFS stays the same size).
Every --every jobs it prints the jobserver's resident memory (psutil) and the wall time of
`jetshell list` (the whole process). Target: the RSS stays flat after the first 1,000 jobs,
and `jetshell list` stays under TARGET_LIST seconds.
"""
from __future__ import annotations

import argparse
import itertools
import os
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
MiB = 1024 ** 2


def list_time(lc: LocalCluster) -> float:
    start = time.perf_counter()
    subprocess.run(JETSHELL + ["list", "--config", str(lc.config_path)], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=1000, help="jobs between measurements")
    ap.add_argument("--in-flight", type=int, default=4, help="jobs submitted at a time")
    args = ap.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)   # as installed: modules are compiled once
    numbers = itertools.count()
    done = 0
    done_lock = threading.Lock()
    with tempfile.TemporaryDirectory() as tmp:
        with LocalCluster(Path(tmp) / "cluster", config={
                "dfs": {"replication": 1}, "taskserver": {"slots": 2}}) as lc:
            lc.up(dataservers=1, taskservers=2)
            jobserver = psutil.Process(lc.pid("jobserver"))
            with JetClient(lc.config) as jc:
                with jc.dfs.create("/in.txt") as f:
                    f.write(b"to be or not to be\n")

            def run_jobs() -> None:
                nonlocal done
                with JetClient(lc.config) as jc:
                    while (n := next(numbers)) < args.jobs:
                        out = f"/out/{n}"
                        job_id = jc.submit(WORDCOUNT, "WordCount",
                                           ["/in.txt", out, "--reducers", "0"])
                        state = jc.wait_for_completion(job_id).state
                        if state != "succeeded":
                            sys.exit(f"job {job_id} {state}")
                        jc.dfs.delete(out, recursive=True)
                        with done_lock:
                            done += 1

            print(f"{'jobs':>7} {'RSS MiB':>8} {'list s':>7} {'jobs/s':>7}", flush=True)
            start = time.monotonic()
            with ThreadPoolExecutor(args.in_flight) as pool:
                runners = [pool.submit(run_jobs) for _ in range(args.in_flight)]
                mark = 0
                worst = 0.0
                while mark < args.jobs:
                    mark = min(args.jobs, mark + args.every)
                    while done < mark and not any(r.done() for r in runners):
                        time.sleep(0.05)   # (polling a counter of this process)
                    for r in runners:
                        if r.done():
                            r.result()   # its failure ends the run
                    listed = list_time(lc)
                    worst = max(worst, listed)
                    print(f"{done:7d} {jobserver.memory_info().rss / MiB:8.1f} {listed:7.3f} "
                          f"{done / (time.monotonic() - start):7.1f}", flush=True)
            print(f"\n`jetshell list` at most {worst:.3f} s (target {TARGET_LIST} s: "
                  f"{'met' if worst < TARGET_LIST else 'missed'})")


if __name__ == "__main__":
    main()
