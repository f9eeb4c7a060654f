"""The outbox delivered through a real SMTP server (aiosmtpd in-process), on SQLite and PostgreSQL.

The engine queues the messages (a workspace with ``delivery.smtp``, events ingested, the worker
run on a virtual clock); ``deliver_due`` sends them through :class:`SmtpTransport`; the tests
assert on what the server received and on what the database then says (SPEC D1, D3, D5, D6, L1, L2).
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from dripflow.core.clock import VirtualClock
from dripflow.core.validate import load_workspace_text
from dripflow.delivery.mime import build_message
from dripflow.delivery.outbox import LEASE, MAX_ATTEMPTS, backoff, claim_due, deliver_due, deliver_pending
from dripflow.delivery.transport import (
    ENV_SMTP_URL,
    SmtpSettings,
    SmtpTransport,
    smtp_settings,
    transport_for,
)
from dripflow.engine.eventfile import InputEvent
from dripflow.engine.ingest_file import ingest_events
from dripflow.engine.scheduler import run_once
from dripflow.store.database import transaction
from dripflow.store.tables import Contact, Enrollment, Fact, Message
from dripflow.store.workspaces import apply_workspace
from dripflow.tracking.tokens import secret_key, verify
from tests.conftest import free_port
from tests.integration.delivery.conftest import SmtpServer

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday

WORKSPACE = """\
workspace: {{id: shop, name: Shop, timezone: UTC, base_url: "https://mail.shop.test",
            physical_address: "1 Main St, Springfield, IL"}}
mailboxes:
  - {{id: ann, from: "Ann Lee <ann@shop.test>", reply_to: "help@shop.test", default: true}}
delivery:
  smtp: {{host: "{host}", port: {port}, security: none}}
lists: [news]
templates:
  hello: {{subject: "Hello {{{{ contact.first_name | default('there') }}}}", text: "Hi there.",
           html: "<html><body><p>Hi there.</p></body></html>"}}
  nudge: {{subject: "ignored", text: "Just checking in."}}
sequences:
  - id: drip
    start_when: [{{event: list.subscribed, list: news}}]
    steps:
      - {{id: one, type: email, template: hello}}
      - {{id: two, type: email, template: nudge, reply_to_previous: true, after: {{hours: 1}}}}
