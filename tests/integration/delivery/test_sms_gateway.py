"""SMS through a gateway (issue 5; docs/sms.md), end to end through the real worker on SQLite and
PostgreSQL, against a real HTTP gateway in the test process (``http.server`` on a free loopback
port) that records what it receives and answers what it is told.

An event enrolls a contact with a phone in a sequence whose step is an SMS; ``run_worker`` runs the
step, which queues the SMS (the workspace has ``delivery.sms``), and delivers it: one signed JSON
``POST`` per message. The rules under test: D3 (at most once per step occurrence), D5 (temporary
failures retried with backoff; a refusal is not an email bounce), L2/L3 (nothing to a blacklisted
or globally unsubscribed contact: a queued SMS is canceled), A2's signing scheme with its missing
secret rule, and the capture outbox when no gateway is configured (SPEC §10).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from dripflow.core.clock import VirtualClock
from dripflow.core.validate import load_workspace_text
from dripflow.delivery.outbox import MAX_ATTEMPTS, backoff, deliver_pending
from dripflow.delivery.sms import SmsGatewayTransport
from dripflow.delivery.transport import PermanentFailure, TemporaryFailure
from dripflow.engine.eventfile import InputEvent
from dripflow.engine.ingest_file import EventsRefused, ingest_events
from dripflow.engine.scheduler import run_once
from dripflow.engine.worker import WorkerStats, run_worker
from dripflow.store.database import transaction
from dripflow.store.tables import Contact, Enrollment, Message
from dripflow.store.workspaces import apply_workspace
from tests.conftest import free_port
from tests.integration.delivery.conftest import SmtpServer

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SECRET_ENV = "DRIPFLOW_TEST_SMS_SECRET"
SECRET = "sms-s3cret-for-tests"


# -- a real HTTP gateway ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes
    status: int
    client_port: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (the timeout test's, one closed at the end) is no error here."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass
class Gateway:
    """An SMS gateway on 127.0.0.1: answers each request with the next scripted answer, then
    ``status``; keeps connections alive (HTTP/1.1) and records the peak of requests in flight."""

    port: int
    status: int = 200
    delay: float = 0.0
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    peak: int = 0
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sms/send"

    def answer(self, *statuses: int, headers: dict[str, str] | None = None) -> None:
        with self._lock:
            self.script.extend((status, headers or {}) for status in statuses)

    def start(self) -> None:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with gateway._lock:
                    gateway._in_flight += 1
                    gateway.peak = max(gateway.peak, gateway._in_flight)
                    status, extra = gateway.script.pop(0) if gateway.script else (gateway.status, {})
                time.sleep(gateway.delay)
                with gateway._lock:
                    gateway._in_flight -= 1
                    headers = {name.lower(): value for name, value in self.headers.items()}
                    gateway.requests.append(Request(self.path, headers, body, status, self.client_address[1]))
                answer = json.dumps({"accepted": 200 <= status < 300}).encode()
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def received(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    def accepted(self) -> list[Request]:
        return [item for item in self.received() if 200 <= item.status < 300]


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    """Running; a test that needs it down stops it (or uses ``down_gateway``)."""
    item = Gateway(free_port())
    item.start()
    yield item
    item.stop()


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    return SECRET


def _verifies(item: Request) -> bool:
    """What docs/sms.md tells a gateway to do: HMAC-SHA256 of the raw body, hex, constant-time."""
    expected = "sha256=" + hmac.new(SECRET.encode(), item.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, item.headers.get("x-dripflow-signature", ""))


# -- a workspace with an SMS step ---------------------------------------------------------------------


def _workspace(sms: str | None, ws_id: str = "shop", smtp: bool = False, dkim: bool = False) -> str:
    delivery = ""
    if sms is not None:
        delivery = f'delivery:\n  sms: {{webhook: "{sms}", secret_env: {SECRET_ENV}}}\n'
    if dkim:
        delivery += (
            "  dkim: [{domain: shop.test, selector: s2026, private_key_env: DRIPFLOW_TEST_DKIM_KEY}]\n"
        )
    steps = "      - {id: hello, type: email, template: hello}\n" if smtp else ""
    return f"""\
