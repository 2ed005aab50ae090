"""Serving a partition of a map output file in chunks."""
import pytest

from minijet.errors import InvalidArgument, NotFound
from minijet.formats import segments
from minijet.formats.segments import partition_chunks
from minijet.taskhost.mapoutput import MapOutputBuffer


def test_partition_is_served_in_bounded_chunks(tmp_path):
    buf = MapOutputBuffer(3, tmp_path / "spills")
    buf.collect_all((f"key{i}", i) for i in range(5000))
    out = tmp_path / "file.out"
    entries = buf.finish(out)
    for partition in range(3):
        records, chunks = partition_chunks(out, partition, "map output", chunk_size=1000)
        chunks = list(chunks)
        assert records == entries[partition].records
        assert all(len(c) <= 1000 for c in chunks) and len(chunks) > 1
        assert b"".join(chunks) == segments.read_map_output_segment(out, partition)


def test_missing_output_and_bad_partition_are_clear_errors(tmp_path):
    with pytest.raises(NotFound, match="map output of a1 is not here"):
        partition_chunks(tmp_path / "file.out", 0, "map output of a1")
    buf = MapOutputBuffer(2, tmp_path / "spills")
    buf.collect_all([("k", 1)])
    buf.finish(tmp_path / "file.out")
    with pytest.raises(InvalidArgument, match="partitions 0..1, not 5"):
        partition_chunks(tmp_path / "file.out", 5, "map output of a1")
