import json
import os
import subprocess
import sys

import pytest

from minijet.errors import InvalidArgument
from minijet.taskhost.partition import hash_partition, load_partitioner, str_hash_partitions

KEYS = ["", "the", "Zürich", "h\udcffx", b"raw\x00bytes", 0, 1, -17, 2**70, 2.5, -0.0, None,
        ("a", 1), ("a", ("b", 2.0)), "a" * 1000]


def test_stable_across_processes_with_different_hash_seeds(tmp_path):
    script = tmp_path / "partitions.py"
    script.write_text(
        "import json\n"
        "from minijet.taskhost.partition import hash_partition\n"
        f"KEYS = {KEYS!r}\n"
        "print(json.dumps([hash_partition(k, 97) for k in KEYS]))\n")
    results = []
    for seed in ("1", "2", "12345"):
        out = subprocess.run([sys.executable, str(script)], check=True, capture_output=True,
                             text=True, env=dict(os.environ, PYTHONHASHSEED=seed))
        results.append(json.loads(out.stdout))
    here = [hash_partition(k, 97) for k in KEYS]
    assert results == [here, here, here]
    # str keys really are spread, not all in one partition
    assert len(set(here)) > 5


def test_equal_keys_share_a_partition():
    for a, b in [(1, 1.0), (1, True), (0, -0.0), (0, False), (("x", 1), ("x", 1.0)),
                 ((1, (2,)), (1.0, (2.0,)))]:
        assert a == b
        assert hash_partition(a, 1013) == hash_partition(b, 1013)


def test_in_range_and_spread():
    counts = [0] * 8
    for i in range(8000):
        p = hash_partition(f"word{i}", 8)
        assert 0 <= p < 8
        counts[p] += 1
    assert min(counts) > 800


def test_unhashable_key_type_is_a_clear_error():
    with pytest.raises(InvalidArgument, match="custom partitioner"):
        hash_partition({"a": 1}, 4)


def test_load_partitioner():
    assert load_partitioner(None) is hash_partition
    assert load_partitioner("hash") is hash_partition
    assert load_partitioner("zlib:crc32") is not None
    with pytest.raises(InvalidArgument, match="module:function"):
        load_partitioner("nocolon")
    with pytest.raises(InvalidArgument, match="cannot be loaded"):
        load_partitioner("no_such_module_xyz:f")


def test_bulk_str_partitions_agree_with_hash_partition():
    keys = ["", "a", "Zürich", "h\udcffx", "x" * 500] + [f"w{i}" for i in range(300)]
    assert str_hash_partitions(keys, 7) == [hash_partition(k, 7) for k in keys]
    assert str_hash_partitions(["a", 1], 7) is None
