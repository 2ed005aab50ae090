"""`jetshell` without a jobserver: help, argument and job-file errors, an unreachable
jobserver, and how progress and outcomes are shown."""
from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from minijet.client import console, jetshell
from minijet.net import free_port
from minijet.proto import job_pb2

EXAMPLE = str(Path(__file__).resolve().parent.parent / "examples" / "wordcount" / "wordcount.py")


@pytest.fixture
def nowhere(tmp_path):
    """--config and -D flags for a jobserver address where nothing listens (no retries)."""
    conf = tmp_path / "minijet.yaml"
    conf.write_text("rpc:\n  retries: 0\n  timeout: 5s\n")
    address = f"127.0.0.1:{free_port()}"
    return ["--config", str(conf), "-D", f"jobserver.address={address}",
            "-D", f"nameserver.address=127.0.0.1:{free_port()}"], address


def jetshell_main(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        jetshell.main(list(args))
    out, err = capsys.readouterr()
    return e.value.code, out, err


def assert_one_line_error(code: int, err: str, *expected: str) -> None:
    assert code == 1
    assert err.startswith("jetshell: error: ") and err.count("\n") == 1, err
    for text in expected:
        assert text in err, err
    assert "Traceback" not in err


# ---- help ----

def test_help_lists_the_commands_and_exit_codes(capsys):
    code, out, _ = jetshell_main(capsys, "--help")
    assert code == 0
    for command in ("run", "submit", "status", "list", "wait", "kill", "logs", "nodes"):
        assert f"  {command} " in out
    text = " ".join(out.split())
    for meaning in ("0 success", "1 error", "2 the job failed", "3 the job was killed",
                    "130 interrupted"):
        assert meaning in text


@pytest.mark.parametrize("command", ["run", "submit", "status", "list", "wait", "kill", "logs",
                                     "nodes", "streaming"])
def test_every_command_has_help_and_config(capsys, command):
    code, out, err = jetshell_main(capsys, command, "--help")
    assert (code, err) == (0, "")
    assert out.startswith(f"Usage: jetshell {command} ")
    assert "--config FILE" in out and "-D KEY=VALUE" in out


@pytest.mark.parametrize("command", ["status", "wait", "kill", "logs"])
def test_a_malformed_job_id_is_a_usage_error(capsys, command):
    code, out, err = jetshell_main(capsys, command, "job42")
    assert_one_line_error(code, err, "'job42' is not a job id",
                          f"(see 'jetshell {command} --help')")
    assert out == ""


def test_run_help_is_jetshells(capsys):
    code, out, _ = jetshell_main(capsys, "run", "--help")
    assert code == 0
    assert "Usage: jetshell run [OPTIONS] JOBFILE CLASS [ARGS]..." in out
    assert "--config" in out and "-D KEY=VALUE" in out


def test_job_help_shows_the_class_params(capsys, tmp_path):
    job = tmp_path / "top.py"
    job.write_text(textwrap.dedent("""\
        from minijet import MapReduceJob, Param

        class Top(MapReduceJob):
            \"\"\"The most frequent words.\"\"\"
            params = [Param("--top", int, default=10, help="how many words")]
            def mapper(self, key, value):
                yield value, 1
            def reducer(self, key, values):
                yield key, sum(values)
        """))
    for command in ("run", "submit"):
        code, out, err = jetshell_main(capsys, command, str(job), "Top", "--help")
        assert (code, err) == (0, "")
        assert out.startswith(f"usage: jetshell {command} {job} Top")
        for text in ("The most frequent words.", "input", "output", "--reducers N",
                     "--top TOP", "how many words (default: 10)"):
            assert text in out


def test_wordcount_help(capsys):
    code, out, _ = jetshell_main(capsys, "run", EXAMPLE, "WordCount", "--help")
    assert code == 0 and "--reducers N" in out and "output" in out


# ---- errors before any server is asked ----

def test_bad_job_arguments(capsys, nowhere):
    flags, _ = nowhere
    code, out, err = jetshell_main(capsys, "run", *flags, EXAMPLE, "WordCount", "/in")
    assert_one_line_error(code, err, "WordCount: the following arguments are required: output")
    assert out == ""
    code, _, err = jetshell_main(capsys, "submit", *flags, EXAMPLE, "WordCount", "/in", "/out",
                                 "--reducers", "many")
    assert_one_line_error(code, err, "--reducers: invalid int value: 'many'")
    code, _, err = jetshell_main(capsys, "run", *flags, EXAMPLE, "WordCount", "in", "/out")
    assert_one_line_error(code, err, "invalid path 'in'", "absolute")


def test_job_file_errors(capsys, nowhere, tmp_path):
    flags, _ = nowhere
    code, _, err = jetshell_main(capsys, "run", *flags, str(tmp_path / "missing.py"),
                                 "WordCount", "/in", "/out")
    assert_one_line_error(code, err, "missing.py does not exist")

    broken = tmp_path / "broken.py"
    broken.write_text("from minijet import MapReduceJob\n\nclass X(MapReduceJob:\n    pass\n")
    code, _, err = jetshell_main(capsys, "run", *flags, str(broken), "X", "/in", "/out")
    assert_one_line_error(code, err, f"syntax error in {broken}, line 3")

    code, _, err = jetshell_main(capsys, "submit", *flags, EXAMPLE, "Wordcount", "/in", "/out")
    assert_one_line_error(code, err, "has no class Wordcount (job classes in it: WordCount)")


@pytest.mark.parametrize("args, expected", [
    (["status"], "Missing argument 'JOBID'"),
    (["frobnicate"], "No such command 'frobnicate'"),
    (["run", "job.py"], "Missing argument 'CLASS'"),
    (["list", "--nope"], "No such option '--nope'"),
    (["status", "-D", "no.such=1", "job_1_1"], "unknown config key 'no.such'"),
    (["status", "-D", "rpc.timeout=soon", "job_1_1"], "config key rpc.timeout"),
    (["nodes", "--config", "/no/such/minijet.yaml"], "cannot read config file"),
    (["logs"], "Missing argument 'JOBID'"),
    (["logs", "job_1_1", "map_00000", "extra"], "Got unexpected extra argument (extra)"),
    (["list", "extra"], "Got unexpected extra argument (extra)"),
    (["nodes", "--all"], "No such option '--all'"),
    (["kill"], "Missing argument 'JOBID'"),
    (["wait", "job_1_1", "job_1_2"], "unexpected extra argument"),
])
def test_usage_and_config_errors(capsys, args, expected):
    code, _, err = jetshell_main(capsys, *args)
    assert_one_line_error(code, err, expected)


# ---- an unreachable jobserver ----

@pytest.mark.parametrize("command", [["status", "job_20260101000000_0001"], ["list"],
                                     ["nodes"], ["kill", "job_20260101000000_0001"],
                                     ["wait", "job_20260101000000_0001"],
                                     ["logs", "job_20260101000000_0001"]])
def test_unreachable_jobserver(capsys, nowhere, command):
    flags, address = nowhere
    code, out, err = jetshell_main(capsys, command[0], *flags, *command[1:])
    assert_one_line_error(code, err, f"cannot reach the jobserver at {address}: nothing listens there")
    assert out == ""


def test_console_script_unreachable_is_one_line(nowhere):
    """The installed command, as a user runs it: one line on stderr, exit status 1."""
    flags, address = nowhere
    proc = subprocess.run([sys.executable, "-m", "minijet.client.jetshell", "list", *flags],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"jetshell: error: cannot reach the jobserver at {address}")
    assert proc.stderr.count("\n") == 1 and proc.stdout == ""


def test_the_command_loads_what_a_submission_needs_only_for_a_submission():
    """Every command pays for what `import minijet.client.jetshell` loads: not the job
    compiler, the job and builder modules, the DFS client or dataclasses, which `status`,
    `list`, `wait` and `kill` never use."""
    code = "import sys, minijet.client.jetshell; print(' '.join(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()
    assert "minijet.client.jetclient" in loaded
    assert not {"minijet.client.jobcompile", "minijet.job", "minijet.builder", "minijet.jobconf",
                "minijet.dfs", "dataclasses"} & set(loaded)


# ---- showing progress and outcomes ----

def status_of(state: str, *progress: float, **fields) -> job_pb2.JobStatus:
    stages = [job_pb2.StageInfo(stage_id=name, tasks=4, progress=p)
              for name, p in zip(("map", "reduce"), progress)]
    return job_pb2.JobStatus(job_id="job_20260101000000_0007", state=state, stages=stages,
                             start_time=1000.0, **fields)


def test_plain_progress_lines_when_not_a_terminal():
    out = io.StringIO()
    show = console.ProgressPrinter(out, tty=False)
    for status in (status_of("created"), status_of("running", 0.0, 0.0),
                   status_of("running", 0.454, 0.0), status_of("running", 0.456, 0.0),
                   status_of("running", 1.0, 0.5), status_of("succeeded", 1.0, 1.0)):
        show(status)
    assert out.getvalue().splitlines() == [
        "created", "map 0% reduce 0%", "map 45% reduce 0%", "map 100% reduce 50%",
        "map 100% reduce 100%"]


def test_progress_bar_on_a_terminal():
    out = io.StringIO()
    show = console.ProgressPrinter(out, tty=True, columns=100)
    show(status_of("running", 0.5, 0.0))
    show(status_of("succeeded", 1.0, 1.0, end_time=1002.5))
    text = out.getvalue()
    assert text.startswith("\rmap [##########----------]  50%  reduce [--------------------]"
                           "   0%")
    last = text.split("\r")[-1]
    assert last.endswith("\n")  # the finished job leaves its bar on its own line
    assert last.rstrip() == "map [####################] 100%  reduce [####################] " \
                            "100%  2.5s"


def test_progress_bars_fit_the_terminal():
    status = job_pb2.JobStatus(state="running", start_time=1000.0, end_time=1010.0, stages=[
        job_pb2.StageInfo(stage_id=f"stage{i}", tasks=2, progress=0.5) for i in range(4)])
    wide = console.bar_line(status, 200)
    assert wide.count("[##########----------]") == 4 and wide.endswith("  10.0s")
    narrow = console.bar_line(status, 100)
    assert len(narrow) < 100 and narrow.count("[###----]") == 4 and narrow.endswith("  10.0s")
    tiny = console.bar_line(status, 60)
    assert tiny == "stage0 50% stage1 50% stage2 50% stage3 50%  10.0s"
    assert len(console.bar_line(status, 30)) == 29


def test_outcome_failed_shows_the_users_error(capsys):
    status = status_of("failed", 1.0, 0.2, end_time=1003.0, error="ValueError: bad record",
                       traceback="Traceback (most recent call last):\n  File \"job.py\", "
                                 "line 5, in mapper\nValueError: bad record\n",
                       counters=[job_pb2.Counter(group="map", name="input records",
                                                 value=12)])
    assert console.report_outcome(status) == console.EXIT_FAILED
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "job job_20260101000000_0007 failed after 3.0s"
    assert "    input records = 12" in out
    assert 'File "job.py", line 5, in mapper' in err
    assert err.splitlines()[-1] == \
        "jetshell: error: job job_20260101000000_0007 failed: ValueError: bad record"


def test_outcome_exit_codes(capsys):
    assert console.report_outcome(status_of("succeeded", 1.0, 1.0, end_time=1001.0,
                                              output_path="/out")) == 0
    assert "output: /out" in capsys.readouterr().out
    assert console.report_outcome(status_of("killed", 0.5, 0.0, end_time=1001.0)) == \
        console.EXIT_KILLED
    assert "was killed" in capsys.readouterr().err


def test_status_text_shows_stages_attempts_and_the_users_traceback():
    job = "job_20260101000000_0007"
    attempts = [
        job_pb2.AttemptInfo(attempt_id=f"{job}_map_00000_0", task_id=f"{job}_map_00000",
                            taskserver="ts-host1", locality="node-local", state="succeeded",
                            start_time=1000.0, end_time=1001.0),
        job_pb2.AttemptInfo(attempt_id=f"{job}_map_00001_3", task_id=f"{job}_map_00001",
                            taskserver="ts-host2", locality="rack-local", state="failed",
                            start_time=1000.0, end_time=1002.0, failure="user",
                            error="ValueError: bad record",
                            traceback="Traceback (most recent call last):\n"
                                      "ValueError: bad record\n")]
    status = status_of("failed", 0.5, 0.0, name="WordCount", user="alice", submit_time=999.0,
                       end_time=1002.0, error="task map_00001 failed 4 times",
                       output_path="/out", attempts=attempts,
                       counters=[job_pb2.Counter(group="job", name=f"{c}_failed_attempts",
                                                 value=n) for c, n in (("user", 4),
                                                                       ("system", 2))])
    text = jetshell.status_text(status)
    lines = text.splitlines()
    assert lines[0].split() == ["job", job]
    assert ["state", "failed"] in [line.split() for line in lines]
    assert "duration   2.0s" in text and "output     /out" in text
    assert ["map", "4", "0", "0", "0", "50%"] in [line.split() for line in lines]
    row = next(line for line in lines if line.startswith(f"{job}_map_00001 "))
    assert row.split()[1:4] == ["3", "ts-host2", "rack-local"]
    assert row.split()[6:11] == ["-"] * 5   # no counters: nothing read or written
    assert row.split()[-6:] == ["failed", "(user", "error)", "ValueError:", "bad", "record"]
    assert "failures   attempts failed by user errors 4, by system errors 2" in text
    assert lines[-2:] == ["Traceback (most recent call last):", "ValueError: bad record"]
    assert "error: task map_00001 failed 4 times" in lines
    assert "note:" not in text   # every attempt ran as its job's user


def test_status_text_notes_taskservers_that_did_not_isolate_the_job():
    status = status_of("succeeded", 1.0, 1.0, end_time=1001.0)
    status.unisolated_taskservers.extend(["host1:7000", "host3:7000"])
    assert jetshell.status_text(status).splitlines()[-1] == (
        "note: attempts of this job ran without isolation from other jobs on taskservers "
        "host1:7000, host3:7000 (not running as root, or with taskserver.isolate_tasks off)")


def counters(**values) -> list[job_pb2.Counter]:
    return [job_pb2.Counter(group="task", name=n, value=v) for n, v in values.items()]


def test_list_and_nodes_tables():
    jobs = [status_of("running", 0.5, 0.0, name="WordCount", user="alice",
                      counters=counters(input_bytes=3 * 1024 * 1024, output_bytes=512)
                      + [job_pb2.Counter(group="job", name="lost_attempts", value=1)])]
    jobs[0].stages[0].succeeded = 2
    jobs[0].stages[0].failed_attempts = 1
    header, row = jetshell.jobs_table(jobs, now=1010.0).splitlines()
    assert header.split() == ["job", "name", "user", "started", "duration", "retries",
                              "progress", "read", "written", "state"]
    assert row.split()[:3] == ["job_20260101000000_0007", "WordCount", "alice"]
    assert row.split()[-6:] == ["10.0s", "2", "2/8", "3.0MiB", "512B", "running"]
    servers = [job_pb2.TaskServerStatus(name="ts1", host="host1", rack="/r1", slots=4,
                                        running=2, last_heartbeat=995.0, alive=True),
               job_pb2.TaskServerStatus(name="ts2", host="host2", rack="/r1", slots=4,
                                        last_heartbeat=999.0, failures=9, alive=True,
                                        blacklists=3, greylisted_since=990.0, isolated=True)]
    header, row, grey = jetshell.nodes_table(servers, now=1000.0).splitlines()
    assert header.split()[-4:] == ["failures", "blacklists", "isolated", "state"]
    assert row.split() == ["ts1", "host1", "/r1", "4", "2", "5.0s", "ago", "0", "0", "no",
                           "alive"]
    assert grey.split()[7:12] == ["9", "3", "yes", "alive,", "greylisted"]


def test_attempt_and_job_metrics_from_counters():
    job = "job_20260101000000_0007"
    mapper = job_pb2.AttemptInfo(
        attempt_id=f"{job}_map_00000_0", task_id=f"{job}_map_00000", state="succeeded",
        start_time=1000.0, end_time=1002.5,
        counters=counters(input_bytes=4096, input_records=100, map_output_bytes=2000,
                          map_output_records=300, read_time_us=250_000,
                          process_time_us=1_500_000, write_time_us=500_000))
    reducer = job_pb2.AttemptInfo(
        attempt_id=f"{job}_reduce_00000_0", task_id=f"{job}_reduce_00000", state="running",
        start_time=1001.0,
        counters=counters(shuffle_bytes=2000, input_records=300, output_bytes=90,
                          output_records=9)
        + [job_pb2.Counter(group="user", name="input_bytes", value=7)])
    status = status_of("running", 1.0, 0.5, attempts=[mapper, reducer],
                       counters=counters(input_bytes=4096, output_bytes=90, output_records=9,
                                         read_time_us=250_000))
    status.stages[0].succeeded = 4
    d = jetshell.status_json(status, now=1004.0)
    assert (d["tasks"], d["tasks_succeeded"], d["retries"]) == (8, 4, 0)
    assert (d["bytes_read"], d["bytes_written"], d["records_written"]) == (4096, 90, 9)
    assert d["records_read"] == 100 and d["read_time"] == 0.25 and d["duration"] == 4.0
    m, r = d["attempts"]
    assert (m["input_bytes"], m["input_records"], m["output_bytes"], m["output_records"]) == \
        (4096, 100, 2000, 300)
    assert (m["read_time"], m["process_time"], m["write_time"], m["duration"]) == \
        (0.25, 1.5, 0.5, 2.5)
    assert (r["input_bytes"], r["output_bytes"], r["output_records"], r["duration"]) == \
        (2000, 90, 9, 3.0)   # a running attempt: its duration so far
    for key in ("state", "start_time", "end_time", "taskserver", "locality", "error",
                "traceback", "counters"):
        assert key in m
    text = jetshell.status_text(status, now=1004.0)
    assert "read       4.0KiB" in text and "written    90B" in text
    row = next(line for line in text.splitlines() if line.startswith(f"{job}_map_00000 "))
    assert row.split()[6:12] == ["4.0KiB", "2.0KiB", "0.25s", "1.50s", "0.50s", "succeeded"]


def test_logs_select_attempts_by_stage_task_or_attempt():
    from minijet.client.jetclient import select_attempts
    from minijet.errors import NotFound

    job = "job_20260101000000_0007"
    ids = [("map_00000", 0), ("map_00000", 1), ("map_00001", 0), ("reduce_00000", 0)]
    status = status_of("running", 0.5, 0.0, attempts=[
        job_pb2.AttemptInfo(attempt_id=f"{job}_{t}_{n}", task_id=f"{job}_{t}") for t, n in ids])

    def chosen(task):
        return [a.attempt_id[len(job) + 1:] for a in select_attempts(status, task)]

    assert chosen("") == ["map_00000_0", "map_00000_1", "map_00001_0", "reduce_00000_0"]
    assert chosen("map") == ["map_00000_0", "map_00000_1", "map_00001_0"]
    assert chosen("map_00000") == chosen(f"{job}_map_00000") == ["map_00000_0", "map_00000_1"]
    assert chosen("map_00000_1") == chosen(f"{job}_map_00000_1") == ["map_00000_1"]
    for wrong in ("map_0000", "map_00002", "reduce_00000_5", "job_20260101000000_0008_map"):
        with pytest.raises(NotFound, match=f"job {job} has no task or attempt {wrong}$"):
            select_attempts(status, wrong)
