"""Taking due messages out of the outbox and through a transport, each at most once (SPEC D3, D5).

Two channels go through it the same way: ``email`` (built to MIME, sent by SMTP) and ``sms``
(built to a JSON body, posted to the workspace's SMS gateway: :mod:`.sms`, docs/sms.md). Each call
works on one channel, with that channel's transport.

A message goes ``queued`` → ``sending`` (claimed) → ``sent`` | ``queued`` again (temporary failure,
with backoff) | ``bounced`` (the recipient was refused: a hard bounce, D5) | ``failed`` (given up,
or it cannot be built) | ``canceled`` (the contact was blacklisted or unsubscribed meanwhile, L2/L3).

The protocol, and why:

1. **Claim** a batch in one short transaction: due ``queued`` rows (and ``sending`` rows whose lease
   ran out: their worker died), locked with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so that
   several workers never take the same row (SPEC §10). Claiming sets ``status = 'sending'``, a
   lease in ``next_attempt_at`` and increments ``attempts``. The claim is committed *before*
   anything is sent: another worker cannot take the row while it is being sent. The messages are
   built after that commit, from the claimed rows and the workspace's cached rules, so SQLite's
   write lock is not held while a hundred messages are rendered to bytes.
2. **Send** outside any transaction (a slow SMTP server must not hold database locks), as many at
   once as the transport has connections.
3. **Record** outcomes as they come, in groups of up to one per connection (see ``_send_batch``),
   one statement per transaction (``UPDATE … FROM (VALUES …) RETURNING`` on PostgreSQL, one
   ``executemany`` on SQLite). The update only applies if the row is still
   ``sending`` with the same ``attempts``: ``attempts`` is the claim's fencing token, so a worker
   whose lease was taken over cannot overwrite the newer claim's result.

The one unavoidable window: the SMTP server (or the SMS gateway) has accepted a message and the
worker dies before step 3 commits. The row is then still ``sending``; when its lease runs out it
is sent again. We choose that (at-least-once inside the window) over marking it lost, because a
missing message is invisible while a duplicate is merely annoying. See docs/decisions.md,
"Delivery"; an SMS carries its id in ``X-Dripflow-Delivery`` so that a gateway can drop the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Literal
from typing import cast as typing_cast

from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    column,
    func,
    literal,
    or_,
    select,
    update,
    values,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from dripflow.core.clock import Clock
from dripflow.delivery.dkim import SigningFailed, sign_from, signers_for
from dripflow.delivery.mime import UnsafeHeader, build_message, envelope_recipient, envelope_sender
from dripflow.delivery.sms import NotE164, sms_body
from dripflow.delivery.transport import PermanentFailure, SendFailure, TemporaryFailure, Transport
from dripflow.engine.context import Ctx, load_rules
from dripflow.engine.ingest import IngestError, ingest
from dripflow.engine.messages import unsubscribe_url
from dripflow.store.database import transaction
from dripflow.store.tables import Contact, Enrollment, Message, UTCDateTime
from dripflow.store.workspaces import rules_key

__all__ = [
    "BATCH_SIZE",
    "CHANNELS",
    "LEASE",
    "MAX_ATTEMPTS",
    "backoff",
    "claim_due",
    "deliver_due",
    "deliver_pending",
    "next_delivery_due",
    "record_outcomes",
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
UNRECORDED_PER_SEND = 2
"""Messages per connection that may be sent before the earlier ones' outcomes are committed."""
RECORD_WITHIN = 0.05
"""Seconds an outcome may wait for others to be written with (fewer than a connection's worth)."""

Status = Literal["sent", "queued", "bounced", "failed"]
Channel = Literal["email", "sms"]
CHANNELS: tuple[Channel, ...] = ("email", "sms")

_M = typing_cast(Table, Message.__table__)


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
    """The message as it goes on the wire: RFC 5322 with CRLF line ends, or an SMS's JSON body."""
    channel: Channel = "email"


