"""Workspace isolation over every route (SPEC §1 "data never crosses workspaces", §10 keys; issue 6).

The routes are read from the application itself when the tests are collected (every method of
every route FastAPI serves, those kept out of the OpenAPI document included); the table ``CASES``
says how to call each one with another workspace's identifiers. A route that the table does not
know fails its test, so a new route cannot ship without its isolation case.

Workspace B (``shop``) holds a contact, its enrollments, its messages with signed tracking links,
and sequences workspace A (``rival``) does not have. For every route:

* **API routes** (``Authorization: Bearer``): a key of A of each role, calling the route with B's
  identifiers (B's contact id and email, B's sequence ids, events naming B's contact or message),
  gets the expected refusal (404 for what A cannot see, 403 below the route's role, 422 for an
  event naming a contact A does not have) as a structured JSON error, or, for a collection, a 200
  holding only A's own rows; nothing of B changes (every row of every table, compared before and
  after) and no answer carries B's data. B's own keys below the route's role get 403 and change
  nothing (so read keys cannot write); the same request with B's key of the route's role is the
  control: it succeeds, and it does change (or show) B's data, which proves the refused request
  was a real one.
* **Public routes** are listed with the reason they need no key, and asserted not to expose B
  either: the tracking links (the signed token is the credential, the workspace in the path only
  picks the key) do nothing with B's token under A's workspace, or under a malformed path, while
  the same token under B's path works; health and the API documents hold no workspace data;
  ``/metrics`` is the operator's, guarded by ``DRIPFLOW_METRICS_TOKEN``, not by workspace keys.

``HEAD`` is left out: Starlette answers it for the ``GET`` routes with the same handler.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from sqlalchemy import Engine, create_engine, select

from dripflow.api.app import create_app
from dripflow.api.routes.metrics import TOKEN_ENV
from dripflow.api.routes.providers import ProviderClients
from dripflow.api.routes.tracking import PIXEL
from dripflow.core.validate import load_workspace_text
from dripflow.delivery.providers.ses import SnsVerifier
from dripflow.engine.broadcast_admin import create_broadcast
from dripflow.engine.context import Ctx, load_rules
from dripflow.engine.eventfile import InputEvent
from dripflow.engine.ingest_file import ingest_events
from dripflow.engine.messages import link_url, open_url, unsubscribe_url
from dripflow.engine.worker import run_worker
from dripflow.store.apikeys import create_key
from dripflow.store.database import transaction
from dripflow.store.tables import Base, Contact, Enrollment, Message
from dripflow.store.workspaces import apply_workspace
from tests.integration.api.conftest import NOW, Api
from tests.unit.test_inbound import ARF_ABUSE, ORIGINAL_ID, POSTFIX_HARD
from tests.unit.test_providers import (
    FakeCertificates,
    sendgrid_event,
    sendgrid_public_key,
    ses_bounce,
    sign_sendgrid,
    sign_sns,
    sns_notification,
)

A, B = "rival", "shop"  # the caller's workspace and the one it must not reach
ROLES = ("read", "write", "admin")  # in order (SPEC §10: read < write < admin)
WRITING = {"POST", "PUT", "PATCH", "DELETE"}

B_NAME = "Bramblewood Hidden Goods"
B_EMAIL = "beatrix@bramblewood.test"
B_FIRST = "Beatrix"
B_OFFER = "https://bramblewood.test/private-offer"
A_EMAIL = "al@rival.test"
METRICS_TOKEN = "metrics-token-for-the-isolation-test"
SENDGRID_ENV = "DRIPFLOW_ISOLATION_SENDGRID_KEY"  # both workspaces take SendGrid events signed with one key

WORKSPACE = """\
workspace:
  id: {id}
  name: {name}
  timezone: UTC
  default_send_time: "10:00"
  physical_address: "1 Main St"
  base_url: "https://mail.{id}.test"
mailboxes:
  - {{id: ann, from: "Ann <ann@{id}.test>", default: true}}
delivery:
  events: {{sendgrid: {{public_key_env: DRIPFLOW_ISOLATION_SENDGRID_KEY}}}}
lists: [news, offers]
tags: [vip, fan]
catalog:
  links: {{offer: "{offer}"}}
templates:
  hello: {{subject: "Hello {{{{ contact.first_name }}}}",
           text: "Hi. Offer: {{{{ link('offer') }}}} Leave: {{{{ unsubscribe_url }}}}"}}
  card: {{text: "Dear {{{{ contact.first_name }}}}"}}
sequences:
  - id: drip
    start_when: [{{event: list.subscribed, list: news}}]
    steps:
      - {{id: one, type: email, template: hello}}
      - {{id: two, type: email, template: hello, after: {{days: 1}}}}
{extra}"""
B_SEQUENCES = """\
  - id: bramble-only
    start_when: [{event: list.subscribed, list: news}]
    steps:
      - {id: bramble-first, type: email, template: hello, after: {days: 3}}
  - id: bramble-paused
    status: paused
    start_when: [{event: list.subscribed, list: news}]
    steps:
      - {id: bramble-first, type: email, template: hello, after: {days: 3}}
  - id: bramble-blocked
    start_when: [{event: list.subscribed, list: news}]
    steps:
      - {id: bramble-card, type: postcard, template: card}
  - id: bramble-manual
    steps:
      - {id: bramble-first, type: email, template: hello, after: {days: 3}}
automations:
  - {id: bramble-automation, when: {event: tag.assigned, tag: vip}, then: [{add_tag: vip}]}
broadcasts:
  - id: bramble-blast
    send_at: "2026-03-10 09:00"
    audience: {any: [{on_list: news}, {source: bramble-audience}]}
    template: hello
