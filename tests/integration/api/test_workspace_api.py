"""The workspace file over HTTP (issue 6; SPEC §2, X4, §10 `validate` and `apply`) and the
automations it declares, on SQLite and PostgreSQL.

`POST /v1/workspace/validate` reports each problem with its line and key and changes nothing;
`PUT /v1/workspace` applies all or nothing, writes nothing for the same file, and changes live
sequences as `admin.sequence.update` does (S7, T9).
"""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import func, select

from dripflow.engine.worker import run_worker
from dripflow.store.database import transaction
from dripflow.store.tables import AuditEntry, SequenceVersion
from tests.integration.api.conftest import WORKSPACE, Api

SHOP = WORKSPACE.format(id="shop")


def _rows(api: Api) -> tuple[int, int]:
    """Audit entries and sequence versions: what an apply writes."""
    with transaction(api.engine) as session:
        audit = session.scalar(select(func.count()).select_from(AuditEntry)) or 0
        versions = session.scalar(select(func.count()).select_from(SequenceVersion)) or 0
    return int(audit), int(versions)


def _sent_steps(client: httpx.Client, email: str) -> list[str]:
    lines = client.get(f"/v1/contacts/{email}/explain").json()["lines"]
    return [line.split("step '")[1].split("'")[0] for line in lines if "Sent email" in line]


def test_validate_names_the_line_and_key_of_each_problem_and_applies_nothing(api: Api) -> None:
    broken = SHOP.replace("{id: one, type: email, template: hello}", "{id: one, type: email, temlate: hello}")
    broken = broken.replace("lists: [news]", "lists: [news]\ntags: [vip, vip]")
    before = _rows(api)
    with api.client("write") as client:
        answer = client.post(
            "/v1/workspace/validate", content=broken, headers={"Content-Type": "application/yaml"}
        )
        other = client.post("/v1/workspace/validate", content=WORKSPACE.format(id="rival"))
        garbled = client.post("/v1/workspace/validate", content="workspace: [unclosed")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["valid"] is False and body["changes"] is None
    assert {
        "line": 12,
        "key": "sequences[0].steps[0].temlate",
        "message": "unknown key 'temlate' — did you mean 'template'?",
    } in body["problems"]
    assert [problem["line"] for problem in body["problems"]] == sorted(
        problem["line"] for problem in body["problems"]
    )
    assert any(problem["line"] == 5 and problem["key"].startswith("tags") for problem in body["problems"])
    assert other.json()["problems"] == [
        {"line": 1, "key": "workspace.id", "message": "'rival' is not this API key's workspace ('shop')"}
    ]
    assert garbled.json()["valid"] is False and garbled.json()["problems"][0]["line"] == 1
    assert _rows(api) == before


def test_validate_rehearses_what_applying_would_change_without_changing_it(api: Api) -> None:
    changed = SHOP.replace("after: {days: 1}}", "after: {days: 2}}") + (
        "  - id: welcome\n    steps:\n      - {id: hi, type: email, template: hello}\n"
    )
    before = _rows(api)
    with api.client("write") as client:
        same = client.post("/v1/workspace/validate", content=SHOP).json()
        rehearsal = client.post("/v1/workspace/validate", content=changed).json()
        drip = client.get("/v1/sequences/drip").json()
    assert same == {
        "valid": True,
        "problems": [],
        "changes": {
            "workspace": "shop",
            "changed": False,
            "settings_changed": False,
            "sequences_created": [],
            "sequences_versioned": [],
            "sequences_archived": [],
            "lines": ["workspace 'shop': unchanged"],
        },
    }
    assert rehearsal["valid"] is True
    changes = rehearsal["changes"]
    assert (changes["sequences_created"], changes["sequences_versioned"]) == (["welcome"], ["drip"])
    assert drip["version"] == 1 and _rows(api) == before


def test_put_applies_all_or_nothing_and_the_same_file_writes_nothing(api: Api) -> None:
    without_drip = SHOP.split("sequences:")[0] + "sequences:\n  - id: welcome\n    steps: []\n"
    with api.client("admin") as client:
        applied = client.put("/v1/workspace", content=without_drip)
        after = _rows(api)
        again = client.put("/v1/workspace", content=without_drip)
        invalid = client.put("/v1/workspace", content=without_drip.replace("steps: []", "steps: [{id: x}]"))
        other = client.put("/v1/workspace", content=WORKSPACE.format(id="rival"))
        sequences = {item["id"]: item["status"] for item in client.get("/v1/sequences").json()}
    assert applied.status_code == 200, applied.text
    body = applied.json()
    assert (body["changed"], body["sequences_created"], body["sequences_archived"]) == (
        True,
        ["welcome"],
        ["drip"],
    )
    assert again.status_code == 200 and again.json()["changed"] is False
    assert _rows(api) == after  # the same file again: not a row written
    assert invalid.status_code == 422
    error = invalid.json()["error"]
    assert error["code"] == "invalid_workspace" and "nothing was applied" in error["message"]
    assert error["problems"][0]["line"] == 9 and error["problems"][0]["key"].startswith(
        "sequences[0].steps[0]"
    )
    assert other.status_code == 422 and other.json()["error"]["problems"][0]["key"] == "workspace.id"
    assert sequences == {"drip": "archived", "welcome": "active"}