@dataclass(frozen=True)
class Outcome:
    claim: Claimed
    status: Status
    error: str | None = None
    retry_at: datetime | None = None
    bounce: Literal["hard", "soft"] | None = None


@dataclass(frozen=True)
class _Row:
    """A claimed outbox row: what building the message needs (``mime.OutboxRow``, ``sms.SmsRow``)
    and its identity."""

    id: int
    attempts: int
    contact_id: int
    enrollment_id: int | None
    sequence_id: str | None
    step_id: str | None
    key: str
    recipient: str
    sender: str | None
    mailbox: str | None
    subject: str | None
    body_text: str
    body_html: str | None
    in_reply_to: str | None
    message_id: str


_ROW_COLUMNS = [_M.c[name] for name in _Row.__dataclass_fields__]


async def deliver_due(
    engine: Engine,
    workspace_id: str,
    clock: Clock,
    transport: Transport,
    *,
    batch_size: int = BATCH_SIZE,
    concurrency: int | None = None,
    channel: Channel = "email",
) -> int:
    """Claim one batch of due messages of ``channel``, send them through ``transport`` (that
    channel's), record the outcomes; returns how many were claimed (0: nothing is due now).
    ``concurrency`` (sends in flight) defaults to the transport's connection count: more would
    only queue for a connection. The claim and the building run in a thread; outcomes are
    recorded on the event loop (one short statement per transaction; a hop to a thread for each
    cost more CPU than the write itself), so run this on a loop of its own, as ``deliver_pending``
    does, not on one that serves HTTP."""
    batch, taken = await asyncio.to_thread(claim_due, engine, workspace_id, clock, batch_size, channel)
    await _deliver_claimed(engine, workspace_id, clock, transport, batch, taken, concurrency)
    return taken


async def _deliver_claimed(
    engine: Engine,
    workspace_id: str,
    clock: Clock,
    transport: Transport,
    batch: list[Claimed],
    taken: int,
    concurrency: int | None,
    on_drained: Callable[[], None] | None = None,
) -> None:
    """Send a claimed batch and log what became of it; ``on_drained`` is called once every
    message of the batch has been handed to a connection (the last ones may still be on the wire)."""
    if not taken:
        return
    counts: Counter[str] = Counter(claimed=taken, settled_at_claim=taken - len(batch))
    if batch:
        counts.update(
            await _send_batch(engine, workspace_id, clock, transport, batch, concurrency, on_drained)
        )
    elif on_drained is not None:
        on_drained()
    log.info(
        "delivery batch",
        extra={"event": "delivery.batch", "workspace": workspace_id, "counts": dict(counts)},
    )


async def _send_batch(
    engine: Engine,
    workspace_id: str,
    clock: Clock,
    transport: Transport,
    batch: list[Claimed],
    concurrency: int | None,
    on_drained: Callable[[], None] | None = None,
) -> Counter[str]:
    """Send ``batch`` on ``width`` lanes (one per connection), recording outcomes as they come;
    returns how many ended in each status.

    Outcomes are written in groups of up to ``width``: a lane that completes a send writes what
    is waiting once ``width`` outcomes wait or the oldest has waited ``RECORD_WITHIN``, and the rest
    is written when the batch ends (or fails, or is cancelled: what was sent is recorded). The
    duplicate window (module docstring): a send starts only while fewer than
    ``UNRECORDED_PER_SEND`` x width sent messages wait for their outcome's commit, so a worker
    killed at any moment leaves at most that many accepted but unrecorded.
    """
    width = concurrency or transport.max_connections
    unrecorded = asyncio.Semaphore(UNRECORDED_PER_SEND * width)
    loop = asyncio.get_running_loop()
    queue = iter(batch)
    pending: list[Outcome] = []
    oldest = 0.0
    statuses: Counter[str] = Counter()
    drained = False

    def write() -> None:
        items = pending[:]
        pending.clear()
        record_outcomes(engine, workspace_id, clock, items)  # on the loop: see deliver_due
        for _ in items:
            unrecorded.release()

    async def lane() -> None:
        nonlocal drained, oldest
        for item in queue:  # shared: each message is taken by one lane
            await unrecorded.acquire()
            outcome = await _send_one(item, transport, clock)
            statuses[outcome.status] += 1
            if not pending:
                oldest = loop.time()
            pending.append(outcome)
            if len(pending) >= width or loop.time() - oldest >= RECORD_WITHIN:
                write()
        if not drained:
            drained = True
            if on_drained is not None:
                on_drained()

    try:
        async with asyncio.TaskGroup() as lanes:
            for _ in range(min(width, len(batch))):
                lanes.create_task(lane())
    except BaseExceptionGroup as group:  # a write failed: the other lanes were stopped
        raise group.exceptions[0] from None
    finally:
        if pending:
            write()
    return statuses


