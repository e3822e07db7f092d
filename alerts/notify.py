"""Sending alerts: match new events against the rules, deliver each through its channel with
retries and backoff inside one deadline, and record what was sent or failed.

A delivery that failed is tried again by later calls (a webhook down for a minute loses
nothing) until ``MAX_ATTEMPTS`` attempts in all; then it stays failed in the record. Error
texts never include the webhook URL (Slack-style URLs carry their secret in the path).
"""
from __future__ import annotations

import json
import os
import smtplib
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Callable
from urllib.parse import quote

import pandas as pd

from alerts.book import AlertBook, Rule

__all__ = ["Notifier", "SmtpSettings", "MAX_ATTEMPTS"]

#: Attempts per (rule, event) over all calls before a delivery is given up for good.
MAX_ATTEMPTS = 10


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "localhost"
    port: int = 25
    sender: str = "surveillance@localhost"
    user: str = ""
    password: str = ""
    starttls: bool = False

    @classmethod
    def from_env(cls) -> "SmtpSettings":
        """``SURVEILLANCE_SMTP_HOST``, ``_PORT``, ``_FROM``, ``_USER``, ``_PASSWORD``, ``_STARTTLS``."""
        def env(name: str, default: str = "") -> str:   # set but empty (compose) counts as unset
            return os.environ.get(name) or default
        return cls(host=env("SURVEILLANCE_SMTP_HOST", "localhost"), port=int(env("SURVEILLANCE_SMTP_PORT", "25")),
                   sender=env("SURVEILLANCE_SMTP_FROM", "surveillance@localhost"),
                   user=env("SURVEILLANCE_SMTP_USER", ""), password=env("SURVEILLANCE_SMTP_PASSWORD", ""),
                   starttls=env("SURVEILLANCE_SMTP_STARTTLS", "").lower() in ("1", "true", "yes"))

    def __repr__(self) -> str:
        return f"SmtpSettings(host={self.host!r}, port={self.port}, sender={self.sender!r}, user={self.user!r})"


class Notifier:
    """Deliver matching new events for the rules of ``book``.

    ``app_url`` (default ``SURVEILLANCE_APP_URL``, else http://localhost:8501) makes each
    alert's deep link to the event's case; ``retries`` and ``backoff`` (seconds, doubling)
    apply per delivery, ``deadline`` (seconds) to one ``notify`` call in all, ``timeout`` to
    each request.
    """

    def __init__(self, book: AlertBook, *, smtp: SmtpSettings | None = None, app_url: str | None = None,
                 retries: int = 2, backoff: float = 0.5, deadline: float = 30.0, timeout: float = 5.0,
                 sleep: Callable[[float], None] = time.sleep):
        self.book = book
        self.smtp = smtp or SmtpSettings.from_env()
        self.app_url = (app_url or os.environ.get("SURVEILLANCE_APP_URL") or "http://localhost:8501").rstrip("/")
        self.retries, self.backoff, self.deadline, self.timeout, self.sleep = retries, backoff, deadline, timeout, sleep

    # ---- the message ----------------------------------------------------------------------

    def link(self, event: dict) -> str:
        # The app's root: app.py routes ?event=ID to the Cases page after its sign-in gate.
        return f"{self.app_url}/?event={quote(str(event['event_id']), safe='')}"

    def message(self, event: dict) -> tuple[str, str]:
        start = pd.Timestamp(event.get("start"))
        subject = (f"[surveillance] {event.get('kind', 'event')} on {event.get('symbol')}, "
                   f"severity {float(event.get('severity', 0)):.3f}")
        body = (f"{event.get('kind', 'event')} on {event.get('symbol')} ({event.get('interval', '')}) from "
                f"{start:%Y-%m-%d %H:%M} UTC, severity {float(event.get('severity', 0)):.3f}, "
                f"detectors {event.get('detectors', '')}.\nCase: {self.link(event)}")
        return subject, body

    # ---- channels -------------------------------------------------------------------------

    def _webhook(self, rule: Rule, event: dict, timeout: float) -> None:
        subject, body = self.message(event)
        text = f"*{subject}*\n{body.split(chr(10))[0]}\n<{self.link(event)}|Open the case>"
        payload = {"text": text, "event_id": str(event["event_id"]), "link": self.link(event)}
        request = urllib.request.Request(rule.target, data=json.dumps(payload).encode("utf-8"), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:   # noqa: S310 - http(s) only
                response.read(1024)
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"webhook answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RuntimeError(f"webhook unreachable: {type(reason).__name__}: {reason}") from None

    def _email(self, rule: Rule, event: dict, timeout: float) -> None:
        subject, body = self.message(event)
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = self.smtp.sender, rule.target, subject
        mail.set_content(body)
        with smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=timeout) as smtp:
            if self.smtp.starttls:
                smtp.starttls()
            if self.smtp.user:
                smtp.login(self.smtp.user, self.smtp.password)
            smtp.send_message(mail)

    # ---- delivery -------------------------------------------------------------------------

    def _deliver(self, rule: Rule, event: dict, ends: float) -> tuple[bool, int, str]:
        send = self._webhook if rule.channel == "webhook" else self._email
        error, attempts = "", 0
        for attempt in range(self.retries + 1):
            left = ends - time.monotonic()
            if left <= 0:
                return False, attempts, f"deadline passed{': ' + error if error else ''}"
            attempts += 1
            try:
                send(rule, event, min(self.timeout, left))
                return True, attempts, ""
            except Exception as exc:  # noqa: BLE001 - every failure is recorded, none stops the others
                error = str(exc) if isinstance(exc, RuntimeError) else f"{type(exc).__name__}: {exc}"
            if attempt < self.retries:
                self.sleep(max(0.0, min(self.backoff * 2 ** attempt, ends - time.monotonic())))
        return False, attempts, error

    def notify(self, events: pd.DataFrame) -> dict[str, int]:
        """Send every (rule, event) match not sent yet; returns counts sent / failed / matched."""
        counts = {"matched": 0, "sent": 0, "failed": 0}
        if events is None or not len(events):
            return counts
        records = events.to_dict("records")
        ends = time.monotonic() + self.deadline
        for rule in self.book.rules(enabled_only=True):
            symbols = rule.symbol_set()
            matching = [e for e in records if rule.matches(e, symbols)]
            done = self.book.delivered(rule.id, [str(e["event_id"]) for e in matching], max_attempts=MAX_ATTEMPTS)
            for event in matching:
                if str(event["event_id"]) in done:
                    continue
                counts["matched"] += 1
                ok, attempts, error = self._deliver(rule, event, ends)
                self.book.record(rule, str(event["event_id"]), "sent" if ok else "failed", attempts, error)
                counts["sent" if ok else "failed"] += 1
        return counts
