import io
import random

import pytest

from minijet.formats.textinput import SplitReader


def read(data: bytes, start: int, length: int, chunk_size: int = 1 << 20):
    return list(SplitReader(io.BytesIO(data), start, length, chunk_size=chunk_size))


def expected_lines(data: bytes):
    """(offset, line) for every line of `data`, the simple way."""
    out, pos = [], 0
    for raw in data.split(b"\n"):
        out.append((pos, raw.decode("utf-8", "surrogateescape")))
        pos += len(raw) + 1
    if data.endswith(b"\n") or not data:
        out.pop()  # the empty piece after the last newline is not a line
    return out


def all_splits(data: bytes, boundaries, chunk_size=1 << 20):
    records = []
    for start, end in zip(boundaries, boundaries[1:]):
        records.extend(read(data, start, end - start, chunk_size))
    return records


def test_whole_file():
    data = b"one\ntwo\n\nthree"
    assert read(data, 0, len(data)) == [(0, "one"), (4, "two"), (8, ""), (9, "three")]


def test_line_crossing_split_end_is_read_whole_by_its_owner():
    data = b"alpha\nbravo\ncharlie\n"
    assert read(data, 0, 8) == [(0, "alpha"), (6, "bravo")]
    assert read(data, 8, len(data) - 8) == [(12, "charlie")]


def test_split_starting_exactly_at_a_line_start():
    data = b"alpha\nbravo\ncharlie\n"
    assert read(data, 0, 6) == [(0, "alpha")]
    assert read(data, 6, 6) == [(6, "bravo")]
    assert read(data, 12, 100) == [(12, "charlie")]


def test_split_inside_a_line_owns_nothing_when_no_line_starts_in_it():
    data = b"a very long line\nx\n"
    assert read(data, 2, 5) == []
    assert read(data, 0, 1) == [(0, "a very long line")]


def test_empty_lines_and_empty_file():
    assert read(b"\n\n\n", 0, 3) == [(0, ""), (1, ""), (2, "")]
    assert read(b"\n\n\n", 1, 1) == [(1, "")]
    assert read(b"", 0, 10) == []
    assert read(b"abc", 5, 10) == []


def test_last_line_without_newline():
    assert read(b"a\nlast", 0, 6) == [(0, "a"), (2, "last")]
    assert read(b"a\nlast", 1, 5) == [(2, "last")]


def test_crlf_keeps_carriage_return_as_data():
    assert read(b"a\r\nb\r\n", 0, 6) == [(0, "a\r"), (3, "b\r")]


def test_undecodable_bytes_round_trip():
    data = b"caf\xc3\xa9 \xff\xfe\nok\n\xe2\x82\n"
    records = read(data, 0, len(data))
    assert [r[0] for r in records] == [0, 9, 12]
    assert records[0][1] == "café \udcff\udcfe"
    assert "\n".join(line for _, line in records).encode("utf-8", "surrogateescape") + b"\n" == data


def test_line_longer_than_many_chunks():
    data = b"x" * 10_000 + b"\nshort\n" + b"y" * 5000
    assert read(data, 0, 50, chunk_size=64) == [(0, "x" * 10_000)]
    assert read(data, 50, len(data), chunk_size=64) == [(10_001, "short"), (10_007, "y" * 5000)]


def test_progress_and_counters():
    data = b"".join(b"line %d\n" % i for i in range(1000))
    reader = SplitReader(io.BytesIO(data), 0, len(data), chunk_size=512)
    assert reader.progress == 0.0
    seen = []
    for i, _ in enumerate(reader):
        seen.append(reader.progress)
    assert reader.progress == 1.0
    assert seen == sorted(seen) and 0.0 < seen[len(seen) // 2] < 1.0
    assert reader.records == 1000 and reader.bytes_read == len(data)


def random_text(rng: random.Random) -> bytes:
    pieces = []
    for _ in range(rng.randint(0, 60)):
        kind = rng.random()
        if kind < 0.15:
            pieces.append(b"")  # empty line
        elif kind < 0.25:
            pieces.append(bytes(rng.randrange(256) for _ in range(rng.randint(1, 20)))
                          .replace(b"\n", b"\xff"))  # binary junk
        elif kind < 0.35:
            pieces.append("é€😀 ünïcødé\r".encode())
        else:
            pieces.append(b"w" * rng.randint(1, 200))
    text = b"\n".join(pieces)
    if rng.random() < 0.5:
        text += b"\n"
    return text


@pytest.mark.parametrize("seed", range(40))
def test_every_line_exactly_once_over_random_splits(seed):
    rng = random.Random(seed)
    data = random_text(rng)
    want = expected_lines(data)
    for _ in range(15):
        cuts = sorted(rng.sample(range(1, len(data) + 1), min(len(data), rng.randint(0, 8))))
        boundaries = [0] + [c for c in cuts if c < len(data)] + [len(data)]
        chunk = rng.choice([1, 3, 16, 64, 1 << 20])
        assert all_splits(data, sorted(set(boundaries)), chunk) == want


@pytest.mark.parametrize("split_size", [1, 2, 7, 64, 1000])
def test_fixed_size_splits_cover_file(split_size):
    rng = random.Random(split_size)
    data = b"".join(random_text(rng) + b"\n" for _ in range(5))
    boundaries = list(range(0, len(data), split_size)) + [len(data)]
    assert all_splits(data, boundaries, chunk_size=13) == expected_lines(data)


def test_reads_real_files(tmp_path):
    path = tmp_path / "input.txt"
    data = b"".join(b"%d the quick brown fox\n" % i for i in range(20_000))
    path.write_bytes(data)
    records = []
    with open(path, "rb") as f:
        for start in range(0, len(data), 100_000):
            records.extend(SplitReader(f, start, 100_000, chunk_size=4096))
    assert records == expected_lines(data)


def test_reads_little_past_the_split_end():
    data = b"x" * 100 + b"\n" + b"y" * 3_000_000 + b"\n"
    reader = SplitReader(io.BytesIO(data), 0, 50, chunk_size=1 << 20)
    assert list(reader) == [(0, "x" * 100)]
    assert reader.bytes_read < 10_000
