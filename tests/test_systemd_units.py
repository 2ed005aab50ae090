"""conf/systemd: one unit per daemon, each starting a console script this package installs
with the operator's config file."""
import configparser
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DAEMONS = ("nameserver", "dataserver", "jobserver", "taskserver")


@pytest.mark.parametrize("daemon", DAEMONS)
def test_unit_starts_an_installed_daemon_with_the_system_config(daemon):
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read(ROOT / "conf" / "systemd" / f"minijet-{daemon}.service")
    program, *args = unit["Service"]["ExecStart"].split()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert Path(program).name == daemon and daemon in scripts
    assert args == ["--config", "/etc/minijet/minijet.yaml"]
    assert unit["Service"]["KillSignal"] == "SIGTERM"
    # the daemon tells systemd when it serves (READY=1): tests/test_health.py
    assert (unit["Service"]["Type"], unit["Service"]["NotifyAccess"]) == ("notify", "main")
    assert unit["Service"]["Restart"] == "on-failure"
    installed = shutil.which(daemon, path=str(Path(sys.executable).parent))
    assert installed, f"{daemon} is not installed beside {sys.executable}"
    help_text = subprocess.run([installed, "--help"], capture_output=True, text=True,
                               check=True).stdout
    assert "--config" in help_text
