"""Explanation layer: turn detected events and their evidence into explanations. No Streamlit.

``explain_events`` asks an OpenAI-compatible model when one is configured (key or base URL)
and falls back to the built-in, rule-based explainer whenever there is no model or the model
fails; the reason is recorded in ``fallback_reason``. Every explanation is checked against
the evidence (``grounded``); an ungrounded answer's own risk is ignored (``risk_note`` says
so) and the statistical severity stands. Results are cached in ``store.explanations``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import numbers
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from events.news_context import NEWS_AFTER_HOURS, NEWS_WINDOW_HOURS, readable_headlines
from explain.builtin import (
    build_evidence,
    explain_builtin,
    normalise_headlines,
    recommended_action,
    to_utc,
)
from explain.config import ExplainerConfig, load_config
from explain.grounding import check_grounding, ignored_risk_note, instruction_like
from explain.llm import (
    PROMPT_VERSION,
    LlmOutcome,
    event_budget,
    make_client,
    prompt_headlines,
    request_explanation,
    test_connection,
)
from store.explanations import get_cached_many, put_cached, put_cached_many

__all__ = ["explain_events", "ExplainerConfig", "load_config", "test_connection",
           "PROMPT_VERSION", "BUILTIN_SOURCE", "OUTPUT_COLUMNS", "headlines_near", "is_lasting"]

log = logging.getLogger(__name__)

BUILTIN_SOURCE = "built-in"
#: Columns explain_events adds, in this order.
OUTPUT_COLUMNS = ["explanation", "explanation_source", "explanation_kind", "confidence",
                  "risk_score", "recommended_action", "key_evidence", "grounded",
                  "fallback_reason", "ungrounded_numbers", "combined_risk", "risk_note"]
#: Seconds allowed beyond the per-event budgets before waiting on the workers stops.
_GRACE_S = 1.0


def headlines_near(event: Mapping[str, Any],
                   headlines: pd.DataFrame | None) -> list[dict[str, Any]] | None:
    """Headlines from 6 h before the event's start to 1 h after its end, closest to the start
    first (NEWS_WINDOW_HOURS, NEWS_AFTER_HOURS: the window of add_news_context).

    With no headlines frame, the event's own ``headlines`` column (" | "-joined) is used.
    A ``symbol`` column in the frame, when present, keeps rows of the event's symbol and
    rows without one (market-wide news). None means news was not checked at all (no frame
    and no ``headlines``/``headline_count`` in the event); [] means none was found.
    """
    if headlines is None:
        joined = event.get("headlines")
        if isinstance(joined, str):
            return normalise_headlines(part for part in joined.split(" | ") if part.strip())
        return [] if "headlines" in event or "headline_count" in event else None
    return HeadlineWindow(headlines).near(event)


class HeadlineWindow:
    """Headlines indexed by time once, so each event's window is two binary searches."""

    def __init__(self, headlines: pd.DataFrame) -> None:
        frame = readable_headlines(headlines)
        self._ns = frame["timestamp"].to_numpy(dtype="datetime64[ns]").astype("int64")
        self._records = frame.assign(time=frame["timestamp"]).to_dict("records")
        self._has_symbol = "symbol" in frame.columns

    def near(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        start, end = to_utc(event.get("start")), to_utc(event.get("end"))
        if start is None or not self._records:
            return []
        end = end or start
        hour, edge = 3_600_000_000_000, np.iinfo(np.int64)   # ns; bars may lie near 1677 or 2262
        lo = self._ns.searchsorted(max(start.value - NEWS_WINDOW_HOURS * hour, edge.min + 1), side="left")
        hi = self._ns.searchsorted(min(end.value + NEWS_AFTER_HOURS * hour, edge.max), side="right")
        rows = self._records[lo:hi]
        symbol = event.get("symbol")
        if self._has_symbol and symbol:
            rows = [r for r in rows if not isinstance(r["symbol"], str) or r["symbol"] in ("", symbol)]
        rows = sorted(rows, key=lambda r: abs(r["time"] - start))
        return normalise_headlines(rows)


def _candle_context(event: Mapping[str, Any], candles: pd.DataFrame | None) -> dict[str, float]:
    """24 h change to the event's end and the volatility of the 20 returns before its start (%).

    Empty when the candles are missing, of another symbol, or too short.
    """
    if candles is None or candles.empty:
        return {}
    symbol = candles.attrs.get("symbol")
    if symbol and event.get("symbol") and symbol != event["symbol"]:
        return {}
    start, end = to_utc(event.get("start")), to_utc(event.get("end"))
    if start is None:
        return {}
    index, close = candles.index, candles["close"].to_numpy()
    context: dict[str, float] = {}
    upto_end = index.searchsorted(end or start, side="right")          # bars up to the end
    before = index.searchsorted((end or start) - pd.Timedelta(hours=24), side="right")
    if upto_end and before and close[before - 1] > 0:
        context["change_24h_pct"] = 100.0 * (close[upto_end - 1] / close[before - 1] - 1.0)
    upto_start = index.searchsorted(start, side="right") - 1            # bars before the start
    window = close[max(0, upto_start - 21):upto_start]
    returns = window[1:] / window[:-1] - 1.0
    returns = returns[np.isfinite(returns)]
    if len(returns) >= 5:
        context["trailing_volatility_pct"] = 100.0 * float(np.std(returns, ddof=1))
    return context


@dataclass(frozen=True)
class _Event:
    """One row prepared for explaining: its evidence, nearby headlines and cache fingerprint."""

    row: dict[str, Any]
    near: list[dict[str, Any]] | None
    evidence: dict[str, Any]
    fingerprint: str

    @property
    def event_id(self) -> str:
        value = self.row.get("event_id")
        return "" if value is None or pd.isna(value) else str(value)

    def builtin(self, reason: str) -> dict[str, Any]:
        """Built-in text for this event, marked with why the model was not used."""
        return {**explain_builtin(self.row, self.near), "source": BUILTIN_SOURCE,
                "fallback_reason": reason}

    def grounding(self, result: Mapping[str, Any]) -> tuple[bool, list[str], str]:
        """Check the explanation and its key evidence against the evidence and headline times:
        (every number found, the numbers not found, a phrase giving the app orders or "")."""
        times = [f"{item['time']:%Y-%m-%d %H:%M} UTC" for item in self.near or []
                 if item["time"] is not None]
        text = result["explanation"] + " " + " ; ".join(result["key_evidence"])
        ok, unverified = check_grounding(text, {**self.evidence, "headline_times": times})
        # Built-in text quotes headlines as they are; only a model's own words can obey them.
        orders = instruction_like(text) if result.get("source") != BUILTIN_SOURCE else ""
        return ok, unverified, orders


def _prepare(row: dict[str, Any], candles: pd.DataFrame | None, headlines: pd.DataFrame | None,
             window: HeadlineWindow | None) -> _Event:
    near = window.near(row) if window is not None else headlines_near(row, headlines)
    evidence = build_evidence(row, near, _candle_context(row, candles))
    # The fingerprint covers what the explanation is written from, so a changed event
    # (new end, new headlines) is explained again rather than served stale from the cache.
    blob = json.dumps({"evidence": evidence, "headlines": prompt_headlines(near)},
                      sort_keys=True, default=str)
    return _Event(row, near, evidence, hashlib.sha256(blob.encode()).hexdigest()[:16])


#: Why a row got built-in text without asking the model (every other reason is a failed call).
NO_MODEL, NOT_IN_TOP = "no model configured", "not in the top "


def is_lasting(fallback_reason: str) -> bool:
    """Whether an explanation holds until the settings change: the model's own, or built-in
    because no model is configured or the event is not in the top N. A failed call (timeout,
    no connection, a malformed answer) is worth asking again."""
    return fallback_reason in ("", NO_MODEL) or fallback_reason.startswith(NOT_IN_TOP)


def _builtin_reason(config: ExplainerConfig, top_n: int | None) -> str:
    """Why a row got built-in text without asking the model."""
    return NO_MODEL if not config.enabled else f"{NOT_IN_TOP}{top_n} by severity"


def _positions_for_model(events: pd.DataFrame, config: ExplainerConfig,
                         top_n: int | None) -> set[int]:
    """Row positions sent to the model: all, or the top_n by severity (ties keep row order)."""
    if not config.enabled:
        return set()
    if top_n is None:
        return set(range(len(events)))
    severity = pd.Series(pd.to_numeric(events.get("severity"), errors="coerce"),
                         index=events.index, dtype="float64").reset_index(drop=True)
    order = severity.sort_values(ascending=False, kind="stable", na_position="last")
    return set(order.index[:max(int(top_n), 0)])


def explain_events(events: pd.DataFrame, candles: pd.DataFrame | None = None,
                   headlines: pd.DataFrame | None = None, *, config: ExplainerConfig | None = None,
                   top_n: int | None = None, max_workers: int = 4,
                   progress: Callable[[float, str], None] | None = None, use_cache: bool = True,
                   judge_weight: float = 0.4) -> pd.DataFrame:
    """A copy of ``events`` with an explanation per row; never raises for model failures.

    Parameters
    ----------
    events : the events frame (one row per event; ``event_id``, ``start``, ``end``,
        ``severity``, ``kind`` and the evidence columns).
    candles : candles of the events' symbol, for extra context (24 h change, volatility).
    headlines : headlines frame; nearby ones are quoted to the model as untrusted data. When
        None, the events' own ``headlines`` column is used if present.
    config : model settings; None reads them from the environment (:func:`load_config`).
    top_n : only the top N events by severity go to the model; the rest get built-in text.
    max_workers : concurrent model requests.
    progress : ``progress(fraction, message)``, called in this thread after each event.
    use_cache : read and write the explanation cache in ``store`` (model answers and
        built-in texts; never a timeout, rate limit or other transient failure).
    judge_weight : weight w of the model's risk in ``combined_risk = w * risk_score +
        (1 - w) * severity`` (SEED_FACTS: 0.4); where severity is NaN, combined_risk is
        risk_score. An ungrounded model answer does not count: its ``risk_score`` and
        ``recommended_action`` become the statistical ones (as the built-in explainer's), so
        combined_risk is the severity, and ``risk_note`` names the ignored risk.

    Returns
    -------
    DataFrame with OUTPUT_COLUMNS added: ``explanation_source`` is the model name or
    "built-in", ``fallback_reason`` is "" unless the model was wanted but not used,
    ``key_evidence`` is " ; "-joined, ``grounded`` says every number in the explanation is
    in the evidence and ``ungrounded_numbers`` (", "-joined) lists those that are not;
    ``risk_note`` is "" unless the model's risk was ignored.
    """
    if isinstance(judge_weight, bool) or not isinstance(judge_weight, numbers.Real) or not 0.0 <= judge_weight <= 1.0:
        raise ValueError(f"judge_weight must be between 0 and 1, got {judge_weight!r}.")
    if isinstance(max_workers, bool) or not isinstance(max_workers, numbers.Integral) or max_workers < 1:
        raise ValueError(f"max_workers must be at least 1, got {max_workers!r}.")
    config = load_config() if config is None else config
    window = HeadlineWindow(headlines) if headlines is not None else None
    items = [_prepare(row, candles, headlines, window) for row in events.to_dict("records")]
    to_model = _positions_for_model(events, config, top_n)
    models = [config.model if pos in to_model else BUILTIN_SOURCE for pos in range(len(items))]
    results: list[dict[str, Any]] = [{}] * len(items)
    done = 0

    def finish(pos: int, result: dict[str, Any]) -> None:
        nonlocal done
        results[pos] = result
        done += 1
        if progress is not None:
            progress(done / len(items), f"Explained {done} of {len(items)} events")

    cached: dict[tuple[str, str], dict[str, Any]] = {}
    if use_cache:
        for model in set(models):
            ids = [item.event_id for item, m in zip(items, models) if m == model and item.event_id]
            cached.update({(event_id, model): value for event_id, value
                           in get_cached_many(ids, model, PROMPT_VERSION).items()})
    jobs, new_builtin = [], []
    for pos, item in enumerate(items):
        hit = cached.get((item.event_id, models[pos]))
        if hit is not None and hit.get("fingerprint") == item.fingerprint:
            reason = (hit.get("fallback_reason", "") if pos in to_model
                      else _builtin_reason(config, top_n))
            finish(pos, {**hit, "fallback_reason": reason})
        elif pos in to_model:
            jobs.append(pos)
        else:
            result = item.builtin(_builtin_reason(config, top_n))
            if item.event_id:
                new_builtin.append((item.event_id, BUILTIN_SOURCE, PROMPT_VERSION,
                                    {**result, "fingerprint": item.fingerprint}))
            finish(pos, result)
    if use_cache:
        put_cached_many(new_builtin)
    if jobs:
        _ask_model(jobs, items, config, max_workers, use_cache, finish)
    return _assemble(events, items, results, judge_weight)


def _ask_model(jobs: list[int], items: list[_Event], config: ExplainerConfig, max_workers: int,
               use_cache: bool, finish: Callable[[int, dict[str, Any]], None]) -> None:
    """Ask the model about ``jobs`` in a thread pool, bounded by an overall deadline.

    Each event has its own budget and every request ends by the overall deadline (one budget
    per wave of workers), so the workers are done and joined when this returns; the grace
    second after it only guards against a request that ignores its deadline.
    """
    try:
        client = make_client(config)
    except Exception as exc:  # e.g. a malformed base URL: fall back rather than break the page
        for pos in jobs:
            finish(pos, items[pos].builtin(f"cannot create the client ({type(exc).__name__})"))
        return
    workers = min(max_workers, len(jobs))
    deadline = time.monotonic() + math.ceil(len(jobs) / workers) * event_budget(config)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="explain")
    futures = {pool.submit(request_explanation, client, config, items[pos].evidence,
                           items[pos].near, deadline=deadline): pos for pos in jobs}
    pending = set(jobs)
    try:
        for future in as_completed(futures,
                                   timeout=max(deadline + _GRACE_S - time.monotonic(), 0.0)):
            pos = futures[future]
            pending.discard(pos)
            finish(pos, _use_outcome(future.result(), items[pos], config, use_cache))
    except FuturesTimeout:
        log.warning("%d explanation(s) passed the overall deadline; using built-in text",
                    len(pending))
        for pos in sorted(pending):
            finish(pos, items[pos].builtin(f"timed out after {config.timeout:g} s"))
    finally:
        # All done: join the idle workers. Something stuck: do not block the page on it.
        pool.shutdown(wait=not pending, cancel_futures=True)
        if not pending:  # a stuck worker may still be using the client
            client.close()