workspace: {{id: {ws_id}, name: Shop, timezone: UTC, physical_address: "1 Main St"}}
mailboxes:
  - {{id: ann, from: "Ann <ann@shop.test>", default: true}}
{delivery}lists: [news]
templates:
  hello: {{subject: "Hello {{{{ contact.first_name }}}}", text: "Hi"}}
  ping: {{sms: "Hi {{{{ contact.first_name | default('there') }}}}, we start in 1h"}}
sequences:
  - id: webinar
    start_when: [{{event: list.subscribed, list: news}}]
    steps:
{steps}      - {{id: remind, type: sms, template: ping, from: "+15550100"}}
"""


def _apply(engine: Engine, text: str, ws_id: str = "shop") -> None:
    with transaction(engine) as session:
        apply_workspace(session, load_workspace_text(text, f"{ws_id}.yaml"), now=NOW, actor="test")


def _subscribe(engine: Engine, *contacts: dict[str, Any], ws_id: str = "shop", at: datetime = NOW) -> None:
    events = [
        InputEvent(n, at, {"type": "list.subscribed", "contact": contact, "list": "news"})
        for n, contact in enumerate(contacts, 1)
    ]
    ingest_events(engine, ws_id, events, Path("events.jsonl"))


def _event(engine: Engine, event: dict[str, Any], at: datetime = NOW) -> None:
    ingest_events(engine, "shop", [InputEvent(1, at, event)], Path("events.jsonl"))


def _messages(engine: Engine, channel: str = "sms") -> list[Message]:
    with transaction(engine) as session:
        return list(session.scalars(select(Message).where(Message.channel == channel).order_by(Message.id)))


def _contact(engine: Engine, email: str) -> Contact:
    with transaction(engine) as session:
        row = session.scalars(select(Contact).where(Contact.email == email)).one()
        session.expunge(row)
        return row


def _work(engine: Engine, clock: VirtualClock) -> WorkerStats:
    """``run_worker(..., until_idle=True)``, stopped (and failing the test) if it is not idle within
    30 s: a worker kept busy by messages it cannot send is a bug to report, not a hang."""
    stop = threading.Event()
    timer = threading.Timer(30.0, stop.set)
    timer.start()
    try:
        stats = run_worker(engine, clock, until_idle=True, stop=stop)
    finally:
        timer.cancel()
    assert not stop.is_set(), "the worker never went idle"
    return stats


CY = {"email": "cy@x.test", "first_name": "Zoë", "phone": "+15555550123"}


# -- sending ------------------------------------------------------------------------------------------


def test_d3_sms_is_posted_once_as_documented_signed_json_and_becomes_sent(
    engine: Engine, gateway: Gateway, secret: str
) -> None:
    """The gateway receives the exact body of docs/sms.md (compact JSON, keys sorted, UTF-8), with a
    signature that verifies as A2's webhooks do and the message's id in X-Dripflow-Delivery; the
    message becomes `sent`, and a second worker run sends nothing again (D3). The workspace has no
    SMTP at all: its SMS go out regardless."""
    _apply(engine, _workspace(gateway.url))
    _subscribe(engine, CY)
    stats = _work(engine, VirtualClock(NOW))
    assert (stats.delivered, stats.sms) == (1, 1)
    [message] = _messages(engine)
    assert (message.status, message.sent_at, message.attempts, message.last_error) == ("sent", NOW, 1, None)
    [request] = gateway.received()
    contact = _contact(engine, "cy@x.test")
    expected = {
        "contact": contact.id,
        "from": "+15550100",
        "id": message.key,
        "sequence": "webinar",
        "step": "remind",
        "text": "Hi Zoë, we start in 1h",
        "to": "+15555550123",
        "workspace": "shop",
    }
    assert request.path == "/sms/send"
    assert (
        request.body
        == json.dumps(expected, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-dripflow-delivery"] == message.key
    assert request.headers["x-dripflow-event"] == "sms"
    assert _verifies(request)
    forged = Request(request.path, request.headers, request.body.replace(b"Zo", b"Jo"), 200, 0)
    assert not _verifies(forged)

    again = _work(engine, VirtualClock(NOW + timedelta(days=1)))
    assert (again.delivered, len(gateway.received())) == (0, 1)


def test_email_and_sms_of_one_workspace_go_out_in_one_worker_pass(
    engine: Engine, gateway: Gateway, secret: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker delivers SMS alongside email: the email to the SMTP server, the SMS to the gateway."""
    monkeypatch.setenv("DRIPFLOW_SMTP_URL", f"smtp://{smtp_server.host}:{smtp_server.port}")
    _apply(engine, _workspace(gateway.url, smtp=True))
    _subscribe(engine, CY)
    stats = _work(engine, VirtualClock(NOW))
    assert (stats.delivered, stats.sms) == (2, 1)
    assert [m.status for m in _messages(engine, "email")] == ["sent"]
    assert [m.status for m in _messages(engine, "sms")] == ["sent"]
    assert [r.rcpt_tos for r in smtp_server.received] == [["cy@x.test"]]
    assert [r.json["to"] for r in gateway.accepted()] == ["+15555550123"]


