"""JetClient and the jetshell commands against the session's job cluster (conftest.py):
run/submit/wait/status/list/kill/logs/nodes in both output forms, and errors for unknown job
ids and tasks. WordCount results, failures and kills of running jobs are covered by
test_jobs_e2e.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from minijet.client import JetClient
from minijet.cluster import LocalCluster
from minijet.errors import NotFound

WORDCOUNT = str(Path(__file__).parents[1] / "examples" / "wordcount" / "wordcount.py")
UNKNOWN = "job_20000101000000_0042"


@pytest.fixture(scope="module")
def live(job_cluster):
    """The job cluster, with this module's input: one block, 8000 bytes, 400 lines."""
    with job_cluster.client() as dfs:
        with dfs.create("/live/in.txt") as f:
            f.write(b"to be or not to be\nthat is the question\n" * 200)
    return job_cluster


def taskserver_names(lc: LocalCluster) -> set[str]:
    with JetClient(lc.config) as jc:
        return {t.name for t in jc.list_taskservers()}


def taskserver_hosts(lc: LocalCluster) -> list[str]:
    return sorted(s.host for s in lc.status() if s.role == "taskserver")


def jetshell(lc: LocalCluster, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, MINIJET_CONF=str(lc.config_path))
    return subprocess.run([sys.executable, "-m", "minijet.client.jetshell", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_submit_wait_status_list(live):
    submitted = jetshell(live, "submit", WORDCOUNT, "WordCount", "/live/in.txt", "/live/out1",
                         "--reducers", "2")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    assert job_id.startswith("job_") and "\n" not in job_id  # only the id

    waited = jetshell(live, "wait", job_id)
    assert waited.returncode == 0, waited.stderr
    lines = waited.stdout.splitlines()
    assert lines[-1] == "output: /live/out1"
    assert any(line.startswith(f"job {job_id} succeeded after ") for line in lines)
    assert "map 100% reduce 100%" in lines  # plain progress lines: stdout is not a terminal

    status = json.loads(jetshell(live, "status", "--json", job_id).stdout)
    assert (status["job_id"], status["name"], status["state"]) == (job_id, "WordCount",
                                                                   "succeeded")
    assert [s["stage_id"] for s in status["stages"]] == ["map", "reduce"]
    assert {a["task_id"] for a in status["attempts"]} >= {f"{job_id}_reduce_00000",
                                                          f"{job_id}_reduce_00001"}
    for attempt in status["attempts"]:
        assert attempt["state"] == "succeeded" and attempt["taskserver"]
        assert attempt["start_time"] <= attempt["end_time"]

    text = jetshell(live, "status", job_id).stdout
    assert f"{job_id}_map_00000" in text and "node-local" in text

    listed = json.loads(jetshell(live, "list", "--all", "--json").stdout)
    assert job_id in [j["job_id"] for j in listed]
    table = jetshell(live, "list", "--all").stdout.splitlines()
    assert table[0].split()[0] == "job"
    row = next(line for line in table if line.startswith(job_id))
    assert row.split()[-4:] == ["3/3", "7.8KiB", row.split()[-2], "succeeded"]
    assert row.split()[-5] == "0"   # retries
    # bytes_read is the input file; bytes_written the part files
    entry = next(j for j in listed if j["job_id"] == job_id)
    assert (entry["tasks"], entry["tasks_succeeded"], entry["retries"]) == (3, 3, 0)
    assert entry["bytes_read"] == 8000
    with live.client() as dfs:
        written = sum(dfs.stat(f"/live/out1/part-0000{i}").length for i in (0, 1))
    assert entry["bytes_written"] == written > 0


def test_status_json_has_io_and_timing_per_attempt(live):
    job_id = jetshell(live, "submit", WORDCOUNT, "WordCount", "/live/in.txt", "/live/out3",
                      "--reducers", "2").stdout.strip()
    assert jetshell(live, "wait", job_id).returncode == 0
    status = json.loads(jetshell(live, "status", "--json", job_id).stdout)
    assert status["bytes_read"] == 8000 and status["records_read"] == 400
    assert status["records_written"] == 8   # to be or not that is the question
    assert status["duration"] > 0 and status["tasks"] == status["tasks_succeeded"] == 3
    for phase in ("read_time", "process_time", "write_time"):
        assert 0 < status[phase] < status["duration"] * 3, phase
    for a in status["attempts"]:
        assert a["state"] == "succeeded" and a["taskserver"] in taskserver_names(live)
        assert 0 < a["start_time"] <= a["end_time"]
        assert 0 < a["duration"] <= status["duration"]
        assert (a["error"], a["traceback"]) == ("", "")
        for phase in ("read_time", "process_time", "write_time"):
            assert 0 < a[phase] <= a["duration"], (a["attempt_id"], phase)
        if "_map_" in a["task_id"]:
            assert a["locality"] == "node-local"
            assert (a["input_bytes"], a["input_records"]) == (8000, 400)
            assert a["output_records"] == 2000 and a["output_bytes"] > 0  # before combining
        else:
            assert a["input_bytes"] > 0 and a["input_records"] > 0
            assert a["output_records"] > 0 and a["output_bytes"] > 0
    text = jetshell(live, "status", job_id).stdout
    assert "read       7.8KiB" in text and "task time  read " in text


CHATTY = textwrap.dedent("""\
    import sys
    from minijet import MapReduceJob

    class Chatty(MapReduceJob):
        def mapper(self, key, value):
            if key == 0:
                print("hello from the mapper")
                print("a word to stderr", file=sys.stderr)
            yield value, 1

        def reducer(self, key, values):
            yield key, sum(values)
    """)


def test_logs_of_a_finished_job(live, tmp_path):
    job_file = tmp_path / "chatty.py"
    job_file.write_text(CHATTY)
    ran = jetshell(live, "run", str(job_file), "Chatty", "/live/in.txt", "/live/out4")
    assert ran.returncode == 0, ran.stderr
    job_id = ran.stdout.splitlines()[0].split()[-1]
    assert "map 100% reduce 100%" in ran.stdout.splitlines()   # plain progress lines

    logs = jetshell(live, "logs", job_id)
    assert logs.returncode == 0, logs.stderr
    lines = logs.stdout.splitlines()
    with JetClient(live.config) as jc:
        node = {a.attempt_id: a.taskserver for a in jc.get_status(job_id).attempts}
    head = f"==> {job_id}_map_00000_0 (succeeded on {node[f'{job_id}_map_00000_0']})"
    assert lines[lines.index(f"{head} stdout <==") + 1] == "hello from the mapper"
    assert "a word to stderr" in lines[lines.index(f"{head} stderr <=="):]
    reduce = f"{job_id}_reduce_00000_0"
    assert f"==> {reduce} (succeeded on {node[reduce]}) stderr <==" in lines

    one = jetshell(live, "logs", job_id, "map_00000").stdout
    assert "hello from the mapper" in one and "_reduce_" not in one
    assert jetshell(live, "logs", job_id, f"{job_id}_reduce_00000_0").stdout.startswith(
        f"==> {job_id}_reduce_00000_0 ")

    missing = jetshell(live, "logs", job_id, "map_00042")
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr == f"jetshell: error: job {job_id} has no task or attempt " \
                             f"map_00042\n"


def test_kill_of_a_finished_job_leaves_it(live):
    done = [j["job_id"] for j in json.loads(jetshell(live, "list", "--all", "--json").stdout)
            if j["state"] == "succeeded"]
    if done:
        job_id = done[0]
    else:  # run alone
        job_id = jetshell(live, "submit", WORDCOUNT, "WordCount", "/live/in.txt",
                          "/live/out5").stdout.strip()
        assert jetshell(live, "wait", job_id).returncode == 0
    killed = jetshell(live, "kill", job_id)
    assert (killed.returncode, killed.stdout) == (0, f"job {job_id} already succeeded\n")
    assert json.loads(jetshell(live, "status", "--json", job_id).stdout)["state"] == "succeeded"


def test_nodes(live):
    hosts = taskserver_hosts(live)
    nodes = json.loads(jetshell(live, "nodes", "--json").stdout)
    assert sorted((n["host"], n["alive"]) for n in nodes) == [(h, True) for h in hosts]
    assert all(n["slots"] == 2 for n in nodes)
    table = jetshell(live, "nodes").stdout.splitlines()
    assert table[0].split()[:4] == ["taskserver", "host", "rack", "slots"]
    assert len(table) == 1 + len(hosts)
    failures = {n["name"]: n["failures"] for n in nodes}   # jobs of other tests may fail
    for line in table[1:]:
        row = line.split()
        assert row[1] in hosts and row[2:4] == ["/default-rack", "2"] and row[-1] == "alive"
        assert row[-4] == str(failures[row[0]])
        assert row[-2] == "no"   # a LocalCluster runs tasks as its user: isolate_tasks off
    assert table[0].split()[4:] == ["running", "last", "heartbeat", "failures", "blacklists",
                                    "isolated", "state"]


@pytest.mark.parametrize("command", ["status", "wait", "kill", "logs"])
def test_unknown_job_is_one_line(live, command):
    result = jetshell(live, command, UNKNOWN)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == f"jetshell: error: no job {UNKNOWN}\n"


@pytest.mark.parametrize("args, expected", [
    (["status", "not-a-job"], "'not-a-job' is not a job id"),
    (["list", "--json", "extra"], "unexpected extra argument"),
    (["nodes", "--bogus"], "No such option '--bogus'"),
])
def test_bad_arguments_are_one_line(live, args, expected):
    result = jetshell(live, *args)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("jetshell: error: ") and result.stderr.count("\n") == 1
    assert expected in result.stderr


def test_jetclient_api(live):
    with JetClient(live.config) as jc:
        with pytest.raises(NotFound):
            jc.get_status(UNKNOWN)
        job_id = jc.submit(WORDCOUNT, "WordCount", ["/live/in.txt", "/live/out2"])
        seen = []
        final = jc.wait_for_completion(job_id, progress_callback=seen.append, poll=0.1,
                                       timeout=60)
        assert final.state == "succeeded" and seen[-1] == final, (final.error, final.traceback)
        assert job_id in [j.job_id for j in jc.list_jobs(all=True)]
        assert sorted(t.host for t in jc.list_taskservers()) == taskserver_hosts(live)
        with jc.dfs.open("/live/out2/part-00000") as f:
            counts = dict(line.split("\t") for line in f.read().decode().splitlines())
        assert counts["be"] == "400" and counts["question"] == "200"


def test_a_job_whose_submission_fails_is_killed_and_its_files_removed(live):
    with JetClient(live.config) as jc:
        job_id, job_dir = jc.create_job("Abandoned")
        with jc.dfs.create(f"{job_dir}/job.json") as f:
            f.write(b"{")  # as if the upload broke off
        jc._abandon(job_id, job_dir, OSError("upload failed"))
        assert jc.get_status(job_id).state == "killed"
        assert not jc.dfs.exists(job_dir)
