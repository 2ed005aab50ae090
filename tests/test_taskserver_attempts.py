"""The taskserver's attempt table: outcomes, timeouts and heartbeat reporting, with time
passed in."""
import signal

from minijet.states import ASSIGNED, FAILED, KILLED, RUNNING, SUCCEEDED
from minijet.taskserver.attempts import AttemptTable, DoneReport, describe_exit


def running(table, attempt="a0", job="j", now=0.0):
    assert table.launched(attempt, job, "t", now)
    assert table.started(attempt, now)
    return attempt


def test_success_needs_a_report_and_exit_zero():
    t = AttemptTable()
    running(t)
    assert t.done("a0", DoneReport(True, [("io", "records_in", 3)]), 1.0)
    assert t.get("a0").state == RUNNING  # final only once the process has exited
    assert t.exited("a0", 0, 2.0) == SUCCEEDED
    a = t.get("a0")
    assert a.progress == 1.0 and a.counters == [("io", "records_in", 3)] and a.error == ""


def test_user_failure_keeps_the_users_error_and_traceback():
    t = AttemptTable()
    running(t)
    t.done("a0", DoneReport(False, [], "ValueError: bad record", "Traceback ..."), 1.0)
    assert t.exited("a0", 1, 2.0) == FAILED
    assert (t.get("a0").error, t.get("a0").traceback) == ("ValueError: bad record",
                                                          "Traceback ...")
    assert t.snapshot()[0].failure == "user"


def test_the_taskhosts_class_of_its_failure_is_kept():
    t = AttemptTable()
    running(t)
    t.done("a0", DoneReport(False, [], "Unavailable: cannot reach the nameserver", "tb",
                            "system"), 1.0)
    t.exited("a0", 1, 2.0)
    assert (t.get("a0").failure, t.snapshot()[0].failure) == ("system", "system")


def test_crash_without_report_is_a_failure_saying_how_it_ended():
    t = AttemptTable()
    running(t, "a0")
    running(t, "a1")
    running(t, "a2")
    running(t, "a3")
    for a in ("a1", "a2"):
        t.progress(a, 0.1, [], 0.5)
    # a TaskHost that never reported could not start: the node's fault, not the job's
    assert t.exited("a0", 3, 1.0) == FAILED
    assert t.get("a0").error == "TaskHost exited with code 3 before it reported anything"
    assert t.get("a0").failure == "node"
    assert t.exited("a1", -signal.SIGKILL, 1.0) == FAILED
    assert t.get("a1").failure == "user"
    assert t.get("a1").error == "TaskHost killed by signal SIGKILL"
    assert t.exited("a2", 0, 1.0) == FAILED
    assert t.get("a2").error == "TaskHost exited without reporting its result"
    t.done("a3", DoneReport(True, []), 1.0)
    assert t.exited("a3", 1, 1.0) == FAILED
    assert "after reporting success" in t.get("a3").error
    assert describe_exit(-99) == "TaskHost killed by signal 99"


def test_timeout_is_decided_from_the_last_progress():
    t = AttemptTable()
    running(t, "a0", now=0.0)
    running(t, "a1", now=0.0)
    assert t.timed_out(5.0, timeout=10.0) == []
    t.progress("a1", 0.5, [], 8.0)
    assert t.timed_out(10.5, timeout=10.0) == ["a0"]
    assert t.kill("a0", FAILED, "no progress for 10s", 10.5, "user")
    assert t.timed_out(11.0, timeout=10.0) == []  # already being killed
    assert t.exited("a0", -9, 11.0) == FAILED
    assert t.get("a0").error == "no progress for 10s"  # our reason, not the signal
    assert t.get("a0").failure == "user"
    assert t.timed_out(18.5, timeout=10.0) == ["a1"]
    t.done("a1", DoneReport(True, []), 18.6)
    assert t.timed_out(100.0, timeout=10.0) == []  # done, only its exit is awaited


