"""Durable, signed outbound webhooks (SPEC A2; see docs/webhooks.md for receivers).

Queueing is part of the engine's transaction: :func:`queue_webhook` inserts a row into
``webhook_deliveries`` (idempotent by its key) and journals ``webhook.queued``, so a webhook
exists exactly when the change that caused it was committed, and the engine never waits for a
receiver. :func:`deliver_webhooks` is the delivery side, run by the worker: it claims due rows
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several workers never take the same row), commits
the claim with a lease, POSTs each body *outside* any transaction, then records the outcome:
``delivered`` on a 2xx, otherwise back to ``pending`` with an exponential backoff. A worker that
dies mid-delivery leaves the row ``sending`` until its lease runs out, when it is taken again:
nothing is lost (a receiver may, rarely, see a delivery twice and recognises it by its id).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from dripflow.core.clock import Clock
from dripflow.core.contact_view import ContactView
from dripflow.engine.context import Ctx, load_rules
from dripflow.store.database import dialect_insert, is_postgresql, transaction
from dripflow.store.tables import WebhookDelivery

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "Post",
    "action_webhook_key",
    "backoff",
    "deliver_webhooks",
    "http_post",
    "next_webhook_due",
    "queue_webhook",
    "sign_body",
]

SIGNATURE_HEADER = "X-Dripflow-Signature"
DELIVERY_HEADER = "X-Dripflow-Delivery"
EVENT_HEADER = "X-Dripflow-Event"

BATCH_SIZE = 50
BASE_DELAY = timedelta(seconds=30)
MAX_DELAY = timedelta(hours=1)
MAX_ATTEMPTS = 72  # 30 s doubling to the 1 h cap: about three days of retries before `failed`
LEASE = timedelta(minutes=5)
TIMEOUT_SECONDS = 10.0

# POST ``body`` to ``url`` with ``headers``; returns the HTTP status. Raising means "not delivered".
Post = Callable[[str, bytes, Mapping[str, str]], int]


# -- queueing (the engine's side) ---------------------------------------------------------------


def queue_webhook(
    ctx: Ctx,
    contact: ContactView | None,
    event: str,
    payload: Mapping[str, Any] | None,
    key: str,
    *,
    url: str | None = None,
) -> bool:
    """Queue one webhook in the engine's transaction; False when ``key`` is already queued.

    ``url`` defaults to the workspace's ``delivery.integrations.webhook``; with neither, nothing is
    queued. The body is an envelope (docs/webhooks.md) whose ``data`` is ``payload``.
    """
    if url is None:
        integration = ctx.workspace.delivery.integrations
        url = integration.webhook if integration is not None else None
    if url is None:
        return False
    now = ctx.now
    body: dict[str, Any] = {
        "id": key,
        "event": event,
        "workspace": ctx.workspace_id,
        "occurred_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "contact": _contact(contact) if contact is not None else None,
        "data": dict(payload or {}),
    }
    inserted = ctx.session.execute(
        dialect_insert(ctx.session, WebhookDelivery)
        .values(
            workspace_id=ctx.workspace_id,
            key=key,
            url=url,
            event=event,
            contact_id=contact.id if contact is not None else None,
            payload=body,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=[WebhookDelivery.workspace_id, WebhookDelivery.key])
        .returning(WebhookDelivery.id)
    ).first()
    if inserted is None:
        return False
    ctx.log("webhook.queued", contact, url=url, event=event)
    return True


def action_webhook_key(ctx: Ctx, contact_id: int, event: str) -> str:
    """A deterministic, unique key for the webhook of one action: contact, event, instant, ordinal.

    The ordinal counts the same contact's webhooks for that event at that instant already queued,
    so two actions in one moment (grant, revoke, grant) get distinct keys (an index range scan).
    """
    prefix = f"{event}:{contact_id}:{ctx.now.strftime('%Y%m%dT%H%M%S.%fZ')}:"
    taken = ctx.session.scalar(
        select(func.count())
        .select_from(WebhookDelivery)
        .where(
            WebhookDelivery.workspace_id == ctx.workspace_id,
            WebhookDelivery.key >= prefix,
            WebhookDelivery.key < prefix + "~",
        )
    )
    return f"{prefix}{int(taken or 0) + 1}"


def _contact(contact: ContactView) -> dict[str, Any]:
    return {
        "id": contact.id,
        "email": contact.email,
        "phone": contact.phone,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
    }


# -- delivering (the worker's side) -------------------------------------------------------------


def sign_body(secret: str, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def encode_body(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: 30 s, 1 min, 2 min … capped at 1 h."""
    delay: timedelta = BASE_DELAY * (2 ** min(max(attempts - 1, 0), 20))
    return min(delay, MAX_DELAY)


