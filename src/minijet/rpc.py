"""gRPC plumbing shared by every daemon and client.

- `start_server` serves servicers with message-size limits, the optional auth token check,
  optional TLS, and MinijetError -> status-code translation.
- `connect` opens a channel with the same limits, credentials and token, and for a client
  the name of its user (`caller` reads it on the server: see minijet.acl).
- `call` makes one unary call with a deadline, retrying with exponential back-off and
  jitter (a number of times, or for a bounded time: `wait`) what can safely be tried
  again, and turns a status code back into the MinijetError subclass the server raised.

Which failures are retried: a call that never reached the server (connection refused), or
that the server refused as retryable (`MinijetError.retryable`: it is down to a state that
passes, e.g. startup safe mode), was not carried out, so any call is tried again; a call
whose answer was lost (the connection broke or the deadline passed mid-call) may have been
carried out, so only an idempotent one is. A server's own error carries its class name in
the trailing metadata, so that "cannot reach" is said only of a peer never reached.
"""
from __future__ import annotations

import functools
import logging
import random
import time
from concurrent import futures
from typing import Any, Callable

import grpc

from minijet import errors, tls
from minijet.config import Config

log = logging.getLogger(__name__)

TOKEN_HEADER = "x-minijet-token"
# who the client says its user is (trusted, not proven); binary ("-bin"), as any $USER may
# be, while a plain header takes printable ASCII only
USER_HEADER = "x-minijet-user-bin"
ERROR_HEADER = "x-minijet-error"  # trailing metadata: the MinijetError class the server raised
_TRANSPORT_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
MAX_BACKOFF = 5.0  # seconds: waits between tries grow no longer, so a peer back is seen soon


def _options(config: Config) -> list[tuple[str, Any]]:
    size = config["rpc"]["max_message_size"]
    # gRPC's own reconnection back-off grows to 2 minutes by default: a restarted server
    # would stay unseen long after it is back
    return [("grpc.max_send_message_length", size),
            ("grpc.max_receive_message_length", size),
            ("grpc.so_reuseport", 0),
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2000)]


