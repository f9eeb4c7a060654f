"""`dripflow contacts clean-up` as a user runs it (SPEC L5), on SQLite and PostgreSQL.

L5: a clean-up removes blacklisted or long-inactive contacts on request, never a contact with a
purchase or a membership unless told so explicitly, and reports what it would do before doing it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from sqlalchemy import func, select, update

from dripflow.store.tables import AuditEntry, Contact, Enrollment, Event, Fact, Message
from tests.acceptance.conftest import Dripflow, assert_no_traceback, store, write

WORKSPACE = """\
workspace:
  id: tidy
  name: Tidy
  timezone: UTC
  base_url: https://mail.tidy.test
  physical_address: "1 Main St, Springfield"
mailboxes:
  - {id: ann, from: "Ann <ann@tidy.test>", default: true}
lists: [newsletter]
catalog:
  products: [course]
  memberships: {academy: [basic]}
  pages: [pricing]
templates:
  hello: {subject: "Hello", text: "Hi there"}
sequences:
  - id: drip
    kind: step
    status: active
    mailbox: ann
    steps:
      - {id: one, type: email, template: hello, after: {days: 30}}
"""

# Long ago (far more than 180 days before any day these tests run), then one visit now.
OLD, LATER = "2025-01-01T10:00:00Z", "2025-02-01T10:00:00Z"
EVENTS = "".join(
    json.dumps(event) + "\n"
    for event in [
        {"at": OLD, "type": "contact.created", "contact": "idle@x.test"},
        {"at": OLD, "type": "contact.created", "contact": "buyer@x.test"},
        {"at": LATER, "type": "product.purchased", "contact": "buyer@x.test", "product": "course"},
        {"at": OLD, "type": "contact.created", "contact": "member@x.test"},
        {"at": LATER, "type": "membership.granted", "contact": "member@x.test", "membership": "academy"},
        {"at": LATER, "type": "membership.revoked", "contact": "member@x.test", "membership": "academy"},
        {"at": OLD, "type": "contact.created", "contact": "visitor@x.test"},
        {"at": OLD, "type": "contact.created", "contact": "reader@x.test"},
        {"at": OLD, "type": "list.subscribed", "contact": "reader@x.test", "list": "newsletter"},
        {"at": OLD, "type": "admin.contact.blacklist", "contact": "trap@x.test", "reason": "spam trap"},
        {"at": OLD, "type": "admin.contact.blacklist", "contact": "badbuyer@x.test", "reason": "complaint"},
        {"at": LATER, "type": "product.purchased", "contact": "badbuyer@x.test", "product": "course"},
        {"type": "page.visited", "contact": "visitor@x.test", "page": "pricing"},  # now
    ]
)

EVERYONE = {
    "idle@x.test",
    "buyer@x.test",
    "member@x.test",
    "visitor@x.test",
    "reader@x.test",
    "trap@x.test",
    "badbuyer@x.test",
}


def _setup(dripflow: Dripflow, db_url: str, tmp_path: Path) -> None:
    assert dripflow("apply", write(tmp_path / "tidy.yaml", WORKSPACE), "--database", db_url).code == 0
    ingested = dripflow("events", "ingest", write(tmp_path / "events.jsonl", EVENTS), "--database", db_url)
    assert ingested.code == 0, ingested.output


def _emails(db_url: str) -> set[str]:
    with store(db_url) as session:
        return set(session.scalars(select(Contact.email)))


def test_l5_reports_what_it_would_delete_and_deletes_nothing(
    dripflow: Dripflow, db_url: str, tmp_path: Path
) -> None:
    """Without --apply: the plan, counted by why, with the protected ones named; nothing changes."""
    _setup(dripflow, db_url, tmp_path)
    review = tmp_path / "review.csv"
    result = dripflow(
        "contacts",
        "clean-up",
        "--blacklisted",
        "--inactive-for",
        "180d",
        "--review",
        review,
        "--database",
        db_url,
    )
    assert result.code == 0, result.output
    lines = result.lines("out")
    assert lines[0].startswith("clean-up of workspace tidy: blacklisted contacts and inactive contacts")
    assert lines[1:6] == [
        "  to delete: 2",
        "    1 blacklisted: spam trap",
        "    1 inactive",
        "  kept: 1 with a membership (L5; --include-members deletes them too)",
        "  kept: 2 with a purchase (L5; --include-buyers deletes them too)",
    ]
    assert lines[-1] == "nothing was deleted; run again with --apply to delete them"
    assert _emails(db_url) == EVERYONE
    with review.open(encoding="utf-8", newline="") as f:
        rows = {row["email"]: (row["verdict"], row["why"]) for row in csv.DictReader(f)}
    assert rows == {
        "idle@x.test": ("delete", "inactive"),
        "buyer@x.test": ("keep", "inactive, kept: purchase"),
        "member@x.test": ("keep", "inactive, kept: membership"),
        "trap@x.test": ("delete", "blacklisted"),
        "badbuyer@x.test": ("keep", "blacklisted, kept: purchase"),
    }


def test_l5_apply_deletes_the_targets_only_and_audits_each(
    dripflow: Dripflow, db_url: str, tmp_path: Path
) -> None:
    """--apply prints the same plan, then deletes: buyers, members, contacts on a list and contacts
    active lately stay; each deletion is audited; the event log keeps the history."""
    _setup(dripflow, db_url, tmp_path)
    with store(db_url) as session:
        events_before = session.scalar(select(func.count()).select_from(Event))
    result = dripflow(
        "contacts", "clean-up", "--blacklisted", "--inactive-for", "180d", "--apply", "--database", db_url
    )
    assert result.code == 0, result.output
    assert "  to delete: 2" in result.lines("out")
    assert result.lines("out")[-1] == "deleted 2 contact(s)"
    assert _emails(db_url) == EVERYONE - {"idle@x.test", "trap@x.test"}
    with store(db_url) as session:
        audit = {
            (entry.actor, entry.detail["email"], entry.detail["clean_up"])
            for entry in session.scalars(select(AuditEntry).where(AuditEntry.action == "contact.deleted"))
        }
        assert audit == {
            ("cli:clean-up", "idle@x.test", "inactive"),
            ("cli:clean-up", "trap@x.test", "blacklisted: spam trap"),
        }
        assert session.scalar(select(func.count()).select_from(Event)) == events_before
    again = dripflow("contacts", "clean-up", "--blacklisted", "--inactive-for", "180d", "--database", db_url)
    assert "  to delete: 0" in again.lines("out")


def test_l5_buyers_and_members_go_only_when_told_explicitly(
    dripflow: Dripflow, db_url: str, tmp_path: Path
) -> None:
    _setup(dripflow, db_url, tmp_path)
    buyers = dripflow(
        "contacts", "clean-up", "--inactive-for", "180d", "--include-buyers", "--apply", "--database", db_url
    )
    assert buyers.code == 0, buyers.output
    assert _emails(db_url) == EVERYONE - {"idle@x.test", "buyer@x.test"}
    members = dripflow(
        "contacts", "clean-up", "--inactive-for", "180d", "--include-members", "--apply", "--database", db_url
    )
    assert members.code == 0, members.output
    assert _emails(db_url) == EVERYONE - {"idle@x.test", "buyer@x.test", "member@x.test"}
    with store(db_url) as session:  # their facts went with them
        assert (
            session.scalar(select(func.count()).select_from(Fact).where(Fact.kind == "membership.granted"))
            == 0
        )
    blacklisted = dripflow(
        "contacts", "clean-up", "--blacklisted", "--include-buyers", "--apply", "--database", db_url
    )
    assert blacklisted.code == 0, blacklisted.output
    assert _emails(db_url) == {"visitor@x.test", "reader@x.test"}


def test_l5_a_target_still_in_a_sequence_has_its_enrollment_and_messages_canceled(
    dripflow: Dripflow, db_url: str, tmp_path: Path
) -> None:
    """A blacklisted contact whose enrollment is somehow still open (L2 normally closes it) is
    deleted as by hand: the enrollment is canceled `contact_deleted` and its queued message too."""
    _setup(dripflow, db_url, tmp_path)
    enroll = '{"type": "admin.enroll", "contact": "late@x.test", "sequence": "drip"}\n'
    assert (
        dripflow("events", "ingest", write(tmp_path / "enroll.jsonl", enroll), "--database", db_url).code == 0
    )
    with store(db_url) as session:
        trap = session.scalars(select(Contact).where(Contact.email == "late@x.test")).one()
        session.execute(update(Contact).where(Contact.id == trap.id).values(lead_status="blacklisted"))
        enrollment = session.scalars(select(Enrollment).where(Enrollment.contact_id == trap.id)).one()
        enrollment_id, status = enrollment.id, enrollment.status
        session.add(
            Message(
                workspace_id="tidy",
                contact_id=trap.id,
                key="test:queued",
                channel="email",
                status="queued",
                recipient="late@x.test",
                template="hello",
                body_text="hi",
                message_id="<queued@tidy.test>",
                created_at=trap.created_at,
            )
        )
    assert status == "active"
    result = dripflow("contacts", "clean-up", "--blacklisted", "--apply", "--database", db_url)
    assert result.code == 0, result.output
    assert _emails(db_url) == EVERYONE - {"trap@x.test"}
    with store(db_url) as session:
        assert session.get(Enrollment, enrollment_id) is None  # gone with the contact (cascade)
        message = session.scalars(select(Message).where(Message.key == "test:queued")).one()
        assert (message.status, message.last_error) == ("canceled", "the contact was deleted")
        audit = session.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "contact.deleted", AuditEntry.target == f"contact:{trap.id}"
            )
        ).one()
        assert audit.detail["canceled_enrollments"] == ["drip"]


def test_l5_says_what_is_missing_and_never_guesses(dripflow: Dripflow, db_url: str, tmp_path: Path) -> None:
    _setup(dripflow, db_url, tmp_path)
    nothing = dripflow("contacts", "clean-up", "--apply", "--database", db_url)
    assert nothing.code != 0
    assert "say what to clean up: --blacklisted, --inactive-for DURATION" in nothing.err
    bad = dripflow("contacts", "clean-up", "--inactive-for", "six months", "--apply", "--database", db_url)
    assert bad.code != 0
    assert "--inactive-for: " in bad.err
    for result in (nothing, bad):
        assert_no_traceback(result)
    assert _emails(db_url) == EVERYONE


def test_l5_a_deleted_blacklisting_or_unsubscribe_comes_back_with_the_address(
    dripflow: Dripflow, db_url: str, tmp_path: Path
) -> None:
    """Deleting must not make a spam trap or an unsubscriber mailable again (L2, L3): the address
    returning by an event or an import starts as it was left; a clean address starts clean."""
    _setup(dripflow, db_url, tmp_path)
    leave = '{"at": "2025-01-03T10:00:00Z", "type": "unsubscribed", "contact": "idle@x.test"}\n'
    assert (
        dripflow("events", "ingest", write(tmp_path / "leave.jsonl", leave), "--database", db_url).code == 0
    )
    plan = dripflow("contacts", "clean-up", "--blacklisted", "--inactive-for", "180d", "--database", db_url)
    assert (
        "  2 of them blacklisted or unsubscribed: their addresses stay suppressed, so if one comes back "
        "(an import, a form) it is blacklisted or unsubscribed again"
    ) in plan.lines("out")
    applied = dripflow(
        "contacts", "clean-up", "--blacklisted", "--inactive-for", "180d", "--apply", "--database", db_url
    )
    assert applied.lines("out")[-1] == "deleted 2 contact(s)"
    assert _emails(db_url) == EVERYONE - {"idle@x.test", "trap@x.test"}

    back = '{"type": "list.subscribed", "contact": "trap@x.test", "list": "newsletter"}\n'
    assert dripflow("events", "ingest", write(tmp_path / "back.jsonl", back), "--database", db_url).code == 0
    csv_file = write(tmp_path / "old.csv", "email,first_name\nidle@x.test,Idle\nnew@x.test,New\n")
    assert dripflow("contacts", "import", csv_file, "--list", "newsletter", "--database", db_url).code == 0
    with store(db_url) as session:
        rows = {
            row.email: (row.lead_status, row.lead_status_reason, row.unsubscribed_at is not None)
            for row in session.scalars(select(Contact))
        }
    assert rows["trap@x.test"] == ("blacklisted", "spam trap", False)
    assert rows["idle@x.test"] == ("active", None, True)  # on the list again, but unsubscribed (L3)
    assert rows["new@x.test"] == ("active", None, False)
    explained = dripflow("explain", "trap@x.test", "--database", db_url)
    assert "The contact was created blacklisted, as its address was when a contact with it was deleted" in (
        explained.out
    )