def test_sends_are_bounded_by_the_gateways_connections(engine: Engine, gateway: Gateway, secret: str) -> None:
    """At most `max_connections` (4) requests are in flight at once, on at most as many pooled
    connections, and every SMS is posted once."""
    gateway.delay = 0.05
    _apply(engine, _workspace(gateway.url))
    _subscribe(engine, *({"email": f"c{n}@x.test", "phone": f"+1555555{n:04d}"} for n in range(12)))
    stats = _work(engine, VirtualClock(NOW))
    assert stats.sms == 12
    received = gateway.received()
    assert sorted(item.json["to"] for item in received) == [f"+1555555{n:04d}" for n in range(12)]
    assert 1 < gateway.peak <= 4
    assert len({item.client_port for item in received}) <= 4
    assert {m.status for m in _messages(engine)} == {"sent"}


# -- D5: retries and refusals -------------------------------------------------------------------------


def test_d5_a_503_is_retried_with_backoff_and_delivered_once(
    engine: Engine, gateway: Gateway, secret: str
) -> None:
    """D5: a 5xx is temporary: the SMS waits out the outbox's backoff (1 min after the first try),
    is not sent meanwhile, then goes out; the gateway accepted it exactly once, both tries carrying
    the same X-Dripflow-Delivery."""
    gateway.answer(503)
    _apply(engine, _workspace(gateway.url))
    _subscribe(engine, CY)
    clock = VirtualClock(NOW)
    _work(engine, clock)
    [message] = _messages(engine)
    assert (message.status, message.attempts, message.next_attempt_at) == ("queued", 1, NOW + backoff(1))
    assert message.last_error is not None and "HTTP 503" in message.last_error
    clock.set(NOW + timedelta(seconds=59))
    assert _work(engine, clock).delivered == 0  # backing off
    clock.set(NOW + backoff(1))
    assert _work(engine, clock).sms == 1
    [message] = _messages(engine)
    assert (message.status, message.attempts, message.sent_at) == ("sent", 2, NOW + backoff(1))
    assert [item.status for item in gateway.received()] == [503, 200]
    assert {item.headers["x-dripflow-delivery"] for item in gateway.received()} == {message.key}
    assert len(gateway.accepted()) == 1
    clock.set(NOW + timedelta(days=1))
    _work(engine, clock)
    assert len(gateway.received()) == 2


def test_d5_429_and_408_are_temporary_and_retry_after_is_honoured(
    engine: Engine, gateway: Gateway, secret: str
) -> None:
    """D5: 429 with `Retry-After: 600` waits 10 minutes (longer than the 1 min backoff); a 408
    after that is temporary too; then the SMS is sent."""
    gateway.answer(429, headers={"Retry-After": "600"})
    gateway.answer(408)
    _apply(engine, _workspace(gateway.url))
    _subscribe(engine, CY)
    clock = VirtualClock(NOW)
    _work(engine, clock)
    [message] = _messages(engine)
    assert (message.status, message.next_attempt_at) == ("queued", NOW + timedelta(minutes=10))
    clock.set(NOW + timedelta(minutes=10))
    _work(engine, clock)
    [message] = _messages(engine)
    assert (message.status, message.next_attempt_at) == ("queued", clock.now() + backoff(2))
    clock.set(clock.now() + backoff(2))
    _work(engine, clock)
    assert [m.status for m in _messages(engine)] == ["sent"]
    assert [item.status for item in gateway.received()] == [429, 408, 200]