class _TokenCheck(grpc.ServerInterceptor):
    """Refuses calls without the cluster's token, except to `open_methods` (full names):
    their service checks other credentials itself (a task's: see minijet.jobauth)."""

    def __init__(self, token: str, open_methods: frozenset[str] = frozenset()):
        self._token = token
        self._open = open_methods

        def deny(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong auth token")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)
        self._deny_stream = grpc.unary_stream_rpc_method_handler(deny)

    def intercept_service(self, continuation, details):
        metadata = dict(details.invocation_metadata or ())
        if details.method in self._open or metadata.get(TOKEN_HEADER) == self._token:
            return continuation(details)
        handler = continuation(details)
        if handler is not None and handler.response_streaming:
            return self._deny_stream
        return self._deny


def translate_errors(method: Callable) -> Callable:
    """Decorate a servicer method: a MinijetError becomes its gRPC status and message."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except errors.MinijetError as e:
            context.set_trailing_metadata(((ERROR_HEADER, type(e).__name__),))
            context.abort(e.code, str(e))

    return wrapper


def start_server(config: Config, address: str,
                 add_servicers: list[Callable[[grpc.Server], None]],
                 open_methods: frozenset[str] = frozenset()) -> tuple[grpc.Server, int]:
    """Start a gRPC server on `address` ("host:port", port 0 = free); return (server, port).
    `open_methods` need no auth token: see _TokenCheck."""
    interceptors = []
    token = config["security"]["auth_token"]
    if token:
        interceptors.append(_TokenCheck(token, open_methods))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config["rpc"]["server_threads"]),
        interceptors=interceptors, options=_options(config))
    for add in add_servicers:
        add(server)
    sec = config["security"]
    if sec["tls_cert"]:
        with open(sec["tls_key"], "rb") as k, open(sec["tls_cert"], "rb") as c:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        port = server.add_secure_port(address, creds)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise errors.Unavailable(f"cannot listen on {address}")
    server.start()
    return server, port


class _HeaderAdder(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def __init__(self, headers: list[tuple[str, str | bytes]]):
        self._headers = headers

    def _with_headers(self, details):
        return details._replace(metadata=list(details.metadata or ()) + self._headers)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_headers(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_headers(details), request)


def connect(config: Config, address: str, user: str = "") -> grpc.Channel:
    """A channel to `address` with the configured limits, TLS and auth token; every call on
    it names `user` (a client's, for the servers' permission checks) when given."""
    sec = config["security"]
    if tls.client_uses_tls(sec):
        ca = open(sec["tls_ca"], "rb").read() if sec["tls_ca"] else None
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(ca),
                                      options=_options(config))
    else:
        channel = grpc.insecure_channel(address, options=_options(config))
    headers: list[tuple[str, str | bytes]] = \
        [(TOKEN_HEADER, sec["auth_token"])] if sec["auth_token"] else []
    if user:
        headers.append((USER_HEADER, user.encode()))
    return grpc.intercept_channel(channel, _HeaderAdder(headers)) if headers else channel


def caller(context: grpc.ServicerContext) -> str:
    """The user name the client sent with this call ("" if none: a daemon, an old client)."""
    return dict(context.invocation_metadata() or ()).get(USER_HEADER, b"").decode(
        "utf-8", "replace")


def _server_error(e: grpc.RpcError) -> type[errors.MinijetError] | None:
    """The MinijetError class the server raised, or None when the failure is the transport's."""
    for key, value in e.trailing_metadata() or ():
        if key == ERROR_HEADER:
            return errors.by_name(value, e.code())
    return None


def _unreached(e: grpc.RpcError) -> bool:
    """The call never left this process: the server could not be connected to."""
    return e.code() == grpc.StatusCode.UNAVAILABLE and \
        (e.details() or "").startswith("failed to connect")


def to_error(e: grpc.RpcError, address: str = "") -> errors.MinijetError:
    """The MinijetError for a failed call (status code -> class, details -> message)."""
    code = e.code()
    server_error = _server_error(e)
    if server_error is not None:
        return server_error(e.details() or code.name)
    if code in _TRANSPORT_CODES:
        where = f" at {address}" if address else ""
        if _unreached(e):
            what = f"cannot reach the server{where}"
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
            what = f"no answer in time from the server{where}"
        else:
            what = f"lost the connection to the server{where} during the call"
        return errors.Unavailable(f"{what}: {e.details() or code.name}")
    cls = errors.BY_CODE.get(code, errors.MinijetError)
    return cls(e.details() or code.name)


def retryable(e: grpc.RpcError, idempotent: bool) -> bool:
    """Whether trying the call again is safe and may help (see the module docstring)."""
    server_error = _server_error(e)
    if server_error is not None:
        return server_error.retryable
    if _unreached(e):
        return True
    return idempotent and e.code() in _TRANSPORT_CODES


class Backoff:
    """The waits between tries: exponential from `first`, at most MAX_BACKOFF, each a random
    point in its upper half (jitter: clients failed by one event do not return in step).
    It ends after `retries` waits, or, with `wait`, once `wait` seconds have passed since
    `start` (the last wait is cut short so that the last try comes at that bound)."""

    def __init__(self, first: float, *, retries: int, wait: float | None, start: float,
                 rng: random.Random | None = None):
        self.first, self.retries, self.rng = first, retries, rng or random.Random()
        self.deadline = None if wait is None else start + wait
        self.waits = 0

    def next(self, now: float) -> float | None:
        """Seconds to sleep before the next try, or None: give up."""
        delay = min(MAX_BACKOFF, self.first * 2 ** self.waits) * self.rng.uniform(0.5, 1.0)
        if self.deadline is None:
            if self.waits >= self.retries:
                return None
        elif now >= self.deadline:
            return None
        else:
            delay = min(delay, self.deadline - now)
        self.waits += 1
        return delay


def call(config: Config, method: Callable, request: Any, *, idempotent: bool,
         timeout: float | None = None, address: str = "", wait: float | None = None,
         metadata: tuple[tuple[str, str], ...] = ()) -> Any:
    """One unary call with a deadline (`timeout`, else rpc.timeout), tried again as long as
    that is safe (see the module docstring): up to rpc.retries more times, or with `wait`
    for up to that many seconds. Raises the MinijetError matching the server's status."""
    deadline = timeout if timeout is not None else config["rpc"]["timeout"]
    backoff = Backoff(config["rpc"]["retry_backoff"], retries=config["rpc"]["retries"],
                      wait=wait, start=time.monotonic())
    while True:
        try:
            return method(request, timeout=deadline, metadata=metadata)
        except grpc.RpcError as e:
            delay = backoff.next(time.monotonic()) if retryable(e, idempotent) else None
            if delay is None:
                error = to_error(e, address)
                if backoff.waits:
                    error.args = (f"{error} (tried {backoff.waits + 1} times)",)
                raise error from None
            log.debug("retrying %s in %.2fs after %s", getattr(method, "_method", method),
                      delay, e.code().name)
            time.sleep(delay)
