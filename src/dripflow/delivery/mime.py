"""One outbox row as an RFC 5322 message (SPEC D1, D6), safe against header injection.

Why the message is built here, at send time, and not stored ready-made: the outbox keeps the
rendered parts (subject, text, HTML) and who it is from and to; the envelope details (``Date``,
the unsubscribe headers, the footer) belong to the moment of sending and to the workspace's
current settings. Building is pure (no database, no clock read: the caller passes ``date``), so it
is cheap to test and cheap to run in bulk.

How, and why this way: the message is a stdlib :class:`email.message.Message` under the
``compat32`` model (the email package's own ``email.mime`` classes use it), flattened with CRLF
line ends. The ``EmailMessage`` / ``policy.SMTP`` model parses every header value it is given into
a token tree and refolds it on output; that was two thirds of the delivery's CPU (3.7 ms per
message in ``bench smtp``, docs/performance.md). Here every value is made ready for the wire once:

* addresses: ``Name <addr>`` with a non-ASCII (or encoded-word-looking) name RFC 2047-encoded by
  :class:`email.header.Header`; the sender's and reply-to's are made once per mailbox (cached);
* the subject: as it is when it is plain ASCII, else an RFC 2047 :class:`~email.header.Header`;
* the bodies: quoted-printable once (``quopri``, the C codec), UTF-8, one part each, under a
  ``multipart/alternative`` whose boundary starts with ``=_``, which quoted-printable text can
  never contain (so no search for a free boundary is needed);
* folding: a one-line ASCII header that fits in 78 columns is written as it is (``_Policy``);
  anything longer goes through the email package's own folding, as before.

What the receiving side parses back is checked against what went in, for arbitrary Unicode
names, subjects and bodies, by a property test (tests/unit/test_mime_properties.py).

Header injection: every header value that comes from user data (contact fields rendered into the
subject, addresses, Message-IDs) is checked for CR, LF and NUL. A subject is a line of text, so
line breaks in it are folded into spaces; an address or a Message-ID with a line break is never
legitimate, so it is refused with :class:`UnsafeHeader` rather than repaired.
"""

from __future__ import annotations

import contextlib
import html
import quopri
import re
from datetime import datetime
from email.header import Header, decode_header, make_header
from email.message import Message as MimeMessage
from email.policy import Compat32
from email.utils import format_datetime, getaddresses
from functools import lru_cache
from typing import Any, Protocol, TypeAlias

from dripflow.core.model import Workspace as WorkspaceDef

__all__ = [
    "ONE_CLICK",
    "OutboxRow",
    "UnsafeHeader",
    "build_message",
    "envelope_recipient",
    "envelope_sender",
    "parse_single_address",
]

ONE_CLICK = "List-Unsubscribe=One-Click"
"""The ``List-Unsubscribe-Post`` value of RFC 8058 one-click unsubscribe."""

_LINE_BREAKS = re.compile(r"[\r\n\x00]+")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MSG_ID = re.compile(r"<[^<>@\s\"]+@[^<>@\s\"]+>")
# A bare address with nothing a parser could read as a name, a comment, a list or a route.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")
# An ASCII display name that needs no quoting (RFC 5322 atoms and spaces).
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*")
_BOUNDARY = "=_dripflow-alternative"
_MAX_LINE = 78
_HARD_LIMIT = 998


class OutboxRow(Protocol):
    """What building needs of an outbox row (a ``store.tables.Message`` or a claimed row)."""

    @property
    def key(self) -> str: ...
    @property
    def recipient(self) -> str: ...
    @property
    def sender(self) -> str | None: ...
    @property
    def mailbox(self) -> str | None: ...
    @property
    def subject(self) -> str | None: ...
    @property
    def body_text(self) -> str: ...
    @property
    def body_html(self) -> str | None: ...
    @property
    def in_reply_to(self) -> str | None: ...
    @property
    def message_id(self) -> str: ...