def deliver_pending(
    engine: Engine,
    workspace_id: str,
    clock: Clock,
    transport: Transport,
    *,
    batch_size: int = BATCH_SIZE,
    stop: threading.Event | None = None,
    channel: Channel = "email",
) -> int:
    """Blocking helper: deliver batches of ``channel`` through ``transport`` until nothing is due
    now (or ``stop`` is set: the batch being sent is finished first), in one event loop (so pooled
    connections are reused across batches); returns how many messages were claimed in all."""

    def claim() -> asyncio.Future[tuple[list[Claimed], int]]:
        return asyncio.ensure_future(
            asyncio.to_thread(claim_due, engine, workspace_id, clock, batch_size, channel)
        )

    async def run() -> int:
        total = 0
        upcoming: asyncio.Future[tuple[list[Claimed], int]] | None = claim()

        def claim_next() -> None:
            # The next batch is claimed and built while this one's last messages are on the wire,
            # so the connections do not idle through a claim (unless a stop was asked).
            nonlocal upcoming
            if stop is None or not stop.is_set():
                upcoming = claim()

        try:
            while upcoming is not None:
                batch, taken = await upcoming
                upcoming = None
                if not taken:
                    break
                total += taken
                await _deliver_claimed(engine, workspace_id, clock, transport, batch, taken, None, claim_next)
        finally:
            if upcoming is not None:  # claimed while this batch failed: its rows wait out their lease
                with contextlib.suppress(Exception):
                    await upcoming
            await transport.close()
        return total

    return asyncio.run(run())


def next_delivery_due(
    engine: Engine, workspace_id: str, channels: Sequence[Channel] = CHANNELS
) -> datetime | None:
    """When the earliest queued (or lease-expired) message of ``channels`` is due; None if there is
    none (or no channel is asked about)."""
    if not channels:
        return None
    with transaction(engine) as session:
        return session.scalar(
            select(
                func.min(func.coalesce(Message.next_attempt_at, Message.not_before, Message.created_at))
            ).where(
                Message.workspace_id == workspace_id,
                Message.channel.in_(channels),
                Message.status.in_(("queued", "sending")),
            )
        )


# -- 1. claim ----------------------------------------------------------------------------------------


