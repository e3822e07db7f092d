"""Alerts against a loopback webhook and a local SMTP server: matching rules, deep links,
retries, the deadline, the record of what was sent or failed, and no alert sent twice."""
import email
import email.policy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from alerts import AlertBook, Notifier, SmtpSettings
from store.cases import CaseLog
from tests.pg import database, pg_server  # noqa: F401


class Hook:
    """A loopback webhook: answers ``fail`` 500s first, then 200; keeps every JSON body."""

    def __init__(self, fail: int = 0):
        self.fail, self.bodies, self.calls = fail, [], 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                hook.calls += 1
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if hook.calls <= hook.fail:
                    self.send_response(500)
                else:
                    hook.bodies.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T0/SECRET"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    made = []

    def make(fail=0):
        made.append(Hook(fail))
        return made[-1]
    yield make
    for h in made:
        h.close()


@pytest.fixture
def smtp():
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append((envelope.rcpt_tos, envelope.content.decode("utf-8", "replace")))
            return "250 OK"

    import socket
    with socket.socket() as probe:          # a free loopback port (the controller cannot take port 0)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    inbox.settings = SmtpSettings(host="127.0.0.1", port=port, sender="alerts@example.com")
    yield inbox
    controller.stop()


@pytest.fixture
def book():
    log = CaseLog()
    yield AlertBook(log.engine)
    log.close()


def events(*rows):
    base = {"interval": "1h", "start": pd.Timestamp("2024-03-01 10:00", tz="UTC"), "detectors": "zscore"}
    return pd.DataFrame([{**base, **r} for r in rows])


EVENTS = events({"event_id": "e1", "symbol": "AAPL", "kind": "price_spike", "severity": 0.97},
                {"event_id": "e2", "symbol": "MSFT", "kind": "volume_surge", "severity": 0.99},
                {"event_id": "e3", "symbol": "AAPL", "kind": "volume_surge", "severity": 0.50})


def test_matching_events_reach_the_webhook_and_smtp_once(book, hook, smtp):
    web = hook()
    book.add_rule("aapl", channel="webhook", target=web.url, symbols="AAPL", min_severity=0.9)
    book.add_rule("surges", channel="email", target="desk@example.com", kind="volume_surge", min_severity=0.9)
    notifier = Notifier(book, smtp=smtp.settings, app_url="https://surveil.example", backoff=0.01)
    assert notifier.notify(EVENTS) == {"matched": 2, "sent": 2, "failed": 0}
    [body] = web.bodies
    assert body["event_id"] == "e1" and body["link"] == "https://surveil.example/?event=e1"
    assert "price_spike on AAPL" in body["text"] and "<https://surveil.example/?event=e1|" in body["text"]
    [(to, raw)] = smtp.messages
    mail = email.message_from_string(raw, policy=email.policy.default)
    assert to == ["desk@example.com"] and mail["Subject"].startswith("[surveillance] volume_surge on MSFT")
    assert "Case: https://surveil.example/?event=e2" in mail.get_content()
    # A later scan finds the same events again: nothing is sent twice.
    assert notifier.notify(EVENTS) == {"matched": 0, "sent": 0, "failed": 0}
    assert len(web.bodies) == 1 and len(smtp.messages) == 1
    assert [(d["event_id"], d["status"], d["attempts"]) for d in book.deliveries()] == [("e1", "sent", 1),
                                                                                       ("e2", "sent", 1)]


def test_a_failing_webhook_is_retried_then_recorded(book, hook):
    flaky = hook(fail=2)
    book.add_rule("all", channel="webhook", target=flaky.url)
    notifier = Notifier(book, retries=2, backoff=0.01)
    assert notifier.notify(EVENTS.iloc[:1])["sent"] == 1
    assert flaky.calls == 3 and book.deliveries()[0]["attempts"] == 3

    down = hook(fail=100)
    book.set_enabled(1, False)
    book.add_rule("down", channel="webhook", target=down.url)
    assert Notifier(book, retries=1, backoff=0.01).notify(EVENTS.iloc[1:2]) == {"matched": 1, "sent": 0, "failed": 1}
    failed = book.deliveries()[-1]
    assert failed["status"] == "failed" and failed["attempts"] == 2 and failed["error"] == "webhook answered HTTP 500"
    assert "SECRET" not in failed["error"]
    # A later call tries the failed delivery again (adding to its attempts); once it works it is sent.
    down.fail = 0
    assert Notifier(book, retries=0).notify(EVENTS.iloc[1:2])["sent"] == 1
    assert book.deliveries()[-1]["status"] == "sent" and book.deliveries()[-1]["attempts"] == 3


def test_the_deadline_bounds_a_call(book):
    import time
    book.add_rule("nowhere", channel="webhook", target="http://127.0.0.1:9/unreachable")   # discard port: refused
    began = time.monotonic()
    counts = Notifier(book, retries=5, backoff=10.0, deadline=0.5).notify(EVENTS.iloc[:2])
    assert time.monotonic() - began < 3     # not 5 retries x 10 s backoff
    assert counts == {"matched": 2, "sent": 0, "failed": 2}
    first, second = book.deliveries()
    assert first["error"].startswith("deadline passed: webhook unreachable") and first["attempts"] == 1
    assert second["error"] == "deadline passed" and second["attempts"] == 0


def test_rules_are_checked_and_watchlists_resolve(book):
    from store.watchlists import save_watchlist
    with pytest.raises(ValueError, match="http"):
        book.add_rule("x", channel="webhook", target="ftp://nope")
    with pytest.raises(ValueError, match="address"):
        book.add_rule("x", channel="email", target="nobody")
    with pytest.raises(ValueError, match="channel"):
        book.add_rule("x", channel="pager", target="x")
    save_watchlist("tech", ["AAPL", "NVDA"])
    rule = book.add_rule("tech", channel="email", target="a@example.com", symbols="watchlist:tech")
    assert rule.symbol_set() == {"AAPL", "NVDA"}
    assert [r.name for r in book.rules()] == ["tech"]


def test_the_app_role_keeps_alert_rules_without_creating_tables(database):   # noqa: F811
    """The alert tables come from the migrations, so a restricted PostgreSQL role can use them."""
    app_url, admin_url = database
    CaseLog(app_url, admin_url=admin_url).close()                # the owner migrates (0003 included)
    log = CaseLog(app_url)                                       # the app's own role, as in a deploy
    book = AlertBook(log.engine)
    rule = book.add_rule("pumps", channel="webhook", target="http://127.0.0.1:9/hook", kind="pump_and_dump")
    book.record(rule, "e" * 16, "sent", 1)
    assert [r.name for r in book.rules()] == ["pumps"] and book.deliveries()[0]["status"] == "sent"
    log.close()


@pytest.mark.parametrize("args", [dict(name=None), dict(name=5), dict(symbols=None), dict(name="a\x00b"),
                                  dict(target="https://h/" + "x" * 3000), dict(min_severity=None)])
def test_a_rule_of_the_wrong_shape_says_what_to_fix(book, args):
    rule = {"name": "desk", "channel": "webhook", "target": "https://h.example/x", **args}
    with pytest.raises(ValueError, match="rule's|minimum severity"):
        book.add_rule(rule.pop("name"), **rule)
