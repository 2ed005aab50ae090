"""rpc.AioServer, the jobserver's: coroutine handlers on its loop's thread, plain ones in its
pool, behind the threaded server's token check, with MinijetErrors reaching the client as
themselves; and the health service's Watch ends when its client goes away, on either kind
of server."""
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from minijet import config, errors, rpc
from minijet.health import HEALTH_METHODS, AioHealthService, HealthService

TOKEN = "s3cret"


class Where:
    """Say which thread served each request; NotFound for b"missing"."""

    async def on_loop(self, requests, context):   # a stream, as the jobserver's Heartbeats
        async for request in requests:
            if request == b"missing":
                await rpc.abort_async(context, errors.NotFound("no such thing"))
            yield threading.current_thread().name.encode()

    @rpc.translate_errors
    def in_pool(self, request, context):
        if request == b"missing":
            raise errors.NotFound("no such thing")
        return threading.current_thread().name.encode()


def _add(servicer):
    handler = grpc.method_handlers_generic_handler("test.Where", {
        "OnLoop": grpc.stream_stream_rpc_method_handler(servicer.on_loop),
        "InPool": grpc.unary_unary_rpc_method_handler(servicer.in_pool)})
    return lambda server: server.add_generic_rpc_handlers((handler,))


@pytest.fixture
def served():
    conf = config.from_dict({"security": {"auth_token": TOKEN}})
    stopping = threading.Event()
    server = rpc.AioServer(conf, "127.0.0.1:0",
                           [_add(Where()), AioHealthService(lambda: True, stopping).add_to],
                           open_methods=HEALTH_METHODS)
    channel = rpc.connect(conf, f"127.0.0.1:{server.port}")   # with the token
    try:
        yield conf, channel, server.port
    finally:
        channel.close()
        stopping.set()
        server.stop(grace=1)


def test_coroutines_run_on_the_loop_and_functions_in_the_pool(served):
    conf, channel, _ = served
    on_loop = channel.stream_stream("/test.Where/OnLoop")
    in_pool = channel.unary_unary("/test.Where/InPool")
    assert list(on_loop(iter([b"a", b"b"]), timeout=10)) == [b"grpc-aio"] * 2
    assert in_pool(b"x", timeout=10) not in (b"grpc-aio", b"")
    # a MinijetError reaches the client as itself, from either
    with pytest.raises(grpc.RpcError) as e:
        list(on_loop(iter([b"a", b"missing"]), timeout=10))
    assert isinstance(rpc.to_error(e.value), errors.NotFound)
    with pytest.raises(errors.NotFound, match="no such thing"):
        rpc.call(conf, in_pool, b"missing", idempotent=True)


def test_calls_without_the_token_are_refused_but_health_probes_are_not(served):
    _, _, port = served
    with grpc.insecure_channel(f"127.0.0.1:{port}") as bare:
        calls = [lambda: list(bare.stream_stream("/test.Where/OnLoop")(iter([b"x"]),
                                                                        timeout=10)),
                 lambda: bare.unary_unary("/test.Where/InPool")(b"x", timeout=10)]
        for call in calls:
            with pytest.raises(grpc.RpcError) as e:
                call()
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        reply = health_pb2_grpc.HealthStub(bare).Check(health_pb2.HealthCheckRequest(),
                                                       timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("kind", ["threaded", "aio"])
def test_a_health_watch_ends_on_the_server_when_its_client_goes_away(kind):
    conf = config.from_dict({})
    looks = []
    stopping = threading.Event()
    ready = lambda: looks.append(time.monotonic()) or True   # noqa: E731
    if kind == "aio":
        server = rpc.AioServer(conf, "127.0.0.1:0", [AioHealthService(ready, stopping).add_to])
        port, stop = server.port, server.stop
    else:
        server, port = rpc.start_server(conf, "127.0.0.1:0",
                                        [HealthService(ready, stopping).add_to])
        stop = lambda grace: server.stop(grace).wait()   # noqa: E731
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(), timeout=1.0)
            with pytest.raises(grpc.RpcError) as e:
                for reply in watch:
                    assert reply.status == health_pb2.HealthCheckResponse.SERVING
            assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # the server's loop looks at ready() every WATCH_POLL while the stream is open:
        # once it has seen the end, the looks stop
        deadline = time.monotonic() + 10
        while True:
            before = len(looks)
            time.sleep(1.5)
            if len(looks) == before:
                break
            assert time.monotonic() < deadline, "the Watch kept running after its client left"
    finally:
        stopping.set()
        stop(1)
