"""Taking due messages out of the outbox and through a transport, each at most once (SPEC D3, D5).

A message goes ``queued`` → ``sending`` (claimed) → ``sent`` | ``queued`` again (temporary failure,
with backoff) | ``bounced`` (the recipient was refused: a hard bounce, D5) | ``failed`` (given up,
or it cannot be built) | ``canceled`` (the contact was blacklisted or unsubscribed meanwhile, L2/L3).

The protocol, and why:

1. **Claim** a batch in one short transaction: due ``queued`` rows (and ``sending`` rows whose lease
   ran out: their worker died), locked with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so that
   several workers never take the same row (SPEC §10). Claiming sets ``status = 'sending'``, a
   lease in ``next_attempt_at`` and increments ``attempts``. The claim is committed *before*
   anything is sent: another worker cannot take the row while it is being sent.
2. **Send** outside any transaction (a slow SMTP server must not hold database locks).
3. **Record** each outcome as soon as it is known, in small transactions (outcomes that arrive
   together are committed together). The update only applies if the row is still ``sending``
   with the same ``attempts``: ``attempts`` is the claim's fencing token, so a worker whose lease
   was taken over cannot overwrite the newer claim's result.

The one unavoidable window: the SMTP server has accepted a message and the worker dies before
step 3 commits. The row is then still ``sending``; when the lease runs out it is sent again. We
choose that (at-least-once inside the window) over marking it lost, because a missing message
is invisible while a duplicate is merely annoying; the window is one commit long per message.
See docs/decisions.md, "Delivery".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Engine, and_, func, or_, select, update
from sqlalchemy.orm import Session

from dripflow.core.clock import Clock
from dripflow.delivery.mime import UnsafeHeader, build_message, envelope_recipient, envelope_sender
from dripflow.delivery.transport import PermanentFailure, SendFailure, TemporaryFailure, Transport
from dripflow.engine.context import Ctx, load_rules
from dripflow.engine.ingest import IngestError, ingest
from dripflow.engine.messages import unsubscribe_url
from dripflow.store.database import is_postgresql, transaction
from dripflow.store.tables import Contact, Enrollment, Message
from dripflow.store.workspaces import rules_key

__all__ = [
    "BATCH_SIZE",
    "LEASE",
    "MAX_ATTEMPTS",
    "backoff",
    "claim_due",
    "deliver_due",
    "deliver_pending",
    "next_delivery_due",
]

log = logging.getLogger(__name__)

BATCH_SIZE = 100
MAX_ATTEMPTS = 8
"""Tries before a message that keeps failing temporarily is given up (``failed``)."""
LEASE = timedelta(minutes=10)
"""How long a claim lasts; after that another worker may take the message (its worker died)."""
FIRST_RETRY = timedelta(minutes=1)
MAX_RETRY = timedelta(hours=4)
_CLOSED_ENROLLMENTS = ("canceled", "bounced")

Status = Literal["sent", "queued", "bounced", "failed"]


def backoff(attempts: int) -> timedelta:
    """Wait after the ``attempts``-th failed try: 1 min, 2, 4, 8 … at most 4 h (D5)."""
    factor: int = 2 ** min(max(attempts - 1, 0), 30)
    return min(FIRST_RETRY * factor, MAX_RETRY)


@dataclass(frozen=True)
class Claimed:
    """A message taken for sending; ``attempts`` is the claim's fencing token."""

    id: int
    attempts: int
    contact_id: int
    message_id: str
    recipient: str
    envelope_from: str
    data: bytes
    """The message as it goes on the wire (RFC 5322, CRLF line ends)."""


@dataclass(frozen=True)
class Outcome:
    claim: Claimed
    status: Status
    error: str | None = None
    retry_at: datetime | None = None
    bounce: Literal["hard", "soft"] | None = None


async def deliver_due(
    engine: Engine,
    workspace_id: str,
    clock: Clock,
    transport: Transport,
    *,
    batch_size: int = BATCH_SIZE,
    concurrency: int | None = None,
) -> int:
    """Claim one batch of due email messages, send them, record the outcomes; returns how many
    were claimed (0: nothing is due now). ``concurrency`` (sends in flight) defaults to the
    transport's connection count: more would only queue for a connection. Database work runs in
    a thread, so an event loop that also serves HTTP is not blocked by it."""
    batch, taken = await asyncio.to_thread(claim_due, engine, workspace_id, clock, batch_size)
    if not batch:
        return taken
    outcomes: asyncio.Queue[Outcome | None] = asyncio.Queue()
    slots = asyncio.Semaphore(concurrency or transport.max_connections)

    async def send(item: Claimed) -> None:
        async with slots:
            outcomes.put_nowait(await _send_one(item, transport, clock))

    recorder = asyncio.create_task(_record_as_they_come(engine, workspace_id, clock, outcomes))
    try:
        await asyncio.gather(*(send(item) for item in batch))
    finally:
        outcomes.put_nowait(None)
        await recorder
    return taken


