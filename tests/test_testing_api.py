"""minijet.testing as a job author uses it in pytest: a few records in, the job's output and
counters out, the author's own exceptions raised as they are, and code that only works with
one task caught."""
from __future__ import annotations

import traceback
from collections import Counter
from pathlib import Path

import pytest

from minijet import MapReduceJob, Param
from minijet.errors import AlreadyExists, InvalidArgument, NotFound
from minijet.job import load_job_class
from minijet.testing import parse_line, read_output, run, run_job

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "wordcount" / "wordcount.py"
WordCount = load_job_class(str(EXAMPLE), "WordCount")


class FrequentWords(MapReduceJob):
    """Words seen at least --min-count times, lower-cased."""

    params = [Param("--min-count", int, default=2), Param("--stop", str, nargs="*", default=[])]

    def mapper(self, key, value):
        for word in value.lower().split():
            if word not in self.stop:
                yield word, 1

    def combiner(self, key, values):
        yield key, sum(values)

    def reducer(self, key, values):
        n = sum(values)
        if n >= self.min_count:
            yield key, n


def by_first_letter(key, partitions):
    return ord(key[0]) % partitions if key else 0


class LetterPartitioned(FrequentWords):
    partitioner = by_first_letter


class DistinctWords(MapReduceJob):
    """Buggy: numbers the words its reducer sees, taking the last number for the total."""

    def mapper(self, key, value):
        for word in value.split():
            yield word, 1

    def reducer(self, key, values):
        self.seen = getattr(self, "seen", 0) + 1
        yield "distinct", self.seen


class Explodes(FrequentWords):
    def mapper(self, key, value):
        if "boom" in value:
            raise RuntimeError(f"boom at byte {key}")
        yield from super().mapper(key, value)


LINES = ["the cat sat on the mat", "The dog sat", "a cat a dog and THE bird", "", "the end"]


def test_wordcount_counts_words():
    assert sorted(run_job(WordCount, input_lines=["a b", "b"])) == [("a", "1"), ("b", "2")]


def test_wordcount_agrees_with_counter_also_on_undecodable_bytes():
    lines = LINES + [b"caf\xc3\xa9 \xff\xfe caf\xc3\xa9", "tab\tinside"]
    expected = Counter(w for line in lines for w in
                       (line if isinstance(line, str) else
                        line.decode("utf-8", "surrogateescape")).split())
    result = run_job(WordCount, input_lines=lines)
    assert {k: int(v) for k, v in result} == expected
    assert ("\udcff\udcfe", "1") in result and ("café", "2") in result


def test_options_are_parsed_as_on_the_command_line():
    result = run_job(FrequentWords, ["--min-count", "3", "--stop", "a", "on"],
                     input_lines=LINES)
    assert dict(result) == {"the": "5"}
    assert dict(run_job(FrequentWords, input_lines=LINES)) == {
        "the": "5", "cat": "2", "sat": "2", "dog": "2", "a": "2"}


def test_each_reduce_part_is_sorted_and_the_partitioner_is_the_jobs():
    done = run(LetterPartitioned, ["--min-count", "1"], input_lines=LINES)
    assert done.tasks == {"map": 2, "reduce": 2}
    for path, lines in done.parts.items():
        keys = [parse_line(line)[0] for line in lines]
        assert keys == sorted(keys)
        assert {by_first_letter(k, 2) for k in keys} <= {int(path[-5:])}
    assert done.counter("map_output_records") == sum(len(l.split()) for l in LINES)
    assert done.counter("launched_attempts", group="job") == 4


def test_a_reducer_that_needs_to_see_every_key_fails_its_test():
    lines = ["a b c d e f g", "a b"]
    # the author's expectation, true only when one reducer sees every word
    assert run_job(DistinctWords, input_lines=lines)[-1] != ("distinct", "7")
    assert run_job(DistinctWords, input_lines=lines, min_tasks=1)[-1] == ("distinct", "7")


def test_the_jobs_exception_is_raised_as_it_is():
    with pytest.raises(RuntimeError, match=r"^boom at byte \d+$") as raised:
        run_job(Explodes, input_lines=["fine", "boom here"])
    frames = [f.name for f in traceback.extract_tb(raised.value.__traceback__)]
    assert frames[-1] == "mapper"
    assert raised.value.__context__ is None   # not wrapped in the runner's JobFailed


def test_files_and_directories_in_a_kept_output(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "one.txt").write_text("x y\n")
    (tmp_path / "in" / "_ignored").write_text("hidden z\n")
    (tmp_path / "two.txt").write_text("y\n")
    result = run_job(WordCount, inputs=[tmp_path / "in", tmp_path / "two.txt"],
                     output=tmp_path / "out")
    assert sorted(result) == [("x", "1"), ("y", "2")]
    assert (tmp_path / "out" / "_SUCCESS").exists()
    assert sorted(line for lines in read_output(tmp_path / "out").values()
                  for line in lines) == ["x\t1", "y\t2"]
    with pytest.raises(AlreadyExists, match="never overwrite"):
        run_job(WordCount, inputs=[tmp_path / "two.txt"], output=tmp_path / "out")


def test_whole_command_line_in_args(tmp_path):
    (tmp_path / "in.txt").write_text("p q p\n")
    out = tmp_path / "o"
    assert sorted(run_job(WordCount, [str(tmp_path / "in.txt"), str(out), "--reducers", "0"])) \
        == [("p", "1"), ("p", "1"), ("q", "1")]
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "part-00000", "part-00001"]


def test_mistakes_in_the_test_are_clear(tmp_path):
    with pytest.raises(NotFound, match="input path .*/missing does not exist"):
        run_job(WordCount, inputs=[tmp_path / "missing"])
    with pytest.raises(InvalidArgument, match="not both"):
        run_job(WordCount, input_lines=["a"], inputs=[tmp_path])
    with pytest.raises(InvalidArgument, match="one string"):
        run_job(WordCount, "--reducers 2", input_lines=["a"])
    with pytest.raises(InvalidArgument, match="--min-count"):
        run_job(FrequentWords, ["--min-count", "many"], input_lines=["a"])


def test_a_streaming_job_runs_its_commands_on_two_partitions():
    from minijet.streaming import StreamingJob

    done = run(StreamingJob, ["--mapper-command", "cat", "--reducer-command", "uniq -c"],
               input_lines=["b", "a", "b", "c", "a", "b"])
    assert done.tasks == {"map": 2, "reduce": 2}
    assert sorted(" ".join(line.split()) for line in done.lines) == ["1 c", "2 a", "3 b"]
