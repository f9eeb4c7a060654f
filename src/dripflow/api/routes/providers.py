"""``POST /v1/providers/ses`` and ``POST /v1/providers/sendgrid``: the event webhooks of email
providers (issue 5), turned into ``email.bounced`` / ``email.complained`` / ``unsubscribed``
events (SPEC D5), so a hard bounce or a complaint blacklists the contact and closes its
enrollments (L1, L2) exactly as a bounce report does.

Each request passes two checks before anything is read from its events:

* the workspace's API key (write role), as the password of HTTP Basic — the form a webhook URL
  ``https://x:KEY@host/v1/providers/ses`` gives — or as ``Authorization: Bearer``; a 401 asks for
  Basic, since SNS only sends the URL's credentials when challenged;
* the provider's signature (SNS: RSA over the canonical string, certificate from an SNS host;
  SendGrid: ECDSA over timestamp + body, with the key the workspace names in
  ``delivery.events.sendgrid.public_key_env``). A request that fails it is a 403 ``bad_signature``
  and changes nothing.

Then every event about a message (or, without a Message-ID, a contact) of this workspace is
applied, once (D3), and the others are ignored and counted, never the whole request refused: see
:mod:`dripflow.delivery.providers.apply`. docs/providers.md has the set-up and the mapping.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from dripflow.api.bodies import unstorable
from dripflow.api.deps import ClockDep, EngineDep, provider_writer, refuse_nul
from dripflow.api.errors import ApiError, error_responses
from dripflow.api.schemas import ProviderEvent, ProviderResult
from dripflow.core.model import DeliveryEvents
from dripflow.delivery.providers import CertificateUnavailable, NotProviderData, SignatureInvalid
from dripflow.delivery.providers.apply import Applied, apply_provider_events
from dripflow.delivery.providers.sendgrid import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    load_public_key,
    sendgrid_events,
    verify_sendgrid,
)
from dripflow.delivery.providers.ses import (
    SnsVerifier,
    check_sns_url,
    fetch_over_https,
    read_envelope,
    ses_events,
)
from dripflow.engine.context import load_rules
from dripflow.store.database import transaction

__all__ = ["MAX_PROVIDER_BYTES", "ProviderClients", "router"]

MAX_PROVIDER_BYTES = 10 * 1024 * 1024

_log = logging.getLogger("dripflow.providers")


@dataclass
class ProviderClients:
    """What the provider routes reach out with, kept on ``app.state.providers`` so that tests (which
    have no internet) inject their own: the SNS signature checker with its certificate fetcher, and
    the GET that confirms an SNS subscription."""

    sns: SnsVerifier = field(default_factory=SnsVerifier)
    confirm_subscription: Callable[[str], object] = fetch_over_https


router = APIRouter(prefix="/v1/providers", tags=["providers"], dependencies=[Depends(refuse_nul)])

_JSON_TEXT = {"schema": {"type": "string", "description": "The SNS message, as SNS posts it (JSON)."}}
_SNS_BODY = {
    "type": "object",
    "description": "An SNS message: Notification, SubscriptionConfirmation or UnsubscribeConfirmation.",
    "additionalProperties": True,
}
_SENDGRID_BODY = {
    "type": "array",
    "description": "A batch of SendGrid events, as SendGrid posts it.",
    "items": {"type": "object", "additionalProperties": True},
}
_RESPONSES: dict[int | str, dict[str, Any]] = error_responses(401, 403, 413, 422)
_RESPONSES[403]["description"] = (
    "`bad_signature`: not signed by the provider (nothing was applied); `forbidden`: a read key; "
    "`topic_not_accepted` (SES), `not_configured` (SendGrid): see docs/providers.md."
)
_RESPONSES[401]["headers"] = {
    "WWW-Authenticate": {
        "description": '`Basic realm="dripflow"`: put the key in the webhook URL as the password',
        "schema": {"type": "string"},
    }
}


@router.post(
    "/ses",
    response_model=ProviderResult,
    responses={**_RESPONSES, **error_responses(502)},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/plain": _JSON_TEXT, "application/json": {"schema": _SNS_BODY}},
        }
    },
)
async def ses(
    request: Request, credential: provider_writer, engine: EngineDep, clock: ClockDep
) -> ProviderResult:
    """Amazon SES bounce and complaint notifications, through an SNS HTTPS subscription."""
    raw = await _read(request)
    clients: ProviderClients = request.app.state.providers
    return await run_in_threadpool(_ses, engine, clients, credential.workspace_id, raw, clock.now())


@router.post(
    "/sendgrid",
    response_model=ProviderResult,
    responses=_RESPONSES,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _SENDGRID_BODY}}}
    },
)
async def sendgrid(
    request: Request, credential: provider_writer, engine: EngineDep, clock: ClockDep
) -> ProviderResult:
    """SendGrid's Signed Event Webhook: bounces, drops, spam reports and unsubscribes."""
    raw = await _read(request)
    signature = request.headers.get(SIGNATURE_HEADER)
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    return await run_in_threadpool(
        _sendgrid, engine, credential.workspace_id, raw, signature, timestamp, clock.now()
    )


# -- SES ---------------------------------------------------------------------------------------------


