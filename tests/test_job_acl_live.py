"""Job ownership on the session's job cluster (conftest.py), through the real `jetshell` of
each user ($USER, as Hadoop's simple auth takes it): a job belongs to the user who submitted
it; only that user and the admins (security.admins) may kill it or read its logs; everyone
sees its status."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from minijet.cluster import LocalCluster

from polling import wait_for

TESTJOBS = str(Path(__file__).parent / "jobs" / "testjobs.py")


def jetshell(lc: LocalCluster, user: str, *args: str) -> subprocess.CompletedProcess:
    """`jetshell ARGS` run by `user` (getpass reads LOGNAME before USER: both are set)."""
    env = dict(os.environ, MINIJET_CONF=str(lc.config_path), USER=user, LOGNAME=user)
    return subprocess.run([sys.executable, "-m", "minijet.client.jetshell", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def state(lc: LocalCluster, job_id: str) -> str:
    return json.loads(jetshell(lc, "bob", "status", "--json", job_id).stdout)["state"]


def submit_running(lc: LocalCluster, user: str, output: str) -> str:
    """A job of `user` whose one map sleeps for 10 minutes, once the owner's `jetshell logs`
    shows that map running."""
    submitted = jetshell(lc, user, "submit", TESTJOBS, "SlowWordCount", "/acl/in.txt", output,
                         "--delay", "600")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    running = f"==> {job_id}_map_00000_0 (running on "
    wait_for(lambda: running in jetshell(lc, user, "logs", job_id).stdout, timeout=60,
             what=f"the logs of job {job_id}'s running map")
    return job_id


def test_only_the_owner_and_the_admins_may_kill_a_job_or_read_its_logs(job_cluster):
    (admin,) = job_cluster.config["security"]["admins"]
    with job_cluster.client() as dfs:
        with dfs.create("/acl/in.txt") as f:
            f.write(b"one fish two fish\n" * 10)
    job_id = submit_running(job_cluster, "alice", "/acl/out1")
    listed = json.loads(jetshell(job_cluster, "bob", "list", "--json").stdout)
    assert {"job_id": job_id, "user": "alice"}.items() <= \
        next(j for j in listed if j["job_id"] == job_id).items()   # seen by all

    for command, action in (("kill", "kill"), ("logs", "read the logs of")):
        refused = jetshell(job_cluster, "bob", command, job_id)
        assert (refused.returncode, refused.stdout) == (1, "")
        assert refused.stderr == (f"jetshell: error: permission denied: bob may not {action} "
                                  f"job {job_id} (owned by alice)\n")
    assert state(job_cluster, job_id) == "running"
    jobserver_log = Path(job_cluster.dir, "logs", "jobserver.log").read_text()
    assert f"job {job_id}: kill refused: permission denied: bob may not" in jobserver_log

    admin_logs = jetshell(job_cluster, admin, "logs", job_id)
    assert admin_logs.returncode == 0, admin_logs.stderr
    killed = jetshell(job_cluster, admin, "kill", job_id)
    assert killed.returncode == 0, killed.stderr
    assert jetshell(job_cluster, "alice", "wait", job_id).returncode == 3   # killed

    own = submit_running(job_cluster, "alice", "/acl/out2")
    killed = jetshell(job_cluster, "alice", "kill", own)
    assert (killed.returncode, killed.stdout) == (0, f"killing job {own}\n"), killed.stderr
    assert jetshell(job_cluster, "alice", "wait", own).returncode == 3
