"""The links inside sent emails: open pixel, click redirect, unsubscribe page and RFC 8058 POST.

* ``GET /t/o/{workspace}/{token}``: records ``email.opened`` and answers a 1x1 transparent GIF.
* ``GET /t/c/{workspace}/{token}``: records ``link.clicked`` and redirects to the link's address
  in the workspace catalog (only there: never an open redirect).
* ``GET /t/u/{workspace}/{token}``: a page to leave this sequence or everything (SPEC D1); it
  changes nothing by itself, so that mail scanners following links unsubscribe nobody.
* ``POST /t/u/{workspace}/{token}``: applies it. ``scope=sequence`` leaves the sequence the
  token names (its enrollment is canceled, ``unsubscribed``: S12); ``scope=all``, the default and
  what an RFC 8058 One-Click POST (``List-Unsubscribe=One-Click``) means, unsubscribes the contact
  from everything (L3). Doing it again changes nothing more.

Every token is signed with its workspace's key (D2, see :mod:`dripflow.tracking.tokens`); the
workspace in the path only picks the key. A tampered, foreign or malformed token records nothing
and tells nothing: the pixel is the same GIF, the other links the same "not valid" page. Events go
through the one engine path, :func:`~dripflow.engine.ingest_file.ingest_events`. These routes need
no API key: the signed token is the credential.
"""

from __future__ import annotations

import base64
import logging
from email.parser import BytesParser
from email.policy import HTTP
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from dripflow.api.deps import ClockDep, EngineDep
from dripflow.core.clock import Clock
from dripflow.engine.context import Rules, load_rules
from dripflow.engine.eventfile import InputEvent
from dripflow.engine.ingest_file import EventsRefused, ingest_events
from dripflow.store.database import transaction
from dripflow.tracking.tokens import InvalidToken, TrackingKind, read_tracking

__all__ = ["router"]

_log = logging.getLogger("dripflow.tracking")

# For the people who get the emails, not for API clients: kept out of the OpenAPI schema.
router = APIRouter(tags=["tracking"])

# The classic 43-byte transparent GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")

_NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0, private",
    "Pragma": "no-cache",
    "Expires": "0",
}
# The page URL holds the token: it must not leak to other sites, be cached or be indexed.
_PRIVATE = {**_NO_CACHE, "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex, nofollow"}

MAX_FORM_BYTES = 64 * 1024


# -- open pixel -----------------------------------------------------------------------------------


@router.get(
    "/t/o/{workspace_id}/{token}", response_class=Response, summary="Open pixel", include_in_schema=False
)
def open_pixel(workspace_id: str, token: str, engine: EngineDep, clock: ClockDep) -> Response:
    """Records `email.opened` for the token's message; always answers the same 1x1 GIF (D2)."""
    payload = _read("o", workspace_id, token)
    if payload is not None:
        event = {"type": "email.opened", "contact": str(payload["c"]), "message": payload["m"]}
        _apply(engine, clock, workspace_id, event)
    return _pixel()


@router.get("/t/o/{rest:path}", include_in_schema=False)
def open_pixel_malformed(rest: str) -> Response:
    """Whatever else is asked under /t/o/ gets the same pixel and records nothing."""
    return _pixel()


def _pixel() -> Response:
    return Response(PIXEL, media_type="image/gif", headers={**_NO_CACHE, "Referrer-Policy": "no-referrer"})


# -- click redirect -------------------------------------------------------------------------------


@router.get(
    "/t/c/{workspace_id}/{token}", response_class=Response, summary="Tracked link", include_in_schema=False
)
def click(workspace_id: str, token: str, engine: EngineDep, clock: ClockDep) -> Response:
    """Records `link.clicked` {link, message} and redirects to the link's catalog address (D2)."""
    payload = _read("c", workspace_id, token)
    rules = _rules(engine, workspace_id) if payload is not None else None
    if payload is None or rules is None:
        return _not_valid()
    target = rules.workspace.catalog.links.get(payload["l"])
    if target is None or urlsplit(target).scheme not in ("http", "https"):
        # The link was taken out of the catalog since the email was sent.
        return _page("Link unavailable", "<p>This link is no longer available.</p>", 404)
    event = {
        "type": "link.clicked",
        "contact": str(payload["c"]),
        "link": payload["l"],
        "message": payload["m"],
    }
    _apply(engine, clock, workspace_id, event)  # a contact deleted since still gets where it goes
    return RedirectResponse(target, status_code=302, headers=_PRIVATE)


@router.get("/t/c/{rest:path}", include_in_schema=False)
def click_malformed(rest: str) -> Response:
    return _not_valid()


# -- unsubscribe ----------------------------------------------------------------------------------


