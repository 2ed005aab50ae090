"""The TaskHost fork server (minijet.taskhost.forkserver) through the taskserver's side of it
(launcher.ForkServer): a child per request, in its own session and working directory, its
output in the attempt's log files, its exit told back, killable with its tree; a dead fork
server is replaced; and `taskserver.fork_server: false` starts fresh interpreters."""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import psutil
import pytest

from minijet.client import JetClient
from minijet.taskserver import launcher, taskuser
from minijet.taskserver.layout import private_dir

from polling import wait_for
from test_jobserver_wake import WORDCOUNT


@pytest.fixture
def forks():
    server = launcher.ForkServer()
    try:
        yield server
    finally:
        server.close()


def blocked_taskhost(forks, tmp_path, name="a"):
    """A forked TaskHost that blocks opening its --config (a FIFO nobody writes)."""
    work = tmp_path / name
    work.mkdir()
    os.mkfifo(work / "config.fifo")
    child = forks.start(["--taskserver", "localhost:1", "--attempt", f"attempt_{name}",
                         "--job-cache", str(work), "--work-dir", str(work),
                         "--config", str(work / "config.fifo")],
                        work, work / "stdout", work / "stderr")
    proc = psutil.Process(child.pid)
    wait_for(lambda: proc.status() == psutil.STATUS_SLEEPING and proc.cwd() == str(work),
             10, "the TaskHost to block on its config")
    return child, proc, work


def test_a_forked_taskhost_runs_the_taskhost_main_and_its_exit_code_comes_back(forks,
                                                                              tmp_path):
    child = forks.start(["--no-such-option"], tmp_path, tmp_path / "out", tmp_path / "err")
    assert child.wait() == 2                      # argparse's exit code, from the child
    assert "usage: python -m minijet.taskhost" in (tmp_path / "err").read_text()


def test_a_forked_taskhost_is_alone_in_its_session_titled_and_holds_no_parent_fds(forks,
                                                                                tmp_path):
    child, proc, work = blocked_taskhost(forks, tmp_path)
    assert os.getsid(child.pid) == child.pid
    assert proc.ppid() != os.getpid()             # the fork server's child, not ours
    assert "attempt_a" in " ".join(proc.cmdline()).split()
    assert sorted(int(fd) for fd in os.listdir(f"/proc/{child.pid}/fd")) <= [0, 1, 2, 3]
    assert child.poll() is None
    launcher.kill_tree(child.pid)
    assert child.wait() == -signal.SIGKILL


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: only root runs a TaskHost as "
                                             "another user")
def test_a_forked_taskhost_becomes_the_tasks_account_after_opening_its_logs(forks, tmp_path):
    nobody = taskuser.choose("", "nobody", True)
    open_dir = Path(tempfile.mkdtemp(prefix="minijet-fork-"))   # nobody passes through
    try:
        open_dir.chmod(0o711)
        work = private_dir(open_dir / "work", nobody)
        os.mkfifo(work / "config.fifo")
        os.chown(work / "config.fifo", nobody.uid, nobody.gid)
        env = {"PATH": os.environ["PATH"], "TMPDIR": str(work), **nobody.env()}
        # the logs in tmp_path: root's only, opened before the switch
        child = forks.start(["--taskserver", "localhost:1", "--attempt", "attempt_u",
                             "--job-cache", str(work), "--work-dir", str(work),
                             "--config", str(work / "config.fifo")],
                            work, tmp_path / "stdout", tmp_path / "stderr", env, nobody)
        proc = psutil.Process(child.pid)
        wait_for(lambda: proc.status() == psutil.STATUS_SLEEPING and proc.cwd() == str(work),
                 10, lambda: f"the TaskHost to block on its config ({child.poll()=}, "
                             f"stderr: {(tmp_path / 'stderr').read_text()})")
        assert set(proc.uids()) == {nobody.uid} and set(proc.gids()) == {nobody.gid}
        groups = next(line for line in Path(f"/proc/{child.pid}/status").read_text()
                      .splitlines() if line.startswith("Groups:"))
        assert sorted(map(int, groups.split()[1:])) == sorted(nobody.groups)   # not root's
        assert "attempt_u" in " ".join(proc.cmdline()).split()
        launcher.kill_tree(child.pid)   # root kills another account's process tree
        assert child.wait() == -signal.SIGKILL
    finally:
        shutil.rmtree(open_dir)


def test_a_dead_fork_server_is_replaced_and_its_orphans_are_still_waited_for(forks,
                                                                           tmp_path):
    child, proc, _ = blocked_taskhost(forks, tmp_path, "a")
    server = psutil.Process(proc.ppid())
    server.kill()
    server.wait(10)
    assert child.poll() is None                   # still running, now an orphan
    proc.kill()
    wait_for(lambda: child.poll() is not None, 10, "the orphan's end to be noticed")
    second, proc2, _ = blocked_taskhost(forks, tmp_path, "b")
    assert proc2.ppid() != server.pid             # a new fork server
    launcher.kill_tree(second.pid)
    assert second.wait() == -signal.SIGKILL


def test_without_the_fork_server_tasks_run_in_fresh_interpreters(fresh_job_cluster):
    lc = fresh_job_cluster(dataservers=1, taskservers=1, taskserver={"fork_server": False})
    with JetClient(lc.config) as jc:
        with jc.dfs.create("/nofork/in.txt") as f:
            f.write(b"a b a\n" * 10)
        job = jc.submit(WORDCOUNT, "WordCount", ["/nofork/in.txt", "/nofork/out"])
        assert jc.wait_for_completion(job, timeout=60).state == "succeeded"
    taskserver = psutil.Process(lc.pid("taskserver", 1))
    assert not any("forkserver" in " ".join(p.cmdline()) for p in taskserver.children())
