import random
from collections import Counter, defaultdict

import pytest

from minijet.errors import InvalidArgument
from minijet.formats.segments import (index_path, iter_frames, read_index,
                                       read_map_output_segment, read_segment)
from minijet.taskhost.mapoutput import MapOutputBuffer
from minijet.taskhost.partition import hash_partition


def word_pairs(seed: int, n: int):
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(300)] + ["", "é", "h\udcffx"]
    return [(rng.choice(vocab), rng.randint(1, 5)) for _ in range(n)]


def sum_combiner(key, values):
    yield key, sum(values)


def read_partitions(path, partitions):
    entries = read_index(index_path(path))
    assert len(entries) == partitions
    out = []
    for p, entry in enumerate(entries):
        data = read_map_output_segment(path, p)
        records = list(read_segment(data, entry))
        assert len(records) == entry.records
        out.append(records)
    return entries, out


def check_layout(entries, parts, size):
    """Segments are contiguous, in partition order, and cover the file."""
    offset = 0
    for entry in entries:
        assert entry.offset == offset
        offset += entry.length
    assert offset == size
    for p, records in enumerate(parts):
        keys = [k for k, _ in records]
        assert keys == sorted(keys)
        assert all(hash_partition(k, len(parts)) == p for k in keys)


@pytest.mark.parametrize("sort_buffer,partitions", [(64 << 20, 3), (60_000, 3), (64 << 20, 20)])
def test_with_combiner_equals_plain_sums(tmp_path, sort_buffer, partitions):
    pairs = word_pairs(1, 20_000)
    buf = MapOutputBuffer(partitions, tmp_path / "spills", sort_buffer=sort_buffer,
                          combiner=sum_combiner)
    for i in range(0, len(pairs), 7):
        buf.collect_all(iter(pairs[i:i + 7]))
    out = tmp_path / "file.out"
    entries = buf.finish(out)
    got_entries, parts = read_partitions(out, partitions)
    assert got_entries == entries
    check_layout(entries, parts, out.stat().st_size)
    want = Counter()
    for k, v in pairs:
        want[k] += v
    got = {k: v for part in parts for k, v in part}
    assert sum(len(p) for p in parts) == len(got)  # one record per key: fully combined
    assert got == want
    c = buf.counters
    assert c["map_output_records"] == len(pairs)
    assert c["map_output_bytes"] == out.stat().st_size
    assert c["combine_output_records"] < c["combine_input_records"]
    if sort_buffer == 60_000:
        assert c["spills"] >= 3
    else:
        assert c["spills"] == 0
        # one fold at the end: every key with more than one value, a lone value left alone
        sizes = Counter(k for k, _ in pairs).values()
        assert c["combine_input_records"] == sum(n for n in sizes if n > 1)
        assert c["combine_output_records"] == sum(1 for n in sizes if n > 1)
    assert not list((tmp_path / "spills").glob("*"))  # spill files removed
    files = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert files == ["file.out", "file.out.index"]


@pytest.mark.parametrize("sort_buffer", [64 << 20, 60_000])
@pytest.mark.parametrize("partitions", [1, 4])
def test_without_combiner_keeps_every_record(tmp_path, sort_buffer, partitions):
    pairs = word_pairs(2, 5000)
    buf = MapOutputBuffer(partitions, tmp_path / "spills", sort_buffer=sort_buffer)
    for k, v in pairs:
        buf.collect(k, v)
    out = tmp_path / "file.out"
    entries = buf.finish(out)
    _, parts = read_partitions(out, partitions)
    check_layout(entries, parts, out.stat().st_size)
    want = defaultdict(list)
    for k, v in pairs:
        want[k].append(v)
    got = defaultdict(list)
    for part in parts:
        for k, v in part:
            got[k].append(v)
    assert {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in want.items()}
    assert buf.counters["map_output_records"] == len(pairs)
    assert (buf.counters["spills"] >= 3) == (sort_buffer == 60_000)


def test_values_of_any_picklable_type_and_empty_partitions(tmp_path):
    buf = MapOutputBuffer(50, tmp_path)
    buf.collect(("k", 1), {"a": [1, 2]})
    buf.collect(("k", 0), None)
    entries = buf.finish(tmp_path / "out")
    _, parts = read_partitions(tmp_path / "out", 50)
    records = [r for p in parts for r in p]
    assert sorted(records) == [(("k", 0), None), (("k", 1), {"a": [1, 2]})]
    assert sum(1 for e in entries if e.records == 0) >= 48


