"""A per-client token bucket for the public tracking links ``/t/...`` (issue 6).

Open pixels, tracked links and unsubscribe pages answer anyone without a key, and each request
that carries a valid token writes to the database. A client (by IP address) gets a bucket of
``burst`` requests that refills at ``rate`` per second; past it, the answer is ``429`` with the
API's structured error and ``Retry-After``. Nothing else is limited.

Configuration, read again whenever it changes: ``DRIPFLOW_TRACKING_RATE_LIMIT`` as ``N/second``,
``N/minute`` or ``N/hour`` (the bucket holds N and refills at that rate), optionally
``N/minute;burst=M``; ``off`` (or ``0``) turns the limit off. The default, 600 a minute per address,
is far above what one person's mail client does (a pixel and a few clicks per email), and far
below what would hurt the database.

The buckets live in this process's memory: a deployment with several ``dripflow serve`` processes
limits each one separately. Their number is bounded: a full bucket carries no information and is
dropped first, so a flood of distinct addresses cannot grow memory without end. Behind a reverse
proxy the address is the one uvicorn reports: it honours ``X-Forwarded-For`` from the addresses in
``FORWARDED_ALLOW_IPS`` (default 127.0.0.1), else every reader shares the proxy's bucket.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "DEFAULT_LIMIT",
    "LIMIT_ENV",
    "Limit",
    "TokenBuckets",
    "TrackingRateLimit",
    "configured_limit",
    "parse_limit",
]

_log = logging.getLogger("dripflow.api")

LIMIT_ENV = "DRIPFLOW_TRACKING_RATE_LIMIT"
DEFAULT_LIMIT = "600/minute"
MAX_CLIENTS = 10_000
_PERIODS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}
_LIMIT = re.compile(r"^\s*(\d+)\s*/\s*([a-z]+?)s?\s*(?:;\s*burst\s*=\s*(\d+)\s*)?$", re.IGNORECASE)


@dataclass(frozen=True)
class Limit:
    """A bucket of ``burst`` tokens refilled at ``rate`` tokens a second."""

    rate: float
    burst: int


def parse_limit(text: str) -> Limit | None:
    """``600/minute`` → Limit(10.0, 600); ``off`` or ``0`` → None. Raises ValueError saying why."""
    value = text.strip().lower()
    if value in ("off", "0", "none", "false"):
        return None
    found = _LIMIT.match(value)
    period = _PERIODS.get(found.group(2)) if found else None
    if found is None or period is None:
        raise ValueError(
            f"{LIMIT_ENV}={text!r}: use N/second, N/minute or N/hour (or off), such as 600/minute"
        )
    count = int(found.group(1))
    burst = int(found.group(3)) if found.group(3) else count
    if count == 0 or burst == 0:
        return None
    return Limit(rate=count / period, burst=burst)


def configured_limit() -> Limit | None:
    """The limit the environment sets (start-up check: a wrong value stops the server at once)."""
    return parse_limit(os.environ.get(LIMIT_ENV) or DEFAULT_LIMIT)


class TokenBuckets:
    """Token buckets by key, at most ``max_keys`` of them; ``clock`` is monotonic seconds."""

    def __init__(
        self, limit: Limit, max_keys: int = MAX_CLIENTS, clock: Callable[[], float] = time.monotonic
    ):
        self.limit = limit
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take a token for ``key``: 0.0 if granted, else the seconds until one is there."""
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.pop(key, (float(self.limit.burst), now))
            tokens = min(float(self.limit.burst), tokens + (now - at) * self.limit.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.limit.rate
            self._buckets[key] = (tokens, now)  # most recently used last
            if len(self._buckets) > self._max_keys:
                self._evict(now)
            return wait

    def _evict(self, now: float) -> None:
        """Drop buckets that have refilled (they hold nothing a new bucket would not), else the
        least recently used."""
        full = [
            key
            for key, (tokens, at) in self._buckets.items()
            if tokens + (now - at) * self.limit.rate >= self.limit.burst
        ]
        for key in full:
            del self._buckets[key]
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)


class TrackingRateLimit:
    """ASGI middleware: requests under ``prefix`` spend a token of their client's bucket."""

    def __init__(self, app: ASGIApp, prefix: str = "/t/") -> None:
        self.app = app
        self.prefix = prefix
        self._setting: str | None = None
        self._buckets: TokenBuckets | None = None

    def _current(self) -> TokenBuckets | None:
        setting = os.environ.get(LIMIT_ENV) or DEFAULT_LIMIT
        if setting != self._setting:  # changed (or first use): start afresh with the new limit
            self._setting = setting
            try:
                limit = parse_limit(setting)
            except ValueError as exc:  # checked at start-up; changed since to something wrong
                _log.warning("%s; keeping the previous limit", exc)
                return self._buckets
            self._buckets = TokenBuckets(limit) if limit is not None else None
        return self._buckets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        buckets = self._current()
        client = scope.get("client")
        wait = buckets.take(str(client[0]) if client else "-") if buckets is not None else 0.0
        if wait <= 0.0:
            await self.app(scope, receive, send)
            return
        retry = max(1, math.ceil(wait))
        body = {
            "error": {
                "code": "rate_limited",
                "message": f"too many requests from this address; try again in {retry} s",
            }
        }
        response = JSONResponse(body, status_code=429, headers={"Retry-After": str(retry)})
        await response(scope, receive, send)