def _ses(
    engine: Engine, clients: ProviderClients, workspace_id: str, raw: bytes, now: datetime
) -> ProviderResult:
    try:
        envelope = read_envelope(raw)
    except NotProviderData as exc:
        raise ApiError(422, "invalid_request", str(exc)) from None
    config = _config(engine, workspace_id).ses
    if config is not None and config.topic_arns and envelope.topic_arn not in config.topic_arns:
        raise ApiError(
            403,
            "topic_not_accepted",
            f"the topic {envelope.topic_arn} is not among this workspace's delivery.events.ses.topic_arns",
        )
    try:
        clients.sns.verify(envelope, now)
    except SignatureInvalid as exc:
        raise ApiError(
            403, "bad_signature", f"not signed by Amazon SNS: {exc}; nothing was applied"
        ) from None
    except CertificateUnavailable as exc:
        raise ApiError(502, "certificate_unavailable", f"cannot check the signature now: {exc}") from None
    if envelope.type == "SubscriptionConfirmation":
        return _confirm(clients, workspace_id, envelope.subscribe_url or "", envelope.topic_arn)
    if envelope.type == "UnsubscribeConfirmation":
        _log.warning(
            "SNS subscription ended",
            extra={"event": "provider.sns.unsubscribed", "workspace": workspace_id,
                   "fields": {"topic": envelope.topic_arn}},
        )  # fmt: skip
        return _result("ses", "unsubscribe_confirmation", 1, [], "the subscription to the topic has ended")
    notification = ses_events(envelope)
    return _apply(
        engine, workspace_id, "ses", notification.kind, 1, notification.events, now, notification.reason
    )


def _confirm(clients: ProviderClients, workspace_id: str, url: str, topic: str) -> ProviderResult:
    """Decision (docs/providers.md): a verified SubscriptionConfirmation is confirmed at once by
    GETting its SubscribeURL, which must be on an SNS host too; if that fails, 502 (SNS tries
    again) and the URL is logged for the operator to open by hand."""
    try:
        check_sns_url(url, certificate=False)
    except SignatureInvalid as exc:
        raise ApiError(403, "bad_signature", str(exc)) from None
    try:
        clients.confirm_subscription(url)
    except Exception as exc:  # any failure of the GET: the operator can still confirm by hand
        _log.warning(
            "SNS subscription not confirmed",
            extra={"event": "provider.sns.confirm_failed", "workspace": workspace_id,
                   "fields": {"topic": topic, "subscribe_url": url, "error": str(exc)}},
        )  # fmt: skip
        raise ApiError(
            502,
            "confirmation_failed",
            f"confirming the subscription failed ({exc}); open {url} to confirm it",
        ) from None
    _log.info(
        "SNS subscription confirmed",
        extra={"event": "provider.sns.confirmed", "workspace": workspace_id, "fields": {"topic": topic}},
    )
    return _result("ses", "subscription_confirmed", 1, [], f"subscribed to {topic}")


# -- SendGrid ----------------------------------------------------------------------------------------


def _sendgrid(
    engine: Engine, workspace_id: str, raw: bytes, signature: str | None, timestamp: str | None, now: datetime
) -> ProviderResult:
    config = _config(engine, workspace_id).sendgrid
    if config is None:
        raise ApiError(
            403,
            "not_configured",
            "this workspace takes no SendGrid events: set delivery.events.sendgrid.public_key_env "
            "to the name of the environment variable that holds SendGrid's verification key",
        )
    text = os.environ.get(config.public_key_env, "")
    if not text.strip():
        raise ApiError(
            403,
            "not_configured",
            f"the environment variable {config.public_key_env} (delivery.events.sendgrid.public_key_env) "
            "is not set: put SendGrid's verification key in it",
        )
    try:
        key = load_public_key(text)
    except ValueError as exc:
        raise ApiError(
            403, "not_configured", f"the environment variable {config.public_key_env} holds {exc}"
        ) from None
    try:
        verify_sendgrid(key, signature, timestamp, raw, now)
    except SignatureInvalid as exc:
        raise ApiError(403, "bad_signature", f"not signed by SendGrid: {exc}; nothing was applied") from None
    try:
        batch = sendgrid_events(raw)
    except NotProviderData as exc:
        raise ApiError(422, "invalid_request", str(exc)) from None
    reason = None if batch.events else "no bounce, drop, spam report or unsubscribe in the batch"
    return _apply(engine, workspace_id, "sendgrid", "batch", batch.received, batch.events, now, reason)


# -- shared ------------------------------------------------------------------------------------------


async def _read(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_PROVIDER_BYTES:
            raise ApiError(413, "too_large", f"a webhook request may be at most {MAX_PROVIDER_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _config(engine: Engine, workspace_id: str) -> DeliveryEvents:
    with transaction(engine) as session:
        events = load_rules(session, workspace_id).workspace.delivery.events
    return events or DeliveryEvents()


def _apply(
    engine: Engine,
    workspace_id: str,
    provider: Literal["ses", "sendgrid"],
    kind: str,
    received: int,
    events: list[dict[str, Any]],
    now: datetime,
    reason: str | None,
) -> ProviderResult:
    if unstorable(events) is not None:
        raise ApiError(
            422, "invalid_request", f"the events hold text that cannot be stored: {unstorable(events)}"
        )
    return _result(provider, kind, received, apply_provider_events(engine, workspace_id, events, now), reason)


def _result(
    provider: Literal["ses", "sendgrid"], kind: str, received: int, done: list[Applied], reason: str | None
) -> ProviderResult:
    def count(outcome: str) -> int:
        return sum(1 for item in done if item.outcome == outcome)

    return ProviderResult(
        provider=provider,
        kind=kind,
        received=received,
        applied=count("applied"),
        duplicates=count("duplicate"),
        ignored=count("ignored"),
        events=[_summary(item) for item in done],
        reason=reason,
    )


def _summary(item: Applied) -> ProviderEvent:
    kind = item.event.get("kind")
    message = item.event.get("message")
    return ProviderEvent(
        type=str(item.event["type"]),
        message=str(message) if message else None,
        kind=str(kind) if kind is not None else None,
        outcome=item.outcome,
        reason=item.reason,
    )
