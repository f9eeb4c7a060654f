"""A richer ``shop`` workspace for the contact, list, outbox and inbound API tests: custom fields,
two lists, tags, automations on a tag and on a field change, and a sequence that stops on reply."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx
from sqlalchemy import select

from dripflow.core.validate import load_workspace_text
from dripflow.engine.worker import run_worker
from dripflow.store.database import transaction
from dripflow.store.tables import JournalEntry, Message
from dripflow.store.workspaces import apply_workspace
from tests.integration.api.conftest import NOW, Api

RICH_SHOP = """\
workspace: {id: shop, name: Shop, timezone: UTC, default_send_time: "10:00", physical_address: "1 Main St"}
mailboxes:
  - {id: ann, from: "Ann <ann@shop.test>", default: true}
fields:
  - {key: plan, type: text}
  - {key: seats, type: number}
  - {key: renews, type: date}
  - {key: trial, type: boolean}
lists: [news, offers]
tags: [vip, customer, engaged]
templates:
  hello: {subject: "Hello {{ contact.first_name | default('friend') }}", text: "Hi"}
  welcome-vip: {subject: "Welcome, VIP", text: "You are special.", html: "<p>You are special.</p>"}
sequences:
  - id: drip
    start_when: [{event: list.subscribed, list: news}]
    stop_on: [replied]
    steps:
      - {id: one, type: email, template: hello}
      - {id: two, type: email, template: hello, after: {days: 1}}
  - id: vip
    start_when: [{event: tag.assigned, tag: vip}]
    steps:
      - {id: welcome, type: email, template: welcome-vip}
automations:
  - id: vip-is-customer
    when: {event: tag.assigned, tag: vip}
    then: [{add_tag: customer}]
  - id: plan-engages
    when: {event: contact.updated, changed: plan}
    then: [{add_tag: engaged}]
"""


def enrich(api: Api) -> Api:
    """Re-apply ``shop`` with the richer file (``rival`` keeps the plain one)."""
    with transaction(api.engine) as session:
        apply_workspace(session, load_workspace_text(RICH_SHOP, "shop.yaml"), now=NOW, actor="test")
    return api


def create(client: httpx.Client, email: str, **attributes: Any) -> dict[str, Any]:
    answer = client.post("/v1/contacts", json={"email": email, **attributes})
    assert answer.status_code in (200, 201), answer.text
    result: dict[str, Any] = answer.json()
    return result


def work(api: Api) -> None:
    """Run whatever is due (steps; no SMTP configured, so email is captured)."""
    run_worker(api.engine, api.clock, until_idle=True)


def journal(api: Api, contact_id: int, kinds: Iterable[str]) -> list[dict[str, Any]]:
    with transaction(api.engine) as session:
        rows = session.scalars(
            select(JournalEntry.data)
            .where(JournalEntry.contact_id == contact_id, JournalEntry.kind.in_(list(kinds)))
            .order_by(JournalEntry.id)
        )
        return [dict(row) for row in rows]


def message_ids(api: Api, contact_id: int) -> list[str]:
    with transaction(api.engine) as session:
        return list(
            session.scalars(
                select(Message.message_id).where(Message.contact_id == contact_id).order_by(Message.id)
            )
        )
