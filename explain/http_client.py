"""Explanation layer: the HTTP client under the openai client, answers bounded in size and time.

httpx timeouts bound each socket operation, not a request: a server that drips its answer a
few bytes at a time, or sends 30 MB, keeps a worker busy (and its CPU parsing) far past any
deadline. :class:`BoundedClient` therefore reads every answer itself, before the openai
client parses anything: at most :data:`MAX_ANSWER_BYTES` (decoded), and never past the
request's timeout counted from the start of the request. httpx2 logs every request's URL
at INFO; a filter redacts it (:func:`explain.config.redact`) in case it holds a token.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any

import httpx2
import openai

from explain.config import redact

__all__ = ["MAX_ANSWER_BYTES", "AnswerTooLarge", "BoundedClient"]

#: Largest answer read from a model server: a schema answer is a few KiB; reasoning models
#: may add tens of KiB of thinking. Anything larger is refused unread.
MAX_ANSWER_BYTES = 1 << 20
#: Headers that describe the wire body, dropped once the body is read and decoded here.
_WIRE_HEADERS = {"content-encoding", "content-length", "transfer-encoding"}


class _RedactUrls(logging.Filter):
    """Credentials out of httpx2's log lines ("HTTP Request: POST <url> ...")."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        return True


logging.getLogger("httpx2").addFilter(_RedactUrls())


class AnswerTooLarge(httpx2.RequestError):
    """The server's answer is over MAX_ANSWER_BYTES (the openai client reports it as a
    connection error whose ``__cause__`` is this)."""


class BoundedClient(openai.DefaultHttpxClient):
    """The openai client's default HTTP client, reading each answer under a size cap and a
    total deadline (the request's read timeout, from the start of the request)."""

    def send(self, request: httpx2.Request, *, stream: bool = False, **kwargs: Any) -> httpx2.Response:
        if stream:  # never used here; a streamed answer is read by its caller
            return super().send(request, stream=True, **kwargs)
        limit = (request.extensions.get("timeout") or {}).get("read")
        deadline = time.monotonic() + limit if limit else math.inf
        response = super().send(request, stream=True, **kwargs)
        try:
            body = _read_bounded(response, deadline)
        finally:
            response.close()
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _WIRE_HEADERS]
        return httpx2.Response(response.status_code, headers=headers, content=body,
                               request=response.request, extensions=response.extensions)


def _read_bounded(response: httpx2.Response, deadline: float) -> bytes:
    """The decoded body, or AnswerTooLarge / ReadTimeout as soon as either bound is passed."""
    request = response.request
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
        raise AnswerTooLarge(f"answer of {declared} bytes", request=request)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise httpx2.ReadTimeout("deadline passed before the answer", request=request)
    if math.isfinite(remaining):  # a stalled body may not wait past the deadline either
        request.extensions["timeout"] = {**request.extensions.get("timeout", {}), "read": remaining}
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise AnswerTooLarge(f"answer over {MAX_ANSWER_BYTES} bytes", request=request)
        if time.monotonic() > deadline:
            raise httpx2.ReadTimeout("deadline passed while reading the answer", request=request)
        chunks.append(chunk)
    return b"".join(chunks)