def claim_due(
    engine: Engine, workspace_id: str, clock: Clock, batch_size: int, channel: Channel = "email"
) -> tuple[list[Claimed], int]:
    """Claim up to ``batch_size`` due messages of ``channel`` and build them; returns (to send,
    rows taken).

    Rows that must not be sent any more (blacklisted or unsubscribed contact, closed enrollment:
    L2, L3, for SMS as for email) are settled in the claim; rows that cannot be built (an unsafe
    header, an SMS recipient not in E.164 form) are recorded ``failed`` right after it. Both are
    counted as taken, not returned.
    """
    with transaction(engine) as session:
        now = clock.now()
        rows = _claim(session.connection(), workspace_id, now, batch_size, channel)
        if not rows:
            return [], 0
        ctx = Ctx(session, workspace_id, load_rules(session, workspace_id), clock)
        # DKIM keys (docs/delivery.md): a key that cannot be had raises here, inside the claim's
        # transaction, which is rolled back: the rows stay queued, none goes out unsigned. Email
        # only: an SMS is not signed by DKIM, and a missing key must not hold SMS back.
        signers = signers_for(ctx.workspace.delivery) if channel == "email" else {}
        taken = len(rows)
        rows = _settle_stopped(session.connection(), workspace_id, rows, now)
    # Built outside the claim's transaction: the rules and the signing keys are all it needs.
    batch: list[Claimed] = []
    unbuildable: list[Outcome] = []
    date = clock.now()
    for row in rows:
        try:
            if channel == "email":
                url = unsubscribe_url(ctx, row.key, row.contact_id, row.sequence_id)
                sender = envelope_sender(row, ctx.workspace)
                # The exact bytes that go on the wire, DKIM-signed when the From domain has a key.
                data = sign_from(
                    signers,
                    sender,
                    build_message(row, ctx.workspace, date=date, unsubscribe_url=url).as_bytes(),
                )
                claim = Claimed(
                    row.id,
                    row.attempts,
                    row.contact_id,
                    row.message_id,
                    envelope_recipient(row),
                    sender,
                    data,
                )
            else:
                claim = _sms_claim(workspace_id, row)
        except (UnsafeHeader, SigningFailed, NotE164) as exc:
            failed = Claimed(
                row.id, row.attempts, row.contact_id, row.message_id, row.recipient, "", b"", channel
            )
            unbuildable.append(Outcome(failed, "failed", f"cannot build the message: {exc}"))
            continue
        batch.append(claim)
    if unbuildable:
        record_outcomes(engine, workspace_id, clock, unbuildable)
    return batch, taken


def _sms_claim(workspace_id: str, row: _Row) -> Claimed:
    """An SMS ready for the gateway: its JSON body (raises ``NotE164`` for a bad recipient)."""
    data = sms_body(workspace_id, row)
    return Claimed(
        row.id, row.attempts, row.contact_id, row.message_id, row.recipient, row.sender or "", data, "sms"
    )


def _claim(
    conn: Connection, workspace_id: str, now: datetime, batch_size: int, channel: Channel
) -> list[_Row]:
    """Select the due rows of ``channel`` and mark them ``sending`` under a lease; returns them with
    the claim's ``attempts`` (the fencing token).

    Two selects, each on one status (rows whose lease ran out first, then queued ones in id
    order), not one with an OR of both: with the OR, SQLite's planner read every message the
    workspace ever had, sent ones included, and sorted them, for each batch (11 ms a claim with
    20,000 messages, growing with the outbox's history); on one status it walks that status's
    index, already in id order, and stops at the batch's end (0.2 ms).
    """
    found: list[Any] = []
    for due in (
        and_(_M.c.status == "sending", _M.c.next_attempt_at <= now),
        and_(
            _M.c.status == "queued",
            or_(_M.c.not_before.is_(None), _M.c.not_before <= now),
            or_(_M.c.next_attempt_at.is_(None), _M.c.next_attempt_at <= now),
        ),
    ):
        if len(found) >= batch_size:
            break
        stmt = (
            select(*_ROW_COLUMNS)
            .where(due, _M.c.workspace_id == workspace_id, _M.c.channel == channel)
            .order_by(_M.c.id)
            .limit(batch_size - len(found))
        )
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        found.extend(conn.execute(stmt).all())
    if not found:
        return []
    conn.execute(
        update(_M)
        .where(_M.c.id.in_([row.id for row in found]))
        .values(status="sending", attempts=_M.c.attempts + 1, next_attempt_at=now + LEASE)
    )
    claimed = []
    for row in found:
        fields = row._asdict()
        fields["attempts"] += 1  # as the UPDATE just set it: the claim's fencing token
        claimed.append(_Row(**fields))
    return claimed


_SETTLE = (
    update(_M)
    .where(_M.c.id == bindparam("row_id"))
    .values(status=bindparam("new_status"), last_error=bindparam("error"), next_attempt_at=None)
)


