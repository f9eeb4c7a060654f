"""Broadcasts made through the API (issue 6) over real HTTP, sent by the worker per SPEC §8 B1–B4,
on SQLite and PostgreSQL.

A draft is created, scheduled and sent by the same sender as the workspace file's broadcasts:
the audience is evaluated at send time (B1), blacklisted and unsubscribed contacts are left out
(B2), nobody gets it twice (B3), and with `local_time` each zone gets it at its own wall time (B4).
A test message goes where it is told, marked, and counts for nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from dripflow.delivery.transport import ENV_SMTP_URL
from dripflow.engine.broadcasts import send_due_broadcasts
from dripflow.engine.context import Ctx, load_rules
from dripflow.engine.worker import run_worker
from dripflow.store.database import transaction
from dripflow.store.tables import Message
from tests.conftest import free_port
from tests.integration.api.conftest import Api
from tests.integration.delivery.conftest import RecordingHandler, SmtpServer

WORKSPACE = """\
workspace: {id: shop, name: Shop, timezone: America/New_York, default_send_time: "10:00",
            physical_address: "1 Main St", base_url: "https://mail.shop.test"}
mailboxes:
  - {id: ann, from: "Ann <ann@shop.test>", default: true}
lists: [news]
tags: [customer]
templates:
  hello: {subject: "Hello {{ contact.first_name }}", text: "Hi"}
  spring: {subject: "Spring sale, {{ contact.first_name | default('friend') }}",
           text: "Deals. Leave: {{ unsubscribe_url }}"}
sequences:
  - id: drip
    steps:
      - {id: one, type: email, template: hello}
broadcasts:
  - {id: from-file, send_at: "2026-12-01 09:00", audience: {on_list: news}, template: spring}
"""
SPRING = {
    "id": "spring",
    "template": "spring",
    "audience": {"all": [{"on_list": "news"}, {"not": {"has_tag": "customer"}}]},
}


@pytest.fixture
def shop(api: Api) -> Api:
    """The API's workspace, with a broadcast template and a time zone that is not UTC."""
    with api.client("admin") as client:
        answer = client.put("/v1/workspace", content=WORKSPACE)
        assert answer.status_code == 200, answer.text
    return api


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    """A real SMTP server on a loopback port; DRIPFLOW_SMTP_URL points the workspace at it."""
    handler = RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    monkeypatch.setenv(ENV_SMTP_URL, f"smtp://127.0.0.1:{controller.port}")
    try:
        yield SmtpServer("127.0.0.1", controller.port, handler)
    finally:
        controller.stop()


def _contact(client: httpx.Client, email: str, *, timezone: str | None = None, **extra: Any) -> None:
    contact: dict[str, Any] = {"email": email, "first_name": email.split("@")[0].title()}
    if timezone:
        contact["timezone"] = timezone
    event = {"type": "list.subscribed", "contact": contact, "list": "news"}
    answer = client.post("/v1/events", json=event)
    assert answer.status_code == 200, answer.text


def _event(client: httpx.Client, **event: Any) -> None:
    answer = client.post("/v1/events", json=event)
    assert answer.status_code == 200, answer.text


def _at(api: Api, moment: datetime) -> None:
    """Move the clock to ``moment`` and let the worker do what is due (it delivers too)."""
    api.clock.set(moment)
    run_worker(api.engine, api.clock, until_idle=True)


def _broadcast_recipients(api: Api, broadcast_id: str) -> list[str]:
    with transaction(api.engine) as session:
        return sorted(session.scalars(select(Message.recipient).where(Message.broadcast_id == broadcast_id)))


