"""The batch scan: the detection pipeline over a universe of symbols, on Ray.

One Ray task per batch of symbols loads each symbol, runs ``detectors.score_detectors(...)
.detect()`` (the Explorer's pipeline, so a severity means the same everywhere) and returns its
events and a summary row; a failure of one symbol becomes that symbol's error and the scan
goes on. Fetches from a rate-limited source wait on one limiter actor per source, shared by
every worker (and by every scan on the cluster), so the source's limit holds however many
workers run. The driver alone writes: new events into the case log as each batch lands
(idempotent by event id: a rerun adds nothing twice and never reopens a dismissed case), and
the report folder (``status.json`` while it runs, then ``events.parquet``, ``summary.parquet``
and ``summary.csv`` ranked by highest severity), so a closed browser tab or a crashed driver
loses at most the batches in flight.
"""
from __future__ import annotations

import json
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from detectors.pipeline import DEFAULT_SPECS, normalise_specs

__all__ = ["ScanConfig", "ScanResult", "TokenBucket", "run_scan", "scan_symbol", "new_report_dir",
           "read_status", "start_ray", "RATE_LIMITS", "SUMMARY_COLUMNS", "TARGET_KINDS"]

#: Requests per second allowed per source across all workers (Bybit allows 600 per 5 s per IP;
#: Yahoo has no published limit, so stay gentle). Sources not listed are not limited.
RATE_LIMITS = {"yahoo": 2.0, "bybit": 100.0}
#: Labelled kinds the default detectors are meant to find (as in bench/detection.py).
TARGET_KINDS = ("pump_and_dump", "flash_crash", "volume_surge")
SUMMARY_COLUMNS = ["rank", "symbol", "max_severity", "peak_score", "peak_detector", "events", "top_kind",
                   "last_event", "bars", "first_bar", "last_bar", "last_close", "return_pct", "labels", "labels_found",
                   "seconds", "error"]
ROOT = Path(__file__).resolve().parent.parent

Loader = Callable[[str, "ScanConfig"], tuple[pd.DataFrame, Any]]


@dataclass(frozen=True)
class ScanConfig:
    """What to scan and how to detect; pickled to every worker."""

    symbols: tuple[str, ...]
    source: str = "demo"
    interval: str = "1h"
    start: Any = None
    end: Any = None
    specs: tuple = DEFAULT_SPECS
    thresholds: dict | None = None
    mode: str = "max"
    k: int = 2
    seed: int = 7                       # demo: the universe's base seed
    folder: str | None = None           # csv-folder: where SYMBOL.csv files are
    options: tuple = ()                 # source options, e.g. (("category", "linear"),)
    rate: float | None = None           # requests/s for the source (default RATE_LIMITS)
    burst: int = 1
    batch_size: int | None = None
    loader: Loader | None = None        # (symbol, config) -> (candles, labels or None); tests, fakes

    def __post_init__(self):
        object.__setattr__(self, "symbols", tuple(self.symbols))
        object.__setattr__(self, "specs", normalise_specs(self.specs))
        if not self.symbols:
            raise ValueError("The universe is empty: pass at least one symbol.")
        if self.loader is None:
            from scan.universe import SOURCES
            if self.source not in SOURCES:
                raise ValueError(f"Unknown scan source {self.source!r}; choose one of {', '.join(SOURCES)}.")

    @property
    def source_rate(self) -> float | None:
        rate = self.rate if self.rate is not None else RATE_LIMITS.get(self.source)
        return rate if rate and rate > 0 else None


@dataclass
class ScanResult:
    summary: pd.DataFrame               # one row per symbol, ranked (SUMMARY_COLUMNS)
    events: pd.DataFrame                # every event found (events.build.EVENT_COLUMNS)
    engine: str
    report_dir: Path
    seconds: float
    new_cases: int
    recall: dict[str, tuple[int, int]] = field(default_factory=dict)   # kind -> (found, labels)

    @property
    def errors(self) -> pd.DataFrame:
        return self.summary[self.summary["error"] != ""]

    def target_recall(self) -> float:
        found = sum(self.recall.get(k, (0, 0))[0] for k in TARGET_KINDS)
        total = sum(self.recall.get(k, (0, 0))[1] for k in TARGET_KINDS)
        return found / total if total else math.nan


