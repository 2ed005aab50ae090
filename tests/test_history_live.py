"""Bounded history on a live cluster: a job retired from the jobserver's memory reads the same
in `jetshell status` and list, WaitJob and its web page, also after a jobserver restart; once
history_retention has passed its rows, its DFS job dir and its attempt logs are gone."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from minijet.client import JetClient
from minijet.errors import NotFound
from polling import wait_for

WORDCOUNT = str(Path(__file__).parents[1] / "examples" / "wordcount" / "wordcount.py")
RETENTION = 25.0   # seconds: long enough for the checks and a restart before it expires


def jetshell(lc, *args: str) -> str:
    env = dict(os.environ, MINIJET_CONF=str(lc.config_path))
    done = subprocess.run([sys.executable, "-m", "minijet.client.jetshell", *args], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def jobs_in_memory(lc) -> int:
    """The jobserver's own count (its /metrics gauges of the unfinished jobs and of the
    finished ones it holds)."""
    url = f"http://{lc.config['jobserver']['http_address']}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(("minijet_jobserver_jobs{",
                                       "minijet_jobserver_retained_jobs "))))


def page(lc, path: str) -> str:
    url = f"http://{lc.config['jobserver']['http_address']}{path}"
    return urllib.request.urlopen(url, timeout=10).read().decode()


def logs_of(lc, job_id: str) -> list[Path]:
    return list(lc.dir.glob(f"task*/logs/{job_id}"))


def test_a_retired_job_reads_as_before_until_its_history_expires(fresh_job_cluster):
    lc = fresh_job_cluster(
        dataservers=1, taskservers=1,
        jobserver={"retire_after": "1h", "retained_jobs": 1,
                   "history_retention": f"{RETENTION}s"},
        taskserver={"log_retention": "1h"})   # only the expiry can remove the logs
    with lc.client() as dfs:
        with dfs.create("/h/in.txt") as f:
            f.write(b"to be or not to be\n" * 50)
    with JetClient(lc.config) as jc:
        first = jc.submit(WORDCOUNT, "WordCount", ["/h/in.txt", "/h/out1", "--reducers", "0"])
        assert jc.wait_for_completion(first).state == "succeeded"
        status_before = jetshell(lc, "status", first)
        json_before = json.loads(jetshell(lc, "status", "--json", first))
        listed_before = [j for j in json.loads(jetshell(lc, "list", "--json"))
                         if j["job_id"] == first]
        assert logs_of(lc, first)
        wait_for(lambda: jobs_in_memory(lc) == 1, 30, "the jobserver holds the job")

        # the next job's end retires the first (retained_jobs: 1)
        second = jc.submit(WORDCOUNT, "WordCount", ["/h/in.txt", "/h/out2", "--reducers", "0"])
        assert jc.wait_for_completion(second).state == "succeeded"
        wait_for(lambda: jobs_in_memory(lc) == 1, 30, "the first job retired")

        def reads_as_before():
            assert jetshell(lc, "status", first) == status_before
            assert json.loads(jetshell(lc, "status", "--json", first)) == json_before
            assert [j for j in json.loads(jetshell(lc, "list", "--json"))
                    if j["job_id"] == first] == listed_before
            assert jc.wait_for_completion(first).state == "succeeded"   # WaitJob
            assert first in page(lc, f"/job?id={first}") and first in page(lc, "/?all=1")

        reads_as_before()
        lc.kill("jobserver")
        lc.restart()
        wait_for(lambda: jobs_in_memory(lc) == 1, 30, "the restarted jobserver holds one job",
                 ignoring=OSError)
        reads_as_before()   # from the store: the restart did not bring it back

        # history_retention after its end: rows, logs and job dir are gone
        wait_for(lambda: not logs_of(lc, first), RETENTION + 30,
                 "the first job's logs dropped")
        wait_for(lambda: first not in {j.job_id for j in jc.list_jobs(all=True)}, 30,
                 "the first job's rows deleted")
        with pytest.raises(NotFound):
            jc.get_status(first)
        with lc.client() as dfs:
            assert not dfs.exists(f"{lc.config['jobserver']['job_dir']}/{first}")
            assert dfs.exists("/h/out1/_SUCCESS")   # its output is the user's: kept
