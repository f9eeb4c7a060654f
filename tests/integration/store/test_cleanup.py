"""A clean-up over many pages of contacts, in two workspaces (SPEC L5, §1), on both stores."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from dripflow.core.cleanup import CleanupRequest
from dripflow.core.clock import VirtualClock
from dripflow.engine.removal import clean_up
from dripflow.store.contacts import ContactData, ContactRepo
from dripflow.store.tables import Contact, Fact
from tests.integration.store.conftest import T0

NOW = T0 + timedelta(days=400)


def _fill(session: Session, workspace_id: str, count: int) -> None:
    """``count`` contacts created at T0: every third blacklisted, every fifth a buyer, every
    seventh active again (a fact at NOW)."""
    repo = ContactRepo(session, workspace_id)
    for n in range(count):
        contact, _ = repo.create(ContactData(email=f"c{n}@{workspace_id}.test"), at=T0)
        if n % 3 == 0:
            session.execute(update(Contact).where(Contact.id == contact.id).values(lead_status="blacklisted"))
        if n % 5 == 0:
            session.add(
                Fact(
                    workspace_id=workspace_id,
                    contact_id=contact.id,
                    kind="product.purchased",
                    key="course",
                    detail={},
                    at=T0,
                )
            )
        if n % 7 == 0:
            session.add(
                Fact(
                    workspace_id=workspace_id,
                    contact_id=contact.id,
                    kind="page.visited",
                    key="pricing",
                    detail={},
                    at=NOW,
                )
            )
    session.commit()


def _left(session: Session, workspace_id: str) -> set[int]:
    session.expire_all()
    emails = session.scalars(select(Contact.email).where(Contact.workspace_id == workspace_id))
    return {int(email.split("@")[0][1:]) for email in emails if email}


def test_l5_pages_through_every_contact_and_stays_in_its_workspace(
    engine: Engine, session: Session, workspaces: tuple[str, str]
) -> None:
    acme, globex = workspaces
    _fill(session, acme, 40)
    _fill(session, globex, 40)
    request = CleanupRequest(blacklisted=True, inactive_since=NOW - timedelta(days=180))
    plan = clean_up(engine, acme, request, VirtualClock(NOW), apply=False, page_size=4)
    report = clean_up(engine, acme, request, VirtualClock(NOW), apply=True, page_size=4)

    def target(n: int) -> bool:
        return n % 3 == 0 or n % 7 != 0  # blacklisted, or inactive with no visit (a visit does not
        # lift a blacklisting)

    protected = {n for n in range(40) if target(n) and n % 5 == 0}
    expected = {n for n in range(40) if not target(n)} | protected
    assert _left(session, acme) == expected
    assert report.deleted == plan.to_delete == 40 - len(expected)
    assert plan.kept == {"purchase": len(protected)}
    assert _left(session, globex) == set(range(40))  # the other workspace is untouched