class TokenBucket:
    """A token bucket that hands out reservations: ``reserve()`` takes a token and returns how
    many seconds the caller must wait for it (0 when one is there). Debt is allowed, so callers
    queue in order of arrival and nobody polls. As a Ray actor, one per source, it paces every
    worker of every scan."""

    def __init__(self, rate: float, burst: int = 1, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.configure(rate, burst)
        self.tokens = float(self.burst)
        self.updated = clock()

    def configure(self, rate: float, burst: int = 1) -> None:
        if not rate > 0 or burst < 1:
            raise ValueError(f"A rate limit needs rate > 0 and burst >= 1; got {rate}, {burst}.")
        self.rate, self.burst = float(rate), int(burst)

    def reserve(self) -> float:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


# ---- the work of one symbol (runs on a Ray worker) -------------------------------------------

def _load(symbol: str, config: ScanConfig):
    from scan.universe import load_symbol
    return load_symbol(config.source, symbol, config.interval, config.start, config.end,
                       seed=config.seed, folder=config.folder, **dict(config.options))


def _blank_row(symbol: str, error: str = "") -> dict:
    return {"symbol": symbol, "max_severity": 0.0, "peak_score": math.nan, "peak_detector": "", "events": 0,
            "top_kind": "", "last_event": pd.NaT,
            "bars": 0, "first_bar": pd.NaT, "last_bar": pd.NaT, "last_close": math.nan,
            "return_pct": math.nan, "labels": 0, "labels_found": 0, "seconds": 0.0, "error": error}


def scan_symbol(symbol: str, config: ScanConfig, limiter=None) -> tuple[dict, pd.DataFrame, dict]:
    """(summary row, events, {kind: (found, labels)}) of one symbol; errors go into the row."""
    import detectors
    began = time.perf_counter()
    row = _blank_row(symbol)
    events, by_kind = pd.DataFrame(), {}
    try:
        if limiter is not None:
            import ray
            time.sleep(ray.get(limiter.reserve.remote()))
        candles, labels = (config.loader or _load)(symbol, config)
        detection = detectors.score_detectors(candles, config.specs).detect(
            config.thresholds, config.mode, config.k, symbol=symbol)
        events = detection.events
        close = candles["close"]
        row.update(bars=len(candles), first_bar=candles.index[0], last_bar=candles.index[-1],
                   last_close=float(close.iat[-1]), return_pct=float(close.iat[-1] / close.iat[0] * 100 - 100))
        if len(events):
            top = events.sort_values(["severity", "peak_score"], ascending=False).index[0]
            row.update(max_severity=float(events.at[top, "severity"]), events=len(events),
                       peak_score=float(events.at[top, "peak_score"]),
                       peak_detector=str(events.at[top, "peak_detector"]),
                       top_kind=str(events.at[top, "kind"]), last_event=events["end"].max())
        if labels is not None and len(labels):
            from evaluation.metrics import flag_metrics
            found = flag_metrics(detection.flagged, labels)
            counts = labels["kind"].value_counts()
            by_kind = {k: (round(found["recall_by_kind"].get(k, 0.0) * n), int(n)) for k, n in counts.items()}
            row.update(labels=int(counts.sum()), labels_found=sum(f for f, _ in by_kind.values()))
    except Exception as exc:  # noqa: BLE001 - one symbol's failure is reported, the scan goes on
        row["error"] = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
    row["seconds"] = round(time.perf_counter() - began, 3)
    return row, events, by_kind


def _scan_batch(symbols: list[str], config: ScanConfig, limiter=None) -> list[tuple[dict, pd.DataFrame, dict]]:
    return [scan_symbol(s, config, limiter) for s in symbols]


# ---- the driver ---------------------------------------------------------------------------

def new_report_dir(base: Path | None = None) -> Path:
    """A fresh folder under ``data_dir()/scans`` named by UTC time (sorts by age)."""
    if base is None:
        from store import data_dir
        base = data_dir() / "scans"
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%SZ")
    path = Path(base) / f"{stamp}-{uuid.uuid4().hex[:6]}"
    path.mkdir(parents=True)
    return path


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)


