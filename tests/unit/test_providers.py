"""Provider event webhooks (issue 5): Amazon SES notifications through SNS and SendGrid's Event
Webhook, parsed into the events the engine applies (SPEC D5, L1, L3), with their ids (D3), and
their signatures checked (SNS: SHA1/SHA256withRSA with a certificate from an SNS host; SendGrid:
ECDSA P-256 over timestamp + body, fresh timestamps only).

The payloads are in the shapes the providers document; the keys and certificates are made here, so
nothing needs the internet. The helpers are shared with the HTTP tests
(tests/integration/api/test_providers_api.py) and the isolation test.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from dripflow.core.validate import check_workspace_text
from dripflow.delivery.providers import NotProviderData, SignatureInvalid
from dripflow.delivery.providers.sendgrid import load_public_key, sendgrid_events, verify_sendgrid
from dripflow.delivery.providers.ses import SnsVerifier, check_sns_url, read_envelope, ses_events

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ORIGINAL_ID = "<drip.1.one.shop@shop.test>"
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"
CERT_URL = (
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem"
)
SUBSCRIBE_URL = (
    "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
    f"&TopicArn={TOPIC}&Token=2336412f37fb687f5d51e6e2425dacbba"
)


# -- SNS: a signing key and its certificate, and messages signed with them ---------------------------------


def _certificate(key: rsa.RSAPrivateKey, not_after: datetime = datetime(2040, 1, 1, tzinfo=UTC)) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


SNS_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SNS_CERT = _certificate(SNS_KEY)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class FakeCertificates:
    """The certificate fetcher tests inject: the test certificate for CERT_URL, a failure else."""

    pem: bytes = SNS_CERT
    fetched: list[str] = field(default_factory=list)

    def __call__(self, url: str) -> bytes:
        self.fetched.append(url)
        if url != CERT_URL:
            raise AssertionError(f"fetched {url}")
        return self.pem


def _canonical(message: dict[str, Any]) -> bytes:
    """What SNS signs, written out as AWS documents it (independently of the code under test)."""
    if message["Type"] == "Notification":
        keys = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        keys = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    return "".join(f"{key}\n{message[key]}\n" for key in keys if key in message).encode()


def sign_sns(message: dict[str, Any], key: rsa.RSAPrivateKey = SNS_KEY, version: str = "1") -> dict[str, Any]:
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(_canonical(message), padding.PKCS1v15(), digest)
    return {
        **message,
        "SignatureVersion": version,
        "Signature": base64.b64encode(signature).decode(),
        "SigningCertURL": CERT_URL,
    }


def sns_notification(
    ses: dict[str, Any], message_id: str = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324"
) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": TOPIC,
        "Message": json.dumps(ses),
        "Timestamp": "2026-03-02T09:00:05.123Z",
        "UnsubscribeURL": f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={TOPIC}:1",
    }


def sns_subscription(kind: str = "SubscriptionConfirmation", topic: str = TOPIC) -> dict[str, Any]:
    return {
        "Type": kind,
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e2425dacbba",
        "TopicArn": topic,
        "Message": (
            f"You have chosen to subscribe to the topic {topic}.\n"
            "To confirm the subscription, visit the SubscribeURL included in this message."
        ),
        "SubscribeURL": SUBSCRIBE_URL.replace(TOPIC, topic),
        "Timestamp": "2026-03-02T09:00:01.000Z",
    }


def _mail(original: str | None = ORIGINAL_ID, *, in_headers: bool = False) -> dict[str, Any]:
    common: dict[str, Any] = {"from": ["Ann <ann@shop.test>"], "to": ["ann@x.test"], "subject": "Hello Ann"}
    headers = [{"name": "From", "value": "Ann <ann@shop.test>"}, {"name": "To", "value": "ann@x.test"}]
    if original and in_headers:
        headers.append({"name": "Message-ID", "value": original})
    elif original:
        common["messageId"] = original
    return {
        "timestamp": "2026-03-02T09:00:00.000Z",
        "source": "ann@shop.test",
        "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/shop.test",
        "sendingAccountId": "123456789012",
        "messageId": "0100018e0a5e6d4c-5b1f2c0a-0000-4a6b-9d1f-1c2d3e4f5a6b-000000",
        "destination": ["ann@x.test"],
        "headersTruncated": False,
        "headers": headers,
        "commonHeaders": common,
    }


def _feedback_id() -> str:
    """SES gives each bounce and complaint its own feedbackId."""
    return f"0100018e0a5e7f2a-{uuid.uuid4()}-000000"


def ses_bounce(
    recipients: list[str],
    bounce_type: str = "Permanent",
    subtype: str = "General",
    original: str | None = ORIGINAL_ID,
    *,
    key: str = "notificationType",
    feedback_id: str | None = None,
) -> dict[str, Any]:
    status = "5.1.1" if bounce_type == "Permanent" else "4.2.2"
    return {
        key: "Bounce",
        "bounce": {
            "feedbackId": feedback_id or _feedback_id(),
            "bounceType": bounce_type,
            "bounceSubType": subtype,
            "bouncedRecipients": [
                {
                    "emailAddress": address,
                    "action": "failed",
                    "status": status,
                    "diagnosticCode": f"smtp; {status[0]}50 {status} mailbox unavailable",
                }
                for address in recipients
            ],
            "timestamp": "2026-03-02T09:00:04.000Z",
            "remoteMtaIp": "192.0.2.10",
            "reportingMTA": "dsn; a8-30.smtp-out.amazonses.com",
        },
        "mail": _mail(original),
    }


def ses_complaint(
    recipients: list[str], feedback: str | None = "abuse", original: str = ORIGINAL_ID
) -> dict[str, Any]:
    complaint: dict[str, Any] = {
        "feedbackId": _feedback_id(),
        "complainedRecipients": [{"emailAddress": address} for address in recipients],
        "timestamp": "2026-03-02T09:00:04.000Z",
        "userAgent": "Yahoo!-Mail-Feedback/2.0",
        "arrivalDate": "2026-03-02T09:00:02.000Z",
        "complaintSubType": None,
    }
    if feedback is not None:
        complaint["complaintFeedbackType"] = feedback
    return {"notificationType": "Complaint", "complaint": complaint, "mail": _mail(original)}


def ses_delivery() -> dict[str, Any]:
    return {
        "notificationType": "Delivery",
        "delivery": {
            "timestamp": "2026-03-02T09:00:04.000Z",
            "processingTimeMillis": 546,
            "recipients": ["ann@x.test"],
            "smtpResponse": "250 ok:  Message 64111812 accepted",
            "reportingMTA": "a8-70.smtp-out.amazonses.com",
        },
        "mail": _mail(),
    }


def body(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


# -- SendGrid: a key pair, and signed batches --------------------------------------------------------------

SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())


def sendgrid_public_key(key: ec.EllipticCurvePrivateKey = SENDGRID_KEY) -> str:
    """The verification key as SendGrid shows it: base64 of the DER SubjectPublicKeyInfo."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def sign_sendgrid(
    raw: bytes, at: datetime = NOW, key: ec.EllipticCurvePrivateKey = SENDGRID_KEY
) -> dict[str, str]:
    timestamp = str(int(at.timestamp()))
    signature = key.sign(timestamp.encode() + raw, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }


