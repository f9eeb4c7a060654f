"""Suppressions: a deleted contact's blacklisting or unsubscribe stays with its address (L2, L3),
in its own workspace only (SPEC §1), on both stores."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dripflow.store.contacts import ContactData, ContactRepo
from dripflow.store.suppressions import address_hash, remember
from dripflow.store.tables import Contact, Suppression
from tests.integration.store.conftest import T0


def _delete(session: Session, workspace_id: str, email: str) -> None:
    repo = ContactRepo(session, workspace_id)
    contact = repo.get(email)
    assert contact is not None
    remember(session, workspace_id, [contact.id], T0 + timedelta(days=1))
    repo.delete(contact)


def _state(session: Session, workspace_id: str, email: str) -> tuple[str, str | None, bool]:
    contact = ContactRepo(session, workspace_id).get(email)
    assert contact is not None
    return contact.lead_status, contact.lead_status_reason, contact.unsubscribed_at is not None


def test_the_state_returns_with_the_address_one_by_one_and_in_bulk_in_its_workspace_only(
    session: Session, workspaces: tuple[str, str]
) -> None:
    acme, globex = workspaces
    repo = ContactRepo(session, acme)
    trap, _ = repo.create(ContactData(email="trap@x.test"), at=T0)
    gone, _ = repo.create(ContactData(email="gone@x.test"), at=T0)
    session.execute(
        update(Contact)
        .where(Contact.id == trap.id)
        .values(lead_status="blacklisted", lead_status_reason="complaint")
    )
    session.execute(update(Contact).where(Contact.id == gone.id).values(unsubscribed_at=T0))
    session.expire_all()
    _delete(session, acme, "trap@x.test")
    _delete(session, acme, "gone@x.test")

    stored = session.scalars(select(Suppression.address_hash).where(Suppression.workspace_id == acme))
    assert set(stored) == {address_hash("trap@x.test"), address_hash("gone@x.test")}  # no address kept

    repo.create(ContactData(email="Trap@X.test"), at=T0 + timedelta(days=2))  # one by one
    repo.upsert_many([ContactData(email="gone@x.test"), ContactData(email="new@x.test")])  # in bulk
    assert _state(session, acme, "trap@x.test") == ("blacklisted", "complaint", False)
    assert _state(session, acme, "gone@x.test") == ("inactive", None, True)
    assert _state(session, acme, "new@x.test") == ("inactive", None, False)

    other = ContactRepo(session, globex)  # the same address in another workspace is untouched
    other.create(ContactData(email="trap@x.test"), at=T0)
    assert _state(session, globex, "trap@x.test") == ("inactive", None, False)


def test_deleting_a_contact_in_good_standing_clears_what_an_earlier_deletion_left(
    session: Session, workspaces: tuple[str, str]
) -> None:
    acme, _ = workspaces
    repo = ContactRepo(session, acme)
    first, _ = repo.create(ContactData(email="ann@x.test"), at=T0)
    session.execute(update(Contact).where(Contact.id == first.id).values(unsubscribed_at=T0))
    session.expire_all()
    _delete(session, acme, "ann@x.test")
    again, _ = repo.create(ContactData(email="ann@x.test"), at=T0)
    assert again.unsubscribed_at is not None
    session.execute(update(Contact).where(Contact.id == again.id).values(unsubscribed_at=None))  # opted in
    session.expire_all()
    _delete(session, acme, "ann@x.test")
    assert session.scalars(select(Suppression)).all() == []
    third, _ = repo.create(ContactData(email="ann@x.test"), at=T0)
    assert (third.lead_status, third.unsubscribed_at) == ("inactive", None)
