"""Lists and tags over real HTTP (issue 6): each change is the engine event, so starting rules and
automations fire as for POST /v1/events; a no-op fires nothing (SPEC A1)."""

from __future__ import annotations

import pytest

from tests.integration.api.conftest import Api
from tests.integration.api.richshop import create, enrich, journal, work


@pytest.fixture
def shop(api: Api) -> Api:
    return enrich(api)


def test_a_tag_added_over_the_api_fires_its_automation_and_starting_rule(shop: Api) -> None:
    with shop.client("write") as client:
        ann = create(client, "ann@x.test", first_name="Ann")
        tagged = client.post("/v1/contacts/ann@x.test/tags/vip")
        again = client.post(f"/v1/contacts/{ann['id']}/tags/vip")
        work(shop)
        contact = client.get("/v1/contacts/ann@x.test").json()
        outbox = client.get("/v1/outbox", params={"contact": "ann@x.test"}).json()["items"]
    assert tagged.status_code == 200, tagged.text
    assert tagged.json() == {"changed": True, "lists": [], "tags": ["customer", "vip"]}
    assert again.json() == {"changed": False, "lists": [], "tags": ["customer", "vip"]}
    assert [(item["sequence"], item["status"]) for item in contact["enrollments"]] == [("vip", "finished")]
    assert [item["subject"] for item in outbox] == ["Welcome, VIP"]
    fired = journal(shop, ann["id"], ["automation.fired", "automation.skipped"])
    assert fired == [
        {
            "kind": "automation.fired",
            "contact": "ann@x.test",
            "automation": "vip-is-customer",
            "event": "tag.assigned",
        }
    ]  # the second, no-op request fired nothing (A1)


def test_subscribe_and_unsubscribe_a_list_and_untag(shop: Api) -> None:
    with shop.client("write") as client:
        create(client, "bob@x.test", first_name="Bob")
        joined = client.post("/v1/contacts/bob@x.test/lists/news")
        offers = client.post("/v1/contacts/bob@x.test/lists/offers")
        left = client.delete("/v1/contacts/bob@x.test/lists/news")
        left_again = client.delete("/v1/contacts/bob@x.test/lists/news")
        untag_absent = client.delete("/v1/contacts/bob@x.test/tags/vip")
        client.post("/v1/contacts/bob@x.test/tags/engaged")
        untagged = client.delete("/v1/contacts/bob@x.test/tags/engaged")
        contact = client.get("/v1/contacts/bob@x.test").json()
    assert joined.json() == {"changed": True, "lists": ["news"], "tags": []}
    assert offers.json()["lists"] == ["news", "offers"]
    assert left.json() == {"changed": True, "lists": ["offers"], "tags": []}
    assert left_again.json()["changed"] is False
    assert untag_absent.json()["changed"] is False
    assert untagged.json() == {"changed": True, "lists": ["offers"], "tags": []}
    # Subscribing to news started drip (its starting rule); leaving the list does not stop it.
    assert [item["sequence"] for item in contact["enrollments"]] == ["drip"]
    assert contact["lead_status"] == "active"


def test_an_undeclared_list_or_tag_is_refused_with_a_did_you_mean(shop: Api) -> None:
    with shop.client("write") as client:
        create(client, "cat@x.test")
        answers = {
            "list": client.post("/v1/contacts/cat@x.test/lists/newz"),
            "tag": client.post("/v1/contacts/cat@x.test/tags/vipp"),
            "untag": client.delete("/v1/contacts/cat@x.test/tags/nothing-like-it"),
        }
        missing = client.post("/v1/contacts/nobody@x.test/lists/news")
        contact = client.get("/v1/contacts/cat@x.test").json()
    for answer in answers.values():
        assert answer.status_code == 422
        assert answer.json()["error"]["code"] == "undeclared"
    assert answers["list"].json()["error"]["message"] == "unknown list 'newz' — did you mean 'news'?"
    assert "did you mean 'vip'" in answers["tag"].json()["error"]["message"]
    assert "declared: customer, engaged, vip" in answers["untag"].json()["error"]["message"]
    assert missing.status_code == 404
    assert (contact["lists"], contact["tags"]) == ([], [])


def test_a_read_key_cannot_change_lists_or_tags(shop: Api) -> None:
    with shop.client("write") as client:
        create(client, "dan@x.test")
    with shop.client("read") as reader:
        for answer in (
            reader.post("/v1/contacts/dan@x.test/lists/news"),
            reader.delete("/v1/contacts/dan@x.test/lists/news"),
            reader.post("/v1/contacts/dan@x.test/tags/vip"),
            reader.delete("/v1/contacts/dan@x.test/tags/vip"),
        ):
            assert answer.status_code == 403
            assert answer.json()["error"]["code"] == "forbidden"
        assert reader.get("/v1/contacts/dan@x.test").json()["lists"] == []
