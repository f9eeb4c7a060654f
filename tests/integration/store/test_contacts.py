"""ContactRepo: identity by normalised email, workspace isolation, lists, tags, lead status, bulk import."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dripflow.core.clock import VirtualClock
from dripflow.store.contacts import ContactConflict, ContactData, ContactNotFound, ContactRepo
from dripflow.store.database import session_factory
from dripflow.store.events import AuditLog, EventLog
from dripflow.store.tables import Contact, ContactList, ContactTag, Event, Fact

from .conftest import T0

pytestmark = pytest.mark.usefixtures("workspaces")


def repo(session: Session, workspace_id: str = "acme") -> ContactRepo:
    return ContactRepo(session, workspace_id, clock=VirtualClock(T0))


# -- identity ----------------------------------------------------------------------------------------


def test_email_is_stored_normalised_and_identifies_the_contact(session: Session) -> None:
    """Whole address stripped and lower-cased: a form's Ann@ and an import's ann@ are one contact."""
    contacts = repo(session)
    ann, created = contacts.upsert(ContactData(email="  Ann.Lee@Example.TEST ", first_name="Ann"))
    assert created
    assert ann.email == "ann.lee@example.test"

    again, created = contacts.upsert(ContactData(email="ANN.LEE@example.test", last_name="Lee"))
    assert not created
    assert again.id == ann.id
    assert contacts.count() == 1
    assert contacts.get("Ann.Lee@EXAMPLE.test") is ann


def test_get_accepts_an_id_a_digit_string_or_an_email(session: Session) -> None:
    """SPEC §10: `contact` in /v1/contacts/{contact} is an email or an id."""
    contacts = repo(session)
    ann, _ = contacts.upsert(ContactData(email="ann@example.test"))
    assert contacts.get(ann.id) is ann
    assert contacts.get(str(ann.id)) is ann
    assert contacts.get(f" {ann.id} ") is ann
    assert contacts.get("ann@example.test") is ann
    assert contacts.get(ann.id + 1) is None
    assert contacts.get("nobody@example.test") is None
    assert contacts.get("") is None


def test_the_same_email_in_two_workspaces_is_two_contacts(session: Session) -> None:
    """SPEC §1 workspace: data never crosses workspaces."""
    acme, globex = repo(session, "acme"), repo(session, "globex")
    a, a_created = acme.upsert(ContactData(email="ann@example.test", first_name="Ann A"))
    b, b_created = globex.upsert(ContactData(email="ann@example.test", first_name="Ann G"))
    assert a_created and b_created
    assert a.id != b.id
    assert acme.get("ann@example.test") is a
    assert globex.get("ann@example.test") is b
    assert (a.first_name, b.first_name) == ("Ann A", "Ann G")


def test_a_workspace_never_sees_or_touches_another_workspaces_contact(session: Session) -> None:
    """SPEC §1 workspace: data never crosses workspaces — reads, writes and bulk lookups alike."""
    acme, globex = repo(session, "acme"), repo(session, "globex")
    theirs, _ = globex.upsert(ContactData(email="bob@globex.test"))
    assert acme.get(theirs.id) is None
    assert acme.get(str(theirs.id)) is None
    assert acme.get("bob@globex.test") is None
    assert acme.ids_by_email(["bob@globex.test"]) == {}
    assert acme.count() == 0
    with pytest.raises(ContactNotFound):
        acme.upsert(ContactData(first_name="Mallory"), contact_id=theirs.id)
    with pytest.raises(ContactNotFound):
        acme.add_tag(theirs, "vip")
    with pytest.raises(ContactNotFound):
        acme.subscribe(theirs, "newsletter")
    with pytest.raises(ContactNotFound):
        acme.delete(theirs)
    assert theirs.first_name is None
    assert globex.tags(theirs) == []


def test_the_database_refuses_rows_that_cross_workspaces(session: Session) -> None:
    """SPEC §1 workspace: a tag row claiming acme cannot point at a globex contact."""
    theirs, _ = repo(session, "globex").upsert(ContactData(email="bob@globex.test"))
    session.add(ContactTag(workspace_id="acme", contact_id=theirs.id, tag="vip", assigned_at=T0))
    with pytest.raises(IntegrityError):
        session.flush()


def test_ids_are_never_reused(session: Session) -> None:
    """Deterministic ids for simulation: the same history gives the same ids on both databases."""
    contacts = repo(session)
    made = [contacts.upsert(ContactData(email=f"c{i}@example.test"))[0] for i in range(3)]
    first_id = made[0].id
    contacts.delete(made[2])
    session.commit()
    later, _ = contacts.upsert(ContactData(email="c3@example.test"))
    assert later.id == first_id + 3


def test_concurrent_creates_of_one_email_make_one_contact(engine: Engine) -> None:
    """Two requests for a new address at once: one creates, the other waits and updates it."""
    factory = session_factory(engine)
    outcome: dict[str, tuple[int, bool]] = {}
    errors: list[BaseException] = []
    with factory() as first:
        ann, created = repo(first).upsert(ContactData(email="ann@example.test", first_name="Ann"))
        outcome["first"] = (ann.id, created)

        def second_request() -> None:
            try:
                with factory() as second, second.begin():
                    other, other_created = repo(second).upsert(
                        ContactData(email="ANN@example.test", last_name="Lee")
                    )
                    outcome["second"] = (other.id, other_created)
            except BaseException as exc:  # reported in the main thread
                errors.append(exc)

        thread = threading.Thread(target=second_request)
        thread.start()
        thread.join(timeout=0.5)
        first.commit()
        thread.join(timeout=30)
    assert not errors
    assert outcome["second"] == (outcome["first"][0], False)
    with factory() as session:
        [contact] = session.scalars(select(Contact)).all()
        assert (contact.first_name, contact.last_name) == ("Ann", "Lee")


# -- create/update semantics -------------------------------------------------------------------------


def test_none_leaves_fields_unchanged(session: Session) -> None:
    contacts = repo(session)
    full = ContactData(
        email="ann@example.test",
        phone="+15550100",
        first_name="Ann",
        last_name="Lee",
        timezone="Europe/Paris",
        source="webinar",
        owner="ann-owner",
        address={"line1": "1 Main St", "city": "Springfield", "country": "US"},
        fields={"plan": "pro", "company": "Acme"},
    )
    ann, _ = contacts.upsert(full, at=T0)
    later = T0 + timedelta(hours=1)
    same, created = contacts.upsert(ContactData(email="ann@example.test", first_name="Annie"), at=later)
    assert not created and same is ann
    assert ann.first_name == "Annie"
    assert (ann.phone, ann.last_name, ann.timezone, ann.source, ann.owner) == (
        "+15550100",
        "Lee",
        "Europe/Paris",
        "webinar",
        "ann-owner",
    )
    assert ann.address == {"line1": "1 Main St", "city": "Springfield", "country": "US"}
    assert ann.fields == {"plan": "pro", "company": "Acme"}
    assert (ann.created_at, ann.updated_at) == (T0, later)


def test_an_update_that_changes_nothing_keeps_updated_at(session: Session) -> None:
    contacts = repo(session)
    ann, _ = contacts.upsert(ContactData(email="ann@example.test", first_name="Ann"), at=T0)
    contacts.upsert(ContactData(email="ann@example.test", first_name="Ann"), at=T0 + timedelta(days=1))
    assert ann.updated_at == T0


def test_custom_fields_merge_and_address_replaces(session: Session) -> None:
    contacts = repo(session)
    ann, _ = contacts.upsert(
        ContactData(
            email="ann@example.test", fields={"plan": "pro", "company": "Acme"}, address={"city": "Paris"}
        )
    )
    contacts.upsert(
        ContactData(
            email="ann@example.test",
            fields={"plan": "basic", "company": None, "seats": 3},
            address={"city": "Lyon"},
        )
    )
    session.commit()
    session.expire_all()
    assert ann.fields == {"plan": "basic", "seats": 3}
    assert ann.address == {"city": "Lyon"}
    with pytest.raises(ValueError, match="unknown address keys"):
        contacts.upsert(ContactData(email="ann@example.test", address={"street": "1 Main St"}))


def test_update_by_id_can_change_the_email(session: Session) -> None:
    """SPEC L4: fixing a typo'd address keeps the contact (and so its history)."""
    contacts = repo(session)
    ann, _ = contacts.upsert(ContactData(email="ann@gmali.com", email_suggestion="ann@gmail.com"))
    assert (ann.email, ann.email_suggestion) == ("ann@gmali.com", "ann@gmail.com")
    fixed, created = contacts.upsert(ContactData(email="Ann@Gmail.com"), contact_id=ann.id)
    assert not created and fixed is ann
    assert (fixed.email, fixed.email_suggestion) == ("ann@gmail.com", None)


