"""The example jobs (examples/grep, sort, join) on the session's live local cluster, each
checked against the same computation in plain Python. Inputs are tiny and stored with small
blocks, so every job still runs several map and reduce tasks."""
from __future__ import annotations

import collections
import os
import posixpath
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from minijet.dfs import DfsClient

EXAMPLES = Path(__file__).parents[1] / "examples"
GREP = str(EXAMPLES / "grep" / "grep.py")
TERAGEN = str(EXAMPLES / "sort" / "teragen.py")
TERASORT = str(EXAMPLES / "sort" / "terasort.py")
JOIN = str(EXAMPLES / "join" / "join.py")
WORDCOUNTS = [(str(EXAMPLES / "wordcount" / "wordcount.py"), "WordCount"),
              (str(EXAMPLES / "wordcount" / "wordcount_batch.py"), "WordCountBatch")]
SMALL_BLOCK = 64 * 1024

sys.path.insert(0, str(EXAMPLES / "sort"))
import teragen  # noqa: E402  (the generator's records, computed here in plain Python)


@pytest.fixture(scope="module")
def jobs(cluster):
    """The shared session cluster, with a jobserver and two taskservers added."""
    cluster.up(taskservers=2)
    return cluster


@pytest.fixture(scope="module")
def dfs(jobs):
    client = jobs.client()
    yield client
    client.close()


