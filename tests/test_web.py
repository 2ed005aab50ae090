"""The daemons' web pages and /metrics on a live cluster, read with real HTTP requests:
every page answers, shows what it is for, escapes what users named, and asks for the token
when the cluster has one."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from minijet import config as configmod
from minijet.client import JetClient
from minijet.dfs.blockmap import BlockMap
from minijet.dfs.nameserver import NameServer
from minijet.dfs.namespace import Block, Namespace
from minijet.web.dfspages import NameServerPages

from polling import wait_for
from test_jobs_e2e import TESTJOBS, WORDCOUNT, jetshell, job_id_of, put_bytes, status
from web_client import get, web

HOSTILE = "<script>alert(1)</script>"


def run_job(lc, job_class: str, name: str, file: str = WORDCOUNT):
    """Run a job over 2 blocks of input; (its id, the page URL jetshell run printed)."""
    dfs = lc.client()
    put_bytes(dfs, f"/web/{name}/in", b"one two three poison\n" * (
        2 * lc.config["dfs"]["block_size"] // 21))
    r = jetshell(lc, "run", file, job_class, f"/web/{name}/in", f"/web/{name}/out")
    lines = r.stdout.splitlines()
    assert lines and lines[1].startswith("watch it at http://"), r.stdout + r.stderr
    return job_id_of(r), lines[1].split()[-1]


def attempt_bars(page: str) -> int:
    return page.count('<rect class="attempt ')


def logs_link(job_id: str, attempt_id: str) -> str:
    return f'<a href="/logs?job={job_id}&amp;attempt={attempt_id}">logs</a>'


def test_an_attempts_logs_page_shows_what_its_taskserver_kept(fresh_job_cluster):
    token = "logs-token"
    lc = fresh_job_cluster(dataservers=1, taskservers=1, security={"auth_token": token})
    job_id, url = run_job(lc, "TwoStreams", "logs", TESTJOBS)
    base = web(lc, "jobserver")
    first_map = f"{job_id}_map_00000_0"
    logs_url = f"{base}logs?job={job_id}&attempt={first_map}"
    code, page = get(url, token)
    assert code == 200 and logs_link(job_id, first_map) in page
    assert get(logs_url)[0] == 401   # behind the cluster's token, as every page

    # the job's owner is the test's user: the page reads as the jobserver, not as them
    code, logs = get(logs_url, token)
    assert code == 200, logs
    (out, out_text), (err, err_text) = re.findall(r"<h2>(\w+)</h2><pre>([^<]*)</pre>", logs)
    assert (out, out_text) == ("stdout", "&lt;b&gt;out&lt;/b&gt; from the mapper\n")
    assert err == "stderr" and "\na word &amp; more to stderr\n" in err_text   # (and the
    #                                                               TaskHost's log lines)
    assert f'href="/job?id={job_id}"' in logs and "succeeded" in logs

    for job_logs in lc.dir.glob(f"task*/logs/{job_id}"):   # as log_retention would
        shutil.rmtree(job_logs)
    code, expired = get(logs_url, token)
    assert code == 200 and "<pre>" not in expired
    (node,) = {a.taskserver for a in status(lc, job_id).attempts}
    assert f'<p class="bad">The logs cannot be fetched: taskserver {node} has none: older ' \
           f'than its log_retention, or the attempt has not started.</p>' in expired
    lc.kill("taskserver", 1)
    code, gone = get(logs_url, token)
    assert code == 200 and gone.count("The logs cannot be fetched: ") == 1, gone
    assert get(f"{base}logs?job={job_id}&attempt={job_id}_map_00042_0", token)[0] == 404
    assert get(f"{base}logs?job=nonsense&attempt={first_map}", token)[0] == 400


def test_the_job_pages(job_cluster):
    job_id, url = run_job(job_cluster, "WordCount", "pages")
    base = web(job_cluster, "jobserver")
    assert url == f"{base}job?id={job_id}"
    st = status(job_cluster, job_id)
    code, page = get(url)
    assert code == 200
    for words in (job_id, "WordCount", "succeeded", "Stages", "Timeline", "Counters",
                  "input_records"):
        assert words in page
    assert attempt_bars(page) == len(st.attempts) > 0
    assert 'http-equiv="refresh"' not in page   # a finished job's page stays as it is
    for a in st.attempts:
        assert a.attempt_id in page and a.taskserver in page
        assert logs_link(job_id, a.attempt_id) in page

    code, jobs = get(base)
    assert code == 200 and f'href="/job?id={job_id}"' in jobs
    assert job_id in get(f"{base}?state=succeeded")[1]
    assert job_id not in get(f"{base}?state=failed")[1]
    assert job_id not in get(f"{base}?user=nosuchuser")[1]
    assert job_id in get(f"{base}?user={st.user}&state=succeeded&all=1")[1]
    assert get(f"{base}?state=sleeping")[0] == 400
    assert get(f"{base}job?id=job_20000101000000_9999")[0] == 404
    assert get(f"{base}job?id=nonsense")[0] == 400
    assert get(f"{base}nosuchpage")[0] == 404

    code, servers = get(f"{base}taskservers")
    assert code == 200 and 'http-equiv="refresh"' in servers
    for host in ("host1", "host2", "host3"):
        assert host in servers
    assert "/default-rack" in servers and "alive" in servers


def test_a_failed_jobs_page_shows_its_error_and_traceback(job_cluster):
    job_id, url = run_job(job_cluster, "PoisonWordCount", "failed", TESTJOBS)
    code, page = get(url)
    assert code == 200
    assert "failed" in page and "Traceback (most recent call last)" in page
    assert "ValueError: poison record" in page
    assert '<rect class="attempt failed"' in page   # hatched in the timeline


def test_a_hostile_job_name_shows_as_text(job_cluster):
    with JetClient(job_cluster.config) as jc:
        job_id, _ = jc.create_job(HOSTILE)
        try:
            base = web(job_cluster, "jobserver")
            for url in (base, f"{base}job?id={job_id}", f"{base}?user={HOSTILE}"):
                code, page = get(url.replace("<", "%3C").replace(">", "%3E"))
                assert code == 200
                assert HOSTILE not in page
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in get(base)[1]
        finally:
            jc.kill_job(job_id)


def test_the_nameserver_pages(job_cluster):
    dfs = job_cluster.client()
    block = job_cluster.config["dfs"]["block_size"]
    path = "/web/dfs/<b>bold.txt"
    put_bytes(dfs, path, b"x" * (block + 10))
    base = web(job_cluster, "nameserver")

    code, root = get(base)
    assert code == 200 and 'href="/?path=%2Fweb"' in root
    code, listing = get(f"{base}?path=/web/dfs")
    assert code == 200 and "&lt;b&gt;bold.txt" in listing and "<b>bold" not in listing
    code, file_page = get(f"{base}file?path={path.replace('<', '%3C').replace('>', '%3E')}")
    assert code == 200
    assert file_page.count(">healthy<") == 2   # two blocks
    assert all(f"host{i}" in file_page for i in (1, 2, 3))
    assert get(f"{base}?path=/web/nosuch")[0] == 404

    code, servers = get(f"{base}dataservers")
    assert code == 200 and all(f"host{i}" in servers for i in (1, 2, 3)) and "alive" in servers
    code, fsck = get(f"{base}fsck")
    assert code == 200 and "HEALTHY" in fsck and "safe mode" in fsck
    assert 'http-equiv="refresh"' in fsck   # cheap: the kept totals
    code, full = get(f"{base}fsck?full=1")
    assert code == 200 and "HEALTHY" in full and "Blocks not healthy" in full


ROLE_METRICS = {
    "nameserver": {"minijet_nameserver_operations", "minijet_nameserver_files",
                   "minijet_nameserver_blocks", "minijet_nameserver_blocks_under_replicated",
                   "minijet_nameserver_blocks_corrupt", "minijet_nameserver_safe_mode",
                   "minijet_nameserver_directories", "minijet_nameserver_file_bytes"},
    "dataserver": {"minijet_dataserver_bytes_read", "minijet_dataserver_bytes_written",
                   "minijet_dataserver_checksum_errors", "minijet_dataserver_disk_used_bytes",
                   "minijet_dataserver_disk_free_bytes"},
    "jobserver": {"minijet_jobserver_heartbeats", "minijet_jobserver_heartbeat_seconds",
                  "minijet_jobserver_jobs", "minijet_jobserver_tasks",
                  "minijet_jobserver_retained_jobs", "minijet_jobserver_jobs_finished",
                  "minijet_jobserver_attempts_finished", "minijet_jobserver_attempts_failed",
                  "minijet_jobserver_assignments",
                  "minijet_jobserver_scheduling_latency_seconds"},
    "taskserver": {"minijet_taskserver_slots_busy", "minijet_taskserver_attempts_started",
                   "minijet_taskserver_attempts_failed", "minijet_taskserver_attempts_killed",
                   "minijet_taskserver_shuffle_bytes", "minijet_taskserver_shuffle_requests",
                   "minijet_taskserver_taskhost_start_seconds"},
}


def test_every_daemon_serves_metrics(job_cluster):
    run_job(job_cluster, "WordCount", "metrics")
    for s in job_cluster.status():
        code, text = get(f"{s.web}metrics")
        assert code == 200, s.name
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert ROLE_METRICS[s.role] <= set(families), (s.name, sorted(families))
    samples = metric_samples(f"{web(job_cluster, 'jobserver')}metrics")
    assert samples[("minijet_jobserver_heartbeats_total", ())] > 0
    assert samples[("minijet_jobserver_jobs_finished_total", (("state", "succeeded"),))] >= 1


def samples_of(text: str) -> dict[tuple[str, tuple], float]:
    """(sample name, its labels sorted) -> value, of a /metrics text."""
    return {(x.name, tuple(sorted(x.labels.items()))): x.value
            for f in text_string_to_metric_families(text) for x in f.samples}


def metric_samples(url: str) -> dict[tuple[str, tuple], float]:
    """The samples (see samples_of) of the metrics at `url`."""
    code, text = get(url)
    assert code == 200, url
    return samples_of(text)


def by_label(samples: dict, name: str) -> dict[str, float]:
    """The samples of `name` (a family with one label) by label value, those at 0 left out."""
    return {labels[0][1]: v for (n, labels), v in samples.items() if n == name and v}


def test_jobserver_counters_outlive_retirement_and_time_each_tasks_wait(fresh_job_cluster):
    lc = fresh_job_cluster(dataservers=1, taskservers=1,
                           jobserver={"retire_after": "8s", "retained_jobs": 1})
    url = f"{web(lc, 'jobserver')}metrics"
    good, _ = run_job(lc, "WordCount", "counted")
    bad, _ = run_job(lc, "PoisonWordCount", "counted-bad", TESTJOBS)
    attempts = [a for job_id in (good, bad) for a in status(lc, job_id).attempts]
    counted = metric_samples(url)
    assert by_label(counted, "minijet_jobserver_jobs_finished_total") == {"succeeded": 1,
                                                                         "failed": 1}
    assert by_label(counted, "minijet_jobserver_attempts_finished_total") == \
        Counter(a.state for a in attempts)
    assert by_label(counted, "minijet_jobserver_attempts_failed_total") == \
        Counter(a.failure for a in attempts if a.failure)
    assert by_label(counted, "minijet_jobserver_assignments_total") == \
        Counter(a.locality or "none" for a in attempts)
    waits = counted[("minijet_jobserver_scheduling_latency_seconds_count", ())]
    assert waits == sum(1 for a in attempts if not a.speculative) > 0
    assert counted[("minijet_jobserver_scheduling_latency_seconds_sum", ())] > 0
    assert counted[("minijet_jobserver_retained_jobs", ())] >= 1   # (retired on a Tick)

    wait_for(lambda: metric_samples(url)[("minijet_jobserver_retained_jobs", ())] == 0, 30,
             "both jobs retired from the jobserver's memory")
    now = metric_samples(url)
    assert {k: v for k, v in now.items() if k[0].endswith(("_total", "_count", "_sum"))
            and "heartbeat" not in k[0]} == \
        {k: v for k, v in counted.items() if k[0].endswith(("_total", "_count", "_sum"))
         and "heartbeat" not in k[0]}
    assert by_label(now, "minijet_jobserver_jobs") == by_label(now, "minijet_jobserver_tasks") \
        == {}


def test_cluster_status_shows_each_daemons_web_address(job_cluster):
    statuses = job_cluster.status()
    assert len({s.web for s in statuses}) == len(statuses)   # a port each
    out = subprocess.run([sys.executable, "-c", "from minijet.cluster import main; main()",
                          "cluster", "status", "--dir", str(job_cluster.dir)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "WEB" in out.stdout.splitlines()[0]
    assert web(job_cluster, "jobserver") in out.stdout


def nameserver_samples(lc) -> dict[str, float]:
    """The unlabelled samples of the nameserver's /metrics by name."""
    return {name: v for (name, labels), v in
            metric_samples(f"{web(lc, 'nameserver')}metrics").items() if not labels}


