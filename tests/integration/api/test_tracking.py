"""Tracking endpoints over real HTTP (uvicorn on a loopback port), on each store: open pixel,
click redirect, unsubscribe page and RFC 8058 One-Click POST, all with signed tokens.

SPEC D1 (unsubscribe link: a sequence email's link leaves that sequence, with a choice to leave
everything; RFC 8058 One-Click), D2 (signed, unguessable tokens; a tampered token changes
nothing), S12 (the contact's own unsubscribe from a sequence cancels it: canceled/unsubscribed),
L3 (a global unsubscribe stops everything) and the §3 events `email.opened`, `link.clicked`,
`unsubscribed`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, func, select

from dripflow.api.app import create_app
from dripflow.api.routes import tracking
from dripflow.core.clock import VirtualClock
from dripflow.core.validate import load_workspace_text
from dripflow.engine.context import Ctx, load_rules
from dripflow.engine.eventfile import InputEvent
from dripflow.engine.ingest_file import ingest_events
from dripflow.engine.messages import link_url, open_url, unsubscribe_url
from dripflow.engine.worker import run_worker
from dripflow.store.database import transaction
from dripflow.store.tables import Contact, Enrollment, Fact, JournalEntry, Message
from dripflow.store.workspaces import apply_workspace
from dripflow.tracking.tokens import read_tracking, secret_key, verify
from tests.conftest import free_port
from tests.integration.api.conftest import NOW

OFFER = "https://shop.test/offer?utm=drip"

WORKSPACE = """\
workspace:
  id: {id}
  name: Shop & Co
  timezone: UTC
  default_send_time: "10:00"
  physical_address: "1 Main St"
  base_url: "https://mail.shop.test"
mailboxes:
  - {{id: ann, from: "Ann <ann@shop.test>", default: true}}
lists: [news]
catalog:
  links: {{offer: "{offer}"}}
templates:
  hello: {{subject: "Hello", text: "Hi. Offer: {{{{ link('offer') }}}} Leave: {{{{ unsubscribe_url }}}}",
          html: "<html><body><p>Hi</p></body></html>"}}
sequences:
  - id: drip
    start_when: [{{event: list.subscribed, list: news}}]
    steps:
      - {{id: one, type: email, template: hello}}
      - {{id: two, type: email, template: hello, after: {{days: 1}}}}
  - id: tips
    start_when: [{{event: list.subscribed, list: news}}]
    steps:
      - {{id: first, type: email, template: hello}}
      - {{id: second, type: email, template: hello, after: {{days: 2}}}}
"""


@dataclass
class Tracked:
    url: str
    clock: VirtualClock
    engine: Engine

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, follow_redirects=False)


@pytest.fixture
def served(engine: Engine) -> Iterator[Tracked]:
    """Two workspaces ("shop", "rival"), the tracking router served by uvicorn in a thread."""
    with transaction(engine) as session:
        for workspace_id in ("shop", "rival"):
            text = WORKSPACE.format(id=workspace_id, offer=OFFER)
            apply_workspace(session, load_workspace_text(text, f"{workspace_id}.yaml"), now=NOW, actor="test")
    clock = VirtualClock(NOW)
    app = create_app(engine, clock)
    app.include_router(tracking.router)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield Tracked(f"http://127.0.0.1:{port}", clock, engine)
    server.should_exit = True
    thread.join(timeout=10)


# -- helpers ----------------------------------------------------------------------------------------


def _enroll(served: Tracked, email: str = "ann@x.test", workspace_id: str = "shop") -> Message:
    """Subscribe ``email`` (enrolled in drip and tips), run the worker; the drip step-one message."""
    event = {"type": "list.subscribed", "contact": {"email": email, "first_name": "Ann"}, "list": "news"}
    ingest_events(served.engine, workspace_id, [InputEvent(1, NOW, event)], Path("test"))
    run_worker(served.engine, served.clock, workspace_ids=[workspace_id], until_idle=True)
    with transaction(served.engine) as session:
        contact = session.scalars(
            select(Contact).where(Contact.workspace_id == workspace_id, Contact.email == email)
        ).one()
        message = session.scalars(
            select(Message).where(
                Message.workspace_id == workspace_id,
                Message.contact_id == contact.id,
                Message.sequence_id == "drip",
            )
        ).one()
        session.expunge(message)
    return message


def _urls(message: Message) -> tuple[str, str]:
    """The click and unsubscribe URLs as the real message carries them (paths only)."""
    text = message.body_text
    offer = text.split("Offer: ", 1)[1].split()[0]
    leave = text.split("Leave: ", 1)[1].split()[0]
    assert offer.startswith("https://mail.shop.test/t/c/") and leave.startswith("https://mail.shop.test/t/u/")
    return urlsplit(offer).path, urlsplit(leave).path


def _open_path(served: Tracked, message: Message) -> str:
    with transaction(served.engine) as session:
        ctx = Ctx(session, message.workspace_id, load_rules(session, message.workspace_id), served.clock)
        return urlsplit(open_url(ctx, message.key, message.contact_id)).path


def _tamper(path: str) -> str:
    """Flip one character in the middle of the token's payload."""
    head, token = path.rsplit("/", 1)
    index = len(token.split(".", 1)[0]) // 2
    flipped = "A" if token[index] != "A" else "B"
    return f"{head}/{token[:index]}{flipped}{token[index + 1 :]}"


