"""Tasks run as their jobs' users (issue 10), on a real local cluster whose taskserver runs
as root with taskserver.isolate_tasks: two throwaway accounts, alice and bob; bob's job
tries to list and read alice's files on the node (her map output, her job code, her
attempt's config and credentials, her logs, the cluster's config and blocks) while her job holds them, and
is refused every one; each ran as its own uid; a job whose user has no account here runs as
taskserver.task_user (nobody). Without isolation (a LocalCluster's default), a job's status
says so."""
from __future__ import annotations

import os
import posixpath
import pwd
import secrets
import shutil
import site
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from minijet.cluster import LocalCluster
from minijet.taskserver import reach, taskuser

from conftest import JOB_CONFIG, _own_clusters, passable_dir
from polling import wait_for

USERJOBS = str(Path(__file__).parent / "jobs" / "userjobs.py")
MARKER = "marker.txt"   # userjobs.MARKER
CLUSTER_TOKEN = "the cluster's own token"


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root: only a taskserver running as root runs tasks as other users"
    if not (shutil.which("useradd") and shutil.which("userdel")):
        return "needs useradd and userdel to make throwaway accounts"
    return None


needs_accounts = pytest.mark.skipif(_unavailable() is not None, reason=_unavailable() or "")


def jetshell(lc: LocalCluster, user: str, *args: str) -> subprocess.CompletedProcess:
    """The real jetshell, as `user` says it is (the job's user comes from the client)."""
    env = dict(os.environ, MINIJET_CONF=str(lc.config_path), USER=user, LOGNAME=user)
    return subprocess.run([sys.executable, "-c", "from minijet.client.jetshell import main; "
                           "main()", *args], env=env, capture_output=True, text=True,
                          timeout=180)


def read_output(dfs, output: str) -> dict[str, str]:
    lines = {}
    for st in dfs.list(output):
        if posixpath.basename(st.path).startswith("part-"):
            with dfs.open(st.path) as f:
                for line in f.read().decode().splitlines():
                    key, value = line.split("\t", 1)
                    lines[key] = value
    return lines


@pytest.fixture(scope="module")
def accounts():
    """Two throwaway system accounts without homes: (alice, bob) as pwd entries."""
    tag = secrets.token_hex(3)
    made = []
    try:
        for name in (f"mj-alice-{tag}", f"mj-bob-{tag}"):
            subprocess.run(["useradd", "-M", "-r", "-s", "/usr/sbin/nologin", name],
                           check=True, capture_output=True)
            made.append(name)
        yield [pwd.getpwnam(name) for name in made]
    finally:
        for name in made:
            subprocess.run(["userdel", name], capture_output=True)


@pytest.fixture(scope="module")
def open_root():
    """A directory anyone may pass through but not list (pytest's own are root's 0700)."""
    with passable_dir("minijet-users-") as root:
        yield root


@pytest.fixture(scope="module")
def task_python(open_root) -> str:
    """An interpreter the task accounts can run, with this one's packages: this one, or,
    when it is out of their reach (a Python under root's 0700 home, as pyenv installs it),
    a venv under `open_root` of the system's Python of the same version loading this one's
    site-packages."""
    nobody = taskuser.choose("", "nobody", True)
    problems = [reach.blocked(p, nobody) for p in reach.taskhost_paths()]
    if not any(problems):
        return sys.executable
    system = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    ours = [p for p in site.getsitepackages() if os.path.isdir(p)]
    unreachable = [reach.blocked(Path(p), nobody) for p in ours] + (
        [] if os.path.exists(system) else [f"no {system}"])
    if any(unreachable):   # the checkout or its venv is in a private directory
        pytest.skip(f"no Python the task accounts can run here: {next(filter(None, problems))}"
                    f"; {next(filter(None, unreachable))}")
    venv = open_root / "venv"
    subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site_dir,) = venv.glob("lib/python*/site-packages")
    (site_dir / "minijet-tests.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({p!r})" for p in ours) + "\n")
    return str(venv / "bin" / "python")


@pytest.fixture(scope="module", params=[True, False], ids=["forked", "fresh-interpreter"])
def isolated_cluster(request, accounts, open_root, task_python):
    """One node (a dataserver and a taskserver running as root and isolating tasks) and a
    jobserver, under `open_root`; TaskHosts forked by the fork server, or fresh
    interpreters."""
    root = open_root / f"fork-server-{request.param}"
    root.mkdir(mode=0o711)
    make = _own_clusters(root, JOB_CONFIG, dataservers=1, taskservers=1, python=task_python)
    try:
        yield next(make)(taskserver={"isolate_tasks": True, "fork_server": request.param},
                         security={"auth_token": CLUSTER_TOKEN})
    finally:
        make.close()