def test_put_changes_live_sequences_as_a_live_edit(api: Api) -> None:
    """SPEC §10: applying changes live sequences as `admin.sequence.update` does. S7: a step
    inserted after the one a contact completed is its next; T9: a finished contact goes on to an
    appended step."""
    one_step = SHOP.replace("      - {id: two, type: email, template: hello, after: {days: 1}}\n", "")
    with api.client("admin") as client:
        assert client.put("/v1/workspace", content=one_step).json()["sequences_versioned"] == ["drip"]
        client.post(
            "/v1/events",
            json={
                "type": "list.subscribed",
                "contact": {"email": "ann@x.test", "first_name": "Ann"},
                "list": "news",
            },
        )
        run_worker(api.engine, api.clock, until_idle=True)
        assert client.get("/v1/sequences/drip").json()["enrollments"]["finished"] == 1
        api.clock.advance(timedelta(hours=1))
        appended = one_step + "      - {id: more, type: email, template: hello, after: {hours: 3}}\n"
        assert client.put("/v1/workspace", content=appended).json()["sequences_versioned"] == ["drip"]
        [enrollment] = client.get("/v1/enrollments").json()["items"]
        api.clock.advance(timedelta(hours=2))
        run_worker(api.engine, api.clock, until_idle=True)
        sent = _sent_steps(client, "ann@x.test")
    assert (enrollment["status"], enrollment["next_step"], enrollment["due_at"]) == (
        "active",
        "more",
        "2026-03-02T12:00:00Z",  # three hours after step one fired (T9)
    )
    assert sent == ["one", "more"]


def test_put_refuses_a_file_that_breaks_a_broadcast_made_through_the_api(api: Api) -> None:
    with api.client("admin") as client:
        draft = {"id": "spring", "template": "hello", "audience": {"on_list": "news"}}
        assert client.post("/v1/broadcasts", json=draft).status_code == 201
        clash = SHOP + (
            "broadcasts:\n"
            '  - {id: spring, send_at: "2026-12-01 09:00", audience: {on_list: news}, template: hello}\n'
        )
        taken = client.put("/v1/workspace", content=clash)
        gone = client.put(
            "/v1/workspace",
            content=SHOP.replace("lists: [news]", "lists: [letters]").replace("list: news", "list: letters"),
        )
    assert taken.status_code == 422
    assert taken.json()["error"]["problems"] == [
        {
            "line": 14,
            "key": "broadcasts[0].id",
            "message": "'spring' is the id of a broadcast made through the API; choose another id",
        }
    ]
    assert gone.status_code == 422
    [problem] = gone.json()["error"]["problems"]
    assert (
        problem["line"] is None
        and "the broadcast 'spring' made through the API: audience.on_list:" in problem["message"]
    )
    assert "unknown list 'news'" in problem["message"]


def test_workspace_routes_need_their_roles_and_a_readable_body(api: Api) -> None:
    with api.client("read") as reader, api.client("write") as writer, api.client("admin") as admin:
        assert reader.post("/v1/workspace/validate", content=SHOP).status_code == 403
        assert writer.post("/v1/workspace/validate", content=SHOP).status_code == 200
        assert writer.put("/v1/workspace", content=SHOP).status_code == 403
        not_utf8 = admin.put("/v1/workspace", content=b"workspace: \xff")
        too_large = admin.post("/v1/workspace/validate", content=b"#" * (2 * 1024 * 1024 + 1))
    assert not_utf8.status_code == 400 and not_utf8.json()["error"]["code"] == "bad_request"
    assert too_large.status_code == 413 and too_large.json()["error"]["code"] == "too_large"


def test_automations_are_listed_with_how_often_each_fired(api: Api) -> None:
    automated = SHOP.replace("lists: [news]", "lists: [news]\ntags: [vip, customer, engaged]") + (
        "automations:\n"
        "  - {id: vip-welcome, when: {event: tag.assigned, tag: vip}, if: {not: {has_tag: customer}},\n"
        "     then: [{add_tag: engaged}]}\n"
        "  - {id: never, when: {event: tag.removed, tag: vip}, then: [{add_tag: engaged}]}\n"
    )
    with api.client("admin") as client:
        assert client.put("/v1/workspace", content=automated).status_code == 200
        client.post("/v1/events", json={"type": "tag.assigned", "contact": "ann@x.test", "tag": "vip"})
        client.post("/v1/events", json={"type": "tag.assigned", "contact": "bob@x.test", "tag": "customer"})
        api.clock.advance(timedelta(minutes=5))
        client.post("/v1/events", json={"type": "tag.assigned", "contact": "bob@x.test", "tag": "vip"})
        listed = client.get("/v1/automations").json()
        tags = client.get("/v1/contacts/ann@x.test").json()["tags"]
    assert [(item["id"], item["fired"], item["skipped"], item["last_fired_at"]) for item in listed] == [
        ("vip-welcome", 1, 1, "2026-03-02T09:00:00Z"),
        ("never", 0, 0, None),
    ]
    assert listed[0]["definition"]["when"] == {"event": "tag.assigned", "tag": "vip"}
    assert listed[0]["definition"]["then"] == [{"add_tag": "engaged"}]
    assert tags == ["engaged", "vip"]