def http_post(url: str, body: bytes, headers: Mapping[str, str]) -> int:
    """POST with the standard library; an HTTP error status is returned, a network error raised."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@dataclass(frozen=True)
class _Claimed:
    id: int
    url: str
    key: str
    event: str
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class _Outcome:
    claimed: _Claimed
    status: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def deliver_webhooks(
    engine: Engine,
    workspace_id: str,
    clock: Clock,
    post: Post = http_post,
    batch_size: int = BATCH_SIZE,
) -> int:
    """Claim and attempt one batch of due webhooks; returns how many were attempted."""
    claimed, secret_env = _claim(engine, workspace_id, clock.now(), batch_size)
    if not claimed:
        return 0
    secret = os.environ.get(secret_env) if secret_env else None
    outcomes = [_attempt(item, post, secret_env, secret) for item in claimed]
    _record(engine, clock.now(), outcomes)
    return len(claimed)


def _claim(
    engine: Engine, workspace_id: str, now: datetime, batch_size: int
) -> tuple[list[_Claimed], str | None]:
    with transaction(engine) as session:
        stmt = (
            select(WebhookDelivery)
            .where(
                WebhookDelivery.workspace_id == workspace_id,
                WebhookDelivery.status.in_(("pending", "sending")),  # "sending": a lapsed lease
                WebhookDelivery.next_attempt_at <= now,
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(batch_size)
        )
        if is_postgresql(engine):
            stmt = stmt.with_for_update(skip_locked=True)
        rows = list(session.scalars(stmt))
        if not rows:
            return [], None
        integration = load_rules(session, workspace_id).workspace.delivery.integrations
        claimed = []
        for row in rows:
            row.status = "sending"
            row.attempts += 1
            row.next_attempt_at = now + LEASE
            claimed.append(_Claimed(row.id, row.url, row.key, row.event, dict(row.payload), row.attempts))
        return claimed, integration.secret_env if integration is not None else None


def _attempt(item: _Claimed, post: Post, secret_env: str | None, secret: str | None) -> _Outcome:
    if secret_env and not secret:
        return _Outcome(item, None, f"environment variable {secret_env} is not set: cannot sign")
    body = encode_body(item.payload)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "dripflow-webhooks/1",
        DELIVERY_HEADER: item.key,
        EVENT_HEADER: item.event,
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign_body(secret, body)
    try:
        status = post(item.url, body, headers)
    except Exception as exc:  # any failure to reach the receiver is a failed attempt, retried
        return _Outcome(item, None, f"{type(exc).__name__}: {exc}"[:500])
    return _Outcome(item, status, None if 200 <= status < 300 else f"HTTP {status}")


def _record(engine: Engine, now: datetime, outcomes: list[_Outcome]) -> None:
    with transaction(engine) as session:
        for outcome in outcomes:
            row = session.get(WebhookDelivery, outcome.claimed.id)
            # Someone else took it again after our lease ran out: their outcome is the one to keep.
            if row is None or row.status != "sending" or row.attempts != outcome.claimed.attempts:
                continue
            row.response_status = outcome.status
            if outcome.delivered:
                row.status = "delivered"
                row.delivered_at = now
                row.last_error = None
                row.next_attempt_at = now
            elif row.attempts >= MAX_ATTEMPTS:
                row.status = "failed"
                row.last_error = outcome.error
            else:
                row.status = "pending"
                row.last_error = outcome.error
                row.next_attempt_at = now + backoff(row.attempts)


def next_webhook_due(engine: Engine, workspace_id: str) -> datetime | None:
    """When a webhook of the workspace is next due (a retry, or a lapsed lease)."""
    with transaction(engine) as session:
        return session.scalar(
            select(func.min(WebhookDelivery.next_attempt_at)).where(
                WebhookDelivery.workspace_id == workspace_id,
                WebhookDelivery.status.in_(("pending", "sending")),
            )
        )
