"""Bounce (RFC 3464 DSN) and complaint (RFC 5965 ARF) reports, parsed into X2 events (SPEC D5).

Pure functions from the raw bytes of a report to ``email.bounced`` / ``email.complained`` events
that :func:`dripflow.engine.ingest.ingest` applies like any other event. Each event carries:

* ``message``: the original ``Message-ID`` (from the attached original message or its headers),
  which ties the event to the outbox row, its sequence and step (X2);
* ``contact``: the address the message was sent to, when the report says so (ISP feedback loops
  often redact it: then only ``message`` is there, and the caller looks the contact up by it);
* ``id``: derived from the report's content, so a report processed twice is applied once (D3).

Bounces: only recipients whose ``Action`` is ``failed`` count; ``delayed`` is a progress note, not
a bounce. ``Status`` 5.x.x is ``hard`` and 4.x.x ``soft`` (RFC 3463); without a ``Status`` the
class of the SMTP code in ``Diagnostic-Code`` decides. Complaints: ``Feedback-Type`` ``abuse`` or
``fraud``; ``not-spam``, ``virus``, ``auth-failure`` and the rest are not complaints.
"""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from email.message import Message as MimeMessage
from email.parser import HeaderParser
from email.utils import getaddresses
from typing import Any

__all__ = ["NotAReport", "parse_arf", "parse_dsn", "parse_report"]

_STATUS = re.compile(r"\b([245])\.\d{1,3}\.\d{1,3}\b")
_SMTP_CODE = re.compile(r"\b([245])\d\d\b")
_COMPLAINT_TYPES = frozenset({"abuse", "fraud"})


class NotAReport(ValueError):
    """The message is not a delivery-status or feedback report this module understands."""


def parse_report(raw: bytes) -> list[dict[str, Any]]:
    """Events from a DSN or an ARF report, told apart by ``report-type``; raises NotAReport."""
    msg = _parse(raw)
    kind = _report_type(msg)
    if kind == "delivery-status":
        return _dsn_events(msg)
    if kind == "feedback-report":
        return _arf_events(msg)
    raise NotAReport("not a multipart/report with report-type delivery-status or feedback-report")


def parse_dsn(raw: bytes) -> list[dict[str, Any]]:
    """``email.bounced`` events, one per failed recipient of an RFC 3464 delivery status report."""
    msg = _parse(raw)
    if _report_type(msg) != "delivery-status":
        raise NotAReport("not a delivery status notification (multipart/report; report-type=delivery-status)")
    return _dsn_events(msg)


def parse_arf(raw: bytes) -> list[dict[str, Any]]:
    """``email.complained`` events from an RFC 5965 abuse report (none for ``not-spam`` and kin)."""
    msg = _parse(raw)
    if _report_type(msg) != "feedback-report":
        raise NotAReport("not an abuse report (multipart/report; report-type=feedback-report)")
    return _arf_events(msg)


# -- parsing -----------------------------------------------------------------------------------------


def _parse(raw: bytes) -> MimeMessage:
    return message_from_bytes(raw, policy=policy.compat32)


def _report_type(msg: MimeMessage) -> str | None:
    if msg.get_content_type() != "multipart/report":
        return None
    value = msg.get_param("report-type")
    return value.lower() if isinstance(value, str) else None


def _parts(msg: MimeMessage) -> list[MimeMessage]:
    payload = msg.get_payload()
    return [part for part in payload if isinstance(part, MimeMessage)] if isinstance(payload, list) else []


def _field_blocks(part: MimeMessage) -> list[MimeMessage]:
    """The header blocks of a message/delivery-status or message/feedback-report part.

    The stdlib parses message/delivery-status into one sub-message per block; message/feedback-
    report (and a delivery-status some MTA sent as text) arrives as text, parsed here."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, MimeMessage)]
    text = part.get_payload(decode=True)
    body = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(payload)
    blocks = re.split(r"\r?\n\s*\r?\n", body.strip())
    return [HeaderParser().parsestr(block.strip() + "\n") for block in blocks if block.strip()]


def _original_headers(msg: MimeMessage) -> MimeMessage | None:
    """The original message's headers: a message/rfc822 part, or text/rfc822-headers."""
    for part in _parts(msg):
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], MimeMessage):
                return inner[0]
            if isinstance(inner, str):
                return HeaderParser().parsestr(inner)
        if kind in ("text/rfc822-headers", "text/global-headers"):
            data = part.get_payload(decode=True)
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(part.get_payload())
            return HeaderParser().parsestr(text)
    return None