def test_d5_a_400_fails_at_once_and_is_not_a_bounce(engine: Engine, gateway: Gateway, secret: str) -> None:
    """D5, L1: any other 4xx is permanent: the SMS is `failed` with the gateway's answer and never
    retried. It is not an `email.bounced`: the contact is not blacklisted and its enrollment
    finishes normally (not `bounced`)."""
    gateway.status = 400
    _apply(engine, _workspace(gateway.url))
    _subscribe(engine, CY)
    clock = VirtualClock(NOW)
    _work(engine, clock)
    [message] = _messages(engine)
    assert (message.status, message.attempts, message.next_attempt_at) == ("failed", 1, None)
    assert message.last_error == 'the SMS gateway answered HTTP 400: {"accepted": false}'
    clock.set(NOW + timedelta(days=2))
    _work(engine, clock)
    assert len(gateway.received()) == 1
    assert _contact(engine, "cy@x.test").lead_status != "blacklisted"
    with transaction(engine) as session:
        assert list(session.scalars(select(Enrollment.status))) == ["finished"]


def test_d5_the_gateway_down_loses_nothing(engine: Engine, gateway: Gateway, secret: str) -> None:
    """D5: a refused connection is temporary: the SMS stays queued with its error and goes out once
    the gateway is back, once."""
    gateway.stop()
    _apply(engine, _workspace(gateway.url))
    _subscribe(engine, CY, {"email": "di@x.test", "phone": "+15555550124"})
    clock = VirtualClock(NOW)
    _work(engine, clock)
    messages = _messages(engine)
    assert [(m.status, m.attempts) for m in messages] == [("queued", 1)] * 2
    assert all("cannot reach the SMS gateway" in (m.last_error or "") for m in messages)
    gateway.start()
    clock.set(NOW + backoff(1))
    assert _work(engine, clock).sms == 2
    assert [m.status for m in _messages(engine)] == ["sent"] * 2
    assert sorted(item.json["to"] for item in gateway.received()) == ["+15555550123", "+15555550124"]


class Refusing:
    """A transport refusing each recipient as told, the way SMTP reports hard and soft bounces:
    what the outbox must never turn into a bounce for an SMS (the gateway transport never raises
    these; this checks the outbox's own guard)."""

    max_connections = 2

    def __init__(self, failures: dict[str, Exception]) -> None:
        self.failures = failures

    async def send(self, data: Any, envelope_from: str, recipients: Sequence[str]) -> None:
        await asyncio.sleep(0)
        raise self.failures[recipients[0]]

    async def close(self) -> None:
        pass


def test_l1_an_sms_refusal_never_takes_the_email_bounce_path(engine: Engine, gateway: Gateway) -> None:
    """L1, D5: the outbox's bounce path (`email.bounced`, which blacklists) is for email only: an SMS
    refused "recipient rejected", or deferred "by the recipient" until given up, is just `failed`."""
    _apply(engine, _workspace(gateway.url))
    _subscribe(engine, CY, {"email": "di@x.test", "phone": "+15555550124"})
    clock = VirtualClock(NOW)
    run_once(engine, "shop", clock)
    _first, second = _messages(engine)
    with transaction(engine) as session:
        session.get_one(Message, second.id).attempts = MAX_ATTEMPTS - 1
    transport = Refusing(
        {
            "+15555550123": PermanentFailure("550 no such number", code=550, recipient_rejected=True),
            "+15555550124": TemporaryFailure("450 try later", code=450, recipient=True),
        }
    )
    assert deliver_pending(engine, "shop", clock, transport, channel="sms") == 2
    assert [(m.status, m.last_error) for m in _messages(engine)] == [
        ("failed", "550 no such number"),
        ("failed", "450 try later"),
    ]
    assert {_contact(engine, e).lead_status for e in ("cy@x.test", "di@x.test")} == {"active"}


