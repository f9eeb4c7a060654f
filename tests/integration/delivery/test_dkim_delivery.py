"""DKIM through the real worker and outbox to a real SMTP server (aiosmtpd in-process), on SQLite
and PostgreSQL: what arrives from a ``delivery.dkim`` domain verifies (RFC 6376) with its
List-Unsubscribe headers covered (RFC 8058 §4, SPEC D1); a mailbox on another domain sends
unsigned; a key that cannot be had stops delivery with the messages still queued (docs/delivery.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dkim
import pytest
from sqlalchemy import Engine, select

from dripflow.core.clock import VirtualClock
from dripflow.core.validate import load_workspace_text
from dripflow.delivery.dkim import DkimConfigError
from dripflow.delivery.transport import SmtpSettings, SmtpTransport
from dripflow.engine.broadcast_admin import deliver_test, prepare_test
from dripflow.engine.context import Ctx, load_rules
from dripflow.engine.eventfile import InputEvent
from dripflow.engine.ingest_file import ingest_events
from dripflow.engine.worker import run_worker
from dripflow.store.database import transaction
from dripflow.store.tables import Message
from dripflow.store.workspaces import apply_workspace
from tests.dkimkeys import make_key
from tests.integration.delivery.conftest import SmtpServer

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
KEY = make_key(label="shop")
DNS = KEY.dns("s2026", "shop.test")

WORKSPACE = """\
workspace: {{id: shop, name: Shop, timezone: UTC, physical_address: "1 Main St",
            base_url: "https://mail.shop.test"}}
mailboxes:
  - {{id: ann, from: "Ann <ann@shop.test>", reply_to: "help@shop.test", default: true}}
  - {{id: bo, from: "Bo <bo@other.test>"}}
delivery:
  smtp: {{host: "{host}", port: {port}, security: none}}
  dkim:
    - {{domain: shop.test, selector: s2026, private_key_env: DKIM_SHOP_KEY}}
lists: [news, promo]
templates:
  hello: {{subject: "Hello {{{{ contact.first_name }}}}", text: "Hi {{{{ contact.first_name }}}}",
           html: "<html><body><p>Hi</p></body></html>"}}
  news: {{subject: "News", text: "What is new."}}
sequences:
  - id: drip
    mailbox: ann
    start_when: [{{event: list.subscribed, list: news}}]
    steps:
      - {{id: one, type: email, template: hello}}
  - id: deals
    mailbox: bo
    start_when: [{{event: list.subscribed, list: promo}}]
    steps:
      - {{id: one, type: email, template: hello}}
"""


def _setup(engine: Engine, server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workspace applied and two contacts subscribed: one to a list mailed from shop.test (signed),
    one to a list mailed from other.test (no DKIM entry)."""
    monkeypatch.delenv("DRIPFLOW_SMTP_URL", raising=False)  # the workspace's delivery.smtp: the test server
    text = WORKSPACE.format(host=server.host, port=server.port)
    with transaction(engine) as session:
        apply_workspace(session, load_workspace_text(text, "shop.yaml"), now=NOW, actor="test")
    events = [
        InputEvent(
            1,
            NOW,
            {
                "type": "list.subscribed",
                "contact": {"email": "cy@x.test", "first_name": "Cy"},
                "list": "news",
            },
        ),
        InputEvent(
            2,
            NOW,
            {
                "type": "list.subscribed",
                "contact": {"email": "di@x.test", "first_name": "Di"},
                "list": "promo",
            },
        ),
    ]
    ingest_events(engine, "shop", events, Path("events.jsonl"))


def _messages(engine: Engine) -> list[tuple[str, str, int]]:
    with transaction(engine) as session:
        return [
            (m.recipient, m.status, m.attempts)
            for m in session.scalars(select(Message).order_by(Message.recipient))
        ]


