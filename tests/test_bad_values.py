"""Every command fed bad values answers with one line naming what is wrong and exit status
1, never a traceback: configuration values out of range (-D, a config file, a cluster's
file), a block size that is not whole checksum chunks, DFS paths that are not UTF-8."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from minijet.net import free_port

BIN = Path(sys.executable).parent
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "wordcount" / "wordcount.py"
NOT_UTF8 = b"/in\xff"  # as a shell passes a path of Latin-1 bytes


def run(*args: str | bytes, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MINIJET_CONF"}
    command = [str(BIN / args[0]), *args[1:]]
    return subprocess.run(command, capture_output=True, cwd=cwd, env=env, timeout=60)


def assert_one_line(r: subprocess.CompletedProcess, *words: str) -> None:
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 1, (r.returncode, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err


@pytest.mark.parametrize("command, define, words", [
    (["dfsshell", "ls", "/"], "rpc.retries=-3", "rpc.retries: -3 is not allowed"),
    (["dfsshell", "ls", "/"], "dfs.checksum_chunk_size=0",
     "dfs.checksum_chunk_size: 0 is not allowed; it must be from 512"),
    (["jetshell", "list"], "dfs.block_size=100",
     "dfs.block_size: 100 is not allowed; it must be a multiple of dfs.checksum_chunk_size"),
    (["nameserver"], "nameserver.dead_timeout=0s", "nameserver.dead_timeout: 0 is not allowed"),
    (["dataserver"], "dfs.replication=0", "dfs.replication: 0 is not allowed"),
    (["jobserver"], "jobserver.max_task_attempts=0", "jobserver.max_task_attempts: 0"),
    (["taskserver"], "rpc.timeout=0", "rpc.timeout: 0 is not allowed; it must be more than 0"),
])
def test_out_of_range_values_are_refused_by_every_command(command, define, words):
    assert_one_line(run(*command, "-D", define), words)


def test_a_bad_value_in_a_clusters_file_is_refused_before_anything_starts(tmp_path):
    (tmp_path / "minijet.yaml").write_text("rpc: {retries: -1}\n")
    assert_one_line(run("minijet", "cluster", "up", "--dir", str(tmp_path)),
                    "rpc.retries: -1 is not allowed")
    assert not (tmp_path / "cluster.json").exists()
    for daemon in ("nameserver", "dataserver"):
        assert_one_line(run(daemon, "--config", str(tmp_path / "minijet.yaml")),
                        "rpc.retries: -1")


def test_a_block_size_of_partial_chunks_is_refused(cluster, tmp_path):
    local = tmp_path / "f"
    local.write_text("data")
    assert_one_line(run("dfsshell", "put", "--block-size", "100", str(local), "/bad-block",
                        "--config", str(cluster.config_path)),
                    "block size 100 is not allowed")


@pytest.mark.parametrize("args", [
    ["dfsshell", "ls", NOT_UTF8], ["dfsshell", "cat", NOT_UTF8], ["dfsshell", "mkdir", NOT_UTF8],
    ["dfsshell", "put", "{local}", NOT_UTF8], ["dfsshell", "mv", "/", NOT_UTF8],
    ["jetshell", "run", str(EXAMPLE), "WordCount", NOT_UTF8, "/out"],
])
def test_paths_that_are_not_utf8_are_refused(cluster, tmp_path, args):
    local = tmp_path / "f"
    local.write_text("data")
    args = [str(local) if a == "{local}" else a for a in args]
    flags = ["--config", str(cluster.config_path),
             "-D", f"jobserver.address=127.0.0.1:{free_port()}", "-D", "rpc.retries=0"]
    assert_one_line(run(args[0], args[1], *flags, *args[2:]), "in\\udcff")
