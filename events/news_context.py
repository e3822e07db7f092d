"""Detection library: put price events in their news context (contextual anomalies).

"+5% after an earnings beat is normal, +5% with no news is suspicious." Each event gets
the headlines around it; a move that follows a catalyst headline is lowered, a large move
with no headline at all is raised, and promotional spam near a move (the pump-and-dump
signature) is never taken as an explanation: it raises suspicion instead.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from detectors.calibration import decades_from_severity, severity_from_decades

__all__ = ["add_news_context", "is_catalyst_headline", "is_promotional_headline", "readable_headlines",
           "NEWS_DRIVEN_FACTOR", "NO_NEWS_FACTOR", "PROMOTION_FACTOR", "LARGE_MOVE_PCT", "NEWS_WINDOW_HOURS",
           "NEWS_AFTER_HOURS"]

#: A headline is near an event from this many hours before its start to NEWS_AFTER_HOURS after
#: its end (the news context here and the headlines an explanation cites).
NEWS_WINDOW_HOURS = 6
NEWS_AFTER_HOURS = 1

#: Severity multiplier for a move that follows a catalyst headline.
NEWS_DRIVEN_FACTOR = 0.6
#: Severity multiplier for a large move with no headline near it (capped at 1).
NO_NEWS_FACTOR = 1.25
#: Severity multiplier for a move with promotional spam near it (capped at 1).
PROMOTION_FACTOR = 1.25
#: Move in percent (|return_pct| or |max_move_pct|) from which a move with no news is raised.
LARGE_MOVE_PCT = 5.0
#: Headlines listed per event.
MAX_LISTED = 5

_CATALYST = re.compile(
    r"\b(earnings?|results|revenue|profit|loss|guidance|outlook|forecast|eps|dividend|"
    r"fda|approv\w*|clinical|trial|merger|merge[sd]?|acqui\w+|takeover|buyout|bid|"
    r"(?:de)?list(?:s|ed|ings?)|delist|upgrade[sd]?|downgrade[sd]?|rating|price target|"
    r"ceo|cfo|resign\w*|lawsuit|settle\w*|sec|investigation|recall|bankrupt\w*|"
    r"split|buyback|offering|stake|partnership|contract|halt\w*|hack\w*|exploit\w*)\b",
    re.IGNORECASE)
_PROMOTION = re.compile(
    r"(\b\d+\s*x\b|guarantee\w*|to the moon|\bmoon\w*|buy now|don'?t miss|last chance|"
    r"\bgem\b|skyrocket\w*|explod\w*|insiders? (?:are )?(?:loading|buying)|act fast|"
    r"🚀|!{2,}|\b\d{3,}\s*%)", re.IGNORECASE)


def is_catalyst_headline(text: str) -> bool:
    """True for wording of a fundamental catalyst (earnings, guidance, FDA, merger,
    acquisition, listing/delisting, rating change, ...), unless it reads as promotion."""
    return bool(_CATALYST.search(text)) and not is_promotional_headline(text)


def is_promotional_headline(text: str) -> bool:
    """True for promotional spam wording ("10X", "GUARANTEED", "to the moon", "!!!")."""
    return bool(_PROMOTION.search(text))


def _one_line(text: object) -> str:
    # Headlines are untrusted: one line, no "|" so the joined list splits back cleanly.
    return " ".join(str(text).split()).replace("|", "/")[:200]


def _duration(delta: pd.Timedelta) -> str:
    hours = delta / pd.Timedelta(hours=1)
    return f"{hours:g} h" if hours >= 1 else f"{delta / pd.Timedelta(minutes=1):g} min"


def _headline_kinds(headlines: pd.DataFrame, catalyst_scores: pd.Series | None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per headline: (is catalyst, is promotional). A known label wins over wording;
    ``catalyst_scores`` >= 0.5 (aligned to the headlines' index) wins over keywords."""
    texts = [str(t) for t in headlines["headline"]]
    promo = np.array([is_promotional_headline(t) for t in texts], dtype=bool)
    catalyst = np.array([is_catalyst_headline(t) for t in texts], dtype=bool)
    if catalyst_scores is not None:
        scores = pd.Series(catalyst_scores).reindex(headlines.index)
        known = scores.notna().to_numpy()
        catalyst[known] = (scores.to_numpy()[known] >= 0.5) & ~promo[known]
    if "label" in headlines.columns:
        labels = headlines["label"].fillna("").astype(str).str.lower().to_numpy()
        known = labels != ""
        catalyst[known] = labels[known] == "catalyst"
        promo[known] = labels[known] == "promotional"
    return catalyst, promo


def readable_headlines(headlines: pd.DataFrame | None) -> pd.DataFrame:
    """Headlines by time with UTC timestamps; a row whose time cannot be read is left out.
    None or an empty frame means no headlines."""
    if headlines is None or (isinstance(headlines, pd.DataFrame) and headlines.empty):
        headlines = pd.DataFrame({"timestamp": [], "headline": []})
    if not isinstance(headlines, pd.DataFrame) or not {"timestamp", "headline"} <= set(headlines.columns):
        raise ValueError("headlines must be a DataFrame with columns timestamp (UTC) and headline, "
                         "e.g. from data.news.validate_headlines.")
    times = pd.to_datetime(headlines["timestamp"], utc=True, errors="coerce")
    news = headlines.assign(timestamp=times)[times.notna()]
    return news.sort_values("timestamp", kind="stable")


