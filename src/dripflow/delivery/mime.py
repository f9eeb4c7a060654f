"""One outbox row as an RFC 5322 message (SPEC D1, D6), safe against header injection.

Why the message is built here, at send time, and not stored ready-made: the outbox keeps the
rendered parts (subject, text, HTML) and who it is from and to; the envelope details (``Date``,
the unsubscribe headers, the footer) belong to the moment of sending and to the workspace's
current settings. Building is pure (no database, no clock read: the caller passes ``date``), so it
is cheap to test and cheap to run in bulk.

Header injection: every header value that comes from user data (contact fields rendered into the
subject, addresses, Message-IDs) is checked for CR, LF and NUL. A subject is a line of text, so
line breaks in it are folded into spaces; an address or a Message-ID with a line break is never
legitimate, so it is refused with :class:`UnsafeHeader` rather than repaired.
"""

from __future__ import annotations

import html
import re
from datetime import datetime
from email import policy
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses

from dripflow.core.model import Workspace as WorkspaceDef
from dripflow.store.tables import Message

__all__ = ["ONE_CLICK", "UnsafeHeader", "build_message", "envelope_sender", "parse_single_address"]

ONE_CLICK = "List-Unsubscribe=One-Click"
"""The ``List-Unsubscribe-Post`` value of RFC 8058 one-click unsubscribe."""

_LINE_BREAKS = re.compile(r"[\r\n\x00]+")
_MSG_ID = re.compile(r"<[^<>@\s\"]+@[^<>@\s\"]+>")


class _HeaderClasses(HeaderRegistry):
    """The standard header registry, but each header's class is made once, not on every lookup.

    CPython's ``HeaderRegistry.__getitem__`` builds a new class with ``type()`` each time a header
    is set or its maximum count checked (about 30 times per message built here): a quarter of the
    time :func:`build_message` took, and garbage for the cycle collector. The classes it builds for
    a name are all alike, so one per name gives the same headers and the same bytes.
    """

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        made = self._made.get(name)
        if made is None:
            made = self._made[name] = super().__getitem__(name)
        return made


# SMTP policy: CRLF line endings, lines folded at 78, non-ASCII headers RFC 2047-encoded.
_POLICY = policy.SMTP.clone(header_factory=_HeaderClasses())


class UnsafeHeader(ValueError):
    """A header value built from user data would break out of its header (CR/LF) or is malformed."""


def _has_break(value: str) -> bool:
    return _LINE_BREAKS.search(value) is not None


def _one_line(value: str) -> str:
    """Text headers (Subject): a line break in rendered user data becomes a space."""
    return " ".join(_LINE_BREAKS.sub(" ", value).split())


def parse_single_address(value: str, header: str) -> Address:
    """Exactly one mailbox (``Name <a@b>`` or ``a@b``); anything else is refused, not guessed at.

    A recipient such as ``"a@x.test, victim@y.test"`` must never become two recipients.
    """
    if _has_break(value):
        raise UnsafeHeader(f"{header}: line break in address {value!r}")
    found = getaddresses([value])
    if len(found) != 1 or not found[0][1] or "@" not in found[0][1]:
        raise UnsafeHeader(f"{header}: {value!r} is not exactly one email address")
    name, addr = found[0]
    local, _, domain = addr.rpartition("@")
    try:
        return Address(display_name=name, username=local, domain=domain)
    except (ValueError, IndexError) as exc:  # the headerregistry refuses e.g. a bare ``<`` in a name
        raise UnsafeHeader(f"{header}: {value!r}: {exc}") from None


def _msg_id(value: str, header: str) -> str:
    value = value.strip()
    if _has_break(value) or not _MSG_ID.fullmatch(value):
        raise UnsafeHeader(f"{header}: {value!r} is not a message id such as <id@domain>")
    return value


