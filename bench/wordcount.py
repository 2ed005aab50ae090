"""WordCount on a local minijet cluster beside the programs people would pick instead.

    .venv/bin/python bench/wordcount.py [--inputs zipf:100MB,real] [--repeat 3]

For each input, in one run and on the same file, as whole processes timed back to back
(the order rotated every round): a single-process collections.Counter; dask (when the
`bench` extra is installed: pip install -e '.[bench]'; see bench/peers.py); and on a local
cluster of 2 dataservers + 2 taskservers, `jetshell run` of examples/wordcount/wordcount.py
as written (a mapper yielding (word, 1)) and of examples/wordcount/wordcount_batch.py (a
mapper given a whole split at once, as dask's map_partitions). Every tool's counts must be
identical. Prints the median time of each tool, MB/s (10^6 bytes), the ratios to Counter and
to dask, the peak RSS of every kind of minijet process (TaskHosts, each daemon), and where a
minijet job's core-seconds went: TaskHosts, each daemon, the jetshell client, and idle.

Inputs (`file:PATH` is any local file): `zipf:SIZE` is English-like text made deterministically (a fixed seed): made-up words
drawn from a Zipf distribution (rank^-1.07, as word frequencies in English), lines of 4 to 20
words. `real` is ~50 MB of real English text from files Debian packages ship (the Python and
Linux documentation sources, the King James Bible), whitespace-normalised: many distinct words,
as in real logs and corpora. Needs: apt-get install python3.11-doc linux-doc-6.1 bible-kjv.
"""
from __future__ import annotations

import argparse
import collections
import gzip
import itertools
import os
import posixpath
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import psutil

from minijet.client import JetClient
from minijet.cluster import LocalCluster
from minijet.config import parse_size

ROOT = Path(__file__).resolve().parents[1]
PEERS = str(ROOT / "bench" / "peers.py")
JOBS = {"minijet": (ROOT / "examples" / "wordcount" / "wordcount.py", "WordCount"),
        "minijet batch": (ROOT / "examples" / "wordcount" / "wordcount_batch.py",
                          "WordCountBatch")}
SEED = 20261122
VOCABULARY = 50_000
ZIPF_EXPONENT = 1.07
ONSETS = ["", "b", "c", "d", "f", "g", "h", "l", "m", "n", "p", "r", "s", "t", "w", "th",
          "st", "br", "ch", "sh", "pr", "gr"]
VOWELS = ["a", "e", "i", "o", "u", "ea", "ou", "ai", "ee", "y"]
CODAS = ["", "n", "r", "s", "t", "d", "l", "ng", "st", "ck", "nd"]
REAL_TEXT_SOURCES = [("/usr/share/doc/python3.11/html/_sources", "*.txt"),
                     ("/usr/share/doc/linux-doc-6.1", "*.txt")]


# ---- inputs ----

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
    """About `size` bytes of Zipf text (whole lines), the same for the same size and seed."""
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


def real_text(path: Path) -> None:
    """Real English text from Debian's documentation packages and the KJV Bible, one
    normalised line per non-blank source line, in a fixed order."""
    files = sorted(p for root, pattern in REAL_TEXT_SOURCES for p in Path(root).rglob(pattern))
    bible = shutil.which("bible")
    if not files or not bible:
        sys.exit("the real-text input needs Debian's documentation and Bible packages: "
                 "apt-get install python3.11-doc linux-doc-6.1 bible-kjv")
    space = re.compile(r"\s+")
    with open(path, "w", encoding="utf-8") as out:
        texts = (p.read_bytes() for p in files)
        kjv = subprocess.run([bible, "-f", "gen1:1-rev22:21"], capture_output=True,
                             check=True).stdout
        for data in itertools.chain(texts, [kjv]):
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            for line in data.decode("utf-8", "replace").splitlines():
                line = space.sub(" ", line).strip()
                if line:
                    out.write(line + "\n")