def sendgrid_event(event: str, email: str, smtp_id: str | None = ORIGINAL_ID, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "email": email,
        "timestamp": int(NOW.timestamp()),
        "event": event,
        "sg_event_id": f"{event}-{email}-{smtp_id}-{sorted(extra.items())}",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "category": ["onboarding"],
        **extra,
    }
    if smtp_id is not None:
        item["smtp-id"] = smtp_id
    return item


# -- SES notifications -------------------------------------------------------------------------------------


def _events(ses: dict[str, Any]) -> list[dict[str, Any]]:
    return ses_events(read_envelope(body(sign_sns(sns_notification(ses))))).events


def test_a_permanent_bounce_is_a_hard_bounce_per_recipient() -> None:
    # SPEC D5, L1: Permanent → hard; one event per bounced recipient; D3: the id is SES's feedbackId
    events = _events(ses_bounce(["Ann@X.test", "bob@x.test"], feedback_id="0100-feedback-1"))
    assert events == [
        {
            "type": "email.bounced",
            "contact": "ann@x.test",
            "message": ORIGINAL_ID,
            "kind": "hard",
            "status": "5.1.1",
            "diagnostic": "smtp; 550 5.1.1 mailbox unavailable",
            "bounce_type": "Permanent",
            "bounce_subtype": "General",
            "provider": "ses",
            "id": "ses:0100-feedback-1:ann@x.test",
        },
        {
            "type": "email.bounced",
            "contact": "bob@x.test",
            "message": ORIGINAL_ID,
            "kind": "hard",
            "status": "5.1.1",
            "diagnostic": "smtp; 550 5.1.1 mailbox unavailable",
            "bounce_type": "Permanent",
            "bounce_subtype": "General",
            "provider": "ses",
            "id": "ses:0100-feedback-1:bob@x.test",
        },
    ]


