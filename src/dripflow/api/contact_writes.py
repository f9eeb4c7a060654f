"""The API's writes to contacts, applied through the engine (issue 6).

Contacts sent to ``POST /v1/contacts`` and ``PATCH /v1/contacts/{contact}`` are checked with the
rules of a CSV import (email-validator with typo suggestions, L4; E.164 phones; IANA zones;
declared, typed custom fields), because a contact typed into a form is entered data just like an
imported row. They are then written in an engine context, so that ``contact.created`` and
``contact.updated`` fire automations, exclusions (S4) and blocked enrollments (S11) exactly as an
event's contact does. List and tag changes are the matching engine events (SPEC A1: a change that
changes nothing emits nothing). Deleting a contact is :func:`dripflow.engine.removal.delete_contact`.

Everything a request does happens in the caller's one transaction: nothing is half-applied.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal
from zoneinfo import available_timezones

from dripflow.api.schemas import AddressIn, ContactIn, ContactPatch, FieldInput
from dripflow.core.addresses import InvalidAddress, check_email, normalize_phone
from dripflow.core.fieldvalues import FieldType, coerce_field
from dripflow.core.model import Workspace as WorkspaceDef
from dripflow.core.modeltypes import unknown_name
from dripflow.engine.context import Ctx
from dripflow.engine.enrollments import refresh_view
from dripflow.engine.ingest import ingest
from dripflow.engine.triggers import drain, emit
from dripflow.store.contacts import ContactData, ContactRepo
from dripflow.store.events import EventLog
from dripflow.store.tables import Contact
from dripflow.store.views import new_contact_view

__all__ = [
    "Checked",
    "InvalidContact",
    "MembershipEvent",
    "Undeclared",
    "change_membership",
    "checked_create",
    "checked_patch",
    "save_contact",
]

MembershipEvent = Literal["list.subscribed", "list.unsubscribed", "tag.assigned", "tag.removed"]

# The contact attributes a change is reported under (`contact.updated` {changed}), as actions do.
_ATTRIBUTES = ("email", "phone", "first_name", "last_name", "timezone", "source", "owner", "address")
_TEXT = ("first_name", "last_name", "source", "owner")


class InvalidContact(ValueError):
    """The contact sent cannot be stored; ``problems`` names each attribute and what is wrong."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{item['where']}: {item['message']}" for item in problems))
        self.problems = problems


class Undeclared(ValueError):
    """A list or tag the workspace file does not declare (the message has a did-you-mean)."""


@dataclass(frozen=True)
class Checked:
    """A contact as it will be written: ``data`` (None leaves unchanged) and what to remove."""

    data: ContactData
    clear: frozenset[str] = field(default_factory=frozenset)


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def checked_create(body: ContactIn, workspace: WorkspaceDef) -> Checked:
    """``POST /v1/contacts``: absent or null attributes leave the stored ones as they are."""
    values = body.model_dump(exclude_none=True)
    return _check(values, workspace, clearing=False)


def checked_patch(body: ContactPatch, workspace: WorkspaceDef) -> Checked:
    """``PATCH``: only the attributes sent count; null removes one (but not the email)."""
    values = {name: getattr(body, name) for name in body.model_fields_set}
    return _check(values, workspace, clearing=True)


def _check(values: Mapping[str, Any], workspace: WorkspaceDef, *, clearing: bool) -> Checked:
    problems: list[dict[str, Any]] = []
    data: dict[str, Any] = {}
    clear: set[str] = set()

    def problem(where: str, message: str) -> None:
        problems.append({"where": where, "message": message})

    for name, value in values.items():
        if name == "fields":
            continue
        text = value.strip() if isinstance(value, str) else value
        if text is None or text == "" or (name == "address" and not _address(value)):
            if name == "email":
                problem("email", "a contact's email cannot be removed" if clearing else "email is empty")
            elif clearing:
                clear.add(name)
            continue
        try:
            if name == "email":
                checked = check_email(text)
                data["email"], data["email_suggestion"] = checked.email, checked.suggestion
            elif name == "phone":
                data["phone"] = normalize_phone(text)
            elif name == "timezone":
                if text not in _zones():
                    raise ValueError(
                        f"unknown time zone {text!r} (use an IANA name such as America/New_York)"
                    )
                data["timezone"] = text
            elif name == "address":
                data["address"] = _address(value)
            else:
                data[name] = text
        except (InvalidAddress, ValueError) as exc:
            problem(name, str(exc))
    fields = values.get("fields")
    if fields is not None:
        data["fields"] = _fields(fields, workspace, problem)
    if problems:
        raise InvalidContact(problems)
    return Checked(ContactData(**data), frozenset(clear))