def make_input(spec: str, work: Path) -> Path:
    if spec == "real":
        path = work / "real.txt"
        if not path.exists():
            real_text(path.with_suffix(".tmp"))
            os.replace(path.with_suffix(".tmp"), path)
        return path
    kind, _, size = spec.partition(":")
    if kind == "file" and Path(size).is_file():
        return Path(size)
    if kind != "zipf" or not size:
        sys.exit(f"unknown input {spec!r}: use zipf:SIZE, real or file:PATH")
    path = work / f"zipf-{parse_size(size)}.txt"
    if not path.exists():
        generate(path.with_suffix(".tmp"), parse_size(size))
        os.replace(path.with_suffix(".tmp"), path)
    return path


# ---- running the tools ----

def read_counts(lines) -> dict[str, int]:
    counts = {}
    for line in lines:
        if line:
            word, n = line.rsplit("\t", 1)
            counts[word] = counts.get(word, 0) + int(n)
    return counts


class PeakRss:
    """The peak RSS of every process under `roots` (daemons and their TaskHosts), sampled
    every 50 ms while running, by kind: taskhost, or the daemon's role."""

    def __init__(self, roots: dict[str, int]):
        self.roots = roots
        self.peak: dict[str, int] = collections.defaultdict(int)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakRss":   # may be entered again: the peaks accumulate
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for kind, proc in role_processes(self.roots):
                try:
                    self.peak[kind] = max(self.peak[kind], proc.memory_info().rss)
                except psutil.Error:
                    pass   # a TaskHost that just ended


def role_processes(roles: dict[str, int]) -> Iterator[tuple[str, psutil.Process]]:
    """(kind, process) of every daemon of `roles` (its role) and of all their descendants
    ("taskhost": the fork servers and their TaskHosts)."""
    for role, pid in roles.items():
        try:
            root = psutil.Process(pid)
            children = root.children(True)
        except psutil.Error:
            continue
        yield role, root
        for child in children:
            yield "taskhost", child


