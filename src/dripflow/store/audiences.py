"""A broadcast audience as SQL (issue 4: audiences are selected in the store, not contact by contact).

:func:`audience_clause` turns the part of a condition SQL can decide into a WHERE clause on
``contacts``: lists, tags and lead status, combined with ``all`` / ``any`` / ``not``. The clause
is a sound pre-filter: every contact for whom the condition holds satisfies it, so contacts
outside the audience are never loaded. What it cannot decide (fields, facts, sequences …) it
leaves to the engine's evaluator, which still has the last word on each contact it loads (B1).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, exists, not_, or_

from dripflow.core.conditions_model import AllOf, AnyOf, ConditionNode, HasTag, IsLeadStatus, Not, OnList
from dripflow.store.tables import Contact, ContactList, ContactTag

__all__ = ["audience_clause"]


def audience_clause(condition: ConditionNode) -> ColumnElement[bool] | None:
    """A clause every contact in the audience satisfies, or None when SQL can decide nothing."""
    return _compile(condition)[0]


def _compile(node: ConditionNode) -> tuple[ColumnElement[bool] | None, bool]:
    """(clause, exact): ``exact`` when the clause holds for exactly the contacts the condition
    holds for; otherwise it holds for a superset (or is None: every contact)."""
    match node:
        case AllOf(items=items):
            parts = [_compile(item) for item in items]
            clauses = [clause for clause, _ in parts if clause is not None]
            exact = all(clause is not None and is_exact for clause, is_exact in parts)
            return (and_(*clauses) if clauses else None), exact
        case AnyOf(items=items):
            parts = [_compile(item) for item in items]
            if any(clause is None for clause, _ in parts):
                return None, False  # one side unknown: any contact may be in
            return or_(*(clause for clause, _ in parts if clause is not None)), all(e for _, e in parts)
        case Not(item=item):
            clause, exact = _compile(item)
            # only an exact clause can be negated: NOT of a superset would drop audience members
            return (not_(clause), True) if clause is not None and exact else (None, False)
        case OnList(arg=name):
            return exists().where(
                ContactList.workspace_id == Contact.workspace_id,
                ContactList.contact_id == Contact.id,
                ContactList.list == name,
                ContactList.unsubscribed_at.is_(None),
            ), True
        case HasTag(arg=name):
            return exists().where(
                ContactTag.workspace_id == Contact.workspace_id,
                ContactTag.contact_id == Contact.id,
                ContactTag.tag == name,
            ), True
        case IsLeadStatus(arg=status):
            return Contact.lead_status == status, True
    return None, False
