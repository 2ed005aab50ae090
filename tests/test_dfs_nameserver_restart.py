"""DFS clients wait out a nameserver that is down, restarting and in safe mode (for up to
dfs.client_wait): real processes, the nameserver killed with SIGKILL."""
from __future__ import annotations

import concurrent.futures
import os
import subprocess
import threading

import pytest

from dfs_cluster import BIN, DfsCluster
from polling import wait_for

MiB = 1024 * 1024


@pytest.fixture
def cluster(tmp_path):
    with DfsCluster(tmp_path, {"dfs": {"client_wait": "60s"}}) as c:
        yield c.start(dataservers=2)


def test_client_calls_made_while_the_nameserver_is_down_complete_after_its_restart(cluster):
    with cluster.client() as client:
        with client.create("/before") as w:
            w.write(b"written before")
        cluster.kill_nameserver()
        results: dict = {}
        calling = threading.Event()

        def calls():
            try:
                calling.set()
                results["list"] = [s.path for s in client.list("/")]
                with client.create("/after") as w:  # safe mode after the start is waited out
                    w.write(b"written after")
                with client.open("/before") as r:
                    results["read"] = r.read()
            except Exception as e:  # reported by the assertions below
                results["error"] = e

        thread = threading.Thread(target=calls)
        thread.start()
        wait_for(calling.is_set, 10, "the calls to start")
        cluster.start_nameserver()
        thread.join(60)
        assert "error" not in results, results["error"]
        assert results["list"] == ["/before"]
        assert results["read"] == b"written before"
        with client.open("/after") as r:
            assert r.read() == b"written after"


def test_a_file_being_written_survives_a_nameserver_restart(cluster):
    data = os.urandom(3 * MiB + 5)  # 1 MiB blocks
    with cluster.client() as client:
        writer = client.create("/being-written")
        writer.write(data[:MiB + 100])  # one block done, the next begun
        cluster.kill_nameserver()
        failure: list[BaseException] = []
        writing = threading.Event()

        def write_the_rest():
            try:
                writing.set()
                writer.write(data[MiB + 100:])
                writer.close()
            except BaseException as e:  # reported by the assertion below
                failure.append(e)

        thread = threading.Thread(target=write_the_rest)
        thread.start()
        wait_for(writing.is_set, 10, "the writer to go on")
        cluster.start_nameserver()
        thread.join(60)
        assert not failure, failure
        with client.open("/being-written") as r:
            assert r.read() == data


def test_dfsshell_waits_for_the_nameserver(cluster, tmp_path):
    cluster.kill_nameserver()
    log = tmp_path / "dfsshell.err"
    with open(log, "w") as err:
        shell = subprocess.Popen([str(BIN / "dfsshell"), "mkdir", "-p", "/made/while/down",
                                  "--config", str(cluster.config_path),
                                  "-D", "logging.level=debug"],
                                 stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_for(lambda: "retrying" in log.read_text(), 30, "dfsshell to find no nameserver")
        cluster.start_nameserver()
        assert shell.wait(60) == 0, log.read_text()
    finally:
        shell.kill()
        shell.wait()
    with cluster.client() as client:
        assert client.stat("/made/while/down").is_dir


def test_a_read_right_after_a_restart_waits_for_the_block_reports(cluster, caplog):
    """Blocks whose replicas the restarted nameserver has not heard of yet are asked for
    again, not reported as having no replica: the dataservers are held (SIGSTOP) until the
    read has been tried, so their block reports come after it."""
    import logging
    import signal
    caplog.set_level(logging.DEBUG, logger="minijet.rpc")   # its retries are logged
    with cluster.client() as client:
        with client.create("/early") as w:
            w.write(b"read before the reports are in" * 1000)
        cluster.kill_nameserver()
        for p in cluster.dataservers.values():
            p.send_signal(signal.SIGSTOP)
        pool = concurrent.futures.ThreadPoolExecutor(1)
        try:
            cluster.start_nameserver()
            def read_early():
                with client.open("/early") as r:
                    return r.read()
            read = pool.submit(read_early)
            # the restarted nameserver serves, and the read asks it and is told to ask again
            wait_for(lambda: cluster.log("nameserver").count("serving on") == 2, 20,
                     "the nameserver to serve again")
            seen = len(caplog.records)
            wait_for(lambda: read.done() or any("GetBlockLocations" in r.getMessage()
                                                for r in caplog.records[seen:]), 20,
                     "the read to be told to ask again")
        finally:
            for p in cluster.dataservers.values():
                p.send_signal(signal.SIGCONT)
            pool.shutdown(wait=False)
        assert read.result(60) == b"read before the reports are in" * 1000
