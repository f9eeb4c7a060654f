"""Provider event webhooks over real HTTP, on SQLite and PostgreSQL (issue 5; SPEC D5, L1, L2, L3,
D3): a signed SES permanent bounce or complaint, or a SendGrid spam report, about a message we
sent blacklists its contact and closes its enrollments; the same request again applies nothing
twice; a request whose signature does not hold changes nothing; events about messages that are not
this workspace's are ignored while the rest of the batch is applied; the key may come as the
password of HTTP Basic, the way a webhook URL carries it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from dripflow.api.routes.providers import ProviderClients
from dripflow.core.validate import load_workspace_text
from dripflow.delivery.providers.ses import SnsVerifier
from dripflow.store.database import transaction
from dripflow.store.tables import Base
from dripflow.store.workspaces import apply_workspace
from tests.integration.api.conftest import NOW, Api
from tests.integration.api.richshop import RICH_SHOP, create, message_ids, work
from tests.unit.test_providers import (
    OTHER_KEY,
    SUBSCRIBE_URL,
    TOPIC,
    FakeCertificates,
    body,
    sendgrid_event,
    sendgrid_public_key,
    ses_bounce,
    ses_complaint,
    ses_delivery,
    sign_sendgrid,
    sign_sns,
    sns_notification,
    sns_subscription,
)

SENDGRID_ENV = "DRIPFLOW_TEST_SENDGRID_KEY"
SNS_HEADERS = {"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": "Notification"}
JSON = {"Content-Type": "application/json"}


def _workspace(ses: str = "") -> str:
    events = f"    sendgrid: {{public_key_env: {SENDGRID_ENV}}}\n" + (f"    ses: {ses}\n" if ses else "")
    return RICH_SHOP + "delivery:\n  events:\n" + events


@dataclass
class Shop:
    api: Api
    certificates: FakeCertificates
    confirmed: list[str] = field(default_factory=list)

    def client(self, role: str = "write", *, basic: bool = True) -> httpx.Client:
        """With ``basic``, the key is the password in the URL, as a provider's webhook URL has it."""
        if not basic:
            return self.api.client(role)
        url = self.api.url.replace("http://", f"http://dripflow:{self.api.keys[role]}@")
        return httpx.Client(base_url=url, timeout=30)


@pytest.fixture
def shop(api: Api, monkeypatch: pytest.MonkeyPatch) -> Shop:
    """``shop`` taking SendGrid events signed with the test key, and SNS messages signed with the
    test certificate (injected: the tests have no internet)."""
    with transaction(api.engine) as session:
        apply_workspace(session, load_workspace_text(_workspace(), "shop.yaml"), now=NOW, actor="test")
    monkeypatch.setenv(SENDGRID_ENV, sendgrid_public_key())
    shop = Shop(api, FakeCertificates())
    api.app.state.providers = ProviderClients(SnsVerifier(shop.certificates), shop.confirmed.append)
    return shop


def _subscribed(shop: Shop, email: str) -> tuple[int, str]:
    """A contact in `drip` whose first email went out: its id and that email's Message-ID."""
    with shop.api.client("write") as client:
        contact = create(client, email, first_name="Ann")
        client.post(f"/v1/contacts/{email}/lists/news")
    work(shop.api)
    return contact["id"], message_ids(shop.api, contact["id"])[0]


def _contact(shop: Shop, email: str) -> dict[str, Any]:
    with shop.api.client("read") as client:
        answer: dict[str, Any] = client.get(f"/v1/contacts/{email}").json()
    return answer


def _enrollments(shop: Shop, email: str) -> list[tuple[str, str | None]]:
    return [(e["status"], e["reason"]) for e in _contact(shop, email)["enrollments"]]


