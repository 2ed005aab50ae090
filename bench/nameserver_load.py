"""The real nameserver under many small creates from several client processes.

    .venv/bin/python bench/nameserver_load.py [--files 1000000] [--dirs 10000]
        [--clients 4] [--threads 4] [--batch B] [--small-files N] [--big-dir 100000]
        [--profile FILE] [--dir DIR]

Starts a local cluster of one nameserver and one dataserver (`dfs.replication` 1), then,
from --clients processes of --threads threads each, every one with its own DfsClient:

1. mkdirs: --dirs directories /bench/dNNNNN, one Mkdirs RPC each (an operation = one
   directory made);
2. creates: --files empty files spread round-robin over them, each a Create and a
   Complete RPC (an operation = one file made, with its two RPCs); with --batch B, both
   phases send B operations to a Batch call instead (mkdir, and create_empty: an empty
   file created and closed in one journal record);
3. with --small-files N: N files of 1 byte with replication 1, end to end as a user writes
   them (Create, which allocates the first block; the block written to the dataserver on
   the connection the client kept from its last file, with the writer's close; the
   dataserver reports the replica and the close with BlockReceived, grouped with others
   finished meanwhile, which completes the file, then acknowledges it), one file at a time
   per thread;
4. with --big-dir N: N empty files in one directory (Batch calls), then the time the real
   `dfsshell ls` of it takes to print its first entry, and all of them;
5. restart after a crash: SIGKILL, start, and time until the nameserver answers SafeMode
   and is out of safe mode (the last checkpoint loaded and the journal replayed);
6. restart after a clean stop: SIGTERM (which writes a checkpoint), its size, start again.

Prints each phase's rate and the RPCs/s the nameserver handled meanwhile (its /metrics,
its dataserver's heartbeats included), the nameserver's CPU and context switches (all its
threads), the dataserver's and the clients' CPU per operation, the nameserver's RSS per
file (growth over the creates, and after each restart), the checkpoint's and journal's
size, the restart times and the nameserver's own figure for loading its namespace. The
client processes share the machine's cores with the nameserver: on a small machine their
own CPU lowers the figures.
--profile FILE: run the nameserver under cProfile through phases 1-4, then stop it
cleanly to write the profile (so the crash restart then has no journal to replay).
"""
from __future__ import annotations

import argparse
import multiprocessing
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil
from prometheus_client.parser import text_string_to_metric_families

from minijet import rpc
from minijet.cluster import LocalCluster
from minijet.config import format_size
from minijet.dfs import DfsClient
from minijet.proto import dfs_pb2, dfs_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import profiled  # noqa: E402  (beside this file)

BASE = "/bench"


def dir_path(d: int) -> str:
    return f"{BASE}/d{d:05d}"


def item_path(mode: str, i: int, dirs: int) -> str:
    if mode == "mkdir":
        return dir_path(i)
    prefix = "s" if mode == "small" else "f"
    return f"{dir_path(i % dirs)}/{prefix}{i:07d}"


def do_items(client: DfsClient, mode: str, items: list[str], batch: int) -> list:
    """Make `items` (one, or a batch of them); the errors."""
    if batch:
        make = client.mkdirs_batch if mode == "mkdir" else client.create_empty_batch
        return [e for e in make(items) if e is not None]
    for path in items:
        if mode == "mkdir":
            client.mkdir(path)
        elif mode == "create":
            client.create(path).close()
        else:
            with client.create(path, replication=1) as w:
                w.write(b"x")
    return []


def worker(config_path: str, mode: str, items: range, dirs: int, threads: int, batch: int,
           ready, go, results) -> None:
    """One client process: `threads` threads share `items`; reports (count, errors, end, the
    CPU seconds it used from the start signal to the end)."""
    from minijet import config as configmod
    client = DfsClient(configmod.load(config_path), host="bench-client")
    client.list("/")   # the channel is connected before the clock starts
    errors: dict[str, int] = {}
    lock = threading.Lock()
    step = batch or 1

    def run(part: range) -> None:
        for first in range(0, len(part), step):
            try:
                failed = do_items(client, mode, [item_path(mode, i, dirs)
                                                 for i in part[first:first + step]], batch)
            except Exception as e:
                failed = [e]
            with lock:
                for e in failed:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1

    pool = [threading.Thread(target=run, args=(items[t::threads],)) for t in range(threads)]
    ready.put(1)
    go.wait()
    cpu = time.process_time()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    results.put((len(items), errors, time.time(), time.process_time() - cpu))
    client.close()


