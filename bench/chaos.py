"""Chaos: a stream of jobs and DFS writes while random daemons are killed and restarted.

    .venv/bin/python bench/chaos.py [--minutes 10] [--every 15] [--roles ROLES] [--seed N]

On a local cluster (3 dataservers, 3 taskservers, replication 2), for N minutes:
- jobs run one after another, in turn WordCount, TeraSort and the join of examples/, each
  checked against the answer computed here (exact counts, the sorted records, the joined
  rows);
- a writer puts small files into the DFS; a file counts as acknowledged when its close()
  returned, and every acknowledged file must read back identical at the end;
- every K seconds a random daemon of ROLES (default: every role, the jobserver and the
  nameserver included) is killed with SIGKILL and, 1 to 5 seconds later, started again.
Prints jobs run / succeeded / exact per kind, acknowledged files / lost, the slowest job and
the kills; exits 1 unless every job succeeded with exact output and no acknowledged file was
lost.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import posixpath
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

from minijet.client import JetClient
from minijet.cluster import LocalCluster

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
ROLES = ("nameserver", "jobserver", "dataserver", "taskserver")
NODES = 3
CONFIG = {
    "dfs": {"block_size": "256KiB", "replication": 2},
    "nameserver": {"dead_timeout": "6s", "replication_interval": "1s"},
    "jobserver": {"taskserver_timeout": "6s"},
    "taskserver": {"heartbeat_interval": "0.3s"},
}


# ---- the jobs and their answers ----

def words_text(rng: random.Random) -> str:
    vocabulary = [f"w{i}" for i in range(3000)]
    lines = [" ".join(rng.choices(vocabulary, k=rng.randint(3, 15))) for _ in range(40_000)]
    return "\n".join(lines) + "\n"


def sort_records(rng: random.Random) -> str:
    return "".join(f"{rng.getrandbits(40):010x}\t{i:08d}{'x' * 70}\n" for i in range(30_000))


def join_rows() -> list[str]:
    def rows(name):
        return [line.split(",") for line in (EXAMPLES / "join" / name).read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    users = {u[0]: u[1:] for u in rows("users.csv")}
    return sorted("\t".join([o[1], *users[o[1]], o[0], o[2], o[3]])
                  for o in rows("orders.csv") if o[1] in users)


def read_parts(jc: JetClient, directory: str) -> list[str]:
    lines = []
    for st in sorted(jc.dfs.list(directory), key=lambda s: s.path):
        if posixpath.basename(st.path).startswith("part-"):
            with jc.dfs.open(st.path) as f:
                lines += f.read().decode().splitlines()
    return lines


class Jobs:
    """Each kind: (job file, class, its arguments for an output dir, the check of the
    output's lines)."""

    def __init__(self, jc: JetClient, rng: random.Random):
        text, records = words_text(rng), sort_records(rng)
        for path, data in (("/chaos/in/words.txt", text), ("/chaos/in/records.txt", records)):
            with jc.dfs.create(path) as f:
                f.write(data.encode())
        for name in ("users.csv", "orders.csv"):
            with jc.dfs.create(f"/chaos/in/{name}") as f:
                f.write((EXAMPLES / "join" / name).read_bytes())
        counts = collections.Counter(text.split())
        ordered = sorted(records.splitlines(), key=lambda r: r.split("\t", 1)[0])
        joined = join_rows()
        self.kinds = {
            "wordcount": (EXAMPLES / "wordcount" / "wordcount.py", "WordCount",
                          lambda out: ["/chaos/in/words.txt", out, "--reducers", "3"],
                          lambda lines: {w: int(n) for w, n in
                                         (line.split("\t") for line in lines)} == counts),
            "terasort": (EXAMPLES / "sort" / "terasort.py", "TeraSort",
                         lambda out: ["/chaos/in/records.txt", out, "--tasks", "3"],
                         lambda lines: [line.split("\t", 1)[0] for line in lines]
                         == [r.split("\t", 1)[0] for r in ordered]
                         and sorted(lines) == sorted(ordered)),
            "join": (EXAMPLES / "join" / "join.py", "UserOrders",
                     lambda out: ["/chaos/in/users.csv", "/chaos/in/orders.csv", out],
                     lambda lines: sorted(lines) == joined),
        }


# ---- the three streams ----

class Chaos:
    def __init__(self, lc: LocalCluster, args: argparse.Namespace):
        self.lc = lc
        self.args = args
        self.rng = random.Random(args.seed)
        self.stop = threading.Event()
        self.results: list[tuple[str, str, float, str, bool, str]] = []
        self.acknowledged: dict[str, str] = {}
        self.write_errors = 0
        self.kills: collections.Counter = collections.Counter()
        self.log = []

    def say(self, message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {message}"
        self.log.append(line)
        print(line, flush=True)

    def run_jobs(self, jc: JetClient, jobs: Jobs) -> None:
        n = 0
        while not self.stop.is_set():
            kind = list(jobs.kinds)[n % len(jobs.kinds)]
            job_file, cls, make_args, check = jobs.kinds[kind]
            out = f"/chaos/out/{kind}-{n}"
            n += 1
            started = time.monotonic()
            job_id, state, exact, error = "", "error", False, ""
            try:
                job_id = jc.submit(str(job_file), cls, make_args(out))
                status = jc.wait_for_completion(job_id, timeout=self.args.job_timeout)
                state, error = status.state, status.error
                exact = state == "succeeded" and check(read_parts(jc, out))
            except Exception as e:  # a client that gave up: the job counts as failed
                error = f"{type(e).__name__}: {e}"
            seconds = time.monotonic() - started
            self.results.append((kind, job_id, seconds, state, exact, error))
            self.say(f"job {n} {kind} {job_id}: {state}{' exact' if exact else ''} in "
                     f"{seconds:.1f}s{f' ({error})' if error else ''}")

    def write_files(self, jc: JetClient) -> None:
        n = 0
        while not self.stop.wait(0.5):
            data = self.rng.randbytes(self.rng.randint(1_000, 300_000))
            path = f"/chaos/files/f{n:05d}"
            n += 1
            try:
                with jc.dfs.create(path) as f:
                    f.write(data)
            except Exception as e:  # not acknowledged: it may or may not exist
                self.write_errors += 1
                self.say(f"write {path} not acknowledged: {type(e).__name__}: {e}")
                continue
            self.acknowledged[path] = hashlib.sha256(data).hexdigest()

    def kill_daemons(self) -> None:
        roles = self.args.roles.split(",")
        while not self.stop.wait(self.args.every):
            role = self.rng.choice(roles)
            index = 0 if role in ("nameserver", "jobserver") else self.rng.randint(1, NODES)
            down = self.rng.uniform(1, 5)
            try:
                self.lc.kill(role, index)
            except Exception as e:
                self.say(f"cannot kill {role}{index or ''}: {e}")
                continue
            self.kills[role] += 1
            self.say(f"killed {role}{index or ''}; restarting it in {down:.1f}s")
            time.sleep(down)
            try:
                self.lc.restart(timeout=120)
            except Exception as e:
                self.say(f"restart failed: {e}")

    def lost_files(self, jc: JetClient) -> list[str]:
        lost = []
        for path, digest in sorted(self.acknowledged.items()):
            try:
                with jc.dfs.open(path) as f:
                    ok = hashlib.sha256(f.read()).hexdigest() == digest
            except Exception as e:
                ok = False
                self.say(f"cannot read {path}: {type(e).__name__}: {e}")
            if not ok:
                lost.append(path)
        return lost


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--every", type=float, default=15.0, help="seconds between kills")
    ap.add_argument("--roles", default=",".join(ROLES), help="roles that may be killed")
    ap.add_argument("--seed", type=int, default=20261129)
    ap.add_argument("--job-timeout", type=float, default=300.0)
    ap.add_argument("--keep", help="keep the cluster's dir (its logs) under this dir")
    args = ap.parse_args()
    with (contextlib.nullcontext(tempfile.mkdtemp(dir=args.keep)) if args.keep
          else tempfile.TemporaryDirectory()) as tmp, \
            LocalCluster(Path(tmp) / "cluster", config=CONFIG) as lc:
        lc.up(dataservers=NODES, taskservers=NODES)
        chaos = Chaos(lc, args)
        with JetClient(lc.config) as jc:
            jobs = Jobs(jc, random.Random(args.seed))
            threads = [threading.Thread(target=chaos.run_jobs, args=(jc, jobs)),
                       threading.Thread(target=chaos.write_files, args=(jc,)),
                       threading.Thread(target=chaos.kill_daemons)]
            for t in threads:
                t.start()
            time.sleep(args.minutes * 60)
            chaos.stop.set()
            for t in threads:
                t.join()
            lc.restart(timeout=120)
            lost = chaos.lost_files(jc)
    results = chaos.results
    print(f"\nchaos: {args.minutes:g} min, a kill every {args.every:g}s among "
          f"{args.roles} (seed {args.seed})")
    print("kills: " + ", ".join(f"{r} {n}" for r, n in sorted(chaos.kills.items())))
    for kind in ("wordcount", "terasort", "join"):
        mine = [r for r in results if r[0] == kind]
        print(f"  {kind:<10} run {len(mine):3d}  succeeded {sum(r[3] == 'succeeded' for r in mine):3d}"
              f"  exact {sum(r[4] for r in mine):3d}")
    ok_jobs = sum(r[4] for r in results)
    print(f"jobs: {len(results)} run, {sum(r[3] == 'succeeded' for r in results)} succeeded, "
          f"{ok_jobs} exact")
    if results:
        slowest = max(results, key=lambda r: r[2])
        print(f"slowest job: {slowest[0]} {slowest[1]} {slowest[2]:.1f}s")
    print(f"DFS files: {len(chaos.acknowledged)} acknowledged, {len(lost)} lost, "
          f"{chaos.write_errors} writes not acknowledged")
    for r in results:
        if not r[4]:
            print(f"  not exact: {r[0]} {r[1]} {r[3]}: {r[5]}")
    return 0 if results and ok_jobs == len(results) and not lost else 1


if __name__ == "__main__":
    sys.exit(main())
