"""A local OpenAI-compatible HTTP server for tests, on 127.0.0.1, scripted per test.

Each test queues the responses the server gives, in order (body, status, headers, delay),
and afterwards reads the requests it received. A body may also be raw bytes, sent chunked
(no content-length) and dripped a few bytes at a time, to play a huge or a slow answer. The
real ``openai`` client talks to it over HTTP, so retries, timeouts and error mapping are
exercised exactly as in production.
Responses follow the wire format of chat completions (API_FORMATS.md, section 3).
"""
from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.loopback import loopback_server


def chat_completion(content: str | None, *, refusal: str | None = None,
                    model: str = "gpt-4o-mini-2024-07-18", finish_reason: str = "stop") -> dict:
    """A chat.completion body as OpenAI sends it (``content`` is the JSON *string*)."""
    return {
        "id": "chatcmpl-AbC123", "object": "chat.completion", "created": 1717000000,
        "model": model,
        "choices": [{"index": 0, "finish_reason": finish_reason, "logprobs": None,
                     "message": {"role": "assistant", "content": content, "refusal": refusal,
                                 "annotations": []}}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 18, "total_tokens": 138,
                  "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                "accepted_prediction_tokens": 0,
                                                "rejected_prediction_tokens": 0}},
        "service_tier": "default", "system_fingerprint": "fp_0ba0d124f1"}


def error_body(message: str, type_: str = "invalid_request_error", code: str | None = None) -> dict:
    """An error body as OpenAI sends it (``{"error": {...}}``)."""
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


@dataclass
class ScriptedResponse:
    body: dict | bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    chunked: bool = False       # Transfer-Encoding: chunked instead of a content-length
    chunk_size: int = 0         # bytes per write (0: all at once)
    chunk_delay: float = 0.0    # seconds between writes (a slow drip)


@dataclass
class ReceivedRequest:
    """One request as received; header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class StubOpenAIServer:
    """Serve queued responses on ``base_url`` (``http://127.0.0.1:<port>/v1``).

    Use as a context manager. When the queue is empty the server answers 500 with the
    error "no scripted response", so a test that makes an unexpected request fails loudly.
    """

    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self._queue: deque[ScriptedResponse] = deque()
        self._lock = threading.Lock()
        self._server, self._thread = loopback_server(self._handler_class())

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def enqueue(self, body: dict | bytes, status: int = 200, headers: dict[str, str] | None = None,
                delay: float = 0.0, *, chunked: bool = False, chunk_size: int = 0,
                chunk_delay: float = 0.0) -> None:
        with self._lock:
            self._queue.append(ScriptedResponse(body, status, dict(headers or {}), delay,
                                                chunked, chunk_size, chunk_delay))

    def answer(self, content: str | None, **kwargs: Any) -> None:
        """Queue a 200 chat completion with this message content."""
        self.enqueue(chat_completion(content, **kwargs))

    def _next(self) -> ScriptedResponse:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        return ScriptedResponse(error_body("no scripted response", "server_error"), 500)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                self._respond({})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
                self._respond(body)

            def _wait(self, seconds: float) -> None:
                """Sleep, but stop (BrokenPipeError) as soon as the client hangs up, so a test's
                slow answer leaves no thread behind once the client gave up."""
                stop = time.monotonic() + seconds
                while (left := stop - time.monotonic()) > 0:
                    if select.select([self.connection], [], [], min(left, 0.02))[0]:
                        if self.connection.recv(1, socket.MSG_PEEK) == b"":
                            raise BrokenPipeError("client hung up")
                        time.sleep(min(left, 0.02))

            def _respond(self, body: dict) -> None:
                headers = {name.lower(): value for name, value in self.headers.items()}
                with stub._lock:
                    stub.requests.append(ReceivedRequest(self.command, self.path, headers, body))
                scripted = stub._next()
                payload = (scripted.body if isinstance(scripted.body, bytes)
                           else json.dumps(scripted.body).encode())
                try:
                    self._wait(scripted.delay)
                    self.send_response(scripted.status)
                    self.send_header("content-type", "application/json")
                    if scripted.chunked:
                        self.send_header("transfer-encoding", "chunked")
                    else:
                        self.send_header("content-length", str(len(payload)))
                    self.send_header("x-request-id", f"req_{len(stub.requests)}")
                    for name, value in scripted.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    step = scripted.chunk_size or max(len(payload), 1)
                    for start in range(0, len(payload), step):
                        piece = payload[start:start + step]
                        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
                                         if scripted.chunked else piece)
                        self._wait(scripted.chunk_delay)
                    if scripted.chunked:
                        self.wfile.write(b"0\r\n\r\n")
                except OSError:  # BrokenPipeError, ConnectionResetError
                    self.close_connection = True  # the client gave up: nothing to answer

        return Handler

    def __enter__(self) -> "StubOpenAIServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
