"""Bounce and complaint reports in (SPEC D5, L1, L2): `dripflow inbound` applies a raw DSN or ARF
to the contact whose message it names; the same report twice changes nothing more (D3)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from dripflow.core.clock import VirtualClock
from dripflow.core.errors import UserError
from dripflow.core.validate import load_workspace_text
from dripflow.delivery.reports import ReportFile, ingest_reports
from dripflow.engine.eventfile import InputEvent
from dripflow.engine.ingest_file import ingest_events
from dripflow.engine.worker import run_worker
from dripflow.store.database import transaction
from dripflow.store.tables import Contact, Enrollment, Message
from dripflow.store.workspaces import apply_workspace
from tests.unit.test_inbound import ARF_REDACTED, ORIGINAL_ID, POSTFIX_HARD

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WORKSPACE = """\
workspace: {id: shop, name: Shop, timezone: UTC, default_send_time: "10:00", physical_address: "1 Main St"}
mailboxes:
  - {id: ann, from: "Ann <ann@shop.test>", default: true}
templates:
  hello: {subject: "Hello", text: "Hi"}
sequences:
  - id: drip
    steps:
      - {id: one, type: email, template: hello}
      - {id: two, type: email, template: hello, after: {days: 1}}
"""


def _sent(engine: Engine, email: str) -> str:
    """Enroll `email`, run the first step, and return its message's Message-ID."""
    with transaction(engine) as session:
        apply_workspace(session, load_workspace_text(WORKSPACE, "shop.yaml"), now=NOW, actor="test")
    event = {"type": "admin.enroll", "contact": email, "sequence": "drip"}
    ingest_events(engine, "shop", [InputEvent(1, NOW, event)], Path("e.jsonl"))
    run_worker(engine, VirtualClock(NOW), until_idle=True)
    with transaction(engine) as session:
        return str(session.scalar(select(Message.message_id)))


def _report(raw: bytes, message_id: str) -> ReportFile:
    return ReportFile("report.eml", raw.replace(ORIGINAL_ID.encode(), message_id.encode()))


def test_d5_a_hard_bounce_report_blacklists_the_messages_contact(engine: Engine) -> None:
    """The DSN names bob@example.test but the message was dee's: the message decides whose it is."""
    message_id = _sent(engine, "dee@x.test")
    report = ingest_reports(engine, "shop", [_report(POSTFIX_HARD, message_id)], NOW)
    assert (report.applied, report.duplicates) == (1, 0)
    again = ingest_reports(engine, "shop", [_report(POSTFIX_HARD, message_id)], NOW)
    assert (again.applied, again.duplicates) == (0, 1)
    with transaction(engine) as session:
        contact = session.scalars(select(Contact)).one()
        assert (contact.email, contact.lead_status, contact.lead_status_reason) == (
            "dee@x.test",
            "blacklisted",
            "hard_bounce",
        )
        enrollment = session.scalars(select(Enrollment)).one()
        assert (enrollment.status, enrollment.reason) == ("bounced", "hard_bounce")
        assert session.scalar(select(Contact).where(Contact.email == "bob@example.test")) is None


def test_l2_a_redacted_complaint_is_matched_by_its_message(engine: Engine) -> None:
    message_id = _sent(engine, "eve@x.test")
    ingest_reports(engine, "shop", [_report(ARF_REDACTED, message_id)], NOW)
    with transaction(engine) as session:
        enrollment = session.scalars(select(Enrollment)).one()
        assert (enrollment.status, enrollment.reason) == ("canceled", "complaint")


def test_a_report_about_an_unknown_message_applies_nothing(engine: Engine) -> None:
    _sent(engine, "fay@x.test")
    good = _report(POSTFIX_HARD, ORIGINAL_ID)  # a Message-ID this workspace never sent
    with pytest.raises(UserError) as refused:
        ingest_reports(engine, "shop", [good, ReportFile("note.eml", b"Subject: hi\r\n\r\nhello")], NOW)
    assert "report.eml: no message" in str(refused.value)
    assert "note.eml: not a multipart/report" in str(refused.value)
    with transaction(engine) as session:
        assert session.scalars(select(Contact.lead_status)).one() == "active"
