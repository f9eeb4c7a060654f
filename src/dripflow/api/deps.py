"""What each route receives: the database, the clock and the caller's credential (SPEC §10).

Routes declare what they need with these ``Annotated`` aliases and stay thin; every query a
route makes is scoped to ``credential.workspace_id``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine

from dripflow.api.errors import ApiError
from dripflow.core.clock import Clock
from dripflow.store.apikeys import Credential, Role, check_key
from dripflow.store.database import transaction

__all__ = ["ClockDep", "EngineDep", "admin", "reader", "writer"]


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


EngineDep = Annotated[Engine, Depends(_engine)]
ClockDep = Annotated[Clock, Depends(_clock)]


def _credential(request: Request, engine: EngineDep) -> Credential:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "send an API key as `Authorization: Bearer <key>`")
    with transaction(engine) as session:
        credential = check_key(session, token.strip())
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
