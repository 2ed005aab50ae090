"""gRPC plumbing shared by every daemon and client.

- `start_server` serves servicers with message-size limits, the optional auth token check
  (with methods open to other credentials their service checks, and a Guard: a second way
  in, e.g. a job's DFS credential), optional TLS, and MinijetError -> status-code
  translation. `AioServer` is the same on gRPC's asyncio server, for a daemon whose hot
  call is a coroutine (the jobserver's heartbeat streams); `abort_async` is its abort.
- `connect` opens a channel with the same limits, credentials and token (or other headers
  that prove who calls), and for a client the name of its user (`caller` reads it on the
  server: see minijet.acl).
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

import asyncio
import functools
import hmac
import logging
import random
import threading
import time
from concurrent import futures
from typing import Any, Callable, Protocol

import grpc
import grpc.aio

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


# gRPC core sheds calls waiting for a server thread past 1,000 (some) and 3,000 (all), as
# CANCELLED: a jobserver of 4,000 taskservers, each with a heartbeat in flight, lost 6% of
# them whenever it fell behind. Each client has a call or a few in flight, so the queue is
# bounded by the cluster's size; a waiting call still ends at its own deadline.
_SERVER_QUEUE = [("grpc.server.max_pending_requests", 50_000),
                 ("grpc.server.max_pending_requests_hard_limit", 100_000)]


class Guard(Protocol):
    """A server's way in besides the cluster's auth token: it sees every unary call that
    does not carry the token, with its request, and refuses one by raising a MinijetError
    (Unauthenticated: unknown caller; PermissionDenied: a known caller out of bounds)."""

    def check(self, metadata: dict[str, str], method: str, request: Any) -> None: ...


def _same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


class _AuthCheck(grpc.ServerInterceptor):
    """Lets through a call carrying the auth token, and any call to `open_methods` (full
    names: their service checks other credentials itself, a task's: see minijet.jobauth);
    hands other unary calls to the guard (checked once the request is decoded); refuses
    the rest, with `deny` (an aio server's refusal must be a coroutine: _deny_async)."""

    def __init__(self, token: str, open_methods: frozenset[str], guard: Guard | None,
                 deny: Callable | None = None):
        self._token = token
        self._open = open_methods
        self._guard = guard
        deny = deny or _deny
        # a refusal of the method's own kind (request, response streamed?)
        self._deny = {(False, False): grpc.unary_unary_rpc_method_handler(deny),
                      (False, True): grpc.unary_stream_rpc_method_handler(deny),
                      (True, False): grpc.stream_unary_rpc_method_handler(deny),
                      (True, True): grpc.stream_stream_rpc_method_handler(deny)}

    def intercept_service(self, continuation, details):
        metadata = dict(details.invocation_metadata or ())
        handler = continuation(details)
        if details.method in self._open or \
                _same_secret(metadata.get(TOKEN_HEADER, ""), self._token):
            return handler
        kind = (False, False) if handler is None else (handler.request_streaming,
                                                       handler.response_streaming)
        if kind != (False, False) or self._guard is None:
            return self._deny[kind]
        return self._guarded(handler, metadata, details.method.rsplit("/", 1)[-1])

    def _guarded(self, handler, metadata: dict[str, str], method: str):
        guard, serve = self._guard, handler.unary_unary

        def guarded(request, context):
            try:
                guard.check(metadata, method, request)
            except errors.MinijetError as e:
                abort(context, e)
            return serve(request, context)

        return grpc.unary_unary_rpc_method_handler(
            guarded, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)


def _deny(request, context):
    context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong auth token")


async def _deny_async(request, context):   # an aio server's (a plain one hangs a stream)
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong auth token")


def abort(context: grpc.ServicerContext, e: errors.MinijetError) -> None:
    """End the call with the status of `e`, naming its class for the client (see call)."""
    context.set_trailing_metadata(((ERROR_HEADER, type(e).__name__),))
    context.abort(e.code, str(e))


async def abort_async(context: grpc.aio.ServicerContext, e: errors.MinijetError) -> None:
    """abort, from a coroutine handler of an aio server."""
    context.set_trailing_metadata(((ERROR_HEADER, type(e).__name__),))
    await context.abort(e.code, str(e))


def translate_errors(method: Callable) -> Callable:
    """Decorate a servicer method: a MinijetError becomes its gRPC status and message."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except errors.MinijetError as e:
            abort(context, e)

    return wrapper


def start_server(config: Config, address: str,
                 add_servicers: list[Callable[[grpc.Server], None]],
                 open_methods: frozenset[str] = frozenset(),
                 guard: Guard | None = None,
                 interceptors: list[grpc.ServerInterceptor] = ()) -> tuple[grpc.Server, int]:
    """Start a gRPC server on `address` ("host:port", port 0 = free); return (server, port).
    With an auth token configured, a call must carry it, be to one of `open_methods` or
    pass `guard` (see _AuthCheck); without one, every call is let in (an open cluster).
    `interceptors` see the calls let in (minijet.web.metrics.RpcMeter)."""
    token = config["security"]["auth_token"]
    interceptors = ([_AuthCheck(token, open_methods, guard)] if token else []) + list(
        interceptors)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config["rpc"]["server_threads"]),
        interceptors=interceptors, options=_options(config) + _SERVER_QUEUE)
    for add in add_servicers:
        add(server)
    port = _listen(server, config, address)
    server.start()
    return server, port


def _listen(server, config: Config, address: str) -> int:
    sec = config["security"]
    if sec["tls_cert"]:
        with open(sec["tls_key"], "rb") as k, open(sec["tls_cert"], "rb") as c:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        port = server.add_secure_port(address, creds)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise errors.Unavailable(f"cannot listen on {address}")
    return port


class AioServer:
    """A grpc.aio server on an event loop in a thread of its own, for a daemon with one hot
    call (the jobserver's Heartbeats). Its coroutine handlers run on that thread: no hand-off
    to a pool thread and back per call, which is most of what the threaded server costs in
    Python. Handlers that are plain functions run in a pool of `rpc.server_threads` threads
    (long polls, calls that block), as on the threaded server. The same options and token
    check as start_server."""

    def __init__(self, config: Config, address: str,
                 add_servicers: list[Callable[[grpc.Server], None]],
                 open_methods: frozenset[str] = frozenset()):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="grpc-aio",
                                        daemon=True)
        self._thread.start()
        token = config["security"]["auth_token"]
        interceptors = [_AioAuthCheck(_AuthCheck(token, open_methods, None, _deny_async))
                        ] if token else []
        try:
            self._server, self.port = self._run(
                self._start(config, address, add_servicers, interceptors))
        except BaseException:
            self._close_loop()
            raise

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    async def _start(self, config, address, add_servicers, interceptors):
        server = grpc.aio.server(
            futures.ThreadPoolExecutor(max_workers=config["rpc"]["server_threads"]),
            interceptors=interceptors, options=_options(config) + _SERVER_QUEUE)
        for add in add_servicers:
            add(server)
        port = _listen(server, config, address)
        await server.start()
        return server, port

    def stop(self, grace: float) -> None:
        """Stops serving (calls in flight get `grace` seconds) and ends the loop's thread."""
        self._run(self._server.stop(grace))
        self._close_loop()

    def _close_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class _AioAuthCheck(grpc.aio.ServerInterceptor):
    """_AuthCheck on an aio server: a call it lets through keeps the server's own handler
    (a coroutine stays one); without a guard, it wraps none."""

    def __init__(self, check: _AuthCheck):
        self._check = check

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        return self._check.intercept_service(lambda _: handler, details)


class _HeaderAdder(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                   grpc.StreamStreamClientInterceptor):
    def __init__(self, headers: list[tuple[str, str | bytes]]):
        self._headers = headers

    def _with_headers(self, details):
        return details._replace(metadata=list(details.metadata or ()) + self._headers)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_headers(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_headers(details), request)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._with_headers(details), requests)


def connect(config: Config, address: str, user: str = "",
            credential: list[tuple[str, str]] | None = None) -> grpc.Channel:
    """A channel to `address` with the configured limits, TLS and auth token, or, given
    `credential` (headers a server's Guard checks, e.g. a job's DFS credential), with those
    instead of the token; every call on it names `user` (a client's, for the servers'
    permission checks) when given."""
    sec = config["security"]
    if tls.client_uses_tls(sec):
        ca = open(sec["tls_ca"], "rb").read() if sec["tls_ca"] else None
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(ca),
                                      options=_options(config))
    else:
        channel = grpc.insecure_channel(address, options=_options(config))
    headers: list[tuple[str, str | bytes]] = list(credential) if credential is not None \
        else [(TOKEN_HEADER, sec["auth_token"])] if sec["auth_token"] else []
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
    """The call never left this process: the server could not be connected to (or its
    name not resolved)."""
    return e.code() == grpc.StatusCode.UNAVAILABLE and \
        (e.details() or "").startswith(("failed to connect", "errors resolving"))


def _why_unreached(details: str) -> str:
    """gRPC's reason for not connecting, in words."""
    if "Connection refused" in details:
        return "nothing listens there (connection refused)"
    if details.startswith("errors resolving"):
        return "no such host"
    if "WRONG_VERSION_NUMBER" in details:
        return "it does not speak TLS, and this client's security.tls_ca/tls_cert ask for it"
    if "handshake failed" in details.lower():
        return f"the TLS handshake failed ({details.rsplit(': ', 2)[-2]})"
    if details.endswith("Socket closed"):
        return ("it closed the connection at once: if the cluster uses TLS, set "
                "security.tls_ca here too")
    return details


def _peer(address: str) -> str:
    """'the jobserver at host:port' from the 'host:port (jobserver)' callers pass."""
    if not address:
        return "the server"
    where, _, role = address.partition(" (")
    return f"the {role.rstrip(')')} at {where}" if role else f"the server at {where}"


def to_error(e: grpc.RpcError, address: str = "") -> errors.MinijetError:
    """The MinijetError for a failed call (status code -> class, details -> message)."""
    code = e.code()
    server_error = _server_error(e)
    if server_error is not None:
        return server_error(e.details() or code.name)
    if code in _TRANSPORT_CODES:
        peer = _peer(address)
        if _unreached(e):
            return errors.Unavailable(f"cannot reach {peer}: {_why_unreached(e.details())}")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            what = f"no answer in time from {peer}"
        else:
            what = f"lost the connection to {peer} during the call"
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