def load(args, config_path: str, mode: str, count: int) -> tuple[float, dict, float]:
    """Run `count` items of `mode` from the client processes; (seconds, errors, the
    clients' CPU seconds)."""
    ctx = multiprocessing.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    batch = args.batch if mode != "small" else 0
    procs = [ctx.Process(target=worker, args=(config_path, mode, range(p, count, args.clients),
                                              args.dirs, args.threads, batch, ready, go,
                                              results))
             for p in range(args.clients)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=120)
    started = time.time()
    go.set()
    done = [results.get() for _ in procs]
    for p in procs:
        p.join()
    errors: dict[str, int] = {}
    for _, errs, _, _ in done:
        for k, v in errs.items():
            errors[k] = errors.get(k, 0) + v
    return (max(end for _, _, end, _ in done) - started, errors,
            sum(cpu for _, _, _, cpu in done))


class NameServerProcess:
    """The benchmark's own nameserver process (profiled or not), on the cluster's config."""

    def __init__(self, lc: LocalCluster, profile: str):
        self.lc, self.profile = lc, profile
        self.config = lc.config.with_overrides({"rpc.retries": 0})
        self.address = self.config["nameserver"]["address"]
        self.log_path = lc.dir / "logs" / "nameserver.log"
        self.proc: subprocess.Popen | None = None

    def start(self, profile: bool = False) -> tuple[float, float]:
        """Start and wait until it answers and is out of safe mode; (seconds, the seconds
        the nameserver logged for loading its namespace)."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        cmd = profiled.command("minijet.dfs.nameserver", self.profile if profile else "")
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd + ["--config", str(self.lc.config_path)],
                                         stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.lc.dir)
        with rpc.connect(self.config, self.address) as channel:
            stub = dfs_pb2_grpc.NameServerStub(channel)
            while True:
                try:
                    if not stub.SafeMode(dfs_pb2.SafeModeRequest(), timeout=1).on:
                        break
                except Exception:
                    if self.proc.poll() is not None:
                        raise RuntimeError(f"the nameserver exited; see {self.log_path}")
                time.sleep(0.01)
        took = time.monotonic() - started
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            logged = re.findall(rb"loaded namespace .* in ([0-9.]+)s", f.read())
        return took, float(logged[-1]) if logged else float("nan")

    def rss(self) -> int:
        return psutil.Process(self.proc.pid).memory_info().rss

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(600)


def wait_dataserver(config) -> None:
    """Until the dataserver has registered with the benchmark's nameserver again."""
    deadline = time.monotonic() + 30
    with DfsClient(config) as c:
        while not any(d.alive for d in c.report().dataservers):
            if time.monotonic() > deadline:
                raise RuntimeError("the dataserver did not register")
            time.sleep(0.1)


def nameserver_calls(config) -> float:
    """RPCs the nameserver has handled (its /metrics), all methods."""
    url = f"http://{config['nameserver']['http_address']}/metrics"
    with urllib.request.urlopen(url, timeout=30) as reply:
        text = reply.read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "minijet_nameserver_operations_total")


def daemon_cost(pid: int) -> tuple[float, int]:
    """CPU seconds and context switches (all its threads') of a process so far."""
    switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            switches += sum(int(line.split()[1]) for line in (task / "status").open()
                            if "ctxt_switches" in line)
        except FileNotFoundError:   # a thread that just ended
            pass
    cpu = psutil.Process(pid).cpu_times()
    return cpu.user + cpu.system, switches


def phase(args, ns: NameServerProcess, name: str, mode: str, count: int) -> float:
    calls = nameserver_calls(ns.lc.config)
    daemons = {"nameserver": ns.proc.pid, "dataserver": ns.lc.pid("dataserver", 1)}
    before = {role: daemon_cost(pid) for role, pid in daemons.items()}
    seconds, errors, clients_cpu = load(args, str(ns.lc.config_path), mode, count)
    ops = nameserver_calls(ns.lc.config) - calls   # heartbeats included
    after = {role: daemon_cost(pid) for role, pid in daemons.items()}
    print(f"{name}: {count:,} in {seconds:.1f} s: {count / seconds:,.0f}/s, "
          f"{ops / seconds:,.0f} nameserver RPCs/s" + (f"; errors {errors}" if errors else ""),
          flush=True)
    # a dataserver's threads per connection end with the clients, taking their counts of
    # switches with them: its CPU only (the process keeps its threads' CPU)
    ns_cpu, ns_switches = (a - b for a, b in zip(after["nameserver"], before["nameserver"]))
    ds_cpu = after["dataserver"][0] - before["dataserver"][0]
    print(f"  per operation: nameserver {ns_cpu / count * 1e3:.2f} ms CPU, "
          f"{ns_switches / count:.1f} context switches; dataserver "
          f"{ds_cpu / count * 1e3:.2f} ms CPU; clients {clients_cpu / count * 1e3:.2f} ms CPU",
          flush=True)
    return seconds


