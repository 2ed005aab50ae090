"""gRPC plumbing shared by every daemon and client.

- `start_server` serves servicers with message-size limits, the optional auth token check,
  optional TLS, and MinijetError -> status-code translation.
- `connect` opens a channel with the same limits, credentials and token.
- `call` makes one unary call with a deadline, retrying idempotent calls with back-off, and
  turns a status code back into the MinijetError subclass the server raised.
"""
from __future__ import annotations

import functools
import logging
import time
from concurrent import futures
from typing import Any, Callable

import grpc

from minijet import errors
from minijet.config import Config

log = logging.getLogger(__name__)

TOKEN_HEADER = "x-minijet-token"
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def _options(config: Config) -> list[tuple[str, Any]]:
    size = config["rpc"]["max_message_size"]
    return [("grpc.max_send_message_length", size),
            ("grpc.max_receive_message_length", size),
            ("grpc.so_reuseport", 0)]


class _TokenCheck(grpc.ServerInterceptor):
    def __init__(self, token: str):
        self._token = token

        def deny(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong auth token")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)
        self._deny_stream = grpc.unary_stream_rpc_method_handler(deny)

    def intercept_service(self, continuation, details):
        metadata = dict(details.invocation_metadata or ())
        if metadata.get(TOKEN_HEADER) == self._token:
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
            context.abort(e.code, str(e))

    return wrapper


def start_server(config: Config, address: str,
                 add_servicers: list[Callable[[grpc.Server], None]]) -> tuple[grpc.Server, int]:
    """Start a gRPC server on `address` ("host:port", port 0 = free); return (server, port)."""
    interceptors = []
    token = config["security"]["auth_token"]
    if token:
        interceptors.append(_TokenCheck(token))
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


class _TokenAdder(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def __init__(self, token: str):
        self._token = token

    def _with_token(self, details):
        metadata = list(details.metadata or ()) + [(TOKEN_HEADER, self._token)]
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_token(details), request)


def connect(config: Config, address: str) -> grpc.Channel:
    """A channel to `address` with the configured limits, TLS and auth token."""
    sec = config["security"]
    if sec["tls_ca"] or sec["tls_cert"]:
        ca = open(sec["tls_ca"], "rb").read() if sec["tls_ca"] else None
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(ca),
                                      options=_options(config))
    else:
        channel = grpc.insecure_channel(address, options=_options(config))
    if sec["auth_token"]:
        channel = grpc.intercept_channel(channel, _TokenAdder(sec["auth_token"]))
    return channel


def to_error(e: grpc.RpcError, address: str = "") -> errors.MinijetError:
    """The MinijetError for a failed call (status code -> class, details -> message)."""
    code = e.code()
    if code in RETRYABLE:
        where = f" at {address}" if address else ""
        return errors.Unavailable(f"cannot reach the server{where}: {e.details() or code.name}")
    cls = errors.BY_CODE.get(code, errors.MinijetError)
    return cls(e.details() or code.name)


def call(config: Config, method: Callable, request: Any, *, idempotent: bool,
         timeout: float | None = None, address: str = "") -> Any:
    """One unary call with a deadline; idempotent calls are retried while the peer is
    unreachable. Raises the MinijetError matching the server's status."""
    deadline = timeout if timeout is not None else config["rpc"]["timeout"]
    tries = 1 + (config["rpc"]["retries"] if idempotent else 0)
    backoff = config["rpc"]["retry_backoff"]
    for attempt in range(tries):
        try:
            return method(request, timeout=deadline)
        except grpc.RpcError as e:
            if e.code() not in RETRYABLE or attempt == tries - 1:
                raise to_error(e, address) from None
            log.debug("retrying %s after %s", getattr(method, "_method", method), e.code().name)
            time.sleep(backoff * (2 ** attempt))
    raise AssertionError("unreachable")
