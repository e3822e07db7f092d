"""Explanation layer: the evidence of an event, and the rule-based explainer built on it.

The built-in explainer needs no model and no network. It writes only numbers taken from the
event's evidence, formatted so that :func:`explain.grounding.check_grounding` verifies them,
and quotes headlines as data (in double quotes, never interpreted).
"""
from __future__ import annotations

import json
import math
import re
import unicodedata
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from events.news_context import NEWS_WINDOW_HOURS

__all__ = ["explain_builtin", "build_evidence", "normalise_headlines", "recommended_action",
           "to_utc", "confidence_for", "KINDS", "ACTIONS", "CONFIDENCES"]

KINDS = ["normal", "volume_surge", "price_spike", "flash_crash", "pump_and_dump",
         "manipulation_suspected", "pattern_anomaly", "news_anomaly", "data_error", "other"]
ACTIONS = ["no_action", "monitor", "review", "escalate"]
CONFIDENCES = ["low", "medium", "high"]
#: Thresholds analysts know (SEED_FACTS), sent with the evidence so a model may cite them.
REFERENCE = {"z_threshold": 3, "volume_surge_ratio": 5, "news_window_hours": NEWS_WINDOW_HOURS}

_NUMERIC = ["n_bars", "peak_score", "severity", "price_before", "price_end", "return_pct",
            "max_move_pct", "volume_ratio", "z_return", "z_volume", "headline_count",
            "change_24h_pct", "trailing_volatility_pct", "nearest_headline_minutes",
            "severity_raw"]
_TEXT = ["symbol", "interval", "kind", "peak_detector", "context_note"]
_HEADLINE_CHARS = 120


def _number(value: Any) -> float | None:
    """A finite float, or None for missing/NaN/non-numeric values."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _round(value: float) -> float | int:
    """Six significant digits: enough for any price, short in a prompt."""
    if float(value).is_integer() and abs(value) < 1e15:
        return int(value)
    return float(f"{value:.6g}")


def to_utc(value: Any) -> pd.Timestamp | None:
    """A UTC Timestamp (naive read as UTC), or None for missing/unreadable values."""
    if value is None or isinstance(value, bool):
        return None
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        return None
    if stamp is pd.NaT:
        return None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def normalise_headlines(items: Iterable[Any] | None) -> list[dict[str, Any]]:
    """Headlines as dicts ``{time, source, headline}``; plain strings become ``{headline}``.

    ``time`` is a UTC Timestamp or None. Empty headlines are dropped; text is kept as is
    (quoting and neutralising happen where it is written out).
    """
    out = []
    for item in items or []:
        if isinstance(item, Mapping):
            text, source = item.get("headline"), item.get("source")
            when = item.get("time", item.get("timestamp"))
        else:
            text, source, when = item, None, None
        if not isinstance(text, str) or not text.strip():
            continue
        out.append({"time": to_utc(when), "source": source if isinstance(source, str) else "",
                    "headline": text.strip()})
    return out


def build_evidence(event: Mapping[str, Any], headlines_near: Iterable[Any] | None = None,
                   context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The facts of one event as a JSON-ready dict: what a model sees and grounding checks.

    Missing and NaN fields are left out. Times are "YYYY-MM-DD HH:MM UTC" strings, numbers
    are rounded to six significant digits, ``detectors`` is a list and ``scores`` the parsed
    ``scores_json``. Headline *text* is not included (it goes in a separate untrusted block);
    ``headline_count`` is the larger of the event's own count and the nearby headlines; it
    is left out when news was not checked (no ``headline_count`` in the event and
    ``headlines_near`` None), so nobody claims "no news" from missing data.
    ``context`` adds extra numbers (e.g. ``change_24h_pct``).
    """
    merged = {**dict(event), **dict(context or {})}
    evidence: dict[str, Any] = {}
    for key in _TEXT:
        if isinstance(merged.get(key), str) and merged[key]:
            evidence[key] = merged[key]
    for key in ("start", "end"):
        stamp = to_utc(merged.get(key))
        if stamp is not None:
            evidence[key] = f"{stamp:%Y-%m-%d %H:%M} UTC"
    if isinstance(merged.get("detectors"), str) and merged["detectors"]:
        evidence["detectors"] = [d.strip() for d in merged["detectors"].split(",") if d.strip()]
    if headlines_near is not None or _number(merged.get("headline_count")) is not None:
        nearby = len(normalise_headlines(headlines_near))
        merged["headline_count"] = max(_number(merged.get("headline_count")) or 0, nearby)
    for key in _NUMERIC:
        value = _number(merged.get(key))
        if value is not None:
            evidence[key] = _round(value)
    if isinstance(merged.get("news_driven"), (bool, np.bool_)):
        evidence["news_driven"] = bool(merged["news_driven"])
    scores = _parse_scores(merged.get("scores_json"))
    if scores:
        evidence["scores"] = scores
    evidence["reference"] = dict(REFERENCE)
    return evidence


def _parse_scores(raw: Any) -> dict[str, float | int]:
    if not isinstance(raw, str) or not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(parsed, Mapping):
        return {}
    numbers = {str(name): _number(value) for name, value in parsed.items()}
    return {name: _round(value) for name, value in numbers.items() if value is not None}


