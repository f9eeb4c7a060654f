"""Amazon SES notifications, delivered by Amazon SNS to an HTTPS subscription (SPEC D5, L1, D3).

SNS posts a JSON *envelope* (``Type``: ``Notification``, ``SubscriptionConfirmation`` or
``UnsubscribeConfirmation``) whose ``Message`` is a JSON string: for SES, a bounce, complaint,
delivery … notification (``notificationType``) or, through a configuration set's event
destination, the same under ``eventType``.

* :func:`read_envelope` reads the envelope; :class:`SnsVerifier` checks its signature the way
  SNS documents it: SignatureVersion 1 is SHA1withRSA, 2 is SHA256withRSA, over the canonical
  string of the Type's signed keys (each ``Key\\nValue\\n``, in byte order), with the public key of
  the X.509 certificate at ``SigningCertURL``, which must be
  ``https://sns.<region>.amazonaws.com/….pem`` (``.amazonaws.com.cn`` in China). Certificates
  are fetched over verified HTTPS by an injectable function and cached by URL.
* :func:`ses_events` turns a verified notification into events: ``Bounce`` → one
  ``email.bounced`` per bounced recipient (``Permanent`` → hard; ``Transient`` and
  ``Undetermined`` → soft), ``Complaint`` → one ``email.complained`` per complained recipient
  unless ``complaintFeedbackType`` says it is not a complaint (``not-spam``, ``virus``,
  ``auth-failure``: as for ARF reports, only ``abuse`` and ``fraud`` count — and, for SES, a
  complaint that gives no type, which is how most feedback loops arrive), anything else → none.
  ``message`` is the original Message-ID (``mail.commonHeaders.messageId``, else the Message-ID
  among ``mail.headers``); ``id`` is ``ses:<feedbackId>:<recipient>``: SES's own id of the bounce
  or complaint, the same when SNS delivers the notification again and when one SES account
  publishes it through two routes (identity notifications and a configuration set's event
  destination); a notification without one falls back on the SNS ``MessageId``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from dripflow.delivery.providers import (
    CertificateUnavailable,
    NotProviderData,
    SignatureInvalid,
    address,
    message_id,
)

__all__ = [
    "SesNotification",
    "SnsEnvelope",
    "SnsVerifier",
    "check_sns_url",
    "fetch_over_https",
    "read_envelope",
    "ses_events",
    "signed_string",
]

SNS_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
_NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_SUBSCRIPTION_KEYS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
_SIGNED_KEYS = {
    "Notification": _NOTIFICATION_KEYS,
    "SubscriptionConfirmation": _SUBSCRIPTION_KEYS,
    "UnsubscribeConfirmation": _SUBSCRIPTION_KEYS,
}
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
_SNS_HOST = re.compile(r"sns\.[a-z]{2}(?:-[a-z]+)+-\d+\.amazonaws\.com(?:\.cn)?")
_MAX_CERTIFICATE_BYTES = 64 * 1024
_COMPLAINT_TYPES = frozenset({"abuse", "fraud"})  # and none given: see the module's docstring


# -- the envelope ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SnsEnvelope:
    """An SNS message as posted; ``fields`` holds its string values by key."""

    fields: dict[str, str]

    @property
    def type(self) -> str:
        return self.fields["Type"]

    @property
    def message_id(self) -> str:
        return self.fields["MessageId"]

    @property
    def topic_arn(self) -> str:
        return self.fields["TopicArn"]

    @property
    def message(self) -> str:
        return self.fields["Message"]

    @property
    def subscribe_url(self) -> str | None:
        return self.fields.get("SubscribeURL")


def read_envelope(raw: bytes) -> SnsEnvelope:
    """The SNS envelope of a request body; raises NotProviderData."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise NotProviderData("the body is not JSON: send the SNS message as SNS posts it") from None
    if not isinstance(data, dict):
        raise NotProviderData("the body is not an SNS message (a JSON object with Type, Message …)")
    kind = data.get("Type")
    if kind not in SNS_TYPES:
        raise NotProviderData(
            "not an SNS message: Type must be Notification, SubscriptionConfirmation or "
            "UnsubscribeConfirmation (is raw message delivery on? turn it off: the envelope carries "
            "the signature)"
        )
    missing = [key for key in ("Message", "MessageId", "TopicArn", "Timestamp") if not data.get(key)]
    if missing:
        raise NotProviderData(f"the SNS message has no {', '.join(missing)}")
    fields = {str(key): value for key, value in data.items() if isinstance(value, str)}
    wrong = [key for key in ("Message", "MessageId", "TopicArn", "Timestamp") if key not in fields]
    if wrong:
        raise NotProviderData(f"in the SNS message, {', '.join(wrong)} must be text")
    return SnsEnvelope(fields)


