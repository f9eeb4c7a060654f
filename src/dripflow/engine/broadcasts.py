"""Sending broadcasts (SPEC §8 B1–B4, D7): one email to everyone in an audience at a set time.

A broadcast is sent in *waves*. Without ``local_time`` there is one wave, at ``send_at`` read in
the workspace zone. With ``local_time: true`` (B4) every contact's send instant is ``send_at`` on
the wall clock of the contact's own zone (the workspace's when the contact has none), so there
is one wave per distinct send instant: when it comes, the contacts of the zones whose instant
has come are considered, and the audience is evaluated for them then (B1, see
docs/decisions.md). Each wave is done in bulk: contacts are read in id order in batches, their
views loaded with :func:`~dripflow.store.views.load_views` (one query per table per batch), and
the suppression lists, earlier messages and the frequency-cap counts of a batch are read with
one query each; never a query per contact.

``broadcast_runs`` records the progress of each broadcast: ``status`` is ``sending`` while waves
may still come (local time only) and ``finished`` when done; ``due_at`` is the run's watermark:
every contact whose send instant is at or before it has been dealt with, so the run is next due
at the first send instant after it. A wave and the run's new watermark commit in the caller's
transaction, together: a crash repeats a whole wave or none of it, and a restart resumes at the
next wave. Independently of the run, the outbox key ``broadcast:<id>:<contact>`` makes a second
message to the same contact impossible (B3).

The broadcasts sent are the workspace file's and those scheduled through the API
(:func:`~dripflow.store.broadcasts.live_broadcasts`); both are sent the same way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import ColumnElement, and_, false, or_, select
from sqlalchemy.orm import Session

from dripflow.core.conditions import evaluate
from dripflow.core.conditions_model import AllOf, AnyOf, ConditionNode, Not, OnList
from dripflow.core.contact_view import ContactView
from dripflow.core.model import Broadcast, EmailTemplate, Mailbox
from dripflow.core.model import Workspace as WorkspaceDef
from dripflow.core.render import MissingVariable, RenderContext, RenderFailure, render_email
from dripflow.core.timing import local_to_utc
from dripflow.core.windows import frequency_cap_next_slot
from dripflow.engine.context import Ctx, load_rules
from dripflow.engine.messages import insert_messages, link_url, message_row, open_url, unsubscribe_url
from dripflow.store.audiences import audience_clause
from dripflow.store.broadcasts import live_broadcasts
from dripflow.store.database import dialect_insert, is_postgresql
from dripflow.store.tables import BroadcastRun, Contact, ContactList, Message
from dripflow.store.views import load_views

__all__ = ["BATCH_SIZE", "audience_lists", "broadcast_key", "next_broadcast_due", "send_due_broadcasts"]

BATCH_SIZE = 1000

# UTC offsets in use run from -12:00 to +14:00: no zone shows a wall time later than this after
# the same wall time read as UTC, so a local-time broadcast is finished once that has passed.
_LATEST_LOCAL = timedelta(hours=14)

_ALL = "*"  # the one "zone" of a broadcast sent at one instant to everyone


def broadcast_key(broadcast_id: str, contact_id: int) -> str:
    """The outbox key of a broadcast's message to one contact: at most one, ever (B3)."""
    return f"broadcast:{broadcast_id}:{contact_id}"


def audience_lists(condition: ConditionNode) -> frozenset[str]:
    """The lists an audience sends to: those named by ``on_list`` outside any ``not`` (B2, L3)."""
    match condition:
        case OnList(arg=name):
            return frozenset({name})
        case AllOf(items=items) | AnyOf(items=items):
            return frozenset().union(*(audience_lists(item) for item in items))
        case Not():
            return frozenset()
    return frozenset()


# -- when ---------------------------------------------------------------------------------------


def _zone(name: str | None, fallback: ZoneInfo, cache: dict[str, ZoneInfo]) -> ZoneInfo:
    if not name:
        return fallback
    zone = cache.get(name)
    if zone is None:
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            zone = fallback  # an unusable zone reads like none at all (T1)
        cache[name] = zone
    return zone


