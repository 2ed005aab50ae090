"""JetClient and the jetshell commands against a live local cluster (one of each daemon):
submit/wait/status/list/nodes in both output forms, and errors for unknown job ids.
WordCount results, failures and kills are covered by test_jobs_e2e.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minijet.client import JetClient
from minijet.cluster import LocalCluster
from minijet.errors import NotFound

WORDCOUNT = str(Path(__file__).parents[1] / "examples" / "wordcount" / "wordcount.py")
CONFIG = {
    "dfs": {"block_size": "256KiB"},
    "dataserver": {"heartbeat_interval": "0.5s"},
    "taskserver": {"heartbeat_interval": "0.3s", "slots": 2},
    "rpc": {"timeout": "10s"},
}
UNKNOWN = "job_20000101000000_0042"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    lc = LocalCluster(tmp_path_factory.mktemp("jetshell-live"), config=CONFIG)
    try:
        lc.up(dataservers=1, taskservers=1)
        with lc.client() as dfs:
            with dfs.create("/live/in.txt") as f:
                f.write(b"to be or not to be\nthat is the question\n" * 200)
        yield lc
    finally:
        lc.down()


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
    assert row.split()[-2:] == ["3/3", "succeeded"]


def test_nodes(live):
    nodes = json.loads(jetshell(live, "nodes", "--json").stdout)
    assert [(n["host"], n["alive"]) for n in nodes] == [("host1", True)]
    assert nodes[0]["slots"] == 2
    table = jetshell(live, "nodes").stdout.splitlines()
    assert table[0].split()[:4] == ["taskserver", "host", "rack", "slots"]
    row = table[1].split()
    assert row[1:4] == ["host1", "/default-rack", "2"] and row[-1] == "alive"


@pytest.mark.parametrize("command", ["status", "wait", "kill"])
def test_unknown_job_is_one_line(live, command):
    result = jetshell(live, command, UNKNOWN)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("jetshell: error: ") and result.stderr.count("\n") == 1
    assert UNKNOWN in result.stderr


def test_jetclient_api(live):
    with JetClient(live.config) as jc:
        with pytest.raises(NotFound):
            jc.get_status(UNKNOWN)
        job_id = jc.submit(WORDCOUNT, "WordCount", ["/live/in.txt", "/live/out2"])
        seen = []
        final = jc.wait_for_completion(job_id, progress_callback=seen.append, poll=0.1,
                                       timeout=60)
        assert final.state == "succeeded" and seen[-1] == final
        assert job_id in [j.job_id for j in jc.list_jobs(all=True)]
        assert [t.host for t in jc.list_taskservers()] == ["host1"]
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