@needs_accounts
def test_a_job_cannot_reach_another_jobs_files_and_each_runs_as_its_user(
        accounts, isolated_cluster):
    alice, bob = accounts
    lc = isolated_cluster
    dfs = lc.client()
    with dfs.create("/users/in/lines.txt") as f:
        f.write(b"one line\nand another\n")
    release = lc.dir / "release"
    submitted = jetshell(lc, alice.pw_name, "submit", USERJOBS, "HoldingWhoAmI", "--release",
                         str(release), "/users/in", "/users/alice-out")
    assert submitted.returncode == 0, submitted.stderr
    alice_job = submitted.stdout.split()[-1]
    task_dir = lc.dir / "task1"
    job_dir = task_dir / "jobs" / alice_job
    # her map output is written; her reducer now holds her job (and files) until released
    attempt_dir = wait_for(lambda: next(job_dir.glob("*map*/file.out.index"), None), 60,
                           "alice's map output").parent
    st = os.stat(job_dir)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (alice.pw_uid, alice.pw_gid,
                                                                0o700)
    assert os.stat(attempt_dir / "file.out").st_uid == alice.pw_uid
    assert stat.S_IMODE(os.stat(attempt_dir / "config.json").st_mode) == 0o600
    targets = [task_dir / "jobs", job_dir, attempt_dir / "file.out",
               attempt_dir / "file.out.index", attempt_dir / MARKER,
               attempt_dir / "config.json", attempt_dir / "credentials.json",
               job_dir / "_cache" / "userjobs.py",
               task_dir / "logs" / alice_job, lc.config_path, lc.dir / "data1",
               lc.dir / "logs"]
    assert all(t.exists() for t in targets)

    probe = jetshell(lc, bob.pw_name, "run", USERJOBS, "Probe", "--targets",
                     ",".join([*map(str, targets), "config.json"]), "/users/in",
                     "/users/bob-out")
    assert probe.returncode == 0, probe.stdout + probe.stderr
    seen = read_output(dfs, "/users/bob-out")
    assert {str(t): seen[str(t)] for t in targets} == {str(t): "PermissionError"
                                                       for t in targets}
    assert seen["config.json"].startswith("read ")   # his own attempt's...
    assert seen["config token"] == ""   # ...which holds no cluster token
    assert CLUSTER_TOKEN not in "".join(seen.values())
    assert (seen["uid"], seen["home"]) == (str(bob.pw_uid), bob.pw_dir)
    assert seen["tmpdir"].startswith(str(task_dir / "jobs"))   # private, and writable

    release.touch()
    done = jetshell(lc, alice.pw_name, "wait", alice_job)
    assert done.returncode == 0, done.stdout + done.stderr
    assert read_output(dfs, "/users/alice-out") == {"uid": str(alice.pw_uid)}
    # cleaned up although another account's; the logs stay for `jetshell logs`
    wait_for(lambda: not job_dir.exists(), 30, "alice's job files to be deleted")
    logs = jetshell(lc, alice.pw_name, "logs", alice_job)
    assert logs.returncode == 0 and "taskhost" in logs.stdout + logs.stderr
    status = jetshell(lc, alice.pw_name, "status", alice_job)
    assert "note:" not in status.stdout


@needs_accounts
def test_a_job_whose_user_has_no_account_runs_as_the_task_user(isolated_cluster):
    ghost = f"mj-ghost-{secrets.token_hex(3)}"
    with pytest.raises(KeyError):
        pwd.getpwnam(ghost)
    dfs = isolated_cluster.client()
    with dfs.create("/ghost/in/lines.txt") as f:
        f.write(b"a line\n")
    run = jetshell(isolated_cluster, ghost, "run", USERJOBS, "WhoAmI", "/ghost/in",
                   "/ghost/out")
    assert run.returncode == 0, run.stdout + run.stderr
    assert read_output(dfs, "/ghost/out") == {"uid": str(pwd.getpwnam("nobody").pw_uid)}
    nodes = jetshell(isolated_cluster, ghost, "nodes").stdout.splitlines()
    assert nodes[0].split()[-2:] == ["isolated", "state"] and nodes[1].split()[-2:] == [
        "yes", "alive"]


def test_a_job_run_without_isolation_says_so(job_cluster):
    """A LocalCluster runs tasks as its own user (taskserver.isolate_tasks off), as a
    taskserver not running as root does: every taskserver that ran the job is named."""
    dfs = job_cluster.client()
    with dfs.create("/unisolated/in/lines.txt") as f:
        f.write(b"a line\n")
    run = jetshell(job_cluster, "carol", "run", USERJOBS, "WhoAmI", "/unisolated/in",
                   "/unisolated/out")
    assert run.returncode == 0, run.stdout + run.stderr
    assert read_output(dfs, "/unisolated/out") == {"uid": str(os.getuid())}
    job_id = run.stdout.splitlines()[0].split()[-1]
    status = jetshell(job_cluster, "carol", "status", job_id).stdout.splitlines()
    note = "note: attempts of this job ran without isolation from other jobs on taskservers "
    assert status[-1].startswith(note) and status[-1].endswith(
        " (not running as root, or with taskserver.isolate_tasks off)")
    named = status[-1][len(note):].split(" (")[0].split(", ")
    ran = [line.split()[2] for line in status if line.startswith(f"{job_id}_")]
    assert named == sorted(set(ran)) and named


@needs_accounts
def test_a_task_account_that_cannot_reach_the_taskservers_dir_fails_with_one_clear_error(
        task_python):
    private = Path(tempfile.mkdtemp(prefix="minijet-private-"))   # 0700: root's only
    make = _own_clusters(private, JOB_CONFIG, dataservers=1, taskservers=1, python=task_python)
    try:
        lc = next(make)(taskserver={"isolate_tasks": True},
                        jobserver={"system_retries": 1, "retry_backoff": "0.1s"})
        dfs = lc.client()
        with dfs.create("/in/lines.txt") as f:
            f.write(b"a line\n")
        run = jetshell(lc, "nobody", "run", USERJOBS, "WhoAmI", "/in", "/out")
        assert run.returncode != 0
        status = jetshell(lc, "nobody", "status", run.stdout.splitlines()[0].split()[-1])
        assert (f"cannot run tasks as nobody: {private} (mode 0700, owner uid 0) is not "
                f"searchable by nobody, on the way to {lc.dir / 'task1' / 'jobs'}") \
            in status.stdout
    finally:
        make.close()
        shutil.rmtree(private)
