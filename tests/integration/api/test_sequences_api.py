"""Sequences and enrollments over real HTTP (issue 6), on SQLite and PostgreSQL.

SPEC §5 (S1 already enrolled, S7 live edits, S11 blocked and retried on request, S13/T9 steps
appended for finished contacts), §6 (statuses and `not_enrolled` reasons), X2 (`admin.enroll`,
`admin.unenroll`, `admin.sequence.update`). What is asserted is what a user sees: the answers,
the contact's explanation and the emails the contact gets.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from dripflow.engine.worker import run_worker
from tests.integration.api.conftest import Api

DRIP: dict[str, Any] = {
    "start_when": [{"event": "list.subscribed", "list": "news"}],
    "steps": [
        {"id": "one", "type": "email", "template": "hello"},
        {"id": "two", "type": "email", "template": "hello", "after": {"days": 1}},
    ],
}


def _subscribe(client: httpx.Client, email: str, first_name: str | None = "Ann") -> None:
    contact: dict[str, Any] = {"email": email}
    if first_name is not None:
        contact["first_name"] = first_name
    answer = client.post("/v1/events", json={"type": "list.subscribed", "contact": contact, "list": "news"})
    assert answer.status_code == 200, answer.text


def _create(client: httpx.Client, email: str) -> None:
    """A contact in no sequence (X2: contact.created with only a contact creates it)."""
    answer = client.post("/v1/events", json={"type": "contact.created", "contact": {"email": email}})
    assert answer.status_code == 200, answer.text


def _sent(client: httpx.Client, email: str) -> list[str]:
    """The lines of the contact's explanation that tell an email sent."""
    lines = client.get(f"/v1/contacts/{email}/explain").json()["lines"]
    return [line.split("  ", 1)[1] for line in lines if "Sent email" in line]


def _run(api: Api, advance: timedelta = timedelta(0)) -> None:
    api.clock.advance(advance)
    run_worker(api.engine, api.clock, until_idle=True)


def test_a_sequence_shows_its_definition_version_and_enrollments_by_status(api: Api) -> None:
    with api.client("admin") as client:
        _subscribe(client, "ann@x.test")
        _subscribe(client, "bob@x.test")
        assert client.post("/v1/sequences/drip/pause").status_code == 200
        drip = client.get("/v1/sequences/drip").json()
        missing = client.get("/v1/sequences/nope")
    assert (drip["id"], drip["status"], drip["version"], drip["kind"]) == ("drip", "paused", 1, "step")
    assert drip["steps"] == ["one", "two"]
    assert drip["definition"]["start_when"] == DRIP["start_when"]
    assert (drip["definition"]["steps"][1]["id"], drip["definition"]["steps"][1]["template"]) == (
        "two",
        "hello",
    )
    assert drip["enrollments"]["paused"] == 2 and drip["enrollments"]["active"] == 0
    assert set(drip["enrollments"]) >= {"draft", "active", "queued", "blocked", "finished", "canceled"}
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_replacing_a_live_sequence_gives_the_enrolled_contact_the_new_step_not_a_resend(api: Api) -> None:
    """S7: a step inserted after the one the contact completed comes next, timed from when that
    step fired; nothing already sent is sent again."""
    with api.client("admin") as client:
        _subscribe(client, "ann@x.test")
        _run(api)  # step one at 09:00
        assert _sent(client, "ann@x.test") == [
            "Sent email \"Hello Ann\" to ann@x.test: step 'one' of 'drip' (template hello, from ann)."
        ]
        api.clock.advance(timedelta(hours=1))
        steps = [
            DRIP["steps"][0],
            {"id": "extra", "type": "email", "template": "hello", "after": {"hours": 3}},
        ]
        replaced = client.put("/v1/sequences/drip", json={**DRIP, "steps": [*steps, DRIP["steps"][1]]})
        assert replaced.status_code == 200, replaced.text
        assert (replaced.json()["version"], replaced.json()["changed"]) == (2, True)
        assert replaced.json()["steps"] == ["one", "extra", "two"]
        [enrollment] = client.get("/v1/enrollments", params={"sequence": "drip"}).json()["items"]
        assert (enrollment["next_step"], enrollment["due_at"]) == ("extra", "2026-03-02T12:00:00Z")
        _run(api, timedelta(hours=2))  # 12:00
        _run(api, timedelta(days=1))  # step two: a day after extra, at the default send time
        sent = _sent(client, "ann@x.test")
    assert [line.split("step ")[1].split(" of")[0] for line in sent] == ["'one'", "'extra'", "'two'"]