def test_an_email_cannot_be_taken_from_another_contact(session: Session) -> None:
    contacts = repo(session)
    contacts.upsert(ContactData(email="ann@example.test"))
    bob, _ = contacts.upsert(ContactData(email="bob@example.test"))
    with pytest.raises(ContactConflict):
        contacts.upsert(ContactData(email="ANN@example.test"), contact_id=bob.id)
    assert bob.email == "bob@example.test"


def test_contacts_without_email_are_created_each_time(session: Session) -> None:
    contacts = repo(session)
    one, created_one = contacts.upsert(ContactData(phone="+15550100"))
    two, created_two = contacts.upsert(ContactData(phone="+15550100"))
    assert created_one and created_two and one.id != two.id
    assert (one.email, one.lead_status, one.score, one.fields) == (None, "inactive", 0, {})


def test_an_empty_email_is_refused(session: Session) -> None:
    with pytest.raises(ValueError, match="empty"):
        repo(session).upsert(ContactData(email="   "))


def test_unknown_id_is_reported(session: Session) -> None:
    with pytest.raises(ContactNotFound):
        repo(session).upsert(ContactData(first_name="X"), contact_id=999_999)


# -- lists and tags ----------------------------------------------------------------------------------


def test_unsubscribing_keeps_the_row_and_resubscribing_clears_it(session: Session) -> None:
    """SPEC L3: leaving a list is remembered (unsubscribed_at), not forgotten."""
    contacts = repo(session)
    ann, _ = contacts.upsert(ContactData(email="ann@example.test"))
    t1, t2, t3 = T0 + timedelta(days=1), T0 + timedelta(days=2), T0 + timedelta(days=3)

    assert contacts.subscribe(ann, "newsletter", t1) is True
    assert contacts.subscribe(ann, "newsletter", t2) is False  # already on it: nothing changes
    assert contacts.lists(ann) == ["newsletter"]

    assert contacts.unsubscribe(ann, "newsletter", t2) is True
    assert contacts.unsubscribe(ann, "newsletter", t3) is False
    assert contacts.unsubscribe(ann, "customers", t3) is False  # never on it
    assert contacts.lists(ann) == []
    [row] = contacts.subscriptions(ann)
    assert (row.list, row.subscribed_at, row.unsubscribed_at) == ("newsletter", t1, t2)

    assert contacts.subscribe(ann, "newsletter", t3) is True
    [row] = contacts.subscriptions(ann)
    assert (row.subscribed_at, row.unsubscribed_at) == (t3, None)
    assert contacts.lists(ann) == ["newsletter"]


