"""Who may kill a job and read its logs (minijet.acl): its owner and the admins; the
jobserver's web pages may read its logs, and no more."""
import pytest

from minijet import acl
from minijet.errors import PermissionDenied

ADMINS = ["ops", "root"]


@pytest.mark.parametrize("user, owner, allowed", [
    ("alice", "alice", True),    # the owner
    ("ops", "alice", True),      # an admin
    ("bob", "alice", False),     # anyone else
    ("bob", "", False),          # a job of no known owner is the admins' alone
    ("ops", "", True),
    ("", "", False),             # an unnamed caller is no one, not the unknown owner
    ("", "alice", False),
    ("Alice", "alice", False),   # names are compared as they are
])
def test_the_owner_and_the_admins_may(user, owner, allowed):
    assert acl.allowed(user, owner, ADMINS) is allowed


def test_a_refusal_says_who_may_not_do_what_to_whose_job():
    acl.check("alice", acl.KILL, "job_1_0001", "alice", [])
    with pytest.raises(PermissionDenied) as e:
        acl.check("bob", acl.KILL, "job_1_0001", "alice", ADMINS)
    assert str(e.value) == "permission denied: bob may not kill job job_1_0001 (owned by alice)"
    with pytest.raises(PermissionDenied) as e:
        acl.check("", acl.READ_LOGS, "job_1_0001", "", [])
    assert str(e.value) == ("permission denied: an unnamed user may not read the logs of job "
                            "job_1_0001 (owned by an unknown user)")


def test_the_jobservers_pages_may_read_any_jobs_logs_and_kill_none():
    acl.check(acl.JOBSERVER, acl.READ_LOGS, "job_1_0001", "alice", [])
    acl.check(acl.JOBSERVER, acl.READ_LOGS, "job_1_0001", "", [])
    with pytest.raises(PermissionDenied):
        acl.check(acl.JOBSERVER, acl.KILL, "job_1_0001", "alice", [])
