"""A taskserver's heartbeats on one stream (minijet.taskserver.heartbeats), against a real
gRPC server: replies in order on a stream opened once; a heartbeat left unanswered, or a
stream the server ends or fails, raises as a failed call would, and the next heartbeat opens
a new stream."""
import random
import statistics
import threading
import time

import grpc
import pytest

from minijet import config, errors, rpc
from minijet.proto import job_pb2, job_pb2_grpc
from minijet.taskserver.heartbeats import JITTER, HeartbeatStream, heartbeat_wait


class Jobserver(job_pb2_grpc.JobServerServicer):
    """Answers each heartbeat with its count on the stream as the interval; a heartbeat
    from `mute` is never answered, one from `fail` ends its stream with NotFound, one from
    `leave` ends it cleanly."""

    def __init__(self):
        self.streams = 0
        self.lock = threading.Lock()
        self.release = threading.Event()

    def Heartbeats(self, requests, context):
        with self.lock:
            self.streams += 1
        for n, request in enumerate(requests, 1):
            if request.name == "mute":
                self.release.wait(30)
                return
            if request.name == "fail":
                rpc.abort(context, errors.NotFound("no such taskserver"))
            if request.name == "leave":
                return
            yield job_pb2.HeartbeatResponse(heartbeat_interval=n)


@pytest.fixture
def jobserver():
    servicer = Jobserver()
    conf = config.from_dict({})
    server, port = rpc.start_server(
        conf, "127.0.0.1:0",
        [lambda s: job_pb2_grpc.add_JobServerServicer_to_server(servicer, s)])
    channel = rpc.connect(conf, f"127.0.0.1:{port}")
    try:
        yield servicer, job_pb2_grpc.JobServerStub(channel), f"127.0.0.1:{port}"
    finally:
        servicer.release.set()
        channel.close()
        server.stop(0).wait()


def beat(stream, stub, name="h1"):
    return stream.beat(stub, job_pb2.HeartbeatRequest(name=name)).heartbeat_interval


def test_heartbeats_share_one_stream_and_are_answered_in_order(jobserver):
    servicer, stub, address = jobserver
    stream = HeartbeatStream(address, timeout=10)
    assert [beat(stream, stub) for _ in range(50)] == list(range(1, 51))
    assert servicer.streams == 1
    stream.close()


def test_an_unanswered_heartbeat_times_out_and_the_next_opens_a_new_stream(jobserver):
    servicer, stub, address = jobserver
    stream = HeartbeatStream(address, timeout=0.5)
    assert beat(stream, stub) == 1
    started = time.monotonic()
    with pytest.raises(errors.Unavailable, match="did not answer a heartbeat within 0.5s"):
        beat(stream, stub, "mute")
    assert time.monotonic() - started < 5
    assert beat(stream, stub) == 1   # counted from 1 again: a new stream
    assert servicer.streams == 2
    stream.close()


@pytest.mark.parametrize("name, error, message", [
    ("fail", errors.NotFound, "no such taskserver"),
    ("leave", errors.Unavailable, "ended the heartbeat stream")])
def test_a_stream_the_server_ends_raises_and_the_next_heartbeat_opens_another(
        jobserver, name, error, message):
    servicer, stub, address = jobserver
    stream = HeartbeatStream(address, timeout=10)
    assert beat(stream, stub) == 1
    with pytest.raises(error, match=message):
        beat(stream, stub, name)
    assert [beat(stream, stub) for _ in range(2)] == [1, 2]
    assert servicer.streams == 2
    stream.close()


def test_no_jobserver_is_a_clear_unavailable():
    with grpc.insecure_channel("127.0.0.1:1") as channel:
        stream = HeartbeatStream("127.0.0.1:1", timeout=5)
        with pytest.raises(errors.Unavailable, match="cannot reach the jobserver at "
                                                     "127.0.0.1:1: nothing listens there"):
            beat(stream, job_pb2_grpc.JobServerStub(channel))


def test_waits_between_heartbeats_are_jittered_around_the_interval():
    """Within ±10% of the interval, spread over all of it, with the interval as their mean:
    the cluster's rate stays the jobserver's budget."""
    rng = random.Random(7)
    waits = [heartbeat_wait(2.0, rng=rng) for _ in range(20_000)]
    assert 2.0 * (1 - JITTER) <= min(waits) < 1.81 and 2.19 < max(waits) <= 2.0 * (1 + JITTER)
    assert statistics.mean(waits) == pytest.approx(2.0, abs=0.005)


def test_after_failed_heartbeats_the_next_comes_sooner_backing_off_up_to_the_interval():
    rng = random.Random(7)
    for failures, low, high in ((1, 0.1, 0.3), (3, 0.4, 1.2)):
        waits = [heartbeat_wait(2.0, failures, rng) for _ in range(1000)]
        assert low <= min(waits) and max(waits) <= high
    assert heartbeat_wait(2.0, 20, rng) == 2.0