def _sender(message: Message, workspace: WorkspaceDef) -> tuple[str, str | None]:
    """(From, Reply-To): the row's sender, else its mailbox's, else the workspace default (S10)."""
    mailbox = workspace.mailbox(message.mailbox) if message.mailbox else None
    mailbox = mailbox or workspace.default_mailbox
    sender = message.sender or (mailbox.from_ if mailbox is not None else None)
    if not sender:
        raise UnsafeHeader(f"From: message {message.key!r} has no sender and the workspace no mailbox")
    return sender, mailbox.reply_to if mailbox is not None else None


def envelope_sender(message: Message, workspace: WorkspaceDef) -> str:
    """The SMTP ``MAIL FROM`` address: the bare address of the message's From."""
    address = parse_single_address(_sender(message, workspace)[0], "From")
    return address.addr_spec


def build_message(
    message: Message,
    workspace: WorkspaceDef,
    *,
    date: datetime,
    unsubscribe_url: str | None,
    unsubscribe_mailto: str | None = None,
    marketing: bool = True,
) -> EmailMessage:
    """The message to hand to a transport.

    ``marketing`` (every sequence and broadcast email is marketing) adds what D1 requires: the
    ``List-Unsubscribe`` header with the signed one-click URL (and ``unsubscribe_mailto``, an
    address with an optional ``?subject=``, when given), ``List-Unsubscribe-Post`` (RFC 8058) and a
    footer with the workspace's physical address and the unsubscribe link, unless the template's
    own text already shows them. ``in_reply_to`` threads the message under the previous one (D6).
    """
    sender, reply_to = _sender(message, workspace)
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = parse_single_address(sender, "From")
    msg["To"] = parse_single_address(message.recipient, "To")
    if reply_to:
        msg["Reply-To"] = parse_single_address(reply_to, "Reply-To")
    msg["Subject"] = _one_line(message.subject or "")
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = _msg_id(message.message_id, "Message-ID")
    if message.in_reply_to:  # D6: a reply in the thread of the previous email
        parent = _msg_id(message.in_reply_to, "In-Reply-To")
        msg["In-Reply-To"] = parent
        msg["References"] = parent
    text, body_html = message.body_text, message.body_html
    if marketing:
        address = workspace.workspace.physical_address
        if unsubscribe_url is not None:
            msg["List-Unsubscribe"] = _list_unsubscribe(unsubscribe_url, unsubscribe_mailto)
            msg["List-Unsubscribe-Post"] = ONE_CLICK
        text = _text_footer(text, address, unsubscribe_url)
        if body_html is not None:
            body_html = _html_footer(body_html, address, unsubscribe_url)
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    if body_html is not None:
        msg.add_alternative(body_html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg


def _list_unsubscribe(url: str, mailto: str | None) -> str:
    targets = [url] + ([mailto if mailto.startswith("mailto:") else f"mailto:{mailto}"] if mailto else [])
    for target in targets:
        if _has_break(target) or any(char in target for char in "<>, ") or not target.isascii():
            raise UnsafeHeader(f"List-Unsubscribe: {target!r} is not a plain URL")
    return ", ".join(f"<{target}>" for target in targets)


def _text_footer(text: str, address: str | None, url: str | None) -> str:
    """D1: the physical address and unsubscribe link, added only where the template left them out."""
    lines = []
    if address and address not in text:
        lines.append(address)
    if url and url not in text:
        lines.append(f"Unsubscribe: {url}")
    if not lines:
        return text
    return text.rstrip("\n") + "\n\n-- \n" + "\n".join(lines) + "\n"


def _html_footer(body: str, address: str | None, url: str | None) -> str:
    parts = []
    if address and address not in body and html.escape(address) not in body:
        parts.append(f"<p>{html.escape(address)}</p>")
    if url and url not in body and html.escape(url) not in body:
        parts.append(f'<p><a href="{html.escape(url)}">Unsubscribe</a></p>')
    if not parts:
        return body
    footer = '<div class="dripflow-footer" style="font-size:12px;color:#666">' + "".join(parts) + "</div>"
    end = body.lower().rfind("</body>")
    if end < 0:
        return body + footer
    return body[:end] + footer + body[end:]
