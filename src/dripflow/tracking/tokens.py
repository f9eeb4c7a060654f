"""Signed, unguessable tokens for tracking and unsubscribe links (SPEC D2).

A token is ``base64url(payload) . base64url(HMAC-SHA256(secret, payload))``; a tampered token
fails the constant-time comparison and changes nothing. The secret comes from the environment
(``DRIPFLOW_SECRET_KEY``) only. Without it, a development key is derived from the workspace id so
that the embedded demo and simulations run; it is not secret, and the server warns about it.

Tracking URLs are ``{base_url}/t/{kind}/{workspace_id}/{token}``. The workspace id in the path is
not trusted: it only chooses the key the token is checked with, and a token verifies only under
the key of the workspace that signed it. Each kind has its own payload keys, so a token made for
one kind (an open pixel) is refused by another (an unsubscribe):

* ``o`` open pixel: ``{"c": contact id, "m": message key, "o": 1}``
* ``c`` click: ``{"c": contact id, "m": message key, "l": catalog link name}``
* ``u`` unsubscribe: ``{"c": contact id, "m": message key, "s": sequence id or null}``
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from functools import lru_cache
from typing import Any, Literal

__all__ = ["InvalidToken", "TrackingKind", "read_tracking", "secret_key", "sign", "tracking_path", "verify"]

ENV_SECRET = "DRIPFLOW_SECRET_KEY"

TrackingKind = Literal["o", "c", "u"]

_PAYLOAD_KEYS: dict[str, frozenset[str]] = {
    "o": frozenset({"c", "m", "o"}),
    "c": frozenset({"c", "m", "l"}),
    "u": frozenset({"c", "m", "s"}),
}


class InvalidToken(ValueError):
    """The token was not made by us (tampered, truncated or signed with another key)."""


def secret_key(workspace_id: str) -> bytes:
    return _derived_key(os.environ.get(ENV_SECRET) or None, workspace_id)


@lru_cache(maxsize=256)
def _derived_key(configured: str | None, workspace_id: str) -> bytes:
    # Memoised (every message signs one to three links); the environment is still read each time.
    if configured:
        return hashlib.sha256(f"{configured}:{workspace_id}".encode()).digest()
    return hashlib.sha256(f"dripflow-development-only:{workspace_id}".encode()).digest()


# json.dumps with these arguments builds this encoder for every call.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, payload: dict[str, Any]) -> str:
    body = _ENCODER.encode(payload).encode()
    mac = hmac.digest(key, body, "sha256")[:18]  # OpenSSL's one-shot HMAC (hmac.new's, less setup)
    return f"{_b64(body)}.{_b64(mac)}"


def verify(key: bytes, token: str) -> dict[str, Any]:
    try:
        body_text, mac_text = token.split(".", 1)
        body, mac = _unb64(body_text), _unb64(mac_text)
    except (ValueError, TypeError) as exc:
        raise InvalidToken("malformed token") from exc
    expected = hmac.new(key, body, hashlib.sha256).digest()[:18]
    if not hmac.compare_digest(mac, expected):
        raise InvalidToken("bad signature")
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise InvalidToken("malformed token") from exc
    if not isinstance(payload, dict):
        raise InvalidToken("malformed token")
    return payload


def tracking_path(kind: TrackingKind, workspace_id: str, payload: dict[str, Any]) -> str:
    """``/t/{kind}/{workspace_id}/{token}``, the token signed with the workspace's key."""
    if set(payload) != _PAYLOAD_KEYS[kind]:
        raise ValueError(f"a {kind!r} token carries {sorted(_PAYLOAD_KEYS[kind])}, not {sorted(payload)}")
    return f"/t/{kind}/{workspace_id}/{sign(secret_key(workspace_id), payload)}"


def read_tracking(kind: TrackingKind, workspace_id: str, token: str) -> dict[str, Any]:
    """The payload of a tracking token of ``kind`` signed for ``workspace_id``, else InvalidToken.

    Beyond the signature, the payload must have exactly the shape its kind is made with: a valid
    token of another kind, or a well-signed but odd payload, is refused the same way.
    """
    payload = verify(secret_key(workspace_id), token)
    if set(payload) != _PAYLOAD_KEYS[kind]:
        raise InvalidToken("not a token of this kind")
    contact, message = payload["c"], payload["m"]
    if not isinstance(contact, int) or isinstance(contact, bool) or contact <= 0:
        raise InvalidToken("malformed token")
    if not isinstance(message, str) or not message:
        raise InvalidToken("malformed token")
    if kind == "o" and payload["o"] != 1:
        raise InvalidToken("malformed token")
    if kind == "c" and (not isinstance(payload["l"], str) or not payload["l"]):
        raise InvalidToken("malformed token")
    if kind == "u" and payload["s"] is not None and (not isinstance(payload["s"], str) or not payload["s"]):
        raise InvalidToken("malformed token")
    return payload
