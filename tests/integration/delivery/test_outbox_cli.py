"""`dripflow outbox list`: the dev inbox shows captured, queued and sent messages (issue 5, SPEC §10)."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from sqlalchemy import Engine
from typer.testing import CliRunner

from dripflow.cli import outbox
from dripflow.core.validate import load_workspace_text
from dripflow.store.database import transaction
from dripflow.store.tables import Contact, Message
from dripflow.store.workspaces import apply_workspace

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WORKSPACE = """\
workspace: {id: shop, name: Shop, timezone: UTC}
mailboxes: [{id: ann, from: "Ann <ann@shop.test>", default: true}]
"""


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(outbox.app, name="outbox")

    @app.command("noop")
    def noop() -> None:  # a second command keeps `outbox` a group, as in cli/main.py
        """Nothing."""

    return app


def _seed(engine: Engine) -> None:
    with transaction(engine) as session:
        apply_workspace(session, load_workspace_text(WORKSPACE, "shop.yaml"), now=AT, actor="test")
        contact = Contact(workspace_id="shop", email="bob@x.test", fields={}, created_at=AT, updated_at=AT)
        session.add(contact)
        session.flush()
        for n, status in enumerate(["captured", "queued", "sent"]):
            session.add(
                Message(
                    workspace_id="shop", key=f"k{n}", contact_id=contact.id, channel="email",
                    recipient="bob@x.test", sender="Ann <ann@shop.test>", mailbox="ann", template="t",
                    subject=f"Subject {status}", body_text="Hi", message_id=f"<k{n}@shop.test>",
                    status=status, created_at=AT, sent_at=AT if status == "sent" else None,
                )
            )  # fmt: skip


def test_lists_the_outbox_and_filters_by_status(engine: Engine, db_url: str) -> None:
    _seed(engine)
    runner = CliRunner()
    shown = runner.invoke(_cli(), ["outbox", "list", "--database", db_url], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    for status in ("captured", "queued", "sent"):
        assert f"Subject {status}" in shown.output
    only_sent = runner.invoke(
        _cli(), ["outbox", "list", "--status", "sent", "--database", db_url], env={"COLUMNS": "200"}
    )
    assert only_sent.exit_code == 0, only_sent.output
    assert "Subject sent" in only_sent.output and "Subject queued" not in only_sent.output
    assert "sent 2026-03-02 09:00" in only_sent.output
