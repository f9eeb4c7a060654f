"""`dripflow apply FILE` on SQLite and PostgreSQL: idempotent, versioned, all or nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from dripflow.store.tables import AuditEntry, Message, Sequence, Workspace
from dripflow.store.workspaces import sequence_versions
from tests.acceptance.conftest import DEMO_YAML, Dripflow, assert_no_traceback, store, write

OFFER_AFTER = "        after: {hours: 4}\n"  # the `offer` step of the demo's onboarding sequence


def snapshot(url: str) -> dict[str, Any]:
    """Everything `apply` writes: the workspace row, each sequence's versions, the audit log."""
    with store(url) as session:
        workspaces = {
            row.id: (row.definition_hash, row.updated_at) for row in session.scalars(select(Workspace))
        }
        sequences = {
            row.id: (row.status, row.current_version, row.updated_at)
            for row in session.scalars(select(Sequence).where(Sequence.workspace_id == "acme"))
        }
        versions = {
            sequence_id: [
                (v.version, v.definition_hash, v.definition)
                for v in sequence_versions(session, "acme", sequence_id)
            ]
            for sequence_id in sequences
        }
        audit = session.scalar(select(func.count()).select_from(AuditEntry))
    return {"workspaces": workspaces, "sequences": sequences, "versions": versions, "audit": audit}


def step(definition: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(item for item in definition["steps"] if item["id"] == step_id)


def test_apply_is_idempotent_versioned_and_never_partial(
    dripflow: Dripflow, db_url: str, demo_file: Path, tmp_path: Path
) -> None:
    # SPEC §10 `apply`: "creates or updates a workspace from a file"
    created = dripflow("apply", demo_file, "--database", db_url)
    assert created.code == 0, created.output
    assert created.lines("out") == [
        "workspace 'acme': created",
        "  sequence 'onboarding': created (version 1)",
        "  sequence 'birthday': created (version 1)",
    ]
    first = snapshot(db_url)
    assert set(first["workspaces"]) == {"acme"}
    assert [v for v, _, _ in first["versions"]["onboarding"]] == [1]

    # docs/decisions.md (SPEC §2, §10): the same file applied twice writes nothing — no new
    # version, no audit row, not even a new timestamp
    again = dripflow("apply", demo_file, "--database", db_url)
    assert again.code == 0, again.output
    assert again.lines("out") == ["workspace 'acme': unchanged"]
    assert snapshot(db_url) == first

    # a changed step makes a new version of that sequence only; the earlier one stays as it was
    assert DEMO_YAML.count(OFFER_AFTER) == 1
    write(demo_file, DEMO_YAML.replace(OFFER_AFTER, "        after: {hours: 6}\n"))
    changed = dripflow("apply", demo_file, "--database", db_url)
    assert changed.code == 0, changed.output
    assert changed.lines("out") == [
        "workspace 'acme': updated",
        "  sequence 'onboarding': new version 2 (earlier kept)",
    ]
    second = snapshot(db_url)
    versions = second["versions"]["onboarding"]
    assert [v for v, _, _ in versions] == [1, 2]
    assert versions[0] == first["versions"]["onboarding"][0]  # version 1 untouched
    assert step(versions[0][2], "offer")["after"]["hours"] == 4
    assert step(versions[1][2], "offer")["after"]["hours"] == 6
    assert second["sequences"]["onboarding"][1] == 2  # the live version is the new one
    assert second["versions"]["birthday"] == first["versions"]["birthday"]

    # SPEC §2: "Nothing is partially applied from an invalid file" — a file with a good change
    # (another new version of onboarding) and a bad reference changes nothing at all
    bad = DEMO_YAML.replace(OFFER_AFTER, "        after: {hours: 8}\n").replace(
        "if: {has_tag: dnc}", "if: {has_tag: dcn}"
    )
    assert bad.count("dcn") == 1
    write(demo_file, bad)
    refused = dripflow("apply", demo_file, "--database", db_url)
    assert refused.code == 1, refused.output
    assert_no_traceback(refused)
    assert "ruleset.exclusions[1].if.has_tag: unknown tag 'dcn' — did you mean 'dnc'?" in refused.err
    assert "nothing was applied" in refused.err
    assert refused.out == ""
    assert snapshot(db_url) == second


def test_an_invalid_file_creates_no_workspace(dripflow: Dripflow, db_url: str, tmp_path: Path) -> None:
    # SPEC §2: nothing is partially applied — not even the workspace row of a first apply
    path = write(tmp_path / "acme.yaml", DEMO_YAML.replace("template: tips,", "template: tipps,"))

    result = dripflow("apply", path, "--database", db_url)

    assert result.code == 1, result.output
    assert "unknown template 'tipps' — did you mean 'tips'?" in result.err
    assert snapshot(db_url) == {"workspaces": {}, "sequences": {}, "versions": {}, "audit": 0}


def test_a_sequence_removed_from_the_file_is_archived_with_its_versions_kept(
    dripflow: Dripflow, db_url: str, demo_file: Path
) -> None:
    # docs/decisions.md: a sequence removed from the file is archived, not deleted (SPEC §2)
    assert dripflow("apply", demo_file, "--database", db_url).code == 0
    start = DEMO_YAML.index("  - id: birthday\n")
    end = DEMO_YAML.index("\nautomations:")
    write(demo_file, DEMO_YAML[:start] + DEMO_YAML[end:])

    result = dripflow("apply", demo_file, "--database", db_url)

    assert result.code == 0, result.output
    assert "  sequence 'birthday': archived (no longer in the file)" in result.lines("out")
    after = snapshot(db_url)
    assert after["sequences"]["birthday"][0] == "archived"
    assert [v for v, _, _ in after["versions"]["birthday"]] == [1]


ONE_STEP = """\
workspace: {id: shop, name: Shop, timezone: UTC, physical_address: "1 Main St"}
mailboxes: [{id: ann, from: "Ann <ann@shop.test>", default: true}]
lists: [news]
templates: {hello: {subject: Hello, text: Hi}, more: {subject: More, text: Again}}
sequences:
  - id: drip
    start_when: [{event: list.subscribed, list: news}]
    steps:
      - {id: one, type: email, template: hello}
"""


def test_applying_an_appended_step_reaches_contacts_who_had_finished(
    dripflow: Dripflow, db_url: str, tmp_path: Path
) -> None:
    """SPEC §10 `apply`: live sequences change as by `admin.sequence.update`; a contact who had
    finished the sequence gets a step appended to it (T9), sent by the worker, once."""
    path = write(tmp_path / "shop.yaml", ONE_STEP)
    assert dripflow("apply", path, "--database", db_url).code == 0
    events = write(
        tmp_path / "events.jsonl", '{"type": "list.subscribed", "contact": "a@x.test", "list": "news"}\n'
    )
    assert dripflow("events", "ingest", events, "--database", db_url).code == 0
    assert dripflow("worker", "--until-idle", "--database", db_url).code == 0
    write(path, ONE_STEP + "      - {id: two, type: email, template: more}\n")
    applied = dripflow("apply", path, "--database", db_url)
    assert_no_traceback(applied)
    assert applied.code == 0
    assert dripflow("worker", "--until-idle", "--database", db_url).code == 0
    with store(db_url) as session:
        subjects = session.scalars(select(Message.subject).order_by(Message.id)).all()
    assert subjects == ["Hello", "More"]
    again = dripflow("worker", "--until-idle", "--database", db_url)
    assert again.out.strip() == "ran 0 due enrollment(s) in 0 batch(es)"