def deliver_pending(
    engine: Engine, workspace_id: str, clock: Clock, transport: Transport, *, batch_size: int = BATCH_SIZE
) -> int:
    """Blocking helper: deliver batches until nothing is due now, in one event loop (so pooled
    connections are reused across batches); returns how many messages were claimed in all."""

    async def run() -> int:
        total = 0
        try:
            while taken := await deliver_due(engine, workspace_id, clock, transport, batch_size=batch_size):
                total += taken
        finally:
            await transport.close()
        return total

    return asyncio.run(run())


def next_delivery_due(engine: Engine, workspace_id: str) -> datetime | None:
    """When the earliest queued (or lease-expired) email message is due; None if there is none."""
    with transaction(engine) as session:
        return session.scalar(
            select(
                func.min(func.coalesce(Message.next_attempt_at, Message.not_before, Message.created_at))
            ).where(
                Message.workspace_id == workspace_id,
                Message.channel == "email",
                Message.status.in_(("queued", "sending")),
            )
        )


# -- 1. claim ----------------------------------------------------------------------------------------


def claim_due(engine: Engine, workspace_id: str, clock: Clock, batch_size: int) -> tuple[list[Claimed], int]:
    """Claim up to ``batch_size`` due messages and build them; returns (to send, rows taken).

    Rows that must not be sent any more (blacklisted or unsubscribed contact, closed enrollment)
    or cannot be built (an unsafe header) are settled here and counted as taken, not returned.
    """
    with transaction(engine) as session:
        now = clock.now()
        due = or_(
            and_(
                Message.status == "queued",
                or_(Message.not_before.is_(None), Message.not_before <= now),
                or_(Message.next_attempt_at.is_(None), Message.next_attempt_at <= now),
            ),
            and_(Message.status == "sending", Message.next_attempt_at <= now),
        )
        stmt = (
            select(Message)
            .where(Message.workspace_id == workspace_id, Message.channel == "email", due)
            .order_by(Message.id)
            .limit(batch_size)
        )
        if is_postgresql(engine):
            stmt = stmt.with_for_update(skip_locked=True)
        rows = list(session.scalars(stmt))
        if not rows:
            return [], 0
        ctx = Ctx(session, workspace_id, load_rules(session, workspace_id), clock)
        stopped = _stopped(session, workspace_id, rows)
        batch: list[Claimed] = []
        for row in rows:
            row.attempts += 1
            row.next_attempt_at = None
            if row.id in stopped:
                row.status, row.last_error = "canceled", stopped[row.id]
                continue
            if row.attempts > MAX_ATTEMPTS:  # a message whose worker keeps dying while sending it
                row.status, row.last_error = "failed", f"gave up after {MAX_ATTEMPTS} attempts"
                continue
            try:
                url = unsubscribe_url(ctx, row.key, row.contact_id, row.sequence_id)
                data = build_message(row, ctx.workspace, date=now, unsubscribe_url=url).as_bytes()
                sender, recipient = envelope_sender(row, ctx.workspace), envelope_recipient(row)
            except UnsafeHeader as exc:
                row.status, row.last_error = "failed", f"cannot build the message: {exc}"
                continue
            row.status, row.next_attempt_at = "sending", now + LEASE
            batch.append(
                Claimed(row.id, row.attempts, row.contact_id, row.message_id, recipient, sender, data)
            )
        return batch, len(rows)


def _stopped(session: Session, workspace_id: str, rows: list[Message]) -> dict[int, str]:
    """Messages that must not go any more, with why: L2 (blacklisted), L3 (global unsubscribe), or
    an enrollment closed by an unsubscribe, complaint or bounce since the message was queued."""
    contact_ids = {row.contact_id for row in rows}
    contacts = {
        cid: (status, unsubscribed)
        for cid, status, unsubscribed in session.execute(
            select(Contact.id, Contact.lead_status, Contact.unsubscribed_at).where(
                Contact.workspace_id == workspace_id, Contact.id.in_(contact_ids)
            )
        )
    }
    enrollment_ids = {row.enrollment_id for row in rows if row.enrollment_id is not None}
    closed = set(
        session.scalars(
            select(Enrollment.id).where(
                Enrollment.id.in_(enrollment_ids), Enrollment.status.in_(_CLOSED_ENROLLMENTS)
            )
        )
        if enrollment_ids
        else ()
    )
    stopped: dict[int, str] = {}
    for row in rows:
        status, unsubscribed = contacts.get(row.contact_id, (None, None))
        if status is None:
            stopped[row.id] = "the contact no longer exists"
        elif status == "blacklisted":
            stopped[row.id] = "the contact is blacklisted (L2)"
        elif unsubscribed is not None:
            stopped[row.id] = "the contact unsubscribed from everything (L3)"
        elif row.enrollment_id in closed:
            stopped[row.id] = "the enrollment was closed before the message went out"
    return stopped


