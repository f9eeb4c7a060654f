"""The event log: append-only, deduplicated by idempotency key per workspace (SPEC D3)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from dripflow.store.database import session_factory
from dripflow.store.events import AuditLog, EventLog
from dripflow.store.tables import Event

from .conftest import T0

pytestmark = pytest.mark.usefixtures("workspaces")


def _events(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Event)) or 0


def test_append_records_the_event(session: Session) -> None:
    log = EventLog(session, "acme")
    payload = {"product": "course-101", "amount": 49.5, "tags": ["a", "b"], "nested": {"ok": True}}
    event_id, inserted = log.append("product.purchased", payload, 7, T0, T0 + timedelta(seconds=1))
    assert inserted
    session.commit()
    session.expire_all()
    stored = log.get(event_id)
    assert stored is not None
    assert (stored.type, stored.payload, stored.contact_id, stored.idempotency_key) == (
        "product.purchased",
        payload,
        7,
        None,
    )
    assert (stored.occurred_at, stored.recorded_at) == (T0, T0 + timedelta(seconds=1))


def test_a_repeated_idempotency_key_inserts_nothing(session: Session) -> None:
    """SPEC D3: the second delivery of an event returns the first one's id."""
    log = EventLog(session, "acme")
    first_id, inserted = log.append("tag.added", {"tag": "vip"}, 1, T0, T0, idempotency_key="evt-1")
    assert inserted
    again_id, inserted_again = log.append("tag.added", {"tag": "other"}, 1, T0, T0, idempotency_key="evt-1")
    assert (again_id, inserted_again) == (first_id, False)
    session.commit()
    assert _events(session) == 1
    stored = log.by_key("evt-1")
    assert stored is not None and stored.payload == {"tag": "vip"}


def test_events_without_a_key_are_never_deduplicated(session: Session) -> None:
    log = EventLog(session, "acme")
    ids = {log.append("page.visited", {"page": "sales-page"}, 1, T0, T0)[0] for _ in range(3)}
    assert len(ids) == 3


def test_two_workspaces_may_use_the_same_key(session: Session) -> None:
    """SPEC §1 workspace + D3: idempotency keys are per workspace."""
    acme_id, acme_new = EventLog(session, "acme").append("x", {}, None, T0, T0, idempotency_key="k")
    globex_id, globex_new = EventLog(session, "globex").append("x", {}, None, T0, T0, idempotency_key="k")
    assert acme_new and globex_new and acme_id != globex_id
    assert EventLog(session, "acme").get(globex_id) is None
    assert EventLog(session, "globex").by_key("k") is not None
    assert [e.id for e in EventLog(session, "acme").after(0)] == [acme_id]


def test_concurrent_appends_with_one_key_record_one_event(engine: Engine) -> None:
    """SPEC D3 under a race: two workers receive the same event; the second waits, then dedups."""
    factory = session_factory(engine)
    results: dict[str, tuple[int, bool]] = {}
    errors: list[BaseException] = []

    with factory() as first:
        results["first"] = EventLog(first, "acme").append("x", {}, None, T0, T0, idempotency_key="race")

        def second_worker() -> None:
            try:
                with factory() as second, second.begin():
                    results["second"] = EventLog(second, "acme").append(
                        "x", {}, None, T0, T0, idempotency_key="race"
                    )
            except BaseException as exc:  # reported in the main thread
                errors.append(exc)

        thread = threading.Thread(target=second_worker)
        thread.start()
        thread.join(timeout=0.5)
        assert thread.is_alive(), "the second append must wait for the first transaction"
        first.commit()
        thread.join(timeout=30)

    assert not errors
    assert results["second"] == (results["first"][0], False)
    with factory() as session:
        assert _events(session) == 1


def test_for_contact_lists_events_in_the_order_they_happened(session: Session) -> None:
    log = EventLog(session, "acme")
    late, _ = log.append("b", {}, 5, T0 + timedelta(hours=1), T0)
    early, _ = log.append("a", {}, 5, T0, T0 + timedelta(hours=2))
    log.append("c", {}, 6, T0, T0)
    assert [e.id for e in log.for_contact(5)] == [early, late]


def test_events_cannot_be_changed_or_deleted(session: Session) -> None:
    log = EventLog(session, "acme")
    event_id, _ = log.append("x", {"a": 1}, None, T0, T0)
    session.commit()
    stored = log.get(event_id)
    assert stored is not None
    stored.type = "y"
    with pytest.raises(TypeError, match="append-only"):
        session.flush()
    session.rollback()
    session.delete(stored)
    with pytest.raises(TypeError, match="append-only"):
        session.flush()


def test_audit_log_records_entries_per_workspace(session: Session) -> None:
    audit = AuditLog(session, "acme")
    entry = audit.record("ann@acme.test", "sequence.paused", "sequence:onboarding", {"why": "typo"}, T0)
    audit.record("system", "sequence.resumed", "sequence:onboarding", None, T0 + timedelta(minutes=5))
    session.commit()
    assert entry.id is not None
    assert [(e.action, e.detail) for e in audit.entries(target="sequence:onboarding")] == [
        ("sequence.paused", {"why": "typo"}),
        ("sequence.resumed", {}),
    ]
    assert [e.actor for e in audit.entries(action="sequence.resumed")] == ["system"]
    assert AuditLog(session, "globex").entries() == []
