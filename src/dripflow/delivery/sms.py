"""SMS through a gateway: one signed JSON ``POST`` per message to ``delivery.sms.webhook`` (issue 5).

The outbox claims ``queued`` SMS rows as it claims email (SPEC D3: each at most once; L2/L3: a
blacklisted or globally unsubscribed contact's SMS is canceled at the claim) and builds each into a
JSON body with :func:`sms_body`; :class:`SmsGatewayTransport` posts it. The wire format, the
signature and what each answer means are documented for gateway authors in docs/sms.md.

The request is signed as the A2 webhooks are (``X-Dripflow-Signature: sha256=<hex HMAC-SHA256 of
the raw body>``, keyed with the variable ``secret_env`` names) and carries the message's id in
``X-Dripflow-Delivery``: a worker that dies after the gateway accepted a message but before the
outcome was recorded sends it again when its lease runs out (docs/decisions.md, "Delivery"), and
the gateway drops that duplicate by its id.

Answers: ``2xx`` sent; ``401``, ``403`` (the gateway refuses our signature: the two sides' secrets
differ, which fixing the secret cures), ``408``, ``429``, ``5xx``, timeouts and connection errors are
temporary (retried with the outbox's backoff, at least ``Retry-After``); any other answer is
permanent, and the message is ``failed``. A refused SMS is never an email bounce: the contact is
not blacklisted.

A recipient that is not an E.164 number is never sent (the message is ``failed``): numbers are
normalised on entry (``core.addresses.normalize_phone``), but events may carry a contact's phone as
written.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx

from dripflow.core.addresses import InvalidAddress, normalize_phone
from dripflow.core.errors import UserError
from dripflow.core.model import Delivery
from dripflow.delivery.transport import PermanentFailure, TemporaryFailure
from dripflow.engine.webhooks import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, encode_body, sign_body

__all__ = [
    "EVENT",
    "MissingSecret",
    "NotE164",
    "SmsGatewayTransport",
    "SmsRow",
    "e164",
    "sms_body",
    "sms_transport_for",
]

EVENT = "sms"
"""The ``X-Dripflow-Event`` of an SMS request (A2 webhooks carry their SPEC §3 event there)."""
TIMEOUT_SECONDS = 10.0
"""Connect, write and read timeout of one request (as the A2 webhooks')."""
MAX_ANSWER = 64 * 1024
"""Bytes of a gateway's answer read at most (the rest is dropped with its connection)."""
_DETAIL = 200
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")


class NotE164(ValueError):
    """A recipient that is not an E.164 phone number: the message cannot be sent."""


class MissingSecret(UserError):
    """``delivery.sms.secret_env`` names a variable that is not set: nothing may be sent unsigned."""


def e164(number: str) -> str:
    """``number`` itself if it is in E.164 form (``+``, country code, at most 15 digits in all, a
    possible number for its country); else :class:`NotE164` saying why."""
    if _E164.fullmatch(number):
        try:
            if normalize_phone(number) == number:
                return number
        except InvalidAddress:
            pass
    raise NotE164(f"the recipient {number!r} is not an E.164 phone number (such as +15555550123)")


class SmsRow(Protocol):
    """What an SMS body is built from (a claimed outbox row)."""

    @property
    def key(self) -> str: ...
    @property
    def contact_id(self) -> int: ...
    @property
    def recipient(self) -> str: ...
    @property
    def sender(self) -> str | None: ...
    @property
    def body_text(self) -> str: ...
    @property
    def sequence_id(self) -> str | None: ...
    @property
    def step_id(self) -> str | None: ...


def sms_body(workspace_id: str, row: SmsRow) -> bytes:
    """The request body of one SMS (docs/sms.md): compact JSON, keys sorted, UTF-8. ``id`` is the
    outbox key, the same on every try. Raises :class:`NotE164` for a recipient not in E.164 form."""
    return encode_body(
        {
            "id": row.key,
            "workspace": workspace_id,
            "to": e164(row.recipient),
            "from": row.sender,
            "text": row.body_text,
            "contact": row.contact_id,
            "sequence": row.sequence_id,
            "step": row.step_id,
        }
    )


def sms_transport_for(
    delivery: Delivery | None, environ: Mapping[str, str] | None = None
) -> SmsGatewayTransport | None:
    """The gateway transport of a workspace's ``delivery.sms``, or None (SMS are captured).

    ``secret_env`` naming a variable that is unset (or empty) raises :class:`MissingSecret`: the
    caller sends no SMS then, and they stay ``queued`` until the secret is there. Without
    ``secret_env`` requests go unsigned, as A2 webhooks do (docs/webhooks.md).
    """
    gateway = delivery.sms if delivery is not None else None
    if gateway is None:
        return None
    secret = None
    if gateway.secret_env:
        env = os.environ if environ is None else environ
        secret = env.get(gateway.secret_env)
        if not secret:
            raise MissingSecret(
                f"delivery.sms.secret_env names {gateway.secret_env}, which is not set in the "
                "environment: cannot sign, so no SMS is sent (they stay queued until it is set)"
            )
    return SmsGatewayTransport(gateway.webhook, secret)


class SmsGatewayTransport:
    """Posts SMS bodies to one gateway URL on up to ``max_connections`` pooled HTTP connections.

    A :class:`~dripflow.delivery.transport.Transport`: ``data`` is a body made by :func:`sms_body`,
    ``recipients`` its one ``to``. The client is bound to the event loop that made it; on a new
    loop (each ``asyncio.run``) a new one is made, as ``SmtpTransport`` does with its pool.
    """

    def __init__(
        self,
        url: str,
        secret: str | None,
        *,
        max_connections: int = 4,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.url = url
        self.max_connections = max_connections
        self.timeout = timeout
        self._secret = secret
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:  # never print the secret into a log
        return f"SmsGatewayTransport({self.url!r}, signed={self._secret is not None})"

    def headers(self, body: bytes, delivery_id: str) -> dict[str, str]:
        """The request's headers: the A2 webhook scheme (docs/webhooks.md) with the SMS's id."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "dripflow-sms/1",
            DELIVERY_HEADER: delivery_id,
            EVENT_HEADER: EVENT,
        }
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign_body(self._secret, body)
        return headers

    def _bind(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._loop = loop
            self._client = httpx.AsyncClient(
                limits=httpx.Limits(
                    max_connections=self.max_connections, max_keepalive_connections=self.max_connections
                ),
                # Waiting for a free connection is bounded by the requests that hold them.
                timeout=httpx.Timeout(self.timeout, pool=None),
                follow_redirects=False,  # a signed POST is not replayed to wherever a 3xx points
            )
        return self._client

    async def send(
        self, data: bytes | Message[Any, Any], envelope_from: str, recipients: Sequence[str]
    ) -> None:
        """POST one SMS; returns when the gateway accepted it (2xx), else raises a ``SendFailure``."""
        if not isinstance(data, bytes):
            raise PermanentFailure("an SMS gateway takes the JSON body of an SMS, not an email message")
        delivery_id = _check(data, recipients)
        client = self._bind()
        headers = self.headers(data, delivery_id)
        try:
            async with client.stream("POST", self.url, content=data, headers=headers) as response:
                try:
                    answer = await _read(response)
                except httpx.HTTPError:
                    if response.is_success:  # accepted; the rest of its answer is not needed
                        return
                    raise
        except httpx.TimeoutException as exc:
            # Possibly received all the same: a resend is recognised by its X-Dripflow-Delivery.
            raise TemporaryFailure(f"the SMS gateway timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:  # refused, reset, unreachable, TLS, protocol errors
            raise TemporaryFailure(f"cannot reach the SMS gateway: {type(exc).__name__}: {exc}") from exc
        _classify(response.status_code, response.headers.get("Retry-After"), answer)

    async def close(self) -> None:
        """Close the pooled connections (call before the event loop ends)."""
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.aclose()


def _check(data: bytes, recipients: Sequence[str]) -> str:
    """The body's id, after checking it is an SMS body to ``recipients``' one E.164 number."""
    try:
        body = json.loads(data)
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not body["id"]:
        raise PermanentFailure("not an SMS body: a JSON object with an id is expected")
    if list(recipients) != [body.get("to")]:
        raise PermanentFailure(f"the SMS body is to {body.get('to')!r}, not to {list(recipients)!r}")
    try:
        e164(recipients[0])
    except NotE164 as exc:
        raise PermanentFailure(str(exc)) from None
    return str(body["id"])


async def _read(response: httpx.Response) -> bytes:
    """Up to ``MAX_ANSWER`` bytes of the answer: all of a normal one, so its connection is reused."""
    got = bytearray()
    async for chunk in response.aiter_raw():
        got += chunk
        if len(got) > MAX_ANSWER:
            break
    return bytes(got)


def _classify(status: int, retry_after: str | None, answer: bytes) -> None:
    """Return on 2xx; else raise: temporary for 401, 403, 408, 429 and 5xx, permanent for anything
    else. 401/403 are our configuration, not the message (as SMTP authentication errors are): retried,
    so that once the secrets agree the queue drains instead of every SMS having failed meanwhile."""
    if 200 <= status < 300:
        return
    detail = " ".join(answer[: _DETAIL * 4].decode("utf-8", "replace").split())[:_DETAIL]
    text = f"the SMS gateway answered HTTP {status}" + (f": {detail}" if detail else "")
    if status in (401, 403):
        text += " (is delivery.sms.secret_env the secret the gateway checks?)"
        raise TemporaryFailure(text, code=status, retry_after=_wait(retry_after))
    if status in (408, 429) or status >= 500:
        raise TemporaryFailure(text, code=status, retry_after=_wait(retry_after))
    if 300 <= status < 400:
        text += " (redirects are not followed: set delivery.sms.webhook to the final URL)"
    raise PermanentFailure(text, code=status)


def _wait(value: str | None) -> timedelta | None:
    """``Retry-After`` (RFC 9110: seconds, or an HTTP date) as a wait from now; None if absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    # An HTTP date is wall-clock time, whatever clock the outbox runs on.
    return max(when - datetime.now(UTC), timedelta(0))
