"""Small-job latency: how long a tiny job takes on a running local cluster, and where it goes.

    PYTHONPATH=$PWD/src python bench/latency.py [--repeat 10] [--taskservers 2]

Starts a local cluster (2 dataservers, 2 taskservers), puts a 1 KB text file into it, then
times, as medians of --repeat runs each:
- `jetshell run examples/wordcount/wordcount.py WordCount` over it, the whole process;
- the same job through JetClient (submit, then wait_for_completion) in this process, which
  has imported minijet already;
- `jetshell submit` of it (the process returns once the job runs);
- `jetshell status JOBID` of a finished job;
- a plain `python -c` collections.Counter over the same local file: the floor.
Every output is checked against the Counter's counts; a first round, not counted, warms up
(and writes the .pyc files an installed minijet has: PYTHONDONTWRITEBYTECODE is ignored
here). Then "where a small job's time goes":
medians of the intervals between the timestamps each `jetshell run` job recorded
(`jetshell status --json`), and the client's own start and exit, which the job cannot see
(timed here from the process's start, its lines as they arrive, and its exit).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from minijet.client import JetClient
from minijet.cluster import LocalCluster

ROOT = Path(__file__).resolve().parents[1]
WORDCOUNT = str(ROOT / "examples" / "wordcount" / "wordcount.py")
JETSHELL = [sys.executable, "-c", "from minijet.client.jetshell import main; main()"]
COUNTER = ("import collections, sys; c = collections.Counter(); "
           "[c.update(line.split()) for line in open(sys.argv[1])]; "
           "sys.stdout.write(''.join(f'{w}\\t{n}\\n' for w, n in c.items()))")
TARGETS = {"jetshell run": 0.4, "JetClient submit+wait": 0.15, "jetshell submit": 0.25,
           "jetshell status": 0.2}
TEXT = ("the quick brown fox jumps over the lazy dog and the dog sleeps while the fox runs "
        "far away into the green hills where no dog follows\n")


def small_text(size: int) -> str:
    return (TEXT * (size // len(TEXT) + 1))[:size - 1] + "\n"


def counts_of(text: str) -> dict[str, int]:
    counts: dict[str, int] = collections.Counter()
    for line in text.splitlines():
        if line:
            word, n = line.rsplit("\t", 1)
            counts[word] += int(n)
    return dict(counts)


def output_counts(jc: JetClient, path: str) -> dict[str, int]:
    text = "".join(jc.dfs.open(st.path).read().decode() for st in jc.dfs.list(path)
                   if st.path.rsplit("/", 1)[1].startswith("part-"))
    jc.dfs.delete(path, recursive=True)
    return counts_of(text)


def timed_lines(args: list[str]) -> tuple[float, dict[str, float], str]:
    """Run a process; (its wall time, when each line's first word came, relative to its
    start, its stdout)."""
    start = time.time()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    seen: dict[str, float] = {}
    out = []
    for line in proc.stdout:
        seen.setdefault(line.split(" ", 1)[0], time.time())
        out.append(line)
    if proc.wait() != 0:
        sys.exit(f"{' '.join(args)} failed with exit code {proc.returncode}")
    return time.time() - start, {"start": start, **seen}, "".join(out)


def phases(job: dict, client: dict[str, float]) -> dict[str, float]:
    """A finished job's intervals (seconds), from its recorded timestamps and its client's
    (start, the `job ... succeeded` line, exit)."""
    attempts = [a for a in job["attempts"] if a["state"] == "succeeded"]
    maps = [a for a in attempts if "_map_" in a["task_id"]]
    reduces = [a for a in attempts if "_reduce_" in a["task_id"]]

    def median(items, start: str, end: str) -> float:
        return statistics.median(a[end] - a[start] for a in items)

    last_map = max(maps, key=lambda a: a["end_time"])
    return {
        "client start: process start -> CreateJob (Python, imports, compiling the job, "
        "checking its paths)": job["submit_time"] - client["start"],
        "upload: CreateJob -> RunJob (the job stored, job.json and the .py into the DFS)":
            job["run_time"] - job["submit_time"],
        "submit -> splits: RunJob -> splits computed (job.json read, input listed)":
            job["start_time"] - job["run_time"],
        "splits -> first map assigned (a taskserver's heartbeat)":
            min(a["start_time"] for a in maps) - job["start_time"],
        "map: assigned -> TaskHost up (job files copied, TaskHost forked)":
            median(maps, "start_time", "taskhost_start_time"),
        "map run: TaskHost up -> done (input read, map, output written)":
            median(maps, "taskhost_start_time", "done_time"),
        "map done -> the jobserver knows (TaskHost exit, heartbeat)":
            median(maps, "done_time", "end_time"),
        "map end -> first reduce assigned (negative: before it, by slow start)":
            min(a["start_time"] for a in reduces) - last_map["end_time"],
        "reduce: assigned -> TaskHost up": median(reduces, "start_time", "taskhost_start_time"),
        "reduce run: TaskHost up -> commit granted (waiting for the map if up before its "
        "end, shuffle, reduce, output written)":
            median(reduces, "taskhost_start_time", "commit_time"),
        "reduce commit: granted -> done (part file renamed into place)":
            median(reduces, "commit_time", "done_time"),
        "reduce done -> the jobserver knows (TaskHost exit, heartbeat)":
            median(reduces, "done_time", "end_time"),
        "job output commit: last task end -> output committed (_SUCCESS)":
            job["commit_time"] - job["end_time"],
        "end -> client saw it: output committed -> `succeeded` printed":
            client["job"] - job["commit_time"],
        "client exit: `succeeded` printed -> process gone": client["end"] - client["job"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=10, help="runs of each; medians are shown")
    ap.add_argument("--size", type=int, default=1024, help="input bytes (default 1 KB)")
    ap.add_argument("--taskservers", type=int, default=2)
    args = ap.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)   # as installed: modules are compiled once
    text = small_text(args.size)
    expected = dict(collections.Counter(text.split()))
    times: dict[str, list[float]] = collections.defaultdict(list)
    breakdown: dict[str, list[float]] = collections.defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "in.txt"
        local.write_text(text)
        with LocalCluster(Path(tmp) / "cluster", config={"dfs": {"replication": 1}}) as lc:
            lc.up(dataservers=2, taskservers=args.taskservers)
            config = ["--config", str(lc.config_path)]
            with JetClient(lc.config) as jc:
                jc.dfs.put(str(local), "/in.txt")
                for run in range(-1, args.repeat):   # -1: the warm-up round
                    start = time.perf_counter()
                    counter = subprocess.run([sys.executable, "-c", COUNTER, str(local)],
                                             capture_output=True, text=True, check=True)
                    times["python Counter"].append(time.perf_counter() - start)
                    if counts_of(counter.stdout) != expected:
                        sys.exit("the Counter's counts are wrong")

                    wall, seen, out = timed_lines(
                        JETSHELL + ["run", *config, WORDCOUNT, "WordCount", "/in.txt",
                                    f"/run-{run}"])
                    times["jetshell run"].append(wall)
                    job_id = out.split("\n", 1)[0].split()[-1]
                    job = jc_status(lc, job_id)
                    seen["end"] = seen["start"] + wall
                    if "run_time" in job:   # (a version before the timestamps: none)
                        for name, seconds in phases(job, seen).items():
                            breakdown[name].append(seconds)
                    check(output_counts(jc, f"/run-{run}"), expected, "jetshell run")

                    start = time.perf_counter()
                    job_id = jc.submit(WORDCOUNT, "WordCount", ["/in.txt", f"/api-{run}"])
                    state = jc.wait_for_completion(job_id).state
                    times["JetClient submit+wait"].append(time.perf_counter() - start)
                    if state != "succeeded":
                        sys.exit(f"job {job_id} {state}")
                    check(output_counts(jc, f"/api-{run}"), expected, "JetClient")

                    wall, _, out = timed_lines(JETSHELL + ["submit", *config, WORDCOUNT,
                                                           "WordCount", "/in.txt",
                                                           f"/submit-{run}"])
                    times["jetshell submit"].append(wall)
                    job_id = out.strip()
                    jc.wait_for_completion(job_id)   # not to overlap the next measurement
                    check(output_counts(jc, f"/submit-{run}"), expected, "jetshell submit")

                    wall, _, _ = timed_lines(JETSHELL + ["status", *config, job_id])
                    times["jetshell status"].append(wall)
                    print(f"round {run + 1}: " + ", ".join(
                        f"{k} {v[-1]:.3f}s" for k, v in times.items()), flush=True)
                    if run < 0:
                        times.clear()
                        breakdown.clear()

    floor = statistics.median(times["python Counter"])
    print(f"\nA {len(text)}-byte WordCount on a local cluster of 2 dataservers and "
          f"{args.taskservers} taskservers; medians of {args.repeat}, seconds")
    print(f"  {'':<24} {'median':>7} {'min':>7} {'target':>7} {'x target':>9} "
          f"{'x Counter':>10}")
    for name, values in times.items():
        med = statistics.median(values)
        target = TARGETS.get(name)
        print(f"  {name:<24} {med:7.3f} {min(values):7.3f} "
              f"{f'{target:.2f}' if target else '-':>7} "
              f"{f'{med / target:.2f}' if target else '-':>9} {med / floor:10.1f}")
    print("\nWhere a small job's time goes (`jetshell run`; medians over the runs, seconds):")
    total = 0.0
    for name, values in breakdown.items():
        med = statistics.median(values)
        total += med
        print(f"  {med:6.3f}  {name}")
    print(f"  {total:6.3f}  sum of the medians (`jetshell run` median "
          f"{statistics.median(times['jetshell run']):.3f})")


def jc_status(lc: LocalCluster, job_id: str) -> dict:
    """The job's `jetshell status --json`, as a user would read it."""
    out = subprocess.run(JETSHELL + ["status", "--config", str(lc.config_path), "--json",
                                     job_id], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def check(counts: dict[str, int], expected: dict[str, int], what: str) -> None:
    if counts != expected:
        sys.exit(f"{what}: the job's counts differ from the Counter's")


if __name__ == "__main__":
    main()
