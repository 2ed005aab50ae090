"""Benchmark of the TaskHost data path in one process, against a plain Counter.

Generates (deterministically, cached under the temp dir) English-like text with
Zipf-distributed words, then runs WordCount through the real data-path pieces:
split reader -> mapper -> map output buffer with combiner -> map output file ->
segment read -> shuffle merge -> reducer -> text writer; and, in the same run, a
single-process collections.Counter over the same file. Prints MB/s for both, their
ratio, and the time of each stage.

    .venv/bin/python bench/taskhost_datapath.py [--mb 50] [--reducers 2] [--sort-buffer 64MiB]
"""
from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from minijet import jobconf
from minijet.config import parse_size
from minijet.formats.segments import read_index, read_map_output_segment
from minijet.formats.textinput import SplitReader
from minijet.formats.textoutput import TextOutputWriter
from minijet.job import MapReduceJob
from minijet.splits import Segment
from minijet.taskhost import runner
from minijet.taskhost.mapoutput import MapOutputBuffer
from minijet.taskhost.shuffle import ShuffleMerger

# CPU seconds of this process by default: every stage runs in this one thread, so on an idle
# machine it equals wall time, and on a shared one it is not inflated by other processes.
clock = time.process_time


class WordCount(MapReduceJob):
    """The issue's sample job, as a user writes it."""

    def mapper(self, key, value):
        for word in value.split():
            yield word, 1

    def combiner(self, key, values):
        yield key, sum(values)

    def reducer(self, key, values):
        yield key, sum(values)


def make_text(path: Path, size: int, seed: int = 42) -> None:
    rng = random.Random(seed)
    syllables = ["th", "e", "an", "re", "in", "on", "at", "er", "es", "or", "ti", "te", "st",
                 "en", "nd", "al", "ar", "is", "ou", "ed", "ha", "it", "ng", "se", "me", "ly",
                 "wa", "co", "pr", "ma", "lo", "ve", "di", "ca", "so", "mu", "ki", "ba"]
    vocab = sorted({"".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(60000)})
    rng.shuffle(vocab)
    # Zipf: the word of rank r has weight 1/r^1.1.
    cum, total = [], 0.0
    for r in range(1, len(vocab) + 1):
        total += 1.0 / r ** 1.1
        cum.append(total)
    punct = [",", ".", ";", "", "", "", "", "", "", ""]
    with open(path, "w", encoding="utf-8") as f:
        written = 0
        while written < size:
            lines = []
            for _ in range(2000):
                words = rng.choices(vocab, cum_weights=cum, k=rng.randint(3, 16))
                words[-1] += rng.choice(punct)
                if rng.random() < 0.1:
                    words[0] = words[0].capitalize()
                lines.append(" ".join(words))
            chunk = "\n".join(lines) + "\n"
            f.write(chunk)
            written += len(chunk)


def run_datapath(path: Path, size: int, reducers: int, sort_buffer: int, work: Path):
    job = WordCount()
    times = {}
    t0 = clock()
    buffer = MapOutputBuffer(reducers, work / "spills", sort_buffer=sort_buffer,
                             combiner=job.combiner)
    mapper = job.mapper
    collect_all = buffer.collect_all
    with open(path, "rb") as f:
        reader = SplitReader(f, 0, size)
        for key, value in reader:
            collect_all(mapper(key, value))
    t1 = clock()
    times["read+map+collect"] = t1 - t0
    out = work / "file.out"
    entries = buffer.finish(out)
    t2 = clock()
    times["sort+spill+write map output"] = t2 - t1
    result_files = []
    fetch = merge = 0.0
    for part in range(reducers):
        ta = clock()
        merger = ShuffleMerger(work / f"shuffle{part}", memory_budget=sort_buffer)
        entry = read_index(str(out) + ".index")[part]
        merger.add_segment(read_map_output_segment(out, part), entry)
        tb = clock()
        result = work / f"part-{part:05d}"
        with open(result, "wb") as rf:
            writer = TextOutputWriter(rf)
            reducer = job.reducer
            write_all = writer.write_all
            for key, values in merger.groups():
                write_all(reducer(key, values))
            writer.flush()
        merger.close()
        fetch += tb - ta
        merge += clock() - tb
        result_files.append(result)
    times["fetch segments"] = fetch
    times["merge+reduce+write"] = merge
    times["total"] = clock() - t0
    return times, buffer.counters, entries, result_files


class LocalTextOutput:
    """A reduce task's output to a local file (what a DfsOutput does, minus the DFS)."""

    def __init__(self, path: Path):
        self.file = open(path, "wb")
        self.writer = TextOutputWriter(self.file)

    def write_all(self, pairs):
        self.writer.write_all(pairs)

    def finish(self, progress):
        self.writer.flush()
        self.file.close()

    def abort(self):
        self.file.close()


