"""The FastAPI application: one factory, given the database and the clock (injected for tests)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from sqlalchemy import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
    providers,
    reports,
    sequences,
    tracking,
    workspace,
)
from dripflow.core.clock import Clock, SystemClock

__all__ = ["create_app"]

_requests = logging.getLogger("dripflow.api")
_PROBES = frozenset({"/healthz", "/readyz"})


SQLITE_HANDLER_THREADS = 1
"""Route handlers running at once on SQLite (see ``_lifespan``); PostgreSQL keeps anyio's 40."""


def _lifespan(engine: Engine) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # SQLite has one writer at a time, and every transaction here takes its write lock: with
        # 40 handler threads, requests fought over it through SQLite's busy handler (sleeps of up to
        # 100 ms, not in arrival order), which was most of the API's tail latency. The route
        # handlers (plain functions, run in this thread pool) therefore run one at a time, in
        # arrival order; reading and parsing requests and writing answers stay concurrent.
        if engine.dialect.name == "sqlite":
            anyio.to_thread.current_default_thread_limiter().total_tokens = SQLITE_HANDLER_THREADS
        yield

    return lifespan


class RequestLog:
    """One ``request`` log record per HTTP request: method, route template (never the raw path,
    which can hold an email address or a token), status, milliseconds, and the workspace of the
    API key when one was checked."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _requests.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless the app answers: an exception escaped it

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            _log_request(scope, status, started)


def _log_request(scope: Scope, status: int, started: float) -> None:
    route = getattr(scope.get("route"), "path", None) or "(no route)"
    if route in _PROBES and status < 400:  # a liveness probe every few seconds is not news
        return
    fields = {"method": scope["method"], "route": route, "status": status}
    fields["ms"] = round((time.perf_counter() - started) * 1000, 1)
    workspace = scope.get("state", {}).get("workspace")
    _requests.info("request", extra={"event": "request", "workspace": workspace, "fields": fields})


def create_app(engine: Engine, clock: Clock | None = None) -> FastAPI:
    app = FastAPI(
        lifespan=_lifespan(engine),
        title="dripflow",
        version=__version__,
        description=(
            "Marketing automation and email sequences. Authenticate with `Authorization: Bearer <key>`."
        ),
    )
    app.state.engine = engine
    app.state.clock = clock or SystemClock()
    app.state.providers = providers.ProviderClients()  # tests put their own certificate fetcher here
    install_error_handlers(app)
    for module in (health, events, contacts, lists, outbox, inbound, sequences, tracking, metrics):
        app.include_router(module.router)
    # Sequences, enrollments, automations, broadcasts, the workspace, reports (issue 6).
    for module in (enrollments, automations, broadcasts, workspace, reports):
        app.include_router(module.router)
    app.include_router(providers.router)  # provider event webhooks (issue 5)
    configured_limit()  # a wrong DRIPFLOW_TRACKING_RATE_LIMIT stops start-up, not a request
    app.add_middleware(TrackingRateLimit, prefix="/t/")
    app.add_middleware(RequestLog)  # added last: the outermost, so it logs what the limit refuses too
    return app