def _send_instants(
    session: Session, workspace: WorkspaceDef, broadcast: Broadcast
) -> dict[str | None, datetime]:
    """Each group of contacts and its send instant (UTC, T1/T2).

    Without ``local_time``: one group, ``_ALL``. With it: one per distinct ``contacts.timezone``
    value of the workspace, ``None`` standing for contacts without a zone (always present, so a
    broadcast to a workspace with no contacts yet still has a time).
    """
    home = ZoneInfo(workspace.workspace.timezone)
    day, at = broadcast.send_at.date(), broadcast.send_at.time()
    if not broadcast.local_time:
        return {_ALL: local_to_utc(day, at, home)}
    names = session.scalars(
        select(Contact.timezone).where(Contact.workspace_id == workspace.workspace.id).distinct()
    )
    cache: dict[str, ZoneInfo] = {}
    instants: dict[str | None, datetime] = {None: local_to_utc(day, at, home)}
    by_zone: dict[ZoneInfo, datetime] = {home: instants[None]}
    for name in names:
        if name:
            zone = _zone(name, home, cache)
            if zone not in by_zone:
                by_zone[zone] = local_to_utc(day, at, zone)
            instants[name] = by_zone[zone]
    return instants


def _finish_line(broadcast: Broadcast) -> datetime:
    return broadcast.send_at.replace(tzinfo=UTC) + _LATEST_LOCAL


def next_broadcast_due(session: Session, workspace_id: str) -> datetime | None:
    """The earliest moment some broadcast of the workspace has a wave to send (for the clock, X1).

    A moment at or before now means "due now": :func:`send_due_broadcasts` then sends it and
    moves the run's watermark past it, so the same moment is never returned again.
    """
    workspace = load_rules(session, workspace_id).workspace
    broadcasts = live_broadcasts(session, workspace)
    if not broadcasts:
        return None
    runs = {
        run.broadcast_id: run
        for run in session.scalars(select(BroadcastRun).where(BroadcastRun.workspace_id == workspace_id))
    }
    best: datetime | None = None
    for broadcast in broadcasts:
        run = runs.get(broadcast.id)
        if run is not None and run.status == "finished":
            continue
        watermark = run.due_at if run is not None and run.started_at is not None else None
        for instant in _send_instants(session, workspace, broadcast).values():
            if (watermark is None or instant > watermark) and (best is None or instant < best):
                best = instant
    return best


# -- sending ------------------------------------------------------------------------------------


@dataclass
class _Tally:
    queued: int = 0
    skipped: int = 0


def send_due_broadcasts(ctx: Ctx, batch_size: int = BATCH_SIZE) -> int:
    """Send every wave of every broadcast that is due at ``ctx.now``; returns the messages queued.

    Runs in the caller's transaction (the journal is flushed at the end, as ``run_due`` does).
    """
    queued = 0
    for broadcast in live_broadcasts(ctx.session, ctx.workspace):  # the file's and the API's
        queued += _send_broadcast(ctx, broadcast, batch_size)
    ctx.session.flush()
    ctx.flush_journal()
    return queued


def _claim_run(ctx: Ctx, broadcast: Broadcast) -> BroadcastRun | None:
    """The broadcast's run row, locked; None when another worker holds it (PostgreSQL)."""
    stmt = select(BroadcastRun).where(
        BroadcastRun.workspace_id == ctx.workspace_id, BroadcastRun.broadcast_id == broadcast.id
    )
    if is_postgresql(ctx.session.get_bind().engine):
        stmt = stmt.with_for_update(skip_locked=True)
    return ctx.session.scalars(stmt).first()


def _send_broadcast(ctx: Ctx, broadcast: Broadcast, batch_size: int) -> int:
    now = ctx.now
    instants = _send_instants(ctx.session, ctx.workspace, broadcast)
    if min(instants.values()) > now:
        return 0  # nothing of it is due yet: no lock, no row
    run = _claim_run(ctx, broadcast)
    if run is None:
        if _run_exists(ctx, broadcast):
            return 0  # another worker is sending it right now
        run = _start_run(ctx, broadcast)
        if run is None:
            return 0
    if run.status == "finished":
        return 0
    watermark = run.due_at if run.started_at is not None else None
    groups = [
        group
        for group, instant in instants.items()
        if instant <= now and (watermark is None or instant > watermark)
    ]
    tally = _Tally()
    if groups:
        tally = _wave(ctx, broadcast, groups, batch_size, queued_before=run.queued)
        run.started_at = run.started_at or now
        run.due_at = now
        run.queued += tally.queued
        run.skipped += tally.skipped
    if not broadcast.local_time or now >= _finish_line(broadcast):
        run.status = "finished"
        run.finished_at = now
        run.started_at = run.started_at or now
        run.due_at = now
    return tally.queued


