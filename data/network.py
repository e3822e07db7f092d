"""Data layer: one total deadline for every network fetch, and the errors sources share.

Plain Python, no Streamlit. A client's timeout bounds one socket wait, not a fetch: pybit
sleeps until Bybit's rate-limit reset (an hour, if Bybit says so) and yfinance makes several
calls with 30 s timeouts of its own before it answers. So each fetch runs in a worker thread
and its caller stops waiting at the deadline; code inside the worker reads ``remaining()``
to size its socket timeouts and its own retry sleeps, so an abandoned worker ends soon too.

The deadline is ``SURVEILLANCE_NETWORK_DEADLINE`` seconds (default 20) unless a caller
passes one; ``deadline_scope`` makes several fetches share one total (a cached load that
fills several gaps).
"""
from __future__ import annotations

import contextlib
import math
import os
import queue
import threading
import time
from typing import Any, Callable, Iterator, TypeVar

from requests.adapters import HTTPAdapter
from requests.exceptions import Timeout as RequestsTimeout

from data import DataError

__all__ = ["DEADLINE_ENV", "DEFAULT_DEADLINE", "SourceUnavailableError", "NoDataError",
           "SymbolNotFoundError", "DeadlineError", "resolve_deadline", "remaining",
           "socket_timeout", "sleep_within", "deadline_scope", "run_with_deadline",
           "DeadlineAdapter"]

DEADLINE_ENV = "SURVEILLANCE_NETWORK_DEADLINE"
DEFAULT_DEADLINE = 20.0

T = TypeVar("T")
Progress = Callable[[float, str], None]


class SourceUnavailableError(DataError):
    """The source could not answer now (no network, rate limit, server error): retry later.

    The cache serves what it already holds for the range instead of failing.
    """


class NoDataError(DataError):
    """The source answered but has no bars for the symbol in this range."""


class SymbolNotFoundError(NoDataError):
    """The source said explicitly that it does not know the symbol (never a guess)."""


class DeadlineError(SourceUnavailableError):
    """The fetch did not finish within its total deadline."""


_local = threading.local()


def resolve_deadline(seconds: Any = None) -> float:
    """``seconds``, else the environment's ``SURVEILLANCE_NETWORK_DEADLINE``, else 20."""
    source = "deadline"
    if seconds is None:
        seconds, source = os.environ.get(DEADLINE_ENV, "").strip() or DEFAULT_DEADLINE, DEADLINE_ENV
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(seconds, bool) or not (0 < value < math.inf):
        raise DataError(f"The network {source} must be a positive number of seconds, got "
                        f"{seconds!r}; e.g. 20.")
    return value


def remaining() -> float:
    """Seconds left before this thread's deadline (infinity outside any deadline)."""
    end = getattr(_local, "end", None)
    return math.inf if end is None else end - time.monotonic()


def socket_timeout(limit: float = 10.0) -> float:
    """A per-request timeout: ``limit``, cut to what is left of the deadline (rounded, so
    clients that cache responses by their arguments still find them)."""
    return max(round(min(limit, remaining()), 1), 0.1)


def sleep_within(seconds: float, sleep: Callable[[float], None], error: DataError) -> None:
    """Sleep ``seconds`` unless that would pass the deadline: then raise ``error`` now."""
    if seconds >= remaining():
        raise error
    if seconds > 0:
        sleep(seconds)


def _current() -> tuple[float, float] | None:
    """(end on the monotonic clock, total seconds) of this thread's deadline, if any."""
    end = getattr(_local, "end", None)
    return None if end is None else (end, _local.total)


@contextlib.contextmanager
def deadline_scope(seconds: Any = None) -> Iterator[float]:
    """Every fetch inside shares one total deadline (an inner scope can only shorten it)."""
    before = _current()
    total = resolve_deadline(seconds)
    end = time.monotonic() + total
    if before is not None and before[0] < end:
        end, total = before
    _local.end, _local.total = end, total
    try:
        yield total
    finally:
        _local.end, _local.total = before if before is not None else (None, None)


def run_with_deadline(fetch: Callable[[Progress | None], T], what: str, *,
                      seconds: Any = None, progress: Progress | None = None) -> T:
    """``fetch(progress)`` in a worker thread; its result, or DeadlineError at the deadline.

    ``what`` names the service and symbol for the message ("Yahoo Finance for AAPL").
    Without ``seconds`` the enclosing ``deadline_scope`` applies, else the default.
    Progress calls are relayed to the caller's thread (Streamlit widgets live there).
    Inside a worker, nested calls just run: the outer deadline already bounds them.
    """
    if getattr(_local, "in_worker", False):
        return fetch(progress)
    scope = _current()
    if seconds is None and scope is not None:
        end, total = scope
    else:
        total = resolve_deadline(seconds)
        end = time.monotonic() + total
        if scope is not None and scope[0] < end:
            end, total = scope
    if end <= time.monotonic():
        raise _late(what, total)
    events: queue.Queue = queue.Queue()

    def relay(fraction: float, message: str) -> None:
        events.put(("progress", (fraction, message)))

    def work() -> None:
        _local.end, _local.total, _local.in_worker = end, total, True
        try:
            events.put(("done", fetch(relay if progress is not None else None)))
        except BaseException as exc:  # handed to the caller, who raises it
            events.put(("error", exc))

    threading.Thread(target=work, name=f"fetch {what}", daemon=True).start()
    while True:
        try:
            kind, value = events.get(timeout=max(end - time.monotonic(), 0.0))
        except queue.Empty:
            raise _late(what, total) from None
        if kind == "progress":
            progress(*value)
        elif kind == "error":
            if (isinstance(value, (TimeoutError, RequestsTimeout, SourceUnavailableError))
                    and time.monotonic() >= end - 0.05):
                # A socket timeout cut to the deadline (or a retry the deadline left no time
                # for) races the deadline itself: it is the deadline, and says so.
                raise _late(what, total) from value
            raise value
        else:
            return value


def _late(what: str, total: float) -> DeadlineError:
    return DeadlineError(f"Cannot reach {what}: no answer within {total:g} s (no network, or "
                         f"the service is stalling). Retry later, or allow longer with "
                         f"{DEADLINE_ENV}.")


class DeadlineAdapter(HTTPAdapter):
    """A requests adapter whose timeout never outlasts the calling thread's deadline."""

    def send(self, request: Any, stream: bool = False, timeout: Any = None, **kwargs: Any) -> Any:
        if remaining() < math.inf:
            limit = timeout if isinstance(timeout, (int, float)) else 10.0
            timeout = socket_timeout(limit)
        return super().send(request, stream=stream, timeout=timeout, **kwargs)
