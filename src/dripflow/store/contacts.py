"""Contacts, their lists and tags, scoped to one workspace (SPEC §1: data never crosses workspaces).

Email addresses are a contact's identity inside a workspace. They are stored normalised: surrounding
space stripped and the *whole* address lower-cased. RFC 5321 lets a server treat the local part
case-sensitively, but no mainstream provider does, and ``Ann@Acme.test`` and ``ann@acme.test``
arriving from a form and an import must not become two contacts (each with its own unsubscribe
state) that someone has to merge by hand. Full validation and typo suggestions (SPEC L4) happen
before data reaches the store (``dripflow.core.addresses``); the store only applies the canonical
form, so that every way in agrees.

Every read and write is filtered by the repository's workspace. A contact loaded through another
workspace's repository is refused, never silently modified.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Executable, Row, Table, bindparam, delete, exists, func, insert, select, update
from sqlalchemy.orm import Session

from dripflow.core.addresses import normalize_phone
from dripflow.core.clock import Clock, SystemClock
from dripflow.store.database import built_once, dialect_insert, is_postgresql
from dripflow.store.events import AuditLog
from dripflow.store.suppressions import restore, restore_many
from dripflow.store.tables import (
    ADDRESS_KEYS,
    LEAD_STATUSES,
    Contact,
    ContactList,
    ContactTag,
    Enrollment,
    LeadStatus,
)

__all__ = [
    "ContactConflict",
    "ContactData",
    "ContactNotFound",
    "ContactRepo",
    "normalize_email",
]

# Emails per SELECT ... IN (...) in bulk upserts: well under SQLite's bound-parameter limit and a
# comfortable statement size for PostgreSQL.
BULK_BATCH_SIZE = 500


class ContactNotFound(LookupError):
    """No contact with that id in this workspace."""


class ContactConflict(ValueError):
    """The change would give a contact an email another contact in the workspace already has."""


def normalize_email(raw: str) -> str:
    """The stored form of an address: stripped and lower-cased (see the module docstring for why)."""
    email = raw.strip().lower()
    if not email:
        raise ValueError("email is empty")
    return email


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactData:
    """What a caller knows about a contact. ``None`` means "leave unchanged" on update.

    * ``email`` is normalised on write, and ``phone`` to E.164 (a number that cannot be is a
      ``ValueError``: an event, a form and an import all store the one form an SMS gateway takes).
    * ``email_suggestion`` (SPEC L4) belongs to the address: it is stored whenever ``email`` is
      given, and cleared when an email is given without one.
    * ``address`` (keys ``line1 line2 city region postal_code country``) replaces the stored
      address as a whole: mixing two half addresses would print a wrong postcard.
    * ``fields`` is merged key by key into the stored custom fields; a key given as ``None``
      removes that field.

    To blank a column such as ``phone``, set the attribute on the :class:`Contact` directly.
    """

    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    timezone: str | None = None
    source: str | None = None
    owner: str | None = None
    address: Mapping[str, str | None] | None = None
    fields: Mapping[str, Any] | None = None
    email_suggestion: str | None = None


_MAX_ID = 2**63 - 1  # ids are BIGINT on both stores
_PLAIN_COLUMNS = ("phone", "first_name", "last_name", "timezone", "source", "owner")
_CONTACTS = cast(Table, Contact.__table__)
# Columns a bulk update may write (in this order in the UPDATE statement).
_BULK_COLUMNS = ("email", *_PLAIN_COLUMNS, "address", "fields", "email_suggestion", "updated_at")
# Every column of a new contact, so that none is left to load after its INSERT.
_UNSET: dict[str, Any] = {column.key: None for column in _CONTACTS.c if column.key != "id"}
# Hot statements, built once (composing a statement costs more than running it on SQLite).
_BY_EMAIL = select(Contact).where(
    Contact.workspace_id == bindparam("workspace_id"), Contact.email == bindparam("email")
)
_LIST_ROWS = cast(Table, ContactList.__table__)


def _merge(state: dict[str, Any], data: ContactData, email: str | None) -> bool:
    """Apply ``data`` to a contact's column values in place; True when any value changed.

    The one place the "None leaves unchanged" rule is written down, shared by the single and the
    bulk path so that both give the same result.
    """
    changes: dict[str, Any] = {}
    if email is not None:
        changes["email"] = email
        changes["email_suggestion"] = data.email_suggestion
    for name in _PLAIN_COLUMNS:
        value = getattr(data, name)
        if value is not None:
            changes[name] = value
    if data.phone is not None:  # E.164 whichever way the contact came (issue 5); idempotent
        changes["phone"] = normalize_phone(data.phone)
    if data.address is not None:
        unknown = set(data.address) - set(ADDRESS_KEYS)
        if unknown:
            raise ValueError(f"unknown address keys {sorted(unknown)}; expected {list(ADDRESS_KEYS)}")
        changes["address"] = dict(data.address)
    if data.fields is not None:
        merged = dict(state.get("fields") or {})
        for key, value in data.fields.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        changes["fields"] = merged
    changed = False
    for name, value in changes.items():
        if state.get(name) != value:
            state[name] = value
            changed = True
    return changed


class ContactRepo:
    """Contacts of one workspace.

    Time defaults to ``clock.now()`` wherever a method takes ``at``; pass a VirtualClock (or an
    explicit ``at``) in simulations so that the rows written do not depend on the wall clock.
    """

    def __init__(self, session: Session, workspace_id: str, *, clock: Clock | None = None) -> None:
        self._session = session
        self.workspace_id = workspace_id
        self._clock: Clock = clock or SystemClock()
        self._audit = AuditLog(session, workspace_id)

    # -- reading ---------------------------------------------------------------------------------

    def get(self, ref: str | int) -> Contact | None:
        """A contact by id (an int, or a string of digits as in ``/v1/contacts/42``) or by email."""
        if isinstance(ref, int):
            return self._one(Contact.id == ref) if 0 < ref <= _MAX_ID else None
        ref = ref.strip()
        if ref.isascii() and ref.isdigit():  # an id no BIGINT holds names no contact (not a 500)
            return self._one(Contact.id == int(ref)) if 0 < int(ref) <= _MAX_ID else None
        if not ref:
            return None
        params = {"workspace_id": self.workspace_id, "email": normalize_email(ref)}
        return self._session.scalars(_BY_EMAIL, params).one_or_none()

    def ids_by_email(self, emails: Iterable[str]) -> dict[str, int]:
        """Contact ids for the given addresses (normalised); unknown addresses are left out.

        Lets an import follow :meth:`upsert_many` with list subscriptions or events in bulk.
        """
        wanted = sorted({normalize_email(email) for email in emails})
        found: dict[str, int] = {}
        for start in range(0, len(wanted), BULK_BATCH_SIZE):
            chunk = wanted[start : start + BULK_BATCH_SIZE]
            rows = self._session.execute(
                select(Contact.email, Contact.id).where(
                    Contact.workspace_id == self.workspace_id, Contact.email.in_(chunk)
                )
            )
            found.update({email: contact_id for email, contact_id in rows if email is not None})
        return found

    def count(self) -> int:
        return (
            self._session.scalar(
                select(func.count()).select_from(Contact).where(Contact.workspace_id == self.workspace_id)
            )
            or 0
        )

    def lists(self, contact: Contact) -> list[str]:
        """Lists the contact is currently subscribed to, by key."""
        self._check(contact)
        return list(
            self._session.scalars(
                select(ContactList.list)
                .where(
                    ContactList.workspace_id == self.workspace_id,
                    ContactList.contact_id == contact.id,
                    ContactList.unsubscribed_at.is_(None),
                )
                .order_by(ContactList.list)
            )
        )

    def subscriptions(self, contact: Contact) -> list[ContactList]:
        """Every list the contact has been on, including those left (``unsubscribed_at`` set)."""
        self._check(contact)
        return list(
            self._session.scalars(
                select(ContactList)
                .where(ContactList.workspace_id == self.workspace_id, ContactList.contact_id == contact.id)
                .order_by(ContactList.list)
                .execution_options(populate_existing=True)
            )
        )

    def tags(self, contact: Contact) -> list[str]:
        self._check(contact)
        return list(
            self._session.scalars(
                select(ContactTag.tag)
                .where(ContactTag.workspace_id == self.workspace_id, ContactTag.contact_id == contact.id)
                .order_by(ContactTag.tag)
            )
        )

    # -- writing one contact ---------------------------------------------------------------------

    def upsert(
        self, data: ContactData, *, contact_id: int | None = None, at: datetime | None = None
    ) -> tuple[Contact, bool]:
        """Create or update a contact; returns it and whether it was created.

        With ``contact_id`` that contact is updated (:class:`ContactNotFound` if it is not in this
        workspace) and ``data.email`` may change its address. Otherwise the contact with
        ``data.email`` is updated, or a new one created. Giving a contact an address another
        contact has raises :class:`ContactConflict`.
        """
        now = self._now(at)
        email = normalize_email(data.email) if data.email is not None else None
        contact: Contact | None
        if contact_id is not None:
            # By primary key: a row already in the session costs no query.
            contact = self._session.get(Contact, contact_id)
            if contact is None or contact.workspace_id != self.workspace_id:
                raise ContactNotFound(f"no contact {contact_id} in workspace {self.workspace_id!r}")
        else:
            contact = self._one(Contact.email == email) if email is not None else None

        if contact is None:
            return self._create(data, email, now)

        if email is not None and email != contact.email:
            holder = self._one(Contact.email == email)
            if holder is not None:
                raise ContactConflict(f"{email} already belongs to contact {holder.id}")
        state = {name: getattr(contact, name) for name in _BULK_COLUMNS}
        if _merge(state, data, email):
            state["updated_at"] = now
            for name, value in state.items():
                if getattr(contact, name) != value:
                    setattr(contact, name, value)
            self._session.flush()
        return contact, False

    def create(self, data: ContactData, *, at: datetime | None = None) -> tuple[Contact, bool]:
        """Create a contact the caller has just looked up by address and not found (no second
        lookup); if another writer creates the address meanwhile, that contact is updated."""
        email = normalize_email(data.email) if data.email is not None else None
        return self._create(data, email, self._now(at))

    def _create(self, data: ContactData, email: str | None, now: datetime) -> tuple[Contact, bool]:
        values = _new_contact_values(self.workspace_id, now)
        _merge(values, data, email)
        if email is not None:  # an address deleted while blacklisted or unsubscribed stays so
            restore(self._session.connection(), self.workspace_id, email, values)
        if not is_postgresql(self._session.get_bind().engine):
            # SQLite serialises writers (BEGIN IMMEDIATE): nobody can create the address meanwhile,
            # and a unit-of-work INSERT costs a third of an INSERT ... RETURNING entity (hot path).
            contact = Contact(**{**_UNSET, **values})
            self._session.add(contact)
            self._session.flush()
            return contact, True
        if email is None:
            stmt = insert(Contact).values(values).returning(Contact)
            return self._session.scalars(stmt).one(), True
        # Two requests may create the same address at once (PostgreSQL); the loser of the race
        # finds no row inserted and updates the winner's contact instead of failing.
        created = self._session.scalars(
            dialect_insert(self._session, Contact)
            .values(values)
            .on_conflict_do_nothing(index_elements=[Contact.workspace_id, Contact.email])
            .returning(Contact)
        ).one_or_none()
        if created is not None:
            return created, True
        winner = self._one(Contact.email == email)
        if winner is None:  # only under REPEATABLE READ/SERIALIZABLE, where the winner stays invisible
            raise ContactConflict(f"{email} was created concurrently; retry the transaction")
        return self.upsert(data, contact_id=winner.id, at=now)

    def subscribe(self, contact: Contact, list_key: str, at: datetime | None = None) -> bool:
        """Put the contact on a list; True if it was not on it (new, or re-subscribing after leaving)."""
        self._check(contact)
        now = self._now(at)
        # Re-subscribing revives the row; an active subscription is left exactly as it was. Plain
        # Core on the session's connection, built once per database (hot path: every sign-up).
        stmt = built_once(self._session, _subscribe_statement)
        params = {"workspace_id": self.workspace_id, "contact_id": contact.id, "list": list_key}
        found = self._session.connection().execute(stmt, {**params, "subscribed_at": now}).first()
        return found is not None

    def unsubscribe(self, contact: Contact, list_key: str, at: datetime | None = None) -> bool:
        """Take the contact off a list, keeping the row stamped with ``unsubscribed_at`` (SPEC L3).

        False if the contact was not on the list.
        """
        self._check(contact)
        result = self._session.execute(
            update(ContactList)
            .where(
                ContactList.workspace_id == self.workspace_id,
                ContactList.contact_id == contact.id,
                ContactList.list == list_key,
                ContactList.unsubscribed_at.is_(None),
            )
            .values(unsubscribed_at=self._now(at))
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) > 0

    def add_tag(self, contact: Contact, tag: str, at: datetime | None = None) -> bool:
        """Tag the contact; False when it already had the tag (a no-op triggers nothing, SPEC A1)."""
        self._check(contact)
        stmt = (
            dialect_insert(self._session, ContactTag)
            .values(workspace_id=self.workspace_id, contact_id=contact.id, tag=tag, assigned_at=self._now(at))
            .on_conflict_do_nothing(index_elements=[ContactTag.contact_id, ContactTag.tag])
            .returning(ContactTag.tag)
        )
        return self._session.execute(stmt).first() is not None

    def remove_tag(self, contact: Contact, tag: str) -> bool:
        """Untag the contact; False when it did not have the tag."""
        self._check(contact)
        result = self._session.execute(
            delete(ContactTag)
            .where(
                ContactTag.workspace_id == self.workspace_id,
                ContactTag.contact_id == contact.id,
                ContactTag.tag == tag,
            )
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) > 0

    def derive_lead_status(
        self, contact: Contact, at: datetime | None = None, known: bool | None = None
    ) -> LeadStatus | None:
        """SPEC L1 for a contact who is not blacklisted: ``active`` while on a list or in an open
        enrollment (a finished one counts, S13), else ``inactive``. Returns the new status if it
        changed. A derived change is not an act of anyone, so it is journaled, not audited."""
        self._check(contact)
        if contact.lead_status == "blacklisted":
            return None
        active = known if known is not None else self._on_list_or_enrolled(contact.id)
        status: LeadStatus = "active" if active else "inactive"
        if contact.lead_status == status:
            return None
        contact.lead_status = status
        contact.lead_status_reason = None
        contact.updated_at = self._now(at)
        return status

    def _on_list_or_enrolled(self, contact_id: int) -> bool:
        self._session.flush()
        on_list = select(ContactList.contact_id).where(
            ContactList.contact_id == contact_id, ContactList.unsubscribed_at.is_(None)
        )
        enrolled = select(Enrollment.id).where(
            Enrollment.contact_id == contact_id, Enrollment.open_key.is_not(None)
        )
        return bool(self._session.scalar(select(exists(on_list) | exists(enrolled))))

    def set_lead_status(
        self, contact: Contact, status: LeadStatus, reason: str | None, actor: str, at: datetime | None = None
    ) -> bool:
        """Change the lead status (SPEC L1) and audit who did it and why; False if already so.

        Lifting a blacklisting needs a reason (SPEC L2).
        """
        self._check(contact)
        if status not in LEAD_STATUSES:
            raise ValueError(f"unknown lead status {status!r}; expected one of {list(LEAD_STATUSES)}")
        previous = contact.lead_status
        if previous == status:
            return False
        if previous == "blacklisted" and not (reason and reason.strip()):
            raise ValueError("lifting a blacklisting needs a reason (SPEC L2)")
        now = self._now(at)
        contact.lead_status = status
        contact.lead_status_reason = reason
        contact.updated_at = now
        self._session.flush()
        self._audit.record(
            actor,
            "contact.lead_status",
            f"contact:{contact.id}",
            {"from": previous, "to": status, "reason": reason},
            now,
        )
        return True

    def delete(self, contact: Contact) -> None:
        """Delete the contact with its lists, tags and facts (the event log keeps its history)."""
        self._check(contact)
        self._session.delete(contact)
        self._session.flush()

    # -- writing many contacts -------------------------------------------------------------------

    def upsert_many(self, rows: Sequence[ContactData], *, at: datetime | None = None) -> tuple[int, int]:
        """Create or update many contacts by email, with the same rules as :meth:`upsert`.

        Returns ``(created, updated)``, which add up to ``len(rows)``: a row counts as updated when
        it matched an existing contact, including one created earlier in the same call (the later
        row wins). Rows without an email always create a contact.

        Each batch of :data:`BULK_BATCH_SIZE` rows costs three statements: one SELECT for the
        contacts already there, one multi-row INSERT and one executemany UPDATE (of only the
        contacts that actually change).
        """
        now = self._now(at)
        self._session.flush()
        created = updated = 0
        for start in range(0, len(rows), BULK_BATCH_SIZE):
            batch_created, batch_updated = self._upsert_batch(rows[start : start + BULK_BATCH_SIZE], now)
            created += batch_created
            updated += batch_updated
        return created, updated

    def _upsert_batch(self, rows: Sequence[ContactData], now: datetime) -> tuple[int, int]:
        emails = [normalize_email(row.email) if row.email is not None else None for row in rows]
        table = _CONTACTS
        existing: dict[str, dict[str, Any]] = {}
        wanted = sorted({email for email in emails if email is not None})
        if wanted:
            found = self._session.execute(
                select(table.c.id, *(table.c[name] for name in _BULK_COLUMNS)).where(
                    table.c.workspace_id == self.workspace_id, table.c.email.in_(wanted)
                )
            )
            existing = {row.email: _row_dict(row) for row in found}

        new: list[dict[str, Any]] = []
        new_by_email: dict[str, dict[str, Any]] = {}
        changed_ids: set[int] = set()
        created = updated = 0
        for data, email in zip(rows, emails, strict=True):
            if email is not None and email in existing:
                state = existing[email]
                if _merge(state, data, email):
                    state["updated_at"] = now
                    changed_ids.add(state["id"])
                updated += 1
            elif email is not None and email in new_by_email:
                _merge(new_by_email[email], data, email)
                updated += 1
            else:
                state = _new_contact_values(self.workspace_id, now)
                _merge(state, data, email)
                new.append(state)
                if email is not None:
                    new_by_email[email] = state
                created += 1

        if new:
            restore_many(self._session.connection(), self.workspace_id, new_by_email.items())
            self._session.execute(insert(table), new)
        if changed_ids:
            self._session.execute(
                update(table)
                .where(table.c.id == bindparam("b_id"), table.c.workspace_id == self.workspace_id)
                .values({name: bindparam(f"b_{name}") for name in _BULK_COLUMNS}),
                [
                    {f"b_{name}": value for name, value in state.items()}
                    for state in existing.values()
                    if state["id"] in changed_ids
                ],
            )
            self._expire_loaded(changed_ids)
        return created, updated

    def subscribe_many(self, emails: Iterable[str], list_key: str, at: datetime | None = None) -> int:
        """Put the contacts with these addresses on a list, as :meth:`subscribe` does one by one.

        Returns how many were not on it before. One INSERT ... ON CONFLICT per batch: an import
        of 100,000 rows must not pay a round trip per row.
        """
        now = self._now(at)
        ids = sorted(self.ids_by_email(emails).values())
        added = 0
        for start in range(0, len(ids), BULK_BATCH_SIZE):
            chunk = ids[start : start + BULK_BATCH_SIZE]
            stmt = (
                dialect_insert(self._session, ContactList)
                .values(
                    [
                        {
                            "workspace_id": self.workspace_id,
                            "contact_id": contact_id,
                            "list": list_key,
                            "subscribed_at": now,
                        }
                        for contact_id in chunk
                    ]
                )
                .on_conflict_do_update(
                    index_elements=[ContactList.contact_id, ContactList.list],
                    set_={"subscribed_at": now, "unsubscribed_at": None},
                    where=ContactList.unsubscribed_at.is_not(None),
                )
                .returning(ContactList.contact_id)
            )
            added += len(self._session.execute(stmt).all())
            self._session.execute(  # L1: on a list means active (a blacklisting stays)
                update(Contact)
                .where(Contact.id.in_(chunk), Contact.lead_status == "inactive")
                .values(lead_status="active", updated_at=now)
                .execution_options(synchronize_session=False)
            )
        return added

    def _expire_loaded(self, contact_ids: set[int]) -> None:
        """Core UPDATEs bypass the ORM: make Contact objects already in the session reload."""
        for contact_id in contact_ids:
            loaded = self._session.identity_map.get(self._session.identity_key(Contact, contact_id))
            if loaded is not None:
                self._session.expire(loaded)

    # -- helpers ---------------------------------------------------------------------------------

    def _one(self, *criteria: Any) -> Contact | None:
        return self._session.scalars(
            select(Contact).where(Contact.workspace_id == self.workspace_id, *criteria)
        ).one_or_none()

    def _check(self, contact: Contact) -> None:
        if contact.workspace_id != self.workspace_id:
            raise ContactNotFound(f"contact {contact.id} is not in workspace {self.workspace_id!r}")

    def _now(self, at: datetime | None) -> datetime:
        return at if at is not None else self._clock.now()


def _subscribe_statement(session: Session) -> Executable:
    revive = dialect_insert(session, _LIST_ROWS)
    return revive.on_conflict_do_update(
        index_elements=[_LIST_ROWS.c.contact_id, _LIST_ROWS.c.list],
        set_={"subscribed_at": revive.excluded.subscribed_at, "unsubscribed_at": None},
        where=_LIST_ROWS.c.unsubscribed_at.is_not(None),
    ).returning(_LIST_ROWS.c.contact_id)


def _new_contact_values(workspace_id: str, now: datetime) -> dict[str, Any]:
    values: dict[str, Any] = {name: None for name in _BULK_COLUMNS}
    values.update(
        workspace_id=workspace_id,
        fields={},
        score=0,
        lead_status="inactive",
        lead_status_reason=None,
        unsubscribed_at=None,
        created_at=now,
        updated_at=now,
    )
    return values


def _row_dict(row: Row[Any]) -> dict[str, Any]:
    values = dict(row._mapping)
    values["fields"] = dict(values.get("fields") or {})
    return values


def _rowcount(result: Any) -> int:
    return int(result.rowcount)
