"""Which account a task runs as (minijet.taskserver.taskuser), whether that account can
reach what a TaskHost loads (minijet.taskserver.reach), and what the taskserver does with
files in a job's directory, which the job's code may have replaced (layout.open_owned)."""
import os
import pwd
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from minijet.errors import FailedPrecondition
from minijet.taskserver import reach
from minijet.taskserver.layout import open_owned
from minijet.taskserver.taskuser import TaskUser, choose, isolates

from conftest import passable_dir

ACCOUNTS = {name: SimpleNamespace(pw_name=name, pw_uid=uid, pw_gid=uid + 100,
                                  pw_dir=f"/home/{name}")
            for name, uid in (("alice", 1001), ("nobody", 65534), ("root", 0))}


def lookup(name):
    return ACCOUNTS[name]   # KeyError: no such account, as pwd.getpwnam


def groups(name, gid):
    return [gid, 27] if name == "alice" else [gid]


def test_only_root_with_isolate_tasks_switches_users():
    assert isolates(0, True)
    assert not isolates(1000, True) and not isolates(0, False)
    assert choose("alice", "nobody", False, lookup, groups) is None


def test_the_jobs_user_when_it_has_an_account_else_the_task_user():
    assert choose("alice", "nobody", True, lookup, groups) == TaskUser(
        "alice", 1001, 1101, (1101, 27), "/home/alice")
    assert choose("bob", "nobody", True, lookup, groups).uid == 65534
    assert choose("", "nobody", True, lookup, groups).name == "nobody"
    assert choose("root", "nobody", True, lookup, groups).name == "nobody"   # never root
    assert TaskUser("alice", 1001, 1101, (), "/home/alice").env() == {
        "HOME": "/home/alice", "USER": "alice", "LOGNAME": "alice"}


@pytest.mark.parametrize("task_user", ["nosuch", "root"])
def test_an_unusable_task_user_is_one_clear_error(task_user):
    with pytest.raises(FailedPrecondition, match=f"taskserver.task_user '{task_user}' has no "
                                                 "account on this node, or is root"):
        choose("bob", task_user, True, lookup, groups)


def test_the_real_account_database():
    nobody = pwd.getpwnam("nobody")
    user = choose("no-such-user-here", "nobody", True)
    assert (user.name, user.uid, user.gid) == ("nobody", nobody.pw_uid, nobody.pw_gid)
    assert nobody.pw_gid in user.groups


@pytest.fixture
def open_dir():
    """A directory of ours under /tmp that anyone may pass through."""
    with passable_dir("minijet-reach-") as path:
        yield path


def test_a_directory_in_the_way_is_named(open_dir):
    other = TaskUser("other", os.getuid() + 4242, os.getgid() + 4242, (), "/")
    deep = open_dir / "a" / "b"
    deep.mkdir(parents=True)
    (open_dir / "a").chmod(0o700)
    assert reach.blocked(deep, other) == (f"{open_dir / 'a'} (mode 0700, owner uid "
                                          f"{os.getuid()}) is not searchable by other")
    (open_dir / "a").chmod(0o711)
    assert reach.blocked(deep, other) is None
    deep.chmod(0o711)
    assert "is not readable by other" in reach.blocked(deep, other)
    assert reach.blocked(deep, other, read=False) is None   # passed through only
    (deep / "f").write_text("x")
    (deep / "f").chmod(0o600)
    assert "f (mode 0600" in reach.blocked(deep / "f", other)
    (deep / "f").chmod(0o644)
    assert reach.blocked(deep / "f", other) is None
    (open_dir / "link").symlink_to(deep / "f")   # the link's target's way counts too
    (open_dir / "a").chmod(0o700)
    assert "a (mode 0700" in reach.blocked(open_dir / "link", other)


def test_group_and_owner_bits_count_for_their_accounts(open_dir):
    path = open_dir / "d"
    path.mkdir(mode=0o750)
    path.chmod(0o750)
    me = TaskUser("me", os.getuid(), os.getgid(), (), "/")
    member = TaskUser("member", os.getuid() + 4242, 0, (os.stat(path).st_gid,), "/")
    stranger = TaskUser("stranger", os.getuid() + 4242, 0, (), "/")
    assert reach.blocked(path, me) is None and reach.blocked(path, member) is None
    assert "not readable by stranger" in reach.blocked(path, stranger)
    path.chmod(0o057)   # the owner's own bits, not the others'
    assert "not readable by me" in reach.blocked(path, me)


def test_a_taskhost_needs_the_interpreter_and_minijet():
    paths = reach.taskhost_paths()
    import minijet
    assert Path(sys.executable) in paths and Path(minijet.__file__).parent in paths
    assert all(p.exists() for p in paths)


def test_only_the_jobs_own_files_are_served_from_its_directory(open_dir):
    job = open_dir / "job"
    job.mkdir()
    (job / "file.out").write_bytes(b"mine")
    with open_owned(job / "file.out", job) as f:
        assert f.read() == b"mine"
    (open_dir / "elsewhere").write_bytes(b"not the job's")
    (job / "link.out").symlink_to(open_dir / "elsewhere")
    with pytest.raises(FailedPrecondition, match="link.out is not the job's own file"):
        open_owned(job / "link.out", job)
    with pytest.raises(FileNotFoundError):
        open_owned(job / "gone.out", job)
    if os.geteuid() == 0:   # another account's file, hard-linked or moved in
        os.chown(job, 4242, 4242)
        with pytest.raises(FailedPrecondition, match="another account's"):
            open_owned(job / "file.out", job)