def test_a_broadcast_made_through_the_api_reaches_the_audience_at_send_time(
    shop: Api, smtp: SmtpServer
) -> None:
    """Draft, schedule, send through a real SMTP server: B1 (eve, who joins after it was
    scheduled, gets it; bob, who became a customer, does not), B2 (dan unsubscribed from
    everything), B3 (a second pass and a test message to ann change nothing)."""
    api = shop
    with api.client("write") as client:
        for email in ("ann@x.test", "bob@x.test", "dan@x.test"):
            _contact(client, email)
        _event(client, type="unsubscribed", contact="dan@x.test", scope="all")
        draft = client.post("/v1/broadcasts", json=SPRING)
        assert draft.status_code == 201, draft.text
        assert (draft.json()["status"], draft.json()["source"]) == ("draft", "api")
        scheduled = client.post("/v1/broadcasts/spring/schedule", json={"send_at": "2026-03-03 09:00"})
        assert scheduled.status_code == 200, scheduled.text
        assert scheduled.json()["status"] == "scheduled"
        assert scheduled.json()["definition"]["send_at"] == "2026-03-03 09:00"
        test = client.post(
            "/v1/broadcasts/spring/test-send", json={"to": "ann@x.test", "contact": "ann@x.test"}
        )
        assert test.status_code == 200, test.text
        assert test.json()["status"] == "sent" and test.json()["subject"] == "[Test] Spring sale, Ann"

        _at(api, datetime(2026, 3, 3, 13, 59, tzinfo=UTC))  # 08:59 in New York: not yet
        assert _broadcast_recipients(api, "spring") == []
        _event(client, type="tag.assigned", contact="bob@x.test", tag="customer")
        _contact(client, "eve@x.test")
        _at(api, datetime(2026, 3, 3, 14, 0, tzinfo=UTC))  # 09:00 in New York
        _at(api, datetime(2026, 3, 4, 14, 0, tzinfo=UTC))  # a day later: nothing more
        sent = client.get("/v1/broadcasts/spring").json()
        lines = client.get("/v1/contacts/eve@x.test/explain").json()["lines"]

    received = [(item.rcpt_tos, item.message["Subject"]) for item in smtp.received]
    # The test message went alone, before the broadcast; the broadcast's two leave on concurrent
    # connections, in either order.
    assert received[0] == (["ann@x.test"], "[Test] Spring sale, Ann")
    assert sorted(received[1:]) == [
        (["ann@x.test"], "Spring sale, Ann"),
        (["eve@x.test"], "Spring sale, Eve"),
    ]
    assert _broadcast_recipients(api, "spring") == ["ann@x.test", "eve@x.test"]
    assert (sent["status"], sent["queued"], sent["skipped"]) == ("sent", 2, 0)
    assert sent["started_at"] == sent["finished_at"] == "2026-03-03T14:00:00Z"
    assert any("Sent the broadcast 'spring' \"Spring sale, Eve\" to eve@x.test" in line for line in lines)


def test_local_time_sends_each_zone_at_its_own_wall_time_and_cancel_stops_the_rest(shop: Api) -> None:
    """B4: 09:00 in Tokyo, then in London, then in Los Angeles; canceled after London, Los
    Angeles gets nothing. A started broadcast cannot be scheduled again."""
    api = shop
    with api.client("write") as client:
        _contact(client, "tokyo@x.test", timezone="Asia/Tokyo")
        _contact(client, "london@x.test", timezone="Europe/London")
        _contact(client, "la@x.test", timezone="America/Los_Angeles")
        assert client.post("/v1/broadcasts", json=SPRING).status_code == 201
        body = {"send_at": "2026-03-03 09:00", "local_time": True}
        assert client.post("/v1/broadcasts/spring/schedule", json=body).status_code == 200

        _at(api, datetime(2026, 3, 3, 0, 0, tzinfo=UTC))  # 09:00 in Tokyo
        assert _broadcast_recipients(api, "spring") == ["tokyo@x.test"]
        assert client.get("/v1/broadcasts/spring").json()["status"] == "sending"
        _at(api, datetime(2026, 3, 3, 8, 59, tzinfo=UTC))
        assert _broadcast_recipients(api, "spring") == ["tokyo@x.test"]
        _at(api, datetime(2026, 3, 3, 9, 0, tzinfo=UTC))  # 09:00 in London
        assert _broadcast_recipients(api, "spring") == ["london@x.test", "tokyo@x.test"]

        canceled = client.post("/v1/broadcasts/spring/cancel")
        again = client.post("/v1/broadcasts/spring/cancel")
        rescheduled = client.post("/v1/broadcasts/spring/schedule", json={"send_at": "2026-03-05 09:00"})
        _at(api, datetime(2026, 3, 3, 17, 0, tzinfo=UTC))  # 09:00 in Los Angeles
        _at(api, datetime(2026, 3, 4, 12, 0, tzinfo=UTC))
    assert canceled.status_code == 200, canceled.text
    assert (canceled.json()["status"], canceled.json()["withdrawn"]) == ("canceled", 0)
    assert again.status_code == 200 and again.json()["status"] == "canceled"
    assert rescheduled.status_code == 409 and "already started" in rescheduled.json()["error"]["message"]
    assert _broadcast_recipients(api, "spring") == ["london@x.test", "tokyo@x.test"]


def test_cancel_withdraws_messages_still_waiting_in_the_outbox(shop: Api, smtp: SmtpServer) -> None:
    """With SMTP configured the wave queues messages; canceling before delivery withdraws them."""
    api = shop
    with api.client("write") as client:
        _contact(client, "ann@x.test")
        _contact(client, "bob@x.test")
        assert client.post("/v1/broadcasts", json=SPRING).status_code == 201
        assert client.post("/v1/broadcasts/spring/schedule", json={"send_at": "now"}).status_code == 200
        with transaction(api.engine) as session:  # one wave, as a worker pass would, no delivery yet
            assert send_due_broadcasts(Ctx(session, "shop", load_rules(session, "shop"), api.clock)) == 2
        canceled = client.post("/v1/broadcasts/spring/cancel").json()
        run_worker(api.engine, api.clock, until_idle=True)
        report = client.get("/v1/reports/broadcasts/spring").json()
    assert canceled["withdrawn"] == 2
    assert smtp.received == []
    assert report["totals"]["sent"] == 0