def test_adding_a_tag_twice_changes_nothing_the_second_time(session: Session) -> None:
    """SPEC A1 needs to know whether an action changed anything."""
    contacts = repo(session)
    ann, _ = contacts.upsert(ContactData(email="ann@example.test"))
    assert contacts.add_tag(ann, "vip") is True
    assert contacts.add_tag(ann, "vip") is False
    assert contacts.add_tag(ann, "customer") is True
    assert contacts.tags(ann) == ["customer", "vip"]
    assert contacts.remove_tag(ann, "vip") is True
    assert contacts.remove_tag(ann, "vip") is False
    assert contacts.tags(ann) == ["customer"]


def test_deleting_a_contact_removes_its_rows_but_not_the_event_log(session: Session) -> None:
    contacts = repo(session)
    ann, _ = contacts.upsert(ContactData(email="ann@example.test"))
    contacts.subscribe(ann, "newsletter")
    contacts.add_tag(ann, "vip")
    session.add(
        Fact(workspace_id="acme", contact_id=ann.id, kind="purchase", key="course-101", detail={}, at=T0)
    )
    EventLog(session, "acme").append("contact.created", {}, ann.id, T0, T0)
    session.commit()

    contacts.delete(ann)
    session.commit()
    for model in (ContactList, ContactTag, Fact):
        assert session.scalar(select(func.count()).select_from(model)) == 0
    assert session.scalar(select(func.count()).select_from(Event)) == 1
    assert contacts.get("ann@example.test") is None


# -- lead status -------------------------------------------------------------------------------------


def test_lead_status_changes_are_audited(session: Session) -> None:
    """SPEC L1/L2: blacklisting and lifting it are recorded with actor and reason."""
    contacts = repo(session)
    ann, _ = contacts.upsert(ContactData(email="ann@example.test"))
    assert ann.lead_status == "inactive"

    assert contacts.set_lead_status(ann, "blacklisted", "hard_bounce", "system", at=T0) is True
    assert (ann.lead_status, ann.lead_status_reason) == ("blacklisted", "hard_bounce")
    assert contacts.set_lead_status(ann, "blacklisted", "complaint", "system") is False

    with pytest.raises(ValueError, match="reason"):
        contacts.set_lead_status(ann, "active", "  ", "ann@acme.test")
    later = T0 + timedelta(days=1)
    assert contacts.set_lead_status(ann, "active", "bounced by mistake", "ann@acme.test", at=later) is True
    session.commit()

    entries = AuditLog(session, "acme").entries(target=f"contact:{ann.id}")
    assert [(e.actor, e.action, e.detail, e.at) for e in entries] == [
        (
            "system",
            "contact.lead_status",
            {"from": "inactive", "to": "blacklisted", "reason": "hard_bounce"},
            T0,
        ),
        (
            "ann@acme.test",
            "contact.lead_status",
            {"from": "blacklisted", "to": "active", "reason": "bounced by mistake"},
            later,
        ),
    ]
    assert AuditLog(session, "globex").entries() == []