def jetshell(lc, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, MINIJET_CONF=str(lc.config_path))
    return subprocess.run([sys.executable, "-m", "minijet.client.jetshell", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_ok(lc, *args: str) -> subprocess.CompletedProcess:
    result = jetshell(lc, "run", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def put(dfs, path: str, data: bytes, block_size: int = SMALL_BLOCK) -> None:
    with dfs.create(path, block_size=block_size) as f:
        f.write(data)


def part_files(dfs, output: str) -> list[str]:
    names = sorted(posixpath.basename(s.path) for s in dfs.list(output))
    assert "_SUCCESS" in names
    return [f"{output}/{n}" for n in names if n.startswith("part-")]


def read_parts(dfs, output: str) -> list[bytes]:
    """The part files' contents, in part order."""
    result = []
    for path in part_files(dfs, output):
        with dfs.open(path) as f:
            result.append(f.read())
    return result


def lines_of(data: bytes) -> list[str]:
    text = data.decode("utf-8", "surrogateescape")
    assert text == "" or text.endswith("\n")
    return text.split("\n")[:-1]


# ---- grep ----

GREP_TEXT = "\n".join(
    f"line {i}: nothing to see here" if i % 10 == 0 else
    f"line {i}: the quick brown fox {'jumps' if i % 3 else 'JUMPED'} over dog{i % 7} "
    f"and cat{i % 5}; foo{'o' * (i % 4)} bar\tbaz" for i in range(4000)).encode() + b"\n"


def grep_counts(pattern: str, group: int = 0, flags: int = 0) -> collections.Counter:
    """Occurrences of each match, and (under None) the number of lines with a match."""
    regex = re.compile(pattern, flags)
    counts = collections.Counter()
    for line in GREP_TEXT.decode().split("\n"):
        found = [m.group(group) for m in regex.finditer(line) if m.group(group) is not None]
        counts.update(found)
        counts[None] += bool(found)
    return counts


def read_counts(dfs, output: str) -> collections.Counter:
    counts = collections.Counter()
    for data in read_parts(dfs, output):
        for line in lines_of(data):
            match, n = line.rsplit("\t", 1)
            assert match not in counts, f"{match!r} in two part files"
            counts[match] = int(n)
    return counts


@pytest.fixture(scope="module")
def grep_input(dfs):
    put(dfs, "/examples/grep/in/text.txt", GREP_TEXT)
    assert len(dfs.block_locations("/examples/grep/in/text.txt")) > 2
    return "/examples/grep/in"


@pytest.mark.parametrize("name,args,expected", [
    ("words", [r"(dog|cat)\d|fo+"], grep_counts(r"(dog|cat)\d|fo+")),
    ("group-icase", [r"j(u)mp(ed)?", "--group", "1", "--ignore-case", "--reducers", "3"],
     grep_counts(r"j(u)mp(ed)?", 1, re.I)),
])
def test_grep_counts_equal_python_re(jobs, dfs, grep_input, name, args, expected):
    output = f"/examples/grep/out-{name}"
    result = run_ok(jobs, GREP, "Grep", grep_input, output, *args)
    expected = collections.Counter(expected)
    matching_lines = expected.pop(None)
    assert expected and read_counts(dfs, output) == expected
    assert re.search(rf"\n  grep\n +matching_lines += {matching_lines}\n", result.stdout), \
        result.stdout


def test_grep_bad_pattern_is_one_clear_error(jobs, grep_input):
    result = jetshell(jobs, "run", GREP, "Grep", grep_input, "/examples/grep/never", "(unclosed")
    assert result.returncode == 1
    assert "bad pattern '(unclosed'" in result.stderr and "Traceback" not in result.stderr
    result = jetshell(jobs, "run", GREP, "Grep", grep_input, "/examples/grep/never", "a(b)",
                      "--group", "2")
    assert result.returncode == 1 and "has 1 capturing group" in result.stderr


# ---- sort: the generator ----

def record_lines(seed: int, start: int, end: int) -> list[str]:
    return [f"{k}\t{v}" for k, v in teragen.records(seed, start, end)]


@pytest.fixture(scope="module")
def control(dfs):
    put(dfs, "/examples/sort/control.txt", (EXAMPLES / "sort" / "control.txt").read_bytes())
    return "/examples/sort/control.txt"


def test_teragen_writes_deterministic_100_byte_records(jobs, dfs, control):
    n = 2500
    run_ok(jobs, TERAGEN, "TeraGen", control, "/examples/sort/gen3", "--records", str(n),
           "--seed", "7", "--reducers", "3")
    parts = read_parts(dfs, "/examples/sort/gen3")
    assert len(parts) == 3
    assert all(len(p) % teragen.RECORD_SIZE == 0 for p in parts)
    # part t holds rows [t*n/3, (t+1)*n/3) in row order: the data set does not depend on
    # the number of tasks
    assert [lines_of(p) for p in parts] == [record_lines(7, t * n // 3, (t + 1) * n // 3)
                                            for t in range(3)]
    keys = [line[:10] for p in parts for line in lines_of(p)]
    assert all(0x20 <= ord(c) <= 0x7e for k in keys for c in k)
    assert len(set(keys)) == n


# ---- sort: the checksum and the validator's pieces ----

TERAVALIDATE = str(EXAMPLES / "sort" / "teravalidate.py")
import teravalidate  # noqa: E402


def checksum_of(lines) -> str:
    return f"{sum(zlib.crc32(line.encode()) for line in lines) & teravalidate.MASK:016x}"


def report_of(dfs, output: str) -> dict[str, str]:
    return dict(line.split("\t") for data in read_parts(dfs, output) for line in lines_of(data))


def test_terasum_counts_and_sums_records_in_any_order(jobs, dfs, control):
    lines = record_lines(3, 0, 3000)
    put(dfs, "/examples/sort/sum-in/a", "".join(f"{x}\n" for x in lines[:1700]).encode())
    put(dfs, "/examples/sort/sum-in/b", "".join(f"{x}\n" for x in lines[1700:]).encode())
    run_ok(jobs, TERAVALIDATE, "TeraSum", "/examples/sort/sum-in", "/examples/sort/sum-out")
    assert report_of(dfs, "/examples/sort/sum-out") == {
        "records": "3000", "checksum": checksum_of(lines)}


def runs_of(path: str, lines: list[str], cuts: list[int]) -> list:
    """The runs map tasks would report for `lines` of one file, cut into splits at `cuts`."""
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    runs = []
    for a, b in zip([0] + cuts, cuts + [len(lines)]):
        keys = [line.partition("\t")[0] for line in lines[a:b]]
        bad = [i for i in range(1, len(keys)) if keys[i] < keys[i - 1]]
        runs.append(teravalidate.Run(
            path, offsets[a], offsets[b], keys[0], keys[-1], b - a,
            sum(zlib.crc32(x.encode()) for x in lines[a:b]), len(bad),
            (offsets[a + bad[0]], keys[bad[0] - 1], keys[bad[0]]) if bad else None))
    return runs


def test_merge_runs_joins_splits_and_finds_every_kind_of_disorder():
    lines = sorted(record_lines(5, 0, 300))
    part0, part1 = lines[:140], lines[140:]
    runs = runs_of("/s/part-00001", part1, [50, 90]) + runs_of("/s/part-00000", part0, [70])
    merged = teravalidate.merge_runs(reversed(runs))
    assert [(r.path, r.start, r.records) for r in merged] == [
        ("/s/part-00000", 0, 140), ("/s/part-00001", 0, 160)]
    assert sum(r.checksum for r in merged) & teravalidate.MASK == int(checksum_of(lines), 16)
    assert teravalidate.order_problems(merged) == []
    # merging in pieces (combiners) gives the same
    assert teravalidate.merge_runs(teravalidate.merge_runs(runs[:2]) +
                                   teravalidate.merge_runs(runs[2:])) == merged

    # the part files swapped: each sorted, but not in order across them
    swapped = teravalidate.merge_runs(runs_of("/s/part-00000", part1, [30]) +
                                      runs_of("/s/part-00001", part0, []))
    [problem] = teravalidate.order_problems(swapped)
    assert problem.startswith(f"/s/part-00001 at byte 0: key {part0[0][:10]!r} after "
                              f"{part1[-1][:10]!r} (the last key of /s/part-00000)")
    # two lines swapped just where a split ends: only the merge sees it
    bad = part0[:69] + [part0[70], part0[69]] + part0[71:]
    problems = teravalidate.order_problems(teravalidate.merge_runs(runs_of("/s/p", bad, [70])))
    assert problems == [f"/s/p at byte {70 * 100}: key {part0[69][:10]!r} after "
                        f"{part0[70][:10]!r} (1 such place(s) in the file)"]


# ---- sort: generate, sum, sort, validate ----

@pytest.fixture(scope="module")
def sorted_run(jobs, dfs, control):
    """TeraGen 4000 records (2 part files), TeraSum them, TeraSort them into 3 part files."""
    n = 4000
    run_ok(jobs, TERAGEN, "TeraGen", control, "/examples/sort/gen", "--records", str(n),
           "--seed", "11", "--reducers", "2")
    run_ok(jobs, TERAVALIDATE, "TeraSum", "/examples/sort/gen", "/examples/sort/gen-sum")
    run_ok(jobs, TERASORT, "TeraSort", "/examples/sort/gen", "/examples/sort/sorted",
           "--tasks", "3")
    return record_lines(11, 0, n), report_of(dfs, "/examples/sort/gen-sum")


def test_terasort_output_is_a_globally_ordered_permutation(dfs, sorted_run):
    generated, _ = sorted_run
    parts = [lines_of(p) for p in read_parts(dfs, "/examples/sort/sorted")]
    assert len(parts) == 3 and all(parts), "the sampled split points leave no part empty"
    output = [line for part in parts for line in part]
    keys = [line[:10] for line in output]
    assert keys == sorted(keys)
    assert sorted(output) == sorted(generated)
    # byte order of whole lines, as LC_ALL=C sort: the bytes of sorted() of the lines
    assert b"".join(read_parts(dfs, "/examples/sort/sorted")) == \
        b"".join(line.encode() + b"\n" for line in sorted(generated))


def test_teravalidate_accepts_the_sort_with_the_generated_checksum(jobs, dfs, sorted_run):
    generated, gen_sum = sorted_run
    assert gen_sum == {"records": str(len(generated)), "checksum": checksum_of(generated)}
    run_ok(jobs, TERAVALIDATE, "TeraValidate", "/examples/sort/sorted", "/examples/sort/valid",
           "--expect-records", gen_sum["records"], "--expect-checksum", gen_sum["checksum"])
    assert report_of(dfs, "/examples/sort/valid") == {**gen_sum, "files": "3"}


def test_teravalidate_fails_clearly_on_part_files_out_of_order(jobs, dfs, sorted_run):
    """Each part file sorted, but the first two swapped: only the check across files sees
    it."""
    parts = read_parts(dfs, "/examples/sort/sorted")
    for name, data in zip(["part-00001", "part-00000", "part-00002"], parts):
        put(dfs, f"/examples/sort/swapped/{name}", data)
    result = jetshell(jobs, "run", TERAVALIDATE, "TeraValidate", "/examples/sort/swapped",
                      "/examples/sort/swapped-report")
    assert result.returncode == 2, result.stdout + result.stderr
    first_of_part0 = lines_of(parts[0])[0][:10]
    last_of_part1 = lines_of(parts[1])[-1][:10]
    assert (f"ValidationError: not a valid sort: /examples/sort/swapped/part-00001 at byte 0: "
            f"key {first_of_part0!r} after {last_of_part1!r} (the last key of "
            f"/examples/sort/swapped/part-00000)") in result.stdout + result.stderr
    assert not dfs.exists("/examples/sort/swapped-report/_SUCCESS")


# ---- join ----

def csv_rows(name: str) -> list[list[str]]:
    text = (EXAMPLES / "join" / name).read_text()
    return [line.split(",") for line in text.splitlines() if line and not line.startswith("#")]


def test_join_equals_python_join(jobs, dfs):
    users, orders = csv_rows("users.csv"), csv_rows("orders.csv")
    # 4 KiB blocks (so that the small inputs span several) are whole checksum chunks of 4 KiB
    with DfsClient(jobs.config.with_overrides({"dfs.checksum_chunk_size": 4096})) as small:
        for name in ("users.csv", "orders.csv"):
            put(small, f"/examples/join/{name}", (EXAMPLES / "join" / name).read_bytes(), 4096)
    assert len(dfs.block_locations("/examples/join/orders.csv")) > 1
    result = run_ok(jobs, JOIN, "UserOrders", "/examples/join/users.csv",
                    "/examples/join/orders.csv", "/examples/join/out", "--tasks", "3")
    by_id = {u[0]: u[1:] for u in users}
    expected = sorted("\t".join([o[1], *by_id[o[1]], o[0], o[2], o[3]])
                      for o in orders if o[1] in by_id)
    output = sorted(line for data in read_parts(dfs, "/examples/join/out")
                    for line in lines_of(data))
    assert output == expected
    assert 0 < len(expected) < len(orders), "the sample data has orders of unknown users"
    assert re.search(rf"\n  join\n +orders_joined += {len(expected)}\n", result.stdout), \
        result.stdout


def test_local_cluster_taskservers_share_the_cores(jobs):
    """`slots: 0` is all the cores for one taskserver; a local cluster's taskservers split them."""
    from minijet.client import JetClient

    with JetClient(jobs.config) as client:
        slots = [t.slots for t in client.list_taskservers()]
    assert slots == [max(1, os.cpu_count() // 2)] * 2


# ---- wordcount: a mapper per record and a batch-level mapper ----

@pytest.mark.parametrize("job_file,job_class", WORDCOUNTS)
def test_wordcount_equals_a_python_counter(jobs, dfs, job_file, job_class):
    text = (EXAMPLES / "wordcount" / "shakespeare.txt").read_bytes()[:600_000]
    name = job_class.lower()
    put(dfs, f"/{name}/in.txt", text)
    run_ok(jobs, job_file, job_class, f"/{name}/in.txt", f"/{name}/out", "--reducers", "3")
    counts = collections.Counter()
    for part in part_files(dfs, f"/{name}/out"):
        with dfs.open(part) as f:
            for line in f.read().decode().splitlines():
                word, n = line.rsplit("\t", 1)
                assert word not in counts
                counts[word] = int(n)
    assert counts == collections.Counter(text.decode().split())


# ---- the sort jobs without a cluster (minijet.testing: several map and reduce tasks) ----

def test_sort_and_validate_locally(tmp_path):
    from minijet.testing import run
    import terasort

    gen = tmp_path / "gen"
    gen.mkdir()
    lines = record_lines(2, 0, 1500)
    for i in range(3):   # three small files, none sorted
        (gen / f"part-{i:05d}").write_text("".join(f"{x}\n" for x in lines[i::3]))
    run(terasort.TeraSort, [str(gen), str(tmp_path / "sorted"), "--tasks", "3"])
    sorted_lines = [line for i in range(3)
                    for line in (tmp_path / "sorted" / f"part-{i:05d}").read_text().splitlines()]
    assert sorted_lines == sorted(lines, key=lambda x: x[:10]) == sorted(lines)
    report = run(teravalidate.TeraValidate, [str(tmp_path / "sorted"), str(tmp_path / "ok"),
                                             "--expect-checksum", checksum_of(lines)])
    assert report.counters[("task", "map_output_records")] == report.tasks["map"]
    assert dict(report.records) == {"records": "1500", "checksum": checksum_of(lines),
                                    "files": "3"}
    first = lines[0::3]
    bad = next(i for i in range(1, len(first)) if first[i][:10] < first[i - 1][:10])
    with pytest.raises(teravalidate.ValidationError, match=re.escape(
            f"part-00000 at byte {bad * 100}: key {first[bad][:10]!r} after "
            f"{first[bad - 1][:10]!r}")):
        run(teravalidate.TeraValidate, [str(gen), str(tmp_path / "bad")])