"""


def _run_steps(engine: Engine, clock: VirtualClock) -> None:
    """Run the due steps only (so the outbox fills); delivery is what these tests drive by hand."""
    while run_once(engine, "shop", clock):
        pass


def _setup(engine: Engine, server: SmtpServer, contacts: int = 1, *, host: str | None = None) -> None:
    """Apply the workspace, subscribe ``contacts`` contacts and run the worker: one queued message each."""
    text = WORKSPACE.format(host=host or server.host, port=server.port)
    with transaction(engine) as session:
        apply_workspace(session, load_workspace_text(text, "shop.yaml"), now=START, actor="test")
    events = [
        InputEvent(
            n,
            START,
            {"type": "list.subscribed", "contact": f"c{n}@x.test", "list": "news", "id": f"e{n}"},
        )
        for n in range(1, contacts + 1)
    ]
    ingest_events(engine, "shop", events, Path("events.jsonl"))
    _run_steps(engine, VirtualClock(START))


def _transport(server: SmtpServer) -> SmtpTransport:
    return SmtpTransport(SmtpSettings(server.host, server.port, "none"))


def _deliver(engine: Engine, clock: VirtualClock, server: SmtpServer) -> int:
    return deliver_pending(engine, "shop", clock, _transport(server))


def _messages(engine: Engine) -> list[Message]:
    with transaction(engine) as session:
        return list(session.scalars(select(Message).order_by(Message.id)))


def _contact(engine: Engine, email: str) -> Contact:
    with transaction(engine) as session:
        row = session.scalars(select(Contact).where(Contact.email == email)).one()
        return row


def test_delivers_with_headers_parts_and_a_working_unsubscribe_link(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    """D1: what arrives has From/To/Subject/Message-ID/Reply-To, both MIME parts, the physical
    address, and a List-Unsubscribe one-click URL whose signed token names the contact and sequence."""
    _setup(engine, smtp_server)
    [queued] = _messages(engine)
    assert queued.status == "queued"

    clock = VirtualClock(START + timedelta(minutes=1))
    assert _deliver(engine, clock, smtp_server) == 1

    [got] = smtp_server.received
    assert got.mail_from == "ann@shop.test" and got.rcpt_tos == ["c1@x.test"]
    msg = got.message
    assert str(msg["From"]) == "Ann Lee <ann@shop.test>"
    assert str(msg["To"]) == "c1@x.test"
    assert str(msg["Reply-To"]) == "help@shop.test"
    assert str(msg["Subject"]) == "Hello there"
    assert str(msg["Message-ID"]) == queued.message_id
    assert msg["Date"].datetime == clock.now()
    parts = {p.get_content_type(): p.get_content() for p in msg.walk() if not p.is_multipart()}
    assert set(parts) == {"text/plain", "text/html"}
    assert "Hi there." in parts["text/plain"] and "<p>Hi there.</p>" in parts["text/html"]
    assert all("1 Main St, Springfield, IL" in body for body in parts.values())

    assert str(msg["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    url = str(msg["List-Unsubscribe"]).strip("<>")
    assert url.startswith("https://mail.shop.test/t/u/")
    payload = verify(secret_key("shop"), url.rsplit("/", 1)[1])
    assert payload == {"c": _contact(engine, "c1@x.test").id, "m": queued.key, "s": "drip"}
    assert url in parts["text/plain"]

    [sent] = _messages(engine)
    assert (sent.status, sent.sent_at, sent.attempts) == ("sent", clock.now(), 1)
    # D3: delivering again sends nothing more.
    assert _deliver(engine, clock, smtp_server) == 0
    assert len(smtp_server.received) == 1


def test_d6_reply_to_previous_arrives_threaded(engine: Engine, smtp_server: SmtpServer) -> None:
    _setup(engine, smtp_server)
    clock = VirtualClock(START)
    _deliver(engine, clock, smtp_server)
    _run_steps(engine, VirtualClock(START + timedelta(hours=1)))
    clock.set(START + timedelta(hours=1))
    assert _deliver(engine, clock, smtp_server) == 1
    first, second = (item.message for item in smtp_server.received)
    assert str(second["Subject"]) == "Re: Hello there"
    assert str(second["In-Reply-To"]) == str(first["Message-ID"])
    assert str(second["References"]) == str(first["Message-ID"])


def test_d5_temporary_failure_is_retried_with_backoff(engine: Engine, smtp_server: SmtpServer) -> None:
    """A 451 for the recipient: nothing is sent, the message waits 1 min, then goes out once."""
    _setup(engine, smtp_server)
    smtp_server.handler.answer("c1@x.test", "451 4.7.1 Greylisted, try again later")
    clock = VirtualClock(START)
    assert _deliver(engine, clock, smtp_server) == 1
    [waiting] = _messages(engine)
    assert waiting.status == "queued" and waiting.attempts == 1
    assert waiting.next_attempt_at == START + backoff(1) == START + timedelta(minutes=1)
    assert waiting.last_error is not None and "451" in waiting.last_error
    assert smtp_server.received == []

    clock.set(START + timedelta(seconds=59))
    assert _deliver(engine, clock, smtp_server) == 0  # not due yet
    clock.set(START + timedelta(minutes=1))
    assert _deliver(engine, clock, smtp_server) == 1
    assert len(smtp_server.received) == 1
    [sent] = _messages(engine)
    assert (sent.status, sent.attempts, sent.sent_at) == ("sent", 2, clock.now())


def test_d5_backoff_doubles_then_gives_up(engine: Engine, smtp_server: SmtpServer) -> None:
    """Deferred every time: 1, 2, 4 … minutes apart, then `failed` after MAX_ATTEMPTS tries."""
    _setup(engine, smtp_server)
    smtp_server.handler.always["c1@x.test"] = "452 4.2.2 Mailbox full"
    clock = VirtualClock(START)
    waits = []
    for _ in range(MAX_ATTEMPTS):
        assert _deliver(engine, clock, smtp_server) == 1
        [row] = _messages(engine)
        if row.status != "queued":
            break
        assert row.next_attempt_at is not None
        waits.append(row.next_attempt_at - clock.now())
        clock.set(row.next_attempt_at)
    assert waits[:3] == [timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=4)]
    [row] = _messages(engine)
    assert (row.status, row.attempts) == ("failed", MAX_ATTEMPTS)
    assert smtp_server.received == []
    # The recipient's server deferred it until we gave up: recorded as a soft bounce (L1).
    with transaction(engine) as session:
        kinds = [
            fact.detail.get("kind")
            for fact in session.scalars(select(Fact).where(Fact.kind == "email.bounced"))
        ]
    assert kinds == ["soft"]


def test_d5_permanent_rejection_is_a_hard_bounce_that_blacklists(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    """550 on RCPT: message `bounced`, contact blacklisted (L1), enrollment closed `bounced` (L2, S12),
    and the sequence sends it nothing more."""
    _setup(engine, smtp_server, contacts=2)
    smtp_server.handler.answer("c1@x.test", "550 5.1.1 No such user here")
    clock = VirtualClock(START)
    assert _deliver(engine, clock, smtp_server) == 2
    rows = {row.recipient: row for row in _messages(engine)}
    assert rows["c1@x.test"].status == "bounced"
    assert "550" in (rows["c1@x.test"].last_error or "")
    assert rows["c2@x.test"].status == "sent"
    assert [got.rcpt_tos for got in smtp_server.received] == [["c2@x.test"]]

    bounced = _contact(engine, "c1@x.test")
    assert (bounced.lead_status, bounced.lead_status_reason) == ("blacklisted", "hard_bounce")
    with transaction(engine) as session:
        enrollment = session.scalars(select(Enrollment).where(Enrollment.contact_id == bounced.id)).one()
        fact = session.scalars(select(Fact).where(Fact.kind == "email.bounced")).one()
    assert (enrollment.status, enrollment.reason) == ("bounced", "hard_bounce")
    assert fact.detail["kind"] == "hard" and fact.detail["message"] == rows["c1@x.test"].message_id

    _run_steps(engine, VirtualClock(START + timedelta(hours=2)))
    clock.set(START + timedelta(hours=2))
    _deliver(engine, clock, smtp_server)
    assert [got.rcpt_tos for got in smtp_server.received] == [["c2@x.test"], ["c2@x.test"]]


def test_unreachable_server_is_a_temporary_failure(engine: Engine, smtp_server: SmtpServer) -> None:
    _setup(engine, smtp_server)
    clock = VirtualClock(START)
    closed = SmtpTransport(SmtpSettings("127.0.0.1", free_port(), "none"), timeout=5)
    assert deliver_pending(engine, "shop", clock, closed) == 1
    [row] = _messages(engine)
    assert (row.status, row.attempts, row.next_attempt_at) == ("queued", 1, START + timedelta(minutes=1))
    assert "cannot reach" in (row.last_error or "")


def test_l2_message_for_a_contact_blacklisted_meanwhile_is_not_sent(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    _setup(engine, smtp_server)
    events = [
        InputEvent(1, START, {"type": "admin.contact.blacklist", "contact": "c1@x.test", "reason": "test"})
    ]
    ingest_events(engine, "shop", events, Path("events.jsonl"))
    assert _deliver(engine, VirtualClock(START), smtp_server) == 1
    [row] = _messages(engine)
    assert row.status == "canceled" and "blacklisted" in (row.last_error or "")
    assert smtp_server.received == []


def test_d3_a_dead_workers_claim_is_taken_over_after_the_lease(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    """A worker claims and dies before sending: nobody else sends it during the lease; afterwards
    it is sent exactly once, and the dead claim can no longer record anything."""
    _setup(engine, smtp_server)
    clock = VirtualClock(START)
    batch, taken = claim_due(engine, "shop", clock, 10)  # ... and the worker dies here
    assert taken == 1 and len(batch) == 1
    assert _messages(engine)[0].status == "sending"
    assert _deliver(engine, clock, smtp_server) == 0
    clock.set(START + LEASE)
    assert _deliver(engine, clock, smtp_server) == 1
    assert len(smtp_server.received) == 1
    [row] = _messages(engine)
    assert (row.status, row.attempts) == ("sent", 2)


@pytest.mark.parametrize("workers", [3])
def test_d3_concurrent_workers_send_each_message_once(
    engine: Engine, smtp_server: SmtpServer, workers: int
) -> None:
    """Several workers drain one outbox at once (SKIP LOCKED on PostgreSQL): every message arrives once."""
    _setup(engine, smtp_server, contacts=60)
    clock = VirtualClock(START)
    errors: list[BaseException] = []

    def work() -> None:
        try:

            async def run() -> None:
                transport = _transport(smtp_server)
                while await deliver_due(engine, "shop", clock, transport, batch_size=7):
                    pass
                await transport.close()

            asyncio.run(run())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    ids = [str(got.message["Message-ID"]) for got in smtp_server.received]
    assert len(ids) == 60 and len(set(ids)) == 60
    assert {row.status for row in _messages(engine)} == {"sent"}


def test_smtp_url_env_overrides_the_workspace_and_secrets_come_from_env(
    engine: Engine, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SPEC §10: DRIPFLOW_SMTP_URL overrides delivery.smtp (here an unresolvable host)."""
    _setup(engine, smtp_server, host="smtp.invalid")
    monkeypatch.setenv(ENV_SMTP_URL, f"smtp://{smtp_server.host}:{smtp_server.port}")
    workspace = load_workspace_text(WORKSPACE.format(host="smtp.invalid", port=25), "shop.yaml")
    transport = transport_for(workspace.delivery)
    assert transport is not None
    assert deliver_pending(engine, "shop", VirtualClock(START), transport) == 1
    assert len(smtp_server.received) == 1

    monkeypatch.delenv(ENV_SMTP_URL)
    with_password = load_workspace_text(
        WORKSPACE.format(host="smtp.shop.test", port=587).replace(
            "security: none}", "security: starttls, username: ann, password_env: SHOP_SMTP_PASSWORD}"
        ),
        "shop.yaml",
    )
    monkeypatch.setenv("SHOP_SMTP_PASSWORD", "s3cret")
    settings = smtp_settings(with_password.delivery)
    assert settings == SmtpSettings("smtp.shop.test", 587, "starttls", "ann", "s3cret")
    assert "s3cret" not in repr(settings)


def test_the_transport_takes_bytes_or_a_message_object(smtp_server: SmtpServer) -> None:
    """The outbox hands it bytes ready for the wire; a caller holding a Message object (a test
    send, say) may hand that instead, and it is flattened the same way."""
    workspace = load_workspace_text(
        WORKSPACE.format(host=smtp_server.host, port=smtp_server.port), "shop.yaml"
    )
    row = Message(
        key="test:1",
        recipient="c9@x.test",
        sender=None,
        mailbox="ann",
        subject="Hello",
        body_text="Hi.",
        body_html=None,
        in_reply_to=None,
        message_id="<test.1@shop.test>",
    )
    built = build_message(row, workspace, date=START, unsubscribe_url=None)

    async def send_both() -> None:
        transport = _transport(smtp_server)
        await transport.send(built.as_bytes(), "ann@shop.test", ["c9@x.test"])
        await transport.send(built, "ann@shop.test", ["c9@x.test"])
        await transport.close()

    asyncio.run(send_both())
    first, second = smtp_server.received
    assert first.data == second.data and str(first.message["Subject"]) == "Hello"