def test_kill_before_the_process_starts_is_final_at_once():
    t = AttemptTable()
    t.launched("a0", "j", "t", 0.0)
    assert t.get("a0").state == ASSIGNED
    assert not t.kill("a0", KILLED, "killed by the jobserver", 1.0)  # no process to kill
    assert t.get("a0").state == KILLED
    assert not t.started("a0", 2.0)  # the launcher must not start it now
    assert not t.kill("a0", KILLED, "again", 3.0)


def test_killed_running_attempt_is_killed_even_if_it_reported_success_meanwhile():
    t = AttemptTable()
    running(t)
    assert t.kill("a0", KILLED, "killed by the jobserver", 1.0)
    t.done("a0", DoneReport(True, []), 1.1)
    assert t.exited("a0", -9, 1.2) == KILLED


def test_repeated_launch_order_is_ignored_and_slots_count_unfinished():
    t = AttemptTable()
    running(t, "a0")
    assert not t.launched("a0", "j", "t", 1.0)
    t.launched("a1", "j", "t", 1.0)
    assert t.busy_slots() == 2
    t.launch_failed("a1", "cannot copy the job files", 2.0, "system")
    assert t.get("a1").state == FAILED and t.busy_slots() == 1
    assert t.get("a1").failure == "system"


def test_final_attempts_are_reported_until_a_heartbeat_is_answered():
    t = AttemptTable()
    running(t, "a0")
    running(t, "a1")
    t.done("a0", DoneReport(True, []), 1.0)
    t.exited("a0", 0, 1.0)
    sent = t.snapshot()
    assert {(s.attempt_id, s.state) for s in sent} == {("a0", SUCCEEDED), ("a1", RUNNING)}
    t.exited("a1", 1, 2.0)  # ended after the snapshot: must still be reported
    t.acknowledged(sent)
    assert [(s.attempt_id, s.state) for s in t.snapshot()] == [("a1", FAILED)]
    t.acknowledged(t.snapshot())
    assert t.snapshot() == []


def test_progress_after_the_end_is_ignored_and_clamped():
    t = AttemptTable()
    running(t)
    assert t.progress("a0", 7.0, [], 1.0) and t.get("a0").progress == 1.0
    t.exited("a0", 1, 2.0)
    assert not t.progress("a0", 0.5, [], 3.0)
    assert not t.progress("unknown", 0.5, [], 3.0)


def test_forget_job_drops_only_its_final_attempts():
    t = AttemptTable()
    running(t, "a0", job="j1")
    running(t, "a1", job="j1")
    running(t, "b0", job="j2")
    t.exited("a0", 1, 1.0)
    t.exited("b0", 1, 1.0)
    t.forget_job("j1")
    assert sorted(s.attempt_id for s in t.snapshot()) == ["a1", "b0"]


def test_logs_are_swept_after_their_retention(tmp_path):
    import os

    from minijet.taskserver.taskserver import sweep_logs

    for job, age in (("old", 1000), ("fresh", 10), ("running", 1000)):
        d = tmp_path / job / f"{job}_map_00000_0"
        d.mkdir(parents=True)
        (d / "stdout").write_text("x")
        for p in (d / "stdout", d, d.parent):
            os.utime(p, (1e9 - age, 1e9 - age))
    assert sweep_logs(tmp_path, horizon=1e9 - 100, keep={"running"}) == ["old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "running"]
    assert sweep_logs(tmp_path / "nosuch", 1e9, set()) == []


def test_heartbeats_carry_the_taskhosts_times_and_when_its_done_report_came():
    t = AttemptTable()
    running(t)

    def times():
        return [(s.taskhost_start_time, s.input_end_time, s.done_time) for s in t.snapshot()]

    assert times() == [(0.0, 0.0, 0.0)]   # not heard from yet
    t.progress("a0", 0.1, [], 1.0, taskhost_start_time=0.5)
    t.progress("a0", 0.6, [], 2.0, taskhost_start_time=0.5, input_end_time=1.5)
    assert times() == [(0.5, 1.5, 0.0)]
    t.done("a0", DoneReport(True, [], taskhost_start_time=0.5, input_end_time=1.5), 2.5)
    t.exited("a0", 0, 3.0)
    assert times() == [(0.5, 1.5, 2.5)]
