"""What each route receives: the database, the clock and the caller's credential (SPEC §10).

Routes declare what they need with these ``Annotated`` aliases and stay thin; every query a
route makes is scoped to ``credential.workspace_id``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from dripflow.api.errors import ApiError
from dripflow.core.clock import Clock
from dripflow.store.apikeys import Credential, Role, check_key
from dripflow.store.database import transaction

__all__ = ["ClockDep", "EngineDep", "admin", "has_nul", "reader", "refuse_nul", "writer"]


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


EngineDep = Annotated[Engine, Depends(_engine)]
ClockDep = Annotated[Clock, Depends(_clock)]


# Declares the scheme in the OpenAPI document; the checks and their messages are ours.
_bearer = HTTPBearer(
    auto_error=False, scheme_name="ApiKey", description="An API key: `Authorization: Bearer <key>`."
)


def _credential(
    engine: EngineDep, bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Credential:
    if bearer is None or bearer.scheme.lower() != "bearer" or not bearer.credentials:
        raise ApiError(401, "unauthorized", "send an API key as `Authorization: Bearer <key>`")
    with transaction(engine) as session:
        credential = check_key(session, bearer.credentials)
    if credential is None:
        raise ApiError(401, "unauthorized", "this API key is unknown or revoked")
    return credential


def _needs(role: Role) -> Callable[[Credential], Credential]:
    def check(credential: Annotated[Credential, Depends(_credential)]) -> Credential:
        if not credential.allows(role):
            raise ApiError(
                403, "forbidden", f"this needs a key with the {role} role; yours is {credential.role}"
            )
        return credential

    return check


reader = Annotated[Credential, Depends(_needs("read"))]
writer = Annotated[Credential, Depends(_needs("write"))]
admin = Annotated[Credential, Depends(_needs("admin"))]


def has_nul(value: object) -> bool:
    """Whether a string anywhere in ``value`` holds U+0000, which PostgreSQL cannot store."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(key) or has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(has_nul(item) for item in value)
    return False


def refuse_nul(request: Request) -> None:
    """A router dependency: no path or query parameter may hold a NUL character."""
    values = [*request.path_params.values(), *request.query_params.keys(), *request.query_params.values()]
    if has_nul(values):
        raise ApiError(422, "invalid_request", "a parameter holds a NUL character (U+0000); remove it")
