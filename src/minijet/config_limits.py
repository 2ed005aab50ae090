"""The range each configuration value must lie in, checked when a configuration is loaded,
so that a bad value is one line naming the key, the value and what is allowed, never a crash
deep inside a daemon.

A key without a rule of its own gets its type's: a duration more than 0, a count or size
at least 0.
"""
from __future__ import annotations

from typing import Any, Callable

from minijet import net
from minijet.errors import ConfigError, Unavailable

KiB, MiB = 1024, 1024**2
Rule = tuple[Callable[[Any], bool], str]  # (does the value pass, what is allowed)


def _shown(v: float) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def at_least(low: float) -> Rule:
    return (lambda v: v >= low), f"at least {_shown(low)}"


def between(low: float, high: float) -> Rule:
    return (lambda v: low <= v <= high), f"from {_shown(low)} to {_shown(high)}"


POSITIVE: Rule = ((lambda v: v > 0), "more than 0")


def _is_address(v: str) -> bool:
    try:
        return net.split_address(v)[1] <= 65535
    except Unavailable:
        return False


ADDRESS: Rule = _is_address, "host:port, the port from 0 (any free port) to 65535"

# by the type's name in config.SCHEMA
BY_KIND: dict[str, Rule] = {"Duration": POSITIVE, "Size": at_least(0), "int": at_least(0),
                            "float": at_least(0)}

RULES: dict[str, Rule] = {
    "rpc.max_message_size": at_least(1 * MiB),
    "rpc.server_threads": at_least(1),
    "dfs.block_size": at_least(1),  # and a multiple of the checksum chunk: see check()
    "dfs.replication": between(1, 1024),
    "dfs.checksum_chunk_size": between(512, 16 * MiB),
    "dfs.packet_size": between(4 * KiB, 64 * MiB),  # the data-transfer protocol's largest
    "nameserver.checkpoint_edits": at_least(1),
    "nameserver.safemode_threshold": between(0.0, 1.0),
    "nameserver.safemode_extension": at_least(0),   # 0: leave as soon as the threshold is met
    "dfs.client_wait": at_least(0),                 # 0: a call fails once its tries fail
    "jobserver.client_wait": at_least(0),
    "jobserver.max_task_attempts": at_least(1),
    "jobserver.locality_delay": at_least(0),        # 0: no waiting for a local slot
    "jobserver.slow_start": between(0.0, 1.0),
    "jobserver.job_file_replication": at_least(1),
    "jobserver.min_split_size": at_least(1),
    "jobserver.heartbeats_per_second": POSITIVE,
    "jobserver.retained_jobs": at_least(1),
    "dataserver.health_address": ADDRESS,
    "taskserver.sort_buffer": at_least(64 * KiB),
    "taskserver.log_retention": at_least(0),        # 0: removed with the job's files
}


def _refuse(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"config key {key}: {_shown(value)} is not allowed; it must be {allowed}")


def block_size_refusal(block_size: int, chunk_size: int) -> str | None:
    """Why `block_size` is refused, or None: a block is whole checksum chunks (a reader
    checks a block's chunks one by one)."""
    if block_size < chunk_size or block_size % chunk_size:
        return (f"{block_size} is not allowed; it must be a multiple of "
                f"dfs.checksum_chunk_size ({chunk_size} bytes)")
    return None


def check(values: dict[str, dict[str, Any]], kinds: dict[str, dict[str, str]]) -> None:
    """Raise ConfigError for the first value out of its range; `kinds` names each key's
    type (section -> key -> "Duration", "Size", "int", ...)."""
    for section, keys in values.items():
        for key, value in keys.items():
            dotted = f"{section}.{key}"
            rule = RULES.get(dotted) or BY_KIND.get(kinds[section][key])
            if rule is not None and not rule[0](value):
                raise _refuse(dotted, value, rule[1])
    refusal = block_size_refusal(values["dfs"]["block_size"],
                                 values["dfs"]["checksum_chunk_size"])
    if refusal:
        raise ConfigError(f"config key dfs.block_size: {refusal}")
