"""Reports over real HTTP (issue 6), on SQLite and PostgreSQL: what each step, each split-test
variant (S9) and each broadcast achieved, after contacts open, click and unsubscribe through the
tracking links in their emails (D1, D2) and reply, bounce and complain through events (§3).
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select

from dripflow.engine.context import Ctx, load_rules
from dripflow.engine.messages import open_url
from dripflow.engine.worker import run_worker
from dripflow.store.database import transaction
from dripflow.store.tables import Message
from tests.integration.api.conftest import Api

WORKSPACE = """\
workspace: {id: shop, name: Shop, timezone: UTC, default_send_time: "10:00", physical_address: "1 Main St",
            base_url: "https://mail.shop.test"}
mailboxes:
  - {id: ann, from: "Ann <ann@shop.test>", default: true}
lists: [news]
catalog:
  links: {offer: "https://shop.test/offer"}
templates:
  offer-a: {subject: "Offer A", text: "Offer: {{ link('offer') }} Leave: {{ unsubscribe_url }}"}
  offer-b: {subject: "Offer B", text: "Offer: {{ link('offer') }} Leave: {{ unsubscribe_url }}"}
  follow: {subject: "Still there?", text: "Offer: {{ link('offer') }} Leave: {{ unsubscribe_url }}"}
sequences:
  - id: promo
    start_when: [{event: list.subscribed, list: news}]
    steps:
      - {id: pitch, type: email, variants: [{template: offer-a, weight: 50}, {template: offer-b, weight: 50}]}
      - {id: follow, type: email, template: follow, after: {days: 1}}
"""
ZERO = dict.fromkeys(
    ("sent", "delivered", "opened", "clicked", "replied", "bounced", "unsubscribed", "complained"), 0
)


@pytest.fixture
def shop(api: Api) -> Api:
    with api.client("admin") as client:
        answer = client.put("/v1/workspace", content=WORKSPACE)
        assert answer.status_code == 200, answer.text
    return api


def _messages(api: Api, **where: Any) -> dict[str, Message]:
    """The emails sent, by recipient (one each for what is asked here)."""
    with transaction(api.engine) as session:
        stmt = select(Message).filter_by(**where).order_by(Message.id)
        return {message.recipient: message for message in session.scalars(stmt)}


def _link(message: Message, label: str) -> str:
    """The path of a link in the email's text (`Offer: URL`, `Leave: URL`), as the contact clicks it."""
    url = message.body_text.split(f"{label}: ", 1)[1].split()[0]
    assert url.startswith("https://mail.shop.test/t/")
    return urlsplit(url).path


def _pixel(api: Api, message: Message) -> str:
    """The open pixel's path (emails do not embed it yet: see docs/api.md), as a mail client loads it."""
    with transaction(api.engine) as session:
        ctx = Ctx(session, "shop", load_rules(session, "shop"), api.clock)
        return urlsplit(open_url(ctx, message.key, message.contact_id)).path


def _open(api: Api, public: httpx.Client, message: Message) -> None:
    assert public.get(_pixel(api, message)).status_code == 200


def _click(public: httpx.Client, message: Message) -> None:
    assert public.get(_link(message, "Offer"), follow_redirects=False).status_code == 302


def _unsubscribe(public: httpx.Client, message: Message, scope: str) -> None:
    assert public.post(_link(message, "Leave"), data={"scope": scope}).status_code == 200


def _event(client: httpx.Client, type_: str, contact: str, **fields: Any) -> None:
    answer = client.post("/v1/events", json={"type": type_, "contact": contact, **fields})
    assert answer.status_code == 200, answer.text


