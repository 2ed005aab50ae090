"""Jobs end to end on local clusters of real processes (nameserver, dataservers, jobserver,
taskservers, one TaskHost process per attempt), submitted with the real `jetshell` CLI or
JetClient. The session's `job_cluster` is shared by the tests that leave it intact; a test
that kills a daemon or needs other timings gets a `fresh_job_cluster` of its own (both in
conftest.py). Inputs are sized in blocks of the cluster's block size."""
from __future__ import annotations

import collections
import json
import os
import posixpath
import random
import subprocess
import sys
from pathlib import Path

import pytest

from minijet import rpc
from minijet.client import JetClient
from minijet.cluster import LocalCluster
from minijet.errors import AlreadyExists, NotFound
from minijet.proto import job_pb2, job_pb2_grpc

from polling import wait_for

WORDCOUNT = str(Path(__file__).parents[1] / "examples" / "wordcount" / "wordcount.py")
TESTJOBS = str(Path(__file__).parent / "jobs" / "testjobs.py")


# ---- helpers ----

def jetshell(lc: LocalCluster, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, MINIJET_CONF=str(lc.config_path))
    return subprocess.run([sys.executable, "-c", "from minijet.client.jetshell import main; "
                           "main()", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def taskhosts(taskserver: psutil.Process) -> list[psutil.Process]:
    """The TaskHosts under a taskserver: its descendants but its TaskHost fork server."""
    found = []
    for p in taskserver.children(recursive=True):
        try:
            if "minijet.taskhost.forkserver" not in " ".join(p.cmdline()):
                found.append(p)
        except psutil.NoSuchProcess:
            pass
    return found


def block_size(lc: LocalCluster) -> int:
    return lc.config["dfs"]["block_size"]


def job_id_of(result: subprocess.CompletedProcess) -> str:
    """`jetshell run` prints the job id as the last word of its first line."""
    return result.stdout.splitlines()[0].split()[-1]


def make_text(seed: int, size: int) -> bytes:
    """Deterministic text of about `size` bytes: short and very long lines, non-ASCII words,
    blank lines, tabs and odd whitespace, so lines cross block boundaries anywhere."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(300)] + ["été", "日本語", "naïve", "Ünïcödé", "a", "I",
                                             "the", "to-be", "x\xa0y", "end."]
    out, total = [], 0
    while total < size:
        n = rng.choice([0, 1, 3, 8, 15, 40, 2000])
        line = " ".join(rng.choice(vocab) for _ in range(n))
        if rng.random() < 0.1:
            line = "\t" + line.replace(" ", "  \t", 3) + " "
        data = (line + "\n").encode()
        out.append(data)
        total += len(data)
    return b"".join(out)


def expected_counts(*texts: bytes) -> collections.Counter:
    counts = collections.Counter()
    for t in texts:
        counts.update(t.decode("utf-8").split())
    return counts


def put_bytes(dfs, path: str, data: bytes, replication: int | None = None) -> None:
    with dfs.create(path, replication=replication) as f:
        f.write(data)


def read_counts(dfs, output: str) -> collections.Counter:
    counts = collections.Counter()
    for st in dfs.list(output):
        name = posixpath.basename(st.path)
        if name.startswith("part-"):
            with dfs.open(st.path) as f:
                for line in f.read().decode("utf-8").split("\n"):
                    if line:
                        word, n = line.rsplit("\t", 1)
                        assert word not in counts, f"{word!r} in two part files"
                        counts[word] = int(n)
    return counts


def part_files(dfs, output: str) -> list[str]:
    return sorted(posixpath.basename(s.path) for s in dfs.list(output)
                  if posixpath.basename(s.path).startswith("part-"))


def status(lc: LocalCluster, job_id: str):
    with JetClient(lc.config) as jc:
        return jc.get_status(job_id)


# ---- WordCount ----

@pytest.mark.parametrize("blocks,reducers", [(1, 1), (1, 3), (5, 1), (5, 3)])
def test_wordcount_equals_counter(job_cluster, blocks, reducers):
    dfs = job_cluster.client()
    block = block_size(job_cluster)
    base = f"/wc-{blocks}-{reducers}"
    text = make_text(seed=blocks * 10 + reducers, size=blocks * block - block // 3)
    put_bytes(dfs, f"{base}/in/text.txt", text)
    locations = dfs.block_locations(f"{base}/in/text.txt")
    assert len(locations) == blocks
    if blocks > 1:  # some block boundary falls inside a line
        assert any(text[b.offset - 1:b.offset] != b"\n" for b in locations[1:])

    result = jetshell(job_cluster, "run", WORDCOUNT, "WordCount", f"{base}/in", f"{base}/out",
                      "--reducers", str(reducers))
    assert result.returncode == 0, result.stdout + result.stderr
    job_id = job_id_of(result)
    assert job_id.startswith("job_")
    assert read_counts(dfs, f"{base}/out") == expected_counts(text)
    assert part_files(dfs, f"{base}/out") == [f"part-{i:05d}" for i in range(reducers)]
    names = {posixpath.basename(s.path) for s in dfs.list(f"{base}/out")}
    assert "_SUCCESS" in names and "_temporary" not in names

    st = status(job_cluster, job_id)
    assert st.state == "succeeded"
    assert [(s.stage_id, s.tasks, s.succeeded) for s in st.stages] == \
        [("map", blocks, blocks), ("reduce", reducers, reducers)]
    dfs.close()


def test_a_finished_jobs_status_json_has_every_timestamp_in_order(job_cluster):
    """`jetshell status --json` shows when each step of the job and of each attempt
    happened (see the jobserver core's Timestamps), in the order they must happen."""
    dfs = job_cluster.client()
    text = make_text(seed=7, size=2 * block_size(job_cluster) - 100)
    put_bytes(dfs, "/times/in.txt", text)
    dfs.close()
    result = jetshell(job_cluster, "run", WORDCOUNT, "WordCount", "/times/in.txt",
                      "/times/out", "--reducers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    shown = jetshell(job_cluster, "status", "--json", job_id_of(result))
    job = json.loads(shown.stdout)
    in_order = ["submit_time", "run_time", "start_time", "end_time", "commit_time"]
    assert 0 < job["submit_time"] and [job[k] for k in in_order] == sorted(
        job[k] for k in in_order), {k: job[k] for k in in_order}
    maps = [a for a in job["attempts"] if "_map_" in a["task_id"]]
    reduces = [a for a in job["attempts"] if "_reduce_" in a["task_id"]]
    assert maps and len(reduces) == 2
    assert {a["state"] for a in job["attempts"]} == {"succeeded"}
    for a, steps in [(m, ["start_time", "taskhost_start_time", "input_end_time", "done_time",
                          "end_time"]) for m in maps] + \
                    [(r, ["start_time", "taskhost_start_time", "input_end_time", "commit_time",
                          "done_time", "end_time"]) for r in reduces]:
        times = [job["start_time"]] + [a[k] for k in steps] + [job["end_time"]]
        assert 0 < a["taskhost_start_time"] and times == sorted(times), \
            {k: a[k] for k in steps}
    assert {m["commit_time"] for m in maps} == {0}   # map outputs are not committed
    # a reduce has read its input once it has every map's output
    assert min(r["input_end_time"] for r in reduces) >= max(m["done_time"] for m in maps)


def test_map_only_job_and_directory_input(job_cluster):
    """Several input files in a directory (hidden names skipped), no reducers: the mapper's
    output goes straight to part files, one per split."""
    dfs = job_cluster.client()
    block = block_size(job_cluster)
    texts = [make_text(seed=100 + i, size=block + 5000) for i in range(2)]
    for i, t in enumerate(texts):
        put_bytes(dfs, f"/maponly/in/f{i}.txt", t)
    put_bytes(dfs, "/maponly/in/_ignored", b"hidden hidden\n")
    result = jetshell(job_cluster, "run", WORDCOUNT, "WordCount", "/maponly/in",
                      "/maponly/out", "--reducers", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(part_files(dfs, "/maponly/out")) == 4   # two blocks per file
    counts = collections.Counter()
    for name in part_files(dfs, "/maponly/out"):
        with dfs.open(f"/maponly/out/{name}") as f:
            for line in f.read().decode().split("\n"):
                if line:
                    word, n = line.rsplit("\t", 1)
                    counts[word] += int(n)
    assert counts == expected_counts(*texts)
    dfs.close()


# ---- locality ----

def test_maps_run_where_their_blocks_are(job_cluster):
    """Input at replication 1, written from each host in turn so every host holds some blocks:
    with free slots, maps run node-local."""
    config = job_cluster.config
    block = block_size(job_cluster)
    texts = []
    for host in (1, 2, 3):
        from minijet.dfs import DfsClient
        with DfsClient(config, host=f"host{host}") as dfs:
            for i in range(2):
                text = make_text(seed=host * 7 + i, size=block + block // 2)
                texts.append(text)
                put_bytes(dfs, f"/local/in/h{host}-{i}.txt", text, replication=1)
                assert {h for b in dfs.block_locations(f"/local/in/h{host}-{i}.txt")
                        for h in b.hosts} == {f"host{host}"}
    result = jetshell(job_cluster, "run", WORDCOUNT, "WordCount", "/local/in", "/local/out",
                      "--reducers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    st = status(job_cluster, job_id_of(result))
    maps = [a for a in st.attempts if "_map_" in a.task_id]
    assert len(maps) >= 12
    local = [a for a in maps if a.locality == "node-local"]
    assert len(local) >= 0.9 * len(maps), [(a.attempt_id, a.host, a.locality) for a in maps]
    assert all(a.host == a.taskserver.split(":")[0] for a in maps)
    counters = {(c.group, c.name): c.value for c in st.counters}
    assert counters[("job", "node_local_attempts")] == len(local)
    with job_cluster.client() as dfs:
        assert read_counts(dfs, "/local/out") == expected_counts(*texts)


# ---- failures ----

def test_failing_mapper_fails_the_job_with_the_users_error(job_cluster):
    dfs = job_cluster.client()
    block = block_size(job_cluster)
    text = make_text(seed=5, size=2 * block) + b"some poison here\n" + make_text(6, 1000)
    put_bytes(dfs, "/poison/in.txt", text)
    result = jetshell(job_cluster, "run", TESTJOBS, "PoisonWordCount", "/poison/in.txt",
                      "/poison/out")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "ValueError: poison record at byte" in result.stderr
    job_id = job_id_of(result)

    shown = jetshell(job_cluster, "status", job_id)
    assert shown.returncode == 0, shown.stderr
    text_shown = shown.stdout + shown.stderr
    assert "failed" in text_shown
    assert "ValueError: poison record at byte" in text_shown
    assert 'raise ValueError(f"poison record at byte {key}")' in text_shown  # the traceback

    st = status(job_cluster, job_id)
    assert st.state == "failed"
    failed = [a for a in st.attempts if a.state == "failed"]
    assert len(failed) == 4   # jobserver.max_task_attempts
    assert len({a.task_id for a in failed}) == 1
    assert len({a.taskserver for a in failed}) >= 2   # retried elsewhere
    assert all(a.state in ("succeeded", "killed", "failed") for a in st.attempts)
    assert not dfs.exists("/poison/out")   # no part files, nothing partial
    dfs.close()


def test_missing_input_and_existing_output_refused_before_any_task(job_cluster):
    dfs = job_cluster.client()
    put_bytes(dfs, "/refuse/in.txt", b"a b c\n")
    dfs.mkdir("/refuse/out-exists", parents=True)
    put_bytes(dfs, "/refuse/out-exists/keep", b"precious\n")
    with JetClient(job_cluster.config) as jc:
        before = len(jc.list_jobs(all=True))

    missing = jetshell(job_cluster, "run", WORDCOUNT, "WordCount", "/refuse/nope",
                       "/refuse/out")
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == \
        ["jetshell: error: input path /refuse/nope does not exist"]
    exists = jetshell(job_cluster, "run", WORDCOUNT, "WordCount", "/refuse/in.txt",
                      "/refuse/out-exists")
    assert exists.returncode == 1
    [line] = exists.stderr.strip().splitlines()
    assert line.startswith("jetshell: error: output path /refuse/out-exists already exists")
    assert not dfs.exists("/refuse/out")

    # The jobserver checks too (a client may skip the check, or the DFS may change after it)
    from minijet.jobconf import compile_mapreduce
    with JetClient(job_cluster.config) as jc:
        assert len(jc.list_jobs(all=True)) == before
        for inputs, output, error in ((["/refuse/nope"], "/refuse/out", NotFound),
                                      (["/refuse/in.txt"], "/refuse/out-exists", AlreadyExists)):
            conf = compile_mapreduce("WordCount", "wordcount.py", "WordCount", {}, inputs,
                                     output, 1, True)
            job_id, job_dir = jc.create_job("WordCount")
            put_bytes(dfs, f"{job_dir}/job.json", json.dumps(conf.to_dict()).encode())
            dfs.put(WORDCOUNT, f"{job_dir}/wordcount.py")
            with pytest.raises(error, match=output if error is AlreadyExists else inputs[0]):
                jc.run_job(job_id)
            assert jc.get_status(job_id).state == "created"
            assert not jc.get_status(job_id).attempts
            jc.kill_job(job_id)
            assert jc.get_status(job_id).state == "killed"
    with dfs.open("/refuse/out-exists/keep") as f:
        assert f.read() == b"precious\n"
    dfs.close()


def test_a_runjob_sent_again_after_a_restart_cut_the_first_short_takes_back_its_start(
        job_cluster):
    """The jobserver died in RunJob after it made the output's start, before the job was
    stored as running; the client's RunJob sent again finds that start, its own, and runs
    the job. Another job's start of the same path is still refused."""
    from minijet import jobdir
    from minijet.jobconf import compile_mapreduce
    dfs = job_cluster.client()
    text = b"to be or not to be\n"
    put_bytes(dfs, "/again/in.txt", text)
    with JetClient(job_cluster.config) as jc:
        jobs = []
        for output in ("/again/out", "/again/other"):
            conf = compile_mapreduce("WordCount", "wordcount.py", "WordCount", {},
                                     ["/again/in.txt"], output, 1, True)
            job_id, job_dir = jc.create_job("WordCount")
            put_bytes(dfs, f"{job_dir}/job.json", json.dumps(conf.to_dict()).encode())
            dfs.put(WORDCOUNT, f"{job_dir}/wordcount.py")
            jobs.append(job_id)
        mine, other = jobs
        jobdir.start_output(dfs, "/again/out", mine)     # what the cut-short RunJob left
        jobdir.start_output(dfs, "/again/other", mine)   # another job's start: not `other`'s
        jc.run_job(mine)
        assert jc.wait_for_completion(mine, timeout=60).state == "succeeded"
        with pytest.raises(AlreadyExists, match="/again/other"):
            jc.run_job(other)
        jc.kill_job(other)
    assert read_counts(dfs, "/again/out") == expected_counts(text)
    dfs.close()


def test_hanging_task_is_killed_after_task_timeout_and_retried(fresh_job_cluster, tmp_path):
    lc = fresh_job_cluster(dataservers=2, taskservers=2, taskserver={"task_timeout": "2s"})
    dfs = lc.client()
    block = block_size(lc)
    text = make_text(seed=9, size=2 * block)
    put_bytes(dfs, "/hang/in.txt", text)
    marker = tmp_path / "hung"
    result = jetshell(lc, "run", TESTJOBS, "HangOnceWordCount", "/hang/in.txt", "/hang/out",
                      "--marker", str(marker))
    assert result.returncode == 0, result.stdout + result.stderr
    assert marker.exists()
    st = status(lc, job_id_of(result))
    first = [a for a in st.attempts if a.task_id.endswith("_map_00000")]
    assert [a.state for a in first] == ["failed", "succeeded"]
    assert "timed out" in first[0].error
    assert read_counts(dfs, "/hang/out") == expected_counts(text)
    dfs.close()


def test_taskserver_killed_mid_job(fresh_job_cluster):
    """kill -9 a taskserver once it holds finished map output: its running attempts and the
    map outputs the reducers still need run again elsewhere; the output is right."""
    lc = fresh_job_cluster(dataservers=3, taskservers=3)
    dfs = lc.client()
    block = block_size(lc)
    text = make_text(seed=11, size=8 * block - 1000)
    put_bytes(dfs, "/crash/in.txt", text)
    with JetClient(lc.config) as jc:
        job_id = jc.submit(TESTJOBS, "SlowWordCount",
                           ["/crash/in.txt", "/crash/out", "--reducers", "2", "--delay", "1.5"])
        victim = wait_for(
            lambda: next((a.taskserver for a in jc.get_status(job_id).attempts
                          if "_map_" in a.task_id and a.state == "succeeded"), None),
            timeout=60, what="a finished map attempt")
        host = victim.split(":")[0]
        lc.kill("taskserver", int(host.removeprefix("host")))
        st = jc.wait_for_completion(job_id, timeout=120)
    assert st.state == "succeeded", st.error
    lost = [a for a in st.attempts if a.state == "lost"]
    assert lost and all(a.taskserver == victim for a in lost)
    assert read_counts(dfs, "/crash/out") == expected_counts(text)
    dfs.close()


def test_a_job_resumes_after_a_jobserver_restart_and_its_client_follows_it(
        fresh_job_cluster):
    """kill -9 the jobserver while a job runs: the restarted one lists the finished job as it
    was; the interrupted one goes on to an exact output, its attempts that were running
    finish (none is run again), and `jetshell wait`, started before the kill, follows it to
    its end; the cleanup orders lost with the old jobserver are sent by the new one."""
    import psutil

    lc = fresh_job_cluster(dataservers=2, taskservers=2)
    dfs = lc.client()
    block = block_size(lc)
    text = make_text(seed=21, size=2 * block)
    put_bytes(dfs, "/restart/in.txt", text)
    with JetClient(lc.config) as jc:
        done = jc.submit(WORDCOUNT, "WordCount", ["/restart/in.txt", "/restart/done"])
        assert jc.wait_for_completion(done, timeout=60).state == "succeeded"
        before = jc.get_status(done)
        slow = jc.submit(TESTJOBS, "SlowWordCount",
                         ["/restart/in.txt", "/restart/slow", "--delay", "6"])
        wait_for(lambda: any(a.state == "running" for a in jc.get_status(slow).attempts),
                 timeout=30, what="running attempts")
        running = {a.attempt_id for a in jc.get_status(slow).attempts if a.state == "running"}
    follower = subprocess.Popen([sys.executable, "-m", "minijet.client.jetshell", "wait",
                                 "--config", str(lc.config_path), slow],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lc.kill("jobserver")
    lc.restart()

    with JetClient(lc.config) as jc:
        jobs = {j.job_id: j for j in jc.list_jobs(all=True)}
        assert jobs[done].state == "succeeded"
        assert not jobs[done].attempts   # a list is without attempts
        after = jc.get_status(done)
        assert [(a.attempt_id, a.state, a.locality) for a in after.attempts] == \
            [(a.attempt_id, a.state, a.locality) for a in before.attempts]
        assert {(c.group, c.name, c.value) for c in after.counters if c.group != "job"} == \
            {(c.group, c.name, c.value) for c in before.counters if c.group != "job"}
        st = jc.wait_for_completion(slow, timeout=90)
        assert st.state == "succeeded", st.error
        assert read_counts(dfs, "/restart/slow") == expected_counts(text)
        states = {a.attempt_id: a.state for a in st.attempts}
        assert all(states[a] == "succeeded" for a in running), states   # not run again
        out, err = follower.communicate(timeout=60)
        assert follower.returncode == 0, out + err
        taskservers = [psutil.Process(lc.pid("taskserver", i)) for i in (1, 2)]
        wait_for(lambda: not any(taskhosts(p) for p in taskservers),
                 timeout=30, what="the TaskHosts to end")
        # the cleanup orders of the old jobserver (for `done`) died with it: the new one
        # sends them when the taskservers name the jobs they hold files of
        wait_for(lambda: not any((lc.dir / f"task{i}" / "jobs" / job).exists()
                                 for i in (1, 2) for job in (done, slow)),
                 timeout=10, what="the jobs' files to leave the taskservers")

        again = jc.submit(WORDCOUNT, "WordCount", ["/restart/in.txt", "/restart/again"])
        assert again not in (done, slow)
        assert jc.wait_for_completion(again, timeout=60).state == "succeeded"
    assert read_counts(dfs, "/restart/again") == expected_counts(text)
    dfs.close()

    lc.down()   # SIGTERM: a clean stop
    log = (lc.dir / "logs" / "jobserver.log").read_text()
    assert log.rstrip().endswith("jobserver stopped")


def test_cluster_status_shows_the_job_engine(job_cluster):
    by_name = {s.name: s for s in job_cluster.status()}
    assert by_name["jobserver"].state == "running"
    assert by_name["jobserver"].address == job_cluster.config["jobserver"]["address"]
    with JetClient(job_cluster.config) as jc:
        shuffle = {t.host: t.address for t in jc.list_taskservers() if t.alive}
    for i in (1, 2, 3):
        ts = by_name[f"taskserver{i}"]
        assert (ts.state, ts.host, ts.address) == ("running", f"host{i}", shuffle[f"host{i}"])
    out = subprocess.run([sys.executable, "-c", "from minijet.cluster import main; main()",
                          "cluster", "status", "--dir", str(job_cluster.dir)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert [line.split()[0] for line in out.stdout.splitlines()[1:]] == [
        "nameserver", "dataserver1", "dataserver2", "dataserver3", "jobserver", "taskserver1",
        "taskserver2", "taskserver3"]


def test_killed_job_stops_its_tasks_and_leaves_no_output(job_cluster):
    import psutil

    dfs = job_cluster.client()
    put_bytes(dfs, "/kill/in.txt", make_text(seed=31, size=2 * block_size(job_cluster)))
    submitted = jetshell(job_cluster, "submit", TESTJOBS, "SlowWordCount", "/kill/in.txt",
                         "/kill/out", "--delay", "600")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    wait_for(lambda: any(a.state == "running" for a in status(job_cluster, job_id).attempts),
             timeout=30, what="running attempts")
    killed = jetshell(job_cluster, "kill", job_id)
    assert killed.returncode == 0, killed.stderr
    waited = jetshell(job_cluster, "wait", job_id)
    assert waited.returncode == 3, waited.stdout + waited.stderr   # killed
    st = status(job_cluster, job_id)
    assert st.state == "killed"
    assert {a.state for a in st.attempts} <= {"killed", "succeeded"}
    assert any(a.state == "killed" for a in st.attempts)
    assert not dfs.exists("/kill/out")
    taskservers = [psutil.Process(job_cluster.pid("taskserver", i)) for i in (1, 2, 3)]
    wait_for(lambda: not any(taskhosts(p) for p in taskservers), timeout=30,
             what="the killed job's TaskHosts to exit")
    dfs.close()


def test_empty_input_gives_empty_output(job_cluster):
    dfs = job_cluster.client()
    put_bytes(dfs, "/empty/in/nothing.txt", b"")
    result = jetshell(job_cluster, "run", WORDCOUNT, "WordCount", "/empty/in", "/empty/out",
                      "--reducers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert part_files(dfs, "/empty/out") == ["part-00000", "part-00001"]
    assert read_counts(dfs, "/empty/out") == collections.Counter()
    assert dfs.exists("/empty/out/_SUCCESS")
    dfs.close()


def test_a_reduce_starts_with_its_map_and_a_long_poll_hands_it_the_output(job_cluster):
    """Slow start (0 by default): the reduce of a one-map job starts while its map runs; a
    consumer's ask for outputs is held until one is made."""
    dfs = job_cluster.client()
    text = make_text(seed=21, size=block_size(job_cluster) // 2)
    put_bytes(dfs, "/early/in.txt", text)
    channel = rpc.connect(job_cluster.config, job_cluster.config["jobserver"]["address"])
    try:
        with JetClient(job_cluster.config) as jc:
            job_id = jc.submit(TESTJOBS, "SlowWordCount", ["/early/in.txt", "/early/out",
                                                           "--delay", "2", "--reducers", "1"])
            stub = job_pb2_grpc.JobServerStub(channel)
            asked = job_pb2.MapOutputsRequest(job_id=job_id, stage_id="map")
            first = stub.GetMapOutputs(asked, timeout=10)
            assert list(first.outputs) == []   # the map sleeps 2 s
            asked.seen, asked.wait = first.version, 60.0
            held = stub.GetMapOutputs(asked, timeout=90)   # answered once the map is done
            assert [o.task_id for o in held.outputs] == [f"{job_id}_map_00000"]
            assert held.version != first.version
            asked.seen, asked.wait = held.version, 0.0   # asked again: not sent again
            again = stub.GetMapOutputs(asked, timeout=10)
            assert (list(again.outputs), list(again.lost), again.full) == ([], [], False)
            assert jc.wait_for_completion(job_id).state == "succeeded"
    finally:
        channel.close()
    st = status(job_cluster, job_id)
    (m,) = [a for a in st.attempts if "_map_" in a.task_id]
    (r,) = [a for a in st.attempts if "_reduce_" in a.task_id]
    assert r.taskhost_start_time < m.end_time   # up early, waiting for the map's output
    assert read_counts(dfs, "/early/out") == expected_counts(text)
    dfs.close()