def _use_outcome(outcome: LlmOutcome, item: _Event, config: ExplainerConfig,
                 use_cache: bool) -> dict[str, Any]:
    """The model's answer, or built-in text with the reason; cached when the outcome allows."""
    if outcome.answer is not None:
        result = {**outcome.answer, "source": config.model, "fallback_reason": ""}
    else:
        log.warning("Model explanation for event %s fell back: %s", item.event_id or "?",
                    outcome.fallback_reason)
        result = item.builtin(outcome.fallback_reason)
    if use_cache and outcome.cacheable and item.event_id:
        put_cached(item.event_id, config.model, PROMPT_VERSION,
                   {**result, "fingerprint": item.fingerprint})
    return result


def _statistical(result: dict[str, Any], severity: float, unverified: list[str], orders: str) -> dict[str, Any]:
    """An ungrounded model answer without its own risk: an explainer that states numbers not in
    the evidence cannot move the risk, so the severity stands (as for the built-in text)."""
    if result["source"] == BUILTIN_SOURCE:
        return result
    stat = severity if math.isfinite(severity) else 0.0
    note = ignored_risk_note(float(result["risk_score"]), orders, unverified, "explanation", "evidence")
    return {**result, "risk_score": round(stat, 3), "recommended_action": recommended_action(stat),
            "risk_note": note}


