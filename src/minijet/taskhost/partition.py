"""The default hash partitioner, stable across processes and machines.

Python's built-in hash() of str and bytes is randomised per process (PYTHONHASHSEED), so
two map tasks would send the same key to different reducers. Instead the key is encoded to
canonical bytes and hashed with CRC-32. Keys that compare equal get the same encoding
(1 == 1.0 == True, and a tuple and a list with equal items), as the shuffle groups them as one.

A partitioner is any callable (key, partitions) -> int in range(partitions); a job names a
custom one as "module:function".
"""
from __future__ import annotations

import importlib
import math
import struct
from itertools import repeat
from operator import methodcaller, mod
from typing import Any, Callable
from zlib import crc32

from minijet.errors import InvalidArgument

Partitioner = Callable[[Any, int], int]

_DOUBLE = struct.Struct("<d")
_STR_TAG_CRC = crc32(b"s")  # continuing from it == crc32(b"s" + encoded key)
_ENCODE_STR = methodcaller("encode", "utf-8", "surrogatepass")


def _encode(key: Any) -> bytes:
    """Canonical bytes of a key: equal keys give equal bytes; a type tag keeps kinds apart."""
    kind = type(key)
    if kind is str:
        return b"s" + key.encode("utf-8", "surrogatepass")
    if kind is bytes:
        return b"b" + key
    if kind is int or kind is bool:
        return b"i%d" % key
    if kind is float:
        if key.is_integer():
            return b"i%d" % int(key)
        if math.isnan(key):
            return b"fnan"
        return b"f" + _DOUBLE.pack(key)
    if kind is tuple or kind is list:
        # Length-prefixed items so ("ab", "c") and ("a", "bc") differ.
        parts = [b"t%d:" % len(key)]
        for item in key:
            item_bytes = _encode(item)
            parts.append(b"%d:" % len(item_bytes))
            parts.append(item_bytes)
        return b"".join(parts)
    if key is None:
        return b"n"
    for base in (str, bytes, int, float, tuple, list):  # subclasses: IntEnum, namedtuple...
        if isinstance(key, base):
            return _encode(base(key))
    raise InvalidArgument(
        f"the default partitioner cannot hash a key of type {kind.__name__} (use str, bytes, "
        "int, float, None or tuples of them, or set a custom partitioner)")


def hash_partition(key: Any, partitions: int) -> int:
    """The default partitioner: CRC-32 of the key's canonical bytes, modulo `partitions`."""
    if type(key) is str:  # the common case, without the general dispatch
        return crc32(key.encode("utf-8", "surrogatepass"), _STR_TAG_CRC) % partitions
    return crc32(_encode(key)) % partitions


def str_hash_partitions(keys: list, partitions: int) -> list[int] | None:
    """hash_partition of every key, all in C, when every key is a str; else None."""
    if not set(map(type, keys)) <= {str}:
        return None
    encoded = map(_ENCODE_STR, keys)
    return list(map(mod, map(crc32, encoded, repeat(_STR_TAG_CRC)), repeat(partitions)))


def load_partitioner(spec: str | None) -> Partitioner:
    """The partitioner named by a job: None or "hash" for the default, else "module:function"."""
    if spec in (None, "", "hash"):
        return hash_partition
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise InvalidArgument(f"partitioner {spec!r}: expected 'hash' or 'module:function'")
    try:
        func = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise InvalidArgument(f"partitioner {spec!r} cannot be loaded: {e}") from None
    if not callable(func):
        raise InvalidArgument(f"partitioner {spec!r} is not callable")
    return func
