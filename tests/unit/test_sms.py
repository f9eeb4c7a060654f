"""The SMS gateway's pure parts (docs/sms.md): E.164 recipients, the body, the settings and how a
gateway's answer is classified (D5)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from dripflow.core.model import Delivery, Gateway
from dripflow.delivery import sms
from dripflow.delivery.sms import MissingSecret, NotE164, e164, sms_body, sms_transport_for
from dripflow.delivery.transport import PermanentFailure, TemporaryFailure
from dripflow.engine.webhooks import SIGNATURE_HEADER, sign_body


@dataclass(frozen=True)
class Row:
    key: str = "enrollment:7:1"
    contact_id: int = 7
    recipient: str = "+15555550123"
    sender: str | None = "+15550100"
    body_text: str = "Hi Zoë"
    sequence_id: str | None = "webinar"
    step_id: str | None = "remind"


@pytest.mark.parametrize("number", ["+15555550123", "+447911123456", "+33612345678"])
def test_e164_numbers_pass_as_they_are(number: str) -> None:
    assert e164(number) == number


@pytest.mark.parametrize(
    "number",
    [
        "555-0100",  # no country code
        "15555550123",  # no +
        "+1 555 555 0123",  # E.164 has no spaces, even if it would normalise
        "+1555555012345678",  # more than 15 digits
        "+0123456789",  # no country code 0
        "+1555",  # too short for its country
        "+١٥٥٥٥٥٥٠١٢٣",  # non-ASCII digits
        "",
    ],
)
def test_anything_else_is_not_e164(number: str) -> None:
    with pytest.raises(NotE164, match=r"is not an E\.164 phone number"):
        e164(number)


def test_the_body_is_compact_sorted_utf8_json() -> None:
    body = sms_body("shop", Row())
    assert (
        body
        == (
            '{"contact":7,"from":"+15550100","id":"enrollment:7:1","sequence":"webinar","step":"remind",'
            '"text":"Hi Zoë","to":"+15555550123","workspace":"shop"}'
        ).encode()
    )
    assert json.loads(sms_body("shop", Row(sender=None, sequence_id=None, step_id=None)))["from"] is None
    with pytest.raises(NotE164):
        sms_body("shop", Row(recipient="555-0100"))


def _delivery(secret_env: str | None = "SMS_SECRET") -> Delivery:
    return Delivery(sms=Gateway(webhook="https://sms.acme.test/send", secret_env=secret_env))


def test_no_gateway_means_no_transport_and_a_missing_secret_is_refused() -> None:
    assert sms_transport_for(Delivery(), {}) is None
    assert sms_transport_for(None, {}) is None
    for environ in ({}, {"SMS_SECRET": ""}):
        with pytest.raises(MissingSecret, match="SMS_SECRET, which is not set"):
            sms_transport_for(_delivery(), environ)
    signed = sms_transport_for(_delivery(), {"SMS_SECRET": "k"})
    assert signed is not None and signed.url == "https://sms.acme.test/send"
    assert signed.headers(b"{}", "id-1")[SIGNATURE_HEADER] == sign_body("k", b"{}")
    assert "k" not in repr(signed)
    unsigned = sms_transport_for(_delivery(None), {})
    assert unsigned is not None and SIGNATURE_HEADER not in unsigned.headers(b"{}", "id-1")


def test_2xx_is_sent() -> None:
    for status in (200, 201, 202, 204):
        sms._classify(status, None, b"")


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_408_429_and_5xx_are_temporary(status: int) -> None:
    with pytest.raises(TemporaryFailure) as caught:
        sms._classify(status, "120", b'{"error": "busy"}')
    assert caught.value.code == status
    assert caught.value.retry_after == timedelta(seconds=120)
    assert str(caught.value) == f'the SMS gateway answered HTTP {status}: {{"error": "busy"}}'
    assert not caught.value.recipient  # never a soft bounce


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_signature_is_temporary_and_says_where_to_look(status: int) -> None:
    """The two sides' secrets differ: retried, so that fixing the secret lets the queue drain."""
    with pytest.raises(TemporaryFailure) as caught:
        sms._classify(status, None, b"bad signature")
    assert caught.value.code == status and not caught.value.recipient
    assert str(caught.value) == (
        f"the SMS gateway answered HTTP {status}: bad signature "
        "(is delivery.sms.secret_env the secret the gateway checks?)"
    )


@pytest.mark.parametrize("status", [301, 400, 404, 410, 422])
def test_other_answers_are_permanent_and_never_a_bounce(status: int) -> None:
    with pytest.raises(PermanentFailure) as caught:
        sms._classify(status, None, b"")
    assert caught.value.code == status and not caught.value.recipient_rejected


def test_retry_after_is_seconds_or_an_http_date() -> None:
    assert sms._wait(None) is None
    assert sms._wait("soon") is None
    assert sms._wait(" 30 ") == timedelta(seconds=30)
    later = sms._wait(format_datetime(datetime.now(UTC) + timedelta(minutes=5), usegmt=True))
    assert later is not None and timedelta(minutes=4) < later <= timedelta(minutes=5)
    assert sms._wait("Wed, 21 Oct 2015 07:28:00 GMT") == timedelta(0)