# -- 2. send -----------------------------------------------------------------------------------------


async def _send_one(item: Claimed, transport: Transport, clock: Clock) -> Outcome:
    try:
        await transport.send(item.data, item.envelope_from, [item.recipient])
    except PermanentFailure as exc:
        if exc.recipient_rejected:  # D5: a permanent rejection of the recipient is a hard bounce
            return Outcome(status="bounced", error=str(exc), bounce="hard", claim=item)
        return Outcome(status="failed", error=str(exc), claim=item)
    except TemporaryFailure as exc:
        return _retry_or_give_up(item, str(exc), exc.recipient, clock)
    except SendFailure as exc:  # a transport's own subclass: treat as temporary
        return _retry_or_give_up(item, str(exc), False, clock)
    except Exception as exc:  # a transport bug must not leave the claim hanging until the lease ends
        log.exception("transport failed on message %s", item.id)
        return _retry_or_give_up(item, f"{type(exc).__name__}: {exc}", False, clock)
    return Outcome(item, "sent")


def _retry_or_give_up(item: Claimed, error: str, recipient: bool, clock: Clock) -> Outcome:
    if item.attempts >= MAX_ATTEMPTS:
        # The recipient's server kept deferring until we gave up: that is a soft bounce (L1).
        return Outcome(status="failed", error=error, bounce="soft" if recipient else None, claim=item)
    return Outcome(status="queued", error=error, retry_at=clock.now() + backoff(item.attempts), claim=item)


# -- 3. record ---------------------------------------------------------------------------------------


async def _record_as_they_come(
    engine: Engine, workspace_id: str, clock: Clock, outcomes: asyncio.Queue[Outcome | None]
) -> None:
    finished = False
    while not finished:
        first = await outcomes.get()
        items = [] if first is None else [first]
        finished = first is None
        while not outcomes.empty():
            item = outcomes.get_nowait()
            if item is None:
                finished = True
            else:
                items.append(item)
        if items:
            await asyncio.to_thread(record_outcomes, engine, workspace_id, clock, items)


def record_outcomes(engine: Engine, workspace_id: str, clock: Clock, outcomes: Iterable[Outcome]) -> None:
    """Write send outcomes in one transaction; bounces enter the engine as ``email.bounced`` events
    through :func:`~dripflow.engine.ingest.ingest`, which blacklists the contact and closes its
    enrollments (L1, L2, S12) exactly as a bounce report would."""
    with transaction(engine) as session:
        now = clock.now()
        bounced: list[Outcome] = []
        for item in outcomes:
            values: dict[str, Any] = {
                "status": item.status,
                "last_error": item.error,
                "next_attempt_at": item.retry_at,
            }
            if item.status == "sent":
                values["sent_at"] = now
            applied = session.execute(
                update(Message)
                .where(
                    Message.id == item.claim.id,
                    Message.status == "sending",
                    Message.attempts == item.claim.attempts,
                )
                .values(**values)
                .returning(Message.id)
                .execution_options(synchronize_session=False)
            ).first()
            if applied is None:
                log.warning(
                    "message %s was taken over by another worker; its result is dropped", item.claim.id
                )
            elif item.bounce is not None:
                bounced.append(item)
        for item in bounced:
            _ingest_bounce(session, workspace_id, clock, item)


def _ingest_bounce(session: Session, workspace_id: str, clock: Clock, item: Outcome) -> None:
    event = {
        "type": "email.bounced",
        "contact": str(item.claim.contact_id),
        "message": item.claim.message_id,
        "kind": item.bounce,
        "diagnostic": item.error,
        "id": f"smtp-bounce:{item.claim.message_id}",  # applied once however often it is recorded (D3)
    }
    try:
        with session.begin_nested():
            ingest(Ctx(session, workspace_id, load_rules(session, workspace_id), clock), event)
    except IngestError as exc:  # e.g. the contact was deleted meanwhile: the message stays bounced
        session.info.pop(rules_key(workspace_id), None)
        log.warning("bounce of message %s not applied: %s", item.claim.id, exc)