def test_drafts_are_checked_against_the_workspace_and_their_states_guarded(shop: Api) -> None:
    api = shop
    with api.client("write") as client:
        unknown = client.post("/v1/broadcasts", json={**SPRING, "template": "sprng"})
        file_id = client.post("/v1/broadcasts", json={**SPRING, "id": "from-file"})
        bad_id = client.post("/v1/broadcasts", json={**SPRING, "id": "a/b"})
        made_up = client.post("/v1/broadcasts", json={"template": "spring", "audience": {"on_list": "news"}})
        assert client.post("/v1/broadcasts", json=SPRING).status_code == 201
        taken = client.post("/v1/broadcasts", json=SPRING)
        no_time = client.post("/v1/broadcasts/spring/schedule")
        past = client.post("/v1/broadcasts/spring/schedule", json={"send_at": "2026-03-02 03:59"})
        file_one = client.post("/v1/broadcasts/from-file/schedule", json={"send_at": "now"})
        missing = client.post("/v1/broadcasts/nope/schedule", json={"send_at": "now"})
        listed = client.get("/v1/broadcasts").json()
        now = client.post("/v1/broadcasts/spring/schedule", json={"send_at": "now"})
        _contact(client, "ann@x.test")
        run_worker(api.engine, api.clock, until_idle=True)
        sent_cancel = client.post("/v1/broadcasts/spring/cancel")
    assert unknown.status_code == 422
    assert unknown.json()["error"]["problems"] == [
        {"key": "template", "message": "unknown template 'sprng' — did you mean 'spring'?"}
    ]
    assert file_id.status_code == 409 and "workspace file already has" in file_id.json()["error"]["message"]
    assert bad_id.status_code == 422 and bad_id.json()["error"]["problems"][0]["key"] == "id"
    assert made_up.status_code == 201 and made_up.json()["id"].startswith("broadcast-")
    assert taken.status_code == 409
    assert no_time.status_code == 422 and no_time.json()["error"]["problems"][0]["key"] == "send_at"
    assert past.status_code == 422  # 03:59 in New York on 2 March is before 09:00 UTC
    assert "has passed" in past.json()["error"]["problems"][0]["message"]
    assert file_one.status_code == 409 and file_one.json()["error"]["code"] == "defined_in_workspace"
    assert missing.status_code == 404
    assert [(item["id"], item["source"], item["status"]) for item in listed] == [
        ("from-file", "workspace", "scheduled"),
        (made_up.json()["id"], "api", "draft"),
        ("spring", "api", "draft"),
    ]
    assert now.json()["definition"]["send_at"] == "2026-03-02 04:00"  # 09:00 UTC in New York
    assert _broadcast_recipients(api, "spring") == ["ann@x.test"]
    assert sent_cancel.status_code == 409 and "already been sent" in sent_cancel.json()["error"]["message"]


def test_a_test_message_is_marked_captured_and_counts_for_nothing(shop: Api) -> None:
    """Without SMTP the test lands in the capture outbox, marked [Test]; it names no contact and
    no broadcast, so the contact still gets the broadcast (B3) and reports do not count it."""
    api = shop
    with api.client("write") as client:
        _contact(client, "ann@x.test")
        assert client.post("/v1/broadcasts", json={**SPRING, "template": "hello"}).status_code == 201
        stand_in = client.post("/v1/broadcasts/spring/test-send", json={"to": "qa@shop.test"})
        bad_address = client.post("/v1/broadcasts/spring/test-send", json={"to": "not an address"})
        unknown = client.post(
            "/v1/broadcasts/spring/test-send", json={"to": "qa@shop.test", "contact": "x@y.test"}
        )
        as_ann = client.post(
            "/v1/broadcasts/spring/test-send", json={"to": "qa@shop.test", "contact": "ann@x.test"}
        )
        file_test = client.post("/v1/broadcasts/from-file/test-send", json={"to": "qa@shop.test"})
        assert client.post("/v1/broadcasts/spring/schedule", json={"send_at": "now"}).status_code == 200
        run_worker(api.engine, api.clock, until_idle=True)
        report = client.get("/v1/reports/broadcasts/spring").json()
    assert stand_in.status_code == 422
    assert "contact.first_name" in stand_in.json()["error"]["problems"][0]["message"]
    assert bad_address.status_code == 422 and bad_address.json()["error"]["problems"][0]["key"] == "to"
    assert unknown.status_code == 404
    assert as_ann.status_code == 200, as_ann.text
    assert {key: as_ann.json()[key] for key in ("to", "subject", "status", "error")} == {
        "to": "qa@shop.test",
        "subject": "[Test] Hello Ann",
        "status": "captured",
        "error": None,
    }
    assert file_test.status_code == 200 and file_test.json()["subject"] == "[Test] Spring sale, friend"
    with transaction(api.engine) as session:
        tests = session.scalars(select(Message).where(Message.key.like("test:%"))).all()
        assert [(m.contact_id, m.broadcast_id, m.recipient) for m in tests] == [
            (0, None, "qa@shop.test"),
            (0, None, "qa@shop.test"),
        ]
    assert _broadcast_recipients(api, "spring") == ["ann@x.test"]
    assert report["totals"]["sent"] == 1
