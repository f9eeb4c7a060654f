"""Signed, unguessable tokens for tracking and unsubscribe links (SPEC D2).

A token is ``base64url(payload) . base64url(HMAC-SHA256(secret, payload))``; a tampered token
fails the constant-time comparison and changes nothing. The secret comes from the environment
(``DRIPFLOW_SECRET_KEY``) only. Without it, a development key is derived from the workspace id so
that the embedded demo and simulations run; it is not secret, and the server warns about it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from typing import Any

__all__ = ["InvalidToken", "secret_key", "sign", "verify"]

ENV_SECRET = "DRIPFLOW_SECRET_KEY"


class InvalidToken(ValueError):
    """The token was not made by us (tampered, truncated or signed with another key)."""


def secret_key(workspace_id: str) -> bytes:
    configured = os.environ.get(ENV_SECRET)
    if configured:
        return hashlib.sha256(f"{configured}:{workspace_id}".encode()).digest()
    return hashlib.sha256(f"dripflow-development-only:{workspace_id}".encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, payload: dict[str, Any]) -> str:
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    mac = hmac.new(key, body, hashlib.sha256).digest()[:18]
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
