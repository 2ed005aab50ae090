"""A daemon's gRPC server keeps the calls that wait for it: gRPC core would cancel some
past 1,000 waiting and all past 3,000 (a big cluster's heartbeats when the jobserver falls
behind)."""
import subprocess
import sys

import grpc
import pytest

WAITING = 2_500   # well past gRPC's default of 1,000, where it starts shedding

# A server whose first call keeps Python busy for 2 s (the interpreter switching threads only
# every 10 s), as a jobserver under load is: meanwhile its server thread cannot take calls
# from gRPC core, where they queue.
SERVER = """
import sys, time
import grpc
from minijet import config, rpc

def busy(request, context):
    if request == b"first":
        sys.setswitchinterval(10)
        end = time.monotonic() + 2
        while time.monotonic() < end:
            pass
        sys.setswitchinterval(0.005)
    return request

async def busy_on_loop(request, context):   # and the aio server's loop with it
    return busy(request, context)

aio = sys.argv[1] == "aio"
handler = grpc.method_handlers_generic_handler("test.Busy", {
    "Busy": grpc.unary_unary_rpc_method_handler(busy_on_loop if aio else busy)})
add = [lambda s: s.add_generic_rpc_handlers((handler,))]
if aio:
    server = rpc.AioServer(config.from_dict({}), "127.0.0.1:0", add)
    port = server.port
else:
    server, port = rpc.start_server(config.from_dict({}), "127.0.0.1:0", add)
print(port, flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("kind", ["threaded", "aio"])
def test_calls_waiting_for_a_busy_server_are_served_not_cancelled(kind):
    server = subprocess.Popen([sys.executable, "-c", SERVER, kind], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/test.Busy/Busy")
            first = call.future(b"first", timeout=60)
            waiting = [call.future(str(i).encode(), timeout=60) for i in range(WAITING)]
            codes = {}
            for f in waiting:
                code = f.code()
                codes[code] = codes.get(code, 0) + 1
            assert codes == {grpc.StatusCode.OK: WAITING}
            assert first.result() == b"first"
    finally:
        server.kill()
        server.wait()