class _Policy(Compat32):
    """``compat32`` with CRLF line ends that writes one-line ASCII values without re-parsing them.

    Compat32 wraps every value in a :class:`~email.header.Header` to fold it. For a value that fits
    on its line that gives the same text, so it is written as it is. A value whose first word does
    not fit on the first line (a long unsubscribe URL) would be folded before that word, leaving the
    header's first line empty and its value starting with a space: it is written unfolded instead
    (RFC 5322 allows 998 octets; folding at 78 is a SHOULD). Our values never hold a line break
    (they are checked or made so before they are set); anything else goes through Header folding.
    """

    def fold_binary(self, name: str, value: str) -> bytes:  # or a Header, which Compat32 takes too
        if isinstance(value, str) and value.isascii() and value.isprintable():
            room = _MAX_LINE - len(name) - 2
            if len(value) <= room or (
                len(value.split(" ", 1)[0]) > room and len(value) <= _HARD_LIMIT - len(name) - 2
            ):
                return f"{name}: {value}\r\n".encode("ascii")
        return super().fold_binary(name, value)


_POLICY = _Policy(linesep="\r\n", max_line_length=_MAX_LINE, mangle_from_=False)


class UnsafeHeader(ValueError):
    """A header value built from user data would break out of its header (CR/LF) or is malformed."""


def _has_break(value: str) -> bool:
    return _LINE_BREAKS.search(value) is not None


def _one_line(value: str) -> str:
    """Text headers (Subject): a line break in rendered user data becomes a space."""
    return " ".join(_LINE_BREAKS.sub(" ", value).split())


def parse_single_address(value: str, header: str) -> tuple[str, str]:
    """Exactly one mailbox (``Name <a@b>`` or ``a@b``) as (display name, address); anything else is
    refused, not guessed at. A recipient such as ``"a@x.test, victim@y.test"`` must never become two
    recipients. The domain of an internationalised address is written in its ASCII (IDNA) form; a
    non-ASCII local part would need SMTPUTF8, which dripflow does not speak, so it is refused."""
    if _has_break(value):
        raise UnsafeHeader(f"{header}: line break in address {value!r}")
    if _PLAIN_ADDRESS.fullmatch(value):
        return "", value
    found = getaddresses([value])
    if len(found) != 1 or not found[0][1] or "@" not in found[0][1]:
        raise UnsafeHeader(f"{header}: {value!r} is not exactly one email address")
    name, addr = found[0]
    if "=?" in name:  # a name copied from a mail header, RFC 2047-encoded: what it stands for
        # (not a well-formed encoded word after all: the text is kept as it is)
        with contextlib.suppress(ValueError, LookupError):
            name = str(make_header(decode_header(name)))
    # A name is a line of text for people: runs of white space are one space, control characters go.
    name = _CONTROLS.sub("", " ".join(name.split()))
    if not _PLAIN_ADDRESS.fullmatch(addr):
        local, _, domain = addr.rpartition("@")
        try:
            addr = f"{local}@{domain.encode('idna').decode('ascii')}"
        except UnicodeError:
            raise UnsafeHeader(f"{header}: {value!r}: the domain is not a valid host name") from None
        if not _PLAIN_ADDRESS.fullmatch(addr):
            raise UnsafeHeader(
                f"{header}: {value!r}: this address needs SMTPUTF8 (a non-ASCII or quoted local part), "
                f"which is not supported"
            )
    return name, addr


def _address_header(name: str, addr: str, header: str) -> str | Header:
    """``Name <addr>`` for the wire: an atom-only ASCII name as it is, any other name RFC 2047-encoded
    (quoted strings would do for ASCII, but parsers differ on encoded words inside them)."""
    if not name:
        return addr
    if name.isascii() and _ATOMS.fullmatch(name) and "=?" not in name and name.strip() == name:
        return f"{name} <{addr}>"
    value = Header(name, "utf-8", header_name=header)
    value.append(f"<{addr}>", "us-ascii")
    return value


@lru_cache(maxsize=1024)
def _fixed_address(value: str, header: str) -> tuple[str | Header, str]:
    """A configured address (a mailbox's From or Reply-To): parsed and encoded once, then reused.
    An unsafe one raises every time (exceptions are not cached)."""
    name, addr = parse_single_address(value, header)
    return _address_header(name, addr, header), addr


