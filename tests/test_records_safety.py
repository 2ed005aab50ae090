"""Reading a records file never runs code: marshal frames, or pickles of safe value types
only, checked when written and when read (minijet.formats.recordfile)."""
import datetime
import decimal
import io
import os
import pickle
import struct
import uuid
from collections import namedtuple
from fractions import Fraction
from zlib import crc32

import pytest

from minijet.errors import InvalidArgument
from minijet.formats.recordfile import SYNC, RecordsSplitReader, RecordsWriter


def write(pairs) -> bytes:
    f = io.BytesIO()
    w = RecordsWriter(f)
    w.write_all(pairs)
    w.flush()
    return f.getvalue()


def read(data: bytes):
    return list(RecordsSplitReader(io.BytesIO(data), 0, len(data)))


def old_frame(body: bytes) -> bytes:
    """A frame as earlier versions wrote every frame: a pickle body, no flag."""
    return SYNC + struct.pack("<II", len(body), crc32(body)) + body


def test_plain_and_safe_values_round_trip():
    plain = [("word", 3), (b"k", [1.5, None, True]), ((1, "a"), {"x": {2, 3}})]
    safe = [("when", datetime.datetime(2026, 11, 29, 20, 0, tzinfo=datetime.timezone.utc)),
            ("money", decimal.Decimal("1.10")), ("ratio", Fraction(1, 3)),
            ("id", uuid.UUID(int=7)), ("z", 1 + 2j)]
    assert read(write(plain)) == plain
    assert read(write(safe)) == safe
    assert read(write(plain) + write(safe)) == plain + safe


Point = namedtuple("Point", "x y")


def test_a_value_of_another_class_is_refused_when_written():
    with pytest.raises(InvalidArgument, match="Point: a records file may hold only"):
        write([("p", Point(1, 2))])


class Planted:
    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_pickle_is_refused_when_read_and_never_runs(tmp_path):
    planted = Planted()
    planted.marker = tmp_path / "pwned"
    data = old_frame(pickle.dumps((["k"], [planted]), protocol=5))
    with pytest.raises(InvalidArgument, match="posix.system|os.system"):
        read(data)
    assert not planted.marker.exists()


def test_files_of_earlier_versions_read_the_same():
    pairs = [("a", 1), ("b", (2, "x"))]
    keys, values = zip(*pairs)
    data = old_frame(pickle.dumps((list(keys), list(values)), protocol=5))
    assert read(data) == pairs