def test_unknown_lead_status_is_refused(session: Session) -> None:
    contacts = repo(session)
    ann, _ = contacts.upsert(ContactData(email="ann@example.test"))
    with pytest.raises(ValueError, match="unknown lead status"):
        contacts.set_lead_status(ann, "gone", None, "system")  # type: ignore[arg-type]


# -- bulk import -------------------------------------------------------------------------------------


def _count_statements(engine: Engine) -> list[str]:
    statements: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    return statements


def test_bulk_upsert_of_5000_rows_mixes_creates_and_updates(engine: Engine, session: Session) -> None:
    """An import of 5,000 rows: 2,000 known contacts (half changed), 3,000 new, in few statements."""
    contacts = repo(session)
    seeded = [
        ContactData(email=f"known{i}@example.test", first_name=f"Known{i}", fields={"plan": "basic", "n": i})
        for i in range(2000)
    ]
    assert contacts.upsert_many(seeded, at=T0) == (2000, 0)
    session.commit()
    loaded = contacts.get("known1@example.test")  # in the identity map: must not go stale
    assert loaded is not None and loaded.first_name == "Known1"

    rows: list[ContactData] = []
    for i in range(5000):
        if i < 2000:
            changed = i % 2 == 1
            rows.append(
                ContactData(
                    email=f"  KNOWN{i}@Example.test",
                    first_name=f"Renamed{i}" if changed else None,
                    fields={"plan": "pro"} if changed else None,
                )
            )
        else:
            rows.append(ContactData(email=f"new{i}@example.test", last_name=f"New{i}", phone=f"+1555{i:07d}"))
    statements = _count_statements(engine)
    later = T0 + timedelta(days=1)
    assert contacts.upsert_many(rows, at=later) == (3000, 2000)
    session.commit()

    assert len(statements) <= 3 * (5000 // 500), "bulk upsert must batch, not round-trip per row"
    assert contacts.count() == 5000
    assert (
        session.scalar(select(func.count()).select_from(Contact).where(Contact.updated_at == later)) == 4000
    )

    assert loaded.first_name == "Renamed1"
    assert loaded.fields == {"plan": "pro", "n": 1}
    unchanged = contacts.get("known2@example.test")
    assert unchanged is not None
    assert (unchanged.first_name, unchanged.fields, unchanged.updated_at) == (
        "Known2",
        {"plan": "basic", "n": 2},
        T0,
    )
    fresh = contacts.get("new4999@example.test")
    assert fresh is not None
    assert (fresh.last_name, fresh.phone, fresh.created_at, fresh.lead_status, fresh.score) == (
        "New4999",
        "+15550004999",
        later,
        "inactive",
        0,
    )
    assert contacts.ids_by_email(["KNOWN0@example.test", "new2000@example.test", "x@y.test"]).keys() == {
        "known0@example.test",
        "new2000@example.test",
    }


def test_bulk_upsert_merges_duplicate_rows_and_keeps_workspaces_apart(session: Session) -> None:
    """Later rows win; every row counts once; globex's contact with the same email is untouched."""
    globex_ann, _ = repo(session, "globex").upsert(ContactData(email="ann@example.test", first_name="G"))
    rows = [
        ContactData(email="ann@example.test", first_name="Ann", fields={"a": 1}),
        ContactData(email="ANN@example.test", last_name="Lee", fields={"b": 2}),
        ContactData(phone="+15550100"),
        ContactData(phone="+15550100"),
    ]
    assert repo(session).upsert_many(rows) == (3, 1)
    ann = repo(session).get("ann@example.test")
    assert ann is not None
    assert (ann.first_name, ann.last_name, ann.fields) == ("Ann", "Lee", {"a": 1, "b": 2})
    assert globex_ann.first_name == "G"
    assert repo(session, "globex").count() == 1
    assert repo(session).count() == 3


def test_bulk_and_single_upsert_agree(session: Session) -> None:
    """One set of rules for the API and for imports."""
    first = ContactData(email="a@example.test", first_name="A", fields={"x": 1}, address={"city": "Paris"})
    second = ContactData(
        email="a@example.test", last_name="B", fields={"x": None, "y": 2}, email_suggestion="s"
    )
    repo(session, "acme").upsert(first, at=T0)
    repo(session, "acme").upsert(second, at=T0)
    repo(session, "globex").upsert_many([first], at=T0)
    repo(session, "globex").upsert_many([second], at=T0)
    session.commit()

    def snapshot(workspace_id: str) -> dict[str, Any]:
        contact = repo(session, workspace_id).get("a@example.test")
        assert contact is not None
        return {
            c.key: getattr(contact, c.key)
            for c in Contact.__table__.columns
            if c.key not in ("id", "workspace_id")
        }

    assert snapshot("acme") == snapshot("globex")
