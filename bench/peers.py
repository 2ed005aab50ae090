"""The programs minijet's WordCount is compared with, each run as a whole process.

    python bench/peers.py counter INPUT OUTPUT
    python bench/peers.py dask INPUT OUTPUT [--workers 2] [--blocksize 32MiB]

`counter`: one process, collections.Counter over str.split() of 8 MiB chunks of the file.
`dask`: dask.bag.read_text(INPUT, blocksize) -> map_partitions (one Counter per partition)
-> a reduction merging the Counters, on a distributed.LocalCluster of `workers` processes
with one thread each, dashboard off: the fastest dask program we know for this job.
Both write the counts to OUTPUT as "word<TAB>count" lines (the format of minijet's output),
so bench/wordcount.py can check that every tool counted the same.
"""
from __future__ import annotations

import argparse
import collections
from itertools import chain
from typing import Iterable


def count_file(path: str) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    with open(path, "rb") as f:
        rest = b""
        while chunk := f.read(8 * 1024 * 1024):
            chunk = rest + chunk
            cut = chunk.rfind(b"\n") + 1
            rest = chunk[cut:]
            counts.update(chunk[:cut].decode("utf-8", "surrogateescape").split())
        counts.update(rest.decode("utf-8", "surrogateescape").split())
    return counts


def count_partition(lines: Iterable[str]) -> list[collections.Counter]:
    # the same code as minijet's batch-level mapper (examples/wordcount/wordcount_batch.py)
    return [collections.Counter(chain.from_iterable(map(str.split, lines)))]


def merge(counters: Iterable[collections.Counter]) -> collections.Counter:
    total: collections.Counter = collections.Counter()
    for c in counters:
        total.update(c)
    return total


def count_with_dask(path: str, workers: int, blocksize: str) -> collections.Counter:
    import dask.bag as db
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        bag = db.read_text(path, blocksize=blocksize, encoding="utf-8",
                           errors="surrogateescape")
        return bag.map_partitions(count_partition).reduction(merge, merge).compute()


def write_counts(counts: collections.Counter, path: str) -> None:
    with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.writelines(f"{word}\t{n}\n" for word, n in counts.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tool", choices=["counter", "dask"])
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--blocksize", default="32MiB")
    args = ap.parse_args()
    if args.tool == "counter":
        counts = count_file(args.input)
    else:
        counts = count_with_dask(args.input, args.workers, args.blocksize)
    write_counts(counts, args.output)


if __name__ == "__main__":
    main()
