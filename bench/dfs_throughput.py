"""DFS put/get throughput on a local cluster, beside `cp` of the same file on the same disk.

    .venv/bin/python bench/dfs_throughput.py [--size 256MiB] [--block-size 64MiB] [--repeat 3]

Starts a local cluster (3 dataservers) in a temporary directory, writes a file of random
bytes, then times `cp` of it, and DfsClient put and get at replication 1 and 3. Each result
is shown in MB/s (10^6 bytes) and as a ratio to cp. Aims: get >= 50% of cp, put at
replication 1 >= 35% of cp. Dataservers fsync every replica before acknowledging it and cp does
not, so a "cp + fsync" line is shown too; --no-fsync turns the dataservers' fsync off.
-D KEY=VALUE sets any other key of the cluster's configuration, e.g. the security.tls_*
files with -D dfs.short_circuit=false to time reads over TLS.
"""
from __future__ import annotations

import argparse
import filecmp
import os
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

from minijet.cluster import LocalCluster
from minijet.config import parse_overrides, parse_size


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cp_fsync(src: Path, dst: Path) -> None:
    subprocess.run(["cp", str(src), str(dst)], check=True)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_random(path: Path, size: int) -> None:
    chunk = 4 * 1024 * 1024
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(chunk, left)
            f.write(os.urandom(n))
            left -= n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="256MiB", help="file size (default 256MiB)")
    ap.add_argument("--block-size", default="64MiB", help="DFS block size (default 64MiB)")
    ap.add_argument("--dataservers", type=int, default=3)
    ap.add_argument("--no-fsync", action="store_true",
                    help="dataservers do not fsync replicas (dataserver.fsync: false)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run every operation this many times and keep the best (default 1)")
    ap.add_argument("-D", dest="defines", action="append", default=[], metavar="KEY=VALUE",
                    help="a configuration key for the cluster (repeatable)")
    ap.add_argument("--dir", help="work directory (default: a new temporary directory "
                                  "under $TMPDIR, removed at the end)")
    args = ap.parse_args()
    size, block_size = parse_size(args.size), parse_size(args.block_size)

    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        work = Path(work)
        src, copy = work / "source.bin", work / "copy.bin"
        write_random(src, size)
        times: dict[str, list[float]] = {}

        def measure(name: str, run, undo) -> None:
            times.setdefault(name, []).append(timed(run))
            undo()

        config = {"dfs": {"block_size": block_size},
                  "dataserver": {"fsync": not args.no_fsync}}
        for dotted, value in parse_overrides(args.defines).items():
            section, key = dotted.split(".", 1)
            config.setdefault(section, {})[key] = value
        with LocalCluster(work / "cluster", config=config) as lc:
            lc.up(dataservers=args.dataservers)
            with closing(lc.client(host="host1")) as client:
                for _ in range(args.repeat):
                    measure("cp", lambda: subprocess.run(["cp", str(src), str(copy)],
                                                         check=True), copy.unlink)
                    measure("cp + fsync", lambda: cp_fsync(src, copy), copy.unlink)
                    for r in (1, 3):
                        dfs_path = f"/bench/r{r}.bin"
                        measure(f"put r{r}", lambda: client.put(str(src), dfs_path,
                                                                replication=r), lambda: None)
                        measure(f"get r{r}", lambda: client.get(dfs_path, str(copy)),
                                lambda: None)
                        if not filecmp.cmp(src, copy, shallow=False):
                            sys.exit(f"get r{r} returned different bytes")
                        copy.unlink()
                        client.delete(dfs_path)
        results = [(name, min(runs)) for name, runs in times.items()]

    cp_rate = size / results[0][1]
    print(f"file {size / 1e6:.0f} MB, block size {block_size / 2**20:.0f} MiB, "
          f"{args.dataservers} dataservers on one machine, dataserver fsync "
          f"{'off' if args.no_fsync else 'on'}, best of {args.repeat}")
    print(f"{'operation':<11} {'seconds':>8} {'MB/s':>8} {'vs cp':>6}")
    for name, seconds in results:
        rate = size / seconds
        print(f"{name:<11} {seconds:8.2f} {rate / 1e6:8.1f} {rate / cp_rate:6.0%}")


if __name__ == "__main__":
    main()
