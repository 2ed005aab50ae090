"""The local runner: a job run in-process over local files with the engine's task code, at
least two map and two reduce tasks, the cluster's path errors, and `jetshell run --local`
through the real command line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from minijet import JobBuilderJob, Param
from minijet import jobconf as jc
from minijet.errors import AlreadyExists, InvalidArgument, NotFound
from minijet.job import MapReduceJob, build_conf
from minijet.localrunner import (JobFailed, LocalFiles, LocalJobRunner, local_path,
                                 prepare_conf, run_local)

from jobs.testjobs import WordCount

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = str(ROOT / "examples" / "wordcount" / "wordcount.py")
JETSHELL = [sys.executable, "-m", "minijet.client.jetshell"]

TEXT = b"".join(b"the quick brown fox %d jumps over the lazy dog %d\n" % (i % 7, i % 3)
                for i in range(300)) + b"caf\xc3\xa9 \xff\xfebroken \xe9t\xe9\nno newline at end"


def words_of(data: bytes) -> Counter:
    return Counter(data.decode("utf-8", "surrogateescape").split())


def counts_in(out: Path) -> Counter:
    result = Counter()
    for part in sorted(out.glob("part-*")):
        for line in part.read_bytes().decode("utf-8", "surrogateescape").splitlines():
            word, _, n = line.rpartition("\t")
            assert word not in result, f"{word!r} in two part files"
            result[word] = int(n)
    return result


class NumberLines(MapReduceJob):
    """Wrong on more than one map task: numbers lines per mapper object, not per file."""

    reducers = 0

    def mapper(self, key, value):
        self.n = getattr(self, "n", 0) + 1
        yield self.n, value


class DistinctWords(MapReduceJob):
    """Wrong on more than one reduce task: counts the keys one reducer sees."""

    def mapper(self, key, value):
        for word in value.split():
            yield word, 1

    def reducer(self, key, values):
        self.seen = getattr(self, "seen", 0) + 1
        yield "distinct", self.seen


class Boom(WordCount):
    def reducer(self, key, values):
        if key == "fox":
            raise ValueError("no foxes\nsecond line")
        yield key, sum(values)


def run(cls, tmp_path: Path, args: list[str], **options):
    conf = build_conf(cls, args, job_file="job.py", resolve_path=local_path)
    runner = LocalJobRunner(conf, lambda: cls.from_params(runner.conf.params),
                            tmp_path / "work", **options)
    return runner.run()


@pytest.fixture
def text_file(tmp_path) -> Path:
    path = tmp_path / "in.txt"
    path.write_bytes(TEXT)
    return path


# ---- results ----

def test_wordcount_equals_counter_with_undecodable_bytes(tmp_path, text_file):
    result = run(WordCount, tmp_path, [str(text_file), str(tmp_path / "out")])
    out = tmp_path / "out"
    assert counts_in(out) == words_of(TEXT)
    assert "\udcff\udcfebroken" in counts_in(out)   # bytes, not replacement characters
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "part-00000", "part-00001"]
    assert (out / "_SUCCESS").stat().st_size == 0
    assert result.tasks["map"] >= 2 and result.tasks["reduce"] == 2
    lines = TEXT.count(b"\n") + 1
    assert result.stage_counters["map"][("task", "input_records")] == lines
    assert result.stage_counters["reduce"][("task", "output_records")] == len(words_of(TEXT))
    assert result.counters[("task", "output_records")] == len(words_of(TEXT))
    assert result.counters[("job", "launched_attempts")] == sum(result.tasks.values())
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").rglob("*.out.tmp"))


def test_each_part_is_sorted_and_partitioned_by_the_engines_hash(tmp_path, text_file):
    from minijet.taskhost.partition import hash_partition

    run(WordCount, tmp_path, [str(text_file), str(tmp_path / "out"), "--reducers", "3"])
    for i in range(3):
        lines = (tmp_path / "out" / f"part-{i:05d}").read_bytes().decode(
            "utf-8", "surrogateescape").splitlines()
        keys = [line.split("\t")[0] for line in lines]
        assert keys == sorted(keys)
        assert all(hash_partition(k, 3) == i for k in keys)


def test_small_sort_buffer_spills_and_merges_to_the_same_counts(tmp_path, text_file):
    big = TEXT * 20
    text_file.write_bytes(big)
    # the text has a few dozen distinct words: even counted in the mapper they fill 1 KiB
    result = run(WordCount, tmp_path, [str(text_file), str(tmp_path / "out")],
                 sort_buffer=1024, split_size=64 * 1024)
    assert counts_in(tmp_path / "out") == words_of(big)
    assert result.counters[("task", "spills")] > 0
    assert result.tasks["map"] == -(-len(big) // (64 * 1024))


def test_directory_input_skips_hidden_files_so_jobs_chain(tmp_path, text_file):
    run(WordCount, tmp_path, [str(text_file), str(tmp_path / "counts")])
    (tmp_path / "counts" / ".hidden").write_text("not input\n")
    run(WordCount, tmp_path, [str(tmp_path / "counts"), str(tmp_path / "again")])
    # each "word<TAB>n" line of the first output is two words of the second job's input
    expected = Counter()
    for word, n in counts_in(tmp_path / "counts").items():
        expected[word] += 1
        expected[str(n)] += 1
    assert counts_in(tmp_path / "again") == expected


def test_map_only_job_writes_a_part_per_map_task(tmp_path, text_file):
    result = run(WordCount, tmp_path, [str(text_file), str(tmp_path / "out"), "--reducers", "0"])
    parts = sorted((tmp_path / "out").glob("part-*"))
    assert len(parts) == result.tasks["map"] >= 2 and "reduce" not in result.tasks
    pairs = Counter()
    for part in parts:
        for line in part.read_bytes().decode("utf-8", "surrogateescape").splitlines():
            pairs[line.rpartition("\t")[0]] += 1
    assert pairs == words_of(TEXT)


def test_empty_input_runs_no_map_task_and_empty_reduces(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    result = run(WordCount, tmp_path, [str(tmp_path / "empty"), str(tmp_path / "out")])
    assert result.tasks == {"map": 0, "reduce": 2}
    assert (tmp_path / "out" / "_SUCCESS").exists()
    assert [p.read_bytes() for p in sorted((tmp_path / "out").glob("part-*"))] == [b"", b""]


# ---- at least two map and two reduce tasks ----

def test_a_mapper_that_needs_every_line_is_caught(tmp_path):
    lines = [f"line {i}" for i in range(10)]
    (tmp_path / "in").write_text("\n".join(lines) + "\n")
    result = run(NumberLines, tmp_path, [str(tmp_path / "in"), str(tmp_path / "out")])
    numbers = [int(line.split("\t")[0]) for p in sorted((tmp_path / "out").glob("part-*"))
               for line in p.read_text().splitlines()]
    assert result.tasks["map"] >= 2
    assert numbers != list(range(1, 11))   # numbering restarts in the second map task
    run(NumberLines, tmp_path, [str(tmp_path / "in"), str(tmp_path / "one")], min_tasks=1)
    assert (tmp_path / "one" / "part-00000").read_text().splitlines()[-1] == "10\tline 9"


def test_a_reducer_that_needs_every_key_is_caught(tmp_path, text_file):
    distinct = len(words_of(TEXT))

    def answer(out: Path) -> int:
        return max(int(line.split("\t")[1]) for p in out.glob("part-*")
                   for line in p.read_text().splitlines())

    result = run(DistinctWords, tmp_path, [str(text_file), str(tmp_path / "out"),
                                           "--reducers", "1"])
    assert result.tasks["reduce"] == 2            # --reducers 1 still runs two
    assert answer(tmp_path / "out") < distinct   # each reducer saw only its keys
    run(DistinctWords, tmp_path, [str(text_file), str(tmp_path / "one")], min_tasks=1)
    assert answer(tmp_path / "one") == distinct


def test_prepare_conf_raises_partitions_and_consumer_tasks():
    conf = jc.compile_mapreduce("wc", "wc.py", "WordCount", {"t": (1, 2)}, ["/in"], "/out", 1,
                                has_combiner=False)
    conf.stage("reduce").tasks = 1
    prepared = prepare_conf(conf, 3)
    assert prepared.stage("map").output.partitions == 3
    assert prepared.stage("reduce").tasks == 3
    assert prepared.params["t"] == [1, 2]         # through JSON, as a task sees it
    assert prepare_conf(conf, 1).stage("map").output.partitions == 1


def test_tiny_input_is_still_cut_into_two_splits(tmp_path):
    (tmp_path / "a").write_text("x\n")
    (tmp_path / "b").write_text("y\n")
    conf = build_conf(WordCount, [str(tmp_path / "a"), str(tmp_path / "b"),
                                  str(tmp_path / "out")], job_file="j.py",
                      resolve_path=local_path)
    runner = LocalJobRunner(conf, WordCount, tmp_path / "work")
    splits = runner.splits()["map"]
    assert len(splits) == 2
    assert sorted(s.path for split in splits for s in split.segments) == \
        [str(tmp_path / "a"), str(tmp_path / "b")]


# ---- errors ----

def test_missing_input_is_the_clusters_error(tmp_path):
    with pytest.raises(NotFound, match=r"^input path .*/nope does not exist$"):
        run(WordCount, tmp_path, [str(tmp_path / "nope"), str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_existing_output_is_refused_and_left_alone(tmp_path, text_file):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("mine")
    with pytest.raises(AlreadyExists, match="already exists .*never overwrite"):
        run(WordCount, tmp_path, [str(text_file), str(tmp_path / "out")])
    assert (tmp_path / "out" / "keep").read_text() == "mine"


def test_failing_task_fails_the_job_and_leaves_no_output(tmp_path, text_file):
    with pytest.raises(JobFailed) as failed:
        run(Boom, tmp_path, [str(text_file), str(tmp_path / "out")])
    e = failed.value
    assert isinstance(e.__cause__, ValueError)
    assert e.error.startswith("task job_local_reduce_0000") and \
        e.error.endswith(": ValueError: no foxes")
    assert "Traceback" in e.traceback and 'raise ValueError("no foxes' in e.traceback
    assert not (tmp_path / "out").exists()


def test_relative_paths_are_local_to_the_working_directory(tmp_path, text_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    conf = build_conf(WordCount, ["in.txt", "out"], job_file="j.py", resolve_path=local_path)
    assert conf.input_paths() == [str(text_file)]
    run_local(conf, WordCount)
    assert counts_in(tmp_path / "out") == words_of(TEXT)


def test_local_path_rules():
    assert local_path("/a//b/../c/") == "/a/c"
    with pytest.raises(InvalidArgument):
        local_path("/a/\0b")


def test_local_files_rename_never_overwrites(tmp_path):
    files = LocalFiles()
    with files.create(str(tmp_path / "d" / "a")) as f:
        f.write(b"1")
    with files.create(str(tmp_path / "b")) as f:
        f.write(b"2")
    with pytest.raises(AlreadyExists):
        files.rename(str(tmp_path / "d" / "a"), str(tmp_path / "b"))
    with pytest.raises(AlreadyExists):
        files.create(str(tmp_path / "b"))
    assert files.delete(str(tmp_path / "d"), recursive=True)
    assert not files.delete(str(tmp_path / "d"))


# ---- jetshell run --local, the real command line ----

def jetshell(*args, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "MINIJET_CONF": os.devnull}
    return subprocess.run([*JETSHELL, *args], cwd=cwd, capture_output=True, env=env,
                          timeout=60)


def test_jetshell_run_local_counts_words(tmp_path, text_file):
    done = jetshell("run", "--local", EXAMPLE, "WordCount", "in.txt", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert "running job job_local in this process" in out
    assert "reduce 2/2 tasks" in out and "job job_local succeeded after" in out
    assert "Counters:" in out and "    output_records" in out
    assert f"output: {tmp_path / 'out'}" in out
    assert done.stderr == b""
    assert counts_in(tmp_path / "out") == words_of(TEXT)


def test_jetshell_run_local_user_error_is_traceback_and_one_line(tmp_path, text_file):
    job = tmp_path / "boom.py"
    job.write_text(textwrap.dedent("""\
        from minijet import MapReduceJob

        class Boom(MapReduceJob):
            def mapper(self, key, value):
                if "fox 3" in value:
                    raise KeyError("fox 3 found")
                yield value, 1

            def reducer(self, key, values):
                yield key, sum(values)
        """))
    done = jetshell("run", "--local", str(job), "Boom", "in.txt", "out", cwd=tmp_path)
    assert done.returncode == 2
    err = done.stderr.decode().splitlines()
    assert err[0] == "Traceback (most recent call last):"
    assert any('raise KeyError("fox 3 found")' in line for line in err)
    assert err[-1].startswith("jetshell: error: job job_local failed: task job_local_map_0000")
    assert err[-1].endswith(": KeyError: 'fox 3 found'")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["missing input", "existing output", "bad option"])
def test_jetshell_run_local_errors_are_one_line(tmp_path, text_file, case):
    (tmp_path / "out").mkdir()
    args = {"missing input": ["nope", "out2"], "existing output": ["in.txt", "out"],
            "bad option": ["in.txt", "out2", "--reducers", "x"]}[case]
    expected = {"missing input": f"input path {tmp_path / 'nope'} does not exist",
                "existing output": f"output path {tmp_path / 'out'} already exists",
                "bad option": "--reducers: invalid int value"}[case]
    done = jetshell("run", "--local", EXAMPLE, "WordCount", *args, cwd=tmp_path)
    assert done.returncode == 1
    err = done.stderr.decode()
    assert err.startswith("jetshell: error: ") and err.count("\n") == 1, err
    assert expected in err
    assert not (tmp_path / "out2").exists()


def test_jetshell_run_local_ships_files_as_a_cluster_does(tmp_path, text_file):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "wordsplit.py").write_text("def words(line):\n    return line.upper().split()\n")
    job = tmp_path / "upper.py"
    job.write_text(textwrap.dedent("""\
        from minijet import MapReduceJob

        class Upper(MapReduceJob):
            reducers = 0

            def mapper(self, key, value):
                import wordsplit  # shipped with --file: found in the job's files

                for word in wordsplit.words(value):
                    yield word, None
        """))
    done = jetshell("run", "--local", "--file", str(lib / "wordsplit.py"), str(job), "Upper",
                    "in.txt", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    words = Counter(line for p in (tmp_path / "out").glob("part-*")
                    for line in p.read_bytes().decode("utf-8", "surrogateescape").splitlines())
    assert words == Counter(TEXT.decode("utf-8", "surrogateescape").upper().split())


# ---- multi-stage JobBuilder jobs ----

class TopWords(JobBuilderJob):
    """Three stages: words counted (aggregate), then sorted by count (one task)."""

    params = [Param("input", nargs="+"), Param("output")]

    def build_job(self, builder):
        from minijet import context

        def words(offset, line):
            context.counter("user", "lines").increment()
            return ((w, 1) for w in line.split())

        counts = builder.read(self.input).flat_map(words).aggregate(lambda a, b: a + b)
        counts.map(lambda word, n: (n, word)).sort(reverse=True, tasks=1).write(self.output)


class SortLines(JobBuilderJob):
    """Total order over sampled split points: the part files concatenated are sorted."""

    params = [Param("input"), Param("output")]

    def build_job(self, builder):
        builder.read(self.input).map(lambda offset, line: (line, offset)).sort(
            tasks=1).write(self.output)


class JoinCities(JobBuilderJob):
    params = [Param("people"), Param("cities"), Param("output")]

    def build_job(self, builder):
        def pair(offset, line):
            key, _, value = line.partition(",")
            return key, value

        people = builder.read(self.people).map(pair)
        cities = builder.read(self.cities).map(pair)
        people.join(cities).distinct().write(self.output, writer="records")


def run_builder(cls, tmp_path: Path, args: list[str], **options):
    conf = build_conf(cls, args, job_file="job.py", resolve_path=local_path)
    runner = LocalJobRunner(conf, lambda: cls.from_params(runner.conf.params),
                            tmp_path / "work", **options)
    return runner.run()


def test_builder_job_with_three_stages(tmp_path, text_file):
    result = run_builder(TopWords, tmp_path, [str(text_file), str(tmp_path / "top")])
    assert list(result.tasks) == ["read-1", "aggregate-2", "sort-3"]
    assert result.tasks["read-1"] >= 2 and result.tasks["aggregate-2"] >= 2
    assert result.tasks["sort-3"] == 1   # a sort fed by a shuffle cannot sample: kept at 1
    lines = (tmp_path / "top" / "part-00000").read_bytes().decode(
        "utf-8", "surrogateescape").splitlines()
    got = [(int(n), word) for n, word in (line.split("\t") for line in lines)]
    assert [n for n, _ in got] == sorted((n for n, _ in got), reverse=True)
    assert Counter({word: n for n, word in got}) == words_of(TEXT)
    assert result.counters[("user", "lines")] == TEXT.count(b"\n") + 1
    assert (tmp_path / "top" / "_SUCCESS").exists()


def test_builder_sort_samples_split_points_for_at_least_two_tasks(tmp_path):
    lines = [f"{(i * 7919) % 1000:04d}" for i in range(1000)]
    (tmp_path / "in").write_text("\n".join(lines) + "\n")
    result = run_builder(SortLines, tmp_path, [str(tmp_path / "in"), str(tmp_path / "out")])
    read = result.conf.stage("read-1")
    assert read.output.partitions == 2 and len(read.output.split_points) == 1
    parts = [p.read_text().splitlines() for p in sorted((tmp_path / "out").glob("part-*"))]
    assert len(parts) == 2 and all(parts)
    keys = [line.split("\t")[0] for part in parts for line in part]
    assert keys == sorted(lines)


def test_builder_join_and_distinct_with_records_output(tmp_path):
    from minijet.testing import run_job

    (tmp_path / "people").write_text("ann,1\nbob,2\nann,1\ncid,3\nann,4\n")
    (tmp_path / "cities").write_text("ann,Oslo\nbob,Rome\nann,Lima\ndan,Kyiv\n")
    got = run_job(JoinCities, [str(tmp_path / "people"), str(tmp_path / "cities"),
                               str(tmp_path / "out")])
    assert sorted(got) == sorted({("ann", (a, c)) for a in ("1", "4") for c in ("Oslo", "Lima")}
                                 | {("bob", ("2", "Rome"))})


def test_jetshell_run_local_builder_job(tmp_path, text_file):
    job = tmp_path / "top.py"
    job.write_text(textwrap.dedent("""\
        from minijet import JobBuilderJob, Param

        class TopWords(JobBuilderJob):
            params = [Param("input", nargs="+"), Param("output")]

            def build_job(self, builder):
                lines = builder.read(self.input)
                counts = lines.flat_map(lambda o, line: ((w, 1) for w in line.split()))
                counts = counts.aggregate(lambda a, b: a + b)
                counts.map(lambda w, n: (n, w)).sort(reverse=True, tasks=1).write(self.output)
        """))
    done = jetshell("run", "--local", str(job), "TopWords", "in.txt", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert "aggregate-2 2/2 tasks" in out and "sort-3 1/1 tasks" in out
    first = (tmp_path / "out" / "part-00000").read_bytes().split(b"\n")[0].decode()
    assert first == f"{words_of(TEXT)['the']}\tthe"


class BadSortKey(JobBuilderJob):
    params = [Param("input"), Param("output")]

    def build_job(self, builder):
        builder.read(self.input).map(lambda offset, line: (1 / 0, line)).sort().write(
            self.output)


def test_the_jobs_error_while_sampling_split_points_fails_the_job(tmp_path, text_file):
    with pytest.raises(JobFailed) as failed:
        run_builder(BadSortKey, tmp_path, [str(text_file), str(tmp_path / "out")])
    assert failed.value.error == "sampling split points: ZeroDivisionError: division by zero"
    assert "1 / 0" in failed.value.traceback
    assert not (tmp_path / "out").exists()


def test_jetshell_run_local_error_while_sampling(tmp_path, text_file):
    job = tmp_path / "bad.py"
    job.write_text(textwrap.dedent("""\
        from minijet import JobBuilderJob, Param

        class BadSortKey(JobBuilderJob):
            params = [Param("input"), Param("output")]

            def build_job(self, builder):
                lines = builder.read(self.input)
                lines.map(lambda offset, line: (1 / 0, line)).sort().write(self.output)
        """))
    done = jetshell("run", "--local", str(job), "BadSortKey", "in.txt", "out", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    err = done.stderr.decode().splitlines()
    assert err[0] == "Traceback (most recent call last):"
    assert err[-1] == ("jetshell: error: job job_local failed: compiling the job: "
                       "ZeroDivisionError: division by zero")
    assert not (tmp_path / "out").exists()


def test_jetshell_run_local_dry_run_prints_the_local_plan(tmp_path, text_file):
    done = jetshell("run", "--local", "--dry-run", EXAMPLE, "WordCount", "in.txt", "out",
                    cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    conf = jc.JobConf.from_dict(json.loads(done.stdout))
    assert conf.input_paths() == [str(text_file)]
    assert conf.stage("map").output.partitions == 2     # --reducers 1, run with two
    assert not (tmp_path / "out").exists()