def test_a_step_appended_reaches_contacts_who_finished(api: Api) -> None:
    """T9 through the API: the finished contact goes on to the appended step."""
    with api.client("admin") as client:
        one_step = {**DRIP, "steps": [DRIP["steps"][0]]}
        assert client.put("/v1/sequences/drip", json=one_step).status_code == 200
        _subscribe(client, "ann@x.test")
        _run(api)
        assert client.get("/v1/sequences/drip").json()["enrollments"]["finished"] == 1
        api.clock.advance(timedelta(hours=2))  # 11:00: "at once" after 09:00 has passed
        appended = {**DRIP, "steps": [DRIP["steps"][0], {"id": "more", "type": "email", "template": "hello"}]}
        assert client.put("/v1/sequences/drip", json=appended).json()["version"] == 3
        [enrollment] = client.get("/v1/enrollments").json()["items"]
        # T9: already past, so at the default send time on the next day
        assert (enrollment["status"], enrollment["next_step"]) == ("active", "more")
        assert enrollment["due_at"] == "2026-03-03T10:00:00Z"
        _run(api)
        assert len(_sent(client, "ann@x.test")) == 1
        _run(api, timedelta(days=1))
        assert len(_sent(client, "ann@x.test")) == 2


def test_put_creates_answers_unchanged_and_refuses_invalid_definitions_with_their_problems(api: Api) -> None:
    with api.client("admin") as client:
        created = client.put("/v1/sequences/welcome", json={"steps": [DRIP["steps"][0]]})
        again = client.put("/v1/sequences/welcome", json={"id": "welcome", "steps": [DRIP["steps"][0]]})
        bad = client.put(
            "/v1/sequences/welcome",
            json={
                "steps": [
                    {"id": "one", "type": "email", "template": "helo"},
                    {"id": "x", "type": "email", "temlate": "a"},
                ]
            },
        )
        other_id = client.put("/v1/sequences/welcome", json={"id": "drip", "steps": []})
        versions = client.get("/v1/sequences/welcome/versions").json()
    assert created.status_code == 201, created.text
    assert (created.json()["version"], created.json()["status"], created.json()["changed"]) == (
        1,
        "active",
        True,
    )
    assert again.status_code == 200 and (again.json()["version"], again.json()["changed"]) == (1, False)
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert error["code"] == "invalid_sequence" and "nothing was changed" in error["message"]
    assert {
        "key": "steps[0].template",
        "message": "unknown template 'helo' — did you mean 'hello'?",
    } in error["problems"]
    assert {
        "key": "steps[1].temlate",
        "message": "unknown key 'temlate' — did you mean 'template'?",
    } in error["problems"]
    assert other_id.status_code == 422 and "is not the path's" in other_id.json()["error"]["message"]
    assert [(item["version"], item["current"]) for item in versions] == [(1, True)]


def test_archiving_stops_new_enrollments_and_the_refusal_says_why(api: Api) -> None:
    with api.client("admin") as client:
        _create(client, "cat@x.test")
        archived = client.post("/v1/sequences/drip/archive")
        refused = client.post("/v1/enrollments", json={"contact": "cat@x.test", "sequence": "drip"})
        restored = client.put("/v1/sequences/drip", json={**DRIP, "status": "active"})
        enrolled = client.post("/v1/enrollments", json={"contact": "cat@x.test", "sequence": "drip"})
    assert archived.status_code == 200 and archived.json()["status"] == "archived"
    assert refused.status_code == 409
    assert refused.json()["error"] == {
        "code": "sequence_archived",
        "message": "Not enrolled in 'drip' (by api): the sequence is archived.",
    }
    assert restored.json()["status"] == "active"
    assert enrolled.status_code == 201