def big_listing(lc: LocalCluster, count: int) -> None:
    """`count` empty files in one directory (Batch calls), then `dfsshell ls` of it."""
    big = f"{BASE}/big"
    started = time.monotonic()
    with DfsClient(lc.config) as c:
        c.mkdir(big)
        for first in range(0, count, 1000):
            paths = [f"{big}/f{i:07d}" for i in range(first, min(count, first + 1000))]
            if any(c.create_empty_batch(paths)):
                raise RuntimeError(f"cannot make the files of {big}")
    made = time.monotonic() - started
    print(f"{big}: {count:,} empty files made in {made:.1f} s by one client, 1,000 a Batch "
          f"call: {count / made:,.0f}/s", flush=True)
    started = time.monotonic()
    ls = subprocess.Popen([str(Path(sys.executable).parent / "dfsshell"), "ls", "--config",
                           str(lc.config_path), big], stdout=subprocess.PIPE, text=True)
    header = ls.stdout.readline()
    ls.stdout.readline()
    first = time.monotonic() - started
    lines = 2 + sum(1 for _ in ls.stdout)
    if ls.wait() or lines != count + 1:
        raise RuntimeError(f"dfsshell ls {big}: exit status {ls.returncode}, {lines} lines")
    print(f"dfsshell ls of a directory of {count:,} files: first entry after {first:.2f} s "
          f"({header.strip()}), all {count:,} after {time.monotonic() - started:.2f} s",
          flush=True)


def mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def rss_of(ns: NameServerProcess, empty: int, files: int) -> str:
    """RSS now, and per file over that of the nameserver before any file (`empty`)."""
    rss = ns.rss()
    return f"RSS {mib(rss)}, {(rss - empty) / max(1, files):,.0f} bytes per file"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=1_000_000)
    p.add_argument("--dirs", type=int, default=10_000)
    p.add_argument("--clients", type=int, default=4, help="client processes")
    p.add_argument("--threads", type=int, default=4, help="threads per client process")
    p.add_argument("--small-files", type=int, default=0,
                   help="then this many 1-byte files end to end")
    p.add_argument("--batch", type=int, default=0,
                   help="mkdirs and creates this many to a Batch call (0: one RPC each)")
    p.add_argument("--big-dir", type=int, default=100_000,
                   help="then time `dfsshell ls` of a directory of this many files (0: not)")
    p.add_argument("--profile", default="", help="cProfile the nameserver into this file")
    p.add_argument("--dir", default="", help="work directory (default: a temporary one)")
    args = p.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="minijet-nsload-"))
    print(f"{args.files:,} files in {args.dirs:,} directories, {args.small_files:,} small "
          f"files; {args.clients} client processes x {args.threads} threads; work dir {work}",
          flush=True)
    lc = LocalCluster(work / "cluster", {"dfs": {"replication": 1}})
    ns = None
    try:
        lc.up(dataservers=1)
        lc.kill("nameserver")   # replaced by one this benchmark starts, times and profiles
        ns = NameServerProcess(lc, args.profile)
        ns.start(profile=bool(args.profile))
        wait_dataserver(lc.config)
        with DfsClient(lc.config) as c:
            c.mkdir(BASE)
        rss0 = ns.rss()
        phase(args, ns, "mkdirs", "mkdir", args.dirs)
        phase(args, ns, "creates (empty files)", "create", args.files)
        rss1 = ns.rss()
        print(f"nameserver RSS: {mib(rss0)} before, {mib(rss1)} after: "
              f"{(rss1 - rss0) / max(1, args.files):,.0f} bytes per file", flush=True)
        if args.small_files:
            phase(args, ns, "small files (1 byte, replication 1)", "small", args.small_files)
        if args.big_dir:
            big_listing(lc, args.big_dir)
        total = args.files + args.small_files + args.big_dir
        if args.profile:
            ns.stop()
            ns.start()
        ns.kill()
        took, loading = ns.start()
        print(f"restart after a crash (checkpoint + journal replay): {took:.2f} s to serve out "
              f"of safe mode (namespace loaded in {loading:.2f} s); {rss_of(ns, rss0, total)}",
              flush=True)
        ns.stop()
        name_dir = Path(lc.config["nameserver"]["dir"])
        image = (name_dir / "image").stat().st_size
        print(f"checkpoint: {format_size(image)} ({image / max(1, total):,.0f} bytes per "
              f"file)", flush=True)
        took, loading = ns.start()
        print(f"restart after a clean stop (checkpoint only): {took:.2f} s (namespace loaded "
              f"in {loading:.2f} s); {rss_of(ns, rss0, total)}", flush=True)
    finally:
        if ns is not None and ns.proc is not None and ns.proc.poll() is None:
            ns.stop()
        lc.down()


if __name__ == "__main__":
    main()