@router.get(
    "/t/u/{workspace_id}/{token}",
    response_class=HTMLResponse,
    summary="Unsubscribe page",
    include_in_schema=False,
)
def unsubscribe_page(workspace_id: str, token: str, engine: EngineDep) -> Response:
    """D1: a page offering to leave this sequence (when the email came from one) or everything."""
    payload = _read("u", workspace_id, token)
    rules = _rules(engine, workspace_id) if payload is not None else None
    if payload is None or rules is None:
        return _not_valid()
    sender = escape(rules.workspace.workspace.name)
    forms = []
    if payload["s"] is not None:
        forms.append(_button("sequence", "Stop this series of emails"))
    forms.append(_button("all", f"Unsubscribe from all emails from {sender}"))
    body = f"<p>Choose which emails from {sender} you no longer want to receive.</p>\n" + "\n".join(forms)
    return _page("Unsubscribe", body)


@router.post(
    "/t/u/{workspace_id}/{token}", response_class=HTMLResponse, summary="Unsubscribe", include_in_schema=False
)
async def unsubscribe(
    workspace_id: str, token: str, request: Request, engine: EngineDep, clock: ClockDep
) -> Response:
    """Form field `scope`: `sequence` leaves the token's sequence (S12); `all` (the default, and
    an RFC 8058 One-Click POST) leaves everything (L3). Idempotent; a bad token changes nothing."""
    payload = _read("u", workspace_id, token)
    if payload is None:
        return _not_valid()
    fields = _form_fields(request.headers.get("content-type", ""), await _body(request))
    one_click = fields.get("List-Unsubscribe") == "One-Click"
    scope = "all" if one_click else (fields.get("scope") or "all")
    if scope not in ("all", "sequence") or (scope == "sequence" and payload["s"] is None):
        return _page("Unsubscribe", "<p>This choice is not available for this email.</p>", 400)
    event: dict[str, Any] = {"type": "unsubscribed", "contact": str(payload["c"]), "scope": scope}
    if scope == "sequence":
        event["sequence"] = payload["s"]
    await run_in_threadpool(_apply, engine, clock, workspace_id, event)
    if scope == "sequence":
        text = "<p>You will get no more emails from this series.</p>"
    else:
        text = "<p>You are unsubscribed: you will get no more marketing emails from us.</p>"
    return _page("Unsubscribed", text)


@router.api_route("/t/u/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
def unsubscribe_malformed(rest: str) -> Response:
    return _not_valid()


def _button(scope: str, label: str) -> str:
    return (
        '<form method="post">'
        f'<input type="hidden" name="scope" value="{scope}">'
        f'<button type="submit">{label}</button>'
        "</form>"
    )


async def _body(request: Request) -> bytes:
    """The request body, at most MAX_FORM_BYTES of it (a form here is a few bytes)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _form_fields(content_type: str, body: bytes) -> dict[str, str]:
    """The fields of a urlencoded or multipart form (RFC 8058 allows either); {} if unreadable."""
    mime = content_type.split(";", 1)[0].strip().lower() or "application/x-www-form-urlencoded"
    try:
        if mime == "multipart/form-data":
            return _multipart_fields(content_type, body)
        if mime == "application/x-www-form-urlencoded":
            parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            return {name: values[0] for name, values in parsed.items()}
    except (ValueError, LookupError, TypeError):  # a garbled form: the defaults apply
        return {}
    return {}


def _multipart_fields(content_type: str, body: bytes) -> dict[str, str]:
    raw = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    message = BytesParser(policy=HTTP).parsebytes(raw)
    fields: dict[str, str] = {}
    if not message.is_multipart():
        return fields
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or name in fields:
            continue
        value = part.get_payload(decode=True)
        if isinstance(value, bytes):
            fields[name] = value.decode(part.get_content_charset() or "utf-8", "replace")
    return fields


# -- shared ---------------------------------------------------------------------------------------


def _read(kind: TrackingKind, workspace_id: str, token: str) -> dict[str, Any] | None:
    try:
        return read_tracking(kind, workspace_id, token)
    except InvalidToken:
        return None


def _rules(engine: Engine, workspace_id: str) -> Rules | None:
    """The workspace's rules, or None when it is gone since the email was sent."""
    try:
        with transaction(engine) as session:
            return load_rules(session, workspace_id)
    except LookupError:
        return None


def _apply(engine: Engine, clock: Clock, workspace_id: str, event: dict[str, Any]) -> bool:
    """Apply one event through the engine; False (logged, nothing applied) when it cannot be:
    the contact, the sequence or the workspace was deleted since the email was sent."""
    try:
        ingest_events(engine, workspace_id, [InputEvent(1, clock.now(), event)], Path("request"))
    except (EventsRefused, LookupError) as exc:
        _log.info("tracking event %s not applied in %s: %s", event["type"], workspace_id, exc)
        return False
    return True


def _not_valid() -> HTMLResponse:
    return _page("Link not valid", "<p>This link is not valid. Nothing was changed.</p>", 404)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="robots" content="noindex, nofollow">\n'
        f"<title>{escape(title)}</title>\n"
        "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;"
        "line-height:1.5}form{margin:1rem 0}button{font-size:1rem;padding:.5rem 1rem}</style>\n"
        f"</head>\n<body>\n<h1>{escape(title)}</h1>\n{body}\n</body>\n</html>\n"
    )
    return HTMLResponse(html, status_code=status, headers=_PRIVATE)
