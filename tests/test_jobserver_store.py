"""The jobserver's SQLite store: upserts by primary key, partial updates, durability across
a reopen, WAL mode."""
import asyncio
import random
import sqlite3
import time

import pytest

from minijet.jobserver.store import JobStore, _by_shape


def test_upsert_partial_update_and_reopen(tmp_path):
    store = JobStore(tmp_path)
    ticket = store.save([("jobs", {"job_id": "j1", "name": "wc", "state": "running",
                                   "submit_time": 1.5}),
                         ("tasks", {"task_id": "j1_map_00000", "job_id": "j1", "stage": "map",
                                    "task_index": 0, "state": "pending"})])
    store.wait(ticket)
    store.save([("jobs", {"job_id": "j1", "state": "succeeded"})])
    store.close()

    store = JobStore(tmp_path)
    try:
        [job] = store.rows("jobs")
        assert job["name"] == "wc" and job["state"] == "succeeded" and job["submit_time"] == 1.5
        [task] = store.rows("tasks", "job_id = ?", ("j1",))
        assert task["stage"] == "map" and task["task_index"] == 0
        assert store.rows("attempts") == []
    finally:
        store.close()
    mode = sqlite3.connect(tmp_path / "jobs.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_a_group_commit_writes_what_the_records_in_order_would():
    """Records of one group commit merge into one row per key (later columns win) and go
    out by shape; upserting those rows leaves each row as upserting the records one by one."""
    rng = random.Random(7)
    columns = ["state", "taskserver", "progress", "error"]
    records = []
    for i in range(500):
        names = rng.sample(columns, rng.randint(0, len(columns)))
        records.append(("attempts", {"attempt_id": f"a{rng.randrange(20)}",
                                     **{n: f"{n}{i}" for n in names}}))
    one_by_one: dict[str, dict] = {}
    for _, row in records:
        one_by_one.setdefault(row["attempt_id"], {}).update(row)

    merged: dict[str, dict] = {}
    for (table, names), rows in _by_shape(records).items():
        assert table == "attempts"
        for values in rows:
            row = dict(zip(names, values))
            assert row["attempt_id"] not in merged   # one row per key
            merged[row["attempt_id"]] = row
    assert merged == one_by_one


def test_rows_go_many_to_a_statement_and_every_one_lands(tmp_path):
    """A group commit writes its rows many to a statement, as many as SQLite's variable
    limit lets through (here lowered so that 1,000 rows take many statements); the table
    then holds every row, inserted or updated, as a row-at-a-time upsert would leave it."""
    store = JobStore(tmp_path)
    try:
        store._db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 25)   # 8 rows of 3 columns
        first = [("tasks", {"task_id": f"t{i:04d}", "job_id": "j", "state": "pending"})
                 for i in range(1000)]
        store.wait(store.save(first))
        again = [("tasks", {"task_id": f"t{i:04d}", "state": "running"})
                 for i in range(0, 1000, 3)]
        store.wait(store.save(again + [("tasks", {"task_id": "t9999", "job_id": "j",
                                                   "state": "pending"})]))
        rows = {r["task_id"]: (r["job_id"], r["state"]) for r in store.rows("tasks")}
        expected = {f"t{i:04d}": ("j", "running" if i % 3 == 0 else "pending")
                    for i in range(1000)}
        assert rows == {**expected, "t9999": ("j", "pending")}
    finally:
        store.close()


def test_unknown_column_fails_the_waiters(tmp_path):
    store = JobStore(tmp_path)
    ticket = store.save([("jobs", {"job_id": "j1", "colour": "red"})])
    with pytest.raises(ValueError, match="colour"):
        store.wait(ticket)
    store.close()


def test_a_coroutine_awaits_durability_without_blocking_its_loop(tmp_path):
    store = JobStore(tmp_path)
    ticks = []

    async def main():
        async def ticker():   # runs only while the loop's thread is free
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)
        beat = asyncio.create_task(ticker())
        with store._read_lock:   # holds the writer back: the record is queued, not durable
            ticket = store.save([("jobs", {"job_id": "j1", "state": "RUNNING"})])
            waiting = asyncio.create_task(store.durable(ticket))
            await asyncio.sleep(0.2)
            assert not waiting.done()
        await asyncio.wait_for(waiting, 10)
        beat.cancel()
        return store.rows("jobs")

    rows = asyncio.run(main())
    assert [r["state"] for r in rows] == ["RUNNING"]
    assert len(ticks) > 10   # the loop ran on while the write waited
    asyncio.run(store.durable())                 # nothing queued: at once
    store.close()


def test_unknown_column_fails_the_coroutines_awaiting_it(tmp_path):
    store = JobStore(tmp_path)
    ticket = store.save([("jobs", {"job_id": "j1", "colour": "red"})])
    with pytest.raises(ValueError, match="colour"):
        asyncio.run(store.durable(ticket))
    store.close()


def test_database_of_an_earlier_version_with_status_blob_opens(tmp_path):
    """Version 1 databases had a jobs.status_blob column; they open, read and write as
    before, and a reopened row goes back into save() unchanged (the jobserver's recovery)."""
    db = sqlite3.connect(tmp_path / "jobs.db")
    db.execute("CREATE TABLE jobs (job_id TEXT PRIMARY KEY, name, user, state, submit_time, "
               "start_time, end_time, output_path, job_dir, conf_json, error, traceback, "
               "status_blob)")
    db.execute("INSERT INTO jobs (job_id, name, state, status_blob) "
               "VALUES ('j1', 'wc', 'running', NULL)")
    db.commit()
    db.close()
    store = JobStore(tmp_path)
    try:
        [job] = store.rows("jobs")
        assert "status_blob" not in job and job["name"] == "wc"
        job["state"] = "failed"
        store.wait(store.save([("jobs", job), ("jobs", {"job_id": "j2", "name": "sort"})]))
        assert [(j["job_id"], j["state"]) for j in store.rows("jobs")] == [
            ("j1", "failed"), ("j2", None)]
    finally:
        store.close()
