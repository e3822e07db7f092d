"""A misbehaving HTTP server on 127.0.0.1 for tests of network clients (pybit, yfinance).

Each test routes paths to replies: normal answers, slow ones, 429/403/5xx, garbage bodies,
a body trickled one byte at a time (socket timeouts never fire), bytes that are not HTTP,
or no answer at all (the connection is held open until the server stops). As a client's
proxy (``CONNECT``) that never answers it plays a black-holed network. The real client
libraries talk to it over real sockets, so their timeouts, retries and sleeps are exercised
as in production. ``session()`` gives a ``requests.Session`` that sends every URL (also
``https://query2.finance.yahoo.com/...``) to this server, path and query kept.
"""
from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Iterator
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from tests.loopback import loopback_server


@dataclass
class Reply:
    """One answer. ``body`` may be bytes, text or a JSON-able object."""

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0       # seconds before the status line
    hold: bool = False       # never answer; the connection stays open until the server stops
    trickle: float = 0.0     # seconds between body bytes
    raw: bytes | None = None  # sent instead of an HTTP response, then the connection closes

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


def garbage(status: int = 200) -> Reply:
    """A body that is neither JSON nor the expected page."""
    return Reply(status, b"\x00\xff<html>Will be right back\x9c{{{ not json",
                 {"Content-Type": "text/html"})


HOLD = Reply(hold=True)

Handler = Callable[[str, str, dict[str, str]], Reply]


@dataclass
class Received:
    method: str
    path: str
    params: dict[str, str]
    at: float


class ChaosServer:
    """Serve ``route``d replies on ``url``; use as a context manager.

    ``route(prefix, *replies)``: requests whose path starts with ``prefix`` (the longest
    matching prefix wins) get the replies in turn, the last one repeating; a reply may also
    be a callable ``(method, path, params) -> Reply``. Unrouted paths get ``default``
    (404 unless changed). ``requests`` lists what arrived.
    """

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.default: Reply | Handler = Reply(404, {"error": "no route"})
        self._routes: dict[str, list[Reply | Handler]] = {}
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._server, self._thread = loopback_server(self._handler_class())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def route(self, prefix: str, *replies: Reply | Handler) -> None:
        with self._lock:
            self._routes[prefix] = list(replies)

    def everything(self, reply: Reply | Handler) -> None:
        """Answer every path with ``reply``."""
        with self._lock:
            self._routes.clear()
            self.default = reply

    def calls(self, prefix: str = "") -> list[Received]:
        return [r for r in self.requests if r.path.startswith(prefix)]

    def session(self) -> requests.Session:
        """A requests session whose every http(s) URL goes to this server."""
        session = requests.Session()
        session.trust_env = False
        adapter = _Redirect(urlsplit(self.url).netloc)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def _reply_for(self, method: str, path: str, params: dict[str, str]) -> Reply:
        with self._lock:
            self.requests.append(Received(method, path, params, time.monotonic()))
            prefix = max((p for p in self._routes if path.startswith(p)), key=len, default=None)
            if prefix is None:
                reply = self.default
            else:
                queue = self._routes[prefix]
                reply = queue.pop(0) if len(queue) > 1 else queue[0]
        return reply(method, path, params) if callable(reply) else reply

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        chaos = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                self._answer()

            def do_CONNECT(self) -> None:   # a client using this server as its proxy
                self._answer()

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                self._answer()

            def _answer(self) -> None:
                parts = urlsplit(self.path)
                reply = chaos._reply_for(self.command, parts.path, dict(parse_qsl(parts.query)))
                try:
                    self._send(reply)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up: nothing more to send
                self.close_connection = True

            def _send(self, reply: Reply) -> None:
                if reply.hold:
                    chaos.stopping.wait()
                    return
                if reply.delay and chaos.stopping.wait(reply.delay):
                    return
                if reply.raw is not None:
                    self.wfile.write(reply.raw)
                    return
                payload = reply.payload()
                self.send_response(reply.status)
                headers = {"Content-Type": "application/json", **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Connection", "close")
                self.end_headers()
                if not reply.trickle:
                    self.wfile.write(payload)
                    return
                for i in range(len(payload)):
                    if chaos.stopping.wait(reply.trickle):
                        return
                    self.wfile.write(payload[i:i + 1])
                    self.wfile.flush()

        return _Handler

    def __enter__(self) -> "ChaosServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopping.set()   # releases held and trickling connections
        self._server.shutdown()
        self._server.server_close()


def join_fetch_workers(timeout: float = 5.0) -> None:
    """Wait for fetch workers a deadline gave up on (``data.network`` names them "fetch ..."),
    so none is still talking to a test's server or session when the next test starts."""
    end = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name.startswith("fetch ") and thread is not threading.current_thread():
            thread.join(max(end - time.monotonic(), 0.0))


@contextlib.contextmanager
def yfinance_black_hole() -> Iterator[ChaosServer]:
    """yfinance's own (curl_cffi) session behind a proxy that never answers: a black-holed
    network, as behind a firewall that drops packets. Restores yfinance afterwards."""
    import yfinance as yf
    from yfinance.data import YfData

    try:
        with ChaosServer() as proxy:
            proxy.everything(HOLD)
            yf.config.network.proxy = proxy.url
            yield proxy
        join_fetch_workers()   # abandoned workers now meet a closed port, not the internet
    finally:
        yf.config.network.proxy = None
        YfData()._session.proxies = {}


class _Redirect(HTTPAdapter):
    """Send each request to ``netloc`` over plain HTTP, keeping its path and query."""

    def __init__(self, netloc: str) -> None:
        super().__init__()
        self.netloc = netloc

    def send(self, request: Any, **kwargs: Any) -> Any:
        parts = urlsplit(request.url)
        request.url = urlunsplit(("http", self.netloc, parts.path or "/", parts.query, ""))
        return super().send(request, **kwargs)
