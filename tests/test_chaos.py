"""The chaos benchmark's short version (bench/chaos.py, 2 minutes): jobs and DFS writes go
on while random daemons, the jobserver and the nameserver included, are SIGKILLed and
restarted every 10 s; every job must succeed with exact output and no acknowledged file may
be lost (the benchmark exits 1 otherwise)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHAOS = Path(__file__).resolve().parents[1] / "bench" / "chaos.py"


def test_two_minutes_of_chaos_lose_no_job_and_no_file():
    run = subprocess.run([sys.executable, str(CHAOS), "--minutes", "2", "--every", "10",
                          "--seed", "11"], capture_output=True, text=True, timeout=600)
    summary = run.stdout[run.stdout.rfind("\nchaos:"):]
    assert run.returncode == 0, summary + run.stderr[-3000:]
    assert ", 0 lost," in summary and "jobs: 0 run" not in summary