@pytest.mark.parametrize("bounce_type", ["Transient", "Undetermined"])
def test_transient_and_undetermined_bounces_are_soft(bounce_type: str) -> None:
    [event] = _events(ses_bounce(["ann@x.test"], bounce_type, "MailboxFull"))
    assert (event["type"], event["kind"], event["bounce_subtype"]) == ("email.bounced", "soft", "MailboxFull")


def test_event_publishing_and_a_message_id_among_the_headers() -> None:
    # a configuration set's event destination says eventType; the Message-ID may be only in headers
    bounce = ses_bounce(["ann@x.test"], key="eventType")
    bounce["mail"] = _mail(ORIGINAL_ID, in_headers=True)
    [event] = _events(bounce)
    assert (event["message"], event["kind"]) == (ORIGINAL_ID, "hard")
    no_id = ses_bounce(["ann@x.test"], original=None)
    [event] = _events(no_id)
    assert "message" not in event and event["contact"] == "ann@x.test"


@pytest.mark.parametrize("feedback", [None, "abuse", "fraud", "ABUSE"])
def test_a_complaint_with_or_without_a_feedback_type_is_a_complaint(feedback: str | None) -> None:
    # SPEC D5, L1: one email.complained per complained recipient
    events = _events(ses_complaint(["ann@x.test"], feedback))
    assert len(events) == 1
    event = events[0]
    assert (event["type"], event["contact"], event["message"]) == (
        "email.complained",
        "ann@x.test",
        ORIGINAL_ID,
    )
    assert event.get("feedback_type") == (feedback.lower() if feedback else None)
    assert event["reporter"] == "Yahoo!-Mail-Feedback/2.0"


@pytest.mark.parametrize("feedback", ["not-spam", "virus", "auth-failure"])
def test_a_not_spam_feedback_is_not_a_complaint(feedback: str) -> None:
    notification = ses_events(read_envelope(body(sns_notification(ses_complaint(["ann@x.test"], feedback)))))
    assert (notification.kind, notification.events) == ("Complaint", [])
    assert notification.reason and feedback in notification.reason


def test_deliveries_and_other_messages_make_no_event() -> None:
    delivery = ses_events(read_envelope(body(sns_notification(ses_delivery()))))
    assert (delivery.kind, delivery.events) == ("Delivery", [])
    for text in ("hello from the SNS console", json.dumps({"hello": "world"}), "[1, 2]"):
        message = {**sns_notification({}), "Message": text}
        other = ses_events(read_envelope(body(message)))
        assert (other.kind, other.events) == ("other", [])


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        body(ses_bounce(["ann@x.test"])),  # raw message delivery: no envelope, no signature
        body({**sns_notification({}), "Type": "Hello"}),
        body({k: v for k, v in sns_notification({}).items() if k != "TopicArn"}),
        body({**sns_notification({}), "Message": {"notificationType": "Bounce"}}),
    ],
)
def test_what_is_not_an_sns_message_is_refused(raw: bytes) -> None:
    with pytest.raises(NotProviderData):
        read_envelope(raw)


# -- SNS signatures ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize(
    "message",
    [
        sns_notification(ses_bounce(["ann@x.test"])),
        {**sns_notification(ses_delivery()), "Subject": "Amazon SES Email Event Notification"},
        sns_subscription(),
        sns_subscription("UnsubscribeConfirmation"),
    ],
    ids=["notification", "with-subject", "subscription", "unsubscribe"],
)
def test_a_message_signed_by_sns_is_accepted(message: dict[str, Any], version: str) -> None:
    fetcher = FakeCertificates()
    SnsVerifier(fetcher).verify(read_envelope(body(sign_sns(message, version=version))), NOW)
    assert fetcher.fetched == [CERT_URL]