def recommended_action(score: float) -> str:
    """SEED_FACTS bands on a 0-1 score: > 0.9 escalate (immediate review), > 0.7 review
    (elevated monitoring), > 0.5 monitor (standard monitoring), else no_action. NaN -> no_action."""
    score = _number(score)
    if score is None or score <= 0.5:
        return "no_action"
    return "escalate" if score > 0.9 else "review" if score > 0.7 else "monitor"


#: Calibrated severities from which the built-in explainer is medium / highly confident:
#: about 1 in 180 bars and about 1 in a million bars (see ``detectors.calibration``).
MEDIUM_CONFIDENCE_SEVERITY, HIGH_CONFIDENCE_SEVERITY = 0.6, 0.8


def confidence_for(severity: float) -> str:
    """High from HIGH_CONFIDENCE_SEVERITY, medium from MEDIUM_CONFIDENCE_SEVERITY, else low."""
    severity = _number(severity)
    if severity is None or severity < MEDIUM_CONFIDENCE_SEVERITY:
        return "low"
    return "high" if severity >= HIGH_CONFIDENCE_SEVERITY else "medium"


def _num(value: float) -> str:
    """Four significant digits without exponent notation (0.00001234, 101.2, 43250)."""
    return np.format_float_positional(value, precision=4, fractional=False, trim="-")


def _formatted(evidence: Mapping[str, Any]) -> dict[str, str]:
    """Phrases for the values present in ``evidence``; absent values have no key."""
    out: dict[str, str] = {}
    get = evidence.get
    if get("return_pct") is not None:
        out["ret"] = f"{get('return_pct'):+.1f}%"
    if get("max_move_pct") is not None:
        out["max_move"] = f"{get('max_move_pct'):+.1f}%"
    if get("volume_ratio") is not None:
        out["vol"] = f"{get('volume_ratio'):.1f}x"
    if get("z_return") is not None:
        out["z_ret"] = f"{get('z_return'):+.1f}"
    if get("z_volume") is not None:
        out["z_vol"] = f"{get('z_volume'):+.1f}"
    if get("peak_score") is not None:
        out["peak"] = _num(get("peak_score"))
    if get("n_bars") is not None:
        n = int(get("n_bars"))
        out["n"] = str(n)
        out["bars"] = f"{n} bar" if n == 1 else f"{n} bars"
    if get("headline_count") is not None:
        count = int(get("headline_count"))
        out["headlines"] = f"{count} headline" if count == 1 else f"{count} headlines"
    out["detector"] = get("peak_detector") or ", ".join(get("detectors") or []) or "a detector"
    return out


_TEMPLATES = {
    "volume_surge": "Volume {vol} the trailing median while price moved {ret} over {bars}",
    "price_spike": "Price moved {ret} over {bars} (return z-score {z_ret}) on volume {vol} the "
                   "trailing median — far outside its recent range.",
    "flash_crash": "Price fell sharply: the largest move was {max_move} and it ended {ret} over "
                   "{bars}, on volume {vol} the trailing median — a flash crash; check for a "
                   "stop-loss cascade or an erroneous order.",
    "pump_and_dump": "Price ran up {max_move} on volume {vol} the trailing median, then reversed "
                     "to {ret} by the end of the {n}-bar event — the rise-then-reversal "
                     "signature of a pump and dump.",
    "manipulation_suspected": "Price and volume were both extreme: return z-score {z_ret} and "
                              "volume z-score {z_vol} ({vol} the trailing median) over {bars} — "
                              "consistent with manipulation.",
    "pattern_anomaly": "The {detector} detector found an unusual price and volume pattern over "
                       "{bars} (peak score {peak}) while price moved {ret} — an unusual shape "
                       "rather than one extreme bar.",
    "news_anomaly": "The headline flow was unusual ({headlines} near the event, peak score "
                    "{peak}) — check whether the news is genuine or coordinated.",
    "data_error": "The candles look wrong rather than the market: a move of {max_move} over "
                  "{bars} — check the data source before acting on it.",
}


def _describe(kind: str, evidence: Mapping[str, Any], parts: Mapping[str, str]) -> str:
    """The first sentence: the kind's template, or a generic list when a value is missing."""
    try:
        text = _TEMPLATES[kind].format_map(parts)
    except KeyError:
        over = f" over {parts['bars']}" if "bars" in parts else ""
        phrases = [f"Flagged by {parts['detector']}{over}"]
        phrases += [f"price moved {parts['ret']}"] if "ret" in parts else []
        phrases += [f"volume {parts['vol']} the trailing median"] if "vol" in parts else []
        phrases += [f"peak score {parts['peak']}"] if "peak" in parts else []
        return ", ".join(phrases) + "."
    move = evidence.get("max_move_pct") or 0.0
    if kind in _SECOND_LEG and move * _SECOND_LEG[kind][0] <= 0:
        # Flagged at the shape's second leg (a pump's dump, a crash's rebound): the first leg came
        # before the event, so the event's own move goes the other way; describe that leg.
        text = (f"Price moved {parts['ret']} over {parts['bars']} on volume {parts['vol']} the trailing "
                f"median, {_SECOND_LEG[kind][1]}")
    if kind == "volume_surge":
        quiet = abs(evidence.get("return_pct", 0.0)) < 1.0
        text += (" — heavy trading without a price change, typical of wash trading." if quiet
                 else " — heavy trading that moved the price.")
    return text


