"""Replies in: which of our messages a raw email answers, and whether a person wrote it (issue 6).

A reply names the message it answers in ``In-Reply-To`` and the thread in ``References``
(RFC 5322 §3.6.4); those Message-IDs tie it to the outbox row, so to its contact, sequence and
step (S12 ``stop_on: [replied]``). Automatic answers — out-of-office notes, vacation and other
autoresponders, delivery reports that are not RFC 3464 — are recognised and never counted as
replies: an out-of-office must not stop a sequence as if the contact had answered. The signs,
strongest first:

* ``Auto-Submitted`` other than ``no`` (RFC 3834, which autoresponders are asked to set);
* the de-facto headers ``X-Autoreply``, ``X-Autorespond``, ``X-Autoresponder``,
  ``X-Mail-Autoreply``, ``X-AutoReply-From``, ``X-Auto-Reply``; ``Precedence: auto_reply``,
  ``bulk``, ``junk`` or ``list``; ``X-Failed-Recipients`` (a bounce);
* an empty envelope sender (``Return-Path: <>``, RFC 3834 §3.3) or a ``MAILER-DAEMON`` /
  ``postmaster`` sender;
* a subject that starts as out-of-office notes do ("Automatic reply:", "Out of Office", "Auto:",
  "Abwesenheitsnotiz", "Réponse automatique", …).

Pure functions of the bytes; nothing here touches the database.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import Message as MimeMessage
from email.utils import getaddresses

__all__ = ["Reply", "automatic_reason", "read_reply"]

# Message-IDs are printable ASCII (RFC 5322 §3.6.4); anything else cannot be one of ours.
_MSG_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+>")
_AUTO_HEADERS = (
    "X-Autoreply",
    "X-Autorespond",
    "X-Autoresponder",
    "X-Mail-Autoreply",
    "X-AutoReply-From",
    "X-Auto-Reply",
)
_AUTO_PRECEDENCE = frozenset({"auto_reply", "bulk", "junk", "list"})
_DAEMONS = frozenset({"mailer-daemon", "postmaster"})
_AUTO_SUBJECT = re.compile(
    r"^\s*(?:"
    r"auto(?:matic)?[\s-]*(?:reply|response|answer)|autoreply|auto:|"
    r"out of (?:the )?office|ooo\b|on vacation|vacation reply|away from (?:the office|my desk)|"
    r"abwesenheitsnotiz|automatische antwort|réponse automatique|absence du bureau|"
    r"respuesta automática|fuera de la oficina|risposta automatica|fuori sede|"
    r"automatisch antwoord|afwezig|resposta automática|fora do escritório|autosvar|automaattinen vastaus"
    r")",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Reply:
    """What a raw email says about itself.

    ``answers``: the Message-IDs it replies to, the most direct first (``In-Reply-To``, then
    ``References`` from the newest); ``key``: a stable identity for the email (its own
    Message-ID, else a hash of its bytes) so that the same email delivered twice counts once;
    ``automatic``: why it is an automatic answer, or None when a person wrote it.
    """

    answers: tuple[str, ...]
    sender: str | None
    key: str
    automatic: str | None


def read_reply(raw: bytes) -> Reply:
    msg = message_from_bytes(raw, policy=policy.compat32)
    answers: list[str] = []
    for value in (_header(msg, "In-Reply-To"), *reversed(_ids(_header(msg, "References")))):
        for found in _ids(value):
            if found not in answers:
                answers.append(found)
    own = _ids(_header(msg, "Message-ID"))
    digest = hashlib.sha256(own[0].encode() if own else raw).hexdigest()[:32]
    return Reply(tuple(answers), _sender(msg), f"reply:{digest}", automatic_reason(msg))


def automatic_reason(msg: MimeMessage) -> str | None:
    """Why ``msg`` was sent by a program rather than a person, or None (see the module docstring)."""
    submitted = _header(msg, "Auto-Submitted").strip().lower()
    if submitted and submitted.split(";")[0].strip() != "no":
        return f"Auto-Submitted: {submitted}"
    for name in _AUTO_HEADERS:
        if msg.get(name) is not None:
            return f"{name} header"
    precedence = _header(msg, "Precedence").strip().lower()
    if precedence in _AUTO_PRECEDENCE:
        return f"Precedence: {precedence}"
    if msg.get("X-Failed-Recipients") is not None:
        return "X-Failed-Recipients header (a delivery failure)"
    if _header(msg, "Return-Path").strip() in ("<>", "<<>>"):
        return "empty Return-Path (an automatic message)"
    sender = _sender(msg)
    if sender is not None and sender.partition("@")[0] in _DAEMONS:
        return f"sent by {sender}"
    subject = _decoded(_header(msg, "Subject"))
    if _AUTO_SUBJECT.search(subject):
        return f"subject {subject.strip()[:60]!r}"
    return None


def _header(msg: MimeMessage, name: str) -> str:
    values = msg.get_all(name) or []
    return " ".join(" ".join(str(value).split()) for value in values)


def _ids(value: str) -> list[str]:
    return _MSG_ID.findall(value)


def _sender(msg: MimeMessage) -> str | None:
    found = [address for _, address in getaddresses([_header(msg, "From")]) if "@" in address]
    return found[0].strip().lower() if found else None


def _decoded(value: str) -> str:
    """A header with RFC 2047 encoded words decoded (``=?utf-8?q?Abwesenheitsnotiz?=``)."""
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeDecodeError):
        return value