def test_combiner_may_emit_several_values(tmp_path):
    pairs = word_pairs(3, 4000)

    def split_values(key, values):
        for v in values:
            yield key, v

    buf = MapOutputBuffer(2, tmp_path / "s2", sort_buffer=60_000, combiner=split_values)
    buf.collect_all(pairs)
    buf.finish(tmp_path / "out2")
    _, parts = read_partitions(tmp_path / "out2", 2)
    assert sorted(r for p in parts for r in p) == sorted(pairs)


def test_combiner_changing_the_key_is_a_clear_error(tmp_path):
    def bad(key, values):
        yield key + "!", sum(values)

    buf = MapOutputBuffer(1, tmp_path, combiner=bad)
    buf.collect_all([("a", 1), ("a", 2)])
    with pytest.raises(InvalidArgument, match="must emit the key it was given"):
        buf.finish(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_records_and_keys_are_clear_errors(tmp_path):
    buf = MapOutputBuffer(2, tmp_path)
    buf.collect_all(["ab"])
    with pytest.raises(InvalidArgument, match=r"\(key, value\) pairs"):
        buf.finish(tmp_path / "out")
    buf = MapOutputBuffer(2, tmp_path)
    buf.collect_all([(1, "x"), ("a", "y"), (1, "z")])
    with pytest.raises(InvalidArgument, match="mutually comparable"):
        buf.finish(tmp_path / "out")
    buf = MapOutputBuffer(2, tmp_path, partitioner=lambda key, n: n)
    buf.collect("a", 1)
    with pytest.raises(InvalidArgument, match="partitioner returned 2"):
        buf.finish(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_custom_partitioner(tmp_path):
    buf = MapOutputBuffer(3, tmp_path, partitioner=lambda key, n: len(key) % n,
                          combiner=sum_combiner)
    buf.collect_all([("a", 1), ("bb", 1), ("ccc", 1), ("a", 1), ("dddd", 1)])
    buf.finish(tmp_path / "out")
    _, parts = read_partitions(tmp_path / "out", 3)
    assert parts == [[("ccc", 1)], [("a", 2), ("dddd", 1)], [("bb", 1)]]


def test_large_values_give_several_frames_per_segment(tmp_path):
    buf = MapOutputBuffer(1, tmp_path)
    buf.collect_all((f"k{i:04d}", "v" * 10_000 + str(i)) for i in reversed(range(500)))
    entries = buf.finish(tmp_path / "out")
    _, parts = read_partitions(tmp_path / "out", 1)
    assert [k for k, _ in parts[0]] == [f"k{i:04d}" for i in range(500)]
    assert entries[0].length > 5_000_000
    frames = list(iter_frames(read_map_output_segment(tmp_path / "out", 0)))
    assert len(frames) > 10 and all(len(keys) < 100 for keys, _ in frames[1:])


def test_unpicklable_value_is_a_clear_error(tmp_path):
    buf = MapOutputBuffer(1, tmp_path)
    buf.collect("k", lambda: None)
    with pytest.raises(InvalidArgument, match="must be picklable"):
        buf.finish(tmp_path / "out")


@pytest.mark.parametrize("combiner", [None, sum_combiner])
def test_many_spills_merge_in_passes(tmp_path, monkeypatch, combiner):
    monkeypatch.setattr("minijet.taskhost.mapoutput.MERGE_FACTOR", 3)
    pairs = word_pairs(4, 6000)
    buf = MapOutputBuffer(2, tmp_path / "spills", sort_buffer=30_000, combiner=combiner)
    buf.collect_all(pairs)
    buf.finish(tmp_path / "out")
    assert buf.counters["spills"] >= 10
    _, parts = read_partitions(tmp_path / "out", 2)
    got = defaultdict(list)
    for part in parts:
        assert [k for k, _ in part] == sorted(k for k, _ in part)
        for k, v in part:
            got[k].append(v)
    want = defaultdict(list)
    for k, v in pairs:
        want[k].append(v)
    if combiner is None:
        assert {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in want.items()}
    else:
        assert {k: sum(v) for k, v in got.items()} == {k: sum(v) for k, v in want.items()}
    assert not list((tmp_path / "spills").glob("*"))


def concat_combiner(key, values):
    yield key, "".join(sorted(values))


@pytest.mark.parametrize("sort_buffer", [64 << 20, 20_000])
def test_constant_values_counted_in_mapper_reach_the_combiner_intact(tmp_path, sort_buffer):
    """Copies of the task's first value are counted, not stored: the combiner must still get
    every value emitted, the constant ones and the others, across folds and spills."""
    rng = random.Random(7)
    pairs = [(f"k{rng.randrange(500)}", "a" if rng.random() < 0.9 else rng.choice("bc"))
             for _ in range(30_000)]
    pairs[0] = ("k0", "a")
    buf = MapOutputBuffer(3, tmp_path / "spills", sort_buffer=sort_buffer,
                          combiner=concat_combiner)
    for i in range(0, len(pairs), 1000):
        buf.collect_all(pairs[i:i + 1000])
    out = tmp_path / "file.out"
    buf.finish(out)
    _, parts = read_partitions(out, 3)
    want = defaultdict(list)
    for k, v in pairs:
        want[k].append(v)
    got = {k: sorted(v) for part in parts for k, v in part}
    assert got == {k: sorted(v) for k, v in want.items()}
    assert buf.counters["map_output_records"] == len(pairs)
    assert (buf.counters["spills"] > 0) == (sort_buffer == 20_000)


def test_a_first_value_that_is_not_a_scalar_is_never_counted(tmp_path):
    shared = []   # the same mutable object every time: the combiner must see each append
    def mapper_output():
        for i in range(10):
            shared.append(i)
            yield "k", shared
    seen = []
    def combiner(key, values):
        seen.append(len(values))
        yield key, len(values)
    buf = MapOutputBuffer(1, tmp_path / "spills", combiner=combiner)
    buf.collect_all(mapper_output())
    buf.collect_all([("k", 1), ("k", 1)])
    buf.finish(tmp_path / "file.out")
    _, parts = read_partitions(tmp_path / "file.out", 1)
    assert parts == [[("k", 12)]] and seen == [12]


def constant_pairs(seed: int, n: int):
    """A WordCount map's output: every value the same 1."""
    rng = random.Random(seed)
    return [(f"w{int(rng.paretovariate(1.0)) % 3000}", 1) for _ in range(n)]


@pytest.mark.parametrize("partitions", [1, 3])
def test_only_copies_of_the_constant_fold_as_the_general_path_does(tmp_path, partitions):
    """When every value is the constant (WordCount), the columns come straight from the
    counts: the same records and counters as folding lists, a lone copy left as it is."""
    pairs = constant_pairs(5, 20_000)
    buf = MapOutputBuffer(partitions, tmp_path / "spills", combiner=sum_combiner)
    buf.collect_all(iter(pairs))
    out = tmp_path / "file.out"
    entries = buf.finish(out)
    _, parts = read_partitions(out, partitions)
    check_layout(entries, parts, out.stat().st_size)
    want = Counter(k for k, _ in pairs)
    assert {k: v for part in parts for k, v in part} == want
    assert sum(map(len, parts)) == len(want)
    sizes = want.values()
    c = buf.counters
    assert c["map_output_records"] == len(pairs)
    assert c["combine_input_records"] == sum(n for n in sizes if n > 1)
    assert c["combine_output_records"] == sum(1 for n in sizes if n > 1)


def test_only_copies_of_the_constant_with_a_combiner_of_several_or_no_values(tmp_path):
    pairs = constant_pairs(6, 5_000)
    counts = Counter(k for k, _ in pairs)

    def split_values(key, values):
        for v in values:
            yield key, v

    buf = MapOutputBuffer(2, tmp_path / "s1", combiner=split_values)
    buf.collect_all(iter(pairs))
    buf.finish(tmp_path / "out1")
    _, parts = read_partitions(tmp_path / "out1", 2)
    assert sorted(r for p in parts for r in p) == sorted(pairs)
    assert buf.counters["combine_output_records"] == sum(n for n in counts.values() if n > 1)

    def drop_repeated(key, values):
        return iter(())

    buf = MapOutputBuffer(2, tmp_path / "s2", combiner=drop_repeated)
    buf.collect_all(iter(pairs))
    buf.finish(tmp_path / "out2")
    _, parts = read_partitions(tmp_path / "out2", 2)
    assert sorted(r for p in parts for r in p) == sorted((k, 1) for k, n in counts.items()
                                                         if n == 1)

    def none_or_two(key, values):   # two keys in, two values out: one key gets both
        values = list(values)
        if len(key) % 2:
            yield key, len(values)
            yield key, -len(values)

    buf = MapOutputBuffer(2, tmp_path / "s4", combiner=none_or_two)
    buf.collect_all(iter([("a", 1)] * 3 + [("bb", 1)] * 2 + [("c", 1)]))
    buf.finish(tmp_path / "out4")
    _, parts = read_partitions(tmp_path / "out4", 2)
    assert sorted(r for p in parts for r in p) == [("a", -3), ("a", 3), ("c", 1)]

    def bad(key, values):
        yield key + "!", sum(values)

    buf = MapOutputBuffer(2, tmp_path / "s3", combiner=bad)
    buf.collect_all(iter(pairs))
    with pytest.raises(InvalidArgument, match="must emit the key it was given"):
        buf.finish(tmp_path / "out3")
