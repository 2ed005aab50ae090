"""What every daemon shares: logging set-up, the --config/-D command line, and a clean stop
on SIGTERM/SIGINT."""
from __future__ import annotations

import contextlib
import functools
import gc
import logging
import signal
import sys
import threading
from typing import Any, Callable, Iterator, NamedTuple

import click

from minijet import config as configmod
from minijet import sdnotify
from minijet.errors import MinijetError


def setup_logging(config: configmod.Config, role: str) -> None:
    level = config["logging"]["level"].upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise MinijetError(f"config key logging.level: unknown level {config['logging']['level']!r}")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if config["logging"]["file"]:
        handlers.append(logging.FileHandler(config["logging"]["file"]))
    fmt = f"%(asctime)s %(levelname)s {role}[{config.host}] %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, handlers=handlers, force=True)


def wait_for_stop() -> None:
    """Block until SIGTERM or SIGINT."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(3600):
        pass


def _options(fn: Callable) -> Callable:
    fn = click.option("-D", "defines", multiple=True, metavar="KEY=VALUE",
                      help="Override one config key, e.g. -D dataserver.dir=/data.")(fn)
    return click.option("--config", "config_path", type=click.Path(dir_okay=False),
                        help="YAML configuration file (default: $MINIJET_CONF, "
                             "./.minijet/minijet.yaml, /etc/minijet/minijet.yaml).")(fn)


class _GroupConfig(NamedTuple):
    """--config and -D given before a subcommand (see config_group)."""

    path: str | None
    defines: tuple[str, ...]


def config_options(fn: Callable) -> Callable:
    """Give a click command --config PATH and -D KEY=VALUE (passed as `config_path` and
    `defines`; turn them into a Config with `load_config`). Those given before the command,
    to its config_group, count too: the command's own --config wins, its -D come last."""

    @functools.wraps(fn)
    def command(*args, config_path=None, defines=(), **kwargs):
        outer = click.get_current_context().find_object(_GroupConfig)
        if outer is not None:
            config_path, defines = config_path or outer.path, outer.defines + defines
        return fn(*args, config_path=config_path, defines=defines, **kwargs)

    return _options(command)


def config_group(**settings) -> Callable[[Callable], click.Group]:
    """click.group(**settings) that also takes --config and -D before its subcommand, as
    Hadoop's commands do (`dfsshell --config FILE ls /`)."""

    def decorate(fn: Callable) -> click.Group:
        @click.group(**{"help": fn.__doc__, **settings})
        @_options
        @click.pass_context
        def group(ctx, config_path, defines):
            ctx.obj = _GroupConfig(config_path, defines)

        return group

    return decorate


def load_config(config_path: str | None, defines: tuple[str, ...]) -> configmod.Config:
    return configmod.load(config_path, configmod.parse_overrides(defines))


NO_CONFIG = ("no minijet configuration was found (--config, $MINIJET_CONF, "
             "./.minijet/minijet.yaml, /etc/minijet/minijet.yaml): start a cluster here with "
             "`minijet cluster up`, or point MINIJET_CONF at your cluster's minijet.yaml")


def load_client_config(config_path: str | None, defines: tuple[str, ...]) -> configmod.Config:
    """A command's configuration. Without any configuration file, the default addresses are
    tried once and not waited for: most likely there is no cluster to wait for (`unreached`
    then says so)."""
    config = load_config(config_path, defines)
    if config.source == "defaults":
        config = config.with_overrides({"rpc.retries": 0, "dfs.client_wait": 0,
                                        "jobserver.client_wait": 0})
    return config


def unreached(config: configmod.Config, error: MinijetError) -> MinijetError:
    """`error`, told that no configuration was found when that is why no server answered."""
    if config.source == "defaults" and str(error).startswith("cannot reach"):
        return type(error)(f"{error}; {NO_CONFIG}")
    return error


def run_until_stopped(server) -> None:
    """Start `server` (anything with start() and stop()), serve until SIGTERM or SIGINT, then
    stop it, also when serving failed."""
    server.start()
    sdnotify.notify("READY=1")
    try:
        wait_for_stop()
    finally:
        sdnotify.notify("STOPPING=1")
        server.stop()


def command(role: str, help: str) -> Callable:
    """Decorate `run(config)` into a click command with --config and -D, that prints
    configuration and start-up errors as one line and exits non-zero."""

    def decorate(run: Callable[[configmod.Config], None]) -> click.Command:
        @click.command(name=role, help=help)
        @config_options
        def main(config_path, defines):
            try:
                config = load_config(config_path, defines)
                setup_logging(config, role)
                run(config)
            except MinijetError as e:
                click.echo(f"{role}: error: {e}", err=True)
                sys.exit(1)

        return main

    return decorate


# For a daemon that holds millions of long-lived objects (the jobserver's tasks, the
# nameserver's namespace). With Python's default thresholds (700, 10, 10) the collector's
# full passes over them came every few seconds under load and took 0.1-0.6 s each: they
# stalled every jobserver heartbeat (p99 0.8 s at 1,500/s with a 100k-task job) and took
# half of a nameserver's loading of a million files (5.4-5.8 s against 2.8-3.3 s). Collected
# every 50,000 allocations, the young generation still frees short-lived cycles within
# milliseconds; a full pass needs 100 million allocations instead of 70,000. The middle
# generation is collected every 100,000 allocations: each pass then looks at no more than
# that many survivors (at 1,000,000, one pass while a 100k-task job was being built took
# 235 ms, and every heartbeat waited for it).
BIG_HEAP_GC_THRESHOLDS = (50_000, 2, 1000)


def for_a_big_heap() -> None:
    """Sets the garbage collector's thresholds for a daemon with a big heap (see above):
    call it before the daemon loads its state."""
    gc.set_threshold(*BIG_HEAP_GC_THRESHOLDS)


# Building a 100k-task job makes a million objects that all survive: each young pass
# (every 50,000 allocations) scanned them again, 26 passes of up to 30 ms alone and 90 ms
# under load, each holding the GIL while heartbeats waited (p99 during the submission
# 80-215 ms; bench/RESULTS.md, 2026-11-30). Built with the collector off, then frozen out of
# its sight, they cost no pass at all; thaw_long_lived gives them back when they die.
_building = 0
_building_lock = threading.Lock()
_collector_was_on = True


@contextlib.contextmanager
def building_long_lived() -> Iterator[None]:
    """Runs the block with the garbage collector off (for the whole process: other threads'
    cycles wait too), then freezes every object alive (gc.freeze) so that no pass scans them
    again. Builds may overlap: the last to end freezes and turns the collector back on."""
    global _building, _collector_was_on
    with _building_lock:
        if not _building:
            _collector_was_on = gc.isenabled()
            gc.disable()
        _building += 1
    try:
        yield
    finally:
        with _building_lock:
            _building -= 1
            if not _building:
                gc.freeze()
                if _collector_was_on:
                    gc.enable()


def thaw_long_lived() -> None:
    """Frozen objects that became garbage in a cycle (a retired job's tasks) are collected
    only once thawed: they go back to the oldest generation (gc.unfreeze)."""
    with _building_lock:
        if not _building:   # a build in progress freezes them again at its end
            gc.unfreeze()


def main_of(role: str, help: str, make: Callable[[configmod.Config], Any]) -> click.Command:
    """A daemon's console command: `make(config)` builds the daemon (loading its state), which
    then runs until SIGTERM or SIGINT (see `command` and `run_until_stopped`)."""

    @command(role, help)
    def main(config: configmod.Config) -> None:
        run_until_stopped(make(config))

    return main