def _facts(engine: Engine, kind: str | None = None) -> list[Fact]:
    with transaction(engine) as session:
        query = select(Fact).order_by(Fact.id)
        if kind is not None:
            query = query.where(Fact.kind == kind)
        rows = list(session.scalars(query))
        session.expunge_all()
    return rows


def _state(engine: Engine, contact_id: int) -> dict[str, Any]:
    """Everything an unsubscribe could change for the contact, plus the record of what happened."""
    with transaction(engine) as session:
        contact = session.get(Contact, contact_id)
        assert contact is not None
        enrollments = {
            row.sequence_id: (row.status, row.reason, row.closed_at)
            for row in session.scalars(select(Enrollment).where(Enrollment.contact_id == contact_id))
        }
        journal = session.scalar(
            select(func.count()).select_from(JournalEntry).where(JournalEntry.contact_id == contact_id)
        )
        facts = session.scalar(select(func.count()).select_from(Fact).where(Fact.contact_id == contact_id))
        return {
            "unsubscribed_at": contact.unsubscribed_at,
            "enrollments": enrollments,
            "journal": journal,
            "facts": facts,
        }


def _multipart(fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = "----dripflowtest7d3a"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


# -- D2: the URLs and their tokens ---------------------------------------------------------------------


def test_d2_tracking_urls_name_the_workspace_and_carry_tokens_signed_with_its_key(served: Tracked) -> None:
    """D2: /t/{kind}/{workspace}/{token}; the token verifies only with that workspace's key, and the
    builders give exactly the URLs the real message carries."""
    message = _enroll(served)
    click_path, leave_path = _urls(message)
    assert click_path.startswith("/t/c/shop/") and leave_path.startswith("/t/u/shop/")
    payload = verify(secret_key("shop"), leave_path.rsplit("/", 1)[1])
    assert payload == {"c": message.contact_id, "m": message.key, "s": "drip"}
    assert read_tracking("c", "shop", click_path.rsplit("/", 1)[1]) == {
        "c": message.contact_id,
        "m": message.key,
        "l": "offer",
    }
    with transaction(served.engine) as session:
        ctx = Ctx(session, "shop", load_rules(session, "shop"), served.clock)
        assert urlsplit(unsubscribe_url(ctx, message.key, message.contact_id, "drip")).path == leave_path
        assert urlsplit(link_url(ctx, message.key, message.contact_id, "offer")).path == click_path
        pixel = open_url(ctx, message.key, message.contact_id)
    assert pixel.startswith("https://mail.shop.test/t/o/shop/")
    assert read_tracking("o", "shop", pixel.rsplit("/", 1)[1]) == {
        "c": message.contact_id,
        "m": message.key,
        "o": 1,
    }


# -- opens --------------------------------------------------------------------------------------------


def test_d2_open_pixel_records_email_opened_for_the_message_and_answers_a_gif(served: Tracked) -> None:
    """§3 `email.opened` {message}: the pixel records an open attributed to the message (its
    sequence and step too) and answers a 1x1 GIF that no one caches."""
    message = _enroll(served)
    served.clock.set(NOW + timedelta(hours=2))
    with served.client() as client:
        answer = client.get(_open_path(served, message))
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/gif"
    assert answer.content == tracking.PIXEL and answer.content.startswith(b"GIF89a")
    assert "no-store" in answer.headers["cache-control"] and answer.headers["pragma"] == "no-cache"
    [opened] = _facts(served.engine, "email.opened")
    assert (opened.contact_id, opened.at) == (message.contact_id, NOW + timedelta(hours=2))
    assert opened.detail["message"] == message.message_id
    assert (opened.detail["sequence"], opened.detail["step"]) == ("drip", "one")


def test_d2_the_html_part_carries_the_open_pixel_and_opening_it_records_the_open(served: Tracked) -> None:
    """D2: a sequence email's HTML part ends (before `</body>`) with a 1x1 image whose signed URL is
    the message's open pixel; the text part carries none. Fetching it records `email.opened`."""
    message = _enroll(served)
    assert message.body_html is not None and "/t/o/" not in message.body_text
    html = message.body_html
    src = html.split('<img src="', 1)[1].split('"', 1)[0]
    assert html.index("<img") < html.index("</body>") and html.endswith("</body></html>")
    assert urlsplit(src).path == _open_path(served, message)
    with served.client() as client:
        assert client.get(urlsplit(src).path).status_code == 200
    [opened] = _facts(served.engine, "email.opened")
    assert opened.detail["message"] == message.message_id


def test_d2_tampered_or_foreign_open_token_records_nothing_and_answers_the_same_gif(served: Tracked) -> None:
    """D2: a tampered token (one character flipped), a token shown under another workspace, another
    kind's token and garbage all get the very same GIF, and nothing is recorded."""
    message = _enroll(served)
    path = _open_path(served, message)
    before = [fact.id for fact in _facts(served.engine)]
    token = path.rsplit("/", 1)[1]
    click_token = _urls(message)[0].rsplit("/", 1)[1]
    with served.client() as client:
        answers = [
            client.get(_tamper(path)),
            client.get(f"/t/o/rival/{token}"),
            client.get(f"/t/o/shop/{click_token}"),
            client.get("/t/o/shop/not-a-token"),
            client.get(f"/t/o/{token}"),
        ]
    for answer in answers:
        assert answer.status_code == 200
        assert answer.content == tracking.PIXEL and answer.headers["content-type"] == "image/gif"
    assert [fact.id for fact in _facts(served.engine)] == before


# -- clicks -------------------------------------------------------------------------------------------


def test_d2_click_redirects_to_the_catalog_url_and_records_link_clicked(served: Tracked) -> None:
    """§3 `link.clicked` {link, message}: the redirect goes to the workspace catalog's address."""
    message = _enroll(served)
    click_path, _ = _urls(message)
    with served.client() as client:
        answer = client.get(click_path)
    assert answer.status_code in (302, 303)
    assert answer.headers["location"] == OFFER
    assert answer.headers["referrer-policy"] == "no-referrer"
    [clicked] = _facts(served.engine, "link.clicked")
    assert clicked.contact_id == message.contact_id
    assert clicked.detail["message"] == message.message_id
    assert clicked.key == "offer"


def test_d2_a_click_on_a_sequence_email_is_filed_under_its_link(served: Tracked) -> None:
    """§3 clicked_link reads the fact's key: a click on `offer` must be filed under `offer`."""
    message = _enroll(served)
    with served.client() as client:
        client.get(_urls(message)[0])
    [clicked] = _facts(served.engine, "link.clicked")
    assert clicked.key == "offer" and clicked.detail["sequence"] == "drip"


def test_d2_tampered_click_token_is_a_404_page_and_records_nothing(served: Tracked) -> None:
    """D2: never an open redirect; a bad token is a plain 404 page, and nothing is recorded."""
    message = _enroll(served)
    click_path, _ = _urls(message)
    token = click_path.rsplit("/", 1)[1]
    before = [fact.id for fact in _facts(served.engine)]
    with served.client() as client:
        answers = [
            client.get(_tamper(click_path)),
            client.get(f"/t/c/rival/{token}"),
            client.get(f"/t/c/shop/{token}?url=https://evil.test/"),
        ]
    assert [a.status_code for a in answers[:2]] == [404, 404]
    for answer in answers[:2]:
        assert "location" not in answer.headers
        assert answer.headers["content-type"].startswith("text/html")
        assert "not valid" in answer.text
    assert answers[2].headers["location"] == OFFER  # query strings are ignored: catalog URLs only
    assert len(_facts(served.engine)) == len(before) + 1


# -- unsubscribes -------------------------------------------------------------------------------------


def test_d1_unsubscribe_page_offers_this_sequence_or_everything_and_changes_nothing(served: Tracked) -> None:
    """D1: a sequence email's link leaves that sequence, with a choice to leave everything. Showing
    the page (as a mail scanner following the link would) unsubscribes nobody."""
    message = _enroll(served)
    _, leave_path = _urls(message)
    before = _state(served.engine, message.contact_id)
    with served.client() as client:
        page = client.get(leave_path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text.count('<form method="post">') == 2
    assert 'name="scope" value="sequence"' in page.text and 'name="scope" value="all"' in page.text
    assert "Shop &amp; Co" in page.text  # the workspace name, escaped
    assert "<script" not in page.text
    assert _state(served.engine, message.contact_id) == before


def test_d1_l3_one_click_post_unsubscribes_globally_and_cancels_every_enrollment(served: Tracked) -> None:
    """RFC 8058 One-Click POST (`List-Unsubscribe=One-Click`) is a global unsubscribe (L3): the
    contact is unsubscribed and every open enrollment is canceled/unsubscribed."""
    message = _enroll(served)
    _, leave_path = _urls(message)
    served.clock.set(NOW + timedelta(hours=3))
    with served.client() as client:
        answer = client.post(
            leave_path,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert answer.status_code == 200 and "unsubscribed" in answer.text.lower()
    state = _state(served.engine, message.contact_id)
    assert state["unsubscribed_at"] == NOW + timedelta(hours=3)
    assert state["enrollments"] == {
        "drip": ("canceled", "unsubscribed", NOW + timedelta(hours=3)),
        "tips": ("canceled", "unsubscribed", NOW + timedelta(hours=3)),
    }
    # L3: nothing more is sent.
    served.clock.set(NOW + timedelta(days=5))
    run_worker(served.engine, served.clock, workspace_ids=["shop"], until_idle=True)
    with transaction(served.engine) as session:
        sent = session.scalar(
            select(func.count()).select_from(Message).where(Message.contact_id == message.contact_id)
        )
    assert sent == 2  # step one of drip and of tips, before the unsubscribe


def test_d1_one_click_post_as_multipart_form_data_works_too(served: Tracked) -> None:
    """RFC 8058 §3.1: the POST SHOULD be multipart/form-data (and MAY be urlencoded)."""
    message = _enroll(served)
    _, leave_path = _urls(message)
    body, content_type = _multipart({"List-Unsubscribe": "One-Click"})
    with served.client() as client:
        answer = client.post(leave_path, content=body, headers={"Content-Type": content_type})
    assert answer.status_code == 200
    state = _state(served.engine, message.contact_id)
    assert state["unsubscribed_at"] == NOW
    assert {status for status, _, _ in state["enrollments"].values()} == {"canceled"}


def test_s12_sequence_scope_post_cancels_only_that_enrollment_as_unsubscribed(served: Tracked) -> None:
    """S12: the contact's own unsubscribe from the sequence cancels it (`unsubscribed`); the other
    sequence goes on and the contact is not globally unsubscribed."""
    message = _enroll(served)
    _, leave_path = _urls(message)
    served.clock.set(NOW + timedelta(hours=1))
    with served.client() as client:
        answer = client.post(leave_path, data={"scope": "sequence"})
    assert answer.status_code == 200
    state = _state(served.engine, message.contact_id)
    assert state["unsubscribed_at"] is None
    assert state["enrollments"]["drip"] == ("canceled", "unsubscribed", NOW + timedelta(hours=1))
    assert state["enrollments"]["tips"][:2] == ("active", None)
    # The other sequence still sends; drip does not.
    served.clock.set(NOW + timedelta(days=3))
    run_worker(served.engine, served.clock, workspace_ids=["shop"], until_idle=True)
    with transaction(served.engine) as session:
        steps = sorted(
            (row.sequence_id, row.step_id)
            for row in session.scalars(select(Message).where(Message.contact_id == message.contact_id))
        )
    assert steps == [("drip", "one"), ("tips", "first"), ("tips", "second")]


def test_d1_s12_l3_repeated_posts_change_nothing_more(served: Tracked) -> None:
    """Idempotent: the same sequence-scope POST, then the same global POST, again later."""
    message = _enroll(served)
    _, leave_path = _urls(message)
    with served.client() as client:
        assert client.post(leave_path, data={"scope": "sequence"}).status_code == 200
        after_sequence = _state(served.engine, message.contact_id)
        served.clock.set(NOW + timedelta(hours=1))
        assert client.post(leave_path, data={"scope": "sequence"}).status_code == 200
        assert _state(served.engine, message.contact_id) == after_sequence

        assert client.post(leave_path, data={"scope": "all"}).status_code == 200
        after_all = _state(served.engine, message.contact_id)
        assert after_all["unsubscribed_at"] == NOW + timedelta(hours=1)
        served.clock.set(NOW + timedelta(hours=2))
        assert client.post(leave_path, data={"scope": "all"}).status_code == 200
        assert client.post(leave_path, content=b"List-Unsubscribe=One-Click").status_code == 200
        assert _state(served.engine, message.contact_id) == after_all


def test_d2_tampered_unsubscribe_token_changes_nothing(served: Tracked) -> None:
    """D2: a flipped character, the token under another workspace, an open token presented as an
    unsubscribe token: the page and the POST answer 404 and nothing changes."""
    message = _enroll(served)
    _enroll(served, workspace_id="rival")  # the rival's contact has the same id space
    _, leave_path = _urls(message)
    token = leave_path.rsplit("/", 1)[1]
    open_token = _open_path(served, message).rsplit("/", 1)[1]
    before = _state(served.engine, message.contact_id)
    with transaction(served.engine) as session:
        rival_before = session.scalars(
            select(Contact.unsubscribed_at).where(Contact.workspace_id == "rival")
        ).all()
    bad = [_tamper(leave_path), f"/t/u/rival/{token}", f"/t/u/shop/{open_token}", f"/t/u/{token}"]
    with served.client() as client:
        for path in bad:
            page = client.get(path)
            one_click = client.post(path, content=b"List-Unsubscribe=One-Click")
            scoped = client.post(path, data={"scope": "sequence"})
            for answer in (page, one_click, scoped):
                assert answer.status_code in (400, 404), path
                assert "not valid" in answer.text
    assert _state(served.engine, message.contact_id) == before
    with transaction(served.engine) as session:
        assert (
            session.scalars(select(Contact.unsubscribed_at).where(Contact.workspace_id == "rival")).all()
            == rival_before
        )


def test_d1_sequence_scope_needs_a_sequence_email(served: Tracked) -> None:
    """A broadcast's link (no sequence) offers only "everything"; asking it for scope=sequence is a
    400 page that changes nothing."""
    message = _enroll(served)
    with transaction(served.engine) as session:
        ctx = Ctx(session, "shop", load_rules(session, "shop"), served.clock)
        path = urlsplit(unsubscribe_url(ctx, "broadcast:bf:1", message.contact_id, None)).path
    before = _state(served.engine, message.contact_id)
    with served.client() as client:
        page = client.get(path)
        refused = client.post(path, data={"scope": "sequence"})
    assert page.status_code == 200 and page.text.count("<form") == 1 and 'value="all"' in page.text
    assert refused.status_code == 400
    assert _state(served.engine, message.contact_id) == before