def read_status(report_dir: str | Path) -> dict | None:
    """The scan's ``status.json`` (state, done, total, engine, message, ...), or None."""
    try:
        return json.loads((Path(report_dir) / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def start_ray(workers: int | None, address: str | None) -> tuple[bool, str]:
    """Start (or join) Ray; returns (whether we started it, the engine in words)."""
    import ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    started = False
    if not ray.is_initialized():
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}}
        if address:
            # Workers elsewhere get this code base shipped (installed copies work too).
            env = {"working_dir": str(ROOT), "excludes": [".git", ".venv", ".data", ".hypothesis",
                                                          "artifacts", "docs", "*.parquet"]}
            ray.init(address=address, runtime_env=env, log_to_driver=False)
        else:
            ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, runtime_env=env,
                     log_to_driver=False)
        started = True
    cpus = int(ray.cluster_resources().get("CPU", 0))
    size = f"{cpus} CPU{'' if cpus == 1 else 's'}"
    return started, (f"ray cluster at {address}, {size}" if address else f"ray local, {size}")


def _limiter(config: ScanConfig):
    rate = config.source_rate
    if rate is None:
        return None
    import ray
    actor = (ray.remote(TokenBucket).options(name=f"rate-limit:{config.source}", namespace="surveil",
                                               get_if_exists=True, num_cpus=0)
             .remote(rate, config.burst))
    ray.get(actor.configure.remote(rate, config.burst))
    return actor


def notifier_for(log):
    """A Notifier when the case database holds enabled alert rules, else None."""
    import logging

    import sqlalchemy as sa

    from alerts import AlertBook, Notifier
    try:
        book = AlertBook(log.engine)
        return Notifier(book) if book.rules(enabled_only=True) else None
    except sa.exc.SQLAlchemyError as exc:   # e.g. an app role that may not create the alert tables
        logging.getLogger(__name__).warning("Alerts are off for this scan: %s", exc)
        return None


def _rank(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=[c for c in SUMMARY_COLUMNS if c != "rank"])
    table["failed"] = table["error"] != ""
    # Severity is calibrated per symbol, so the top events of many symbols share one severity;
    # the raw peak score (in the detector's unit) breaks those ties, then the event count.
    table = table.sort_values(["failed", "max_severity", "peak_score", "events", "symbol"],
                              ascending=[True, False, False, False, True], ignore_index=True, na_position="last")
    # A symbol that failed has no rank: it was not measured, so it is not the least suspicious.
    ranked = (~table["failed"]).cumsum()
    table.insert(0, "rank", pd.array(ranked.where(~table["failed"]), dtype="Int64"))
    return table.drop(columns="failed")


