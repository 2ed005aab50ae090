"""WordCount on a local cluster beside a single-process collections.Counter over the same file.

    .venv/bin/python bench/wordcount.py [--size 200MB] [--block-size 32MiB] [--reducers 2]

Generates English-like text deterministically (a fixed seed): made-up words built from
syllables, drawn from a Zipf distribution (rank^-1.07, as word frequencies in English), in
lines of 4 to 20 words. Starts a local cluster (2 dataservers, 2 taskservers) in a temporary
directory, puts the file, runs examples/wordcount/wordcount.py on it, checks its output equals
the baseline's counts, and prints MB/s (10^6 bytes) of both and their ratio, for the --size
input and for a 1 KB one (whose time is the fixed latency of a job). The job's time runs from
submit to the end of wait_for_completion; the DFS put is shown apart.
"""
from __future__ import annotations

import argparse
import collections
import itertools
import os
import posixpath
import random
import sys
import tempfile
import time
from pathlib import Path

from minijet.client import JetClient
from minijet.cluster import LocalCluster
from minijet.config import parse_size

WORDCOUNT = str(Path(__file__).resolve().parents[1] / "examples" / "wordcount" / "wordcount.py")
SEED = 20261122
VOCABULARY = 50_000
ZIPF_EXPONENT = 1.07
ONSETS = ["", "b", "c", "d", "f", "g", "h", "l", "m", "n", "p", "r", "s", "t", "w", "th",
          "st", "br", "ch", "sh", "pr", "gr"]
VOWELS = ["a", "e", "i", "o", "u", "ea", "ou", "ai", "ee", "y"]
CODAS = ["", "n", "r", "s", "t", "d", "l", "ng", "st", "ck", "nd"]


def vocabulary(rng: random.Random) -> list[str]:
    """Distinct English-like words, shorter ones more common (they get the low ranks)."""
    words: dict[str, None] = {}
    while len(words) < VOCABULARY:
        syllables = 1 + min(int(rng.expovariate(0.9)), 4)
        w = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS)
                    for _ in range(syllables))
        words.setdefault(w, None)
    ranked = sorted(words, key=len)
    for i in range(0, len(ranked), 50):   # keep some variety of lengths at every rank
        chunk = ranked[i:i + 50]
        rng.shuffle(chunk)
        ranked[i:i + 50] = chunk
    return ranked


def generate(path: Path, size: int, seed: int = SEED) -> None:
    """About `size` bytes of text (whole lines), the same for the same size and seed."""
    rng = random.Random(seed)
    words = vocabulary(rng)
    cum = list(itertools.accumulate(1.0 / (r ** ZIPF_EXPONENT) for r in range(1, len(words) + 1)))
    punct = {0: ",", 1: ".", 2: ";"}
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < size:
            batch = rng.choices(words, cum_weights=cum, k=20_000)
            lines, i = [], 0
            while i < len(batch):
                n = rng.randint(4, 20)
                line = batch[i:i + n]
                line[0] = line[0].capitalize()
                line[-1] += punct.get(rng.randrange(8), "")
                lines.append(" ".join(line))
                i += n
            text = "\n".join(lines) + "\n"
            if written + len(text) > size:
                text = text[:max(0, size - written)]
                text = text[:text.rfind("\n") + 1] or text
            f.write(text)
            written += len(text.encode("utf-8"))
            if not text:
                break


def baseline(path: Path) -> tuple[collections.Counter, float]:
    """collections.Counter over str.split() tokens, reading 8 MiB at a time."""
    start = time.perf_counter()
    counts: collections.Counter = collections.Counter()
    with open(path, "rb") as f:
        rest = b""
        while chunk := f.read(8 * 1024 * 1024):
            chunk = rest + chunk
            cut = chunk.rfind(b"\n") + 1
            rest = chunk[cut:]
            counts.update(chunk[:cut].decode("utf-8").split())
        counts.update(rest.decode("utf-8").split())
    return counts, time.perf_counter() - start


def cluster_wordcount(lc: LocalCluster, jc: JetClient, local: Path, name: str,
                      reducers: int) -> tuple[collections.Counter, float, float, str]:
    dfs = jc.dfs
    start = time.perf_counter()
    dfs.put(str(local), f"/bench/{name}/input.txt")
    put = time.perf_counter() - start
    start = time.perf_counter()
    job_id = jc.submit(WORDCOUNT, "WordCount", [f"/bench/{name}/input.txt", f"/bench/{name}/out",
                                                "--reducers", str(reducers)])
    status = jc.wait_for_completion(job_id, poll=0.05)
    elapsed = time.perf_counter() - start
    if status.state != "succeeded":
        sys.exit(f"job {job_id} {status.state}: {status.error}")
    counts: collections.Counter = collections.Counter()
    for st in dfs.list(f"/bench/{name}/out"):
        if posixpath.basename(st.path).startswith("part-"):
            with dfs.open(st.path) as f:
                for line in f.read().decode("utf-8").split("\n"):
                    if line:
                        word, n = line.rsplit("\t", 1)
                        counts[word] += int(n)
    maps = sum(s.tasks for s in status.stages if s.stage_id == "map")
    return counts, elapsed, put, f"{maps} maps, {reducers} reducers, job {job_id}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="200MB", help="size of the large input (default 200MB)")
    ap.add_argument("--block-size", default="32MiB", help="DFS block size (default 32MiB)")
    ap.add_argument("--reducers", type=int, default=2)
    ap.add_argument("--slots", type=int, default=0,
                    help="task slots per taskserver (default: the number of cores)")
    ap.add_argument("--dir", help="work directory (default: a new temporary directory)")
    args = ap.parse_args()
    size = parse_size(args.size)

    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        work = Path(work)
        inputs = []
        for label, n in ((f"{size / 1e6:g} MB", size), ("1 KB", 1000)):
            path = work / f"text-{n}.txt"
            start = time.perf_counter()
            generate(path, n)
            print(f"generated {label} of Zipf text in {time.perf_counter() - start:.1f}s "
                  f"({path.stat().st_size} bytes)", flush=True)
            inputs.append((label, path))

        config = {"dfs": {"block_size": args.block_size, "replication": 1},
                  "taskserver": {"slots": args.slots}}
        results = []
        with LocalCluster(work / "cluster", config=config) as lc:
            lc.up(dataservers=2, taskservers=2)
            with JetClient(lc.config) as jc:
                for i, (label, path) in enumerate(inputs):
                    expected, base_time = baseline(path)
                    counts, job_time, put_time, detail = cluster_wordcount(
                        lc, jc, path, f"in{i}", args.reducers)
                    if counts != expected:
                        sys.exit(f"{label}: the job's counts differ from the baseline's")
                    mb = path.stat().st_size / 1e6
                    results.append((label, mb / base_time, mb / job_time, base_time, job_time,
                                    put_time, detail))

    cores = os.cpu_count()
    print(f"\nWordCount, local cluster of 2 dataservers + 2 taskservers on {cores} cores "
          f"(block size {args.block_size}), output checked against the baseline")
    print(f"{'input':>10} {'Counter MB/s':>13} {'cluster MB/s':>13} {'ratio':>7} "
          f"{'Counter s':>10} {'job s':>8} {'put s':>7}  job")
    for label, base_rate, job_rate, base_time, job_time, put_time, detail in results:
        print(f"{label:>10} {base_rate:13.4g} {job_rate:13.4g} {job_rate / base_rate:7.3g} "
              f"{base_time:10.3f} {job_time:8.2f} {put_time:7.2f}  {detail}")


if __name__ == "__main__":
    main()
