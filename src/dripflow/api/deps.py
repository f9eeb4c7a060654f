"""What each route receives: the database, the clock and the caller's credential (SPEC §10).

Routes declare what they need with these ``Annotated`` aliases and stay thin; every query a
route makes is scoped to ``credential.workspace_id``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Coroutine
from functools import cache
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer
from sqlalchemy import Engine, bindparam, select
from sqlalchemy.dialects import sqlite
from starlette.requests import HTTPConnection

from dripflow.api.errors import ApiError
from dripflow.core.clock import Clock
from dripflow.store.apikeys import ROLES, Credential, Role
from dripflow.store.tables import ApiKey

__all__ = [
    "PROVIDER_CHALLENGE",
    "ClockDep",
    "EngineDep",
    "admin",
    "has_nul",
    "provider_writer",
    "reader",
    "refuse_nul",
    "writer",
]


# Dependencies that do no I/O are ``async def``: FastAPI runs a plain ``def`` dependency in its
# thread pool, a hop (and GIL hand-off) per dependency per request, a fifth of the server's CPU under
# load. Only the key check, which reads the database, stays a plain function.


async def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def _clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


EngineDep = Annotated[Engine, Depends(_engine)]
ClockDep = Annotated[Clock, Depends(_clock)]


# Declares the scheme in the OpenAPI document; the checks and their messages are ours.
_bearer = HTTPBearer(
    auto_error=False, scheme_name="ApiKey", description="An API key: `Authorization: Bearer <key>`."
)


def _credential(
    request: Request,
    engine: EngineDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Credential:
    if bearer is None or bearer.scheme.lower() != "bearer" or not bearer.credentials:
        raise ApiError(401, "unauthorized", "send an API key as `Authorization: Bearer <key>`")
    credential = _check_key(engine, bearer.credentials)
    if credential is None:
        raise ApiError(401, "unauthorized", "this API key is unknown or revoked")
    request.state.workspace = credential.workspace_id  # for the request's log record
    return credential


# -- the key check: a read, on every request --------------------------------------------------------
#
# ``store.apikeys.check_key`` does the same check in a Session; a Session's transaction on SQLite
# begins with BEGIN IMMEDIATE (store/database.py), i.e. it takes the database's single write lock,
# so every request took that lock twice (the key check, then the route's own work) and queued
# behind every writer for a plain lookup. Here the key's row is read outside any transaction: on
# SQLite the connection is in autocommit mode, so the SELECT takes no write lock and, in WAL mode,
# waits for no writer; on PostgreSQL a read never waits for writers. Nothing is written per request
# (keys keep no last-used time). A revocation counts from the next request.

_KEY_ROW = select(ApiKey.workspace_id, ApiKey.secret_hash, ApiKey.role, ApiKey.revoked_at).where(
    ApiKey.prefix == bindparam("prefix")
)


@cache
def _sqlite_key_row_sql() -> str:
    return str(_KEY_ROW.compile(dialect=sqlite.dialect()))


def _key_row(engine: Engine, prefix: str) -> Any:
    """(workspace_id, secret_hash, role, revoked_at) of the key with ``prefix``, or None."""
    if engine.dialect.name != "sqlite":
        with engine.connect() as conn:
            return conn.execute(_KEY_ROW, {"prefix": prefix}).first()
    raw = engine.raw_connection()  # the DBAPI connection, in autocommit mode: no BEGIN IMMEDIATE
    try:
        cursor = raw.cursor()
        try:
            cursor.execute(_sqlite_key_row_sql(), (prefix,))
            return cursor.fetchone()
        finally:
            cursor.close()
    finally:
        raw.close()


def _check_key(engine: Engine, presented: str) -> Credential | None:
    """What ``store.apikeys.check_key`` decides (``df_<prefix>_<secret>``, the secret's SHA-256
    compared in constant time, revoked keys refused), on a row read without a write lock."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != "df":
        return None
    row = _key_row(engine, parts[1])
    if row is None:
        return None
    workspace_id, secret_hash, role, revoked_at = row
    if revoked_at is not None:
        return None
    if not hmac.compare_digest(secret_hash, hashlib.sha256(parts[2].encode()).hexdigest()):
        return None
    return Credential(workspace_id, role if role in ROLES else "read", parts[1])


def _needs(role: Role) -> Callable[[Credential], Coroutine[Any, Any, Credential]]:
    async def check(credential: Annotated[Credential, Depends(_credential)]) -> Credential:
        if not credential.allows(role):
            raise ApiError(
                403, "forbidden", f"this needs a key with the {role} role; yours is {credential.role}"
            )
        return credential

    return check


reader = Annotated[Credential, Depends(_needs("read"))]
writer = Annotated[Credential, Depends(_needs("write"))]
admin = Annotated[Credential, Depends(_needs("admin"))]


# -- provider webhooks: the key may also come as the password of HTTP Basic ---------------------------
#
# Amazon SNS and SendGrid cannot send our `Authorization: Bearer` header, but both send the
# credentials of a URL such as https://x:KEY@host/v1/providers/ses as HTTP Basic (SNS only after a
# 401 that asks for Basic). So on the /v1/providers routes, and only there, the key is also taken
# as the Basic password (the user name is not looked at); the check is the same hashed-key check.

PROVIDER_CHALLENGE = {"WWW-Authenticate": 'Basic realm="dripflow", charset="UTF-8"'}


class _BasicDeclared(HTTPBasic):
    """Declares the Basic scheme in the OpenAPI document; the header is read by
    :func:`_provider_credential`, whose errors keep the API's own shape."""

    async def __call__(  # type: ignore[override]  # as HTTPBasic itself does
        self, request: HTTPConnection
    ) -> HTTPBasicCredentials | None:
        return None


_basic = _BasicDeclared(
    auto_error=False,
    scheme_name="ProviderBasic",
    description=(
        "Provider webhooks only (`/v1/providers/...`): an API key as the password of HTTP Basic, "
        "as in the webhook URL `https://x:<key>@host/v1/providers/ses`."
    ),
)


def _presented_key(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    _user, colon, password = decoded.partition(":")
    return password if colon and password else None


def _provider_credential(
    request: Request,
    engine: EngineDep,
    _bearer_declared: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    _basic_declared: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
) -> Credential:
    presented = _presented_key(request)
    if presented is None:
        raise ApiError(
            401,
            "unauthorized",
            "put an API key in the webhook URL as the password (https://x:<key>@host/...), "
            "or send `Authorization: Bearer <key>`",
            headers=PROVIDER_CHALLENGE,
        )
    credential = _check_key(engine, presented)
    if credential is None:
        raise ApiError(401, "unauthorized", "this API key is unknown or revoked", headers=PROVIDER_CHALLENGE)
    request.state.workspace = credential.workspace_id
    if not credential.allows("write"):
        raise ApiError(403, "forbidden", f"this needs a key with the write role; yours is {credential.role}")
    return credential


provider_writer = Annotated[Credential, Depends(_provider_credential)]


def has_nul(value: object) -> bool:
    """Whether a string anywhere in ``value`` holds U+0000, which PostgreSQL cannot store."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(key) or has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(has_nul(item) for item in value)
    return False


async def refuse_nul(request: Request) -> None:
    """A router dependency: no path or query parameter may hold a NUL character."""
    values = [*request.path_params.values(), *request.query_params.keys(), *request.query_params.values()]
    if has_nul(values):
        raise ApiError(422, "invalid_request", "a parameter holds a NUL character (U+0000); remove it")
