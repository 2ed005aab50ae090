"""Jobs on a cluster with an auth token reach the DFS with their job's credential: WordCount
through the real jetshell succeeds while its tasks read their input and write their output
with the job's DFS credential (the nameserver says so), which is removed at the job's end."""
from __future__ import annotations

from polling import wait_for
from test_jobs_e2e import (WORDCOUNT, block_size, expected_counts, jetshell, job_id_of,
                           make_text, put_bytes, read_counts)


def test_wordcount_tasks_use_their_jobs_dfs_credential(fresh_job_cluster):
    lc = fresh_job_cluster(security={"auth_token": "cluster-s3cret"})
    text = make_text(seed=7, size=3 * block_size(lc) - 100)
    with lc.client() as dfs:
        put_bytes(dfs, "/cred/in/text.txt", text)
        result = jetshell(lc, "run", WORDCOUNT, "WordCount", "/cred/in", "/cred/out",
                          "--reducers", "2")
        assert result.returncode == 0, result.stdout + result.stderr
        job_id = job_id_of(result)
        assert read_counts(dfs, "/cred/out") == expected_counts(text)

    log = (lc.dir / "logs" / "nameserver.log").read_text()
    assert f"job {job_id}: DFS credential added (user " in log
    assert "read /cred/in,/minijet/jobs/" + job_id + ", write /cred/out" in log
    # the guard is asked only for calls without the cluster token: the tasks' calls
    assert f"job {job_id}: first call with its DFS credential" in log
    assert "refused" not in log
    wait_for(lambda: f"job {job_id}: DFS credential removed" in
             (lc.dir / "logs" / "nameserver.log").read_text(), 10,
             "the jobserver to remove the job's credential")

