"""A real browser on a job's page: headless Chromium (Debian's chromium package; .ci/run
installs it) renders the page of a running job and of the same job finished; the rendered
DOM must hold one timeline bar per attempt, and screenshots are kept in the test's temp dir.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from test_jobs_e2e import TESTJOBS, job_id_of, put_bytes, status
from polling import wait_for
from web_client import web

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no headless browser here: install Debian's chromium package "
                             "(.ci/run does when it is missing)")


class Bars(HTMLParser):
    """The timeline's attempt bars of a rendered page: attempt id -> its classes."""

    def __init__(self, dom: str):
        super().__init__()
        self.bars: dict[str, set[str]] = {}
        self.refreshes = False
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = set((a.get("class") or "").split())
        if tag == "rect" and "attempt" in classes:
            self.bars[a["data-attempt"]] = classes
        if tag == "meta" and a.get("http-equiv") == "refresh":
            self.refreshes = True


def render(url: str, tmp_path: Path, name: str) -> Bars:
    """The DOM Chromium renders for `url`, and its screenshot at tmp_path/name.png."""
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1300,1100"]
    shot = tmp_path / f"{name}.png"
    subprocess.run(base + [f"--screenshot={shot}", url], capture_output=True, timeout=120,
                   check=True)
    assert shot.stat().st_size > 10_000, f"an empty screenshot of {url}"
    dom = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert "<svg" in dom, dom[:2000]
    return Bars(dom)


def test_a_browser_shows_a_running_and_a_finished_jobs_timeline(job_cluster, tmp_path):
    dfs = job_cluster.client()
    put_bytes(dfs, "/web-browser/in", b"alpha beta gamma\n" * (
        3 * job_cluster.config["dfs"]["block_size"] // 17))
    release = tmp_path / "release"
    env = dict(os.environ, MINIJET_CONF=str(job_cluster.config_path))
    job = subprocess.Popen(
        [sys.executable, "-c", "from minijet.client.jetshell import main; main()", "run",
         TESTJOBS, "WaitForFileWordCount", "/web-browser/in", "/web-browser/out",
         "--release", str(release)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        first = job.stdout.readline()
        job_id = job_id_of(subprocess.CompletedProcess([], 0, first, ""))
        url = f"{web(job_cluster, 'jobserver')}job?id={job_id}"
        wait_for(lambda: [a for a in status(job_cluster, job_id).attempts
                          if a.state == "running"], 60, "running map attempts")
        before = {a.attempt_id for a in status(job_cluster, job_id).attempts}
        running = render(url, tmp_path, "running")
        after = {a.attempt_id for a in status(job_cluster, job_id).attempts}
        assert before <= set(running.bars) <= after
        assert any("running" in classes for classes in running.bars.values())
        assert running.refreshes   # a running job's page reloads itself
    finally:
        release.touch()
        out, err = job.communicate(timeout=120)
    assert job.returncode == 0, out + err

    finished = render(url, tmp_path, "finished")
    st = status(job_cluster, job_id)
    assert st.state == "succeeded"
    assert set(finished.bars) == {a.attempt_id for a in st.attempts}
    assert all(finished.bars[a.attempt_id] >= {"attempt", a.state} for a in st.attempts)
    assert not finished.refreshes
