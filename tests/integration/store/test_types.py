"""UTCDateTime: instants in, aware UTC out, on both databases; naive datetimes refused (SPEC T1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from dripflow.store.contacts import ContactData, ContactRepo
from dripflow.store.tables import Workspace

from .conftest import add_workspace


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 3, 8, 6, 59, 59, 123456, tzinfo=UTC),
        datetime(2026, 3, 8, 1, 30, tzinfo=ZoneInfo("America/New_York")),  # the night DST starts
        datetime(2026, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-10))),  # next year in UTC
    ],
    ids=["utc", "new-york", "fixed-offset"],
)
def test_round_trip_returns_the_same_instant_in_utc(engine: Engine, moment: datetime) -> None:
    with Session(engine) as session:
        add_workspace(session, "acme", at=moment)
        session.commit()
    with Session(engine) as session:
        stored = session.scalars(select(Workspace.created_at)).one()
    assert stored == moment
    assert stored.tzinfo is UTC
    assert stored.utcoffset() == timedelta(0)
    assert stored.microsecond == moment.microsecond


def test_comparisons_happen_in_utc(engine: Engine) -> None:
    """SQLite compares the stored text: only uniform UTC storage makes that order right."""
    new_york = ZoneInfo("America/New_York")
    with Session(engine) as session:
        add_workspace(session, "early", at=datetime(2026, 1, 1, 20, 0, tzinfo=new_york))  # 01:00Z next day
        add_workspace(session, "late", at=datetime(2026, 1, 2, 2, 0, tzinfo=UTC))
        session.commit()
        cutoff = datetime(2026, 1, 2, 1, 30, tzinfo=UTC)
        assert list(session.scalars(select(Workspace.id).where(Workspace.created_at < cutoff))) == ["early"]
        ordered = session.scalars(select(Workspace.id).order_by(Workspace.created_at))
        assert list(ordered) == ["early", "late"]


def test_storage_is_utc(engine: Engine) -> None:
    """What other tools see in the database: naive UTC text on SQLite, timestamptz on PostgreSQL."""
    with Session(engine) as session:
        add_workspace(session, "acme", at=datetime(2026, 7, 1, 12, 0, tzinfo=ZoneInfo("Europe/Berlin")))
        session.commit()
        raw = session.execute(text("SELECT created_at FROM workspaces")).scalar_one()
    if engine.dialect.name == "sqlite":
        assert raw == "2026-07-01 10:00:00.000000"
    else:
        assert raw == datetime(2026, 7, 1, 10, 0, tzinfo=UTC)


def test_naive_datetimes_are_rejected(engine: Engine) -> None:
    with Session(engine) as session:
        add_workspace(session, "acme")
        session.commit()
        workspace = session.get(Workspace, "acme")
        assert workspace is not None
        workspace.updated_at = datetime(2026, 1, 1, 9, 0)  # no tzinfo: which 09:00?
        with pytest.raises(StatementError, match="naive datetime") as raised:
            session.flush()
        assert isinstance(raised.value.orig, ValueError)
        session.rollback()
        with pytest.raises(StatementError, match="naive datetime"):
            session.scalars(select(Workspace).where(Workspace.created_at < datetime(2026, 1, 1))).all()


def test_null_stays_null(engine: Engine) -> None:
    with Session(engine) as session:
        add_workspace(session, "acme")
        contact, _ = ContactRepo(session, "acme").upsert(ContactData(email="a@x.test"), at=datetime.now(UTC))
        session.commit()
        session.expire_all()
        assert contact.unsubscribed_at is None
