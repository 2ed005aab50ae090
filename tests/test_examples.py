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

EXAMPLES = Path(__file__).parents[1] / "examples"
GREP = str(EXAMPLES / "grep" / "grep.py")
TERAGEN = str(EXAMPLES / "sort" / "teragen.py")
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
    f"line {i}: the quick brown fox {'jumps' if i % 3 else 'JUMPED'} over dog{i % 7} "
    f"and cat{i % 5}; foo{'o' * (i % 4)} bar\tbaz" for i in range(4000)).encode() + b"\n"


def grep_counts(pattern: str, group: int = 0, flags: int = 0) -> collections.Counter:
    regex = re.compile(pattern, flags)
    counts = collections.Counter()
    for line in GREP_TEXT.decode().split("\n"):
        for m in regex.finditer(line):
            if m.group(group) is not None:
                counts[m.group(group)] += 1
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
    ("words", [r"(dog|cat)\d"], grep_counts(r"(dog|cat)\d")),
    ("group", [r"fo(o+)", "--group", "1", "--reducers", "3"], grep_counts(r"fo(o+)", 1)),
    ("icase", ["jump[a-z]*", "--ignore-case"], grep_counts("jump[a-z]*", 0, re.I)),
])
def test_grep_counts_equal_python_re(jobs, dfs, grep_input, name, args, expected):
    output = f"/examples/grep/out-{name}"
    run_ok(jobs, GREP, "Grep", grep_input, output, *args)
    assert expected and read_counts(dfs, output) == expected


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
