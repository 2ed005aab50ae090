"""Job classes for tests/test_task_users.py: jobs that say which account their tasks ran as,
one that holds its files on the node until told, and one that tries to reach another job's
files there."""
import json
import os
import tempfile
import time

from minijet import MapReduceJob, Param

MARKER = "marker.txt"   # what a HoldingWhoAmI mapper leaves in its working directory


class WhoAmI(MapReduceJob):
    """Outputs `uid <the account's uid>` (every value seen, for every task)."""

    def mapper(self, key, value):
        yield "uid", os.getuid()

    def reducer(self, key, values):
        yield key, " ".join(str(v) for v in sorted(set(values)))


class HoldingWhoAmI(WhoAmI):
    """Its mappers leave MARKER in their working dirs; its reducer waits (up to two minutes)
    for the local --release file, so the job's files stay on the node until then."""

    params = [Param("--release", str, help="local file whose existence ends the job")]

    def mapper(self, key, value):
        if key == 0:
            with open(MARKER, "w") as f:
                f.write("private to the job")
        yield from super().mapper(key, value)

    def reducer(self, key, values):
        deadline = time.monotonic() + 120
        while not os.path.exists(self.release) and time.monotonic() < deadline:
            time.sleep(0.1)
        yield from super().reducer(key, values)


class Probe(MapReduceJob):
    """Tries every local path of --targets (comma-separated) and outputs
    `<path>\t<what it could do>`: `listed N`, `read N bytes`, or the error's class; with its
    uid, HOME, whether it could write a temporary file, and the cluster token its attempt's
    config.json holds."""

    params = [Param("--targets", str, help="local paths to try to list or read")]

    def mapper(self, key, value):
        if key != 0:
            return
        yield "uid", str(os.getuid())
        yield "home", os.environ.get("HOME", "")
        with tempfile.TemporaryFile() as f:   # its own TMPDIR is its own
            f.write(b"x")
        yield "tmpdir", os.environ.get("TMPDIR", "")
        with open("config.json") as f:   # its attempt's configuration
            yield "config token", json.load(f)["security"]["auth_token"]
        for path in self.targets.split(","):
            yield path, attempt(path)

    def reducer(self, key, values):
        for v in values:
            yield key, v


def attempt(path: str) -> str:
    try:
        try:
            return f"listed {len(os.listdir(path))}"
        except NotADirectoryError:
            with open(path, "rb") as f:
                return f"read {len(f.read())} bytes"
    except OSError as e:
        return type(e).__name__
