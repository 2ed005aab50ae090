"""What a user trips on first: global options before the subcommand, as Hadoop's commands
take them, and a clear word when there is no cluster configured at all."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def run(*args: str, cwd: Path | None = None, env: dict | None = None):
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env=env)


def test_config_and_defines_go_before_the_subcommand_too(job_cluster):
    conf = str(job_cluster.config_path)
    listed = run("dfsshell", "--config", conf, "ls", "/")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == run("dfsshell", "ls", "--config", conf, "/").stdout
    # a -D before the command counts, and one after it comes last and wins
    refused = run("dfsshell", "--config", conf, "-D", "rpc.retries=-3", "ls", "/")
    assert refused.returncode == 1
    assert refused.stderr.startswith("dfsshell: error: config key rpc.retries: -3")
    fixed = run("dfsshell", "--config", conf, "-D", "rpc.retries=-3", "ls", "-D",
                "rpc.retries=2", "/")
    assert fixed.returncode == 0, fixed.stderr
    jobs = run("jetshell", "--config", conf, "list")
    assert jobs.returncode == 0, jobs.stderr
    # the command's own --config wins over one before it
    nowhere = run("jetshell", "--config", "/nonexistent.yaml", "list", "--config", conf)
    assert nowhere.returncode == 0, nowhere.stderr


@pytest.mark.parametrize("command, daemon", [(("jetshell", "list"), "jobserver"),
                                             (("dfsshell", "ls", "/"), "nameserver")])
def test_with_no_configuration_anywhere_the_user_is_told_at_once(tmp_path, command, daemon):
    if Path("/etc/minijet/minijet.yaml").exists():
        pytest.skip("this machine has /etc/minijet/minijet.yaml: a configuration is found")
    env = {k: v for k, v in os.environ.items() if k != "MINIJET_CONF"}
    result = run(*command, cwd=tmp_path, env=env)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{command[0]}: error: cannot reach the {daemon} at localhost:")
    assert "no minijet configuration was found" in line and "minijet cluster up" in line
    assert "tried" not in line   # tried once, not waited for
