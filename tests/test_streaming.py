"""Hadoop Streaming jobs: the line/record rules and the subprocess pump without a cluster, the
job through the TaskHost's stage functions over local files, then `jetshell streaming` on a
live cluster against the shell pipeline `cat input | mapper | sort | reducer`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from minijet import jobconf as jc
from minijet import streaming
from minijet.splits import Segment
from minijet.streaming import StreamingError, StreamingJob, pipe_lines, split_line
from minijet.taskhost import runner

from collected import Collected

EXAMPLE = Path(__file__).parents[1] / "examples" / "streaming"
MAPPER = EXAMPLE / "mapper.py"
REDUCER = EXAMPLE / "reducer.py"
PY = sys.executable


# ---- lines and records ----

def test_split_line_at_the_first_tab():
    assert split_line("k\tv") == ("k", "v")
    assert split_line("k\tv\tw") == ("k", "v\tw")
    assert split_line("just a line") == ("just a line", None)
    assert split_line("k\t") == ("k", "")
    assert split_line("\tv") == ("", "v")
    assert split_line("") == ("", None)


def test_join_pair_is_the_inverse_of_split_line():
    for line in ["k\tv", "k\tv\tw", "bare", "k\t", "\tv", ""]:
        assert streaming.join_pair(*split_line(line)) == line


def test_sorted_batches_keep_each_key_together_in_order():
    lines = [f"w{i % 13}\t{i}" for i in range(1000)]
    batches = list(streaming.sorted_batches(iter(lines), limit=4000))
    assert len(batches) > 3
    assert sorted(sum(batches, [])) == sorted(lines)
    for b in batches:
        assert b == sorted(b)


# ---- the pump ----

def test_pipe_lines_round_trips_many_lines_through_cat():
    lines = [f"line {i} " + "x" * (i % 300) for i in range(100_000)]
    assert list(pipe_lines("cat", iter(lines))) == lines


def test_large_output_for_little_input_does_not_deadlock():
    # each input line makes 10000 output lines: the output pipe fills long before the input
    # is written, so the writer must not wait for the reader (or the other way round)
    out = pipe_lines(f"{PY} -c \"import sys\nfor l in sys.stdin:\n"
                     f"  sys.stdout.write((l.strip() + '\\\\n') * 10000)\"",
                     (str(i) for i in range(50)))
    count = 0
    for line in out:
        count += 1
    assert count == 500_000


def test_last_line_without_newline_and_non_utf8_bytes_survive():
    out = list(pipe_lines("printf 'a\\tb\\nlast'", []))
    assert out == ["a\tb", "last"]
    raw = "caf\udce9"  # an undecodable byte, as the record reader gives it
    assert list(pipe_lines("cat", [raw, "été"])) == [raw, "été"]


def test_nonzero_exit_raises_with_the_stderr_tail():
    command = "cat >/dev/null; echo first >&2; echo 'ValueError: bad' >&2; exit 3"
    with pytest.raises(StreamingError) as e:
        list(pipe_lines(command, ["a", "b"], role="mapper"))
    assert str(e.value) == f"mapper ({command}) exited with status 3: ValueError: bad"
    assert e.value.user_traceback == "mapper stderr (last 2 lines):\nfirst\nValueError: bad\n"


def test_reporter_lines_count_user_counters_and_stay_out_of_the_log(capfdbinary):
    from minijet import context

    progress = runner.Progress(lambda f, c: None)
    context.bind(progress)
    try:
        command = ("while read l; do echo \"reporter:counter:my group,lines,2\" >&2; "
                   "echo \"$l\"; done; echo reporter:status:almost >&2; "
                   "echo 'reporter:counter:bad' >&2; echo plain >&2")
        assert list(pipe_lines(command, ["a", "b", "c"])) == ["a", "b", "c"]
    finally:
        context.bind(None)
    assert progress.counters[("my group", "lines")] == 6
    assert progress.counters[("streaming", "command_input_lines")] == 3
    assert progress.counters[("streaming", "command_output_lines")] == 3
    err = capfdbinary.readouterr().err
    assert b"reporter:counter:bad\nplain\n" in err and b"my group" not in err


def test_a_command_that_stops_reading_early_succeeds_like_in_a_shell():
    assert list(pipe_lines("head -n 2", (str(i) for i in range(1_000_000)))) == ["0", "1"]


def test_an_unknown_command_fails_with_the_shells_message():
    with pytest.raises(StreamingError, match="status 127.*not found"):
        list(pipe_lines("no-such-command-here", ["x"]))


def test_an_input_error_kills_the_command_and_is_raised():
    def lines():
        yield "a"
        raise OSError("the split cannot be read")

    start = time.monotonic()
    with pytest.raises(OSError, match="cannot be read"):
        list(pipe_lines("cat; sleep 30", lines()))
    assert time.monotonic() - start < 10


def test_stopping_early_kills_the_whole_pipeline():
    before = threading.active_count()
    out = pipe_lines("yes | cat", [])
    assert next(out) == "y"
    out.close()
    assert threading.active_count() == before


# ---- the job through the stage functions (no cluster) ----

TEXT = "".join(f"the quick brown fox {i % 7} jumps over the lazy dog {i % 3}\n"
               for i in range(400)) + "tab\tseparated\tline\n\nlast line without newline"


def run_job_locally(tmp_path: Path, params: dict, reducers: int) -> list[str]:
    """The map stage over 3 splits of a local file, then the reduce stage over each
    partition, through runner's stage functions; the output lines."""
    src = tmp_path / "input.txt"
    src.write_text(TEXT)
    job = StreamingJob({"input": ["/in"], "output": "/out", "reducers": reducers, **params})
    conf = jc.compile_mapreduce("s", "s.py", "StreamingJob", {}, ["/in"], "/out", reducers,
                                has_combiner=False)
    length = src.stat().st_size
    progress = runner.Progress(lambda f, c: None)
    outputs = []
    for i, off in enumerate(range(0, length, 4000)):
        split = Segment(str(src), off, min(4000, length - off))
        if reducers == 0:
            out = Collected()
            runner.run_input_stage(job, conf.stage("map"), [split], lambda p: open(p, "rb"),
                                   lambda combiner: out, progress)
            outputs.append(out)
        else:
            work = tmp_path / f"map{i}"
            runner.run_input_stage(
                job, conf.stage("map"), [split], lambda p: open(p, "rb"),
                lambda combiner: runner.MapOutputSink(work, reducers, "hash", 1 << 20,
                                                      combiner), progress)
            outputs.append(work / "file.out")
    if reducers == 0:
        return [streaming.join_pair(k, v) for o in outputs for k, v in o.pairs]
    from minijet.formats import segments
    lines = []
    for part in range(reducers):
        segs = [(segments.read_map_output_segment(o, part),
                 segments.read_index(segments.index_path(o))[part].records) for o in outputs]
        out = Collected()
        runner.run_consumer_stage(job, conf.stage("reduce"), segs, len(segs),
                                  tmp_path / f"shuffle{part}", 1 << 20, lambda c: out, progress)
        lines += [streaming.join_pair(k, v) for k, v in out.pairs]
    return lines