def test_nameserver_metrics_and_fsck_page_read_kept_totals_not_a_walk(tmp_path, monkeypatch):
    server = NameServer(configmod.from_dict({"nameserver": {"dir": str(tmp_path)}}))
    try:
        for host in ("h1", "h2"):
            server.register_dataserver(host, "", f"{host}:1", 10**9, 0, 10**9)
        server.mkdirs("/d/e", parents=True)
        server.create("/d/f", "c1", "h1", 2, 1024, False)
        block = server.add_block("/d/f", "c1", None, set()).block.block_id
        server.block_received("h1", [(block, 100)])   # h2's replica never comes: under-replicated
        server.complete("/d/f", "c1", Block(block, 100))
        full = server.fsck("/")

        def walk(*args, **kwargs):
            raise AssertionError("walked the namespace")

        monkeypatch.setattr(Namespace, "walk_files", walk)
        monkeypatch.setattr(BlockMap, "health", walk)
        figures = {name: v for (name, _), v in
                   samples_of(generate_latest(server.metrics).decode()).items()}
        assert (figures["minijet_nameserver_files"], figures["minijet_nameserver_blocks"],
                figures["minijet_nameserver_blocks_under_replicated"]) == (
            len(full.files), full.total_blocks, full.under_replicated) == (1, 1, 1)
        assert figures["minijet_nameserver_directories"] == 3   # /, /d, /d/e
        assert figures["minijet_nameserver_file_bytes"] == 100
        page = NameServerPages(server).fsck({})
        for shown in ("<th>files</th><td>1</td>", "<th>directories</th><td>3</td>",
                      "<th>under-replicated</th><td>1</td>", 'href="/fsck?full=1"'):
            assert shown in page
        with pytest.raises(AssertionError, match="walked"):   # what the full check does
            NameServerPages(server).fsck({"full": "1"})
    finally:
        server.stop()


