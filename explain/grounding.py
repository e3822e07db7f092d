"""Explanation layer: check that every number an explanation states comes from the evidence.

An explanation is *grounded* when each number in it can be read off the evidence, allowing
for rounding. What counts as a number, and what is skipped:

- Counted: plain numbers (``3``, ``101.23``, ``43,250``), signed numbers (``+0.4``, ``-3.2``,
  ``−3.2``), percentages (``6.5%``), multipliers (``6.2x``, ``6.2 ×``), sigmas (``3σ``),
  numbers with a unit glued on (``24h``, ``6hours``), scaled numbers (``1.2k``, ``3M``, ``2bn``),
  dates (``2024-01-05``) and times of day (``14:00``).
- Skipped: numbers inside double quotes (quoted headlines are data, not claims), ordinals
  (``1st``, ``3rd``), digits glued after letters (``Q3``, ``H1``, ``BTC2``: labels, not
  measurements) and numbers written as words.

A number matches an evidence value when it is that value rounded to the digits written
(``6.2`` matches 6.1834; ``3`` matches 3.4), or within 0.1% of it. Without a written sign
the magnitude is compared (``fell 3.2%`` matches -3.2); with a sign, the sign must agree.
A percentage must match a ``*_pct`` value, a severity times 100 (0.82 as ``82%``) or a
``*_ratio`` read as a change (ratio 6.2 as ``520%``); other numbers match any value.
Dates and times must be those of a timestamp in the evidence. NaN and infinite evidence
values are ignored.
"""
from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any, Iterable, Mapping

import pandas as pd

__all__ = ["check_grounding", "extract_numbers", "instruction_like", "ignored_risk_note"]

#: What an answer that obeys instructions from the data says (a prompt injection that got
#: through): it addresses the app or its rules instead of assessing the evidence.
_INSTRUCTIONS = re.compile(
    r"\b(?:ignore|disregard|forget)\b[^.]{0,40}\b(?:instructions?|prompts?|rules)\b"
    r"|\bsystem\s*(?:override|prompt|message)\b"
    r"|\b(?:set|change|lower|reduce|raise)\b[^.]{0,30}\b(?:severity|risk(?:_score)?|threshold)\b[^.]{0,20}"
    r"\bto\s+(?:zero|none|nil|negligible|minimal|low|\d)"
    r"|\b(?:delete|dismiss)\b[^.]{0,15}\b(?:this|the)\s+(?:case|alert|event)\b"
    r"|(?:^|[.!:;]\s*)close\s+(?:this|the)\s+case\b"
    r"|\b(?:the\s+)?(?:app|dashboard)\s+(?:must|should|shall)\b", re.I)
_QUOTED = re.compile(r'"[^"]*"|“[^”]*”|«[^»]*»', re.S)
_DATETIME = re.compile(r"(?<![\w.:-])(\d{4}-\d{2}-\d{2})(?:[T ](\d{1,2}:\d{2}))?(?::\d{2})?"
                       r"|(?<![\w.:])(\d{1,2}:\d{2})(?::\d{2})?(?![\d:])")
_NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>[+\-−])?(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?P<frac>\.\d+)?"
    r"(?P<tail>\s?%|\s?[x×](?![A-Za-z])|σ|(?:st|nd|rd|th)(?![A-Za-z])"
    r"|(?:bn|k|K|M|B)(?![A-Za-z]))?")
_SCALES = {"k": 1e3, "K": 1e3, "M": 1e6, "B": 1e9, "bn": 1e9}
_RELATIVE_TOLERANCE = 1e-3
#: Evidence values in [0, 1] that may be written as a percentage.
_FRACTION_KEYS = {"severity", "risk_score", "peak_severity"}


def extract_numbers(text: str) -> list[dict[str, Any]]:
    """The numbers stated in ``text`` (quoted passages and dates/times removed first).

    Each item has ``token`` (as written), ``value`` (signed float, scale applied), ``signed``
    (a sign was written), ``percent`` and ``tolerance`` (half a unit of the last digit written).
    Ordinals and digits glued after letters are not returned.
    """
    text = _DATETIME.sub(" ", _QUOTED.sub(" ", text))
    found = []
    for match in _NUMBER.finditer(text):
        tail = (match["tail"] or "").strip()
        if tail in ("st", "nd", "rd", "th"):
            continue
        frac = match["frac"] or ""
        scale = _SCALES.get(tail, 1.0)
        value = float(match["int"].replace(",", "") + frac) * scale
        if match["sign"] in ("-", "−"):
            value = -value
        decimals = len(frac) - 1 if frac else 0
        found.append({"token": match.group(0).strip(), "value": value,
                      "signed": match["sign"] is not None, "percent": tail == "%",
                      "tolerance": 0.5 * 10.0 ** -decimals * scale})
    return found


