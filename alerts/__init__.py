"""Alerts: rules (symbols or a watchlist, kind, minimum severity) kept in the case database,
and new events sent through a webhook (Slack-compatible JSON) or e-mail (SMTP), each with
retries, a deadline and a record of what was sent or failed. No Streamlit.

    from alerts import AlertBook, Notifier
    book = AlertBook(case_log.engine)
    book.add_rule("desk", channel="webhook", target="https://hooks.example/T0", min_severity=0.9)
    Notifier(book).notify(new_events)       # what the live monitor and the batch scan call
"""
from alerts.book import AlertBook, Rule
from alerts.notify import Notifier, SmtpSettings

__all__ = ["AlertBook", "Rule", "Notifier", "SmtpSettings"]
