"""Where a built message goes: the :class:`Transport` interface and its SMTP implementation.

The outbox needs to know one thing about a failed send: try again later (:class:`TemporaryFailure`)
or never (:class:`PermanentFailure`, with whether the *recipient* was refused, which is a hard
bounce, SPEC D5). Every transport maps its own errors onto those two, so the outbox's retry and
bounce rules are written once.

SMTP settings come from the workspace's ``delivery.smtp`` or from ``DRIPFLOW_SMTP_URL``, which
overrides it (SPEC §10). Secrets come from the environment only: the password is read from the
variable ``password_env`` names, or from the URL in ``DRIPFLOW_SMTP_URL`` (itself environment).

:class:`SmtpTransport` keeps a small pool of open connections and reuses them: opening a TLS
session and authenticating per message would cost more than sending it. The pool is bound to the
event loop that opened it; on a new loop (each ``asyncio.run``) stale connections are dropped.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from email.message import Message
from typing import Any, Literal, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from dripflow.core.errors import UserError
from dripflow.core.model import Delivery

__all__ = [
    "ENV_SMTP_URL",
    "PermanentFailure",
    "SendFailure",
    "SmtpSettings",
    "SmtpTransport",
    "TemporaryFailure",
    "Transport",
    "smtp_settings",
    "transport_for",
]

ENV_SMTP_URL = "DRIPFLOW_SMTP_URL"
Security = Literal["none", "starttls", "tls"]
_DEFAULT_PORTS: dict[Security, int] = {"none": 25, "starttls": 587, "tls": 465}
_SCHEMES: dict[str, Security] = {
    "smtp": "none",
    "smtp+starttls": "starttls",
    "submission": "starttls",
    "smtps": "tls",
    "smtp+tls": "tls",
}
IDLE_PROBE_AFTER = 5.0
"""Seconds after which an idle pooled connection is checked with NOOP before it is reused."""
_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


class SendFailure(Exception):
    """A send that did not go through; ``code`` is the SMTP reply code when there was one."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class TemporaryFailure(SendFailure):
    """Try again later (4xx replies, refused or dropped connections, timeouts, bad credentials).

    ``recipient`` says the recipient's server deferred this address (a 4xx on RCPT or DATA), as
    opposed to a problem on our side of the connection; only the former can become a soft bounce.
    ``retry_after``: the server asked us to wait at least that long (an HTTP ``Retry-After``); the
    outbox then waits that, or its own backoff if that is longer.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        recipient: bool = False,
        retry_after: timedelta | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.recipient = recipient
        self.retry_after = retry_after


class PermanentFailure(SendFailure):
    """Never try again. ``recipient_rejected``: the recipient address itself was refused (D5)."""

    def __init__(self, message: str, *, code: int | None = None, recipient_rejected: bool = False) -> None:
        super().__init__(message, code=code)
        self.recipient_rejected = recipient_rejected


class Transport(Protocol):
    """Something that delivers one message to its recipients, or raises a :class:`SendFailure`."""

    @property
    def max_connections(self) -> int:
        """How many sends it can have in flight at once (the outbox sends no more than that)."""
        ...

    async def send(
        self, data: bytes | Message[Any, Any], envelope_from: str, recipients: Sequence[str]
    ) -> None:
        """Deliver ``data``: a message ready for the wire (RFC 5322, CRLF line ends), or a
        :class:`~email.message.Message` to be flattened first."""

    async def close(self) -> None:
        """Release connections; called before the event loop that used the transport ends."""


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: Security
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # never print the password into a log
        return (
            f"SmtpSettings(host={self.host!r}, port={self.port}, security={self.security!r}, "
            f"username={self.username!r}, password={'***' if self.password else None})"
        )


def smtp_settings(delivery: Delivery | None, environ: Mapping[str, str] | None = None) -> SmtpSettings | None:
    """The SMTP server to use, or None when there is none (the capture outbox, SPEC §10).

    ``DRIPFLOW_SMTP_URL`` overrides ``delivery.smtp``. A ``password_env`` naming an unset variable
    is a configuration error, reported as such rather than as an authentication failure later.
    """
    env = os.environ if environ is None else environ
    url = env.get(ENV_SMTP_URL)
    if url:
        return parse_smtp_url(url)
    smtp = delivery.smtp if delivery is not None else None
    if smtp is None:
        return None
    password = None
    if smtp.password_env:
        password = env.get(smtp.password_env)
        if password is None:
            raise UserError(
                f"delivery.smtp.password_env names {smtp.password_env}, which is not set in the environment"
            )
    return SmtpSettings(smtp.host, smtp.port, smtp.security, smtp.username, password)


def parse_smtp_url(url: str) -> SmtpSettings:
    """``smtp://[user[:password]@]host[:port]`` (no TLS), ``smtp+starttls://`` / ``submission://``
    (STARTTLS), ``smtps://`` (TLS from the start); ``?security=none|starttls|tls`` overrides."""
    parts = urlsplit(url)
    security = _SCHEMES.get(parts.scheme.lower())
    if security is None or not parts.hostname:
        raise UserError(
            f"{ENV_SMTP_URL} must look like smtp://host:port, smtp+starttls://… or smtps://… (got a "
            f"{parts.scheme or 'schemeless'} URL)"
        )
    wanted = parse_qs(parts.query).get("security", [None])[0]
    if wanted is not None:
        if wanted not in _DEFAULT_PORTS:
            raise UserError(f"{ENV_SMTP_URL}: security must be none, starttls or tls, not {wanted!r}")
        security = wanted
    try:
        port = parts.port or _DEFAULT_PORTS[security]
    except ValueError:
        raise UserError(f"{ENV_SMTP_URL}: the port is not a number") from None
    return SmtpSettings(
        parts.hostname,
        port,
        security,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
    )