def test_enroll_a_contact_then_the_refusal_when_already_in_and_the_refusals_list(api: Api) -> None:
    """admin.enroll over HTTP; S1: entering again while in records `not_enrolled: already_enrolled`,
    answered 409 with the reason and explain's sentence, and listed with the refusals."""
    with api.client("write") as client:
        _create(client, "cat@x.test")
        enrolled = client.post("/v1/enrollments", json={"contact": "cat@x.test", "sequence": "drip"})
        again = client.post("/v1/enrollments", json={"contact": "cat@x.test", "sequence": "drip"})
        _subscribe(client, "cat@x.test")  # start_when: refused the same way, by the starting rule
        unknown_contact = client.post(
            "/v1/enrollments", json={"contact": "nobody@x.test", "sequence": "drip"}
        )
        unknown_sequence = client.post("/v1/enrollments", json={"contact": "cat@x.test", "sequence": "nope"})
        refusals = client.get("/v1/enrollments/refusals", params={"sequence": "drip"}).json()
        by_contact = client.get(
            "/v1/enrollments/refusals", params={"contact": "cat@x.test", "limit": 1}
        ).json()
        page_two = client.get(
            "/v1/enrollments/refusals", params={"contact": "cat@x.test", "cursor": by_contact["next_cursor"]}
        ).json()
        lines = client.get("/v1/contacts/cat@x.test/explain").json()["lines"]
    assert enrolled.status_code == 201, enrolled.text
    body = enrolled.json()
    assert (body["sequence"], body["status"], body["next_step"]) == ("drip", "active", "one")
    assert body["due_at"] == "2026-03-02T09:00:00Z"
    assert again.status_code == 409
    assert again.json()["error"] == {
        "code": "already_enrolled",
        "message": "Not enrolled in 'drip' (by api): the contact was already in it (S1).",
    }
    assert unknown_contact.status_code == 404 and unknown_sequence.status_code == 404
    assert [(item["contact"], item["reason"], item["by"]) for item in refusals["items"]] == [
        ("cat@x.test", "already_enrolled", "api"),
        ("cat@x.test", "already_enrolled", "start_when:list.subscribed"),
    ]
    assert (
        refusals["items"][0]["message"]
        == "Not enrolled in 'drip' (by api): the contact was already in it (S1)."
    )
    assert refusals["next_cursor"] is None
    assert len(by_contact["items"]) == 1 and by_contact["next_cursor"] is not None
    assert [item["by"] for item in page_two["items"]] == ["start_when:list.subscribed"]
    assert any("Not enrolled in 'drip' (by api)" in line for line in lines)


def test_unenroll_closes_the_enrollment_and_nothing_more_is_sent(api: Api) -> None:
    with api.client("write") as client:
        _subscribe(client, "ann@x.test")
        _run(api)
        [enrollment] = client.get("/v1/enrollments").json()["items"]
        closed = client.post(f"/v1/enrollments/{enrollment['id']}/unenroll")
        again = client.post(f"/v1/enrollments/{enrollment['id']}/unenroll")
        _run(api, timedelta(days=2))
        shown = client.get(f"/v1/enrollments/{enrollment['id']}").json()
        sent = _sent(client, "ann@x.test")
        missing = client.post("/v1/enrollments/999999/unenroll")
    assert closed.status_code == 200
    assert (closed.json()["status"], closed.json()["reason"], closed.json()["due_at"]) == (
        "canceled",
        "manual",
        None,
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_closed"
    assert shown["status"] == "canceled"
    assert len(sent) == 1  # step two never went
    assert missing.status_code == 404


def test_a_blocked_enrollment_is_retried_on_request(api: Api) -> None:
    """S11: the template needs the contact's first name; retrying before it is known leaves the
    enrollment blocked; once it is known, a retry sends the step at once (no worker pass)."""
    with api.client("write") as client:
        _subscribe(client, "nameless@x.test", first_name=None)
        _run(api)
        [enrollment] = client.get("/v1/enrollments").json()["items"]
        assert (enrollment["status"], enrollment["reason"]) == (
            "blocked",
            "template_variable:contact.first_name",
        )
        retry = f"/v1/enrollments/{enrollment['id']}/retry"
        still = client.post(retry)
        assert still.status_code == 200, still.text
        assert (still.json()["status"], still.json()["reason"]) == (
            "blocked",
            "template_variable:contact.first_name",
        )
        fixed = {"type": "contact.created", "contact": {"email": "nameless@x.test", "first_name": "Nia"}}
        assert client.post("/v1/events", json=fixed).status_code == 200
        api.clock.advance(timedelta(minutes=5))
        done = client.post(retry)
        again = client.post(retry)
        sent = _sent(client, "nameless@x.test")
    assert done.status_code == 200
    assert (done.json()["status"], done.json()["next_step"]) == ("active", "two")
    assert sent == [
        "Sent email \"Hello Nia\" to nameless@x.test: step 'one' of 'drip' (template hello, from ann)."
    ]
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_blocked"


def test_roles_reading_keys_read_writing_keys_enroll_only_admins_change_sequences(api: Api) -> None:
    with api.client("read") as reader, api.client("write") as writer:
        _create(writer, "cat@x.test")
        assert reader.get("/v1/sequences/drip").status_code == 200
        assert reader.get("/v1/enrollments/refusals").status_code == 200
        assert (
            reader.post("/v1/enrollments", json={"contact": "cat@x.test", "sequence": "drip"}).status_code
            == 403
        )
        assert writer.put("/v1/sequences/drip", json=DRIP).status_code == 403
        assert writer.post("/v1/sequences/drip/archive").status_code == 403
        assert (
            writer.post("/v1/enrollments", json={"contact": "cat@x.test", "sequence": "drip"}).status_code
            == 201
        )