def _state(shop: Shop) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the shop workspace, table by table."""
    with shop.api.engine.connect() as conn:
        rows = {}
        for table in Base.metadata.sorted_tables:
            column = table.c.id if table.name == "workspaces" else table.c.workspace_id
            found = conn.execute(select(table).where(column == "shop")).all()
            rows[table.name] = sorted((tuple(row) for row in found), key=repr)
    return rows


def _ses(client: httpx.Client, message: dict[str, Any]) -> httpx.Response:
    return client.post("/v1/providers/ses", content=body(message), headers=SNS_HEADERS)


def _sendgrid(client: httpx.Client, raw: bytes, signed: dict[str, str]) -> httpx.Response:
    return client.post("/v1/providers/sendgrid", content=raw, headers={**JSON, **signed})


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


# -- Amazon SES through SNS ----------------------------------------------------------------------------


def test_a_signed_ses_permanent_bounce_blacklists_the_contact_once(shop: Shop) -> None:
    # SPEC D5, L1, L2, S12: a hard bounce blacklists the contact and its enrollment ends `bounced`
    _id, message_id = _subscribed(shop, "ann@x.test")
    signed = sign_sns(sns_notification(ses_bounce(["ann@x.test"], original=message_id)))
    with shop.client() as client:
        first = _ses(client, signed)
        after = _state(shop)
        again = _ses(client, signed)  # SNS delivers again: D3, applied once
    assert first.status_code == 200, first.text
    assert first.json() == {
        "provider": "ses",
        "kind": "Bounce",
        "received": 1,
        "applied": 1,
        "duplicates": 0,
        "ignored": 0,
        "events": [
            {
                "type": "email.bounced",
                "message": message_id,
                "kind": "hard",
                "outcome": "applied",
                "reason": None,
            }
        ],
        "reason": None,
    }
    assert _contact(shop, "ann@x.test")["lead_status"] == "blacklisted"
    assert _enrollments(shop, "ann@x.test") == [("bounced", "hard_bounce")]
    assert again.status_code == 200, again.text
    assert (again.json()["applied"], again.json()["duplicates"]) == (0, 1)
    assert again.json()["events"][0]["outcome"] == "duplicate"
    assert _state(shop) == after  # the replay changed nothing
    assert shop.certificates.fetched == [shop.certificates.fetched[0]]  # fetched once, then cached


def test_a_tampered_ses_notification_changes_nothing(shop: Shop) -> None:
    _id, message_id = _subscribed(shop, "ann@x.test")
    signed = sign_sns(sns_notification(ses_bounce(["ann@x.test"], original=message_id)))
    before = _state(shop)
    forged = sign_sns(sns_notification(ses_bounce(["ann@x.test"], original=message_id)), OTHER_KEY)
    tampered = {**sign_sns(sns_notification(ses_delivery())), "Message": signed["Message"]}
    foreign = {**signed, "SigningCertURL": "https://evil.test/SimpleNotificationService-1.pem"}
    with shop.client() as client:
        answers = [_ses(client, forged), _ses(client, tampered), _ses(client, foreign)]
        unsigned = _ses(client, {k: v for k, v in signed.items() if k != "Signature"})
    for answer in [*answers, unsigned]:
        _error(answer, 403, "bad_signature")
    assert _state(shop) == before
    assert _contact(shop, "ann@x.test")["lead_status"] == "active"


def test_a_complaint_blacklists_a_soft_bounce_does_not_and_deliveries_change_nothing(shop: Shop) -> None:
    # SPEC L1: a complaint blacklists (enrollment canceled, complaint); one soft bounce does not
    _id, eve_message = _subscribed(shop, "eve@x.test")
    _id, bob_message = _subscribed(shop, "bob@x.test")
    with shop.client() as client:
        complaint = _ses(
            client, sign_sns(sns_notification(ses_complaint(["eve@x.test"], None, eve_message), "c1"))
        )
        soft = _ses(
            client,
            sign_sns(sns_notification(ses_bounce(["bob@x.test"], "Transient", original=bob_message), "s1")),
        )
        delivery = _ses(client, sign_sns(sns_notification(ses_delivery(), "d1")))
        not_spam = _ses(
            client, sign_sns(sns_notification(ses_complaint(["bob@x.test"], "not-spam", bob_message), "n1"))
        )
    assert complaint.status_code == 200, complaint.text
    assert (complaint.json()["kind"], complaint.json()["applied"]) == ("Complaint", 1)
    assert _contact(shop, "eve@x.test")["lead_status"] == "blacklisted"
    assert _enrollments(shop, "eve@x.test") == [("canceled", "complaint")]
    assert soft.json()["events"][0]["kind"] == "soft" and soft.json()["applied"] == 1
    assert delivery.json()["kind"] == "Delivery" and delivery.json()["events"] == []
    assert not_spam.json()["applied"] == 0 and "not-spam" in not_spam.json()["reason"]
    assert _contact(shop, "bob@x.test")["lead_status"] == "active"
    assert _enrollments(shop, "bob@x.test") == [("active", None)]


def test_three_soft_bounces_in_a_row_blacklist(shop: Shop) -> None:
    # SPEC L1: repeated soft bounces (3 messages in a row) blacklist; the enrollment ends `bounced`
    contact_id, _first = _subscribed(shop, "ann@x.test")
    shop.api.clock.advance(timedelta(days=1, hours=2))  # drip's second email
    work(shop.api)
    with shop.api.client("write") as client:
        client.post("/v1/contacts/ann@x.test/tags/vip")  # the vip sequence's email
    work(shop.api)
    messages = message_ids(shop.api, contact_id)
    assert len(messages) == 3
    statuses = []
    with shop.client() as client:
        for number, message_id in enumerate(messages):
            bounce = ses_bounce(["ann@x.test"], "Transient", "MailboxFull", original=message_id)
            answer = _ses(client, sign_sns(sns_notification(bounce, f"soft-{number}")))
            assert answer.json()["applied"] == 1, answer.text
            statuses.append(_contact(shop, "ann@x.test")["lead_status"])
    assert statuses == ["active", "active", "blacklisted"]
    assert ("bounced", "repeated_soft_bounce") in _enrollments(shop, "ann@x.test")


def test_a_notification_about_a_message_we_did_not_send_is_ignored(shop: Shop) -> None:
    _subscribed(shop, "ann@x.test")
    before = _state(shop)
    stranger = sign_sns(sns_notification(ses_bounce(["ann@x.test"], original="<other-app@mail.test>")))
    with shop.client() as client:
        answer = _ses(client, stranger)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["applied"], answer.json()["ignored"]) == (0, 1)
    assert "no message <other-app@mail.test>" in answer.json()["events"][0]["reason"]
    assert _state(shop) == before


def test_a_subscription_is_confirmed_and_pinned_topics_are_kept_to(shop: Shop) -> None:
    with shop.client() as client:
        confirmed = _ses(client, sign_sns(sns_subscription()))
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["kind"] == "subscription_confirmed"
    assert shop.confirmed == [SUBSCRIBE_URL]
    # delivery.events.ses.topic_arns: another topic is refused, signed or not, and not confirmed
    with transaction(shop.api.engine) as session:
        pinned = load_workspace_text(_workspace(f"{{topic_arns: ['{TOPIC}']}}"), "shop.yaml")
        apply_workspace(session, pinned, now=NOW, actor="test")
    other = TOPIC.replace("ses-events", "someone-elses")
    elsewhere = {**sns_subscription(), "SubscribeURL": "https://evil.test/?Action=ConfirmSubscription"}
    with shop.client() as client:
        _error(_ses(client, sign_sns(sns_subscription(topic=other))), 403, "topic_not_accepted")
        _error(
            _ses(client, sign_sns({**sns_notification(ses_delivery()), "TopicArn": other})),
            403,
            "topic_not_accepted",
        )
        _error(_ses(client, sign_sns(elsewhere)), 403, "bad_signature")  # signed, but not an SNS URL
        again = _ses(client, sign_sns(sns_subscription()))
        ended = _ses(client, sign_sns(sns_subscription("UnsubscribeConfirmation")))
    assert again.status_code == 200 and shop.confirmed == [SUBSCRIBE_URL, SUBSCRIBE_URL]
    assert ended.json()["kind"] == "unsubscribe_confirmation"


def test_a_failed_confirmation_is_a_502_that_sns_retries(shop: Shop) -> None:
    def refuse(url: str) -> None:
        raise OSError("network unreachable")

    shop.api.app.state.providers = ProviderClients(SnsVerifier(shop.certificates), refuse)
    with shop.client() as client:
        answer = _ses(client, sign_sns(sns_subscription()))
    _error(answer, 502, "confirmation_failed")
    assert SUBSCRIBE_URL in answer.json()["error"]["message"]


# -- SendGrid ------------------------------------------------------------------------------------------


def _batch(*events: dict[str, Any]) -> bytes:
    return json.dumps(list(events)).encode()


def test_a_sendgrid_spam_report_blacklists_and_strangers_in_the_batch_are_ignored(shop: Shop) -> None:
    # SPEC D5, L1, L2: spamreport → email.complained → blacklisted; D3: a replay applies nothing
    _id, message_id = _subscribed(shop, "ann@x.test")
    raw = _batch(
        sendgrid_event("processed", "ann@x.test", message_id),
        sendgrid_event("delivered", "ann@x.test", message_id, response="250 OK"),
        sendgrid_event("open", "ann@x.test", None, useragent="Mozilla/5.0"),
        sendgrid_event("spamreport", "ann@x.test", message_id),
        sendgrid_event("bounce", "zed@else.test", "<other-app@mail.test>", type="bounce", status="5.1.1"),
        sendgrid_event("spamreport", "nobody@else.test", None),
    )
    with shop.client() as client:
        first = _sendgrid(client, raw, sign_sendgrid(raw, shop.api.clock.now()))
        after = _state(shop)
        again = _sendgrid(client, raw, sign_sendgrid(raw, shop.api.clock.now()))
    assert first.status_code == 200, first.text
    result = first.json()
    assert (result["provider"], result["kind"], result["received"]) == ("sendgrid", "batch", 6)
    assert (result["applied"], result["duplicates"], result["ignored"]) == (1, 0, 2)
    assert [(e["type"], e["outcome"]) for e in result["events"]] == [
        ("email.complained", "applied"),
        ("email.bounced", "ignored"),
        ("email.complained", "ignored"),
    ]
    assert _contact(shop, "ann@x.test")["lead_status"] == "blacklisted"
    assert _enrollments(shop, "ann@x.test") == [("canceled", "complaint")]
    assert (again.json()["applied"], again.json()["duplicates"], again.json()["ignored"]) == (0, 1, 2)
    assert _state(shop) == after


@pytest.mark.parametrize(
    "forge",
    [
        lambda raw, now: (raw.replace(b"spamreport", b"delivered"), sign_sendgrid(raw, now)),  # tampered
        lambda raw, now: (raw, {**sign_sendgrid(raw, now), "X-Twilio-Email-Event-Webhook-Timestamp": "1"}),
        lambda raw, now: (raw, sign_sendgrid(raw, now - timedelta(minutes=11))),  # stale
        lambda raw, now: (raw, {}),  # unsigned
    ],
    ids=["tampered", "timestamp", "stale", "unsigned"],
)
def test_a_sendgrid_batch_whose_signature_fails_changes_nothing(
    shop: Shop, forge: Callable[[bytes, Any], tuple[bytes, dict[str, str]]]
) -> None:
    _id, message_id = _subscribed(shop, "ann@x.test")
    raw, headers = forge(_batch(sendgrid_event("spamreport", "ann@x.test", message_id)), shop.api.clock.now())
    before = _state(shop)
    with shop.client() as client:
        _error(_sendgrid(client, raw, headers), 403, "bad_signature")
    assert _state(shop) == before


def test_a_sendgrid_unsubscribe_is_a_global_unsubscribe_and_blocked_a_soft_bounce(shop: Shop) -> None:
    # SPEC L3: a global unsubscribe cancels open enrollments; `blocked` is a soft bounce (L1: no blacklisting)
    _subscribed(shop, "ann@x.test")
    _id, bob_message = _subscribed(shop, "bob@x.test")
    raw = _batch(
        sendgrid_event("unsubscribe", "Ann@X.test", None),
        sendgrid_event("bounce", "bob@x.test", bob_message, type="blocked", reason="450 mailbox busy"),
    )
    with shop.client() as client:
        answer = _sendgrid(client, raw, sign_sendgrid(raw, shop.api.clock.now()))
    assert answer.status_code == 200, answer.text
    assert [(e["type"], e["kind"], e["outcome"]) for e in answer.json()["events"]] == [
        ("unsubscribed", None, "applied"),
        ("email.bounced", "soft", "applied"),
    ]
    assert _enrollments(shop, "ann@x.test") == [("canceled", "unsubscribed")]
    assert _contact(shop, "ann@x.test")["unsubscribed"] is True
    assert _contact(shop, "bob@x.test")["lead_status"] == "active"


def test_sendgrid_events_need_the_key_the_workspace_names(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = _batch(sendgrid_event("spamreport", "ann@x.test"))
    monkeypatch.delenv(SENDGRID_ENV)
    with shop.client() as client:
        unset = _sendgrid(client, raw, sign_sendgrid(raw, shop.api.clock.now()))
        monkeypatch.setenv(SENDGRID_ENV, "not a key")
        wrong = _sendgrid(client, raw, sign_sendgrid(raw, shop.api.clock.now()))
    with httpx.Client(base_url=shop.api.url, timeout=30, auth=("x", shop.api.keys["other"])) as rival:
        unconfigured = _sendgrid(rival, raw, sign_sendgrid(raw, shop.api.clock.now()))
    for answer in (unset, wrong, unconfigured):
        _error(answer, 403, "not_configured")
    assert SENDGRID_ENV in unset.json()["error"]["message"] and "not a key" not in wrong.text
    assert "public_key_env" in unconfigured.json()["error"]["message"]


# -- the key: HTTP Basic, as in a webhook URL -------------------------------------------------------------


def test_the_key_comes_as_the_basic_password_or_a_bearer_token(shop: Shop) -> None:
    _id, message_id = _subscribed(shop, "ann@x.test")
    signed = sign_sns(sns_notification(ses_bounce(["ann@x.test"], original=message_id)))
    before = _state(shop)
    with httpx.Client(base_url=shop.api.url, timeout=30) as anonymous:
        challenge = _ses(anonymous, signed)  # SNS sends the URL's credentials only when asked
        wrong = anonymous.post(
            "/v1/providers/ses", content=body(signed), headers=SNS_HEADERS, auth=("x", "df_nope_nope")
        )
        empty = anonymous.post("/v1/providers/ses", content=body(signed), headers=SNS_HEADERS, auth=("x", ""))
    _error(challenge, 401, "unauthorized")
    assert challenge.headers["www-authenticate"].startswith("Basic realm=")
    _error(wrong, 401, "unauthorized")
    _error(empty, 401, "unauthorized")
    with shop.client("read") as reader:
        _error(_ses(reader, signed), 403, "forbidden")
    # Another workspace's key: its own workspace has no such message, so nothing happens here.
    with httpx.Client(base_url=shop.api.url, timeout=30, auth=("x", shop.api.keys["other"])) as rival:
        stranger = _ses(rival, signed)
    assert stranger.status_code == 200 and stranger.json()["ignored"] == 1, stranger.text
    assert _state(shop) == before
    with shop.client("write", basic=False) as bearer:
        assert _ses(bearer, signed).json()["applied"] == 1
    assert _contact(shop, "ann@x.test")["lead_status"] == "blacklisted"