def _run_exists(ctx: Ctx, broadcast: Broadcast) -> bool:
    return (
        ctx.session.scalar(
            select(BroadcastRun.broadcast_id).where(
                BroadcastRun.workspace_id == ctx.workspace_id, BroadcastRun.broadcast_id == broadcast.id
            )
        )
        is not None
    )


def _start_run(ctx: Ctx, broadcast: Broadcast) -> BroadcastRun | None:
    # ON CONFLICT DO NOTHING: two workers starting the same broadcast at once create one run.
    ctx.session.execute(
        dialect_insert(ctx.session, BroadcastRun)
        .values(
            workspace_id=ctx.workspace_id,
            broadcast_id=broadcast.id,
            status="sending",
            due_at=ctx.now,  # not a watermark until started_at is set
            queued=0,
            skipped=0,
        )
        .on_conflict_do_nothing(index_elements=[BroadcastRun.workspace_id, BroadcastRun.broadcast_id])
    )
    return _claim_run(ctx, broadcast)


def _wave(
    ctx: Ctx, broadcast: Broadcast, groups: list[str | None], batch_size: int, *, queued_before: int = 0
) -> _Tally:
    tally = _Tally()
    mailbox = _mailbox(ctx.workspace, broadcast)
    template = ctx.workspace.templates.get(broadcast.template)
    if mailbox is None or not isinstance(template, EmailTemplate):
        return tally  # the validator refuses such a file; nothing sensible can be sent
    lists = audience_lists(broadcast.audience)
    frequency = ctx.workspace.ruleset.frequency
    domain = parseaddr(mailbox.from_)[1].rsplit("@", 1)[-1]
    for ids in _audience_batches(ctx, broadcast, groups, batch_size):
        views = load_views(ctx.session, ctx.workspace_id, ids)
        already = _already_sent(ctx, broadcast, ids)
        chosen = [
            views[contact_id]
            for contact_id in ids
            if contact_id in views
            and contact_id not in already
            and evaluate(broadcast.audience, views[contact_id], ctx.now)  # B1: at send time
        ]
        left = _list_unsubscribed(ctx, lists, [view.id for view in chosen])
        chosen = [view for view in chosen if view.id not in left]  # B2
        recent = _recent_emails(ctx, frequency.per, [view.id for view in chosen]) if frequency else {}
        built: list[tuple[ContactView, dict[str, Any]]] = []
        for view in chosen:
            if frequency is not None:  # D7: the same rolling count as a sequence step's hold
                slot = frequency_cap_next_slot(recent.get(view.id, ()), frequency.max, frequency.per, ctx.now)
                if slot > ctx.now:
                    ctx.log("broadcast.skipped", view, broadcast=broadcast.id, reason="frequency_cap")
                    tally.skipped += 1
                    continue
            row = _build(ctx, broadcast, view, mailbox, template, domain)
            if row is None:
                tally.skipped += 1
                continue
            if broadcast.throttle is not None:  # its turn: throttle messages a minute, in order
                turn = queued_before + tally.queued + len(built)
                row["not_before"] = ctx.now + timedelta(minutes=turn // broadcast.throttle)
            built.append((view, row))
        # The batch's messages in one statement (queued in bulk, not row by row); a contact who has
        # it already (a concurrent wave) is left out by the key (B3).
        inserted = insert_messages(ctx, [row for _view, row in built])
        for view, row in built:
            if row["key"] not in inserted:
                tally.skipped += 1
                continue
            tally.queued += 1
            ctx.log(
                "message.sent",
                view,
                channel="email",
                to=row["recipient"],
                broadcast=broadcast.id,
                template=broadcast.template,
                subject=row["subject"],
                mailbox=mailbox.id,
            )
        ctx.flush_journal()  # a batch at a time: memory stays flat however large the audience
    return tally


def _mailbox(workspace: WorkspaceDef, broadcast: Broadcast) -> Mailbox | None:
    if broadcast.mailbox is not None:
        return workspace.mailbox(broadcast.mailbox)
    return workspace.default_mailbox


def _audience_batches(
    ctx: Ctx, broadcast: Broadcast, groups: list[str | None], batch_size: int
) -> Iterator[list[int]]:
    """Ids of the contacts a wave considers, in id order, a batch at a time (keyset pagination).

    Blacklisted and globally unsubscribed contacts, and those without an email address, are left
    out here, in SQL (B2, L2, L3).
    """
    where: list[ColumnElement[bool]] = [
        Contact.workspace_id == ctx.workspace_id,
        Contact.lead_status != "blacklisted",
        Contact.unsubscribed_at.is_(None),
        Contact.email.is_not(None),
    ]
    audience = audience_clause(broadcast.audience)  # issue 4: what SQL can decide, it does
    if audience is not None:
        where.append(audience)
    if _ALL not in groups:
        names = [name for name in groups if name is not None]
        zone = Contact.timezone.in_(names) if names else false()
        where.append(
            or_(zone, Contact.timezone.is_(None), Contact.timezone == "") if None in groups else zone
        )
    last = 0
    while True:
        ids = list(
            ctx.session.scalars(
                select(Contact.id)
                .where(and_(*where), Contact.id > last)
                .order_by(Contact.id)
                .limit(batch_size)
            )
        )
        if not ids:
            return
        yield ids
        last = ids[-1]


def _already_sent(ctx: Ctx, broadcast: Broadcast, ids: list[int]) -> set[int]:
    """Contacts who already have this broadcast (B3), e.g. after a change of zone between waves."""
    return set(
        ctx.session.scalars(
            select(Message.contact_id).where(
                Message.workspace_id == ctx.workspace_id,
                Message.broadcast_id == broadcast.id,
                Message.contact_id.in_(ids),
            )
        )
    )


def _list_unsubscribed(ctx: Ctx, lists: frozenset[str], ids: list[int]) -> set[int]:
    """Contacts who unsubscribed from a list the audience sends to (B2, L3)."""
    if not lists or not ids:
        return set()
    return set(
        ctx.session.scalars(
            select(ContactList.contact_id).where(
                ContactList.workspace_id == ctx.workspace_id,
                ContactList.contact_id.in_(ids),
                ContactList.list.in_(sorted(lists)),
                ContactList.unsubscribed_at.is_not(None),
            )
        )
    )


def _recent_emails(ctx: Ctx, per: timedelta, ids: Iterable[int]) -> dict[int, list[datetime]]:
    """Each contact's marketing emails in the rolling window ending now: what steps.py counts (D7)."""
    found: dict[int, list[datetime]] = defaultdict(list)
    wanted = list(ids)
    if not wanted:
        return found
    for contact_id, created_at in ctx.session.execute(
        select(Message.contact_id, Message.created_at).where(
            Message.workspace_id == ctx.workspace_id,
            Message.contact_id.in_(wanted),
            Message.channel == "email",
            Message.created_at > ctx.now - per,
        )
    ):
        found[contact_id].append(created_at)
    return found


def _build(
    ctx: Ctx,
    broadcast: Broadcast,
    contact: ContactView,
    mailbox: Mailbox,
    template: EmailTemplate,
    domain: str,
) -> dict[str, Any] | None:
    """The contact's message as an outbox row, or None (and why, in the log) if it cannot be built."""
    assert contact.email is not None
    key = broadcast_key(broadcast.id, contact.id)
    settings = ctx.workspace.workspace
    render = RenderContext(
        contact=contact,
        workspace_name=settings.name,
        physical_address=settings.physical_address or "",
        # A broadcast belongs to no sequence: its unsubscribe link leaves everything (D1, L3).
        unsubscribe_url=unsubscribe_url(ctx, key, contact.id, None),
        link_url=lambda name: link_url(ctx, key, contact.id, name),
        open_url=open_url(ctx, key, contact.id) if template.html is not None else None,  # D2
    )
    try:
        rendered = render_email(template, render)
    except MissingVariable as exc:
        ctx.log("broadcast.skipped", contact, broadcast=broadcast.id, reason=f"template_variable:{exc.path}")
        return None
    except RenderFailure:
        ctx.log("broadcast.skipped", contact, broadcast=broadcast.id, reason="render_error")
        return None
    return message_row(
        ctx,
        key=key,
        contact=contact,
        enrollment=None,
        step_id=None,
        channel="email",
        recipient=contact.email,
        sender=mailbox.from_,
        mailbox=mailbox.id,
        template=broadcast.template,
        variant=None,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        in_reply_to=None,
        domain=domain,
        broadcast_id=broadcast.id,
    )
