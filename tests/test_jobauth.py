"""A task's credentials instead of the cluster token: signed shuffle fetches, and map-output
frames MAC'd under the job's key so that bytes another job wrote are never unpickled."""
import io
import os
import pickle
import struct

import pytest

from minijet import jobauth
from minijet.errors import ChecksumError
from minijet.formats import segments


@pytest.fixture(autouse=True)
def own_frame_key():
    """Each test sets the frame key it needs; the process's key is back afterwards."""
    saved = segments._mac_key
    yield
    segments._mac_key = saved


def segment(records, job_secret):
    segments.use_job_secret(job_secret)
    f = io.BytesIO()
    w = segments.SegmentWriter(f)
    w.write([k for k, _ in records], [v for _, v in records])
    return f.getvalue(), w.entry()


def test_a_segment_reads_back_under_its_jobs_key_only():
    records = [(f"k{i:03d}", i) for i in range(500)] + [("z", {"a": (1, 2)})]
    data, entry = segment(records, "job A's secret")
    assert list(segments.read_segment(data, entry)) == records
    f = io.BytesIO(data)
    assert list(segments.frames_to_pairs(segments.iter_file_frames(f, 0, len(data)))) == \
        records
    segments.use_job_secret("job B's secret")
    with pytest.raises(ChecksumError, match="fails its MAC"):
        list(segments.read_segment(data, entry))
    with pytest.raises(ChecksumError, match="fails its MAC"):
        list(segments.iter_file_frames(io.BytesIO(data), 0, len(data)))


class Planted:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_pickle_is_refused_before_it_is_decoded(tmp_path):
    """A frame of pickle bytes laid out as the format wants, by someone without the job's
    key: its MAC cannot be right, and the pickle never runs."""
    segments.use_job_secret("the job's secret")
    planted = Planted()
    planted.marker = tmp_path / "pwned"
    body = pickle.dumps(([planted], [1]), protocol=5)
    for mac in (bytes(16), os.urandom(16)):
        frame = struct.pack("<I", len(body)) + mac + body
        with pytest.raises(ChecksumError, match="fails its MAC"):
            list(segments.iter_frames(frame))
    assert not planted.marker.exists()


def test_a_flipped_marshal_flag_or_body_byte_fails_the_mac():
    data, _ = segment([("a", 1), ("b", 2)], "s")
    for pos in (3, len(data) - 1):   # the header's flag bit, the body's last byte
        bad = bytearray(data)
        bad[pos] ^= 0x80 if pos == 3 else 0x01
        with pytest.raises(ChecksumError):
            list(segments.iter_frames(bytes(bad)))


def test_fetch_macs_bind_the_job_the_output_and_the_partition():
    mac = jobauth.fetch_mac("s", "job_1", "job_1_map_00000_0", 2)
    assert jobauth.fetch_allowed("s", "job_1", "job_1_map_00000_0", 2, mac)
    for args in (("t", "job_1", "job_1_map_00000_0", 2),      # another job's secret
                 ("s", "job_2", "job_1_map_00000_0", 2),
                 ("s", "job_1", "job_1_map_00001_0", 2),
                 ("s", "job_1", "job_1_map_00000_0", 3),
                 ("", "job_1", "job_1_map_00000_0", 2)):      # a job this server does not know
        assert not jobauth.fetch_allowed(*args, mac)
