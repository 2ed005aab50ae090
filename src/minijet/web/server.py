"""One daemon's HTTP server: its pages, /metrics and /healthz, in a thread of its own.

The stdlib's ThreadingHTTPServer: pages are few and small, so no framework. A page is a
function of the query string (one value per parameter) returning HTML; NotFound and
InvalidArgument raised by it become 404 and 400. With security.auth_token set every request
must carry the token, as the password of HTTP basic auth (any user name: browsers ask for
it) or as `Authorization: Bearer TOKEN` (what Prometheus' bearer_token sends). With
security.tls_cert set the server speaks HTTPS with the daemons' certificate.

/healthz answers 200 `SERVING` while the daemon can do its job (the same test as its gRPC
health service, minijet.health) and 503 `NOT_SERVING` otherwise. Like the gRPC health
check it needs no token: a probe (a load balancer, Kubernetes, `minijet cluster status`)
holds none, and the answer tells nothing but that word.
"""
from __future__ import annotations

import base64
import hmac
import logging
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qsl, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from minijet import net, tls
from minijet.config import Config
from minijet.errors import InvalidArgument, NotFound, Unavailable
from minijet.health import HEALTH_PATH
from minijet.web import html

log = logging.getLogger("minijet.web")

Page = Callable[[dict[str, str]], str]


class WebServer:
    """Serves `pages` (path -> Page), with a `registry` /metrics, and /healthz from `ready()`
    (by default: always, for a daemon that can do its job once it serves) on the address of
    config key `key` ("" = no server: start() does nothing)."""

    def __init__(self, config: Config, key: str, pages: dict[str, Page],
                 registry: CollectorRegistry | None = None,
                 ready: Callable[[], bool] = lambda: True):
        self.config = config
        self.key = key
        self.bind = config.get(key)
        self.pages = pages
        self.registry = registry
        self.ready = ready
        self.token = config["security"]["auth_token"]
        self._tls = tls.server_context(config["security"])
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""    # once started: where a browser finds the pages

    def start(self) -> None:
        if not self.bind:
            return
        host, port = net.split_address(self.bind)
        try:
            self._httpd = _Server((host, port), _handler_for(self))
        except OSError as e:
            raise Unavailable(f"cannot serve web pages on {self.bind} (config key {self.key}):"
                              f" {e.strerror or e}") from None
        if self._tls is not None:
            self._httpd.socket = self._tls.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False)
            # (the handshake then happens in the request's thread, not in accept())
        self.url = web_url(self.config, net.join_address(host, self._httpd.server_address[1]),
                           socket.gethostname())
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="web",
                                        daemon=True)
        self._thread.start()
        log.info("web pages at %s%s", self.url, " (token required)" if self.token else "")

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()

    def authorized(self, header: str) -> bool:
        if not self.token:
            return True
        scheme, _, credential = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                credential = base64.b64decode(credential, validate=True).decode().partition(
                    ":")[2]
            except (ValueError, UnicodeDecodeError):
                return False
        elif scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(credential.encode(), self.token.encode())


def web_url(config: Config, address: str, any_host: str = "localhost") -> str:
    """The URL of the pages served on `address` as configured ("" when there are none, or
    when its port is chosen at start: 0); an any-interface host is shown as `any_host`."""
    if not address:
        return ""
    host, port = net.split_address(address)
    if not port:
        return ""
    scheme = "https" if tls.client_uses_tls(config["security"]) else "http"
    return f"{scheme}://{net.join_address(any_host if net.is_any_address(host) else host, port)}/"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler):
        # an IPv6 literal needs an IPv6 socket; "" listens on every IPv4 interface
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)


def _handler_for(web: WebServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "minijet"

        def do_GET(self) -> None:
            if urlsplit(self.path).path == HEALTH_PATH:   # open to a probe: no token
                serving = web.ready()
                self._send(HTTPStatus.OK if serving else HTTPStatus.SERVICE_UNAVAILABLE,
                           "text/plain; charset=utf-8",
                           b"SERVING\n" if serving else b"NOT_SERVING\n")
                return
            if not web.authorized(self.headers.get("Authorization", "")):
                self._send(HTTPStatus.UNAUTHORIZED, "text/plain; charset=utf-8",
                           b"this cluster requires its token (security.auth_token)\n",
                           {"WWW-Authenticate": 'Basic realm="minijet", charset="UTF-8"'})
                return
            url = urlsplit(self.path)
            if url.path == "/metrics" and web.registry is not None:
                encode, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._send(HTTPStatus.OK, content_type, encode(web.registry))
                return
            page = web.pages.get(url.path)
            try:
                if page is None:
                    raise NotFound(f"no page {url.path}")
                status, body = HTTPStatus.OK, page(dict(parse_qsl(url.query)))
            except NotFound as e:
                status, body = HTTPStatus.NOT_FOUND, html.error_page("Not found", str(e))
            except InvalidArgument as e:
                status, body = HTTPStatus.BAD_REQUEST, html.error_page("Bad request", str(e))
            except Exception:   # a bug in a page: the daemon serves on
                log.exception("page %s failed", self.path)
                status, body = HTTPStatus.INTERNAL_SERVER_ERROR, html.error_page(
                    "Internal error", "this page failed; the daemon's log says why")
            self._send(status, "text/html; charset=utf-8", body.encode())

        def _send(self, status: HTTPStatus, content_type: str, body: bytes,
                  headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    return Handler