def shell_pipeline(text: str, mapper: str, reducer: str | None, cwd: Path) -> list[str]:
    """`cat input | mapper | sort | reducer` run locally."""
    command = f"{mapper} | LC_ALL=C sort" + (f" | {reducer}" if reducer else "")
    result = subprocess.run(command, shell=True, input=text.encode(), cwd=cwd,
                            capture_output=True, check=True)
    return result.stdout.decode().splitlines()


@pytest.mark.parametrize("reducers", [1, 3])
def test_wordcount_scripts_through_the_stage_functions(tmp_path, reducers):
    params = {"mapper_command": f"{PY} {MAPPER}", "reducer_command": f"{PY} {REDUCER}"}
    got = run_job_locally(tmp_path, params, reducers)
    want = shell_pipeline(TEXT, f"{PY} {MAPPER}", f"{PY} {REDUCER}", tmp_path)
    assert sorted(got) == sorted(want)
    assert "the\t800" in got


def test_combiner_runs_over_sorted_map_output(tmp_path):
    params = {"mapper_command": f"{PY} {MAPPER}", "combiner_command": f"{PY} {REDUCER}",
              "reducer_command": f"{PY} {REDUCER}"}
    got = run_job_locally(tmp_path, params, 2)
    want = shell_pipeline(TEXT, f"{PY} {MAPPER}", f"{PY} {REDUCER}", tmp_path)
    assert sorted(got) == sorted(want)


def test_map_only_writes_the_mappers_lines(tmp_path):
    got = run_job_locally(tmp_path, {"mapper_command": "tr a-z A-Z"}, 0)
    assert got == TEXT.upper().split("\n")


