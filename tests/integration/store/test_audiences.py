"""Broadcast audiences as SQL (issue 4, SPEC B1): the clause never leaves out a contact the engine's
evaluator would send to, and where it is exact it selects exactly them; on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from sqlalchemy import Engine, insert, select

from dripflow.core.conditions import evaluate
from dripflow.core.conditions_model import Condition, ConditionNode
from dripflow.store.audiences import _compile, audience_clause
from dripflow.store.database import transaction
from dripflow.store.tables import Contact, ContactList, ContactTag, Workspace
from dripflow.store.views import load_views

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LISTS = ("news", "offers", "vip")
TAGS = ("buyer", "fan")
STATUSES = ("inactive", "active", "blacklisted")
_CONDITION = TypeAdapter(Condition)

leaves = st.one_of(
    st.sampled_from(LISTS).map(lambda name: {"on_list": name}),
    st.sampled_from(TAGS).map(lambda name: {"has_tag": name}),
    st.sampled_from(STATUSES).map(lambda status: {"lead_status": status}),
    # what SQL does not decide: a field test (the evaluator's alone)
    st.sampled_from(("a", "b")).map(lambda v: {"field": {"key": "plan", "op": "eq", "value": v}}),
)
conditions = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda items: {"all": items}),
        st.lists(inner, min_size=1, max_size=3).map(lambda items: {"any": items}),
        inner.map(lambda item: {"not": item}),
    ),
    max_leaves=6,
)


def _population(engine: Engine) -> list[int]:
    """Forty contacts with random lists (some left), tags, statuses and a `plan` field."""
    pick = random.Random(11)
    with transaction(engine) as session:
        session.add(
            Workspace(id="w", name="W", timezone="UTC", definition={}, definition_hash="x",
                      created_at=NOW, updated_at=NOW)
        )  # fmt: skip
        session.flush()
        ids = [
            session.execute(
                insert(Contact).returning(Contact.id),
                {
                    "workspace_id": "w",
                    "email": f"c{n}@x.test",
                    "fields": {"plan": pick.choice(("a", "b"))},
                    "lead_status": pick.choice(STATUSES),
                    "created_at": NOW,
                    "updated_at": NOW,
                },
            ).scalar_one()
            for n in range(40)
        ]
        for contact_id in ids:
            for name in LISTS:
                if pick.random() < 0.5:
                    left = NOW if pick.random() < 0.3 else None
                    session.execute(
                        insert(ContactList),
                        {"workspace_id": "w", "contact_id": contact_id, "list": name,
                         "subscribed_at": NOW, "unsubscribed_at": left},
                    )  # fmt: skip
            for name in TAGS:
                if pick.random() < 0.5:
                    session.execute(
                        insert(ContactTag),
                        {"workspace_id": "w", "contact_id": contact_id, "tag": name, "assigned_at": NOW},
                    )
    return ids


def test_b1_the_sql_audience_never_leaves_out_a_contact_and_is_exact_where_it_says(engine: Engine) -> None:
    """Property: for random audiences over lists, tags, lead status and a field, combined with
    all / any / not, every contact the evaluator accepts is selected by the clause; where the
    clause claims to be exact (no field test it had to leave out), it selects exactly them."""
    ids = _population(engine)
    with transaction(engine) as session:
        views = load_views(session, "w", ids)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(conditions)
    def check(raw: dict[str, Any]) -> None:
        condition: ConditionNode = _CONDITION.validate_python(raw)
        wanted = {cid for cid, view in views.items() if evaluate(condition, view, NOW)}
        clause = audience_clause(condition)
        with transaction(engine) as session:
            query = select(Contact.id).where(Contact.workspace_id == "w")
            selected = set(session.scalars(query.where(clause) if clause is not None else query))
        assert wanted <= selected, raw
        if _compile(condition)[1]:
            assert wanted == selected, raw

    check()


def test_b1_an_audience_sql_cannot_decide_at_all_is_no_clause() -> None:
    """A field test alone, or `any` with one, leaves every contact to the evaluator."""
    field = {"field": {"key": "plan", "op": "eq", "value": "a"}}
    assert audience_clause(_CONDITION.validate_python(field)) is None
    assert audience_clause(_CONDITION.validate_python({"any": [field, {"on_list": "news"}]})) is None
    assert audience_clause(_CONDITION.validate_python({"not": {"all": [field, {"has_tag": "fan"}]}})) is None
