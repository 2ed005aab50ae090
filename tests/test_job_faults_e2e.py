"""Faults of jobs with real processes: a failed job leaves nothing behind and its command
runs again; system errors do not use up a task's attempts; limits on user code (memory,
logs). Each test has a cluster of its own, with the timings it needs (conftest.py)."""
from __future__ import annotations

from pathlib import Path

import psutil

from minijet.client import JetClient

from polling import wait_for
from test_jobs_e2e import TESTJOBS, block_size, expected_counts, jetshell, job_id_of, \
    make_text, put_bytes, read_counts, status
from test_jobs_e2e import taskhosts as taskhosts_of

SLOWSTART = str(Path(__file__).parent / "jobs" / "slowstart.py")


def taskhosts(lc, count: int) -> list[psutil.Process]:
    """The TaskHost processes (and their children) of the cluster's taskservers."""
    return [c for i in range(1, count + 1)
            for c in taskhosts_of(psutil.Process(lc.pid("taskserver", i)))]


def test_a_failed_job_leaves_no_output_and_no_job_files_and_runs_again(fresh_job_cluster):
    """Attempts still starting when a sibling fails the job (slow start-up, kill orders a
    heartbeat away) must not recreate <out>/_temporary/... once the output is removed."""
    lc = fresh_job_cluster(jobserver={"max_task_attempts": 1},
                           taskserver={"heartbeat_interval": "2s"})
    dfs = lc.client()
    block = block_size(lc)
    blocks = [make_text(seed=40 + i, size=block - 200) for i in range(24)]
    blocks[9] = b"poison " + blocks[9]
    put_bytes(dfs, "/again/in.txt", b"".join(blocks))
    command = ("run", SLOWSTART, "PoisonLater", "/again/in.txt", "/again/out")
    for run in range(2):   # the same command runs (and fails the same way) again
        result = jetshell(lc, *command)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "ValueError: poison record" in result.stderr
        job_id = job_id_of(result)
        wait_for(lambda: not taskhosts(lc, 3), timeout=30, what="every TaskHost to exit")
        assert not dfs.exists("/again/out"), dfs.list("/again/out")
        wait_for(lambda job_id=job_id: not any((lc.dir / f"task{i}" / "jobs" / job_id).exists()
                                               for i in (1, 2, 3)),
                 timeout=10, what="the job's files to be removed from every taskserver")
    dfs.close()


def test_system_errors_limits_and_logs(fresh_job_cluster, tmp_path):
    """One cluster, max_task_attempts 1: a task meeting the nameserver down three times
    (system errors) still succeeds; a task allocating without bound is killed at
    task_memory as a user error while the taskservers and a chatty job beside it go on; the
    chatty job's log keeps its head and tail within log_limit."""
    lc = fresh_job_cluster(dataservers=2, taskservers=2,
                           jobserver={"max_task_attempts": 1, "retry_backoff": "0.2s"},
                           taskserver={"task_memory": "256MiB", "log_limit": "64KiB"})
    dfs = lc.client()
    text = make_text(seed=50, size=block_size(lc) // 2)
    put_bytes(dfs, "/faults/in.txt", text)
    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()

    result = jetshell(lc, "run", TESTJOBS, "ClusterDownWordCount", "/faults/in.txt",
                      "/faults/down", "--marker-dir", str(marker_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    assert read_counts(dfs, "/faults/down") == expected_counts(text)
    job_id = job_id_of(result)
    st = status(lc, job_id)
    assert [a.failure for a in st.attempts if a.state == "failed"] == ["system"] * 3
    shown = jetshell(lc, "status", job_id).stdout
    assert "attempts failed by user errors 0, by system errors 3" in shown
    assert "failed (system error)  Unavailable: cannot reach the nameserver" in shown

    taskservers = [lc.pid("taskserver", i) for i in (1, 2)]
    with JetClient(lc.config) as jc:
        hog = jc.submit(TESTJOBS, "MemoryHog", ["/faults/in.txt", "/faults/hog"])
        chatty = jc.submit(TESTJOBS, "Chatty", ["/faults/in.txt", "/faults/chatty"])
        assert jc.wait_for_completion(hog, timeout=60).state == "failed"
        assert jc.wait_for_completion(chatty, timeout=60).state == "succeeded"
    shown = jetshell(lc, "status", hog)
    assert "exceeded the memory limit of 256.0 MiB (peak " in shown.stdout
    assert "failed (user error)" in shown.stdout
    assert [lc.pid("taskserver", i) for i in (1, 2)] == taskservers
    assert all(psutil.pid_exists(p) for p in taskservers)

    logs = jetshell(lc, "logs", chatty, "map")
    assert logs.returncode == 0, logs.stderr
    assert "chatty line 0\n" in logs.stdout and "chatty line 99999\n" in logs.stdout
    assert "cut here: taskserver.log_limit" in logs.stdout
    stdouts = [p for i in (1, 2) for p in (lc.dir / f"task{i}" / "logs" / chatty).rglob("stdout")]
    assert stdouts and all(p.stat().st_size <= 64 * 1024 for p in stdouts)
    dfs.close()
