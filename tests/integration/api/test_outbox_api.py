"""The dev inbox over real HTTP (SPEC §10, issue 6): with no SMTP configured, every email the engine
builds is kept as `captured`; the API lists them newest first and shows each as it would be sent."""

from __future__ import annotations

from datetime import timedelta
from email import message_from_string

import pytest

from tests.integration.api.conftest import Api
from tests.integration.api.richshop import create, enrich, work


@pytest.fixture
def shop(api: Api) -> Api:
    return enrich(api)


def test_the_dev_inbox_lists_captured_mail_newest_first_and_shows_each_message(shop: Api) -> None:
    with shop.client("write") as client:
        for name in ("ann", "bob"):
            create(client, f"{name}@x.test", first_name=name.title())
            client.post(f"/v1/contacts/{name}@x.test/lists/news")
            shop.clock.advance(timedelta(minutes=1))
        client.post("/v1/contacts/ann@x.test/tags/vip")
    work(shop)
    with shop.client("read") as client:
        inbox = client.get("/v1/outbox").json()
        ann_only = client.get("/v1/outbox", params={"contact": "ann@x.test"}).json()["items"]
        captured = client.get("/v1/outbox", params={"status": "captured"}).json()["items"]
        sent = client.get("/v1/outbox", params={"status": "sent"}).json()["items"]
        pages = []
        cursor = None
        while True:
            page = client.get(
                "/v1/outbox", params={"limit": 2, **({"cursor": cursor} if cursor else {})}
            ).json()
            pages.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        vip = next(item for item in inbox["items"] if item["subject"] == "Welcome, VIP")
        shown = client.get(f"/v1/outbox/{vip['id']}").json()
        missing = client.get("/v1/outbox/999999")
        no_contact = client.get("/v1/outbox", params={"contact": "nobody@x.test"})
        bad_status = client.get("/v1/outbox", params={"status": "lost"})
    items = inbox["items"]
    assert [item["id"] for item in items] == sorted((item["id"] for item in items), reverse=True)
    assert sorted((item["recipient"], item["subject"]) for item in items) == [
        ("ann@x.test", "Hello Ann"),
        ("ann@x.test", "Welcome, VIP"),
        ("bob@x.test", "Hello Bob"),
    ]
    assert {item["status"] for item in items} == {"captured"} and len(captured) == 3 and sent == []
    assert [item["recipient"] for item in ann_only] == ["ann@x.test", "ann@x.test"]
    assert pages == items
    assert shown["text"] == "You are special."
    # the HTML part as sent: the template's, then its open pixel (D2)
    assert shown["html"].startswith('<p>You are special.</p><img src="http://localhost:8000/t/o/shop/')
    assert (shown["sequence"], shown["step"], shown["status"]) == ("vip", "welcome", "captured")
    raw = message_from_string(shown["raw"])
    assert raw["Subject"] == "Welcome, VIP" and raw["To"] == "ann@x.test"
    assert raw["Message-ID"] == shown["message_id"]
    assert "List-Unsubscribe=One-Click" in raw["List-Unsubscribe-Post"]
    assert "1 Main St" in shown["raw"]  # the physical address in the footer (D1)
    assert missing.status_code == no_contact.status_code == 404
    assert bad_status.status_code == 422


def test_another_workspaces_messages_are_not_found(shop: Api) -> None:
    with shop.client("write") as client:
        create(client, "ann@x.test", first_name="Ann")
        client.post("/v1/contacts/ann@x.test/lists/news")
    work(shop)
    with shop.client("read") as client:
        [message] = client.get("/v1/outbox").json()["items"]
    with shop.client("other") as rival:
        assert rival.get(f"/v1/outbox/{message['id']}").status_code == 404
        assert rival.get("/v1/outbox").json() == {"items": [], "next_cursor": None}
        assert rival.get("/v1/outbox", params={"contact": str(message["contact_id"])}).status_code == 404