FSCK_FIGURES = ("files", "blocks", "blocks_under_replicated", "blocks_over_replicated",
                "blocks_corrupt", "blocks_missing")


def metrics_and_full_check(lc) -> tuple[tuple, tuple]:
    """The nameserver's figures on /metrics, and the same counted by a full fsck."""
    figures = nameserver_samples(lc)
    with lc.client() as dfs:
        r = dfs.fsck("/")
    return (tuple(figures[f"minijet_nameserver_{name}"] for name in FSCK_FIGURES),
            (len(r.files), r.total_blocks, r.under_replicated, r.over_replicated, r.corrupt,
             r.missing))


def test_nameserver_metrics_agree_with_a_full_check_after_a_restart_and_a_lost_node(
        fresh_cluster):
    lc = fresh_cluster(dataservers=3, dfs={"replication": 2})
    block = lc.config["dfs"]["block_size"]
    with lc.client() as dfs:
        put_bytes(dfs, "/t/x/big", b"x" * (2 * block + 1))
        put_bytes(dfs, "/t/x/y/small", b"y" * 10, replication=3)
        put_bytes(dfs, "/t/gone", b"z" * 10)
        with dfs.create("/t/x/y/small", replication=1, overwrite=True) as f:
            f.write(b"y" * 20)
        dfs.rename("/t/x", "/t/moved")
        dfs.delete("/t/gone")

    def agree() -> tuple | None:
        on_page, counted = metrics_and_full_check(lc)
        return on_page if on_page == counted else None

    def totals() -> tuple:
        figures = nameserver_samples(lc)
        return (figures["minijet_nameserver_directories"],
                figures["minijet_nameserver_file_bytes"])

    def what() -> str:
        return "/metrics {} and a full fsck {} to agree".format(*metrics_and_full_check(lc))

    assert wait_for(agree, 30, what)[:2] == (2, 4)   # files, blocks
    assert totals() == (4, 2 * block + 21)   # /, /t, /t/moved, /t/moved/y
    lc.kill("nameserver")   # the journal is replayed at its start
    lc.restart()
    assert wait_for(agree, 30, what)[:2] == (2, 4)
    assert totals() == (4, 2 * block + 21)
    lc.kill("dataserver", 3)   # its replicas are lost, then copied again
    dead = ("minijet_nameserver_dataservers", (("state", "dead"),))
    wait_for(lambda: metric_samples(f"{web(lc, 'nameserver')}metrics")[dead] == 1, 30,
             "the nameserver to see dataserver3 dead")
    wait_for(agree, 30, what)


@pytest.mark.parametrize("scheme", ["Basic", "Bearer"])
def test_pages_and_metrics_ask_for_the_token(fresh_cluster, scheme):
    lc = fresh_cluster(dataservers=1, security={"auth_token": "s3cret-token"})
    base = web(lc, "nameserver")
    for url in (base, f"{base}fsck", f"{base}metrics",
                f"{web(lc, 'dataserver1')}metrics"):
        code, _ = get(url)
        assert code == 401, url
        assert get(url, "wrong", scheme)[0] == 401
        assert get(url, "s3cret-token", scheme)[0] == 200, url


def test_rpc_meter_times_every_call_of_every_method():
    """The meter wraps a method's handler once and times each call through it."""
    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    from minijet.web.metrics import RpcMeter

    seen = Counter()
    server = grpc.server(futures.ThreadPoolExecutor(2),
                         interceptors=[RpcMeter(lambda method, _: seen.update([method]))])
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for _ in range(5):
                stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
            with pytest.raises(grpc.RpcError):   # an unknown service: answered, and timed
                stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
    finally:
        server.stop(None)
    assert seen == {"Check": 6}