def tree_cpu(roles: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each daemon itself, and by all their descendants together
    ("taskhost"), ended ones included: a reaped child's time is added to its parent's
    children times, which are counted here."""
    used: dict[str, float] = collections.defaultdict(float)
    for kind, proc in role_processes(roles):
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue   # ended meanwhile: its time is in its parent's
        used[kind] += t.user + t.system
        used["taskhost"] += t.children_user + t.children_system
    return used


def run_peer(tool: str, path: Path, out: Path) -> tuple[float, dict[str, int]]:
    start = time.perf_counter()
    subprocess.run([sys.executable, PEERS, tool, str(path), str(out)], check=True)
    elapsed = time.perf_counter() - start
    return elapsed, read_counts(out.read_text(encoding="utf-8", errors="surrogateescape")
                                .split("\n"))


def run_minijet(tool: str, lc: LocalCluster, jc: JetClient, dfs_input: str, run: int,
                reducers: int, roles: dict[str, int]
                ) -> tuple[float, dict[str, int], dict[str, float]]:
    """The job's time, its counts, and the CPU seconds each kind of process spent on it
    (the daemons, TaskHosts, the jetshell client, and "idle": the cores' unused time)."""
    job_file, job_class = JOBS[tool]
    out = f"/bench/out-{run}"
    jetshell = str(Path(sys.executable).with_name("jetshell"))
    before, client = tree_cpu(roles), resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([jetshell, "run", "--config", str(lc.config_path), str(job_file), job_class,
                    dfs_input, out, "--reducers", str(reducers)], check=True,
                   stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    after, ended = tree_cpu(roles), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {kind: after[kind] - before[kind] for kind in after}
    cpu["jetshell"] = ended.ru_utime + ended.ru_stime - client.ru_utime - client.ru_stime
    cpu["idle"] = max(0.0, elapsed * os.cpu_count() - sum(cpu.values()))
    dfs = jc.dfs
    lines = []
    for st in dfs.list(out):
        if posixpath.basename(st.path).startswith("part-"):
            with dfs.open(st.path) as f:
                lines += f.read().decode("utf-8", "surrogateescape").split("\n")
    dfs.delete(out, recursive=True)
    return elapsed, read_counts(lines), cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", default="zipf:100MB,real",
                    help="comma-separated: zipf:SIZE, real, file:PATH "
                         "(default zipf:100MB,real)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; medians are shown")
    ap.add_argument("--block-size", default="64MiB", help="DFS block size (default 64MiB)")
    ap.add_argument("--reducers", type=int, default=2)
    ap.add_argument("--tools", default="counter,dask,minijet,minijet batch")
    ap.add_argument("--dir", help="where inputs are made and kept (default: a temp dir)")
    args = ap.parse_args()
    tools = args.tools.split(",")
    try:
        import dask.bag  # noqa: F401
    except ImportError:
        print("dask is not installed (pip install -e '.[bench]'): no dask column")
        tools = [t for t in tools if t != "dask"]

    keep = Path(args.dir) if args.dir else None
    with tempfile.TemporaryDirectory(dir=keep) as tmp:
        work = keep or Path(tmp)
        inputs = [(spec, make_input(spec, work)) for spec in args.inputs.split(",")]
        config = {"dfs": {"block_size": args.block_size, "replication": 1}}
        rows = []
        with LocalCluster(Path(tmp) / "cluster", config=config) as lc:
            lc.up(dataservers=2, taskservers=2)
            roles = {f"{r}{i}": lc.pid(r, i) for r, n in
                     (("nameserver", 1), ("jobserver", 1), ("dataserver", 2), ("taskserver", 2))
                     for i in (range(n) if n == 1 else range(1, n + 1))}
            with JetClient(lc.config) as jc:
                for spec, path in inputs:
                    mb = path.stat().st_size / 1e6
                    dfs_input = f"/bench/{path.name}"
                    start = time.perf_counter()
                    jc.dfs.put(str(path), dfs_input)
                    print(f"{spec}: {mb:.1f} MB, put in {time.perf_counter() - start:.1f}s",
                          flush=True)
                    times = collections.defaultdict(list)
                    cpus = collections.defaultdict(list)   # (tool, kind) -> seconds per round
                    expected = None
                    rss = PeakRss(roles)
                    for run in range(args.repeat):
                        for tool in tools[run % len(tools):] + tools[:run % len(tools)]:
                            if tool.startswith("minijet"):
                                with rss:
                                    t, counts, cpu = run_minijet(tool, lc, jc, dfs_input, run,
                                                                 args.reducers, roles)
                                for kind, seconds in cpu.items():
                                    cpus[tool, kind].append(seconds)
                            else:
                                t, counts = run_peer(tool, path, work / f"{tool}.out")
                            expected = expected or counts
                            if counts != expected:
                                sys.exit(f"{spec}: {tool}'s counts differ from {tools[0]}'s")
                            times[tool].append(t)
                            print(f"  round {run + 1} {tool:<14} {t:7.2f}s "
                                  f"{mb / t:7.1f} MB/s", flush=True)
                    jc.dfs.delete(dfs_input)
                    rows.append((spec, mb, {t: statistics.median(v) for t, v in times.items()},
                                 dict(rss.peak), len(expected),
                                 {k: statistics.median(v) for k, v in cpus.items()}))

    print(f"\nWordCount, medians of {args.repeat}, whole processes; minijet: local cluster of "
          f"2 dataservers + 2 taskservers on {os.cpu_count()} cores, block size "
          f"{args.block_size}, {args.reducers} reducers; counts identical across tools")
    for spec, mb, med, peak, distinct, cpu in rows:
        print(f"\n{spec}: {mb:.1f} MB, {distinct} distinct words")
        print(f"  {'tool':<14} {'s':>8} {'MB/s':>8} {'x Counter':>10} {'x dask':>8}")
        for tool, t in med.items():
            vs_dask = f"{med['dask'] / t:8.2f}" if "dask" in med else f"{'-':>8}"
            vs_counter = f"{med['counter'] / t:10.2f}" if "counter" in med else f"{'-':>10}"
            print(f"  {tool:<14} {t:8.2f} {mb / t:8.1f} {vs_counter} {vs_dask}")
        print("  peak RSS (MB): " + ", ".join(f"{k} {v / 2**20:.0f}"
                                               for k, v in sorted(peak.items())))
        for tool in med:
            kinds = sorted(((k, s) for (t, k), s in cpu.items() if t == tool),
                           key=lambda ks: -ks[1])
            if kinds:
                print(f"  {tool} core-seconds (of {med[tool] * os.cpu_count():.1f}): "
                      + ", ".join(f"{k} {s:.2f}" for k, s in kinds))


if __name__ == "__main__":
    main()
