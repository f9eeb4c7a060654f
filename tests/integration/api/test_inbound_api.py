"""Inbound mail over real HTTP (issue 6, SPEC D5, L1, L2, S12): a raw bounce report blacklists the
contact of the message it names, a complaint likewise, a reply completes a sequence that stops on
replies, and an out-of-office does not; the same email twice applies once (D3)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.api.conftest import Api
from tests.integration.api.richshop import create, enrich, message_ids, work
from tests.unit.test_inbound import ARF_ABUSE, ARF_NOT_SPAM, ORIGINAL_ID, POSTFIX_HARD

RFC822 = {"Content-Type": "message/rfc822"}


@pytest.fixture
def shop(api: Api) -> Api:
    return enrich(api)


def _subscribed(shop: Api, email: str) -> tuple[int, str]:
    """A contact in `drip` (stop_on: replied) whose first email went out; its id and Message-ID."""
    with shop.client("write") as client:
        contact = create(client, email, first_name="Ann")
        client.post(f"/v1/contacts/{email}/lists/news")
    work(shop)
    return contact["id"], message_ids(shop, contact["id"])[0]


def _reply(message_id: str, *, subject: str = "Re: Hello Ann", extra: str = "") -> bytes:
    text = (
        "From: Ann <ann@x.test>\r\n"
        "To: Ann Lee <ann@shop.test>\r\n"
        f"Subject: {subject}\r\n"
        "Message-ID: <CAF1234@mail.x.test>\r\n"
        f"In-Reply-To: {message_id}\r\n"
        f"References: <older@elsewhere.test> {message_id}\r\n"
        f"{extra}"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "Yes please, tell me more.\r\n"
    )
    return text.encode()


def _contact(client: httpx.Client, email: str) -> dict[str, Any]:
    answer: dict[str, Any] = client.get(f"/v1/contacts/{email}").json()
    return answer


def test_a_bounce_report_blacklists_the_contact_once(shop: Api) -> None:
    _contact_id, message_id = _subscribed(shop, "ann@x.test")
    report = POSTFIX_HARD.replace(ORIGINAL_ID.encode(), message_id.encode())
    with shop.client("write") as client:
        first = client.post("/v1/inbound", content=report, headers=RFC822)
        again = client.post("/v1/inbound", content=report, headers=RFC822)
        contact = _contact(client, "ann@x.test")
    assert first.status_code == 200, first.text
    assert first.json() == {
        "kind": "bounce",
        "applied": 1,
        "duplicates": 0,
        "events": [{"type": "email.bounced", "message": message_id, "kind": "hard"}],
        "reason": None,
    }
    assert (again.json()["applied"], again.json()["duplicates"]) == (0, 1)
    assert contact["lead_status"] == "blacklisted"
    assert [(e["status"], e["reason"]) for e in contact["enrollments"]] == [("bounced", "hard_bounce")]


def test_a_complaint_blacklists_and_a_not_spam_report_changes_nothing(shop: Api) -> None:
    _subscribed(shop, "bob@x.test")
    _id, eve_message = _subscribed(shop, "eve@x.test")
    with shop.client("write") as client:
        abuse = client.post(
            "/v1/inbound",
            content=ARF_ABUSE.replace(ORIGINAL_ID.encode(), eve_message.encode()),
            headers=RFC822,
        )
        not_spam = client.post("/v1/inbound", content=ARF_NOT_SPAM, headers={"Content-Type": "text/plain"})
        eve, bob = _contact(client, "eve@x.test"), _contact(client, "bob@x.test")
    assert abuse.status_code == 200, abuse.text
    assert (abuse.json()["kind"], abuse.json()["applied"]) == ("complaint", 1)
    assert eve["lead_status"] == "blacklisted"
    assert [(e["status"], e["reason"]) for e in eve["enrollments"]] == [("canceled", "complaint")]
    assert not_spam.json()["kind"] == "not_a_complaint" and not_spam.json()["applied"] == 0
    assert bob["lead_status"] == "active"


def test_a_reply_completes_the_sequence_that_stops_on_replies(shop: Api) -> None:
    _id, message_id = _subscribed(shop, "ann@x.test")
    with shop.client("write") as client:
        replied = client.post("/v1/inbound", content=_reply(message_id), headers=RFC822)
        again = client.post("/v1/inbound", content=_reply(message_id), headers=RFC822)
        contact = _contact(client, "ann@x.test")
        timeline = client.get("/v1/contacts/ann@x.test/timeline").json()["items"]
    assert replied.status_code == 200, replied.text
    assert replied.json()["kind"] == "reply" and replied.json()["applied"] == 1
    assert replied.json()["events"] == [{"type": "email.replied", "message": message_id, "kind": None}]
    assert again.json()["duplicates"] == 1
    assert [(e["status"], e["reason"]) for e in contact["enrollments"]] == [("completed", "replied")]
    assert ("fact", "email.replied") in [(item["source"], item["kind"]) for item in timeline]


@pytest.mark.parametrize(
    "extra, subject",
    [
        ("Auto-Submitted: auto-replied\r\n", "Re: Hello Ann"),
        ("X-Autoreply: yes\r\n", "Re: Hello Ann"),
        ("", "Automatic reply: Hello Ann"),
        ("", "Out of Office: back on Monday"),
        ("", "=?utf-8?q?Abwesenheitsnotiz=3A_Hello_Ann?="),
    ],
)
def test_an_out_of_office_is_not_a_reply(shop: Api, extra: str, subject: str) -> None:
    _id, message_id = _subscribed(shop, "ann@x.test")
    with shop.client("write") as client:
        answer = client.post(
            "/v1/inbound", content=_reply(message_id, subject=subject, extra=extra), headers=RFC822
        )
        contact = _contact(client, "ann@x.test")
    assert answer.status_code == 200, answer.text
    assert answer.json()["kind"] == "auto_reply" and answer.json()["applied"] == 0
    assert [e["status"] for e in contact["enrollments"]] == ["active"]


def test_what_cannot_be_matched_or_read_is_refused_and_changes_nothing(shop: Api) -> None:
    _id, message_id = _subscribed(shop, "ann@x.test")
    with shop.client("write") as client:
        unknown = client.post("/v1/inbound", content=_reply("<never@sent.test>"), headers=RFC822)
        no_thread = client.post("/v1/inbound", content=b"Subject: hi\r\n\r\nhello\r\n", headers=RFC822)
        as_json = client.post("/v1/inbound", json={"raw": "x"})
        empty = client.post("/v1/inbound", content=b"", headers=RFC822)
        orphan_bounce = client.post("/v1/inbound", content=POSTFIX_HARD, headers=RFC822)
        contact = _contact(client, "ann@x.test")
    assert unknown.status_code == no_thread.status_code == orphan_bounce.status_code == 422
    assert unknown.json()["error"]["code"] == "unmatched"
    assert as_json.status_code == 415 and as_json.json()["error"]["code"] == "unsupported_media_type"
    assert empty.status_code == 422
    assert contact["lead_status"] == "active"
    with shop.client("read") as reader:
        assert reader.post("/v1/inbound", content=_reply(message_id), headers=RFC822).status_code == 403
    with shop.client("other") as rival:  # another workspace cannot reach this one's messages
        refused = rival.post("/v1/inbound", content=_reply(message_id), headers=RFC822)
        assert refused.status_code == 422
    with shop.client("read") as reader:
        assert [e["status"] for e in _contact(reader, "ann@x.test")["enrollments"]] == ["active"]