def transport_for(
    delivery: Delivery | None, environ: Mapping[str, str] | None = None
) -> SmtpTransport | None:
    """The SMTP transport a workspace's messages go through, or None (the capture outbox)."""
    settings = smtp_settings(delivery, environ)
    return SmtpTransport(settings) if settings is not None else None


class SmtpTransport:
    """Sends through one SMTP server with up to ``max_connections`` reused connections."""

    def __init__(self, settings: SmtpSettings, *, max_connections: int = 4, timeout: float = 60.0) -> None:
        self.settings = settings
        self.max_connections = max_connections
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []

    def _bind(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._slots is None:
            self._loop, self._slots, self._idle = loop, asyncio.Semaphore(self.max_connections), []
        return self._slots

    async def send(
        self, data: bytes | Message[Any, Any], envelope_from: str, recipients: Sequence[str]
    ) -> None:
        if not isinstance(data, bytes):
            data = data.as_bytes()
        async with self._bind():
            client = await self._checkout()
            try:
                if client is None:
                    client = await self._connect()
                # Bytes, not a Message object: aiosmtplib would flatten (and refold) it again.
                await client.sendmail(envelope_from, list(recipients), data)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                # The envelope was reset (RSET): the connection is still good for the next message.
                self._checkin(client)
                raise _recipients_refused(exc) from exc
            except aiosmtplib.SMTPException as exc:
                await _discard(client)
                raise _classify(exc) from exc
            except OSError as exc:  # refused, reset, unreachable, TLS handshake failures
                await _discard(client)
                raise TemporaryFailure(
                    f"cannot reach {self.settings.host}:{self.settings.port}: {exc}"
                ) from exc
            except asyncio.CancelledError:  # mid-dialogue: the session's state is unknown
                if client is not None:
                    client.close()
                raise
            self._checkin(client)

    async def _checkout(self) -> aiosmtplib.SMTP | None:
        """An idle connection that still works, or None. One idle for a while is probed with NOOP
        first: servers drop idle sessions, and a drop noticed mid-transaction could not be retried
        safely (the message might already have been accepted)."""
        while self._idle:
            client, since = self._idle.pop()
            if not client.is_connected:
                continue
            if time.monotonic() - since < IDLE_PROBE_AFTER:
                return client
            try:
                await client.noop()
            except (aiosmtplib.SMTPException, OSError):
                await _discard(client)
                continue
            return client
        return None

    def _checkin(self, client: aiosmtplib.SMTP | None) -> None:
        if client is not None and client.is_connected:
            self._idle.append((client, time.monotonic()))

    async def _connect(self) -> aiosmtplib.SMTP:
        settings = self.settings
        client = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            use_tls=settings.security == "tls",
            start_tls=settings.security == "starttls",
            username=settings.username,
            password=settings.password,
            timeout=self.timeout,
        )
        await client.connect()
        return client

    async def close(self) -> None:
        """QUIT every idle connection (call before the event loop ends)."""
        idle, self._idle = self._idle, []
        for client, _since in idle:
            await _discard(client, polite=True)


async def _discard(client: aiosmtplib.SMTP | None, *, polite: bool = False) -> None:
    if client is None or not client.is_connected:
        return
    try:
        if polite:
            await client.quit()
        else:
            client.close()
    except (aiosmtplib.SMTPException, OSError):
        client.close()


def _recipients_refused(exc: aiosmtplib.SMTPRecipientsRefused) -> SendFailure:
    refusals = exc.recipients
    text = "; ".join(f"{item.recipient}: {item.code} {item.message}" for item in refusals)
    if refusals and all(item.code >= 500 for item in refusals):
        return PermanentFailure(f"recipient refused: {text}", code=refusals[0].code, recipient_rejected=True)
    code = refusals[0].code if refusals else None
    return TemporaryFailure(f"recipient deferred: {text}", code=code, recipient=True)


def _classify(exc: aiosmtplib.SMTPException) -> SendFailure:
    """Map an aiosmtplib error onto temporary / permanent (RFC 5321 reply classes, RFC 3463 codes)."""
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError | aiosmtplib.SMTPNotSupported):
        # Our configuration, not the message: retry, so fixing the settings lets the queue drain.
        return TemporaryFailure(f"SMTP configuration problem: {exc}")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError):
        return TemporaryFailure(f"the SMTP server timed out: {exc}")
    if isinstance(exc, aiosmtplib.SMTPConnectError) and not isinstance(exc, aiosmtplib.SMTPResponseException):
        return TemporaryFailure(f"cannot reach the SMTP server: {exc}")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return TemporaryFailure(f"the SMTP server closed the connection: {exc}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        text = f"{exc.code} {exc.message}"
        if isinstance(exc, aiosmtplib.SMTPConnectResponseError | aiosmtplib.SMTPHeloError):
            return TemporaryFailure(f"server refused the session: {text}", code=exc.code)
        if 400 <= exc.code < 500:
            return TemporaryFailure(
                f"deferred: {text}", code=exc.code, recipient=isinstance(exc, aiosmtplib.SMTPDataError)
            )
        if exc.code >= 500:
            if isinstance(exc, aiosmtplib.SMTPSenderRefused):
                return PermanentFailure(f"sender refused: {text}", code=exc.code)
            # After DATA a 5.1.x status (bad mailbox or domain) still refuses the recipient.
            enhanced = _ENHANCED.search(exc.message)
            mailbox = enhanced is not None and enhanced.group(2) == "1"
            return PermanentFailure(f"rejected: {text}", code=exc.code, recipient_rejected=mailbox)
        return TemporaryFailure(f"unexpected reply: {text}", code=exc.code)
    return TemporaryFailure(f"SMTP error: {exc}")