"""
# A broadcast B made through the API (a draft), and its audience: a string only B's data holds.
B_DRAFT = "bramble-draft"
B_AUDIENCE = {"any": [{"on_list": "news"}, {"source": "bramble-audience"}]}
B_MARKERS = (
    "bramble-first",
    "bramble-blocked",
    "bramble-card",
    "bramble-manual",
    "bramble-automation",
    "bramble-audience",
    "bramble-blast",
    B_DRAFT,
)


# -- the routes, read from the application -----------------------------------------------------------


def _served_routes() -> list[tuple[str, str]]:
    """Every (method, path) the application answers, whether or not in the OpenAPI document."""
    engine = create_engine("sqlite://")  # never connected: the app only keeps it
    app = create_app(engine)
    found = {
        (method, str(context.path))
        for context in iter_route_contexts(app.routes)
        for method in (context.methods or ())
        if method != "HEAD"
    }
    engine.dispose()
    return sorted(found, key=lambda item: (item[1], item[0]))


def _schema_operations() -> set[tuple[str, str]]:
    engine = create_engine("sqlite://")
    paths: dict[str, dict[str, Any]] = create_app(engine).openapi()["paths"]
    engine.dispose()
    return {(method.upper(), path) for path, operations in paths.items() for method in operations}


ROUTES = _served_routes()
SCHEMA_OPERATIONS = _schema_operations()


# -- the two workspaces and what B holds ---------------------------------------------------------------


@dataclass
class World:
    api: Api
    keys: dict[tuple[str, str], str]  # (workspace, role) -> key
    b_contact: int
    b_enrollments: set[int]
    b_blocked: int  # B's enrollment blocked on a postcard (no address, S11)
    b_message_id: str
    b_message: int  # its outbox id
    b_open: str  # paths of B's real tracking links: /t/o/shop/<token> ...
    b_click: str
    b_unsubscribe: str
    a_contacts: set[int]
    a_enrollments: set[int]
    a_messages: set[int]
    markers: tuple[str, ...]  # strings only B's data holds

    def client(self, workspace: str | None = None, role: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[workspace, role]}"} if workspace and role else {}
        return httpx.Client(base_url=self.api.url, headers=headers, timeout=30, follow_redirects=False)


def _path(url: str) -> str:
    return urlsplit(url).path


@pytest.fixture
def world(api: Api) -> World:
    """B first (so its ids are the low ones), then A; one subscribed contact each, run to their
    first email (captured: no SMTP), whose signed links are B's tracking paths."""
    engine = api.engine
    with transaction(engine) as session:
        for workspace_id, name, offer, extra in (
            (B, B_NAME, B_OFFER, B_SEQUENCES),
            (A, "Rival Shop", "https://rival.test/offer", ""),
        ):
            text = WORKSPACE.format(id=workspace_id, name=name, offer=offer, extra=extra)
            apply_workspace(session, load_workspace_text(text, f"{workspace_id}.yaml"), now=NOW, actor="test")
        keys = {(B, role): api.keys[role] for role in ROLES}
        keys[A, "admin"] = api.keys["other"]
        for role in ("read", "write"):
            keys[A, role] = create_key(session, A, role, NOW)
    for workspace_id, contact in ((B, {"email": B_EMAIL, "first_name": B_FIRST}), (A, {"email": A_EMAIL})):
        event = {"type": "list.subscribed", "contact": contact, "list": "news"}
        ingest_events(engine, workspace_id, [InputEvent(1, NOW, event)], Path("test"))
    fan = {"type": "tag.assigned", "contact": B_EMAIL, "tag": "fan"}  # so that B has a tag to remove
    ingest_events(engine, B, [InputEvent(1, NOW, fan)], Path("test"))
    run_worker(engine, api.clock, until_idle=True)
    api.app.state.providers = ProviderClients(SnsVerifier(FakeCertificates()))  # no internet here
    # A refusal in B's journal (S1: already in drip), and a broadcast B drafted through the API.
    refused = {"type": "admin.enroll", "contact": B_EMAIL, "sequence": "drip"}
    ingest_events(engine, B, [InputEvent(1, NOW, refused)], Path("test"))
    with transaction(engine) as session:
        workspace = load_rules(session, B).workspace
        draft = {"id": B_DRAFT, "template": "hello", "audience": B_AUDIENCE}
        create_broadcast(session, workspace, draft, NOW, "test")
    with transaction(engine) as session:

        def ids(model: type[Contact] | type[Enrollment] | type[Message], workspace_id: str) -> set[int]:
            return set(session.scalars(select(model.id).where(model.workspace_id == workspace_id)))

        b_contact = session.scalars(select(Contact.id).where(Contact.workspace_id == B)).one()
        message = session.scalars(
            select(Message).where(Message.workspace_id == B, Message.sequence_id == "drip")
        ).one()
        ctx = Ctx(session, B, load_rules(session, B), api.clock)
        world = World(
            api=api,
            keys=keys,
            b_contact=b_contact,
            b_enrollments=ids(Enrollment, B),
            b_blocked=session.scalars(
                select(Enrollment.id).where(Enrollment.workspace_id == B, Enrollment.status == "blocked")
            ).one(),
            b_message_id=message.message_id,
            b_message=message.id,
            b_open=_path(open_url(ctx, message.key, b_contact)),
            b_click=_path(link_url(ctx, message.key, b_contact, "offer")),
            b_unsubscribe=_path(unsubscribe_url(ctx, message.key, b_contact, "drip")),
            a_contacts=ids(Contact, A),
            a_enrollments=ids(Enrollment, A),
            a_messages=ids(Message, A),
            markers=(
                B_NAME,
                B_EMAIL,
                B_FIRST,
                B_OFFER,
                "bramble-only",
                "bramble-paused",
                message.message_id,
                *B_MARKERS,
            ),
        )
    # drip, bramble-only, bramble-paused, bramble-blocked
    assert b_contact < min(world.a_contacts) and len(world.b_enrollments) == 4
    assert world.b_open.startswith(f"/t/o/{B}/") and world.b_unsubscribe.startswith(f"/t/u/{B}/")
    return world