def signed_string(envelope: SnsEnvelope) -> bytes:
    """The canonical string SNS signs for the envelope's Type; raises SignatureInvalid when a key
    it signs is missing (``Subject`` is signed only when the notification has one)."""
    parts: list[str] = []
    for key in _SIGNED_KEYS[envelope.type]:
        value = envelope.fields.get(key)
        if value is None:
            if key == "Subject":
                continue
            raise SignatureInvalid(f"the SNS message has no {key}, which SNS signs")
        parts.append(f"{key}\n{value}\n")
    return "".join(parts).encode("utf-8")


def check_sns_url(url: str, *, certificate: bool) -> str:
    """``url`` if it is an HTTPS address on an SNS host (``sns.<region>.amazonaws.com``): the
    signing certificate's (a ``.pem`` file) or a subscription's; raises SignatureInvalid."""
    what = "SigningCertURL" if certificate else "SubscribeURL"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise SignatureInvalid(f"the {what} is not a web address") from None
    host = parts.hostname or ""
    if (
        parts.scheme != "https"
        or not _SNS_HOST.fullmatch(host)
        or parts.netloc.lower() not in (host, f"{host}:443")
        or port not in (None, 443)
        or parts.fragment
    ):
        raise SignatureInvalid(
            f"the {what} {url!r} is not on an Amazon SNS host (https://sns.<region>.amazonaws.com/)"
        )
    if certificate and (parts.query or not parts.path.endswith(".pem")):
        raise SignatureInvalid(f"the SigningCertURL {url!r} is not an SNS certificate (….pem)")
    return url


# -- the signature -----------------------------------------------------------------------------------


def fetch_over_https(url: str) -> bytes:
    """GET ``url`` with certificate verification and no redirects; raises CertificateUnavailable.
    The default certificate fetcher and subscription confirmer (tests inject their own)."""
    try:
        with httpx.Client(timeout=10, follow_redirects=False, verify=True) as client:
            response = client.get(url)
    except httpx.HTTPError as exc:
        raise CertificateUnavailable(f"GET {url} failed: {exc}") from None
    if response.status_code != 200:
        raise CertificateUnavailable(f"GET {url} answered {response.status_code}")
    if len(response.content) > _MAX_CERTIFICATE_BYTES:
        raise CertificateUnavailable(f"GET {url} answered more than {_MAX_CERTIFICATE_BYTES} bytes")
    return response.content


