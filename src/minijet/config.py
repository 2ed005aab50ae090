"""One YAML configuration for every daemon and client.

Every key has a default (see SCHEMA and conf/minijet.yaml), so an empty file runs on
localhost. Sizes accept "64MiB", durations "3s". An unknown key, a bad value or one out of
its range (config_limits.py) raises ConfigError naming the key. Lookup order: --config, $MINIJET_CONF, the local cluster's
file (./.minijet/minijet.yaml), /etc/minijet/minijet.yaml, then the defaults alone.
"""
from __future__ import annotations

import copy
import os
import re
import socket
from pathlib import Path
from typing import Any

import yaml

from minijet import config_limits
from minijet.errors import ConfigError

# libyaml's loader when PyYAML has it: every process reads the config at start (a TaskHost
# per attempt, jetshell per command), and the pure-Python loader took 1.0 ms of a warm
# process's 1.1 ms for a local cluster's file (libyaml: 0.1 ms), 3 ms in a fresh TaskHost.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)   # (safe: either loader builds plain data only)

LOCAL_CLUSTER_FILE = Path(".minijet") / "minijet.yaml"
SYSTEM_FILE = Path("/etc/minijet/minijet.yaml")


class Size(int):
    """A byte count written as 123, "64KiB", "64MiB", "1GiB" (or KB/MB/GB, powers of 1000)."""


class Duration(float):
    """Seconds, written as 1.5, "500ms", "3s", "2m", "1h"."""


_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2,
               "g": 1000**3, "gb": 1000**3, "t": 1000**4, "tb": 1000**4,
               "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
_DURATION_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER_UNIT = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")