# -- L2, L3: nothing to a blacklisted or unsubscribed contact ----------------------------------------


def test_l2_l3_a_queued_sms_to_a_blacklisted_or_unsubscribed_contact_is_canceled(
    engine: Engine, gateway: Gateway, secret: str
) -> None:
    """L2, L3: SMS queued for three contacts; one is then blacklisted, one unsubscribes from
    everything: their SMS are canceled when the worker claims them, never posted; the third's goes."""
    _apply(engine, _workspace(gateway.url))
    _subscribe(
        engine,
        {"email": "bl@x.test", "phone": "+15555550101"},
        {"email": "un@x.test", "phone": "+15555550102"},
        {"email": "ok@x.test", "phone": "+15555550103"},
    )
    clock = VirtualClock(NOW)
    run_once(engine, "shop", clock)  # the scheduler's half of a worker pass: the SMS are queued
    assert [m.status for m in _messages(engine)] == ["queued"] * 3
    _event(engine, {"type": "admin.contact.blacklist", "contact": "bl@x.test", "reason": "spam trap"})
    _event(engine, {"type": "unsubscribed", "contact": "un@x.test"})
    _work(engine, clock)
    assert [(m.recipient, m.status, m.last_error) for m in _messages(engine)] == [
        ("+15555550101", "canceled", "the contact is blacklisted (L2)"),
        ("+15555550102", "canceled", "the contact unsubscribed from everything (L3)"),
        ("+15555550103", "sent", None),
    ]
    assert [item.json["to"] for item in gateway.received()] == ["+15555550103"]


# -- E.164, the secret, capture -----------------------------------------------------------------------


def test_a_recipient_not_in_e164_form_is_failed_and_never_sent(
    engine: Engine, gateway: Gateway, secret: str
) -> None:
    """Phones are normalised to E.164 on entry, however they come; a phone that is not (stored by
    an older version, or by hand in the database) makes an SMS that is `failed` with a clear
    error, never posted."""
    _apply(engine, _workspace(gateway.url))
    _subscribe(engine, {"email": "lo@x.test", "phone": "+1 555 555 0100"}, CY)
    with transaction(engine) as session:
        session.execute(update(Contact).where(Contact.email == "lo@x.test").values(phone="555-0100"))
    _work(engine, VirtualClock(NOW))
    assert [(m.recipient, m.status, m.last_error) for m in _messages(engine)] == [
        (
            "555-0100",
            "failed",
            "cannot build the message: the recipient '555-0100' is not an E.164 phone number "
            "(such as +15555550123)",
        ),
        ("+15555550123", "sent", None),
    ]
    assert [item.json["to"] for item in gateway.received()] == ["+15555550123"]
    assert _contact(engine, "lo@x.test").lead_status != "blacklisted"


