"""rpc.call's retry policy: what is retried, for how long, and what the error then says."""
import random

import grpc
import pytest

from minijet import config as configmod
from minijet import rpc
from minijet.errors import FailedPrecondition, NoSpace, Unavailable


class Failure(grpc.RpcError):
    def __init__(self, code, details, server_error=None):
        self._code, self._details = code, details
        self._metadata = ((rpc.ERROR_HEADER, server_error),) if server_error else ()

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._metadata


REFUSED = Failure(grpc.StatusCode.UNAVAILABLE,
                  "failed to connect to all addresses; last error: Connection refused")
LOST = Failure(grpc.StatusCode.UNAVAILABLE, "Socket closed")
SLOW = Failure(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
SAFE_MODE = Failure(grpc.StatusCode.UNAVAILABLE, "nameserver is in safe mode: 0 of 3 blocks",
                    "Unavailable")
MANUAL_SAFE_MODE = Failure(grpc.StatusCode.FAILED_PRECONDITION, "nameserver is in safe mode",
                           "FailedPrecondition")
FULL = Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, "no dataserver has room", "NoSpace")


@pytest.mark.parametrize("failure, idempotent, retried", [
    (REFUSED, False, True),          # never reached: nothing was done
    (SAFE_MODE, False, True),        # refused for a state that passes
    (LOST, True, True),              # the answer was lost: only a repeatable call
    (LOST, False, False),
    (SLOW, True, True),
    (SLOW, False, False),
    (MANUAL_SAFE_MODE, True, False),  # an operator's safe mode lasts
    (FULL, True, False),
])
def test_what_is_retried(failure, idempotent, retried):
    assert rpc.retryable(failure, idempotent) is retried


@pytest.mark.parametrize("failure, cls, words", [
    (REFUSED, Unavailable, "cannot reach the server at ns:1: nothing listens there"),
    (LOST, Unavailable, "lost the connection to the server at ns:1 during the call"),
    (SLOW, Unavailable, "no answer in time from the server at ns:1"),
    (SAFE_MODE, Unavailable, "nameserver is in safe mode"),
    (MANUAL_SAFE_MODE, FailedPrecondition, "nameserver is in safe mode"),
    (FULL, NoSpace, "no dataserver has room"),
])
def test_cannot_reach_only_when_the_server_was_not_reached(failure, cls, words):
    error = rpc.to_error(failure, "ns:1")
    assert type(error) is cls and words in str(error)
    if failure is not REFUSED:
        assert "cannot reach" not in str(error)


def test_backoff_doubles_with_jitter_up_to_a_cap_and_counts_tries():
    b = rpc.Backoff(0.2, retries=3, wait=None, start=0.0, rng=random.Random(1))
    delays = [b.next(0.0) for _ in range(4)]
    assert delays[3] is None
    for n, d in enumerate(delays[:3]):
        assert 0.1 * 2 ** n <= d <= 0.2 * 2 ** n
    capped = rpc.Backoff(1.0, retries=50, wait=None, start=0.0)
    assert max(capped.next(0.0) for _ in range(20)) <= rpc.MAX_BACKOFF


def test_backoff_with_a_wait_ends_at_the_bound_whatever_the_retries():
    b = rpc.Backoff(1.0, retries=0, wait=10.0, start=100.0, rng=random.Random(2))
    now, tries = 100.0, 1
    while (delay := b.next(now)) is not None:
        now += delay
        tries += 1
    assert now == pytest.approx(110.0) and tries > 3


def test_call_retries_until_the_server_answers(monkeypatch):
    monkeypatch.setattr(rpc.time, "sleep", lambda s: None)
    config = configmod.from_dict({"rpc": {"retries": 0}})
    answers = [REFUSED, SAFE_MODE, "done"]

    def method(request, timeout, metadata=()):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert rpc.call(config, method, None, idempotent=False, wait=60) == "done"
    with pytest.raises(Unavailable, match="cannot reach the server"):
        rpc.call(config, lambda r, timeout, metadata=(): (_ for _ in ()).throw(REFUSED), None,
                 idempotent=True)


@pytest.mark.parametrize("details, words", [
    ("failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:1: Socket "
     "closed", "if the cluster uses TLS, set security.tls_ca here too"),   # plain -> TLS
    ("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Tls handshake "
     "failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:100000f7:SSL routines:OPENSSL_internal:"
     "WRONG_VERSION_NUMBER: Invalid certificate verification context: OK",
     "it does not speak TLS"),                                              # TLS -> plain
    ("errors resolving nosuchhost.invalid:9: [field:hostname lookup error:address lookup "
     "failed for nosuchhost.invalid:9: Domain name not found]", "no such host"),
])
def test_why_a_server_was_not_reached_is_said_in_words(details, words):
    """The gRPC strings each failure really gives (grpcio, this machine), and the daemon by
    its role."""
    failure = Failure(grpc.StatusCode.UNAVAILABLE, details)
    assert rpc.retryable(failure, idempotent=False)   # never reached: nothing was done
    error = rpc.to_error(failure, "host1:9100 (jobserver)")
    assert str(error).startswith("cannot reach the jobserver at host1:9100: ")
    assert words in str(error) and "ipv4" not in str(error)