def parse_size(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a size such as 65536 or 64MiB")
    if isinstance(value, int):
        number, unit = value, ""
    else:
        m = _NUMBER_UNIT.match(str(value))
        if not m or m.group(2).lower() not in _SIZE_UNITS:
            raise ValueError(f"expected a size such as 65536 or 64MiB, got {value!r}")
        number, unit = float(m.group(1)), m.group(2).lower()
    result = int(number * _SIZE_UNITS[unit])
    if result < 0:
        raise ValueError("a size cannot be negative")
    return result


def format_size(n: int) -> str:
    """A byte count for people: "512 B", "1.5 KiB", "64 MiB"."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f}".removesuffix(".0") + f" {unit}"
        n /= 1024
    raise AssertionError


def parse_duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 3s or 500ms")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        m = _NUMBER_UNIT.match(str(value))
        if not m or m.group(2).lower() not in _DURATION_UNITS:
            raise ValueError(f"expected a duration such as 3s or 500ms, got {value!r}")
        number, unit = float(m.group(1)), m.group(2).lower()
    if number < 0:
        raise ValueError("a duration cannot be negative")
    return number * _DURATION_UNITS[unit]


# Every key, with its type and default. conf/minijet.yaml documents each one;
# tests/test_config.py checks that the two agree.
SCHEMA: dict[str, dict[str, tuple[type, Any]]] = {
    "node": {
        "host": (str, ""),      # node identity; "" = this machine's host name
        "rack": (str, ""),      # "" = from topology, else /default-rack
    },
    "security": {
        "auth_token": (str, ""),  # when set, every RPC and data connection must prove it
        "tls_cert": (str, ""),    # PEM files; when set, daemons serve TLS (gRPC, data ports)
        "tls_key": (str, ""),
        "tls_ca": (str, ""),      # clients verify servers against this CA
        "admins": (list, []),     # users who may kill any job and read its logs (minijet.acl)
    },
    "rpc": {
        "timeout": (Duration, 30.0),        # deadline of one call
        "retries": (int, 4),                # extra tries of an idempotent call
        "retry_backoff": (Duration, 0.2),   # first back-off, doubled each try
        "max_message_size": (Size, 64 * 1024**2),
        "server_threads": (int, 32),
    },
    "logging": {
        "level": (str, "info"),
        "file": (str, ""),   # also log to this file when set
    },
    "topology": {
        "racks": (dict, {}),  # host -> rack, e.g. {host1: /rack1}
    },
    "dfs": {
        "block_size": (Size, 64 * 1024**2),
        "replication": (int, 3),
        "checksum_chunk_size": (Size, 64 * 1024),
        "packet_size": (Size, 1024**2),     # data per packet of the write pipeline
        "client_retries": (int, 3),         # new pipelines tried for one block
        "client_wait": (Duration, 120.0),   # a nameserver down or in safe mode is waited out this long
        "socket_timeout": (Duration, 60.0),  # data-transfer socket reads/writes
        "short_circuit": (bool, True),      # read a replica on this machine from its file
    },
    "nameserver": {
        "address": (str, "localhost:9000"),
        "http_address": (str, "localhost:9080"),  # pages, /metrics, /healthz; "" = none
        "dir": (str, "./.minijet/name"),
        "checkpoint_edits": (int, 20000),    # journal records between checkpoints, at least
        "safemode_threshold": (float, 0.999),  # fraction of blocks with a live replica
        "safemode_extension": (Duration, 0.0),  # stay in safe mode this long after it
        "dead_timeout": (Duration, 30.0),    # dataserver without heartbeat -> dead
        "replication_interval": (Duration, 1.0),  # how often replication is checked
        "replication_timeout": (Duration, 30.0),  # a replication not confirmed by then is retried
        "lease_timeout": (Duration, 600.0),  # a file open this long with no call from its writer is dropped
        "block_token_lifetime": (Duration, 36000.0),  # block tokens handed out are valid this long
    },
    "dataserver": {
        "address": (str, "localhost:0"),   # data-transfer server; port 0 = any free port
        "http_address": (str, "localhost:0"),  # /metrics, /healthz; "" = none
        "health_address": (str, "localhost:0"),  # gRPC health service; port 0 = any free port
        "dir": (str, "./.minijet/data"),
        "heartbeat_interval": (Duration, 3.0),
        "block_report_interval": (Duration, 3600.0),
        "capacity": (Size, 0),             # 0 = the disk's size
        "reserved": (Size, 0),             # disk space left free for other uses
        "fsync": (bool, True),             # fsync a replica before acknowledging it
    },
    "jobserver": {
        "address": (str, "localhost:9100"),
        "http_address": (str, "localhost:9180"),  # pages, /metrics, /healthz; "" = none
        "dir": (str, "./.minijet/jobs"),
        "max_task_attempts": (int, 4),        # user errors a task may have (minijet.failures)
        "system_retries": (int, 10),          # system errors a task may have, backing off...
        "retry_backoff": (Duration, 1.0),     # ...this long after the first, doubled up to 64x
        "taskserver_timeout": (Duration, 30.0),
        "locality_delay": (Duration, 3.0),
        "slow_start": (float, 0.0),        # fraction of producer tasks done before consumers start
        "job_dir": (str, "/minijet/jobs"),    # DFS directory for job files
        "job_file_replication": (int, 10),
        "min_split_size": (Size, 4 * 1024**2),  # input splits are sized for the slots, not smaller
        "client_wait": (Duration, 120.0),     # clients and tasks wait this long for a jobserver
        #                                       that is unreachable (restarting) before failing
        "speculative": (bool, True),          # back up stragglers (jobserver/speculation.py)
        "greylist_forgive": (Duration, 3600.0),   # a greylisted taskserver gets tasks again
        #                                           after this (jobserver/badnodes.py)
        "job_credential_lifetime": (Duration, 7 * 86400.0),  # a job's DFS credential is
        #                                           dropped by the nameserver after this
        "heartbeats_per_second": (float, 1000.0),  # taskserver heartbeats (and wakes) the
        #                                           jobserver takes: larger clusters beat slower
        "retire_after": (Duration, 600.0),    # a finished job leaves memory this long after
        "retained_jobs": (int, 100),          # its end, or when this many ended after it; it
        "history_retention": (Duration, 7 * 86400.0),  # is read from the store until this
        #                                       long after its end, then its rows, logs and job
        #                                       dir are deleted (jobserver/history.py)
    },
    "taskserver": {
        "address": (str, "localhost:0"),   # shuffle service
        "http_address": (str, "localhost:0"),  # /metrics, /healthz; "" = none
        "dir": (str, "./.minijet/task"),
        "slots": (int, 0),                 # 0 = number of cores
        "heartbeat_interval": (Duration, 1.0),
        "task_timeout": (Duration, 600.0),
        "sort_buffer": (Size, 64 * 1024**2),
        "log_retention": (Duration, 86400.0),  # attempt logs kept this long after cleanup
        "fork_server": (bool, True),       # fork TaskHosts from a preloaded process
        "task_memory": (Size, 0),          # per attempt's process tree; 0 = memory / slots
        "log_limit": (Size, 8 * 1024**2),  # per attempt log stream: its head and tail kept
        "isolate_tasks": (bool, True),     # as root: run each task as its job's user...
        "task_user": (str, "nobody"),      # ...or as this one when that has no account here
    },
}

_KINDS = {s: {k: kind.__name__ for k, (kind, _) in keys.items()} for s, keys in SCHEMA.items()}
_TYPE_NAMES = {Size: "a size", Duration: "a duration", int: "an integer", float: "a number",
               str: "a string", bool: "true or false", dict: "a mapping",
               list: "a list of names"}


def _convert(key: str, kind: type, value: Any) -> Any:
    try:
        if kind is Size:
            return parse_size(value)
        if kind is Duration:
            return parse_duration(value)
        if kind is bool:
            if isinstance(value, bool):
                return value
            raise ValueError(f"expected true or false, got {value!r}")
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise ValueError(f"expected an integer, got {value!r}")
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError(f"expected a number, got {value!r}")
            return float(value)
        if kind is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError(f"expected a string, got {value!r}")
            return str(value)
        if kind is dict:
            if not isinstance(value, dict):
                raise ValueError(f"expected a mapping, got {value!r}")
            return {str(k): str(v) for k, v in value.items()}
        if kind is list:   # of names; "a,b" too, as -D gives it
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, list) or not all(
                    isinstance(v, (str, int)) and not isinstance(v, bool) for v in items):
                raise ValueError(f"expected a list of names, got {value!r}")
            return [name for name in (str(v).strip() for v in items) if name]
    except ValueError as e:
        raise ConfigError(f"config key {key}: {e}") from None
    raise AssertionError(kind)


class Config:
    """Validated settings: `config.get("dfs.block_size")` or `config["dfs"]["block_size"]`."""

    def __init__(self, values: dict[str, dict[str, Any]], source: str = "defaults"):
        config_limits.check(values, _KINDS)
        self._values = values
        self.source = source

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self._values[section]

    def get(self, dotted: str) -> Any:
        section, key = dotted.split(".", 1)
        return self._values[section][key]

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self._values)

    def with_overrides(self, overrides: dict[str, Any]) -> "Config":
        """A copy with dotted keys replaced, e.g. {"dataserver.dir": "/data"}."""
        values = self.as_dict()
        for dotted, raw in overrides.items():
            section, key = _split_key(dotted)
            values[section][key] = _convert(dotted, SCHEMA[section][key][0], raw)
        return Config(values, self.source)

    @property
    def host(self) -> str:
        """This process's node identity."""
        return self._values["node"]["host"] or socket.gethostname()

    def rack_of(self, host: str) -> str:
        # the node's own rack is checked first: self.host may ask the OS (a system call), and
        # the scheduler asks for the rack of every replica host of every task
        if self._values["node"]["rack"] and host == self.host:
            return self._values["node"]["rack"]
        return self._values["topology"]["racks"].get(host, "/default-rack")


def _split_key(dotted: str) -> tuple[str, str]:
    section, _, key = dotted.partition(".")
    if section not in SCHEMA or key not in SCHEMA[section]:
        raise ConfigError(f"unknown config key {dotted!r}")
    return section, key


def from_dict(data: dict | None, source: str = "<dict>") -> Config:
    values = {s: {k: copy.deepcopy(d) for k, (_, d) in keys.items()} for s, keys in SCHEMA.items()}
    if data is None:
        return Config(values, source)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the configuration must be a mapping of sections")
    for section, keys in data.items():
        if section not in SCHEMA:
            raise ConfigError(f"{source}: unknown config section {section!r}")
        if keys is None:
            continue
        if not isinstance(keys, dict):
            raise ConfigError(f"{source}: config section {section!r} must be a mapping")
        for key, raw in keys.items():
            if key not in SCHEMA[section]:
                raise ConfigError(f"{source}: unknown config key {section}.{key}")
            values[section][key] = _convert(f"{section}.{key}", SCHEMA[section][key][0], raw)
    return Config(values, source)


def find_config_file(explicit: str | None = None) -> Path | None:
    if explicit:
        return Path(explicit)
    env = os.environ.get("MINIJET_CONF")
    if env:
        return Path(env)
    for candidate in (LOCAL_CLUSTER_FILE, SYSTEM_FILE):
        if candidate.is_file():
            return candidate
    return None


def load(path: str | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load the configuration by the lookup order; `overrides` are dotted keys (-D k=v)."""
    found = find_config_file(path)
    if found is None:
        config = from_dict(None, "defaults")
    else:
        try:
            text = found.read_text()
        except OSError as e:
            raise ConfigError(f"cannot read config file {found}: {e.strerror}") from None
        try:
            data = _parse_yaml(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {found} is not valid YAML: {e}") from None
        config = from_dict(data, str(found))
    return config.with_overrides(overrides or {})


def parse_overrides(pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Turn ["dfs.replication=1", ...] (from -D flags) into a dict; values are YAML scalars."""
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"-D expects key=value, got {pair!r}")
        _split_key(key)
        result[key] = _parse_yaml(value) if value else ""
    return result
