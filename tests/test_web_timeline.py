"""The timeline's packing and drawing on made-up attempts: bars of one taskserver never
overlap in a row, and a job of thousands of attempts is one bar each, in rows of 2 pixels."""
from __future__ import annotations

import random
import re

from minijet.web import timeline

JOB = "job_20260101120000_0001"


def attempt(i: int, server: str, start: float, end: float, state: str = "succeeded",
            stage: str = "map", **times: float) -> dict:
    task = f"{JOB}_{stage}_{i:05d}"
    return {"attempt_id": f"{task}_0", "task_id": task, "taskserver": server,
            "locality": "node-local", "state": state, "start_time": start, "end_time": end,
            "failure": "user" if state == "failed" else "", "speculative": False,
            "counters": [], **times}


def test_a_taskservers_attempts_pack_into_rows_that_do_not_overlap():
    rng = random.Random(7)
    attempts = []
    for i in range(300):
        start = rng.uniform(0, 100)
        attempts.append(attempt(i, f"h{i % 3}:1", start, start + rng.uniform(0.1, 10)))
    rows = timeline.pack(attempts, now=200.0)
    assert sorted(a["attempt_id"] for _, row in rows for a in row) == sorted(
        a["attempt_id"] for a in attempts)
    for server, row in rows:
        assert {a["taskserver"] for a in row} == {server}
        for before, after in zip(row, row[1:]):
            assert before["end_time"] <= after["start_time"]


def test_thousands_of_attempts_are_one_bar_each_in_a_bounded_picture():
    attempts = [attempt(i, f"h{i % 50}:1", i * 0.01, i * 0.01 + 5,
                        "failed" if i % 97 == 0 else "succeeded") for i in range(3000)]
    attempts.append(attempt(0, "h0:1", 1.0, 0.0, "running", stage="reduce"))
    svg = timeline.svg(JOB, attempts, ["map", "reduce"], now=40.0)
    assert svg.count('<rect class="attempt ') == 3001
    assert svg.count('<rect class="attempt failed"') == 31
    rows = len(timeline.pack(attempts, now=40.0))
    assert rows > 300   # 50 taskservers, each with about 10 at once: thin rows (2 px)
    assert float(re.search(r'height="([\d.]+)"', svg).group(1)) <= 2 * rows + 60


def test_a_bar_shades_its_known_phases_within_itself():
    a = attempt(0, "h1:1", 10.0, 20.0, taskhost_start_time=11.0, input_end_time=15.0,
                done_time=19.0)
    assert timeline._phases(a, 20.0) == [(10.0, 11.0, timeline.PHASES[0][2]),
                                         (15.0, 19.0, timeline.PHASES[1][2]),
                                         (19.0, 20.0, timeline.PHASES[2][2])]
    skewed = attempt(0, "h1:1", 10.0, 20.0, taskhost_start_time=9.0, input_end_time=0.0)
    assert timeline._phases(skewed, 20.0) == []   # a clock behind: nothing before the bar
    assert "<script>" not in timeline.svg(JOB, [attempt(0, "<script>", 1.0, 2.0)], ["map"], 3.0)
