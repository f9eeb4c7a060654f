"""Email and phone addresses: validation, normalisation and typo suggestions (SPEC L4).

An address is the contact's identity inside a workspace, so it is normalised once, here, the same way
for the API, imports and events: surrounding space removed and the whole address lower-cased. Mail
providers treat local parts case-insensitively in practice, and two contacts that differ only in case
would be the duplicate every marketer has had to merge by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers
import pymailcheck
from email_validator import EmailNotValidError, validate_email

# pymailcheck's built-in lists miss common providers (its "gmx" "hotmail" entries are fused by a
# missing comma) and would "correct" reserved names such as `.test`; these lists are ours.
_POPULAR_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "yahoo.co.uk",
        "ymail.com",
        "rocketmail.com",
        "hotmail.com",
        "hotmail.co.uk",
        "outlook.com",
        "live.com",
        "msn.com",
        "aol.com",
        "aim.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "comcast.net",
        "verizon.net",
        "att.net",
        "sbcglobal.net",
        "bellsouth.net",
        "cox.net",
        "charter.net",
        "earthlink.net",
        "optonline.net",
        "protonmail.com",
        "proton.me",
        "gmx.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "mail.com",
        "zoho.com",
        "yandex.com",
        "qq.com",
        "btinternet.com",
        "sky.com",
        "shaw.ca",
        "rogers.com",
        "sympatico.ca",
    }
)
_SECOND_LEVEL = frozenset({"gmail", "hotmail", "outlook", "yahoo", "live", "icloud", "gmx", "aol", "mail"})
_TOP_LEVEL = frozenset(
    {
        "com",
        "net",
        "org",
        "edu",
        "gov",
        "mil",
        "int",
        "info",
        "biz",
        "io",
        "co",
        "me",
        "us",
        "uk",
        "co.uk",
        "org.uk",
        "ac.uk",
        "ca",
        "de",
        "fr",
        "es",
        "it",
        "nl",
        "be",
        "ch",
        "at",
        "se",
        "no",
        "dk",
        "fi",
        "ie",
        "pl",
        "pt",
        "cz",
        "gr",
        "ru",
        "jp",
        "co.jp",
        "cn",
        "kr",
        "in",
        "sg",
        "hk",
        "au",
        "com.au",
        "nz",
        "co.nz",
        "br",
        "com.br",
        "mx",
        "ar",
        "za",
        "co.za",
        "eu",
        "app",
        "dev",
    }
)
# RFC 2606 / RFC 6761 names are deliberate; never "correct" them.
_RESERVED_TLDS = frozenset({"test", "example", "invalid", "localhost"})


class InvalidAddress(ValueError):
    """An address that cannot be used, with a message a person can act on."""


@dataclass(frozen=True)
class EmailCheck:
    """A normalised email address and, when its domain looks mistyped, the likely intended address."""

    email: str
    suggestion: str | None


def normalize_email(raw: str) -> str:
    """Return the canonical form of an address, or raise :class:`InvalidAddress` saying why."""
    candidate = raw.strip()
    if not candidate:
        raise InvalidAddress("email is empty")
    try:
        checked = validate_email(candidate, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise InvalidAddress(f"invalid email {candidate!r}: {exc}") from None
    return checked.normalized.lower()


def suggest_email(email: str) -> str | None:
    """A likely correction of a mistyped domain (``gmali.com`` → ``gmail.com``), else None (SPEC L4)."""
    domain = email.rpartition("@")[2]
    if domain in _POPULAR_DOMAINS or domain.rpartition(".")[2] in _RESERVED_TLDS:
        return None
    found = pymailcheck.suggest(
        email,
        domains=_POPULAR_DOMAINS,
        second_level_domains=_SECOND_LEVEL,
        top_level_domains=_TOP_LEVEL,
    )
    if not found:
        return None
    suggestion = str(found["full"]).lower()
    return None if suggestion == email else suggestion


def check_email(raw: str) -> EmailCheck:
    """Normalise an address and attach a typo suggestion; raises :class:`InvalidAddress`."""
    email = normalize_email(raw)
    return EmailCheck(email=email, suggestion=suggest_email(email))


def normalize_phone(raw: str, default_region: str | None = None) -> str:
    """Return a phone number in E.164 form, or raise :class:`InvalidAddress` saying why.

    Numbers without a leading ``+`` need ``default_region`` (an ISO country code such as ``US``).
    """
    candidate = raw.strip()
    if default_region is None and not candidate.startswith("+"):
        raise InvalidAddress(
            f"invalid phone number {candidate!r}: write it in international form, + and the country "
            "code first (such as +1 415 555 0100)"
        )
    try:
        parsed = phonenumbers.parse(candidate, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidAddress(f"invalid phone number {candidate!r}: {exc}") from None
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidAddress(f"invalid phone number {candidate!r}: wrong number of digits")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