def add_news_context(events: pd.DataFrame, headlines: pd.DataFrame | None, *,
                     before: pd.Timedelta = pd.Timedelta(hours=NEWS_WINDOW_HOURS),
                     after: pd.Timedelta = pd.Timedelta(hours=NEWS_AFTER_HOURS),
                     catalyst_scores: pd.Series | None = None,
                     large_move_pct: float = LARGE_MOVE_PCT) -> pd.DataFrame:
    """Return a copy of ``events`` with news columns and context-adjusted severity.

    Parameters
    ----------
    events : DataFrame
        One row per event with at least ``start``, ``end`` (UTC) and ``severity``; ``kind``,
        ``return_pct`` and ``max_move_pct`` (moves over the event, in percent) are used
        when present.
    headlines : DataFrame or None
        Columns ``timestamp`` (UTC) and ``headline``; ``label`` ("catalyst",
        "promotional", "normal") is trusted over wording when present.
    before, after
        A headline belongs to an event from ``before`` its start to ``after`` its end. It
        counts as the event's catalyst from ``before`` the start to ``after`` the start
        (wire stories often lag the first bar of the move).
    catalyst_scores : Series or None
        Optional catalyst probability per headline (index of ``headlines``), used instead
        of the keyword rule where given.
    large_move_pct : float
        Move (the larger of |return_pct| and |max_move_pct|) from which a move with no
        headline at all is raised.

    Returns
    -------
    DataFrame
        ``events`` plus ``headlines`` (" | "-joined, nearest to the start first, at most
        5), ``headline_count``, ``nearest_headline_minutes`` (headline time minus start;
        negative = before, NaN when none), ``news_driven``, ``severity_raw`` (the input
        severity) and ``context_note``. ``severity``'s decades of rarity become x0.6 when news-driven, x1.25
        for a large move with no headline or with promotional spam nearby.
        Data-error events keep their severity.
    """
    out = events.copy()
    n = len(out)
    listed, counts, nearest = [""] * n, np.zeros(n, dtype="int64"), np.full(n, np.nan)
    driven, notes = np.zeros(n, dtype=bool), [""] * n
    factor = np.ones(n)
    news = readable_headlines(headlines)
    times = news["timestamp"].to_numpy(dtype="datetime64[ns]")
    catalyst, promo = _headline_kinds(news, catalyst_scores)
    texts = [_one_line(t) for t in news["headline"]]
    kinds = out["kind"].astype(str).to_numpy() if "kind" in out else np.full(n, "")
    move_columns = [c for c in ("return_pct", "max_move_pct") if c in out]
    moves = (out[move_columns].apply(pd.to_numeric, errors="coerce").abs().max(axis=1).to_numpy()
             if move_columns else np.full(n, np.nan))
    starts = pd.to_datetime(out["start"], utc=True).to_numpy(dtype="datetime64[ns]")
    ends = pd.to_datetime(out["end"], utc=True).to_numpy(dtype="datetime64[ns]")
    before64, after64 = np.timedelta64(before.value, "ns"), np.timedelta64(after.value, "ns")
    for i in range(n):
        lo = np.searchsorted(times, starts[i] - before64, side="left")
        hi = np.searchsorted(times, ends[i] + after64, side="right")
        rows = np.arange(lo, hi)
        offsets = (times[rows] - starts[i]) / np.timedelta64(1, "m")
        order = rows[np.argsort(np.abs(offsets), kind="stable")]
        counts[i] = len(rows)
        listed[i] = " | ".join(texts[j] for j in order[:MAX_LISTED])
        if len(rows):
            nearest[i] = float((times[order[0]] - starts[i]) / np.timedelta64(1, "m"))
        in_catalyst_window = rows[times[rows] <= starts[i] + after64]
        drivers = in_catalyst_window[catalyst[in_catalyst_window]]
        pushers = rows[promo[rows]]
        if kinds[i] == "data_error":
            notes[i] = "data error: news context not applied"
        elif len(pushers):
            factor[i] = PROMOTION_FACTOR
            closest = pushers[np.argmin(np.abs(times[pushers] - starts[i]))]
            notes[i] = f"promotional headline {_relative(times[closest] - starts[i])}: possible pump"
        elif len(drivers):
            driven[i] = True
            factor[i] = NEWS_DRIVEN_FACTOR
            closest = drivers[np.argmin(np.abs(times[drivers] - starts[i]))]
            when = _relative(times[closest] - starts[i])
            notes[i] = (f"follows catalyst headline {when}" if times[closest] <= starts[i]
                        else f"catalyst headline {when}")
        elif not len(rows):
            notes[i] = f"no headline within {_duration(before)}"
            if np.isfinite(moves[i]) and moves[i] >= large_move_pct:
                factor[i] = NO_NEWS_FACTOR
        else:
            notes[i] = f"{len(rows)} headline(s) nearby, none a catalyst"
    severity = pd.to_numeric(out["severity"], errors="coerce").astype("float64")
    out["severity_raw"] = severity
    # Scaled in decades of rarity, so a raised severity stays below 1 and events stay ranked.
    out["severity"] = severity_from_decades(decades_from_severity(severity.to_numpy()) * factor)
    out["headlines"] = listed
    out["headline_count"] = counts
    out["nearest_headline_minutes"] = nearest
    out["news_driven"] = driven
    out["context_note"] = notes
    return out


def _relative(delta: np.timedelta64) -> str:
    """"25 min earlier" / "10 min after the start" for a headline time minus the start."""
    minutes = float(delta / np.timedelta64(1, "m"))
    if abs(minutes) < 0.5:
        return "at the start"
    return f"{abs(minutes):.0f} min {'earlier' if minutes < 0 else 'after the start'}"
