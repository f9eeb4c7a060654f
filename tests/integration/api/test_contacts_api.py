"""Contacts over real HTTP (issue 6): create or update by email, patch, search with pagination,
delete (open enrollments canceled `contact_deleted`, SPEC §6), the timeline; roles and workspaces."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from dripflow.store.database import transaction
from dripflow.store.tables import AuditEntry, Contact, Message
from tests.integration.api.conftest import Api
from tests.integration.api.richshop import create, enrich, journal, work


@pytest.fixture
def shop(api: Api) -> Api:
    return enrich(api)


def test_post_creates_then_updates_the_contact_with_that_email(shop: Api) -> None:
    """201 then 200 for the same (normalised) address; a likely typo is flagged, not refused (L4)."""
    with shop.client("write") as client:
        first = client.post(
            "/v1/contacts",
            json={
                "email": "  Bob@GMALI.com ",
                "first_name": "Bob",
                "phone": "+1 415 555 0100",
                "timezone": "America/New_York",
                "address": {"line1": "1 Elm St", "city": "Springfield"},
                "fields": {"plan": "basic", "seats": 3, "renews": "2026-12-01", "trial": "yes"},
            },
        )
        assert first.status_code == 201, first.text
        created = first.json()
        again = client.post("/v1/contacts", json={"email": "bob@gmali.com", "last_name": "Stone"})
        assert again.status_code == 200, again.text
        shown = client.get("/v1/contacts/bob@gmali.com").json()
    assert created["email"] == "bob@gmali.com"
    assert created["email_suggestion"] == "bob@gmail.com"
    assert created["phone"] == "+14155550100"
    assert created["fields"] == {"plan": "basic", "seats": 3, "renews": "2026-12-01", "trial": True}
    assert created["address"] == {"line1": "1 Elm St", "city": "Springfield"}
    assert created["lead_status"] == "inactive"
    assert again.json()["id"] == created["id"]
    assert (shown["first_name"], shown["last_name"], shown["timezone"]) == (
        "Bob",
        "Stone",
        "America/New_York",
    )


def test_an_invalid_contact_names_every_problem_and_creates_nothing(shop: Api) -> None:
    body = {
        "email": "not an address",
        "phone": "12",
        "timezone": "Mars/Olympus",
        "fields": {"plna": "pro", "seats": "many", "trial": 3},
    }
    with shop.client("write") as client:
        refused = client.post("/v1/contacts", json=body)
        unknown_key = client.post("/v1/contacts", json={"email": "a@x.test", "nickname": "Al"})
        missing = client.post("/v1/contacts", json={"first_name": "Al"})
        found = client.get("/v1/contacts").json()
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "invalid_contact"
    problems = {item["where"]: item["message"] for item in error["problems"]}
    assert set(problems) == {"email", "phone", "timezone", "fields.plna", "fields.seats", "fields.trial"}
    assert "did you mean 'plan'" in problems["fields.plna"]
    assert "not a number" in problems["fields.seats"]
    assert unknown_key.status_code == missing.status_code == 422
    assert found == {"items": [], "next_cursor": None}


def test_patch_changes_what_is_sent_and_fires_contact_updated_per_attribute(shop: Api) -> None:
    """`contact.updated` {changed: plan} fires the automation that tags `engaged`; null removes."""
    with shop.client("write") as client:
        ann = create(client, "ann@x.test", first_name="Ann", phone="+14155550100")
        create(client, "taken@x.test")
        patched = client.patch(f"/v1/contacts/{ann['id']}", json={"fields": {"plan": "pro"}, "phone": None})
        renamed = client.patch(
            "/v1/contacts/ann@x.test", json={"email": "Ann.Lee@X.test", "first_name": "Annie"}
        )
        conflict = client.patch("/v1/contacts/ann.lee@x.test", json={"email": "taken@x.test"})
        no_email = client.patch("/v1/contacts/ann.lee@x.test", json={"email": None})
        missing = client.patch("/v1/contacts/nobody@x.test", json={"first_name": "X"})
        unchanged = client.patch("/v1/contacts/ann.lee@x.test", json={"first_name": "Annie"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["fields"] == {"plan": "pro"}
    assert patched.json()["phone"] is None
    assert patched.json()["tags"] == ["engaged"]  # the plan-engages automation fired
    assert renamed.json()["email"] == "ann.lee@x.test" and renamed.json()["id"] == ann["id"]
    assert renamed.json()["first_name"] == "Annie"
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "conflict"
    assert no_email.status_code == 422
    assert missing.status_code == 404
    assert unchanged.status_code == 200
    fired = journal(shop, ann["id"], ["automation.fired"])
    assert [(item["automation"], item["event"]) for item in fired] == [("plan-engages", "contact.updated")]


def _search(client: Any, **params: Any) -> list[str]:
    """Every page of a search, following `next_cursor`."""
    emails: list[str] = []
    cursor = None
    while True:
        page = client.get("/v1/contacts", params={**params, **({"cursor": cursor} if cursor else {})}).json()
        emails.extend(item["email"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return emails


def test_search_by_email_tag_list_and_status_a_page_at_a_time(shop: Api) -> None:
    with shop.client("write") as client:
        for name in ("ann", "bob", "cat", "dan", "eve"):
            create(client, f"{name}@acme.test", first_name=name.title())
        create(client, "zed@other.test")
        for name in ("bob", "dan"):
            assert client.post(f"/v1/contacts/{name}@acme.test/tags/vip").json()["changed"]
        assert client.post("/v1/contacts/cat@acme.test/lists/offers").json()["changed"]
        event = {"type": "admin.contact.blacklist", "contact": "eve@acme.test", "reason": "asked"}
        assert client.post("/v1/events", json=event).status_code == 200
    with shop.client("read") as client:
        assert _search(client, email="ACME", limit=2) == [
            f"{n}@acme.test" for n in ("ann", "bob", "cat", "dan", "eve")
        ]
        assert _search(client, tag="vip", limit=1) == ["bob@acme.test", "dan@acme.test"]
        assert _search(client, list="offers") == ["cat@acme.test"]
        assert _search(client, status="blacklisted") == ["eve@acme.test"]
        assert _search(client, email="acme", tag="vip", status="active") == [
            "bob@acme.test",
            "dan@acme.test",
        ]  # enrolled in vip
        assert _search(client, email="%") == []  # a LIKE wildcard is a plain character here
        page = client.get("/v1/contacts", params={"tag": "vip"}).json()["items"]
        assert page[0]["tags"] == ["customer", "vip"]  # the vip-is-customer automation
        assert client.get("/v1/contacts", params={"status": "gone"}).status_code == 422
        assert client.get("/v1/contacts", params={"cursor": "x1"}).status_code == 422


def test_delete_cancels_open_enrollments_first_and_forgets_the_contact(shop: Api) -> None:
    """SPEC §6 `canceled`/`contact_deleted`: journaled before the contact and its enrollments go;
    queued mail to it is canceled; the deletion is audited; the address can start afresh."""
    with shop.client("write") as client:
        ann = create(client, "ann@x.test", first_name="Ann")
        client.post("/v1/contacts/ann@x.test/lists/news")
        work(shop)  # step one captured; step two due tomorrow
        with transaction(shop.engine) as session:  # a message waiting for an SMTP server
            held = session.scalars(select(Message).where(Message.contact_id == ann["id"])).one()
            held.status = "queued"
        deleted = client.delete(f"/v1/contacts/{ann['id']}")
        gone = client.get("/v1/contacts/ann@x.test")
        again = client.delete("/v1/contacts/ann@x.test")
        fresh = client.post("/v1/contacts", json={"email": "ann@x.test"})
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"deleted": True, "canceled_enrollments": ["drip"], "canceled_messages": 1}
    assert gone.status_code == again.status_code == 404
    assert fresh.status_code == 201 and fresh.json()["id"] != ann["id"]
    statuses = journal(shop, ann["id"], ["enrollment.status"])
    assert statuses[-1] == {
        "kind": "enrollment.status",
        "contact": "ann@x.test",
        "sequence": "drip",
        "status": "canceled",
        "reason": "contact_deleted",
    }
    with transaction(shop.engine) as session:
        assert session.get(Contact, ann["id"]) is None
        message = session.scalars(select(Message).where(Message.contact_id == ann["id"])).one()
        assert (message.status, message.last_error) == ("canceled", "the contact was deleted")
        audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "contact.deleted")).one()
        assert audit.target == f"contact:{ann['id']}" and audit.actor.startswith("api:")


def test_a_contact_deleted_while_blacklisted_comes_back_blacklisted(shop: Api) -> None:
    """L2: deleting a complainer must not make the address mailable again when it is re-created."""
    with shop.client("write") as client:
        eve = create(client, "eve@x.test")
        event = {"type": "admin.contact.blacklist", "contact": "eve@x.test", "reason": "complaint"}
        assert client.post("/v1/events", json=event).status_code == 200
        assert client.delete(f"/v1/contacts/{eve['id']}").status_code == 200
        back = client.post("/v1/contacts", json={"email": "EVE@x.test"})
    assert back.status_code == 201, back.text
    assert back.json()["id"] != eve["id"]
    assert back.json()["lead_status"] == "blacklisted"


def test_the_timeline_tells_the_contacts_history_in_time_order_a_page_at_a_time(shop: Api) -> None:
    with shop.client("write") as client:
        ann = create(client, "ann@x.test", first_name="Ann")
        shop.clock.advance(timedelta(minutes=1))
        client.post("/v1/contacts/ann@x.test/lists/news")
        work(shop)
        shop.clock.advance(timedelta(days=1, hours=2))
        work(shop)  # step two
        client.post("/v1/contacts/ann@x.test/tags/vip")
        work(shop)
        shop.clock.advance(timedelta(minutes=1))
        opened = {"type": "email.opened", "contact": "ann@x.test"}
        assert client.post("/v1/events", json=opened).status_code == 200
    with shop.client("read") as client:
        whole = client.get(f"/v1/contacts/{ann['id']}/timeline").json()
        assert whole["next_cursor"] is None
        items = whole["items"]
        pages: list[dict[str, Any]] = []
        cursor = None
        while True:
            params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            page = client.get("/v1/contacts/ann@x.test/timeline", params=params).json()
            pages.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        bad = client.get("/v1/contacts/ann@x.test/timeline", params={"cursor": "garbage"})
    assert pages == items
    assert [item["at"] for item in items] == sorted(item["at"] for item in items)
    story = [(item["source"], item["kind"]) for item in items]
    subscribed = story.index(("event", "list.subscribed"))
    assert story[0] == ("journal", "contact.status")  # created
    assert story.index(("journal", "enrollment.status")) > subscribed
    messages = [item for item in items if item["source"] == "message"]
    assert [item["data"]["step"] for item in messages] == ["one", "two", "welcome"]
    assert messages[0]["data"]["subject"] == "Hello Ann"
    tagged = story.index(("event", "tag.assigned"))
    assert ("journal", "automation.fired") in story[tagged:]
    assert story[-1] == ("fact", "email.opened")
    assert items[-1]["data"]["step"] == "welcome"  # the contact's latest email was opened
    assert bad.status_code == 422


def test_read_keys_cannot_write_and_another_workspaces_contact_is_not_found(shop: Api) -> None:
    with shop.client("write") as client:
        ann = create(client, "ann@x.test")
    paths = [f"/v1/contacts/{ann['id']}", "/v1/contacts/ann@x.test"]
    with shop.client("read") as reader:
        assert reader.post("/v1/contacts", json={"email": "new@x.test"}).status_code == 403
        for path in paths:
            assert reader.patch(path, json={"first_name": "X"}).status_code == 403
            assert reader.delete(path).status_code == 403
            assert reader.post(f"{path}/tags/vip").status_code == 403
            assert reader.get(f"{path}/timeline").status_code == 200
    with shop.client("other") as rival:
        for path in paths:
            for answer in (
                rival.get(path),
                rival.patch(path, json={"first_name": "X"}),
                rival.delete(path),
                rival.get(f"{path}/timeline"),
                rival.post(f"{path}/lists/news"),
            ):
                assert answer.status_code == 404, answer.text
                assert answer.json()["error"]["code"] == "not_found"
        # The same address in the other workspace is another contact altogether.
        theirs = rival.post("/v1/contacts", json={"email": "ann@x.test", "first_name": "Rival"})
        assert theirs.status_code == 201 and theirs.json()["id"] != ann["id"]
    with shop.client("read") as reader:
        assert reader.get("/v1/contacts/ann@x.test").json()["first_name"] is None


def test_text_neither_database_can_store_is_refused_not_a_server_error(shop: Api) -> None:
    """A NUL (PostgreSQL refuses it) or a lone surrogate (`\\ud800` in JSON): 422, nothing written."""
    bodies = [
        '{"email": "a@x.test", "first_name": "A\\u0000"}',
        '{"email": "a@x.test", "last_name": "\\ud800"}',
    ]
    headers = {"Content-Type": "application/json"}
    with shop.client("write") as client:
        create(client, "b@x.test")
        answers = [client.post("/v1/contacts", content=body, headers=headers) for body in bodies]
        answers += [client.patch("/v1/contacts/b@x.test", content=body, headers=headers) for body in bodies]
        found = client.get("/v1/contacts").json()["items"]
    for answer in answers:
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["message"].startswith("the body cannot be stored")
    assert [(item["email"], item["first_name"]) for item in found] == [("b@x.test", None)]