#: Shape kinds: (the sign of the first leg's move, how the second leg alone is described).
_SECOND_LEG = {
    "pump_and_dump": (1, "reversing a run-up before it — the dump leg of a pump and dump."),
    "flash_crash": (-1, "recovering a sharp fall just before it — the rebound leg of a flash crash; "
                        "check for a stop-loss cascade or an erroneous order."),
}


def _quote(headline: str) -> str:
    """A headline as a quoted, single-line, bounded string (its own quotes made single)."""
    # Control and format characters (zero-width, bidi overrides) can hide or reorder text.
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in headline)
    text = re.sub(r" +", " ", text).replace('"', "'")
    text = text.replace("“", "'").replace("”", "'")
    if len(text) > _HEADLINE_CHARS:
        text = text[:_HEADLINE_CHARS - 1].rstrip() + "…"
    return f'"{text}"'


def _news_sentence(evidence: Mapping[str, Any], headlines: list[dict[str, Any]],
                   event: Mapping[str, Any]) -> str | None:
    """What the news says about the move; None when news was not checked."""
    if "headline_count" not in evidence:
        return None
    if headlines:
        first, start, end = headlines[0], to_utc(event.get("start")), to_utc(event.get("end"))
        quoted = _quote(first["headline"])
        if first["time"] is None or start is None:
            sentence = f"Nearby headline: {quoted}"
        elif first["time"] <= start:
            sentence = f"It follows the headline {quoted}"
        elif end is not None and first["time"] > end:
            sentence = f"The headline {quoted} came just after the move"
        else:
            sentence = f"The headline {quoted} appeared during the move"
        if evidence.get("news_driven"):
            sentence += ", so the move may be news-driven (less suspicious)"
        elif "news_driven" in evidence:
            sentence += ", which is not a catalyst for a move like this"
        return sentence + "."
    if evidence.get("headline_count"):
        return f"{_formatted(evidence)['headlines'].capitalize()} nearby."
    return f"No headline within {NEWS_WINDOW_HOURS} hours, so news does not explain it."


_ACTION_TEXT = {"escalate": "escalate for immediate review",
                "review": "review it (elevated monitoring)",
                "monitor": "keep it under standard monitoring",
                "no_action": "no action needed"}


def explain_builtin(event: Mapping[str, Any], headlines_near: list | None = None) -> dict[str, Any]:
    """Explain one event from its evidence alone (deterministic, no model).

    Parameters
    ----------
    event : one row of the events frame (a mapping of its columns).
    headlines_near : headlines near the event, closest first, as dicts ``{time, source,
        headline}`` or plain strings; empty when none were found, None when news was not
        checked (then the text says nothing about news unless the event has a count).

    Returns
    -------
    dict with ``kind``, ``explanation`` (2-3 sentences), ``confidence`` (from severity),
    ``risk_score`` (the severity, 0 when missing), ``recommended_action`` (SEED_FACTS bands)
    and ``key_evidence`` (list of short strings).
    """
    headlines = normalise_headlines(headlines_near)
    evidence = build_evidence(event, headlines_near)
    kind = evidence.get("kind") or "other"
    parts = _formatted(evidence)
    severity = min(max(float(evidence.get("severity", 0.0)), 0.0), 1.0)
    action = recommended_action(severity)
    verdict = (f"Severity {severity:.2f}: {_ACTION_TEXT[action]}." if "severity" in evidence
               else f"No severity given: {_ACTION_TEXT[action]}.")
    news = _news_sentence(evidence, headlines, event)
    sentences = [_describe(kind, evidence, parts)] + ([news] if news else []) + [verdict]
    key_evidence = []
    if "ret" in parts:
        over = f" over {parts['bars']}" if "bars" in parts else ""
        key_evidence.append(f"return {parts['ret']}{over}")
    if "max_move" in parts:
        key_evidence.append(f"largest move {parts['max_move']}")
    if "vol" in parts:
        key_evidence.append(f"volume {parts['vol']} the trailing median")
    if "z_ret" in parts:
        key_evidence.append(f"return z-score {parts['z_ret']}")
    if "z_vol" in parts:
        key_evidence.append(f"volume z-score {parts['z_vol']}")
    if evidence.get("detectors"):
        key_evidence.append("detectors: " + ", ".join(evidence["detectors"]))
    if "headline_count" in evidence:
        key_evidence.append(f"{parts['headlines']} within {NEWS_WINDOW_HOURS} hours"
                            if evidence["headline_count"] else
                            f"no headline within {NEWS_WINDOW_HOURS} hours")
    return {"kind": kind, "explanation": " ".join(sentences),
            "confidence": confidence_for(severity), "risk_score": round(severity, 3),
            "recommended_action": action, "key_evidence": key_evidence}