def _snapshot(engine: Engine, workspace_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the workspace, table by table (every table but ``workspaces`` carries
    ``workspace_id``; a new one that does not must be added here, so this fails for it)."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            column = table.c.id if table.name == "workspaces" else table.c.get("workspace_id")
            assert column is not None, f"table {table.name} has no workspace_id: how is it scoped?"
            found = conn.execute(select(table).where(column == workspace_id)).all()
            rows[table.name] = sorted((tuple(row) for row in found), key=repr)
    return rows


def _changed(before: dict[str, list[tuple[Any, ...]]], after: dict[str, list[tuple[Any, ...]]]) -> list[str]:
    return [name for name in before if before[name] != after[name]]


# -- requests and what their answers may hold ------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request; ``expect`` is the status a key of A with the route's role gets for it."""

    method: str
    url: str
    expect: int
    json_body: Any = None
    form: dict[str, str] | None = None
    content: bytes | str | None = None  # a raw body: an email (bytes) or the workspace file's YAML
    content_type: str | None = None
    headers: dict[str, str] | None = None  # more headers (a provider's signature)

    def send(self, client: httpx.Client) -> httpx.Response:
        if self.content is not None:
            raw = self.content if isinstance(self.content, bytes) else self.content.encode()
            default = "message/rfc822" if isinstance(self.content, bytes) else "application/yaml"
            headers = {"Content-Type": self.content_type or default, **(self.headers or {})}
            return client.request(self.method, self.url, content=raw, headers=headers)
        return client.request(self.method, self.url, json=self.json_body, data=self.form)

    def text(self) -> str:
        content = self.content
        raw = content.decode("utf-8", "replace") if isinstance(content, bytes) else (content or "")
        return f"{self.url} {json.dumps(self.json_body)} {self.form} {raw}"


def _leaks(world: World, call: Call, response: httpx.Response) -> list[str]:
    """What of B the answer holds that the request did not itself send: B's strings, or ids of
    contacts and enrollments that are not A's."""
    sent = call.text()
    found = [marker for marker in world.markers if marker in response.text and marker not in sent]
    if response.headers.get("content-type", "").startswith("application/json"):
        allowed = world.a_contacts | world.a_enrollments | world.a_messages

        def walk(value: Any) -> None:
            if isinstance(value, dict):
                for key, item in value.items():
                    if key == "contact_id" and isinstance(item, int) and item not in world.a_contacts:
                        found.append(f"contact_id {item}")
                    elif key == "id" and isinstance(item, int) and item not in allowed:
                        found.append(f"id {item}")
                    walk(item)
            elif isinstance(value, list):
                for item in value:
                    walk(item)

        walk(response.json())
    return found


def _shows_b(world: World, call: Call, response: httpx.Response) -> bool:
    """The control: B's own key does see B's data through this request."""
    sent = call.text()
    if any(marker in response.text and marker not in sent for marker in world.markers):
        return True
    return f'"contact_id":{world.b_contact}' in response.text.replace(" ", "")


def _assert_structured_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    error = response.json()["error"]
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error


# -- the table: every route, and how to aim it at B -----------------------------------------------------


@dataclass(frozen=True)
class ApiCase:
    """A route behind ``Authorization: Bearer``: ``role`` is the least role it needs; ``attacks``
    aim it at B's data with A's key; ``control`` is the same kind of request by B itself, answered
    ``control_status``; ``writes``: the control changes B (else it shows B's data)."""

    role: str
    attacks: Callable[[World], list[Call]]
    control: Callable[[World], Call]
    control_status: int
    writes: bool


@dataclass(frozen=True)
class TokenCase:
    """A tracking link: public, its signed token is the credential (D2). ``attacks`` carry B's
    token somewhere it must not work; ``control`` carries it where it works (or None for the
    catch-alls, which never do anything); ``writes``: the control changes B."""

    reason: str
    attacks: Callable[[World], list[Call]]
    control: Callable[[World], Call] | None = None
    control_status: int = 200
    writes: bool = False
    pixel: bool = False  # the answer is always the same GIF


@dataclass(frozen=True)
class StaticCase:
    """A public route that holds no workspace data at all."""

    reason: str


@dataclass(frozen=True)
class OperatorCase:
    """Not for workspace keys: guarded by an operator token from the environment."""

    reason: str
    token_env: str
    shows: str = field(default=f'workspace="{B}"')


Case = ApiCase | TokenCase | StaticCase | OperatorCase


def _swap(path: str, workspace_id: str) -> str:
    """B's tracking path with another workspace in it: /t/o/shop/<token> -> /t/o/rival/<token>."""
    _empty, t, kind, _workspace, token = path.split("/")
    return f"/{t}/{kind}/{workspace_id}/{token}"


def _malformed(path: str, expect: int) -> list[Call]:
    token = path.rsplit("/", 1)[1]
    prefix = path.rsplit("/", 2)[0]  # /t/o
    return [
        Call("GET", f"{_swap(path, A)}/extra", expect),
        Call("GET", f"{path}/extra", expect),
        Call("GET", f"{prefix}/{token}", expect),
    ]


def _malformed_post(path: str) -> list[Call]:
    one_click = {"List-Unsubscribe": "One-Click"}
    return [Call("POST", call.url, 404, form=one_click) for call in _malformed(path, 404)]


def _events(world: World) -> list[Call]:
    b_id = str(world.b_contact)
    return [
        # B's contact by id: A has no such contact, so the event is refused (nothing applied).
        Call("POST", "/v1/events", 422, {"type": "tag.assigned", "contact": b_id, "tag": "vip"}),
        Call("POST", "/v1/events", 422, {"type": "admin.contact.blacklist", "contact": b_id, "reason": "x"}),
        Call("POST", "/v1/events", 422, {"type": "unsubscribed", "contact": b_id, "scope": "all"}),
        Call(
            "POST",
            "/v1/events",
            422,
            {"type": "admin.enroll", "contact": A_EMAIL, "sequence": "bramble-only"},
        ),
        Call("POST", "/v1/events", 422, {"type": "admin.sequence.pause", "sequence": "bramble-only"}),
        # B's message named in A's event: A's own contact bounces, B's message and contact are untouched.
        Call(
            "POST",
            "/v1/events",
            200,
            {"type": "email.bounced", "contact": A_EMAIL, "message": world.b_message_id, "kind": "hard"},
        ),
        # B's email address in A: that is a contact of A's own (another workspace, another contact).
        Call("POST", "/v1/events", 200, {"type": "unsubscribed", "contact": B_EMAIL, "scope": "all"}),
    ]


def _reply_to(message_id: str) -> bytes:
    return (
        f"From: {B_EMAIL}\r\nSubject: Re: Hello\r\nMessage-ID: <r1@bramblewood.test>\r\n"
        f"In-Reply-To: {message_id}\r\n\r\nYes please.\r\n"
    ).encode()


def _inbound(world: World) -> list[Call]:
    """B's message named in reports and replies sent with A's key: A has no such message (nor a
    contact with B's address), so each is refused and nothing is applied anywhere."""
    b_id = world.b_message_id.encode()
    complaint = ARF_ABUSE.replace(ORIGINAL_ID.encode(), b_id).replace(b"bob@example.test", B_EMAIL.encode())
    return [
        Call("POST", "/v1/inbound", 422, content=_reply_to(world.b_message_id)),
        Call("POST", "/v1/inbound", 422, content=POSTFIX_HARD.replace(ORIGINAL_ID.encode(), b_id)),
        Call("POST", "/v1/inbound", 422, content=complaint),
    ]


def _ses(world: World, with_message: bool = True) -> Call:
    """A bounce of B's message (or, without it, of B's address), signed by "SNS" (the injected
    certificate): under A's key, A has no such message nor contact, so it is ignored (200)."""
    bounce = ses_bounce([B_EMAIL], original=world.b_message_id if with_message else None)
    raw = json.dumps(sign_sns(sns_notification(bounce, f"isolation-{with_message}"))).encode()
    return Call("POST", "/v1/providers/ses", 200, content=raw, content_type="text/plain; charset=UTF-8")


def _sendgrid(world: World) -> Call:
    """B's message and address in a batch signed with the key both workspaces name: under A's key,
    every event is ignored (200); under B's, the spam report blacklists B's contact."""
    raw = json.dumps(
        [
            sendgrid_event("spamreport", B_EMAIL, world.b_message_id),
            sendgrid_event("unsubscribe", B_EMAIL, None),
            sendgrid_event("bounce", B_EMAIL, world.b_message_id, type="bounce", status="5.1.1"),
        ]
    ).encode()
    signed = sign_sendgrid(raw, world.api.clock.now())
    return Call(
        "POST", "/v1/providers/sendgrid", 200, content=raw, content_type="application/json", headers=signed
    )


def _contact_paths(world: World, suffix: str = "") -> list[str]:
    """B's contact as A would name it: by id, by email, by email in capitals."""
    return [f"/v1/contacts/{ref}{suffix}" for ref in (world.b_contact, B_EMAIL, B_EMAIL.upper())]


A_SEQUENCE = {"steps": [{"id": "one", "type": "email", "template": "hello"}]}
B_SEQUENCE = {
    "start_when": [{"event": "list.subscribed", "list": "news"}],
    "steps": [{"id": "bramble-first", "type": "email", "template": "hello", "after": {"days": 4}}],
}


def _b_file(extra: str = B_SEQUENCES) -> str:
    """B's workspace file, as applied (or, with ``extra=""``, without B's own sequences)."""
    return WORKSPACE.format(id=B, name=B_NAME, offer=B_OFFER, extra=extra)


CASES: dict[tuple[str, str], Case] = {
    # -- the API (SPEC §10) --
    ("POST", "/v1/events"): ApiCase(
        role="write",
        attacks=_events,
        control=lambda w: Call(
            "POST", "/v1/events", 200, {"type": "tag.assigned", "contact": str(w.b_contact), "tag": "vip"}
        ),
        control_status=200,
        writes=True,
    ),
    ("GET", "/v1/contacts/{contact}"): ApiCase(
        role="read",
        attacks=lambda w: [
            Call("GET", f"/v1/contacts/{w.b_contact}", 404),
            Call("GET", f"/v1/contacts/{B_EMAIL}", 404),
            Call("GET", f"/v1/contacts/{B_EMAIL.upper()}", 404),
        ],
        control=lambda w: Call("GET", f"/v1/contacts/{w.b_contact}", 200),
        control_status=200,
        writes=False,
    ),
    ("GET", "/v1/contacts/{contact}/explain"): ApiCase(
        role="read",
        attacks=lambda w: [
            Call("GET", f"/v1/contacts/{w.b_contact}/explain", 404),
            Call("GET", f"/v1/contacts/{B_EMAIL}/explain", 404),
            Call("GET", f"/v1/contacts/{w.b_contact}/explain?sequence=bramble-only", 404),
        ],
        control=lambda w: Call("GET", f"/v1/contacts/{w.b_contact}/explain", 200),
        control_status=200,
        writes=False,
    ),
    ("POST", "/v1/contacts"): ApiCase(
        role="write",
        attacks=lambda w: [
            # B's address in A would be A's own contact; these are refused before anything is made.
            Call("POST", "/v1/contacts", 422, {"email": B_EMAIL, "timezone": "Nowhere/Bramble"}),
            Call("POST", "/v1/contacts", 422, {"email": B_EMAIL, "id": w.b_contact}),
            # A's own contact, updated by email: B's is not touched.
            Call("POST", "/v1/contacts", 200, {"email": A_EMAIL, "first_name": "Al"}),
        ],
        control=lambda w: Call("POST", "/v1/contacts", 200, {"email": B_EMAIL, "first_name": "Bea"}),
        control_status=200,
        writes=True,
    ),
    ("GET", "/v1/contacts"): ApiCase(
        role="read",
        attacks=lambda w: [
            Call("GET", "/v1/contacts", 200),
            Call("GET", "/v1/contacts?email=bramblewood", 200),
            Call("GET", "/v1/contacts?list=news&tag=fan&limit=1000", 200),
            Call("GET", f"/v1/contacts?cursor={w.b_contact - 1}", 200),
        ],
        control=lambda w: Call("GET", "/v1/contacts?email=bramblewood", 200),
        control_status=200,
        writes=False,
    ),
    ("PATCH", "/v1/contacts/{contact}"): ApiCase(
        role="write",
        attacks=lambda w: [Call("PATCH", path, 404, {"first_name": "Mallory"}) for path in _contact_paths(w)],
        control=lambda w: Call("PATCH", f"/v1/contacts/{w.b_contact}", 200, {"first_name": "Bea"}),
        control_status=200,
        writes=True,
    ),
    ("DELETE", "/v1/contacts/{contact}"): ApiCase(
        role="write",
        attacks=lambda w: [Call("DELETE", path, 404) for path in _contact_paths(w)],
        control=lambda w: Call("DELETE", f"/v1/contacts/{w.b_contact}", 200),
        control_status=200,
        writes=True,
    ),
    ("GET", "/v1/contacts/{contact}/timeline"): ApiCase(
        role="read",
        attacks=lambda w: [Call("GET", path, 404) for path in _contact_paths(w, "/timeline")],
        control=lambda w: Call("GET", f"/v1/contacts/{w.b_contact}/timeline", 200),
        control_status=200,
        writes=False,
    ),
    ("POST", "/v1/contacts/{contact}/lists/{list}"): ApiCase(
        role="write",
        attacks=lambda w: [Call("POST", path, 404) for path in _contact_paths(w, "/lists/offers")],
        control=lambda w: Call("POST", f"/v1/contacts/{w.b_contact}/lists/offers", 200),
        control_status=200,
        writes=True,
    ),
    ("DELETE", "/v1/contacts/{contact}/lists/{list}"): ApiCase(
        role="write",
        attacks=lambda w: [Call("DELETE", path, 404) for path in _contact_paths(w, "/lists/news")],
        control=lambda w: Call("DELETE", f"/v1/contacts/{w.b_contact}/lists/news", 200),
        control_status=200,
        writes=True,
    ),
    ("POST", "/v1/contacts/{contact}/tags/{tag}"): ApiCase(
        role="write",
        attacks=lambda w: [Call("POST", path, 404) for path in _contact_paths(w, "/tags/vip")],
        control=lambda w: Call("POST", f"/v1/contacts/{w.b_contact}/tags/vip", 200),
        control_status=200,
        writes=True,
    ),
    ("DELETE", "/v1/contacts/{contact}/tags/{tag}"): ApiCase(
        role="write",
        attacks=lambda w: [Call("DELETE", path, 404) for path in _contact_paths(w, "/tags/fan")],
        control=lambda w: Call("DELETE", f"/v1/contacts/{w.b_contact}/tags/fan", 200),
        control_status=200,
        writes=True,
    ),
    ("GET", "/v1/outbox"): ApiCase(
        role="read",
        attacks=lambda w: [
            Call("GET", "/v1/outbox", 200),
            Call("GET", "/v1/outbox?status=captured&limit=1000", 200),
            Call("GET", f"/v1/outbox?cursor={w.b_message + 1}", 200),
            Call("GET", f"/v1/outbox?contact={w.b_contact}", 404),
            Call("GET", f"/v1/outbox?contact={B_EMAIL}", 404),
        ],
        control=lambda w: Call("GET", "/v1/outbox", 200),
        control_status=200,
        writes=False,
    ),
    ("GET", "/v1/outbox/{message_id}"): ApiCase(
        role="read",
        attacks=lambda w: [Call("GET", f"/v1/outbox/{w.b_message}", 404)],
        control=lambda w: Call("GET", f"/v1/outbox/{w.b_message}", 200),
        control_status=200,
        writes=False,
    ),
    ("POST", "/v1/inbound"): ApiCase(
        role="write",
        attacks=_inbound,
        control=lambda w: Call(  # B's own bounce report: B's contact is blacklisted (L1)
            "POST",
            "/v1/inbound",
            200,
            content=POSTFIX_HARD.replace(ORIGINAL_ID.encode(), w.b_message_id.encode()),
        ),
        control_status=200,
        writes=True,
    ),
    ("GET", "/v1/sequences"): ApiCase(
        role="read",
        attacks=lambda w: [Call("GET", "/v1/sequences", 200)],
        control=lambda w: Call("GET", "/v1/sequences", 200),
        control_status=200,
        writes=False,
    ),
    ("POST", "/v1/sequences/{sequence_id}/pause"): ApiCase(
        role="admin",
        attacks=lambda w: [Call("POST", "/v1/sequences/bramble-only/pause", 404)],
        control=lambda w: Call("POST", "/v1/sequences/bramble-only/pause", 200),
        control_status=200,
        writes=True,
    ),
    ("POST", "/v1/sequences/{sequence_id}/resume"): ApiCase(
        role="admin",
        attacks=lambda w: [Call("POST", "/v1/sequences/bramble-paused/resume", 404)],
        control=lambda w: Call("POST", "/v1/sequences/bramble-paused/resume", 200),
        control_status=200,
        writes=True,
    ),
    ("GET", "/v1/enrollments"): ApiCase(
        role="read",
        attacks=lambda w: [
            Call("GET", "/v1/enrollments", 200),
            Call("GET", "/v1/enrollments?sequence=bramble-only", 200),
            Call("GET", "/v1/enrollments?status=active&limit=1000", 200),
            Call("GET", f"/v1/enrollments?cursor={min(w.b_enrollments) - 1}", 200),
        ],
        control=lambda w: Call("GET", "/v1/enrollments?sequence=bramble-only", 200),
        control_status=200,
        writes=False,
    ),
    # -- sequences, enrollments, automations, broadcasts, the workspace, reports (issue 6) --
    ("GET", "/v1/sequences/{sequence_id}"): ApiCase(
        role="read",
        attacks=lambda w: [
            Call("GET", "/v1/sequences/bramble-only", 404),
            Call("GET", "/v1/sequences/bramble-paused", 404),
        ],
        control=lambda w: Call("GET", "/v1/sequences/bramble-only", 200),
        control_status=200,
        writes=False,
    ),
    ("PUT", "/v1/sequences/{sequence_id}"): ApiCase(
        role="admin",
        attacks=lambda w: [
            # An id of B's in A is a sequence of A's own: created there, B's is untouched.
            Call("PUT", "/v1/sequences/bramble-only", 201, A_SEQUENCE),
            Call("PUT", "/v1/sequences/bramble-paused", 422, {"steps": [{"id": "x", "type": "email"}]}),
        ],
        control=lambda w: Call("PUT", "/v1/sequences/bramble-only", 200, B_SEQUENCE),
        control_status=200,
        writes=True,
    ),
    ("POST", "/v1/sequences/{sequence_id}/archive"): ApiCase(
        role="admin",
        attacks=lambda w: [Call("POST", "/v1/sequences/bramble-only/archive", 404)],
        control=lambda w: Call("POST", "/v1/sequences/bramble-only/archive", 200),
        control_status=200,
        writes=True,
    ),
    ("GET", "/v1/sequences/{sequence_id}/versions"): ApiCase(
        role="read",
        attacks=lambda w: [Call("GET", "/v1/sequences/bramble-only/versions", 404)],
        control=lambda w: Call("GET", "/v1/sequences/bramble-only/versions", 200),
        control_status=200,
        writes=False,
    ),
    ("GET", "/v1/enrollments/refusals"): ApiCase(
        role="read",
        attacks=lambda w: [
            Call("GET", "/v1/enrollments/refusals", 200),
            Call("GET", "/v1/enrollments/refusals?sequence=drip&limit=1000", 200),
            Call("GET", f"/v1/enrollments/refusals?contact={w.b_contact}", 200),
            Call("GET", f"/v1/enrollments/refusals?contact={B_EMAIL}", 200),
            Call("GET", "/v1/enrollments/refusals?cursor=0&reason=already_enrolled", 200),
        ],
        control=lambda w: Call("GET", "/v1/enrollments/refusals?sequence=drip", 200),
        control_status=200,
        writes=False,
    ),
    ("POST", "/v1/enrollments"): ApiCase(
        role="write",
        attacks=lambda w: [
            Call("POST", "/v1/enrollments", 404, {"contact": str(w.b_contact), "sequence": "drip"}),
            Call("POST", "/v1/enrollments", 404, {"contact": B_EMAIL, "sequence": "drip"}),
            Call("POST", "/v1/enrollments", 404, {"contact": A_EMAIL, "sequence": "bramble-manual"}),
        ],
        control=lambda w: Call(
            "POST", "/v1/enrollments", 201, {"contact": str(w.b_contact), "sequence": "bramble-manual"}
        ),
        control_status=201,
        writes=True,
    ),
    ("GET", "/v1/enrollments/{enrollment_id}"): ApiCase(
        role="read",
        attacks=lambda w: [Call("GET", f"/v1/enrollments/{item}", 404) for item in sorted(w.b_enrollments)],
        control=lambda w: Call("GET", f"/v1/enrollments/{min(w.b_enrollments)}", 200),
        control_status=200,
        writes=False,
    ),
    ("POST", "/v1/enrollments/{enrollment_id}/unenroll"): ApiCase(
        role="write",
        attacks=lambda w: [
            Call("POST", f"/v1/enrollments/{item}/unenroll", 404) for item in sorted(w.b_enrollments)
        ],
        control=lambda w: Call("POST", f"/v1/enrollments/{min(w.b_enrollments)}/unenroll", 200),
        control_status=200,
        writes=True,
    ),
    ("POST", "/v1/enrollments/{enrollment_id}/retry"): ApiCase(
        role="write",
        attacks=lambda w: [
            Call("POST", f"/v1/enrollments/{item}/retry", 404) for item in sorted(w.b_enrollments)
        ],
        # Still no address: still blocked, nothing changes; the answer is B's enrollment.
        control=lambda w: Call("POST", f"/v1/enrollments/{w.b_blocked}/retry", 200),
        control_status=200,
        writes=False,
    ),
    ("GET", "/v1/automations"): ApiCase(
        role="read",
        attacks=lambda w: [Call("GET", "/v1/automations", 200)],
        control=lambda w: Call("GET", "/v1/automations", 200),
        control_status=200,
        writes=False,
    ),
    ("GET", "/v1/broadcasts"): ApiCase(
        role="read",
        attacks=lambda w: [Call("GET", "/v1/broadcasts", 200)],
        control=lambda w: Call("GET", "/v1/broadcasts", 200),
        control_status=200,
        writes=False,
    ),
    ("POST", "/v1/broadcasts"): ApiCase(
        role="write",
        # A draft of A's own (its id made up): nothing of B is named or reached.
        attacks=lambda w: [
            Call("POST", "/v1/broadcasts", 201, {"template": "hello", "audience": {"on_list": "news"}})
        ],
        control=lambda w: Call(
            "POST", "/v1/broadcasts", 201, {"id": "bramble-new", "template": "hello", "audience": B_AUDIENCE}
        ),
        control_status=201,
        writes=True,
    ),
    ("GET", "/v1/broadcasts/{broadcast_id}"): ApiCase(
        role="read",
        attacks=lambda w: [
            Call("GET", f"/v1/broadcasts/{B_DRAFT}", 404),
            Call("GET", "/v1/broadcasts/bramble-blast", 404),
        ],
        control=lambda w: Call("GET", f"/v1/broadcasts/{B_DRAFT}", 200),
        control_status=200,
        writes=False,
    ),
    ("POST", "/v1/broadcasts/{broadcast_id}/schedule"): ApiCase(
        role="write",
        attacks=lambda w: [
            Call("POST", f"/v1/broadcasts/{B_DRAFT}/schedule", 404, {"send_at": "2026-03-09 09:00"}),
            Call("POST", "/v1/broadcasts/bramble-blast/schedule", 404, {"send_at": "now"}),
        ],
        control=lambda w: Call(
            "POST", f"/v1/broadcasts/{B_DRAFT}/schedule", 200, {"send_at": "2026-03-09 09:00"}
        ),
        control_status=200,
        writes=True,
    ),
    ("POST", "/v1/broadcasts/{broadcast_id}/cancel"): ApiCase(
        role="write",
        attacks=lambda w: [
            Call("POST", f"/v1/broadcasts/{B_DRAFT}/cancel", 404),
            Call("POST", "/v1/broadcasts/bramble-blast/cancel", 404),
        ],
        control=lambda w: Call("POST", f"/v1/broadcasts/{B_DRAFT}/cancel", 200),
        control_status=200,
        writes=True,
    ),
    ("POST", "/v1/broadcasts/{broadcast_id}/test-send"): ApiCase(
        role="write",
        attacks=lambda w: [
            Call("POST", f"/v1/broadcasts/{B_DRAFT}/test-send", 404, {"to": A_EMAIL}),
            Call("POST", "/v1/broadcasts/bramble-blast/test-send", 404, {"to": A_EMAIL, "contact": B_EMAIL}),
        ],
        control=lambda w: Call(
            "POST", f"/v1/broadcasts/{B_DRAFT}/test-send", 200, {"to": "qa@shop.test", "contact": B_EMAIL}
        ),
        control_status=200,
        writes=True,  # a test message in B's outbox
    ),
    ("POST", "/v1/workspace/validate"): ApiCase(
        role="write",
        # B's own file under A's key: "not this key's workspace", and nothing about B's state.
        attacks=lambda w: [Call("POST", "/v1/workspace/validate", 200, content=_b_file())],
        # B's file without its own sequences: the rehearsal says it would archive them.
        control=lambda w: Call("POST", "/v1/workspace/validate", 200, content=_b_file(extra="")),
        control_status=200,
        writes=False,
    ),
    ("PUT", "/v1/workspace"): ApiCase(
        role="admin",
        attacks=lambda w: [
            Call("PUT", "/v1/workspace", 422, content=_b_file()),
        ],
        control=lambda w: Call(
            "PUT", "/v1/workspace", 200, content=_b_file().replace(B_NAME, "Bramblewood, renamed")
        ),
        control_status=200,
        writes=True,
    ),
    ("GET", "/v1/reports/sequences/{sequence_id}"): ApiCase(
        role="read",
        attacks=lambda w: [
            Call("GET", "/v1/reports/sequences/bramble-only", 404),
            Call("GET", "/v1/reports/sequences/drip", 200),  # A's own drip
        ],
        control=lambda w: Call("GET", "/v1/reports/sequences/bramble-only", 200),
        control_status=200,
        writes=False,
    ),
    ("GET", "/v1/reports/broadcasts/{broadcast_id}"): ApiCase(
        role="read",
        attacks=lambda w: [
            Call("GET", "/v1/reports/broadcasts/bramble-blast", 404),
            Call("GET", f"/v1/reports/broadcasts/{B_DRAFT}", 404),
        ],
        control=lambda w: Call("GET", "/v1/reports/broadcasts/bramble-blast", 200),
        control_status=200,
        writes=False,
    ),
    # -- provider event webhooks (issue 5): the key as Bearer or Basic password, plus the signature --
    ("POST", "/v1/providers/ses"): ApiCase(
        role="write",
        attacks=lambda w: [_ses(w), _ses(w, with_message=False)],
        control=_ses,
        control_status=200,
        writes=True,  # B's contact bounced: blacklisted (L1)
    ),
    ("POST", "/v1/providers/sendgrid"): ApiCase(
        role="write",
        attacks=lambda w: [_sendgrid(w)],
        control=_sendgrid,
        control_status=200,
        writes=True,  # B's contact complained: blacklisted (L1)
    ),
    # -- tracking links (D1, D2): public, the signed token is the credential --
    ("GET", "/t/o/{workspace_id}/{token}"): TokenCase(
        reason="open pixel in emails: no key possible; the token is signed with its workspace's key",
        attacks=lambda w: [Call("GET", _swap(w.b_open, A), 200)],
        control=lambda w: Call("GET", w.b_open, 200),
        writes=True,  # records email.opened
        pixel=True,
    ),
    ("GET", "/t/o/{rest:path}"): TokenCase(
        reason="malformed open pixel: the same GIF, nothing recorded",
        attacks=lambda w: _malformed(w.b_open, 200),
        pixel=True,
    ),
    ("GET", "/t/c/{workspace_id}/{token}"): TokenCase(
        reason="tracked link in emails: no key possible; the token is signed with its workspace's key",
        attacks=lambda w: [Call("GET", _swap(w.b_click, A), 404)],
        control=lambda w: Call("GET", w.b_click, 302),
        control_status=302,
        writes=True,  # records link.clicked
    ),
    ("GET", "/t/c/{rest:path}"): TokenCase(
        reason="malformed tracked link: the same 'not valid' page, nothing recorded",
        attacks=lambda w: _malformed(w.b_click, 404),
    ),
    ("GET", "/t/u/{workspace_id}/{token}"): TokenCase(
        reason="unsubscribe page linked from emails: no key possible; the token is the credential",
        attacks=lambda w: [Call("GET", _swap(w.b_unsubscribe, A), 404)],
        control=lambda w: Call("GET", w.b_unsubscribe, 200),  # names B; changes nothing by itself
    ),
    ("POST", "/t/u/{workspace_id}/{token}"): TokenCase(
        reason="RFC 8058 one-click unsubscribe: mail providers POST it without any key",
        attacks=lambda w: [
            Call("POST", _swap(w.b_unsubscribe, A), 404, form={"List-Unsubscribe": "One-Click"}),
            Call("POST", _swap(w.b_unsubscribe, A), 404, form={"scope": "sequence"}),
        ],
        control=lambda w: Call("POST", w.b_unsubscribe, 200, form={"List-Unsubscribe": "One-Click"}),
        writes=True,  # unsubscribes the contact (L3)
    ),
    ("GET", "/t/u/{rest:path}"): TokenCase(
        reason="malformed unsubscribe link: the 'not valid' page, nothing changed",
        attacks=lambda w: _malformed(w.b_unsubscribe, 404),
    ),
    ("POST", "/t/u/{rest:path}"): TokenCase(
        reason="malformed one-click unsubscribe: the 'not valid' page, nothing changed",
        attacks=lambda w: _malformed_post(w.b_unsubscribe),
    ),
    # -- public, no workspace data --
    ("GET", "/healthz"): StaticCase("liveness probe for the orchestrator; says only 'ok'"),
    ("GET", "/readyz"): StaticCase("readiness probe; says only whether the database answers"),
    ("GET", "/openapi.json"): StaticCase("the API's own description; the same for everyone"),
    ("GET", "/docs"): StaticCase("Swagger UI page for the API description"),
    ("GET", "/docs/oauth2-redirect"): StaticCase("Swagger UI helper page"),
    ("GET", "/redoc"): StaticCase("ReDoc page for the API description"),
    # -- the operator's --
    ("GET", "/metrics"): OperatorCase(
        reason=(
            "Prometheus metrics across all workspaces, for the operator: guarded by the metrics "
            "token when set (docs: open on an internal network only without it), never by a "
            "workspace key"
        ),
        token_env=TOKEN_ENV,
    ),
}


def test_the_table_covers_every_route_the_app_serves_and_nothing_else() -> None:
    unknown = [f"{method} {path}" for method, path in ROUTES if (method, path) not in CASES]
    assert not unknown, f"routes with no isolation case in CASES: {unknown}"
    stale = [f"{method} {path}" for method, path in CASES if (method, path) not in ROUTES]
    assert not stale, f"CASES names routes the app does not serve: {stale}"
    # The OpenAPI document's operations are among them (the table covers the schema).
    served = {(method, path.replace(":path", "")) for method, path in ROUTES}
    assert not SCHEMA_OPERATIONS - served, SCHEMA_OPERATIONS - served
    # Writing API routes need at least the write role: a read key never writes.
    for (method, path), case in CASES.items():
        if isinstance(case, ApiCase) and method in WRITING:
            assert ROLES.index(case.role) >= ROLES.index("write"), f"{method} {path}"


def _route_id(route: tuple[str, str]) -> str:
    return f"{route[0]} {route[1]}"


@pytest.mark.parametrize("route", ROUTES, ids=_route_id)
def test_a_key_of_one_workspace_cannot_reach_another(
    route: tuple[str, str], world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = CASES.get(route)
    if case is None:
        pytest.fail(f"{_route_id(route)}: no isolation case in CASES; add one (how to aim it at B)")
    engine = world.api.engine
    before = {workspace: _snapshot(engine, workspace) for workspace in (A, B)}
    if isinstance(case, ApiCase):
        _check_api_route(world, case, before)
    elif isinstance(case, TokenCase):
        _check_tracking_route(world, case, before)
    elif isinstance(case, StaticCase):
        with world.client(A, "admin") as client:
            response = client.get(route[1])
        assert response.status_code == 200, response.text
        assert not _leaks(world, Call("GET", route[1], 200), response)
        assert {ws: _snapshot(engine, ws) for ws in (A, B)} == before
    else:
        _check_operator_route(world, case, route, monkeypatch, before)


def _check_api_route(world: World, case: ApiCase, before: dict[str, Any]) -> None:
    engine = world.api.engine
    attacks = case.attacks(world)
    assert attacks
    with world.client() as anonymous:
        for call in attacks:
            _assert_structured_error(call.send(anonymous), 401)
    # A's keys, every role, aimed at B.
    for role in ROLES:
        with world.client(A, role) as client:
            for call in attacks:
                response = call.send(client)
                expect = 403 if ROLES.index(role) < ROLES.index(case.role) else call.expect
                where = f"{A}/{role}: {call.method} {call.url} {call.json_body}"
                if expect >= 400:
                    _assert_structured_error(response, expect)
                else:
                    assert response.status_code == expect, (where, response.text)
                assert not _leaks(world, call, response), (where, _leaks(world, call, response))
                assert _changed(before[B], _snapshot(engine, B)) == [], where
    # B's own keys below the route's role: 403, and nothing changes anywhere.
    control = case.control(world)
    after_attacks = {ws: _snapshot(engine, ws) for ws in (A, B)}
    for role in ROLES[: ROLES.index(case.role)]:
        with world.client(B, role) as client:
            _assert_structured_error(control.send(client), 403)
        assert {ws: _snapshot(engine, ws) for ws in (A, B)} == after_attacks, f"{B}/{role} changed data"
    # The control: the same request by B's key of the route's role works on B's data.
    with world.client(B, case.role) as client:
        response = control.send(client)
    assert response.status_code == case.control_status, response.text
    if case.writes:
        assert _changed(before[B], _snapshot(engine, B)), "the control request changed nothing of B"
    else:
        assert _shows_b(world, control, response), response.text
    assert _snapshot(engine, A) == after_attacks[A], "B's request changed A"


def _check_tracking_route(world: World, case: TokenCase, before: dict[str, Any]) -> None:
    engine = world.api.engine
    for call in case.attacks(world):
        with world.client() as client:
            response = call.send(client)
        where = f"{call.method} {call.url}"
        assert response.status_code == call.expect, (where, response.status_code, response.text)
        assert "location" not in response.headers, where
        if case.pixel:
            assert response.content == PIXEL, where
        assert not _leaks(world, call, response), (where, _leaks(world, call, response))
        assert {ws: _snapshot(engine, ws) for ws in (A, B)} == before, f"{where} changed data"
    if case.control is None:
        return
    control = case.control(world)
    with world.client() as client:
        response = control.send(client)
    assert response.status_code == case.control_status, response.text
    if case.control_status == 302:
        assert response.headers["location"] == B_OFFER
    elif case.pixel:
        assert response.content == PIXEL
    elif not case.writes:  # the unsubscribe page names B's workspace
        assert B_NAME in response.text
    changed = _changed(before[B], _snapshot(engine, B))
    assert bool(changed) == case.writes, changed
    assert _snapshot(engine, A) == before[A]


def _check_operator_route(
    world: World,
    case: OperatorCase,
    route: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    before: dict[str, Any],
) -> None:
    engine = world.api.engine
    monkeypatch.setenv(case.token_env, METRICS_TOKEN)  # read per request by the server (same process)
    call = Call(route[0], route[1], 401)
    for workspace in (A, B):
        for role in ROLES:
            with world.client(workspace, role) as client:
                response = call.send(client)
            _assert_structured_error(response, 401)
            assert case.shows not in response.text
    with world.client() as anonymous:
        _assert_structured_error(call.send(anonymous), 401)
    headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    with httpx.Client(base_url=world.api.url, headers=headers, timeout=30) as operator:
        response = call.send(operator)
    assert response.status_code == 200 and case.shows in response.text
    assert {ws: _snapshot(engine, ws) for ws in (A, B)} == before


@pytest.fixture(autouse=True)
def _no_metrics_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets the metrics token itself when it needs one."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)


@pytest.fixture(autouse=True)
def _sendgrid_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SendGrid verification key both workspaces name (read per request by the server)."""
    monkeypatch.setenv(SENDGRID_ENV, sendgrid_public_key())