class SnsVerifier:
    """Checks SNS signatures; fetches each signing certificate once (``fetch``, injectable) and
    keeps the last ``cache_size`` of them. Safe to share between threads."""

    def __init__(self, fetch: Callable[[str], bytes] = fetch_over_https, cache_size: int = 16) -> None:
        self._fetch = fetch
        self._cache: OrderedDict[str, x509.Certificate] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def verify(self, envelope: SnsEnvelope, now: datetime) -> None:
        """Raises SignatureInvalid, or CertificateUnavailable when the certificate cannot be had."""
        version = envelope.fields.get("SignatureVersion")
        algorithm = _HASHES.get(version or "")
        if algorithm is None:
            raise SignatureInvalid(f"SignatureVersion {version!r} is not 1 or 2")
        url = check_sns_url(envelope.fields.get("SigningCertURL", ""), certificate=True)
        try:
            signature = base64.b64decode(envelope.fields.get("Signature", ""), validate=True)
        except (binascii.Error, ValueError):
            raise SignatureInvalid("the Signature is not base64") from None
        if not signature:
            raise SignatureInvalid("the SNS message is not signed")
        certificate = self._certificate(url)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise SignatureInvalid(f"the certificate at {url} is not valid at {now.isoformat()}")
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SignatureInvalid(f"the certificate at {url} does not hold an RSA key")
        try:
            key.verify(signature, signed_string(envelope), padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            raise SignatureInvalid("the signature does not match the message") from None

    def _certificate(self, url: str) -> x509.Certificate:
        with self._lock:
            found = self._cache.get(url)
            if found is not None:
                self._cache.move_to_end(url)
                return found
        pem = self._fetch(url)  # outside the lock: a slow fetch does not hold up cached ones
        try:
            certificate = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise SignatureInvalid(f"{url} does not hold a PEM certificate") from None
        with self._lock:
            self._cache[url] = certificate
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return certificate


# -- the SES notification ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SesNotification:
    """``kind``: the SES notification or event type (``Bounce``, ``Complaint``, ``Delivery`` …),
    or ``other`` for a message that is not from SES (a test message published by hand)."""

    kind: str
    events: list[dict[str, Any]]
    reason: str | None = None


def ses_events(envelope: SnsEnvelope) -> SesNotification:
    """The events of a (verified) ``Notification``."""
    try:
        body = json.loads(envelope.message)
    except ValueError:
        return SesNotification("other", [], "the SNS message is not an SES notification (not JSON)")
    if not isinstance(body, dict):
        return SesNotification("other", [], "the SNS message is not an SES notification")
    kind = body.get("notificationType") or body.get("eventType")
    if not isinstance(kind, str):
        return SesNotification("other", [], "the SNS message is not an SES notification")
    mail = _object(body.get("mail"))
    original = _original_message_id(mail)
    if kind == "Bounce":
        bounce = _object(body.get("bounce"))
        return SesNotification(kind, _bounces(bounce, original, _key(bounce, envelope)))
    if kind == "Complaint":
        complaint = _object(body.get("complaint"))
        events, reason = _complaints(complaint, original, _key(complaint, envelope))
        return SesNotification(kind, events, reason)
    return SesNotification(kind, [], f"an SES {kind} notification changes nothing")


def _key(detail: dict[str, Any], envelope: SnsEnvelope) -> str:
    """The idempotency key of a bounce or complaint (D3): SES's ``feedbackId``, else SNS's id."""
    feedback = detail.get("feedbackId")
    return feedback if isinstance(feedback, str) and feedback else envelope.message_id


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _original_message_id(mail: dict[str, Any]) -> str | None:
    found = message_id(_object(mail.get("commonHeaders")).get("messageId"))
    if found is not None:
        return found
    headers = mail.get("headers")
    for header in headers if isinstance(headers, list) else []:
        if isinstance(header, dict) and str(header.get("name", "")).lower() == "message-id":
            return message_id(header.get("value"))
    return None


def _event(
    event_type: str, contact: str, original: str | None, key: str, fields: dict[str, Any]
) -> dict[str, Any]:
    event: dict[str, Any] = {"type": event_type, "contact": contact}
    if original:
        event["message"] = original
    event.update(fields)
    event["provider"] = "ses"
    event["id"] = f"ses:{key}:{contact}"
    return event


def _bounces(bounce: dict[str, Any], original: str | None, key: str) -> list[dict[str, Any]]:
    bounce_type = str(bounce.get("bounceType") or "")
    kind = "hard" if bounce_type == "Permanent" else "soft"  # Transient, Undetermined: soft
    recipients = bounce.get("bouncedRecipients")
    events = []
    for recipient in recipients if isinstance(recipients, list) else []:
        contact = address(_object(recipient).get("emailAddress"))
        if contact is None:
            continue
        fields: dict[str, Any] = {"kind": kind}
        status = _object(recipient).get("status")
        if isinstance(status, str) and status.strip():
            fields["status"] = status.strip()
        diagnostic = _object(recipient).get("diagnosticCode")
        if isinstance(diagnostic, str) and diagnostic.strip():
            fields["diagnostic"] = " ".join(diagnostic.split())
        if bounce_type:
            fields["bounce_type"] = bounce_type
        subtype = bounce.get("bounceSubType")
        if isinstance(subtype, str) and subtype:
            fields["bounce_subtype"] = subtype
        events.append(_event("email.bounced", contact, original, key, fields))
    return events


def _complaints(
    complaint: dict[str, Any], original: str | None, key: str
) -> tuple[list[dict[str, Any]], str | None]:
    feedback = complaint.get("complaintFeedbackType")
    feedback = feedback.strip().lower() if isinstance(feedback, str) and feedback.strip() else None
    if feedback is not None and feedback not in _COMPLAINT_TYPES:
        return [], f"a complaint of feedback type {feedback!r} is not a spam complaint"
    fields: dict[str, Any] = {}
    if feedback is not None:
        fields["feedback_type"] = feedback
    agent = complaint.get("userAgent")
    if isinstance(agent, str) and agent.strip():
        fields["reporter"] = " ".join(agent.split())
    subtype = complaint.get("complaintSubType")
    if isinstance(subtype, str) and subtype:
        fields["complaint_subtype"] = subtype
    recipients = complaint.get("complainedRecipients")
    events = []
    for recipient in recipients if isinstance(recipients, list) else []:
        contact = address(_object(recipient).get("emailAddress"))
        if contact is not None:
            events.append(_event("email.complained", contact, original, key, dict(fields)))
    return events, None