def _assemble(events: pd.DataFrame, items: list[_Event], results: list[dict[str, Any]],
              judge_weight: float) -> pd.DataFrame:
    out = events.copy()
    checks = [item.grounding(result) for item, result in zip(items, results)]
    severity = pd.Series(pd.to_numeric(out.get("severity"), errors="coerce"), index=out.index,
                         dtype="float64").clip(0.0, 1.0)
    results = [result if ok and not orders else _statistical(result, sev, unverified, orders)
               for result, (ok, unverified, orders), sev in zip(results, checks, severity.tolist())]
    risk = pd.Series([float(r["risk_score"]) for r in results], index=out.index, dtype="float64")
    out["explanation"] = [r["explanation"] for r in results]
    out["explanation_source"] = [r["source"] for r in results]
    out["explanation_kind"] = [r["kind"] for r in results]
    out["confidence"] = [r["confidence"] for r in results]
    out["risk_score"] = risk
    out["recommended_action"] = [r["recommended_action"] for r in results]
    out["key_evidence"] = [" ; ".join(r["key_evidence"]) for r in results]
    out["grounded"] = pd.Series([ok and not orders for ok, _, orders in checks], index=out.index, dtype="bool")
    out["fallback_reason"] = [r["fallback_reason"] for r in results]
    out["ungrounded_numbers"] = [", ".join(found) for _, found, _ in checks]
    out["combined_risk"] = (judge_weight * risk + (1.0 - judge_weight) * severity).fillna(risk)
    out["risk_note"] = [r.get("risk_note", "") for r in results]
    return out