def _address(value: AddressIn | Mapping[str, Any] | None) -> dict[str, str]:
    raw = value.model_dump() if isinstance(value, AddressIn) else dict(value or {})
    return {key: str(item).strip() for key, item in raw.items() if item is not None and str(item).strip()}


def _fields(given: Mapping[str, FieldInput], workspace: WorkspaceDef, problem: Any) -> dict[str, FieldInput]:
    """Declared custom fields typed as declared (SPEC §2 `fields`); None removes a field."""
    declared = {item.key: item.type for item in workspace.fields}
    typed: dict[str, FieldInput] = {}
    for key, value in given.items():
        kind = declared.get(key)
        if kind is None:
            problem(f"fields.{key}", unknown_name("field", key, declared))
            continue
        try:
            typed[key] = _field_value(kind, value)
        except ValueError as exc:
            problem(f"fields.{key}", str(exc))
    return typed


def _field_value(kind: FieldType, value: FieldInput) -> FieldInput:
    if value is None:
        return None
    if isinstance(value, str):
        return coerce_field(kind, value)
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a number")
        return value
    expected = {
        "text": "text",
        "number": "a number",
        "date": "a date (YYYY-MM-DD)",
        "boolean": "true or false",
    }
    raise ValueError(f"{value!r} is not {expected[kind]}")


# -- writing -----------------------------------------------------------------------------------------


def save_contact(ctx: Ctx, checked: Checked, *, contact_id: int | None = None) -> tuple[Contact, bool]:
    """Create or update a contact and fire what that sets off; returns it and whether it is new.

    Without ``contact_id`` the contact is found by email (created if absent). Raises
    :class:`~dripflow.store.contacts.ContactConflict` when the email belongs to another contact.
    """
    repo = ContactRepo(ctx.session, ctx.workspace_id, clock=ctx.clock)
    found = (
        repo.get(contact_id)
        if contact_id is not None
        else (repo.get(checked.data.email) if checked.data.email else None)
    )
    before = _snapshot(found) if found is not None else None
    if found is None:
        row, created = repo.create(checked.data, at=ctx.now)
    else:
        row, created = repo.upsert(checked.data, contact_id=found.id, at=ctx.now)
    for name in checked.clear:
        if getattr(row, name) is not None:
            setattr(row, name, None)
            row.updated_at = ctx.now
    ctx.session.flush()
    if created:
        view = new_contact_view(row)
        ctx.log("contact.status", view, status=row.lead_status, reason="created")
        emit(ctx, "contact.created", row.id, {}, origin="api")
    else:
        changed = _changes(before or {}, _snapshot(row))
        for name in changed:  # one event per attribute or field, as actions emit them (A1)
            emit(ctx, "contact.updated", row.id, {"changed": name}, origin="api")
        if changed:
            EventLog(ctx.session, ctx.workspace_id).append(
                "contact.updated", {"changed": changed, "by": "api"}, row.id, ctx.now, ctx.now
            )
    drain(ctx)
    ctx.session.flush()
    ctx.flush_journal()
    return row, created


def _snapshot(row: Contact) -> dict[str, Any]:
    state = {name: getattr(row, name) for name in _ATTRIBUTES}
    state.update({f"fields.{key}": value for key, value in (row.fields or {}).items()})
    return state


def _changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    names = sorted(set(before) | set(after))
    return [name.removeprefix("fields.") for name in names if before.get(name) != after.get(name)]


def change_membership(ctx: Ctx, row: Contact, kind: MembershipEvent, name: str) -> bool:
    """Subscribe, unsubscribe, tag or untag as the engine event of that type; False when it was
    already so (A1: then no event, no automation). Raises :class:`Undeclared`."""
    what = "list" if kind.startswith("list.") else "tag"
    declared = ctx.workspace.lists if what == "list" else ctx.workspace.tags
    if name not in declared:
        raise Undeclared(unknown_name(what, name, declared))
    view = refresh_view(ctx, row.id)
    held = (view.lists if what == "list" else view.tags) if view is not None else frozenset()
    adding = kind in ("list.subscribed", "tag.assigned")
    if (name in held) == adding:
        return False
    # Logged so that the contact's timeline shows it; POST /v1/events logs events with an `id`.
    EventLog(ctx.session, ctx.workspace_id).append(kind, {what: name, "by": "api"}, row.id, ctx.now, ctx.now)
    ingest(ctx, {"type": kind, "contact": str(row.id), what: name})
    return True