def _settle_stopped(conn: Connection, workspace_id: str, rows: list[_Row], now: datetime) -> list[_Row]:
    """Cancel the rows that must not go any more and fail those whose worker kept dying on them;
    returns the rest, to be sent."""
    stopped = _stopped(conn, workspace_id, rows)
    settled: list[dict[str, Any]] = []
    sending: list[_Row] = []
    for row in rows:
        if row.id in stopped:
            settled.append({"row_id": row.id, "new_status": "canceled", "error": stopped[row.id]})
        elif row.attempts > MAX_ATTEMPTS:  # a message whose worker keeps dying while sending it
            error = f"gave up after {MAX_ATTEMPTS} attempts"
            settled.append({"row_id": row.id, "new_status": "failed", "error": error})
        else:
            sending.append(row)
    if settled:
        conn.execute(_SETTLE, settled)
    return sending


def _stopped(conn: Connection, workspace_id: str, rows: Sequence[_Row]) -> dict[int, str]:
    """Messages that must not go any more, with why: L2 (blacklisted), L3 (global unsubscribe), or
    an enrollment closed by an unsubscribe, complaint or bounce since the message was queued."""
    contact_ids = {row.contact_id for row in rows}
    contacts = {
        cid: (status, unsubscribed)
        for cid, status, unsubscribed in conn.execute(
            select(Contact.id, Contact.lead_status, Contact.unsubscribed_at).where(
                Contact.workspace_id == workspace_id, Contact.id.in_(contact_ids)
            )
        )
    }
    enrollment_ids = {row.enrollment_id for row in rows if row.enrollment_id is not None}
    closed = set(
        conn.scalars(
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
        # D5: a permanent rejection of the recipient is a hard bounce, of an email only: a refused
        # SMS is `failed` and never enters the engine as `email.bounced` (no blacklisting, L1).
        if exc.recipient_rejected and item.channel == "email":
            return Outcome(status="bounced", error=str(exc), bounce="hard", claim=item)
        return Outcome(status="failed", error=str(exc), claim=item)
    except TemporaryFailure as exc:
        return _retry_or_give_up(item, str(exc), exc.recipient, clock, exc.retry_after)
    except SendFailure as exc:  # a transport's own subclass: treat as temporary
        return _retry_or_give_up(item, str(exc), False, clock)
    except Exception as exc:  # a transport bug must not leave the claim hanging until the lease ends
        log.exception("transport failed on message %s", item.id)
        return _retry_or_give_up(item, f"{type(exc).__name__}: {exc}", False, clock)
    return Outcome(item, "sent")


def _retry_or_give_up(
    item: Claimed, error: str, recipient: bool, clock: Clock, retry_after: timedelta | None = None
) -> Outcome:
    if item.attempts >= MAX_ATTEMPTS:
        # The recipient's server kept deferring until we gave up: that is a soft bounce (L1), of
        # an email only.
        soft = recipient and item.channel == "email"
        return Outcome(status="failed", error=error, bounce="soft" if soft else None, claim=item)
    wait = backoff(item.attempts)
    if retry_after is not None:  # the server's own "not before", within our longest wait
        wait = max(wait, min(retry_after, MAX_RETRY))
    return Outcome(status="queued", error=error, retry_at=clock.now() + wait, claim=item)


# -- 3. record ---------------------------------------------------------------------------------------


def record_outcomes(engine: Engine, workspace_id: str, clock: Clock, outcomes: Iterable[Outcome]) -> None:
    """Write send outcomes in one transaction, with one statement; bounces enter the engine as
    ``email.bounced`` events through :func:`~dripflow.engine.ingest.ingest`, which blacklists the
    contact and closes its enrollments (L1, L2, S12) exactly as a bounce report would."""
    items = list(outcomes)
    if not items:
        return
    # Core on a connection, not an ORM session: this runs after every few messages sent.
    with engine.begin() as conn:
        now = clock.now()
        if conn.dialect.name == "postgresql":
            applied = _record_postgresql(conn, items, now)
        else:
            applied = _record_sqlite(conn, items, now)
        for item in items:
            if item.claim.id not in applied:
                log.warning(
                    "message %s was taken over by another worker; its result is dropped", item.claim.id
                )
        bounced = [item for item in items if item.bounce is not None and item.claim.id in applied]
        if bounced:  # a session for the engine, in this same transaction
            with Session(bind=conn, expire_on_commit=False) as session:
                for item in bounced:
                    _ingest_bounce(session, workspace_id, clock, item)
                session.flush()


def _record_postgresql(conn: Connection, items: list[Outcome], now: datetime) -> set[int]:
    """``UPDATE … FROM (VALUES …) RETURNING``: one statement, and the ids it applied to."""
    rows = values(
        column("row_id", Integer),
        column("claim", Integer),
        column("new_status", String),
        column("error", String),
        column("retry_at", UTCDateTime()),
        name="outcome",
    ).data([(item.claim.id, item.claim.attempts, item.status, item.error, item.retry_at) for item in items])
    stmt = (
        update(_M)
        .where(_M.c.id == rows.c.row_id, _M.c.status == "sending", _M.c.attempts == rows.c.claim)
        .values(
            status=rows.c.new_status,
            last_error=rows.c.error,
            # A column of NULLs in VALUES is text to PostgreSQL: say what it is.
            next_attempt_at=cast(rows.c.retry_at, UTCDateTime()),
            sent_at=case((rows.c.new_status == "sent", literal(now, UTCDateTime())), else_=_M.c.sent_at),
        )
        .returning(_M.c.id)
    )
    return set(conn.scalars(stmt))


_RECORD_ONE = (
    update(_M)
    .where(_M.c.id == bindparam("row_id"), _M.c.status == "sending", _M.c.attempts == bindparam("claim"))
    .values(
        status=bindparam("new_status"),
        last_error=bindparam("error"),
        next_attempt_at=bindparam("retry_at", type_=UTCDateTime()),
        sent_at=case(
            (bindparam("new_status") == "sent", bindparam("now", type_=UTCDateTime())), else_=_M.c.sent_at
        ),
    )
)


@cache
def _sqlite_record(dialect: Dialect) -> tuple[str, tuple[str, ...], dict[str, Any], Callable[[Any], Any]]:
    """``_RECORD_ONE`` compiled for SQLite once: its SQL, the order of its parameters, the values
    of its literal ones, and how SQLAlchemy stores a UTC instant there (so what is written is
    exactly what ``conn.execute(_RECORD_ONE, …)`` would write)."""
    compiled = _RECORD_ONE.compile(dialect=dialect)
    assert compiled.positiontup is not None
    store = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert store is not None
    return compiled.string, tuple(compiled.positiontup), dict(compiled.params), store


def _record_sqlite(conn: Connection, items: list[Outcome], now: datetime) -> set[int]:
    """One ``executemany`` (SQLite's UPDATE … FROM cannot name the columns of a VALUES list), sent
    to the driver as it is: SQLAlchemy's per-row parameter processing was a quarter of a write's
    CPU. All rows applied unless the count says otherwise; then the rows themselves tell which did
    (the transaction holds the write lock, so nobody changed them in between)."""
    sql, order, literals, store = _sqlite_record(conn.dialect)
    stored_now = store(now)
    rows = []
    for item in items:
        values = {
            **literals,
            "row_id": item.claim.id,
            "claim": item.claim.attempts,
            "new_status": item.status,
            "error": item.error,
            "retry_at": store(item.retry_at),
            "now": stored_now,
        }
        rows.append(tuple(values[name] for name in order))
    result = conn.exec_driver_sql(sql, rows)
    if result.rowcount == len(items):
        return {item.claim.id for item in items}
    wrote = {item.claim.id: (item.claim.attempts, item.status) for item in items}
    found = conn.execute(select(_M.c.id, _M.c.attempts, _M.c.status).where(_M.c.id.in_(wrote)))
    return {row_id for row_id, attempts, status in found if wrote[row_id] == (attempts, status)}


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
