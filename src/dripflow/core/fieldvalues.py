"""Custom field values (SPEC §2 `fields`): text from a CSV cell or a form into the field's type."""

from __future__ import annotations

from datetime import date
from typing import Literal

FieldType = Literal["text", "number", "date", "boolean"]
FieldValue = str | int | float | bool | None

_TRUE = frozenset({"true", "yes", "y", "1", "on"})
_FALSE = frozenset({"false", "no", "n", "0", "off"})


def coerce_field(kind: FieldType, raw: str) -> FieldValue:
    """The typed value of a custom field, JSON-ready (dates as ISO text); raises ValueError saying why.

    An empty string means "no value" for every type.
    """
    text = raw.strip()
    if not text:
        return None
    if kind == "text":
        return raw
    if kind == "number":
        try:
            number = float(text.replace(",", "")) if any(c in text for c in ".eE,") else int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        return number
    if kind == "date":
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            raise ValueError(f"{text!r} is not a date (use YYYY-MM-DD)") from None
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{text!r} is not yes/no (use true or false)")
