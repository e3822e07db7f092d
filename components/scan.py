"""Scanning for the Scanner page: the batch job (``scan``) started in a background process and
followed through its report folder, plus today's in-process thread scanner (``scan_watchlist``,
kept for small ad-hoc use and as the benchmark's baseline)."""
from __future__ import annotations

import datetime as dt
import json
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import pandas as pd

import detectors
from components import state
from components.controls import DataChoice, DetectorChoice
from data import MAX_SYMBOL_LENGTH, DataError, load_candles
from detectors.calibration import rarity_text
from explain.config import redact_url

#: Parallel requests per source: well inside Yahoo's informal limits and Bybit's 600 per 5 s.
MAX_WORKERS = {"demo": 4, "yahoo": 2, "bybit": 4, "csv": 1}
SCAN_COLUMNS = ["symbol", "max_severity", "rarity", "events", "recent_events", "last_event", "top_kind",
                "last_close", "return_pct", "error"]


def parse_symbols(text: str) -> tuple[list[str], list[str]]:
    """Symbols typed one per line or separated by commas/spaces, upper-cased, without repeats;
    and the tokens left out because no market has a symbol that long (over MAX_SYMBOL_LENGTH)."""
    seen: dict[str, None] = {}
    skipped: dict[str, None] = {}
    for token in text.replace(",", " ").split():
        token = token.strip().upper()
        (seen if len(token) <= MAX_SYMBOL_LENGTH else skipped).setdefault(token, None)
    return list(seen), list(skipped)


def scan_symbol(choice: DataChoice, chosen: tuple[DetectorChoice, ...], thresholds: dict[str, float],
                recent_bars: int = 24, mode: str = "max", k: int = 2) -> dict:
    """One scanner row: events and highest severity of one symbol (errors become the row's message)."""
    row = {"symbol": choice.symbol, "max_severity": 0.0, "rarity": "", "events": 0, "recent_events": 0,
           "last_event": pd.NaT, "top_kind": "", "last_close": float("nan"), "return_pct": float("nan"),
           "error": ""}
    try:
        candles = load_candles(choice.source, choice.symbol, **choice.load_kwargs())
        # The same pipeline and calibration as the Explorer: equal data, equal severities.
        events = detectors.score_detectors(candles, [(d.name, dict(d.params)) for d in chosen]).detect(
            thresholds, mode, k, symbol=choice.symbol).events
    except (DataError, ValueError) as exc:
        row["error"] = str(exc)
        return row
    row.update(last_close=float(candles["close"].iat[-1]),
               return_pct=float(candles["close"].iat[-1] / candles["close"].iat[0] * 100 - 100))
    if len(events):
        recent_from = candles.index[max(0, len(candles) - recent_bars)]
        recent = events[events["end"] >= recent_from]
        row.update(max_severity=float(events["severity"].max()), rarity=rarity_text(events["severity"].max()),
                   events=len(events),
                   recent_events=len(recent), last_event=events["end"].max(),
                   top_kind=str(events.loc[events["severity"].idxmax(), "kind"]))
    return row


def scan_watchlist(base: DataChoice, symbols: list[str], chosen: tuple[DetectorChoice, ...],
                   thresholds: dict[str, float],
                   progress: Callable[[float, str], None] | None = None) -> pd.DataFrame:
    """Scan ``symbols`` like ``base`` (source, interval, range); ranked by highest severity."""
    rows = []
    with ThreadPoolExecutor(max_workers=MAX_WORKERS.get(base.source, 2)) as pool:
        futures = {pool.submit(scan_symbol, replace(base, symbol=s), chosen, thresholds): s for s in symbols}
        for done, future in enumerate(as_completed(futures), start=1):
            rows.append(future.result())
            if progress:
                progress(done / len(symbols), f"Scanned {futures[future]} ({done}/{len(symbols)})")
    table = pd.DataFrame(rows, columns=SCAN_COLUMNS)
    return table.sort_values(["max_severity", "recent_events"], ascending=False, ignore_index=True)


# ---- background scans (the batch job, on Ray) -----------------------------------------------

def scan_args(choice: DataChoice, chosen: tuple[DetectorChoice, ...], workers: int) -> list[str]:
    """``surveil scan`` arguments for the sidebar's source, interval, range and detectors."""
    specs = [[d.name, dict(d.params)] for d in chosen]
    args = ["--source", choice.source, "--interval", choice.interval,
            "--start", str(choice.start), "--end", str(choice.end + dt.timedelta(days=1)),
            "--detectors", json.dumps(specs), "--workers", str(int(workers)), "--seed", str(choice.seed)]
    if choice.source == "bybit":
        args += ["--category", choice.category]
    return args


def start_scan(universe: str | list[str], choice: DataChoice, chosen: tuple[DetectorChoice, ...],
               workers: int = 2) -> Path:
    """Start the batch scan in a background process; returns its report folder at once. The
    scan writes to the app's case log (its URL goes by environment, never on the command line)."""
    from components.services import case_log
    from scan.background import launch
    url = case_log().engine.url.render_as_string(hide_password=False)
    return launch(universe, scan_args(choice, chosen, workers), env={"SURVEILLANCE_CASES_DB_URL": url})