def test_job_args_make_a_map_only_job_without_reducer():
    args = streaming.job_args(["/a", "/b"], "/out", "cat", reducers=4)
    params = StreamingJob.parse_params(args)
    assert params["reducers"] == 0 and params["input"] == ["/a", "/b"]
    args = streaming.job_args(["/a"], "/out", "m", "c", "r", 4, ["x/mapper.py", "r.py"])
    params = StreamingJob.parse_params(args)
    assert params["reducers"] == 4 and params["file"] == ["mapper.py", "r.py"]
    assert (params["mapper_command"], params["combiner_command"],
            params["reducer_command"]) == ("m", "c", "r")
    args = streaming.job_args(["/a"], "/out", "-n", reducer="--x")
    assert StreamingJob.parse_params(args)["reducer_command"] == "--x"


def test_local_run_without_a_cluster(tmp_path):
    """`jetshell streaming --local`: local files, commands in the current directory (where
    the user's executable scripts are found by their plain names)."""
    for script in (MAPPER, REDUCER):
        (tmp_path / script.name).write_text(script.read_text())
        (tmp_path / script.name).chmod(0o755)
    (tmp_path / "in.txt").write_text(TEXT)
    result = subprocess.run(
        [PY, "-c", "from minijet.client.jetshell import main; main()", "streaming", "--local",
         "--input", "in.txt", "--output", "out", "--mapper", "mapper.py",
         "--reducer", "reducer.py"], cwd=tmp_path, capture_output=True, text=True,
        timeout=60, env={k: v for k, v in os.environ.items() if k != "MINIJET_CONF"})
    assert result.returncode == 0, result.stdout + result.stderr
    got = [line for part in sorted((tmp_path / "out").glob("part-*"))
           for line in part.read_text().splitlines()]
    assert sorted(got) == sorted(shell_pipeline(TEXT, "./mapper.py", "./reducer.py", tmp_path))
    assert (tmp_path / "out" / "_SUCCESS").exists()


# ---- `jetshell streaming` on the job cluster (conftest.py) ----

def jetshell(lc, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, MINIJET_CONF=str(lc.config_path))
    return subprocess.run([PY, "-c", "from minijet.client.jetshell import main; main()",
                           *args], env=env, capture_output=True, text=True, timeout=120,
                          cwd=cwd)


def words_text(seed: int, size: int) -> str:
    """Lines of words (non-ASCII ones too, tabs, blank lines) crossing block boundaries."""
    import random

    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(200)] + ["été", "日本語", "naïve", "a", "the", "end."]
    lines, total = [], 0
    while total < size:
        line = " ".join(rng.choice(vocab) for _ in range(rng.choice([0, 1, 5, 12, 400])))
        if rng.random() < 0.1:
            line = "\t" + line.replace(" ", " \t", 2)
        lines.append(line + "\n")
        total += len(line.encode()) + 1
    return "".join(lines)


def put_text(lc, path: str, text: str) -> None:
    dfs = lc.client()
    try:
        with dfs.create(path) as f:
            f.write(text.encode())
    finally:
        dfs.close()


def output_lines(lc, path: str) -> tuple[list[str], set[str]]:
    """The lines of every part file of a job's output, and the names in its directory."""
    dfs = lc.client()
    try:
        names = {s.path.rstrip("/").rsplit("/", 1)[-1] for s in dfs.list(path)}
        lines = []
        for name in sorted(n for n in names if n.startswith("part-")):
            with dfs.open(f"{path}/{name}") as f:
                lines += f.read().decode().splitlines()
        return lines, names
    finally:
        dfs.close()