def run_scan(config: ScanConfig, *, workers: int | None = None, address: str | None = None,
             report_dir: str | Path | None = None, cases_url: str | None = None,
             write_cases: bool = True, alerts: bool = True, who: str = "surveil scan",
             progress: Callable[[int, int, str], None] | None = None) -> ScanResult:
    """Scan ``config.symbols`` on Ray and write the case log and the report.

    ``workers``: CPUs of a local Ray (default all); ``address`` (or ``RAY_ADDRESS``): a Ray
    cluster instead. If Ray is already initialised in this process it is used as it is.
    ``cases_url``: the case database (default ``SURVEILLANCE_CASES_DB_URL``, else the local
    SQLite). ``progress(done, total, last_symbol)`` is called after each batch. With
    ``alerts``, events new to the case log go through the alert rules (``alerts``).
    """
    import ray
    began = time.perf_counter()
    report = Path(report_dir) if report_dir else new_report_dir()
    report.mkdir(parents=True, exist_ok=True)
    total = len(config.symbols)
    status = {"state": "starting", "done": 0, "total": total, "errors": 0, "new_cases": 0,
              "alerts_sent": 0, "alerts_failed": 0,
              "engine": "", "pid": os.getpid(), "started_at": pd.Timestamp.now(tz="UTC").isoformat(),
              "source": config.source, "interval": config.interval, "start": str(config.start or ""),
              "end": str(config.end or ""), "detectors": [n for n, _ in config.specs], "seed": config.seed,
              "message": ""}
    _write_json(report / "status.json", status)
    started, engine = False, ""
    log = None
    try:
        started, engine = start_ray(workers, address)
        status.update(state="running", engine=engine)
        _write_json(report / "status.json", status)
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        size = config.batch_size or max(1, min(20, total // (cpus * 8)))
        batches = [list(config.symbols[i:i + size]) for i in range(0, total, size)]
        limiter = _limiter(config)
        task = ray.remote(max_retries=1)(_scan_batch)
        shipped = ray.put(config)
        pending = {task.remote(b, shipped, limiter): b for b in batches}
        notifier = None
        if write_cases:
            from store.cases import CaseLog
            log = CaseLog(cases_url or os.environ.get("SURVEILLANCE_CASES_DB_URL") or None)
            notifier = notifier_for(log) if alerts else None
        rows, frames, recall, done = [], [], {}, 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            batch = pending.pop(ready[0])
            try:
                results = ray.get(ready[0])
            except ray.exceptions.RayError as exc:   # the worker died: every symbol of the batch failed
                reason = str(exc).strip().splitlines()[0][:300]
                results = [(_blank_row(s, f"worker failed: {reason}"), pd.DataFrame(), {}) for s in batch]
            for row, events, by_kind in results:
                rows.append(row)
                if len(events):
                    frames.append(events)
                for kind, (found, n) in by_kind.items():
                    f0, n0 = recall.get(kind, (0, 0))
                    recall[kind] = (f0 + found, n0 + n)
            with_events = [e for _, e, _ in results if len(e)]
            if log is not None and with_events:
                batch_events = pd.concat(with_events, ignore_index=True)
                known = set(log.statuses(batch_events["event_id"])["event_id"]) if notifier else set()
                status["new_cases"] += log.upsert_events(batch_events, who=who)
                if notifier:   # alerts go out for events new to the case log only
                    sent = notifier.notify(batch_events[~batch_events["event_id"].isin(known)])
                    status["alerts_sent"] += sent["sent"]
                    status["alerts_failed"] += sent["failed"]
            done += len(batch)
            status.update(done=done, errors=sum(1 for r in rows if r.get("error")),
                          updated_at=pd.Timestamp.now(tz="UTC").isoformat())
            _write_json(report / "status.json", status)
            if progress:
                progress(done, total, batch[-1])
        summary = _rank(rows)
        events = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if len(events):
            events = events.sort_values(["severity", "start", "event_id"], ascending=[False, True, True],
                                        ignore_index=True)
        events.to_parquet(report / "events.parquet", index=False)
        summary.to_parquet(report / "summary.parquet", index=False)
        summary.to_csv(report / "summary.csv", index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
        seconds = time.perf_counter() - began
        status.update(state="done", seconds=round(seconds, 2), events=len(events),
                      recall={k: list(v) for k, v in recall.items()},
                      message=f"{total} symbols, {len(events)} events, {status['new_cases']} new cases, "
                              f"{status['errors']} failed, {seconds:.1f} s on {engine}")
        _write_json(report / "status.json", status)
        return ScanResult(summary, events, engine, report, seconds, status["new_cases"], recall)
    except BaseException as exc:
        status.update(state="failed", message=f"{type(exc).__name__}: {exc}"[:500])
        _write_json(report / "status.json", status)
        raise
    finally:
        if log is not None:
            log.close()
        if started:
            ray.shutdown()
