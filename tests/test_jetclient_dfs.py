"""JetClient's checks and uploads against a real DFS (no jobserver runs here: the jobserver
address is one where nothing listens, so reaching it shows the DFS checks passed)."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from minijet.client import JetClient
from minijet.net import free_port
from minijet.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
from minijet.job import build_conf, load_job_class
from minijet.jobconf import JobConf

EXAMPLE = str(Path(__file__).resolve().parent.parent / "examples" / "wordcount" /
              "wordcount.py")


@pytest.fixture
def jobserver_nowhere():
    return f"127.0.0.1:{free_port()}"


@pytest.fixture
def client(cluster, jobserver_nowhere):
    config = cluster.config.with_overrides({"jobserver.address": jobserver_nowhere,
                                            "rpc.retries": 0})
    with JetClient(config) as jc:
        yield jc


@pytest.fixture
def base(client):
    """A fresh DFS directory for the test, with an input file."""
    root = f"/jetclient/{uuid.uuid4().hex[:8]}"
    with client.dfs.create(f"{root}/in/words.txt") as f:
        f.write(b"to be or not to be\n")
    return root


def test_missing_input_is_refused_before_the_jobserver(client, base):
    with pytest.raises(NotFound, match=f"input path {base}/nope does not exist"):
        client.submit(EXAMPLE, "WordCount", [f"{base}/in", f"{base}/nope", f"{base}/out"])
    assert not client.dfs.exists(f"{base}/out")


def test_existing_output_is_refused_and_kept(client, base):
    with client.dfs.create(f"{base}/out/part-00000") as f:
        f.write(b"old\t1\n")
    with pytest.raises(AlreadyExists, match=f"output path {base}/out already exists"):
        client.submit(EXAMPLE, "WordCount", [f"{base}/in", f"{base}/out"])
    with client.dfs.open(f"{base}/out/part-00000") as f:
        assert f.read() == b"old\t1\n"


def test_checks_pass_then_the_jobserver_is_asked(client, base, jobserver_nowhere):
    with pytest.raises(Unavailable, match=f"cannot reach the jobserver at {jobserver_nowhere}"):
        client.submit(EXAMPLE, "WordCount", [f"{base}/in/words.txt", f"{base}/out"])


def test_upload_job_files(client, base, tmp_path):
    extra = tmp_path / "stopwords.txt"
    extra.write_text("the\na\n")
    conf = build_conf(load_job_class(EXAMPLE, "WordCount"), [f"{base}/in", f"{base}/out"],
                      job_file="wordcount.py", files=["stopwords.txt"])
    job_dir = f"{base}/job"
    client.upload_job_files(job_dir, conf, [EXAMPLE, str(extra)])
    names = sorted(s.path.rsplit("/", 1)[-1] for s in client.dfs.list(job_dir))
    assert names == ["job.json", "stopwords.txt", "wordcount.py"]
    with client.dfs.open(f"{job_dir}/job.json") as f:
        assert JobConf.from_dict(json.loads(f.read())) == conf
    with client.dfs.open(f"{job_dir}/wordcount.py") as f:
        assert f.read() == Path(EXAMPLE).read_bytes()
    # many replicas for files every taskserver reads, capped by the 4 live dataservers
    assert {s.replication for s in client.dfs.list(job_dir)} == {4}


def test_extra_files_need_distinct_names(client, base, tmp_path):
    other = tmp_path / "wordcount.py"
    other.write_text("")
    with pytest.raises(InvalidArgument, match="distinct names"):
        client.submit(EXAMPLE, "WordCount", [f"{base}/in", f"{base}/out"], files=[str(other)])
    with pytest.raises(NotFound, match="file .*missing.txt does not exist"):
        client.submit(EXAMPLE, "WordCount", [f"{base}/in", f"{base}/out"],
                      files=[str(tmp_path / "missing.txt")])


def test_jetshell_run_refuses_existing_output(cluster, client, base, jobserver_nowhere):
    with client.dfs.create(f"{base}/out/_SUCCESS"):
        pass
    proc = subprocess.run(
        [sys.executable, "-m", "minijet.client.jetshell", "run", "--config",
         str(cluster.config_path), "-D", f"jobserver.address={jobserver_nowhere}",
         EXAMPLE, "WordCount", f"{base}/in", f"{base}/out"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == f"jetshell: error: output path {base}/out already exists (jobs never " \
                          f"overwrite output: remove it or choose another)\n"