def _refused(message: dict[str, Any], fetcher: FakeCertificates | None = None) -> str:
    with pytest.raises(SignatureInvalid) as caught:
        SnsVerifier(fetcher or FakeCertificates()).verify(read_envelope(body(message)), NOW)
    return str(caught.value)


def test_a_tampered_sns_message_is_refused() -> None:
    signed = sign_sns(sns_notification(ses_bounce(["ann@x.test"])))
    tampered = json.loads(signed["Message"])
    tampered["bounce"]["bouncedRecipients"][0]["emailAddress"] = "victim@x.test"
    assert "does not match" in _refused({**signed, "Message": json.dumps(tampered)})
    assert "does not match" in _refused({**signed, "TopicArn": TOPIC + "-other"})
    assert "does not match" in _refused({**signed, "Subject": "added after signing"})
    assert "does not match" in _refused({**signed, "SignatureVersion": "2"})  # signed with SHA1
    assert "not signed" in _refused({**signed, "Signature": ""})
    assert "base64" in _refused({**signed, "Signature": "%%%"})
    assert "SignatureVersion" in _refused({**signed, "SignatureVersion": "3"})
    unsigned = {k: v for k, v in signed.items() if k not in ("Signature", "SignatureVersion")}
    assert "SignatureVersion" in _refused(unsigned)


def test_a_message_signed_with_another_key_is_refused() -> None:
    # the certificate at the SNS address holds SNS_KEY; the message is signed with another key
    assert "does not match" in _refused(sign_sns(sns_notification(ses_delivery()), OTHER_KEY))
    # and a certificate for the other key, served at the SNS address, does not verify SNS_KEY's
    assert "does not match" in _refused(
        sign_sns(sns_notification(ses_delivery())), FakeCertificates(_certificate(OTHER_KEY))
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.us-east-1.amazonaws.com.evil.test/SimpleNotificationService-1.pem",
        "https://evil.test/sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://s3.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.us-east-1.amazonaws.com@evil.test/SimpleNotificationService-1.pem",
        "https://x@sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-1.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.txt",
        "https://sns.us-east-1.amazonaws.com/cert.pem?x=1",
        "https://sns.amazonaws.com/SimpleNotificationService-1.pem",
        "file:///etc/ssl/cert.pem",
        "",
    ],
)
def test_a_certificate_from_anywhere_but_an_sns_host_is_refused_unfetched(url: str) -> None:
    fetcher = FakeCertificates()
    message = {**sign_sns(sns_notification(ses_delivery())), "SigningCertURL": url}
    assert "SigningCertURL" in _refused(message, fetcher)
    assert fetcher.fetched == []


def test_sns_hosts_in_every_partition_are_accepted() -> None:
    for url in (
        CERT_URL,
        "https://sns.eu-central-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-1.pem",
    ):
        assert check_sns_url(url, certificate=True) == url
    assert check_sns_url(SUBSCRIBE_URL, certificate=False) == SUBSCRIBE_URL
    with pytest.raises(SignatureInvalid):
        check_sns_url(SUBSCRIBE_URL.replace("sns.us-east-1.amazonaws.com", "evil.test"), certificate=False)


def test_the_certificate_is_fetched_once_and_must_be_valid_now() -> None:
    fetcher = FakeCertificates()
    verifier = SnsVerifier(fetcher)
    for message_id in ("a", "b", "c"):
        verifier.verify(read_envelope(body(sign_sns(sns_notification(ses_delivery(), message_id)))), NOW)
    assert fetcher.fetched == [CERT_URL]
    expired = FakeCertificates(_certificate(SNS_KEY, not_after=NOW - timedelta(days=1)))
    assert "not valid" in _refused(sign_sns(sns_notification(ses_delivery())), expired)
    assert "PEM" in _refused(sign_sns(sns_notification(ses_delivery())), FakeCertificates(b"<html>"))


# -- SendGrid events ---------------------------------------------------------------------------------------