def _address(value: str | None) -> str | None:
    """``rfc822; Bob@Example.test`` or ``<bob@example.test>`` → ``bob@example.test``."""
    if not value:
        return None
    value = " ".join(str(value).split())
    if ";" in value:
        value = value.split(";", 1)[1]
    found = [addr for _, addr in getaddresses([value]) if "@" in addr]
    return found[0].strip().lower() if len(found) == 1 else None


def _message_id(original: MimeMessage | None) -> str | None:
    if original is None:
        return None
    value = original.get("Message-ID")
    if not value:
        return None
    found = re.search(r"<[^<>\s]+>", " ".join(str(value).split()))
    return found.group(0) if found else None


def _single_to(original: MimeMessage | None) -> str | None:
    if original is None:
        return None
    found = [addr for _, addr in getaddresses(original.get_all("To", [])) if "@" in addr]
    return found[0].lower() if len(found) == 1 else None


def _event(
    event_type: str, contact: str | None, message: str | None, key: str, fields: dict[str, Any]
) -> dict[str, Any]:
    event: dict[str, Any] = {"type": event_type}
    if contact:
        event["contact"] = contact
    if message:
        event["message"] = message
    event.update(fields)
    event["id"] = f"{key}:{message or '-'}:{contact or '-'}"
    return event


# -- DSN ---------------------------------------------------------------------------------------------


def _dsn_events(msg: MimeMessage) -> list[dict[str, Any]]:
    status_part = next((p for p in _parts(msg) if p.get_content_type() == "message/delivery-status"), None)
    if status_part is None:
        raise NotAReport("the delivery status report has no message/delivery-status part")
    blocks = _field_blocks(status_part)
    recipients = [
        block for block in blocks[1:] if block.get("Final-Recipient") or block.get("Original-Recipient")
    ]
    original = _original_headers(msg)
    message_id = _message_id(original)
    failed = [block for block in recipients if str(block.get("Action", "")).strip().lower() == "failed"]
    to = _single_to(original) if len(failed) == 1 else None
    events = []
    for block in failed:
        status = str(block.get("Status", "")).strip()
        diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
        kind = _bounce_kind(status, diagnostic)
        contact = to or _address(block.get("Original-Recipient")) or _address(block.get("Final-Recipient"))
        fields: dict[str, Any] = {"kind": kind}
        if status:
            fields["status"] = status
        if diagnostic:
            fields["diagnostic"] = diagnostic
        events.append(_event("email.bounced", contact, message_id, "dsn", fields))
    return events


def _bounce_kind(status: str, diagnostic: str) -> str:
    """5.x.x: hard; 4.x.x: soft (RFC 3463). Without a Status, the SMTP reply code decides; a failure
    that says nothing about its class counts as hard, as the MTA itself gave up on the address."""
    found = _STATUS.search(status) or _STATUS.search(diagnostic) or _SMTP_CODE.search(diagnostic)
    if found is not None and found.group(1) == "4":
        return "soft"
    return "hard"


# -- ARF ---------------------------------------------------------------------------------------------


def _arf_events(msg: MimeMessage) -> list[dict[str, Any]]:
    report = next((p for p in _parts(msg) if p.get_content_type() == "message/feedback-report"), None)
    if report is None:
        raise NotAReport("the feedback report has no message/feedback-report part")
    blocks = _field_blocks(report)
    fields = blocks[0] if blocks else MimeMessage()
    feedback = str(fields.get("Feedback-Type", "")).strip().lower()
    if feedback not in _COMPLAINT_TYPES:
        return []
    original = _original_headers(msg)
    contact = _address(fields.get("Original-Rcpt-To")) or _single_to(original)
    extra: dict[str, Any] = {"feedback_type": feedback}
    agent = fields.get("User-Agent")
    if agent:
        extra["reporter"] = " ".join(str(agent).split())
    return [_event("email.complained", contact, _message_id(original), "arf", extra)]