def test_mail_from_a_dkim_domain_arrives_signed_and_verifies(
    engine: Engine, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # RFC 6376: the bytes the server received verify against s2026._domainkey.shop.test;
    # RFC 8058 §4 / D1: h= covers List-Unsubscribe and List-Unsubscribe-Post
    monkeypatch.setenv("DKIM_SHOP_KEY", KEY.pem)
    _setup(engine, smtp_server, monkeypatch)
    stats = run_worker(engine, VirtualClock(NOW), until_idle=True)
    assert stats.delivered == 2
    received = {item.rcpt_tos[0]: item for item in smtp_server.received}
    assert set(received) == {"cy@x.test", "di@x.test"}

    signed = received["cy@x.test"]
    assert signed.mail_from == "ann@shop.test"
    assert signed.data.startswith(b"DKIM-Signature: ")
    assert dkim.verify(signed.data, dnsfunc=DNS)
    message = signed.message
    tags = dict(
        item.strip().split("=", 1)
        for item in "".join(str(message["DKIM-Signature"]).split()).split(";")
        if item
    )
    assert (tags["d"], tags["s"], tags["a"], tags["c"]) == (
        "shop.test",
        "s2026",
        "rsa-sha256",
        "relaxed/relaxed",
    )
    names = tags["h"].split(":")
    assert "list-unsubscribe" in names and "list-unsubscribe-post" in names
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # What the server received, with its List-Unsubscribe changed, no longer verifies.
    tampered = signed.data.replace(
        b"List-Unsubscribe: <https://mail.shop.test/", b"List-Unsubscribe: <https://evil.test/", 1
    )
    assert tampered != signed.data and not dkim.verify(tampered, dnsfunc=DNS)

    # A mailbox on a domain without a DKIM entry sends unsigned.
    unsigned = received["di@x.test"]
    assert unsigned.mail_from == "bo@other.test"
    assert b"DKIM-Signature" not in unsigned.data
    assert [status for _, status, _ in _messages(engine)] == ["sent", "sent"]


def test_an_unset_key_variable_stops_delivery_and_sends_nothing_unsigned(
    engine: Engine, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # docs/delivery.md "DKIM": a configuration error, not a silent fallback to unsigned mail; the
    # rows stay queued (the claim is rolled back) and go out signed once the key is there
    monkeypatch.delenv("DKIM_SHOP_KEY", raising=False)
    _setup(engine, smtp_server, monkeypatch)
    with pytest.raises(DkimConfigError) as caught:
        run_worker(engine, VirtualClock(NOW), until_idle=True)
    assert "DKIM_SHOP_KEY" in str(caught.value) and "shop.test" in str(caught.value)
    assert smtp_server.received == []
    assert _messages(engine) == [("cy@x.test", "queued", 0), ("di@x.test", "queued", 0)]

    monkeypatch.setenv("DKIM_SHOP_KEY", KEY.pem)
    stats = run_worker(engine, VirtualClock(NOW), until_idle=True)
    assert stats.delivered == 2
    [signed] = [item for item in smtp_server.received if item.rcpt_tos == ["cy@x.test"]]
    assert dkim.verify(signed.data, dnsfunc=DNS)


def test_a_malformed_key_stops_delivery_naming_the_domain(
    engine: Engine, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "DKIM_SHOP_KEY", "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----"
    )
    _setup(engine, smtp_server, monkeypatch)
    with pytest.raises(DkimConfigError, match=r"delivery\.dkim for shop\.test: the private key is not"):
        run_worker(engine, VirtualClock(NOW), until_idle=True)
    assert smtp_server.received == []
    assert [status for _, status, _ in _messages(engine)] == ["queued", "queued"]


def test_a_broadcast_test_send_through_smtp_is_signed_like_the_real_thing(
    engine: Engine, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A test sent to a DKIM checker must show what the real broadcast will carry (docs/delivery.md)
    monkeypatch.setenv("DKIM_SHOP_KEY", KEY.pem)
    _setup(engine, smtp_server, monkeypatch)
    transport = SmtpTransport(SmtpSettings(smtp_server.host, smtp_server.port, "none"))
    for mailbox in ("ann", "bo"):
        with transaction(engine) as session:
            ctx = Ctx(session, "shop", load_rules(session, "shop"), VirtualClock(NOW))
            definition = {"template": "news", "mailbox": mailbox}
            prepared = prepare_test(ctx, "spring", definition, "qa@x.test", None, smtp=True)
        deliver_test(prepared, transport, NOW)
        assert prepared.message.status == "sent", prepared.message.last_error
    signed, unsigned = smtp_server.received
    assert signed.mail_from == "ann@shop.test" and dkim.verify(signed.data, dnsfunc=DNS)
    assert unsigned.mail_from == "bo@other.test" and b"DKIM-Signature" not in unsigned.data

    monkeypatch.delenv("DKIM_SHOP_KEY")
    with transaction(engine) as session, pytest.raises(DkimConfigError, match="DKIM_SHOP_KEY"):
        ctx = Ctx(session, "shop", load_rules(session, "shop"), VirtualClock(NOW))
        prepare_test(ctx, "spring", {"template": "news"}, "qa@x.test", None, smtp=True)