def recent_scans(limit: int = 20) -> list[dict]:
    from scan.background import list_scans
    return list_scans(limit=limit)


def follow(report: str | Path, show: Callable[[dict], None], *, poll: float = 0.5,
           limit: float = 3600.0) -> dict:
    """Call ``show(status)`` until the scan is no longer running (or ``limit`` seconds pass).

    Runs inside the page's script: a rerun or a closed tab stops only the following, never the
    scan, and the next run follows it again from its status file."""
    from scan.background import is_alive
    from scan.job import read_status
    ends = time.monotonic() + limit
    while True:
        status = read_status(report) or {"state": "starting", "done": 0, "total": 0, "message": ""}
        if status.get("state") in ("starting", "running") and not is_alive(Path(report)):
            status = {**status, "state": "stopped"}
        show(status)
        if status.get("state") not in ("starting", "running") or time.monotonic() > ends:
            return status
        time.sleep(poll)


def scan_results(report: str | Path) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """(ranked summary, events) of a finished scan, read from its report folder."""
    from scan.background import load_events, load_summary
    return load_summary(report), load_events(report)


def explorer_view(status: dict, symbol: str) -> dict[str, Any]:
    """Sidebar values (``components.state`` keys) that open a scanned symbol in the Explorer
    as the scan saw it: its source, seed, interval, range and detectors, so the Explorer's
    events are the scan's, with the same ids in the case log. A universe name such as
    DEMO-0007 is a demo symbol of its own (``data.demo.demo_spec``). Empty for a source the
    Explorer does not load."""
    if status.get("source") not in ("demo", "yahoo", "bybit"):
        return {}                   # a scan of a CSV folder (from the command line) has no Explorer source
    view: dict[str, Any] = {state.SOURCE: status.get("source"), state.SYMBOL: symbol,
                            state.INTERVAL: status.get("interval")}
    if status.get("source") == "demo":
        view[state.SEED] = int(status.get("seed", 7))
    start, end = (pd.to_datetime(status.get(k) or None, errors="coerce") for k in ("start", "end"))
    if pd.notna(start) and pd.notna(end):   # else a scan over the default range: the Explorer keeps its own
        view[state.START] = start.date()
        view[state.END] = (end - pd.Timedelta(days=1)).date()   # the scan's end is exclusive
    names = list(status.get("detectors") or [])
    if names and set(names) <= set(detectors.available("candles")):
        view[state.DETECTORS] = names
    return {k: v for k, v in view.items() if v is not None}


# ---- alert rules (kept in the case database) ---------------------------------------------

def render_alert_rules() -> None:
    """Alert rules editor: new events of the batch scan that match a rule go to its webhook or
    e-mail address (see ``alerts``)."""
    import sqlalchemy as sa
    import streamlit as st

    from alerts import AlertBook
    from components.services import case_log
    from events.kinds import KINDS
    try:
        book = AlertBook(case_log().engine)
        rules = book.rules()
    except sa.exc.SQLAlchemyError as exc:
        st.warning(f"Alert rules are unavailable: the case database refused their tables ({type(exc).__name__}).")
        return
    with st.expander(f"Alert rules ({len(rules)})", icon=":material/notifications:"):
        st.caption("Events new to the case log that match a rule are sent by the batch scan: webhook "
                   "(Slack-compatible JSON) or e-mail (SMTP from SURVEILLANCE_SMTP_HOST), with retries; each "
                   "links to its case.")
        for rule in rules:
            left, right = st.columns([5, 1])
            watched = rule.symbols or "all symbols"
            # Plain text: names and targets are typed by analysts; a webhook's password stays hidden.
            target = redact_url(rule.target) if rule.channel == "webhook" else rule.target
            left.text(f"{rule.name}: {rule.kind or 'any kind'} on {watched}, severity ≥ "
                      f"{rule.min_severity:.2f} → {rule.channel} {target[:60]}"
                      + ("" if rule.enabled else " (off)"))
            if right.button("Delete", key=f"alert_delete_{rule.id}"):
                book.delete_rule(rule.id)
                st.rerun()
        with st.form("alert_rule", clear_on_submit=True):
            cols = st.columns(3)
            name = cols[0].text_input("Rule name", max_chars=64)
            channel = cols[1].selectbox("Channel", ["webhook", "email"])
            target = cols[2].text_input("Webhook URL or e-mail address")
            cols = st.columns(3)
            symbols = cols[0].text_input("Symbols", help="Comma separated, watchlist:NAME, or empty for all.")
            kind = cols[1].selectbox("Kind", ["(any)", *KINDS])
            minimum = cols[2].slider("Minimum severity", 0.0, 1.0, 0.9, 0.01)
            if st.form_submit_button("Add rule"):
                try:
                    book.add_rule(name, channel=channel, target=target, symbols=symbols,
                                  kind="" if kind == "(any)" else kind, min_severity=minimum)
                    st.rerun()
                except ValueError as exc:
                    st.error(str(exc))
