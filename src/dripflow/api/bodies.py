"""What a request body may hold to be stored: no NUL (PostgreSQL refuses it) and no lone UTF-16
surrogates (JSON's ``\\ud800`` escapes, or header bytes that were not text), which neither database
can encode. Refused with a 422 up front rather than failing as a 500 deep in a write."""

from __future__ import annotations

__all__ = ["unstorable"]


def unstorable(value: object) -> str | None:
    """Why ``value`` (strings, anywhere in dicts and lists) cannot be stored, or None."""
    if isinstance(value, str):
        if "\x00" in value:
            return "it holds a NUL character (U+0000); remove it"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "it holds text that is not valid Unicode (a lone surrogate); send UTF-8"
        return None
    if isinstance(value, dict):
        items: list[object] = [*value.keys(), *value.values()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        return None
    return next((found for item in items if (found := unstorable(item)) is not None), None)
