"""SendGrid's Event Webhook (SPEC D5, L1, L3, D3): a signed JSON array of events.

* :func:`verify_sendgrid` checks the Signed Event Webhook: an ECDSA P-256 / SHA-256 signature
  (``X-Twilio-Email-Event-Webhook-Signature``, base64 DER) over the timestamp header
  (``X-Twilio-Email-Event-Webhook-Timestamp``) followed by the raw body, with the verification
  key SendGrid shows (base64 DER SubjectPublicKeyInfo; PEM is accepted too). A timestamp more than
  ``MAX_AGE`` away from now is refused, so a captured request cannot be replayed later.
* :func:`sendgrid_events` maps the batch:

  ========================================================  ===========================================
  SendGrid event                                            dripflow event
  ========================================================  ===========================================
  ``bounce`` with ``type: bounce`` (or no type)             ``email.bounced`` ``kind: hard``
  ``bounce`` with ``type: blocked`` (or another type)       ``email.bounced`` ``kind: soft``
  ``dropped``, reason ``Bounced Address``                   ``email.bounced`` ``kind: hard``
  ``dropped``, reason ``Spam Reporting Address``            ``email.complained``
  ``spamreport``                                            ``email.complained``
  ``unsubscribe`` (SendGrid's own unsubscribe link)         ``unsubscribed`` ``scope: all`` (L3)
  ``group_unsubscribe`` / ``group_resubscribe``             none: SendGrid's groups are not our lists
  ``processed`` ``deferred`` ``delivered`` ``open`` …        none: our own tracking counts opens, clicks
  other ``dropped`` reasons (content, invalid header …)     none: not the recipient's doing
  ========================================================  ===========================================

  ``message`` is ``smtp-id`` (the Message-ID we sent), ``contact`` is ``email``, ``id`` is
  ``sendgrid:<sg_event_id>``.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from dripflow.delivery.providers import NotProviderData, SignatureInvalid, address, message_id

__all__ = [
    "MAX_AGE",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "SendgridBatch",
    "load_public_key",
    "sendgrid_events",
    "verify_sendgrid",
]

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_AGE = timedelta(minutes=10)

_HARD_DROPS = frozenset({"bounced address"})
_COMPLAINT_DROPS = frozenset({"spam reporting address"})


def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """SendGrid's verification key, base64 DER (as SendGrid shows it) or PEM; raises ValueError."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = load_pem_public_key(text.encode())
        else:
            key = load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, binascii.Error, UnsupportedAlgorithm):
        raise ValueError("not a public key in base64 DER (as SendGrid shows it) or PEM") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not an ECDSA P-256 public key, which SendGrid signs with")
    return key


def verify_sendgrid(
    key: ec.EllipticCurvePublicKey, signature: str | None, timestamp: str | None, body: bytes, now: datetime
) -> None:
    """Raises SignatureInvalid unless ``signature`` signs ``timestamp + body`` with ``key`` and
    ``timestamp`` (Unix seconds) is within ``MAX_AGE`` of ``now``."""
    if not signature or not timestamp:
        raise SignatureInvalid(f"the request is not signed: send {SIGNATURE_HEADER} and {TIMESTAMP_HEADER}")
    try:
        seconds = int(timestamp.strip())
        signed_at = datetime.fromtimestamp(seconds, now.tzinfo)
    except (ValueError, OverflowError, OSError):
        raise SignatureInvalid(f"{TIMESTAMP_HEADER} is not a Unix time in seconds") from None
    if abs(now - signed_at) > MAX_AGE:
        raise SignatureInvalid(
            f"the signature's timestamp is more than {int(MAX_AGE.total_seconds() // 60)} minutes from now"
        )
    try:
        der = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureInvalid(f"{SIGNATURE_HEADER} is not base64") from None
    try:
        key.verify(der, timestamp.strip().encode() + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureInvalid("the signature does not match the request") from None


@dataclass(frozen=True)
class SendgridBatch:
    """``received``: how many SendGrid events the batch held; ``events``: ours, from those that
    mean something to the engine."""

    received: int
    events: list[dict[str, Any]]


def sendgrid_events(raw: bytes) -> SendgridBatch:
    """The events of a batch; raises NotProviderData when the body is not a JSON array."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise NotProviderData("the body is not JSON: send the events as SendGrid posts them") from None
    if not isinstance(data, list):
        raise NotProviderData("the body is not a SendGrid event batch (a JSON array of events)")
    events = []
    for item in data:
        event = _event(item) if isinstance(item, dict) else None
        if event is not None:
            events.append(event)
    return SendgridBatch(len(data), events)


def _event(item: dict[str, Any]) -> dict[str, Any] | None:
    contact = address(item.get("email"))
    if contact is None:
        return None
    name = item.get("event")
    reason = _text(item.get("reason"))
    fields: dict[str, Any]
    if name == "bounce":
        bounce_type = _text(item.get("type")) or "bounce"
        fields = {"kind": "hard" if bounce_type == "bounce" else "soft", "bounce_type": bounce_type}
        event_type = "email.bounced"
        if _text(item.get("status")):
            fields["status"] = _text(item.get("status"))
        if reason:
            fields["diagnostic"] = reason
        classification = _text(item.get("bounce_classification"))
        if classification:
            fields["bounce_classification"] = classification
    elif name == "dropped" and reason.lower() in _HARD_DROPS:
        event_type, fields = "email.bounced", {"kind": "hard", "dropped": reason}
    elif name == "dropped" and reason.lower() in _COMPLAINT_DROPS:
        event_type, fields = "email.complained", {"dropped": reason}
    elif name == "spamreport":
        event_type, fields = "email.complained", {}
    elif name == "unsubscribe":
        event_type, fields = "unsubscribed", {"scope": "all"}
    else:
        return None
    event: dict[str, Any] = {"type": event_type, "contact": contact}
    original = message_id(item.get("smtp-id"))
    if original:
        event["message"] = original
    event.update(fields)
    event["provider"] = "sendgrid"
    key = _text(item.get("sg_event_id"))
    # Without SendGrid's event id (it always sends one), the event's own content identifies it.
    event["id"] = (
        f"sendgrid:{key}" if key else f"sendgrid:{name}:{original or '-'}:{contact}:{item.get('timestamp')}"
    )
    return event


def _text(value: object) -> str:
    return " ".join(value.split()) if isinstance(value, str) else ""
