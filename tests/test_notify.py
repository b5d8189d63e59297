"""Notifications against a real SMTP server (aiosmtpd on 127.0.0.1) and a real webhook receiver
(http.server in a thread): what a run holds reaches people once, changes are sent again, what
stays held is reminded, failures are logged without secrets and never raise."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import ssl
import threading
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import httpx
import pytest
import structlog
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from hub.config import HubConfig
from hub.daemon import REMINDER_EVERY, REMINDER_JOB, build_scheduler, run_reminders
from hub.engine import RunReport
from hub.errors import ConfigError
from hub.notify import collect, notify_run, notify_settings, send_reminders
from hub.planner import PlanItem
from hub.records import Action
from hub.store import HELD, Store
from hub.testing import ConnectorPlugin, make_hub, serve

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=timezone.utc)
PASSWORD = "smtp-pa55word-9f8e7d"
HOOK_TOKEN = "XyZ-s3cr3t-hook-token-42"
KEY = "invoice:acme:2026-10"


# A self-signed certificate for 127.0.0.1 (valid 2020-2120), made for these tests only, with
#   openssl ca -selfsign -startdate 20200101000000Z -enddate 21200101000000Z (subjectAltName IP:127.0.0.1)
TEST_CERT = """\
-----BEGIN CERTIFICATE-----
MIIDKDCCAhCgAwIBAgIBATANBgkqhkiG9w0BAQsFADAcMRowGAYDVQQDDBFtc3At
aHViIHRlc3QgU01UUDAgFw0yMDAxMDEwMDAwMDBaGA8yMTIwMDEwMTAwMDAwMFow
HDEaMBgGA1UEAwwRbXNwLWh1YiB0ZXN0IFNNVFAwggEiMA0GCSqGSIb3DQEBAQUA
A4IBDwAwggEKAoIBAQC2zK8PM2tvnMJCg6mqEnlmGmCdYSzV0mVO3puV/XfinU0O
zNQ/WKIeVoAzJcu7rSk5EUZ2gu7NpRpWBAX6ZDe7uwGXAoGaA/jYiO+3wc9rmJ2m
C7LML5FrBR/45U8aVaM3+uuEICfObDK5PZPA/2t0zhwENTtBWVEooE5NawmBOeq8
e3VG8U/2/9rBCkYRyypjWxoSkGyEf9d/Ztn3QxfpvwQ5sIbkhd3mNzPnPGgSXypt
AcFftLlOEwXnUImJlRrZEUrmA4//DvY76lHq5kywdNCo7j13watwzYkR82mYtsKo
tbqKP+B3IC+w2f3cOqCrZPLvsLKsLfaedXI904IbAgMBAAGjczBxMA8GA1UdEwEB
/wQFMAMBAf8wGgYDVR0RBBMwEYcEfwAAAYIJbG9jYWxob3N0MA4GA1UdDwEB/wQE
AwICpDATBgNVHSUEDDAKBggrBgEFBQcDATAdBgNVHQ4EFgQUEkFqzL0tLQzTgxSE
9gRsqrH2bV0wDQYJKoZIhvcNAQELBQADggEBAGssrASOu9z5K6/YqZsY6fU3aqWC
zQAiKsMXSeQpH7SKz6Ld1pqIH7ldGj0HVebgV2E23wWXHwZN4PpkLecXhGGtXKY2
0x5VxtauQQL0LRJMpkPSCxkp038jKNoJUS566iUzkUw0tSptlSjsCXhRTE83yt+X
y8cMQd+wf94s5R3tXgaobe2aZWOiZKOLawQkapEjlPzBKfnHhmmSBB0yRK5MlYki
AxPZQoAd9Y/tOapEfPjiCcIiKowbEflBiXgEbB5DLW/080Kt5p+Htsg9Lj3upBWQ
sB+rupspfhJmF8wGV4/LqRfP8KVRhp/wevgB4Lpes7t+hv8D6UzBAyNwbmg=
-----END CERTIFICATE-----
"""
TEST_KEY = """\
-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQC2zK8PM2tvnMJC
g6mqEnlmGmCdYSzV0mVO3puV/XfinU0OzNQ/WKIeVoAzJcu7rSk5EUZ2gu7NpRpW
BAX6ZDe7uwGXAoGaA/jYiO+3wc9rmJ2mC7LML5FrBR/45U8aVaM3+uuEICfObDK5
PZPA/2t0zhwENTtBWVEooE5NawmBOeq8e3VG8U/2/9rBCkYRyypjWxoSkGyEf9d/
Ztn3QxfpvwQ5sIbkhd3mNzPnPGgSXyptAcFftLlOEwXnUImJlRrZEUrmA4//DvY7
6lHq5kywdNCo7j13watwzYkR82mYtsKotbqKP+B3IC+w2f3cOqCrZPLvsLKsLfae
dXI904IbAgMBAAECggEAHhg9m+WNwv7OVpABjz/iX6ZpEI/uhzdPuXfZqoxjv9nA
1XZwXQt1CUSZb5JB4+CCwGPxM1KkCRQs7UtVRp9YM556iQd/GcGcpt2IhbqxMNgb
4Dnd0lLkgHeEB4CNENtXd0BmpMZ8dzYF9cxG9oe2g7DpGOJAoqYXP/aAXauJEY6V
c4I1tLOK/5FuA9BqcQ9m1WuVAgWoqghKguYu4k0rCd2rDNDxzj7WuLQQ5XvFgm53
EuTy5J91gRtR5CzPZg9zH4qlwzGChF+0El6yntLh6pay94khCkh1XH5OotrEHuVE
WyGuIy6oyXA+LHKy62XJ7r9SsFo0u984Duh5HfZZLQKBgQDrh/bLebWmSaytQbJS
TBcro5uHjFbFqMaoRtNgxUektkdWg7yG6RF6Z6udVPKFOC3sODEKOmEj0it5ACZ8
3JubeiDRCMbHNIjQ19QrFbQBjMVrw0mQYSA9Ci89/kom1I/vd7CQBeINg1HCK/rk
Q1AdCr3O0VgkEoYTaCboykQrbQKBgQDGr4+6C3ZkyKLZqjs5k7bqgKAQniZSaQFo
X9DG1GD+FbuiT3conB329IgcHcxM7g1hPgJGGRAyZkILWtzyl1bhuvsfRG451w7x
rT3b0fIhcLYbhDT+Dt85ZXm3IvSU/9bJ4ZH6Y/v5vko4NlnLVRB+LnAh0Bj3nPFu
KjqnPe0mpwKBgDsv9qfZVPmNqBP932bo8iWoPoxIiwGu0QU2jyXRTZipqbGm9zhb
12WQKcMmtq8dmAS1djVgyEptJTmJ/SIBeiUPArIk53blz7/TjOCq2opNKstSzui2
T5inN4n3ngC2B9mglUEMCWtl5aTK0oiMFdTGfz46w1CFSyYTVTvIoGrdAoGALVRQ
jjmfQU8lGFPmPzScPtQpsKDkTVj3oUB6+WHq3w1GSbmnjfRQQc94XjHOMp79Hnpv
Ol7texIpbz3DuvUcNVPbhz6thzSxjCHiQwybGVYFtjFrhasO8qFcK5QmCPh1oIl+
LIozKr9nX3vG8MTvhlpB6vT3PUbpLiEkUJOoT3ECgYAyBfOR42l5qKeQ4NoDrK8y
njT2GiCacMH/QFTupCQJCO57PunqG8amVeTwlmRXFXxKGLpRodvSFNXC/2Sb5uQm
gcz8IPf4Zl0jdyzefdYxmousOARXpYc4+Q7XXKqKVk/gK3WoerxGa4OyHL+PS0Aw
JAkN+rkM96o8BsGr7+gmxQ==
-----END PRIVATE KEY-----
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """An aiosmtpd handler keeping every message it accepts."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes = []
        self.tls: list[bool] = []          # whether each message came over TLS

    async def handle_DATA(self, server, session, envelope):
        self.tls.append(session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None)
        self.envelopes.append(envelope)
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 Message accepted"


class Authenticator:
    """Accepts only ``hub`` / PASSWORD; remembers what was tried."""

    def __init__(self):
        self.tried: list[tuple[bytes, bytes]] = []

    def __call__(self, server, session, envelope, mechanism, auth_data):
        assert isinstance(auth_data, LoginPassword)
        self.tried.append((auth_data.login, auth_data.password))
        ok = auth_data.login == b"hub" and auth_data.password == PASSWORD.encode()
        return AuthResult(success=ok, handled=False)   # handled=False: the server answers 535 itself


@pytest.fixture
def smtp():
    inbox = Inbox()
    auth = Authenticator()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), authenticator=auth,
                            auth_require_tls=False)
    controller.start()
    inbox.port, inbox.auth = controller.port, auth
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.fixture
def cert(tmp_path):
    """(CA/certificate file, server-side SSLContext) for 127.0.0.1."""
    (tmp_path / "cert.pem").write_text(TEST_CERT)
    (tmp_path / "key.pem").write_text(TEST_KEY)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return str(tmp_path / "cert.pem"), context


@pytest.fixture
def tls_smtp(cert):
    """An SMTP server that offers STARTTLS and refuses mail and logins before it."""
    inbox, auth = Inbox(), Authenticator()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), authenticator=auth,
                            tls_context=cert[1], require_starttls=True)
    controller.start()
    inbox.port, inbox.auth, inbox.ca_file = controller.port, auth, cert[0]
    try:
        yield inbox
    finally:
        controller.stop()


class Receiver:
    """A webhook receiver: records every POST (path and JSON body) and answers ``status``."""

    def __init__(self):
        self.posts: list[tuple[str, dict]] = []
        self.status = 200
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.posts.append((request.url.path, json.loads(request.content)))
        return httpx.Response(self.status, text="ok" if self.status < 300 else "boom")

    def bodies(self, path: str) -> list[dict]:
        return [b for p, b in self.posts if p == path]


@pytest.fixture
def receiver():
    r = Receiver()
    with serve(r) as base:
        r.base = base
        yield r


class Clock:
    def __init__(self, now: datetime = NOW):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def notify_table(smtp=None, receiver=None, formats=("json", "slack", "teams"), **email_extra) -> dict:
    table: dict = {}
    if smtp is not None:
        table["email"] = {"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "starttls": False,
                          "from": "msp-hub@msp.example", "to": ["billing@msp.example", "ops@msp.example"],
                          **email_extra}
    if receiver is not None:
        table["webhooks"] = [{"name": f, "url_env": f"HOOK_{f.upper()}", "format": f} for f in formats]
    return table


def environ(receiver=None, formats=("json", "slack", "teams")) -> dict[str, str]:
    env = {"SMTP_PASSWORD": PASSWORD}
    if receiver is not None:
        env.update({f"HOOK_{f.upper()}": f"{receiver.base}/{f}/{HOOK_TOKEN}" for f in formats})
    return env


def hub_with(table: dict | None, env: dict[str, str] | None = None, clock=None, store=None):
    config = HubConfig(database=":memory:", environ=env or {})
    if table is not None:
        config.notify = table
    return make_hub(config=config, clock=clock or Clock(), store=store)


def held(key=KEY, client="acme", name="Acme Corp", total=120000, cause="review", reasons=None, period="2026-10"):
    return {"key": key, "kind": "invoice", "client_id": client, "client_name": name, "period": period,
            "total": total, "currency": "EUR", "cause": cause,
            "reasons": reasons or ["in the review window until 2026-11-23 06:00"]}


def report(*helds, run_id="run-1", passes=None, failed=None, mode="sync", plan=()):
    r = RunReport(run_id, mode, NOW)
    r.held = list(helds)
    r.passes = passes or {}
    r.failed = failed or []
    r.plan = list(plan)
    return r


def store_held(hub, key=KEY, client="acme"):
    """The held action as the engine leaves it in the outbox."""
    hub.store.record_action(Action(key, "invoice", "stripe", client, {"lines": []}, "2026-10"), "run-0")
    hub.store.mark_failed(key, "in the review window", status=HELD)


def everything_logged(logs) -> str:
    return json.dumps(logs, default=str)


# --- a held invoice reaches people, once ------------------------------------------------------------

def test_a_held_invoice_reaches_the_mailbox_and_every_webhook_with_its_amount_and_release(smtp, receiver):
    hub = hub_with(notify_table(smtp, receiver), environ(receiver))
    sent = notify_run(hub, report(held()))
    assert [(r["channel"], r["status"]) for r in sent] == [("email", "sent"), ("json", "sent"), ("slack", "sent"),
                                                            ("teams", "sent")]
    [mail] = smtp.messages
    assert mail["Subject"] == "msp-hub: 1 held (1200.00 EUR)"
    assert mail["To"] == "billing@msp.example, ops@msp.example" and mail["From"] == "msp-hub@msp.example"
    assert smtp.envelopes[0].rcpt_tos == ["billing@msp.example", "ops@msp.example"] and smtp.tls == [False]
    body = mail.get_content()
    assert "Acme Corp (acme), 2026-10, 1200.00 EUR [invoice:acme:2026-10]" in body
    assert "Held for review" in body and "Why: in the review window until 2026-11-23 06:00" in body
    assert "Release: msp-hub approve invoice:acme:2026-10" in body
    assert "Run run-1 (sync" in body
    for fmt in ("json", "slack", "teams"):
        [(path, payload)] = [(p, b) for p, b in receiver.posts if p.startswith(f"/{fmt}/")]
        assert path == f"/{fmt}/{HOOK_TOKEN}"
        assert "1200.00 EUR" in json.dumps(payload) and "msp-hub approve invoice:acme:2026-10" in json.dumps(payload)


def test_the_json_webhook_body_is_the_documented_one(smtp, receiver):
    hub = hub_with(notify_table(None, receiver, formats=("json",)), environ(receiver, ("json",)))
    notify_run(hub, report(held(), held("invoice:beta:2026-10", "beta", "Beta", 5050, "guardrail",
                                        ["total 50.50 EUR is 80% below last period's 252.50 EUR"])))
    [(_, body)] = receiver.posts
    assert set(body) == {"type", "run_id", "mode", "started_at", "summary", "held", "totals", "items"}
    assert body["type"] == "msp-hub.held" and body["run_id"] == "run-1" and body["mode"] == "sync"
    assert body["started_at"] == NOW.isoformat() and body["held"] == 2
    assert body["totals"] == [{"currency": "EUR", "total": 125050, "amount": "1250.50 EUR"}]
    assert body["summary"] == "msp-hub: 2 held (1250.50 EUR)"
    beta = next(i for i in body["items"] if i["client_id"] == "beta")
    assert beta == {"subject": "invoice:beta:2026-10", "kind": "held", "key": "invoice:beta:2026-10", "client": "Beta",
                    "client_id": "beta", "period": "2026-10", "total": 5050, "currency": "EUR",
                    "amount": "50.50 EUR", "cause": "guardrail",
                    "reason": "total 50.50 EUR is 80% below last period's 252.50 EUR",
                    "reasons": ["total 50.50 EUR is 80% below last period's 252.50 EUR"],
                    "release": "msp-hub approve invoice:beta:2026-10"}


def test_the_slack_webhook_body_is_an_incoming_webhook_message_in_mrkdwn(receiver):
    hub = hub_with(notify_table(None, receiver, formats=("slack",)), environ(receiver, ("slack",)))
    notify_run(hub, report(held(name="Smith & <Sons>"),
                           held("invoice:b:2026-10", "b", "B", 1, "error", ["no contract (fix: add one for b)"])))
    [(_, body)] = receiver.posts
    assert "Release: add one for b\n" in body["text"] + "\n"                # a sentence is not code
    assert set(body) == {"text", "blocks"}
    assert body["text"].startswith("*msp-hub: 2 held (1200.01 EUR)*")
    assert "Smith &amp; &lt;Sons&gt;" in body["text"] and "<Sons>" not in body["text"]   # mrkdwn escaped
    assert "`msp-hub approve invoice:acme:2026-10`" in body["text"]
    assert body["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": "msp-hub: 2 held (1200.01 EUR)"}}
    sections = [b for b in body["blocks"] if b["type"] == "section"]
    assert all(b["text"]["type"] == "mrkdwn" and len(b["text"]["text"]) <= 3000 for b in sections)
    assert any("1200.00 EUR" in b["text"]["text"] for b in sections)
    assert len(body["blocks"]) <= 50


def test_the_slack_body_stays_within_fifty_blocks_when_many_reasons_are_held(receiver):
    hub = hub_with(notify_table(None, receiver, formats=("slack",)), environ(receiver, ("slack",)))
    many = [held(f"invoice:c{i}:2026-10", f"c{i}", f"Client {i}", 100 * i, "guardrail", [f"total changed by {i}%"])
            for i in range(1, 61)]
    notify_run(hub, report(*many))
    [(_, body)] = receiver.posts
    assert 45 <= len(body["blocks"]) <= 50
    assert body["blocks"][-1]["type"] == "context" and "more groups" in body["blocks"][-1]["elements"][0]["text"]
    assert "Client 60" in body["text"]          # the text keeps every item


def test_the_teams_webhook_body_is_an_adaptive_card_message(receiver):
    hub = hub_with(notify_table(None, receiver, formats=("teams",)), environ(receiver, ("teams",)))
    notify_run(hub, report(held()))
    [(_, body)] = receiver.posts
    assert body["type"] == "message"
    [attachment] = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert card["body"][0]["type"] == "TextBlock" and card["body"][0]["text"] == "msp-hub: 1 held (1200.00 EUR)"
    assert {b["type"] for b in card["body"]} == {"TextBlock", "FactSet"}
    [facts] = [b["facts"] for b in card["body"] if b["type"] == "FactSet"]
    assert facts[0]["title"] == "Acme Corp (acme), 2026-10, 1200.00 EUR [invoice:acme:2026-10]"
    assert any(b.get("text") == "Release: msp-hub approve invoice:acme:2026-10" for b in card["body"])


def test_a_second_run_with_the_same_hold_sends_nothing(smtp, receiver):
    hub = hub_with(notify_table(smtp, receiver), environ(receiver))
    assert len(notify_run(hub, report(held()))) == 4
    assert notify_run(hub, report(held(), run_id="run-2")) == []
    assert len(smtp.messages) == 1 and len(receiver.posts) == 3
    [row] = hub.store.notifications()
    assert row["subject"] == KEY and row["run_id"] == "run-1" and row["sends"] == 1


def test_a_changed_or_new_hold_is_sent_again_and_only_it(smtp):
    clock = Clock()
    hub = hub_with(notify_table(smtp), clock=clock)
    other = held("invoice:beta:2026-10", "beta", "Beta", 9900, "review")
    notify_run(hub, report(held(), other))
    clock.now = NOW + timedelta(hours=1)
    changed = held(cause="guardrail", reasons=["total 1200.00 EUR is 3 times last period's 400.00 EUR"])
    sent = notify_run(hub, report(changed, other, run_id="run-2"))
    assert [r["items"] for r in sent] == [[KEY]]
    body = smtp.messages[1].get_content()
    assert "Held by a guardrail" in body and "Beta" not in body
    assert "Release: msp-hub approve invoice:acme:2026-10" in body
    row = hub.store.get_notification(KEY)
    assert row["first_sent_at"] == clock.now.isoformat() and row["item"]["cause"] == "guardrail"
    clock.now = NOW + timedelta(hours=2)
    sent = notify_run(hub, report(changed, other, held(total=130000), run_id="run-3"))   # a new amount
    assert "1300.00 EUR" in smtp.messages[2].get_content() and len(smtp.messages) == 3
    sent = notify_run(hub, report(held(total=130000), other, held("invoice:gamma:2026-10", "gamma", "Gamma", 100),
                                  run_id="run-4"))
    assert sent[0]["items"] == ["invoice:gamma:2026-10"]


def test_a_stream_failing_again_in_the_next_run_is_not_news_unless_its_error_changed(smtp):
    hub = hub_with(notify_table(smtp))

    def failing(run_id, at, status=503):
        error = f"ninjaone: GET /v2/devices failed with HTTP {status}: request 1b4e28ba-2fa1-11d2-883f-0016d3cca427"
        why = (f"stream ninjaone.devices failed at {at} (run {run_id}): {error}; fix the cause, then run: "
               f"msp-hub resync --connector ninjaone --stream devices")
        return report(held(cause="incomplete", reasons=[why]), run_id=run_id,
                      passes={"ninjaone.devices": {"status": "failed", "records": 0, "error": error.replace(
                          "1b4e28ba-2fa1-11d2-883f-0016d3cca427", f"{run_id}-0000-0000-0000-000000000000")}})

    assert len(notify_run(hub, failing("3f2a1b9c0d4e", "2026-11-22T05:00:00"))) == 1
    assert notify_run(hub, failing("77aa00ff1234", "2026-11-22T05:15:00.123+00:00")) == []
    [sent] = notify_run(hub, failing("9c9c9c9c9c9c", "2026-11-22T05:30:00", status=401))
    assert sorted(sent["items"]) == [KEY, "stream:ninjaone.devices"]
    assert "HTTP 401" in smtp.messages[-1].get_content()


def test_the_message_groups_items_by_reason_and_gives_each_its_release(smtp):
    hub = hub_with(notify_table(smtp))
    why = "stream ninjaone.devices failed in run run-1: short page"
    r = report(held("invoice:a:2026-10", "a", "Alpha", 1000, "incomplete", [why]),
               held("invoice:b:2026-10", "b", "Bravo", 2000, "incomplete", [why]),
               held("invoice:c:2026-10", "c", "Charlie", 3000, "error",
                    ["client c has no contract (fix: add a [[contracts]] entry for c in mappings/contracts.toml)"]),
               held("invoice:d:2026-10", "d", "Delta", 4000, "review"),
               held("invoice:e:2026-10", "e", "Echo", 5000, "review"),
               {**held("ticket:ninjaone:f1", "f", "Foxtrot", None, "incomplete", [why], period=None),
                "kind": "ticket", "currency": None},
               passes={"ninjaone.devices": {"status": "failed", "records": 10, "error": "short page"},
                       "ninjaone.organizations": {"status": "complete", "records": 5, "error": None}},
               failed=[{"key": "ticket:ninjaone:a1", "error": "connectwise: POST /service/tickets failed with HTTP 400"}])
    notify_run(hub, r)
    mail = smtp.messages[0]
    assert mail["Subject"] == "msp-hub: 6 held (150.00 EUR), 1 stream read failed, 1 push failed"
    body = mail.get_content()
    # The two holds of one failed stream share a group and its release command.
    assert body.count(f"Why: {why}") == 1
    assert body.count("Release: msp-hub resync --connector ninjaone --stream devices") == 2  # the group + the stream
    assert body.index("Alpha") < body.index("Bravo") < body.index("Held for review")
    assert "Release: add a [[contracts]] entry for c in mappings/contracts.toml" in body
    assert "  - ticket for Foxtrot (f) [ticket:ninjaone:f1]" in body and "Foxtrot (f)," not in body  # no amount
    # One group, two releases: each item carries its own.
    assert "    release: msp-hub approve invoice:d:2026-10" in body and "    release: msp-hub approve invoice:e:2026-10" in body
    assert "== Stream reads that failed (what they feed is held) ==" in body
    assert "Why: ninjaone.devices: short page" in body and "organizations" not in body
    assert "== Pushes that failed ==" in body and "push of ticket:ninjaone:a1" in body
    assert "Release: the next msp-hub sync retries it" in body
    order = [body.index(t) for t in ("Held: a contract", "Held: the data", "Held for review", "Stream reads", "Pushes")]
    assert order == sorted(order)


class FakeConnector:
    """A configured connector: a name and stream names are all a release command needs."""

    action_kinds = ()

    def __init__(self, name, *streams):
        self.name, self._streams = name, streams

    def streams(self):
        return [SimpleNamespace(name=s) for s in self._streams]

    def close(self):
        pass


def test_release_commands_by_cause():
    hub = make_hub(ConnectorPlugin(FakeConnector("connectwise", "companies", "agreements"),
                                   FakeConnector("stripe", "customers")))
    r = report(held("k1", cause="incomplete", reasons=["connectwise.agreements is stale (last complete read 3 days ago)"]),
               held("k2", cause="incomplete", reasons=["a stream it needs failed"]),
               held("k3", cause="veto", reasons=["plugin acme-rules vetoed it (fix: set po_number for client acme)"]),
               held("k4", cause="veto", reasons=["plugin acme-rules vetoed it"]),
               held("k5", cause="error", reasons=["tier 'gold' is unknown"]),
               held("k7", cause="guardrail", reasons=["quantity set to 0"]),
               passes={"stripe.customers": {"status": "failed", "records": 0, "error": "HTTP 500"}},
               failed=[{"key": "k6", "error": "contract has no price (fix: set price in mappings/tiers.toml)"},
                       {"key": "k8", "error": "stripe: POST /v1/invoices failed with HTTP 402"}])
    releases = {i["subject"]: i["release"] for i in collect(hub, r)}
    # A stream the reason names (here a configured one, not read this run) is the one to resync.
    assert releases["k1"] == "msp-hub resync --connector connectwise --stream agreements"
    # A reason naming none: the streams that failed in this run.
    assert releases["k2"] == "msp-hub resync --connector stripe --stream customers"
    assert releases["k3"] == "set po_number for client acme"
    assert releases["k4"].startswith("the plugin that vetoed it")
    assert releases["k5"] == "correct what the reason names; the next run plans it again"
    assert releases["k7"] == "msp-hub approve k7"
    assert releases["stream:stripe.customers"] == "msp-hub resync --connector stripe --stream customers"
    assert releases["push:k6"] == "set price in mappings/tiers.toml"
    assert releases["push:k8"].startswith("the next msp-hub sync retries it")


@pytest.mark.parametrize("cause, reason, release", [
    ("incomplete", "stream ninjaone.devices failed at 2026-11-22T05:00:00 (run r1): HTTP 503; fix the cause, then run: "
                   "msp-hub resync --connector ninjaone --stream devices", "msp-hub resync --connector ninjaone --stream devices"),
    ("incomplete", "stream ninjaone.devices is suspect: its last full sweep read 10 records, 90% fewer than the 100 of "
                   "the sweep before (limit 50%); check the vendor, then let it through with: msp-hub approve --stream "
                   "ninjaone.devices", "msp-hub approve --stream ninjaone.devices"),
    ("review", "draft in_1 of 1200.00 EUR waits for review; finalize the run's drafts with: msp-hub approve --run "
               "abc123", "msp-hub approve --run abc123"),
    ("guardrail", "quantity 0 (was 40); approve it with msp-hub approve agreement_quantity:4711:88:2026-10 once checked",
     "msp-hub approve agreement_quantity:4711:88:2026-10"),
    ("error", "client acme has no tier; fix the contract, then run msp-hub sync again.", "msp-hub sync"),
])
def test_a_command_the_reason_names_is_the_release(cause, reason, release):
    [item] = collect(hub_with(None), report(held("k", cause=cause, reasons=[reason])))
    assert item["release"] == release


def test_an_incomplete_hold_names_the_streams_of_this_run_its_reason_names():
    hub = hub_with(None)
    r = report(held("k1", cause="incomplete", reasons=["connectwise.agreements stopped before it ended"]),
               held("k2", cause="incomplete", reasons=["the last read of its streams is stale"]),
               passes={"stripe.customers": {"status": "failed", "records": 0, "error": "HTTP 500"},
                       "connectwise.agreements": {"status": "stopped", "records": 3, "error": None}})
    k1, k2, stream = collect(hub, r)
    assert k1["release"] == "msp-hub resync --connector connectwise --stream agreements"
    assert k2["release"] == "msp-hub resync --connector stripe --stream customers"
    assert stream["subject"] == "stream:stripe.customers"          # a stopped pass is not a failure
    alone = collect(hub, report(held("k3", cause="incomplete", reasons=["stale"])))
    assert alone[0]["release"].startswith("msp-hub resync (the reason names no single stream")


# --- reminders ------------------------------------------------------------------------------------

def test_a_reminder_goes_out_after_reminder_every_while_the_hold_stays(smtp, receiver):
    clock = Clock()
    table = {**notify_table(smtp, receiver, formats=("json",)), "reminder_every": "24h"}
    hub = hub_with(table, environ(receiver, ("json",)), clock=clock)
    store_held(hub)
    notify_run(hub, report(held()))
    assert send_reminders(hub, NOW + timedelta(hours=23, minutes=59)) == []
    sent = send_reminders(hub, NOW + timedelta(hours=24))
    assert [(r["channel"], r["type"], r["status"]) for r in sent] == [("email", "reminder", "sent"),
                                                                       ("json", "reminder", "sent")]
    mail = smtp.messages[1]
    assert mail["Subject"] == "msp-hub reminder: 1 still held (1200.00 EUR)"
    body = mail.get_content()
    assert "still held" in body and f"first reported: {NOW.isoformat()}" in body
    assert "Release: msp-hub approve invoice:acme:2026-10" in body
    assert receiver.posts[-1][1]["type"] == "msp-hub.reminder" and receiver.posts[-1][1]["items"][0]["key"] == KEY
    assert send_reminders(hub, NOW + timedelta(hours=47)) == []           # the clock restarts at the reminder
    assert len(send_reminders(hub, NOW + timedelta(hours=48))) == 2
    row = hub.store.get_notification(KEY)
    assert row["sends"] == 3 and row["first_sent_at"] == NOW.isoformat()
    # Still held and unchanged: the next run does not repeat it either.
    assert notify_run(hub, report(held(), run_id="run-2")) == []


def test_what_is_no_longer_held_is_forgotten_and_news_again_when_held_again(smtp):
    hub = hub_with(notify_table(smtp))
    store_held(hub)
    store_held(hub, "invoice:beta:2026-10", "beta")
    notify_run(hub, report(held(), held("invoice:beta:2026-10", "beta", "Beta", 100)))
    hub.store.approve(KEY, who="tester")                                  # a person released acme
    hub.store.cancel_action("invoice:beta:2026-10")
    assert send_reminders(hub, NOW + timedelta(days=2)) == []
    assert hub.store.notifications() == []
    store_held(hub)                                                       # held again later: news again
    hub.store.db["actions"].update(KEY, {"approved": 0})
    assert len(notify_run(hub, report(held(), run_id="run-3"))) == 1


def test_a_run_that_planned_the_period_without_holding_forgets_the_hold(smtp):
    hub = hub_with(notify_table(smtp))
    notify_run(hub, report(held(cause="error", reasons=["client acme has no contract (fix: add one)"])))
    # A run scoped elsewhere (nothing planned for acme) keeps the hold in mind...
    notify_run(hub, report(run_id="run-2"))
    assert [r["subject"] for r in hub.store.notifications()] == [KEY]
    # ...one that planned acme's period and did not hold it forgets it.
    planned = PlanItem("invoice", "acme", "Acme Corp", "2026-10", "create",
                       Action(KEY, "invoice", "stripe", "acme", {}, "2026-10"))
    notify_run(hub, report(run_id="run-3", plan=[planned]))
    assert hub.store.notifications() == []


def test_a_failed_stream_is_forgotten_once_a_pass_completes(smtp):
    hub = hub_with(notify_table(smtp))
    failed = {"ninjaone.devices": {"status": "failed", "records": 0, "error": "HTTP 503"}}
    notify_run(hub, report(passes=failed))
    assert notify_run(hub, report(passes=failed, run_id="run-2")) == []
    hub.store.record_pass("ninjaone", "devices", "run-3", NOW.isoformat(), "complete", 10)
    assert send_reminders(hub, NOW + timedelta(days=3)) == []
    assert hub.store.notifications() == []
    assert len(smtp.messages) == 1


# --- failures never raise, secrets never leak --------------------------------------------------------

def test_a_refused_smtp_login_and_a_webhook_answering_500_are_logged_without_secrets(smtp, receiver):
    receiver.status = 500
    table = notify_table(smtp, receiver, formats=("slack",), username="hub", password_env="SMTP_PASSWORD")
    env = {**environ(receiver, ("slack",)), "SMTP_PASSWORD": "wrong-" + PASSWORD}
    hub = hub_with(table, env)
    with structlog.testing.capture_logs() as logs:
        sent = notify_run(hub, report(held()))
    assert [(r["channel"], r["status"]) for r in sent] == [("email", "failed"), ("slack", "failed")]
    assert "535" in sent[0]["error"] and sent[1]["error"] == "slack: HTTP 500"
    assert set(smtp.auth.tried) == {(b"hub", ("wrong-" + PASSWORD).encode())} and smtp.messages == []
    assert len(receiver.posts) == 1
    failures = [e for e in logs if e["event"] == "notify.send_failed"]
    assert {e["channel"] for e in failures} == {"email", "slack"} and all(e["log_level"] == "error" for e in failures)
    text = everything_logged(logs) + json.dumps(sent)
    assert PASSWORD not in text and HOOK_TOKEN not in text and receiver.base not in text
    # Nothing was delivered, so nothing is remembered: the next run tries again.
    assert hub.store.notifications() == []
    receiver.status = 200
    again = notify_run(hub, report(held(), run_id="run-2"))
    assert [r["status"] for r in again] == ["failed", "sent"]


def test_an_unreachable_smtp_server_and_webhook_do_not_raise(receiver):
    port = free_port()   # nothing listens there
    table = {"email": {"smtp_host": "127.0.0.1", "smtp_port": port, "from": "a@b.example", "to": ["c@d.example"]},
             "webhooks": [{"url_env": "HOOK", "format": "teams"}]}
    hub = hub_with(table, {"HOOK": f"http://127.0.0.1:{port}/hook/{HOOK_TOKEN}"})
    with structlog.testing.capture_logs() as logs:
        sent = notify_run(hub, report(held()))
    assert [(r["channel"], r["status"]) for r in sent] == [("email", "failed"), ("webhook[0]", "failed")]
    assert "ConnectionRefusedError" in sent[0]["error"] and sent[1]["error"] == "webhook[0]: ConnectError (no answer)"
    assert HOOK_TOKEN not in everything_logged(logs) + json.dumps(sent)


def test_starttls_required_but_not_offered_fails_instead_of_sending_in_clear(smtp):
    hub = hub_with(notify_table(smtp, starttls=True))
    with structlog.testing.capture_logs() as logs:
        [result] = notify_run(hub, report(held()))
    assert result["status"] == "failed" and "STARTTLS" in result["error"]
    assert smtp.messages == [] and any(e["event"] == "notify.send_failed" for e in logs)


def test_starttls_against_the_relays_ca_logs_in_and_delivers_encrypted(tls_smtp):
    table = notify_table(tls_smtp, starttls=True, ca_file=tls_smtp.ca_file, username="hub",
                         password_env="SMTP_PASSWORD")
    hub = hub_with(table, {"SMTP_PASSWORD": PASSWORD})
    [result] = notify_run(hub, report(held()))
    assert result["status"] == "sent" and tls_smtp.tls == [True]
    assert tls_smtp.auth.tried == [(b"hub", PASSWORD.encode())]
    assert tls_smtp.messages[0]["Subject"] == "msp-hub: 1 held (1200.00 EUR)"


def test_a_certificate_the_hub_does_not_trust_stops_the_mail(tls_smtp):
    hub = hub_with(notify_table(tls_smtp, starttls=True))          # no ca_file: the system's CAs
    [result] = notify_run(hub, report(held()))
    assert result["status"] == "failed" and "CERTIFICATE_VERIFY_FAILED" in result["error"]
    assert tls_smtp.messages == []


def test_implicit_tls_delivers(cert):
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), ssl_context=cert[1])
    controller.start()
    try:
        inbox.port = controller.port
        hub = hub_with(notify_table(inbox, implicit_tls=True, ca_file=cert[0]))
        [result] = notify_run(hub, report(held()))
    finally:
        controller.stop()
    assert result["status"] == "sent" and inbox.tls == [True] and len(inbox.messages) == 1


def test_a_login_with_the_password_from_the_environment_delivers(smtp):
    hub = hub_with(notify_table(smtp, username="hub", password_env="SMTP_PASSWORD"), {"SMTP_PASSWORD": PASSWORD})
    [result] = notify_run(hub, report(held()))
    assert result["status"] == "sent" and smtp.auth.tried == [(b"hub", PASSWORD.encode())]
    assert len(smtp.messages) == 1 and PASSWORD not in smtp.messages[0].as_string()


def test_secrets_never_reach_the_database_or_the_messages(smtp, receiver, tmp_path):
    secret_file = tmp_path / "smtp-password"
    secret_file.write_text(PASSWORD + "\n")
    table = notify_table(smtp, receiver, username="hub", password_file=str(secret_file))
    store = Store(str(tmp_path / "hub.db"))
    hub = hub_with(table, environ(receiver), store=store)
    sent = notify_run(hub, report(held(), passes={"ninjaone.devices": {"status": "failed", "records": 0,
                                                                        "error": "HTTP 503"}}))
    assert {r["status"] for r in sent} == {"sent"}
    hub.close()
    dump = "\n".join(Store(str(tmp_path / "hub.db")).db.iterdump())
    assert "invoice:acme:2026-10" in dump and PASSWORD not in dump and HOOK_TOKEN not in dump
    delivered = json.dumps([b for _, b in receiver.posts]) + "".join(m.as_string() for m in smtp.messages)
    assert PASSWORD not in delivered and HOOK_TOKEN not in delivered


def test_a_wrong_setting_stops_the_hub_at_start_and_at_notify_time_is_logged_and_the_run_stands():
    table = {"webhooks": [{"url_env": "NOT_SET", "format": "slack"}]}
    with pytest.raises(ConfigError, match="NOT_SET is not set"):
        hub_with(table, {})                                       # before any request
    hub = hub_with(None, {})
    hub.config.notify, hub.notify_settings = table, None          # changed after start-up
    with structlog.testing.capture_logs() as logs:
        assert notify_run(hub, report(held())) == []
    [event] = [e for e in logs if e["event"] == "notify.failed"]
    assert "NOT_SET is not set" in event["error"] and event["run_id"] == "run-1"


def test_nothing_is_sent_without_notify_settings_or_for_a_plan_run(smtp):
    assert notify_run(hub_with(None), report(held())) == []
    hub = hub_with(notify_table(smtp))
    assert notify_run(hub, report(held(), mode="plan")) == []
    assert notify_run(hub, report()) == []          # nothing held or failed: no message
    assert smtp.messages == []


# --- settings -------------------------------------------------------------------------------------

def test_settings_defaults_and_secrets():
    config = HubConfig(database=":memory:", environ={"P": PASSWORD, "SLACK": "https://hooks.slack.com/services/T/B/x"})
    s = notify_settings(config, {"email": {"smtp_host": "smtp.example.com", "from": "a@b.example", "to": ["c@d.example"],
                                           "username": "u", "password_env": "P"},
                                 "webhooks": [{"url_env": "SLACK", "format": "slack"},
                                              {"url": "https://hub.example/notify"}]})
    assert s.enabled and s.email.port == 587 and s.email.starttls is True and s.reminder_every == timedelta(hours=24)
    assert s.email.password.reveal() == PASSWORD and PASSWORD not in repr(s)
    assert [(w.label, w.format) for w in s.webhooks] == [("webhook[0]", "slack"), ("webhook[1]", "json")]
    assert "hooks.slack.com" not in repr(s) and sorted(s.secret_values()) == sorted(
        [PASSWORD, "https://hooks.slack.com/services/T/B/x", "https://hub.example/notify"])
    assert not notify_settings(HubConfig()).enabled
    assert notify_settings(config, {"reminder_every": "12h"}).reminder_every == timedelta(hours=12)


EMAIL = {"smtp_host": "smtp.example.com", "from": "hub@msp.example", "to": ["billing@msp.example"]}


@pytest.mark.parametrize("table, key, message, fix", [
    ({"emial": {}}, "notify.emial", "unknown key 'emial'", "use one of email, reminder_every, webhooks"),
    ({"email": {**EMAIL, "port": 25}}, "notify.email.port", "unknown key 'port'", "smtp_port"),
    ({"email": {**EMAIL, "password": "hunter2"}}, "notify.email.password", "secrets are not written",
     'password_env = "VARIABLE"'),
    ({"email": {**EMAIL, "username": "u"}}, "notify.email.password", "missing secret", 'password_env = "VARIABLE"'),
    ({"email": {**EMAIL, "password_env": "P"}}, "notify.email.username", "a password without a username",
     "add username"),
    ({"email": {"smtp_host": "smtp.example.com", "from": "hub@msp.example"}}, "notify.email.to", "missing",
     'to = ["billing@example.com"]'),
    ({"email": {**EMAIL, "to": "billing@msp.example"}}, "notify.email.to", "valid list", 'to = ["billing@example.com"]'),
    ({"email": {**EMAIL, "to": ["not an address"]}}, "notify.email.to", "is not an e-mail address", "to = ["),
    ({"email": {**EMAIL, "smtp_port": "587"}}, "notify.email.smtp_port", "valid integer", "smtp_port = 587"),
    ({"email": {**EMAIL, "smtp_port": 70000}}, "notify.email.smtp_port", "less than or equal to 65535",
     "smtp_port = 587"),
    ({"email": {**EMAIL, "starttls": "yes"}}, "notify.email.starttls", "valid boolean", "starttls = true"),
    ({"email": "smtp.example.com"}, "notify.email", "must be a table", "[notify.email]"),
    ({"email": {**EMAIL, "username": "u", "password_env": "P", "starttls": False}}, "notify.email.starttls",
     "the password would cross the network to smtp.example.com in clear", "starttls = true"),
    ({"email": {**EMAIL, "smtp_port": 465}}, "notify.email.smtp_port", "port 465 speaks TLS from the first byte",
     "implicit_tls = true"),
    ({"email": {**EMAIL, "ca_file": "/nonexistent/ca.pem"}}, "notify.email.ca_file", "cannot load CA certificates",
     "readable PEM file"),
    ({"webhooks": {"url": "https://hooks.example/hunter2"}}, "notify.webhooks", "valid list", "[[notify.webhooks]]"),
    ({"webhooks": [{"url_env": "H", "format": "discord"}]}, "notify.webhooks[0].format", "must be one of",
     'format = "slack"'),
    ({"webhooks": [{"url": "https://hooks.slack.com/services/T/B/x", "format": "slack"}]}, "notify.webhooks[0].url",
     "webhook URL is a secret", 'url_env = "VARIABLE"'),
    ({"webhooks": [{"url": "https://a.example", "url_env": "H"}]}, "notify.webhooks[0].url_env",
     "exactly one of url, url_env and url_file", "url_env"),
    ({"webhooks": [{"format": "json"}]}, "notify.webhooks[0].url_env", "got none", "url_env"),
    ({"webhooks": [{"url_env": "UNSET", "format": "teams"}]}, "notify.webhooks[0].url_env",
     "environment variable UNSET is not set", "export UNSET="),
    ({"webhooks": [{"url_env": "H", "sink": 1}]}, "notify.webhooks[0].sink", "unknown key 'sink'", "format"),
    ({"webhooks": [{"url": "ftp://a.example"}]}, "notify.webhooks[0].url", "is not an http(s) URL", "https://"),
    ({"webhooks": [{"url_env": "H", "name": "ops"}, {"url_env": "H", "name": "ops"}]}, "notify.webhooks[1].name",
     "another webhook is named 'ops'", "its own name"),
    ({"reminder_every": "daily"}, "notify.reminder_every", "is not a duration", '"24h"'),
    ({"reminder_every": 24}, "notify.reminder_every", "valid string", 'reminder_every = "24h"'),
])
def test_a_wrong_setting_names_the_key_and_the_fix(table, key, message, fix):
    config = HubConfig(database=":memory:", environ={"H": "https://hooks.example/x", "P": "pw"})
    with pytest.raises(ConfigError) as caught:
        notify_settings(config, table)
    assert caught.value.key == key and message in str(caught.value) and fix in caught.value.fix
    assert "hunter2" not in str(caught.value)


def test_settings_are_read_from_the_config_itself():
    config = HubConfig(database=":memory:")
    config.notify = {"email": {**EMAIL, "smtp_port": 2525}}
    assert notify_settings(config).email.port == 2525


# --- the daemon's reminder job --------------------------------------------------------------------

def fake_service(table, tmp_path, env=None):
    config = HubConfig(database=str(tmp_path / "hub.db"), environ=env or {})
    if table is not None:
        config.notify = table
    return SimpleNamespace(config=config, run_job=lambda *a: None,
                           open_hub=lambda: make_hub(config=config, store=Store(config.database)))


def test_the_daemon_runs_reminders_hourly_when_notify_is_set(smtp, tmp_path):
    service = fake_service(notify_table(smtp), tmp_path)
    scheduler = build_scheduler(service, [])
    [job] = scheduler.get_jobs()
    assert job.id == REMINDER_JOB and job.trigger.interval == timedelta(seconds=REMINDER_EVERY) == timedelta(hours=1)
    assert build_scheduler(fake_service(None, tmp_path), []).get_jobs() == []
    # One firing: what stays held past reminder_every is re-sent.
    hub = service.open_hub()
    store_held(hub)
    hub.store.record_notification(KEY, "held", "f" * 32, collect(hub, report(held()))[0],
                                  (datetime.now(timezone.utc) - timedelta(hours=25)).isoformat())
    hub.close()
    [result] = run_reminders(service, job.args[1])
    assert result["status"] == "sent" and smtp.messages[0]["Subject"].startswith("msp-hub reminder: 1 still held")
    assert run_reminders(service, job.args[1]) == []


def test_a_wrong_notify_setting_stops_the_daemon_at_start_up(tmp_path):
    with pytest.raises(ConfigError) as caught:
        build_scheduler(fake_service({"webhooks": [{"url_env": "MISSING", "format": "slack"}]}, tmp_path), [])
    assert caught.value.key == "notify.webhooks[0].url_env"