def test_a_sendgrid_batch_maps_bounces_drops_spam_reports_and_unsubscribes() -> None:
    # SPEC D5, L1, L3; D3: the id is sg_event_id
    batch = [
        sendgrid_event("processed", "ann@x.test"),
        sendgrid_event("delivered", "ann@x.test", response="250 OK"),
        sendgrid_event("deferred", "ann@x.test", response="400 try again later", attempt="5"),
        sendgrid_event("open", "ann@x.test", smtp_id=None, useragent="Mozilla/5.0", ip="192.0.2.1"),
        sendgrid_event("click", "ann@x.test", smtp_id=None, url="https://shop.test/offer"),
        sendgrid_event(
            "bounce",
            "Bob@X.test",
            type="bounce",
            status="5.1.1",
            reason="550 5.1.1 The email account does not exist",
        ),
        sendgrid_event(
            "bounce", "cat@x.test", type="blocked", status="4.0.0", reason="unable to get mx info"
        ),
        sendgrid_event("dropped", "dan@x.test", reason="Bounced Address", status="5.0.0"),
        sendgrid_event("dropped", "eve@x.test", reason="Spam Reporting Address", status="5.0.0"),
        sendgrid_event("dropped", "fay@x.test", reason="Spam Content (if spam checker app is enabled)"),
        sendgrid_event("dropped", "gus@x.test", reason="Unsubscribed Address"),
        sendgrid_event("spamreport", "hal@x.test"),
        sendgrid_event("unsubscribe", "ivy@x.test", smtp_id=None),
        sendgrid_event("group_unsubscribe", "jo@x.test", asm_group_id=1),
        "not an event",
        {"event": "bounce"},  # no address
    ]
    result = sendgrid_events(json.dumps(batch).encode())
    assert result.received == len(batch)
    summary = [(e["type"], e["contact"], e.get("kind"), e.get("message")) for e in result.events]
    assert summary == [
        ("email.bounced", "bob@x.test", "hard", ORIGINAL_ID),
        ("email.bounced", "cat@x.test", "soft", ORIGINAL_ID),
        ("email.bounced", "dan@x.test", "hard", ORIGINAL_ID),
        ("email.complained", "eve@x.test", None, ORIGINAL_ID),
        ("email.complained", "hal@x.test", None, ORIGINAL_ID),
        ("unsubscribed", "ivy@x.test", None, None),
    ]
    bounce = result.events[0]
    assert bounce["id"] == f"sendgrid:{batch[5]['sg_event_id']}"  # type: ignore[index]
    assert (bounce["status"], bounce["diagnostic"], bounce["provider"]) == (
        "5.1.1",
        "550 5.1.1 The email account does not exist",
        "sendgrid",
    )
    assert result.events[-1]["scope"] == "all"


@pytest.mark.parametrize("raw", [b"", b"{}", b'{"event": "bounce"}', b"nope", b"\xff"])
def test_a_body_that_is_not_an_event_array_is_refused(raw: bytes) -> None:
    with pytest.raises(NotProviderData):
        sendgrid_events(raw)


# -- SendGrid signatures -----------------------------------------------------------------------------------


RAW_BATCH = json.dumps([sendgrid_event("spamreport", "ann@x.test")]).encode()


def _verify(raw: bytes, headers: dict[str, str], now: datetime = NOW, key: str | None = None) -> None:
    verify_sendgrid(
        load_public_key(key or sendgrid_public_key()),
        headers.get("X-Twilio-Email-Event-Webhook-Signature"),
        headers.get("X-Twilio-Email-Event-Webhook-Timestamp"),
        raw,
        now,
    )


def test_a_batch_signed_by_sendgrid_is_accepted() -> None:
    _verify(RAW_BATCH, sign_sendgrid(RAW_BATCH))
    _verify(RAW_BATCH, sign_sendgrid(RAW_BATCH, NOW - timedelta(minutes=9)))  # within 10 minutes


def test_a_tampered_batch_or_another_key_is_refused() -> None:
    headers = sign_sendgrid(RAW_BATCH)
    with pytest.raises(SignatureInvalid, match="does not match"):
        _verify(RAW_BATCH.replace(b"ann@x.test", b"bob@x.test"), headers)
    with pytest.raises(SignatureInvalid, match="does not match"):  # the timestamp is signed too
        later = str(int(headers["X-Twilio-Email-Event-Webhook-Timestamp"]) + 1)
        _verify(RAW_BATCH, {**headers, "X-Twilio-Email-Event-Webhook-Timestamp": later})
    with pytest.raises(SignatureInvalid, match="does not match"):
        _verify(RAW_BATCH, sign_sendgrid(RAW_BATCH, key=OTHER_SENDGRID_KEY))
    with pytest.raises(SignatureInvalid, match="does not match"):
        _verify(RAW_BATCH, headers, key=sendgrid_public_key(OTHER_SENDGRID_KEY))


