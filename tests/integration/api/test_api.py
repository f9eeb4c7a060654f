"""The HTTP API (SPEC §10) over real HTTP: keys and roles, workspace scoping, events in, contacts,
explain, sequences pause/resume, enrollments with cursor pagination, structured errors."""

from __future__ import annotations

from datetime import timedelta

from dripflow.engine.worker import run_worker
from tests.integration.api.conftest import Api


def _subscribe(email: str, first_name: str = "Ann", **extra: object) -> dict[str, object]:
    return {
        "type": "list.subscribed",
        "contact": {"email": email, "first_name": first_name},
        "list": "news",
        **extra,
    }


def test_health_and_readiness(api: Api) -> None:
    with api.client(None) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready"}


def test_a_request_without_a_valid_key_is_refused_with_a_structured_error(api: Api) -> None:
    with api.client(None) as client:
        missing = client.get("/v1/sequences")
        wrong = client.get("/v1/sequences", headers={"Authorization": "Bearer df_000000000000_nope"})
        tampered = client.get("/v1/sequences", headers={"Authorization": f"Bearer {api.keys['admin']}x"})
    assert missing.status_code == wrong.status_code == tampered.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    assert "Authorization: Bearer" in missing.json()["error"]["message"]
    assert wrong.json()["error"]["message"] == "this API key is unknown or revoked"


def test_roles_read_cannot_write_and_write_cannot_pause(api: Api) -> None:
    with api.client("read") as reader, api.client("write") as writer:
        refused = reader.post("/v1/events", json=_subscribe("a@x.test"))
        assert refused.status_code == 403
        assert refused.json()["error"]["message"] == "this needs a key with the write role; yours is read"
        assert writer.post("/v1/events", json=_subscribe("a@x.test")).status_code == 200
        assert writer.post("/v1/sequences/drip/pause").status_code == 403
        assert reader.get("/v1/contacts/a@x.test").status_code == 200


def test_events_in_then_the_contact_its_enrollment_and_its_explanation(api: Api) -> None:
    """An event over HTTP enrolls the contact (start_when); the worker sends step one at once;
    explain tells it, with what comes next (X5)."""
    with api.client("write") as client:
        applied = client.post("/v1/events", json=_subscribe("ann@x.test"))
        assert applied.json() == {"applied": 1, "duplicates": 0}
        run_worker(api.engine, api.clock, until_idle=True)
        contact = client.get("/v1/contacts/ann@x.test").json()
        lines = client.get("/v1/contacts/ann@x.test/explain").json()["lines"]
    assert contact["email"] == "ann@x.test" and contact["lists"] == ["news"]
    assert contact["lead_status"] == "active"
    [enrollment] = contact["enrollments"]
    assert (enrollment["sequence"], enrollment["status"], enrollment["next_step"]) == (
        "drip",
        "active",
        "two",
    )
    assert enrollment["due_at"] == "2026-03-03T10:00:00Z"
    assert any('Sent email "Hello Ann" to ann@x.test' in line for line in lines)
    assert lines[-1] == "Next: step 'two' of 'drip' is due at 2026-03-03T10:00:00Z."


def test_one_bad_event_applies_none_and_names_each_problem(api: Api) -> None:
    """Nothing is half-applied; each refused event is named by its index with an actionable message."""
    batch = {
        "events": [_subscribe("b@x.test"), {"type": "tag.assigned", "contact": "c@x.test", "tag": "vip"}, "x"]
    }
    with api.client("write") as client:
        first = client.post("/v1/events", json=batch)
        assert first.status_code == 422
        assert first.json()["error"]["problems"] == [
            {"index": 2, "message": "each event must be a JSON object"}
        ]
        batch["events"] = batch["events"][:2]  # type: ignore[index]
        second = client.post("/v1/events", json=batch)
        assert second.status_code == 422
        assert second.json()["error"]["code"] == "invalid_events"
        [problem] = second.json()["error"]["problems"]
        assert problem["index"] == 1 and problem["message"].startswith("unknown tag 'vip'")
        assert client.get("/v1/contacts/b@x.test").status_code == 404


def test_an_event_with_an_id_is_applied_once(api: Api) -> None:
    """D3 over HTTP: a retried request changes nothing the second time."""
    event = {"type": "list.subscribed", "contact": "d@x.test", "list": "news", "id": "order-7"}
    with api.client("write") as client:
        assert client.post("/v1/events", json=event).json() == {"applied": 1, "duplicates": 0}
        assert client.post("/v1/events", json=event).json() == {"applied": 0, "duplicates": 1}


def test_keys_see_only_their_own_workspace(api: Api) -> None:
    with api.client("write") as shop:
        shop.post("/v1/events", json=_subscribe("e@x.test"))
    with api.client("other") as rival:
        hidden = rival.get("/v1/contacts/e@x.test")
        assert hidden.status_code == 404
        assert hidden.json()["error"]["code"] == "not_found"
        assert rival.get("/v1/enrollments").json() == {"items": [], "next_cursor": None}


def test_pause_and_resume_a_sequence(api: Api) -> None:
    """S5 over HTTP: paused enrollments are listed as paused; on resume the overdue step fires."""
    with api.client("admin") as client:
        client.post("/v1/events", json=_subscribe("f@x.test"))
        run_worker(api.engine, api.clock, until_idle=True)
        paused = client.post("/v1/sequences/drip/pause").json()
        assert paused["status"] == "paused" and paused["steps"] == ["one", "two"]
        listed = client.get("/v1/enrollments", params={"status": "paused"}).json()["items"]
        assert [item["sequence"] for item in listed] == ["drip"]
        api.clock.advance(timedelta(days=2))
        assert run_worker(api.engine, api.clock, until_idle=True).claimed == 0
        assert client.post("/v1/sequences/drip/resume").json()["status"] == "active"
        assert run_worker(api.engine, api.clock, until_idle=True).claimed == 1
        assert client.post("/v1/sequences/nope/pause").status_code == 404


def test_enrollments_page_through_with_a_cursor(api: Api) -> None:
    with api.client("write") as client:
        client.post("/v1/events", json={"events": [_subscribe(f"p{n}@x.test") for n in range(5)]})
        seen: list[int] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, object] = {"limit": 2, "sequence": "drip"}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/v1/enrollments", params=params).json()
            seen += [item["id"] for item in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        bad = client.get("/v1/enrollments", params={"cursor": "abc"})
    assert pages == 3 and len(seen) == 5 and seen == sorted(set(seen))
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"


def test_openapi_describes_the_routes(api: Api) -> None:
    with api.client(None) as client:
        paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/v1/events",
        "/v1/contacts/{contact}",
        "/v1/contacts/{contact}/explain",
        "/v1/sequences",
        "/v1/sequences/{sequence_id}/pause",
        "/v1/sequences/{sequence_id}/resume",
        "/v1/enrollments",
    } <= set(paths)


def test_a_contact_id_too_large_for_the_store_is_a_404_not_a_500(api: Api) -> None:
    """An id no BIGINT holds names no contact: 404 with the structured error, on both stores, for
    the contact, its explanation and an event naming it."""
    huge = "99999999999999999999"
    with api.client("write") as client:
        for path in (f"/v1/contacts/{huge}", f"/v1/contacts/{huge}/explain"):
            answer = client.get(path)
            assert answer.status_code == 404, (path, answer.text)
            assert answer.json()["error"]["code"] == "not_found"
        event = client.post("/v1/events", json={"type": "tag.assigned", "contact": huge, "tag": "vip"})
        assert event.status_code in (400, 404, 422), event.text
        assert "error" in event.json()
