"""The CSV columns a contact has, and how a header cell maps to them."""

from __future__ import annotations

import re

CONTACT_COLUMNS = ("email", "phone", "first_name", "last_name", "timezone", "source", "owner")
ADDRESS_COLUMNS = ("line1", "line2", "city", "region", "postal_code", "country")
# Spreadsheet headers users actually write, mapped to ours.
_ALIASES = {
    "e_mail": "email",
    "email_address": "email",
    "firstname": "first_name",
    "first": "first_name",
    "lastname": "last_name",
    "last": "last_name",
    "surname": "last_name",
    "time_zone": "timezone",
    "tz": "timezone",
    "phone_number": "phone",
    "mobile": "phone",
    "address": "line1",
    "address_line1": "line1",
    "address1": "line1",
    "street": "line1",
    "address_line2": "line2",
    "address2": "line2",
    "state": "region",
    "province": "region",
    "zip": "postal_code",
    "zip_code": "postal_code",
    "postcode": "postal_code",
}


def header_key(cell: str) -> str:
    """`First Name` → `first_name`; `fields.plan` → `plan`; known aliases to our names."""
    key = re.sub(r"[^a-z0-9]+", "_", cell.strip().lower()).strip("_")
    key = key.removeprefix("fields_")
    return _ALIASES.get(key, key)