@pytest.mark.parametrize("age", [timedelta(minutes=11), -timedelta(minutes=11), timedelta(days=400)])
def test_a_stale_or_future_timestamp_is_refused(age: timedelta) -> None:
    with pytest.raises(SignatureInvalid, match="minutes from now"):
        _verify(RAW_BATCH, sign_sendgrid(RAW_BATCH, NOW - age))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Twilio-Email-Event-Webhook-Timestamp": "1772442000"},
        {"X-Twilio-Email-Event-Webhook-Signature": "MEUCIQ=="},
        {
            "X-Twilio-Email-Event-Webhook-Signature": "%%%",
            "X-Twilio-Email-Event-Webhook-Timestamp": "1772442000",
        },
        {
            "X-Twilio-Email-Event-Webhook-Signature": "MEUCIQ==",
            "X-Twilio-Email-Event-Webhook-Timestamp": "soon",
        },
        {
            "X-Twilio-Email-Event-Webhook-Signature": "MEUCIQ==",
            "X-Twilio-Email-Event-Webhook-Timestamp": "1772442000",
        },
    ],
)
def test_a_missing_or_malformed_signature_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(SignatureInvalid):
        _verify(RAW_BATCH, headers)


def test_the_verification_key_is_read_as_sendgrid_shows_it() -> None:
    pem = (
        SENDGRID_KEY.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    assert load_public_key(sendgrid_public_key()).public_numbers() == load_public_key(pem).public_numbers()
    rsa_der = SNS_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for bad in ("", "not base64!", base64.b64encode(b"junk").decode(), base64.b64encode(rsa_der).decode()):
        with pytest.raises(ValueError):
            load_public_key(bad)


# -- the workspace's settings --------------------------------------------------------------------------------


def test_the_workspace_names_the_sendgrid_key_by_variable_and_may_pin_sns_topics() -> None:
    # SPEC §2: secrets (here SendGrid's key) only by environment variable name
    head = "workspace: {name: Acme, timezone: UTC}\ndelivery:\n  events:\n"
    workspace, problems = check_workspace_text(
        head + f"    ses: {{topic_arns: ['{TOPIC}']}}\n    sendgrid: {{public_key_env: SENDGRID_KEY}}\n",
        "w.yaml",
    )
    assert problems == [] and workspace is not None and workspace.delivery.events is not None
    assert workspace.delivery.events.ses is not None and workspace.delivery.events.ses.topic_arns == (TOPIC,)
    assert workspace.delivery.events.sendgrid is not None
    assert workspace.delivery.events.sendgrid.public_key_env == "SENDGRID_KEY"
    _, problems = check_workspace_text(
        head
        + "    ses: {topic_arns: [ses-events]}\n    sendgrid: {public_key: MFkwEwYHKoZI}\n    mailgun: {}\n",
        "w.yaml",
    )
    found = {problem.path: problem.message for problem in problems}
    assert sorted(found) == [
        "delivery.events.mailgun",
        "delivery.events.sendgrid.public_key",
        "delivery.events.sendgrid.public_key_env",
        "delivery.events.ses.topic_arns[0]",
    ]
    assert "public_key_env" in found["delivery.events.sendgrid.public_key"]
    assert "environment variable" in found["delivery.events.sendgrid.public_key"]
    assert "not an SNS topic ARN" in found["delivery.events.ses.topic_arns[0]"]


def test_one_bounce_published_twice_has_one_id_and_a_bounce_without_feedback_id_takes_snss() -> None:
    """D3: SES may publish one bounce through identity notifications and an event destination;
    both carry its feedbackId, so it is applied once. Without one, the SNS MessageId is the key."""
    twice = [
        ses_bounce(["ann@x.test"], feedback_id="0100-same"),
        ses_bounce(["ann@x.test"], key="eventType", feedback_id="0100-same"),
    ]
    ids = [
        ses_events(read_envelope(body(sns_notification(one, f"sns-{n}")))).events[0]["id"]
        for n, one in enumerate(twice)
    ]
    assert ids == ["ses:0100-same:ann@x.test"] * 2
    bare = ses_bounce(["ann@x.test"])
    del bare["bounce"]["feedbackId"]
    [event] = ses_events(read_envelope(body(sns_notification(bare, "sns-9")))).events
    assert event["id"] == "ses:sns-9:ann@x.test"
