"""The caller's user name crosses gRPC as the client gives it (rpc.connect -> rpc.caller),
beside the auth token, and a PermissionDenied comes back as itself; on a real in-process
server."""
import pytest

from minijet import config as configmod
from minijet import rpc
from minijet.errors import PermissionDenied
from minijet.proto import job_pb2, job_pb2_grpc


class Echo(job_pb2_grpc.TaskServerServicer):
    """GetLogs answers with the caller's name; refuses "bob"."""

    @rpc.translate_errors
    def GetLogs(self, request, context):
        if rpc.caller(context) == "bob":
            raise PermissionDenied("permission denied: bob may not")
        return job_pb2.LogResponse(logs=[job_pb2.AttemptLog(attempt_id=rpc.caller(context))])


@pytest.fixture(scope="module")
def echo():
    config = configmod.from_dict({"security": {"auth_token": "s3cret"}})
    server, port = rpc.start_server(
        config, "127.0.0.1:0", [lambda s: job_pb2_grpc.add_TaskServerServicer_to_server(Echo(), s)])
    try:
        yield lambda user: ask(config, f"127.0.0.1:{port}", user)
    finally:
        server.stop(0).wait()


def ask(config, address: str, user: str) -> str:
    with rpc.connect(config, address, user) as channel:
        reply = rpc.call(config, job_pb2_grpc.TaskServerStub(channel).GetLogs,
                         job_pb2.LogRequest(job_id="j"), idempotent=True)
    return reply.logs[0].attempt_id


@pytest.mark.parametrize("user", ["alice", "", "josé", "a b"])   # any $USER
def test_the_server_sees_the_clients_user(echo, user):
    assert echo(user) == user


def test_a_refusal_arrives_as_permission_denied(echo):
    with pytest.raises(PermissionDenied, match="bob may not"):
        echo("bob")