def test_a_sequence_report_counts_each_step_and_variant(shop: Api) -> None:
    api = shop
    people = ["opens", "clicks", "replies", "bounces", "leaves", "complains"]
    with api.client("write") as client, api.client(None) as public:
        for name in people:
            event = {"type": "list.subscribed", "contact": f"{name}@x.test", "list": "news"}
            assert client.post("/v1/events", json=event).status_code == 200
        run_worker(api.engine, api.clock, until_idle=True)
        pitch = _messages(api, step_id="pitch")
        variant = {email.split("@")[0]: message.variant for email, message in pitch.items()}
        assert set(variant.values()) == {"offer-a", "offer-b"}  # both arms drawn (S9, by contact)

        _open(api, public, pitch["opens@x.test"])
        _open(api, public, pitch["opens@x.test"])  # a second open is the same open
        _click(public, pitch["clicks@x.test"])
        _click(public, pitch["clicks@x.test"])
        _event(client, "email.replied", "replies@x.test")
        _event(client, "email.bounced", "bounces@x.test", kind="hard")
        _unsubscribe(public, pitch["leaves@x.test"], "sequence")
        _event(client, "email.complained", "complains@x.test")
        api.clock.advance(timedelta(days=1, hours=1))
        run_worker(api.engine, api.clock, until_idle=True)
        report = client.get("/v1/reports/sequences/promo")
        # The step is then removed from the sequence: its numbers stay, marked removed (S7).
        with api.client("admin") as admin:
            definition = admin.get("/v1/sequences/promo").json()["definition"]
            definition["steps"] = definition["steps"][:1]
            assert admin.put("/v1/sequences/promo", json=definition).status_code == 200
        after_edit = client.get("/v1/reports/sequences/promo").json()
        missing = client.get("/v1/reports/sequences/nope")

    assert report.status_code == 200, report.text
    body = report.json()
    pitch_counts = {**ZERO, "sent": 6, "delivered": 5, "opened": 2, "clicked": 1, "replied": 1}
    pitch_counts |= {"bounced": 1, "unsubscribed": 1, "complained": 1}
    follow_counts = {**ZERO, "sent": 3, "delivered": 3}  # not to who bounced, left or complained
    [first, second] = body["steps"]
    assert {key: first[key] for key in ZERO} == pitch_counts
    assert {key: second[key] for key in ZERO} == follow_counts
    assert (first["step"], first["type"], first["removed"]) == ("pitch", "email", False)
    assert (second["step"], second["variants"]) == ("follow", [])
    assert body["totals"] == {key: pitch_counts[key] + follow_counts[key] for key in ZERO}
    assert body["version"] == 1

    # Per variant: each person's outcome lands in the arm they were shown.
    by_arm: dict[str, Counter[str]] = {"offer-a": Counter(), "offer-b": Counter()}
    outcomes = {
        "opens": ["opened"],
        "clicks": ["opened", "clicked"],
        "replies": ["replied"],
        "bounces": ["bounced"],
        "leaves": ["unsubscribed"],
        "complains": ["complained"],
    }
    for name, arm in variant.items():
        assert arm is not None
        by_arm[arm].update(["sent", *outcomes[name]])
        if name != "bounces":
            by_arm[arm].update(["delivered"])
    assert [item["variant"] for item in first["variants"]] == ["offer-a", "offer-b"]
    for item in first["variants"]:
        assert {key: item[key] for key in ZERO} == {**ZERO, **by_arm[item["variant"]]}

    assert after_edit["version"] == 2
    assert [(step["step"], step["removed"], step["sent"]) for step in after_edit["steps"]] == [
        ("pitch", False, 6),
        ("follow", True, 3),
    ]
    assert missing.status_code == 404


def test_a_broadcast_report_counts_its_messages_and_not_its_tests(shop: Api) -> None:
    api = shop
    with api.client("write") as client, api.client(None) as public:
        for name in ("ann", "bob", "cat"):
            client.post(
                "/v1/events", json={"type": "contact.created", "contact": {"email": f"{name}@x.test"}}
            )
        draft = {"id": "sale", "template": "offer-a", "audience": {"email_domain": ["x.test"]}}
        assert client.post("/v1/broadcasts", json=draft).status_code == 201
        empty = client.get("/v1/reports/broadcasts/sale").json()
        test = client.post("/v1/broadcasts/sale/test-send", json={"to": "qa@shop.test"})
        assert test.status_code == 200, test.text
        assert client.post("/v1/broadcasts/sale/schedule", json={"send_at": "now"}).status_code == 200
        run_worker(api.engine, api.clock, until_idle=True)
        sent = _messages(api, broadcast_id="sale")
        _open(api, public, sent["ann@x.test"])
        _click(public, sent["bob@x.test"])
        one_click = public.post(_link(sent["cat@x.test"], "Leave"), data={"List-Unsubscribe": "One-Click"})
        assert one_click.status_code == 200
        report = client.get("/v1/reports/broadcasts/sale").json()
        missing = client.get("/v1/reports/broadcasts/nope")
    assert empty["totals"] == ZERO and empty["broadcast"]["status"] == "draft"
    assert report["broadcast"]["id"] == "sale" and report["broadcast"]["status"] == "sent"
    assert report["broadcast"]["queued"] == 3
    assert report["totals"] == {
        **ZERO,
        "sent": 3,
        "delivered": 3,
        "opened": 2,
        "clicked": 1,
        "unsubscribed": 1,
    }
    assert missing.status_code == 404