def _walk(evidence: Any, key: str = "") -> Iterable[tuple[str, Any]]:
    """(key, leaf) pairs of a nested mapping/list; list items inherit their parent's key."""
    if isinstance(evidence, Mapping):
        for name, value in evidence.items():
            yield from _walk(value, str(name))
    elif isinstance(evidence, (list, tuple)):
        for value in evidence:
            yield from _walk(value, key)
    else:
        yield key, evidence


def _as_timestamp(value: Any) -> pd.Timestamp | None:
    if isinstance(value, (pd.Timestamp, datetime)):
        return pd.Timestamp(value)
    if isinstance(value, str) and re.match(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return pd.Timestamp(value.replace(" UTC", ""))
        except ValueError:
            return None
    return None


def _allowed(evidence: Mapping[str, Any]) -> tuple[list[float], list[float], set[str], set[str]]:
    """Values a plain number may match, values a percentage may match, dates, times."""
    plain: list[float] = []
    percent: list[float] = []
    dates: set[str] = set()
    times: set[str] = set()
    for key, value in _walk(evidence):
        stamp = _as_timestamp(value)
        if stamp is not None and stamp is not pd.NaT:
            dates.add(f"{stamp:%Y-%m-%d}")
            times.update({f"{stamp:%H:%M}", f"{stamp.hour}:{stamp:%M}"})
            plain.extend([stamp.year, stamp.day, stamp.hour, stamp.hour % 12 or 12])
        elif isinstance(value, str):
            plain.extend(item["value"] for item in extract_numbers(value))
        elif (isinstance(value, (int, float)) and not isinstance(value, bool)
              and math.isfinite(value)):
            plain.append(float(value))
            if key.endswith("_pct"):
                percent.append(float(value))
            if key in _FRACTION_KEYS:
                percent.append(100.0 * value)
            if key.endswith("_ratio"):
                percent.append(100.0 * (value - 1.0))
    return plain, percent, dates, times


def _matches(number: Mapping[str, Any], candidates: Iterable[float]) -> bool:
    for candidate in candidates:
        value, target = number["value"], candidate
        if not number["signed"]:
            value, target = abs(value), abs(target)
        tolerance = max(number["tolerance"], _RELATIVE_TOLERANCE * abs(target)) + 1e-9
        if abs(value - target) <= tolerance:
            return True
    return False


def check_grounding(text: str, evidence: Mapping[str, Any]) -> tuple[bool, list[str]]:
    """Whether every number in ``text`` is derivable from ``evidence``, and those that are not.

    Parameters
    ----------
    text : the explanation (and its key evidence), as shown to the analyst.
    evidence : the event's evidence; numbers, timestamps (or ISO strings) and strings with
        numbers in them (e.g. interval "1h"), nested in mappings and lists.

    Returns
    -------
    (grounded, unverified): ``unverified`` lists the tokens as written, in order, without
    repeats; ``grounded`` is True when it is empty.
    """
    plain, percent, dates, times = _allowed(evidence)
    unverified: list[str] = []
    for match in _DATETIME.finditer(_QUOTED.sub(" ", text or "")):
        date, date_clock, clock = match.group(1), match.group(2), match.group(3)
        known_date = date is None or date in dates
        if not (known_date and all(t is None or t in times for t in (date_clock, clock))):
            unverified.append(match.group(0))
    for number in extract_numbers(text or ""):
        candidates = percent if number["percent"] else plain
        if not _matches(number, candidates):
            unverified.append(number["token"])
    unverified = list(dict.fromkeys(unverified))
    return not unverified, unverified


def instruction_like(text: str) -> str:
    """The first phrase of ``text`` that gives orders to the app ("" when none): an answer that
    reads so was steered by the untrusted data, so its risk must not count."""
    found = _INSTRUCTIONS.search(_QUOTED.sub(" ", text))
    return found.group(0) if found else ""


def ignored_risk_note(risk: float, orders: str, unverified: list[str], text: str, facts: str) -> str:
    """Why a model's risk was ignored: it gave the app orders, or stated numbers not in the
    ``facts`` ("evidence", "metrics") its ``text`` ("explanation", "assessment") was given."""
    why = (f"the answer gives the app orders ('{orders}') instead of assessing the {facts}" if orders
           else f"the {text} states numbers not in the {facts} ({', '.join(unverified)})")
    return f"model risk {risk:.2f} ignored: {why}; statistical risk used"