def run_runner(path: Path, size: int, reducers: int, sort_buffer: int, work: Path):
    """The same through the TaskHost's stage logic (minijet.taskhost.runner), as a job runs."""
    job = WordCount()
    conf = jobconf.compile_mapreduce("wc", "wc.py", "WordCount", {}, ["/in"], "/out", reducers,
                                     has_combiner=True)
    progress = runner.Progress(lambda fraction, counters: None)
    times = {}
    t0 = clock()
    map_dir = work / "map"
    runner.run_input_stage(
        job, conf.stage("map"), [Segment(str(path), 0, size)], lambda p: open(p, "rb"),
        lambda combiner: runner.MapOutputSink(map_dir, reducers, "hash", sort_buffer, combiner),
        progress)
    t1 = clock()
    times["map task"] = t1 - t0
    result_files = []
    for part in range(reducers):
        result = work / f"runner-part-{part:05d}"
        runner.run_consumer_stage(
            job, conf.stage("reduce"),
            [(read_map_output_segment(map_dir / "file.out", part),
              read_index(map_dir / "file.out.index")[part].records)], 1,
            work / "shuffle", sort_buffer, lambda combiner: LocalTextOutput(result), progress)
        result_files.append(result)
    times["reduce tasks"] = clock() - t1
    times["total"] = clock() - t0
    return times, result_files


def read_counts(results: list[Path]) -> dict[str, int]:
    got = {}
    for result in results:
        for line in result.read_bytes().decode("utf-8", "surrogateescape").splitlines():
            word, _, n = line.rpartition("\t")
            got[word] = int(n)
    return got


def run_counter(path: Path):
    t0 = clock()
    counts = Counter()
    update = counts.update
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            update(line.split())
    return clock() - t0, counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mb", type=float, default=50.0, help="input size in MB (default 50)")
    ap.add_argument("--input", help="a text file to use instead of the generated one "
                    "(e.g. bench/wordcount.py's zipf text: more distinct words)")
    ap.add_argument("--reducers", type=int, default=2)
    ap.add_argument("--sort-buffer", default="64MiB", help="map sort buffer (default 64MiB)")
    ap.add_argument("--no-check", action="store_true", help="skip comparing the outputs")
    ap.add_argument("--repeat", type=int, default=1, help="best of N runs (default 1)")
    ap.add_argument("--wall", action="store_true", help="wall-clock time instead of CPU time")
    ap.add_argument("--gc-freeze", action="store_true",
                    help="gc.freeze() and raise the GC thresholds first (as a TaskHost could)")
    args = ap.parse_args()
    global clock
    if args.wall:
        clock = time.perf_counter
    if args.gc_freeze:
        gc.freeze()
        gc.set_threshold(100_000, 50, 1000)
    size = int(args.mb * 1e6)
    path = Path(args.input or Path(tempfile.gettempdir()) / f"minijet-bench-words-{size}.txt")
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        make_text(tmp, size)
        os.replace(tmp, path)
        print(f"generated {path}", file=sys.stderr)
    size = path.stat().st_size
    mb = size / 1e6
    sort_buffer = parse_size(args.sort_buffer)
    best: dict[str, dict] = {}
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="minijet-bench-") as tmp:
            work = Path(tmp)
            times, counters, _, results = run_datapath(path, size, args.reducers, sort_buffer, work)
            runner_times, runner_results = run_runner(path, size, args.reducers, sort_buffer, work)
            base_time, counts = run_counter(path)
            if not args.no_check:
                assert read_counts(results) == dict(counts), "data path output differs"
                assert read_counts(runner_results) == dict(counts), "runner output differs"
        for name, t in [("pieces", times), ("runner", runner_times),
                        ("counter", {"total": base_time})]:
            if name not in best or t["total"] < best[name]["total"]:
                best[name] = t
    print(f"input {mb:.1f} MB, {args.reducers} reducers, sort buffer {args.sort_buffer}, "
          f"{'wall' if args.wall else 'CPU'} seconds, best of {args.repeat}"
          + (", gc frozen" if args.gc_freeze else ""))
    print("data path pieces, driven directly:")
    for stage, secs in best["pieces"].items():
        print(f"  {stage:<30} {secs:7.2f} s")
    print(f"  counters: {counters}")
    print("through taskhost.runner (map task, then the reduce tasks):")
    for stage, secs in best["runner"].items():
        print(f"  {stage:<30} {secs:7.2f} s")
    base = mb / best["counter"]["total"]
    for name, label in [("pieces", "data path"), ("runner", "runner"), ("counter", "Counter")]:
        secs = best[name]["total"]
        print(f"{label:<10} {mb / secs:7.1f} MB/s  ({secs:.2f} s)  ratio to Counter "
              f"{mb / secs / base:.2f}")


if __name__ == "__main__":
    main()
