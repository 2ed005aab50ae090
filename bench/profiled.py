"""A daemon's command line, optionally run under cProfile (for the load benchmarks).

cProfile sees one thread: every thread of the daemon (gRPC's workers, its writers, ...) gets
its own profiler, and the merged profile is written at exit (SIGTERM ends a daemon through
its normal stop, so atexit runs).
"""
from __future__ import annotations

import sys

PROFILED = """
import atexit, cProfile, pstats, sys, threading
out, profiles = sys.argv.pop(1), []
def start(*_):
    sys.setprofile(None)
    profiles.append(cProfile.Profile())
    profiles[-1].enable()
def save():
    for p in profiles:
        p.disable()
    pstats.Stats(*profiles).dump_stats(out)
threading.setprofile(start)
atexit.register(save)
start()
from {module} import main
main()
"""


def command(module: str, profile: str = "") -> list[str]:
    """`python -c` running `module`'s main(); under cProfile into `profile` when given.
    The daemon's own arguments (--config ...) follow."""
    if profile:
        return [sys.executable, "-c", PROFILED.format(module=module), profile]
    return [sys.executable, "-c", f"from {module} import main; main()"]
