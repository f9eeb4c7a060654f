"""`dripflow events ingest`, `dripflow worker --until-idle` and `dripflow keys create` as a user runs
them (SPEC §10), on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from dripflow.store.apikeys import check_key
from dripflow.store.tables import Contact, Enrollment
from tests.acceptance.conftest import Dripflow, assert_no_traceback, store, write

EVENTS_OK = """\
{"type": "contact.created", "contact": {"email": "ann@example.com", "first_name": "Ann"}}
{"type": "list.subscribed", "contact": "ann@example.com", "list": "customers", "id": "sub-1"}
"""
EVENTS_BAD = """\
{"type": "list.subscribed", "contact": "bob@example.com", "list": "newsletter"}
{"type": "list.subscribed", "contact": "cy@example.com", "list": "newsleter"}
not json
{"type": "tag.assigned", "contact": "dee@example.com", "tag": "vip", "at": "2099-01-01T00:00:00Z"}
"""


def test_ingest_then_worker_until_idle(
    dripflow: Dripflow, db_url: str, demo_file: Path, tmp_path: Path
) -> None:
    """Events without `at` happen now; the worker runs what they made due and exits when idle;
    ingesting the same file again applies the event with an id only once (D3)."""
    assert dripflow("apply", demo_file, "--database", db_url).code == 0
    events = write(tmp_path / "events.jsonl", EVENTS_OK)
    first = dripflow("events", "ingest", events, "--database", db_url)
    assert (first.code, first.out.strip()) == (0, "applied 2 event(s) to workspace acme")
    again = dripflow("events", "ingest", events, "--database", db_url)
    assert again.out.strip() == "applied 1 event(s) to workspace acme, 1 already applied before (same id)"
    worked = dripflow("worker", "--until-idle", "--database", db_url)
    assert (worked.code, worked.out.strip()) == (0, "ran 1 due enrollment(s) in 1 batch(es)")
    with store(db_url) as session:  # sent now, or held by the demo's business hours (T6)
        assert session.scalar(select(Enrollment.status)) in ("active", "queued")
    idle = dripflow("worker", "--until-idle", "--database", db_url)
    assert idle.out.strip() == "ran 0 due enrollment(s) in 0 batch(es)"


def test_ingest_applies_the_good_lines_and_names_every_bad_one(
    dripflow: Dripflow, db_url: str, demo_file: Path, tmp_path: Path
) -> None:
    """Issue 4: bad lines and refused events are named with FILE:LINE, the other lines are still
    applied, and the command says how many failed (exit 1). Each event is whole or nothing."""
    dripflow("apply", demo_file, "--database", db_url)
    events = write(tmp_path / "events.jsonl", EVENTS_BAD)
    result = dripflow("events", "ingest", events, "--database", db_url)
    assert_no_traceback(result)
    assert result.code == 1
    assert result.out.strip() == "applied 1 event(s) to workspace acme"
    problems = result.err.splitlines()[:3]  # in line order, each with its line
    assert problems[0] == f"{events}:2: unknown list 'newsleter' — did you mean 'newsletter'?"
    assert problems[1].startswith(f"{events}:3: not a JSON object")
    assert problems[2].startswith(f"{events}:4: `at` 2099-01-01T00:00:00Z is in the future")
    assert "3 line(s) failed and were not applied; the others were." in result.err
    with store(db_url) as session:  # bob's subscription went in; nothing of cy's or dee's did
        assert session.scalars(select(Contact.email).order_by(Contact.email)).all() == ["bob@example.com"]


def test_ingest_atomic_applies_nothing_if_any_line_fails(
    dripflow: Dripflow, db_url: str, demo_file: Path, tmp_path: Path
) -> None:
    """`--atomic`: every problem is still named in one run, and nothing is applied."""
    dripflow("apply", demo_file, "--database", db_url)
    events = write(tmp_path / "events.jsonl", EVENTS_BAD)
    result = dripflow("events", "ingest", events, "--atomic", "--database", db_url)
    assert_no_traceback(result)
    assert result.code == 1
    assert f"{events}:3: not a JSON object" in result.err
    assert f"{events}:4: `at` 2099-01-01T00:00:00Z is in the future" in result.err
    fixed = write(tmp_path / "fixed.jsonl", "\n".join(EVENTS_BAD.splitlines()[:2]) + "\n")
    second = dripflow("events", "ingest", fixed, "--atomic", "--database", db_url)
    assert second.code == 1
    assert f"{fixed}:2: unknown list 'newsleter' — did you mean 'newsletter'?" in second.err
    assert "nothing was applied" in second.err
    with store(db_url) as session:
        assert session.scalar(select(func.count()).select_from(Contact)) == 0


def test_keys_create_prints_a_working_key_once(dripflow: Dripflow, db_url: str, demo_file: Path) -> None:
    dripflow("apply", demo_file, "--database", db_url)
    created = dripflow("keys", "create", "--role", "write", "--database", db_url)
    key = created.out.strip()
    assert created.code == 0 and key.startswith("df_")
    with store(db_url) as session:
        credential = check_key(session, key)
        assert credential is not None and (credential.workspace_id, credential.role) == ("acme", "write")
        assert check_key(session, key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    wrong = dripflow("keys", "create", "--role", "owner", "--database", db_url)
    assert wrong.code == 1 and "--role must be one of read, write, admin" in wrong.err


def test_ingest_names_bad_contacts_and_dates_without_a_traceback(
    dripflow: Dripflow, db_url: str, demo_file: Path, tmp_path: Path
) -> None:
    dripflow("apply", demo_file, "--database", db_url)
    bad = write(
        tmp_path / "bad.jsonl",
        '{"type": "tag.assigned", "contact": "", "tag": "vip"}\n'
        '{"type": "tag.assigned", "contact": "a@b.test", "tag": "vip", "at": "0001-01-01T00:00:00+05:00"}\n',
    )
    dates = dripflow("events", "ingest", bad, "--database", db_url)
    assert_no_traceback(dates)
    assert f"{bad}:2: `at` '0001-01-01T00:00:00+05:00' is out of range" in dates.err
    write(bad, '{"type": "tag.assigned", "contact": "", "tag": "vip"}\n')
    contact = dripflow("events", "ingest", bad, "--database", db_url)
    assert_no_traceback(contact)
    assert f"{bad}:1: contact: email is empty" in contact.err


def test_serve_refuses_to_sign_links_with_the_public_development_key(
    dripflow: Dripflow, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Security: without DRIPFLOW_SECRET_KEY anyone could forge unsubscribe and click tokens (D2)."""
    monkeypatch.delenv("DRIPFLOW_SECRET_KEY", raising=False)
    refused = dripflow("serve", "--database", db_url, "--port", "1")
    assert_no_traceback(refused)
    assert refused.code == 1
    assert "DRIPFLOW_SECRET_KEY is not set" in refused.err and "--dev-secret" in refused.err
