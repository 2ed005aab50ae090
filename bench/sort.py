"""TeraSort on a local cluster beside GNU sort of the same records on the same machine.

    .venv/bin/python bench/sort.py [--size 500MB] [--tasks 4] [--block-size 32MiB] \
        [--slots 0] [--repeat N] [--validate] [--dir DIR]

Starts a local cluster (2 dataservers, 2 taskservers, replication 1) in a temporary
directory, generates --size of 100-byte records there with examples/sort/teragen.py
(TeraGen), copies them to one local file, then times, in the same run:
  - the cluster: examples/sort/terasort.py (TeraSort, --tasks part files, total-order
    partitioner), from submit (which samples the input for split points) to completion;
  - GNU sort: `LC_ALL=C sort -o OUT IN` of the local file (its default buffer and threads),
and checks that the part files concatenated equal GNU sort's output byte for byte. Prints
MB/s (10^6 bytes of input per second) of both and the ratio (with --repeat N, of the median
times of N rounds, which alternate which sort runs first). With --validate, TeraSum and
TeraValidate also run on the cluster (checksum of the input, order and checksum of the
output), timed apart.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import posixpath
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from minijet.client import JetClient
from minijet.cluster import LocalCluster
from minijet.config import parse_size

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "sort"
TERAGEN, TERASORT, TERAVALIDATE = (str(EXAMPLES / f) for f in
                                   ("teragen.py", "terasort.py", "teravalidate.py"))
RECORD_SIZE = 100


def run_job(jc: JetClient, job_file: str, cls: str,
            args: list[str]) -> tuple[float, str, str]:
    """Submits and waits for a job: (seconds, job id, its stages and tasks)."""
    start = time.perf_counter()
    job_id = jc.submit(job_file, cls, args)
    status = jc.wait_for_completion(job_id, poll=0.05)
    elapsed = time.perf_counter() - start
    if status.state != "succeeded":
        sys.exit(f"{cls} job {job_id} {status.state}: {status.error}")
    tasks = ", ".join(f"{s.stage_id} {s.tasks}" for s in status.stages)
    return elapsed, job_id, f"job {job_id}: {tasks} tasks"


def stage_times(jc: JetClient, job_id: str) -> list[str]:
    """Per stage: when its attempts ran (seconds after the job started) and the time its
    succeeded attempts spent reading, processing and writing, summed over them."""
    status = jc.get_status(job_id)
    lines = []
    for stage in status.stages:
        attempts = [a for a in status.attempts if a.state == "succeeded"
                    and a.task_id.rsplit("_", 2)[-2] == stage.stage_id]
        if not attempts:
            continue
        first = min(a.start_time for a in attempts) - status.start_time
        last = max(a.end_time for a in attempts) - status.start_time
        sums = {name: sum(c.value for a in attempts for c in a.counters
                          if c.name == f"{name}_time_us") / 1e6
                for name in ("read", "process", "write")}
        lines.append(f"  {stage.stage_id}: {len(attempts)} tasks from {first:.1f}s to "
                     f"{last:.1f}s; summed over them: " +
                     ", ".join(f"{name} {t:.1f}s" for name, t in sums.items()))
    return lines


def parts(dfs, directory: str) -> list[str]:
    return sorted(s.path for s in dfs.list(directory)
                  if posixpath.basename(s.path).startswith("part-"))


def get_concatenated(dfs, directory: str, local: Path) -> str:
    """Copies the part files, in order, into one local file; returns its SHA-256."""
    digest = hashlib.sha256()
    with open(local, "wb") as out:
        for path in parts(dfs, directory):
            with dfs.open(path) as f:
                while data := f.read(8 << 20):
                    digest.update(data)
                    out.write(data)
    return digest.hexdigest()


def gnu_sort(local_in: Path, local_out: Path, work: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["sort", "-T", str(work), "-o", str(local_out), str(local_in)],
                   env=dict(os.environ, LC_ALL="C"), check=True)
    return time.perf_counter() - start


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(8 << 20):
            digest.update(data)
    return digest.hexdigest()


def report(dfs, directory: str) -> dict[str, str]:
    lines = []
    for path in parts(dfs, directory):
        with dfs.open(path) as f:
            lines += f.read().decode().splitlines()
    return dict(line.split("\t") for line in lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="500MB", help="data to sort (default 500MB)")
    ap.add_argument("--tasks", type=int, default=4, help="sort tasks = part files (default 4)")
    ap.add_argument("--gen-tasks", type=int, default=4, help="TeraGen tasks (default 4)")
    ap.add_argument("--block-size", default="32MiB", help="DFS block size (default 32MiB)")
    ap.add_argument("--slots", type=int, default=0,
                    help="task slots per taskserver (default: the number of cores)")
    ap.add_argument("--sort-buffer", help="taskserver.sort_buffer (default: the config's)")
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds of both sorts; the figures are the medians (default 1)")
    ap.add_argument("--validate", action="store_true",
                    help="also run TeraSum and TeraValidate on the cluster")
    ap.add_argument("--dir", help="work directory (default: a new temporary directory)")
    args = ap.parse_args()
    records = parse_size(args.size) // RECORD_SIZE
    size_mb = records * RECORD_SIZE / 1e6

    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        work = Path(work)
        config = {"dfs": {"block_size": args.block_size, "replication": 1},
                  "taskserver": {"slots": args.slots}}
        if args.sort_buffer:
            config["taskserver"]["sort_buffer"] = args.sort_buffer
        with LocalCluster(work / "cluster", config=config) as lc:
            lc.up(dataservers=2, taskservers=2)
            with JetClient(lc.config) as jc:
                dfs = jc.dfs
                dfs.put(str(EXAMPLES / "control.txt"), "/bench/control.txt")
                gen_time, _, gen_detail = run_job(jc, TERAGEN, "TeraGen", [
                    "/bench/control.txt", "/bench/gen", "--records", str(records),
                    "--seed", str(args.seed), "--reducers", str(args.gen_tasks)])
                print(f"TeraGen: {records} records ({size_mb:g} MB) in {gen_time:.1f}s "
                      f"({gen_detail})", flush=True)
                local_in, local_out = work / "records.txt", work / "gnu-sorted.txt"
                get_concatenated(dfs, "/bench/gen", local_in)

                # Rounds of both sorts, the cluster's first in odd rounds and GNU sort's first
                # in even ones, so that neither always runs in the other's wake.
                sort_times, gnu_times = [], []
                for i in range(args.repeat):
                    for which in (("cluster", "gnu") if i % 2 == 0 else ("gnu", "cluster")):
                        if which == "cluster":
                            out = f"/bench/sorted-{i}"
                            seconds, job_id, detail = run_job(jc, TERASORT, "TeraSort", [
                                "/bench/gen", out, "--tasks", str(args.tasks)])
                            sort_times.append(seconds)
                            print(f"round {i + 1}: TeraSort {seconds:.1f}s ({detail})")
                            print("\n".join(stage_times(jc, job_id)), flush=True)
                            if i > 0:
                                dfs.delete(out, recursive=True)
                        else:
                            seconds = gnu_sort(local_in, local_out, work)
                            gnu_times.append(seconds)
                            print(f"round {i + 1}: GNU sort {seconds:.1f}s", flush=True)

                cluster_digest = get_concatenated(dfs, "/bench/sorted-0", work / "cluster.txt")
                identical = cluster_digest == file_sha256(local_out)

                if args.validate:
                    sum_time, _, _ = run_job(jc, TERAVALIDATE, "TeraSum",
                                          ["/bench/gen", "/bench/gen-sum"])
                    expected = report(dfs, "/bench/gen-sum")
                    valid_time, _, _ = run_job(jc, TERAVALIDATE, "TeraValidate", [
                        "/bench/sorted-0", "/bench/valid", "--expect-records",
                        expected["records"], "--expect-checksum", expected["checksum"]])
                    print(f"TeraSum {sum_time:.1f}s, TeraValidate {valid_time:.1f}s: valid, "
                          f"checksum {expected['checksum']}")

    version = subprocess.run(["sort", "--version"], capture_output=True,
                             text=True).stdout.splitlines()[0]
    print(f"\nSort of {records} 100-byte records ({size_mb:g} MB) on {os.cpu_count()} cores: "
          f"local cluster of 2 dataservers + 2 taskservers (block size {args.block_size}, "
          f"{args.tasks} sort tasks) vs {version} (LC_ALL=C)")
    sort_time, gnu_time = statistics.median(sort_times), statistics.median(gnu_times)
    what = f"median of {args.repeat} rounds" if args.repeat > 1 else "one round"
    print(f"{'':>10} {'seconds':>9} {'MB/s':>8}   ({what})")
    print(f"{'cluster':>10} {sort_time:9.2f} {size_mb / sort_time:8.2f}")
    print(f"{'GNU sort':>10} {gnu_time:9.2f} {size_mb / gnu_time:8.2f}")
    print(f"ratio cluster/GNU sort (MB/s): {gnu_time / sort_time:.3f}")
    print("output: " + ("identical to GNU sort's, byte for byte" if identical else
                        "DIFFERS from GNU sort's"))
    if not identical:
        sys.exit(1)


if __name__ == "__main__":
    main()
