"""Event webhooks of email providers (issue 5): Amazon SES through SNS, and SendGrid.

Each provider module is pure: it checks a request's signature and turns the provider's JSON into
the same ``email.bounced`` / ``email.complained`` (and, for SendGrid, ``unsubscribed``) event
dicts the RFC 3464 / RFC 5965 parsers of :mod:`dripflow.delivery.inbound` produce (SPEC D5):
``message`` is the original Message-ID, ``contact`` the recipient's address, ``kind`` hard or
soft for a bounce, and ``id`` is derived from the provider's own event id, so a webhook delivered
twice is applied once (D3). :mod:`.apply` applies them.
"""

from __future__ import annotations

import re
from email.utils import getaddresses

__all__ = ["CertificateUnavailable", "NotProviderData", "SignatureInvalid", "address", "message_id"]


class NotProviderData(ValueError):
    """The body is not what the provider sends (not JSON, not an SNS message, not an event list)."""


class SignatureInvalid(ValueError):
    """The request is not signed by the provider: missing, malformed, tampered, stale, or signed
    with a key or certificate that is not the provider's."""


class CertificateUnavailable(RuntimeError):
    """The signing certificate could not be fetched just now (a network problem: worth a retry)."""


_BRACKETED = re.compile(r"<[^<>\s]+>")


def message_id(value: object) -> str | None:
    """A Message-ID as the outbox keeps it, ``<local@domain>``; None when there is none."""
    if not isinstance(value, str):
        return None
    text = " ".join(value.split())
    found = _BRACKETED.search(text)
    if found is not None:
        return found.group(0)
    if text and " " not in text and "@" in text:
        return f"<{text}>"
    return None


def address(value: object) -> str | None:
    """``Bob@Example.test`` or ``Bob <bob@example.test>`` → ``bob@example.test``."""
    if not isinstance(value, str):
        return None
    found = [addr for _, addr in getaddresses([" ".join(value.split())]) if "@" in addr]
    return found[0].strip().lower() if len(found) == 1 else None