def test_wordcount_scripts_equal_the_shell_pipeline(job_cluster, tmp_path):
    """The classic scripts, shipped with --file and named by their plain names (not
    executable locally: shipped files are made executable), over two inputs of several
    blocks, with three reducers."""
    block = job_cluster.config["dfs"]["block_size"]
    texts = [words_text(1, 3 * block), words_text(2, block // 2)]
    put_text(job_cluster, "/wc/in/a.txt", texts[0])
    put_text(job_cluster, "/wc/in2.txt", texts[1])
    for script in (MAPPER, REDUCER):  # as a user's checkout may have them: not executable
        (tmp_path / script.name).write_text(script.read_text())
    result = jetshell(job_cluster, "streaming", "--input", "/wc/in", "--input", "/wc/in2.txt",
                      "--output", "/wc/out", "--mapper", "mapper.py", "--reducer",
                      "reducer.py", "--reducers", "3", "--file", "mapper.py",
                      "--file", "reducer.py", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("streaming: submitted job job_")
    lines, names = output_lines(job_cluster, "/wc/out")
    assert {"part-00000", "part-00001", "part-00002", "_SUCCESS"} <= names
    want = shell_pipeline("".join(texts), f"{PY} {MAPPER}", f"{PY} {REDUCER}", tmp_path)
    assert sorted(lines) == sorted(want)


def test_combiner_and_map_only(job_cluster, tmp_path):
    text = words_text(3, 2 * job_cluster.config["dfs"]["block_size"])
    put_text(job_cluster, "/comb/in.txt", text)
    result = jetshell(job_cluster, "streaming", "--input", "/comb/in.txt", "--output", "/comb/out",
                      "--mapper", f"{PY} {MAPPER}", "--combiner", f"{PY} {REDUCER}",
                      "--reducer", f"{PY} {REDUCER}")
    assert result.returncode == 0, result.stdout + result.stderr
    want = shell_pipeline(text, f"{PY} {MAPPER}", f"{PY} {REDUCER}", tmp_path)
    assert sorted(output_lines(job_cluster, "/comb/out")[0]) == sorted(want)
    status = jetshell(job_cluster, "status", result.stdout.split()[3], "--json")
    assert status.returncode == 0, status.stderr
    counters = {(c["group"], c["name"]): int(c["value"])
                for c in json.loads(status.stdout)["counters"]}
    mapped = counters[("streaming", "mapper_output_lines")]
    assert counters[("streaming", "combiner_input_lines")] == mapped
    assert counters[("streaming", "combiner_output_lines")] < mapped // 2

    # no reducer: map-only, the mapper's lines are the output (a shell pipeline as mapper)
    result = jetshell(job_cluster, "streaming", "--input", "/comb/in.txt", "--output", "/comb/up",
                      "--mapper", "tr a-z A-Z | cat")
    assert result.returncode == 0, result.stdout + result.stderr
    lines, names = output_lines(job_cluster, "/comb/up")
    assert len([n for n in names if n.startswith("part-")]) == 3  # one per split (block)
    assert sorted(lines) == sorted(shell_pipeline(text, "tr a-z A-Z | cat", None, tmp_path))


def test_a_failing_mapper_fails_the_job_with_its_stderr(job_cluster, tmp_path):
    put_text(job_cluster, "/fail/in.txt", "one\ntwo\nthree\n")
    bad = tmp_path / "bad_mapper.py"
    bad.write_text("import sys\nfor line in sys.stdin:\n"
                   "    if line.startswith('two'):\n"
                   "        print('some context', file=sys.stderr)\n"
                   "        sys.exit('bad record: ' + line.strip())\n"
                   "    print(line.strip() + '\\t1')\n")
    result = jetshell(job_cluster, "streaming", "--input", "/fail/in.txt", "--output", "/fail/out",
                      "--mapper", "python3 bad_mapper.py", "--reducer", "cat",
                      "--file", str(bad))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "bad record: two" in result.stderr
    job_id = result.stdout.split()[3]
    status = jetshell(job_cluster, "status", job_id)
    assert "failed" in status.stdout
    assert "mapper (python3 bad_mapper.py) exited with status 1: bad record: two" \
        in status.stdout
    assert "some context" in status.stdout
    assert "streaming.py" not in status.stdout  # the command's stderr, not our stack
    dfs = job_cluster.client()
    try:
        assert not dfs.exists("/fail/out")  # a failed job leaves no output
    finally:
        dfs.close()


def test_cli_errors_are_one_line(job_cluster, tmp_path):
    result = jetshell(job_cluster, "streaming", "--input", "/nope", "--output", "/x",
                      "--mapper", "cat")
    assert result.returncode == 1
    assert result.stderr.strip() == "jetshell: error: input path /nope does not exist"
    put_text(job_cluster, "/cli-errors/in.txt", "a line\n")   # not another test's input
    result = jetshell(job_cluster, "streaming", "--input", "/cli-errors/in.txt", "--output",
                      "/x", "--mapper", "cat", "--file", str(tmp_path / "missing.py"))
    assert result.returncode == 1 and "missing.py does not exist" in result.stderr
    assert "Traceback" not in result.stderr