def _msg_id(value: str, header: str) -> str:
    value = value.strip()
    if _has_break(value) or not value.isascii() or not _MSG_ID.fullmatch(value):
        raise UnsafeHeader(f"{header}: {value!r} is not a message id such as <id@domain>")
    return value


def _sender(message: OutboxRow, workspace: WorkspaceDef) -> tuple[str, str | None]:
    """(From, Reply-To): the row's sender, else its mailbox's, else the workspace default (S10)."""
    mailbox = workspace.mailbox(message.mailbox) if message.mailbox else None
    mailbox = mailbox or workspace.default_mailbox
    sender = message.sender or (mailbox.from_ if mailbox is not None else None)
    if not sender:
        raise UnsafeHeader(f"From: message {message.key!r} has no sender and the workspace no mailbox")
    return sender, mailbox.reply_to if mailbox is not None else None


def envelope_sender(message: OutboxRow, workspace: WorkspaceDef) -> str:
    """The SMTP ``MAIL FROM`` address: the bare address of the message's From."""
    return _fixed_address(_sender(message, workspace)[0], "From")[1]


def envelope_recipient(message: OutboxRow) -> str:
    """The SMTP ``RCPT TO`` address: the bare address of the message's To (the domain in IDNA form)."""
    return parse_single_address(message.recipient, "To")[1]


def _subject(value: str) -> str | Header:
    line = _one_line(value)
    if line.isascii() and line.isprintable() and "=?" not in line:
        return line
    return Header(line, "utf-8", header_name="Subject")


Mime: TypeAlias = "MimeMessage[str | Header, str | Header]"
"""A compat32 message whose header values are text or :class:`~email.header.Header` objects."""


def _set_text(part: MimeMessage[Any, Any], subtype: str, body: str) -> None:
    """Make ``part`` one UTF-8 text, quoted-printable; line ends normalised, ending with a line break."""
    lines = body.replace("\r\n", "\n").replace("\r", "\n")
    if not lines.endswith("\n"):
        lines += "\n"
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    part["Content-Transfer-Encoding"] = "quoted-printable"
    part.set_payload(quopri.encodestring(lines.encode("utf-8")).decode("ascii"))


def _text_part(subtype: str, body: str) -> MimeMessage:
    part: MimeMessage = MimeMessage(policy=_POLICY)
    _set_text(part, subtype, body)
    return part


def build_message(
    message: OutboxRow,
    workspace: WorkspaceDef,
    *,
    date: datetime,
    unsubscribe_url: str | None,
    unsubscribe_mailto: str | None = None,
    marketing: bool = True,
) -> Mime:
    """The message to hand to a transport (as ``.as_bytes()``: CRLF line ends, 7-bit clean).

    ``marketing`` (every sequence and broadcast email is marketing) adds what D1 requires: the
    ``List-Unsubscribe`` header with the signed one-click URL (and ``unsubscribe_mailto``, an
    address with an optional ``?subject=``, when given), ``List-Unsubscribe-Post`` (RFC 8058) and a
    footer with the workspace's physical address and the unsubscribe link, unless the template's
    own text already shows them. ``in_reply_to`` threads the message under the previous one (D6).
    """
    sender, reply_to = _sender(message, workspace)
    msg: Mime = MimeMessage(policy=_POLICY)
    msg["From"] = _fixed_address(sender, "From")[0]
    to_name, to_addr = parse_single_address(message.recipient, "To")
    msg["To"] = _address_header(to_name, to_addr, "To")
    if reply_to:
        msg["Reply-To"] = _fixed_address(reply_to, "Reply-To")[0]
    msg["Subject"] = _subject(message.subject or "")
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
    msg["MIME-Version"] = "1.0"
    if body_html is None:
        _set_text(msg, "plain", text)
    else:
        msg["Content-Type"] = f'multipart/alternative; boundary="{_BOUNDARY}"'
        msg.set_payload([_text_part("plain", text), _text_part("html", body_html)])
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