def test_a2_without_its_secret_nothing_is_posted_and_the_sms_stay_queued(
    engine: Engine, gateway: Gateway, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """As A2's webhooks: `secret_env` naming an unset variable sends nothing unsigned. The SMS stay
    `queued`, untried (no attempt is spent), the worker says why once per pass while SMS are due
    (and nothing while none is) and still goes idle; once the secret is set they go out, signed."""
    monkeypatch.delenv(SECRET_ENV, raising=False)
    _apply(engine, _workspace(gateway.url))
    clock = VirtualClock(NOW)

    def errors() -> list[str]:
        return [
            r.getMessage() for r in caplog.records if getattr(r, "event", None) == "delivery.sms.unsigned"
        ]

    with caplog.at_level(logging.ERROR, logger="dripflow.worker"):
        _work(engine, clock)  # no SMS yet: nothing to say
        assert errors() == []
        _subscribe(engine, CY)
        run_once(engine, "shop", clock)
        stats = _work(engine, clock)  # one pass: nothing to run, the SMS due
    assert stats.delivered == 0 and gateway.received() == []
    assert [(m.status, m.attempts) for m in _messages(engine)] == [("queued", 0)]
    assert errors() == [
        f"SMS not sent: delivery.sms.secret_env names {SECRET_ENV}, which is not set in the environment: "
        "cannot sign, so no SMS is sent (they stay queued until it is set)"
    ]

    monkeypatch.setenv(SECRET_ENV, SECRET)
    clock.set(NOW + timedelta(minutes=5))
    assert _work(engine, clock).sms == 1
    assert [m.status for m in _messages(engine)] == ["sent"]
    assert [_verifies(item) for item in gateway.received()] == [True]


def test_without_a_gateway_sms_are_captured_while_another_workspace_sends(
    engine: Engine, gateway: Gateway, secret: str
) -> None:
    """SPEC §10: a workspace with no `delivery.sms` keeps its SMS in the capture outbox
    (`captured`, never posted), while on the same worker a workspace with a gateway sends its own."""
    _apply(engine, _workspace(None, "dev"), "dev")
    _apply(engine, _workspace(gateway.url))
    _subscribe(engine, {"email": "de@x.test", "phone": "+15555550199"}, ws_id="dev")
    _subscribe(engine, CY)
    stats = _work(engine, VirtualClock(NOW))
    assert stats.sms == 1
    with transaction(engine) as session:
        rows = session.execute(
            select(Message.workspace_id, Message.recipient, Message.status).order_by(Message.id)
        )
        assert sorted(tuple(row) for row in rows) == [
            ("dev", "+15555550199", "captured"),
            ("shop", "+15555550123", "sent"),
        ]
    assert [item.json["to"] for item in gateway.received()] == ["+15555550123"]


def test_a_missing_dkim_key_does_not_hold_sms_back(
    engine: Engine, gateway: Gateway, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DKIM signs email only (docs/delivery.md): a workspace whose DKIM key is not set keeps its
    email queued, but its SMS are claimed and sent."""
    monkeypatch.delenv("DRIPFLOW_TEST_DKIM_KEY", raising=False)
    _apply(engine, _workspace(gateway.url, dkim=True))
    _subscribe(engine, CY)
    assert _work(engine, VirtualClock(NOW)).sms == 1
    assert [m.status for m in _messages(engine)] == ["sent"]
    assert len(gateway.accepted()) == 1


# -- the transport on its own -------------------------------------------------------------------------


def test_a_gateway_that_does_not_answer_in_time_is_a_temporary_failure(gateway: Gateway) -> None:
    """D5: a timeout is temporary (the gateway may have the message all the same: the resend carries
    the same X-Dripflow-Delivery for it to drop)."""
    gateway.delay = 1.0
    transport = SmsGatewayTransport(gateway.url, SECRET, timeout=0.2)
    body = json.dumps({"id": "k1", "to": "+15555550123"}).encode()

    async def send() -> None:
        try:
            await transport.send(body, "", ["+15555550123"])
        finally:
            await transport.close()

    with pytest.raises(TemporaryFailure, match="timed out"):
        asyncio.run(send())


def test_an_events_phone_is_stored_in_e164_and_a_bad_one_is_refused_by_line(engine: Engine) -> None:
    """Issue 5: phone numbers validated and normalised to E.164, from events as from forms and
    imports; a number that cannot be is the event's error (FILE:LINE), and nothing of it applies."""
    _apply(engine, _workspace("http://127.0.0.1:9/sms"))
    _subscribe(engine, {"email": "uk@x.test", "phone": " +44 20 7946 0958 "})
    assert _contact(engine, "uk@x.test").phone == "+442079460958"
    with pytest.raises(EventsRefused) as refused:
        _subscribe(engine, {"email": "us@x.test", "phone": "555-0100"})
    assert refused.value.problems == [
        (
            1,
            "contact: invalid phone number '555-0100': write it in international form, + and the "
            "country code first (such as +1 415 555 0100)",
        )
    ]
    with transaction(engine) as session:
        assert session.scalars(select(Contact).where(Contact.email == "us@x.test")).first() is None
