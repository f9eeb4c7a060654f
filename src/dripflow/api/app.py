"""The FastAPI application: one factory, given the database and the clock (injected for tests)."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import Engine

from dripflow import __version__
from dripflow.api.errors import install_error_handlers
from dripflow.api.ratelimit import TrackingRateLimit, configured_limit
from dripflow.api.routes import (
    automations,
    broadcasts,
    contacts,
    enrollments,
    events,
    health,
    inbound,
    lists,
    metrics,
    outbox,
    reports,
    sequences,
    tracking,
    workspace,
)
from dripflow.core.clock import Clock, SystemClock

__all__ = ["create_app"]


def create_app(engine: Engine, clock: Clock | None = None) -> FastAPI:
    app = FastAPI(
        title="dripflow",
        version=__version__,
        description=(
            "Marketing automation and email sequences. Authenticate with `Authorization: Bearer <key>`."
        ),
    )
    app.state.engine = engine
    app.state.clock = clock or SystemClock()
    install_error_handlers(app)
    for module in (health, events, contacts, lists, outbox, inbound, sequences, tracking, metrics):
        app.include_router(module.router)
    # Sequences, enrollments, automations, broadcasts, the workspace, reports (issue 6).
    for module in (enrollments, automations, broadcasts, workspace, reports):
        app.include_router(module.router)
    configured_limit()  # a wrong DRIPFLOW_TRACKING_RATE_LIMIT stops start-up, not a request
    app.add_middleware(TrackingRateLimit, prefix="/t/")
    return app
