"""The API against its own OpenAPI document, property-based (schemathesis over real HTTP).

Every operation of the document the app serves at ``/openapi.json`` is called with generated
requests, valid and invalid (schemathesis's examples, coverage and fuzzing phases, positive and
negative), with an admin key: no answer may be a 5xx, and every answer must be one of the
operation's declared status codes, with its declared content type and a body that matches the
declared schema. Generation is steered part of the time towards objects that exist (the contact
and sequence the workspace holds) and towards well-formed events, so the success answers are
checked too, not only the errors. The run is deterministic (derandomized) and takes seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import Case, HookContext
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import create_engine

from dripflow.api.app import create_app
from dripflow.engine.worker import run_worker
from tests.integration.api.conftest import Api

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

# The document the app serves (test_the_document_tested_is_the_one_served holds the two equal).
DOCUMENT = create_app(create_engine("sqlite://")).openapi()

_config = schemathesis.Config()
_config.update(seed=20260302, max_failures=None)
schema = schemathesis.openapi.from_dict(DOCUMENT, config=_config)

KNOWN_CONTACT = "ann@x.test"
KNOWN = {"contact": [KNOWN_CONTACT, "1"], "sequence_id": ["drip"]}

_text = st.text(max_size=12)
_email = st.one_of(st.emails(), st.sampled_from([KNOWN_CONTACT, "bob@x.test"]), _text)
_moment = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
) | st.builds(
    lambda when, hours: when.replace(tzinfo=timezone(timedelta(hours=hours))),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    st.integers(-23, 23),
)
_value = st.one_of(_text, st.none(), st.integers(), st.booleans(), st.lists(_text, max_size=2))
_contact = st.one_of(
    _email,
    st.fixed_dictionaries(
        {"email": _email | _value},
        optional={
            "first_name": _text | _value,
            "phone": _text | _value,
            "timezone": _text | _value,
            "address": st.dictionaries(_text, _value, max_size=2) | _value,
            "fields": st.dictionaries(_text, _value, max_size=2) | _value,
        },
    ),
)
_event: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["list.subscribed", "list.unsubscribed", "tag.assigned", "tag.removed"]),
        "contact": _contact,
    },
    optional={
        "list": st.sampled_from(["news", "nope"]) | _text,
        "tag": _text,
        "id": _text,
        "at": _moment.map(datetime.isoformat) | _text,
    },
)


@pytest.fixture
def populated(api: Api) -> Api:
    """The workspace with a contact enrolled in ``drip`` (step one sent), so success answers occur."""
    with api.client("write") as client:
        event = {
            "type": "list.subscribed",
            "contact": {"email": KNOWN_CONTACT, "first_name": "Ann"},
            "list": "news",
        }
        assert client.post("/v1/events", json=event).status_code == 200
    run_worker(api.engine, api.clock, until_idle=True)
    return api


@schema.hook
def flatmap_path_parameters(
    _context: HookContext, path_parameters: dict[str, Any] | None
) -> st.SearchStrategy[Any]:
    """Half the time, name an object that exists."""
    if not path_parameters:
        return st.just(path_parameters)
    known = st.fixed_dictionaries(
        {name: st.sampled_from(KNOWN.get(name, [str(value)])) for name, value in path_parameters.items()}
    )
    return st.one_of(st.just(path_parameters), known)


@schema.hook
def flatmap_body(context: HookContext, body: Any) -> st.SearchStrategy[Any]:
    """For ``POST /v1/events``, half the time send events close to valid ones, one or a batch."""
    if context.operation is None or context.operation.path != "/v1/events":
        return st.just(body)
    batch = st.fixed_dictionaries({"events": st.lists(_event, min_size=1, max_size=4)})
    return st.one_of(st.just(body), _event, batch)


@schema.parametrize()
@settings(
    max_examples=30,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,  # one server per operation, shared by its examples
    ],
)
def test_every_operation_answers_as_its_schema_says(case: Case[Any], populated: Api) -> None:
    case.call_and_validate(
        base_url=populated.url, headers={"Authorization": f"Bearer {populated.keys['admin']}"}, checks=CHECKS
    )


def test_the_document_tested_is_the_one_served(api: Api) -> None:
    with api.client(None) as client:
        assert client.get("/openapi.json").json() == DOCUMENT


# Regressions for what the run above found (each answered 500 before).


def test_a_blank_or_malformed_contact_is_refused_not_a_server_error(api: Api) -> None:
    bad_contacts = ["", "  ", {"email": ""}, {"email": 5}, {"email": "a@x.test", "first_name": 7}]
    with api.client("write") as client:
        for contact in bad_contacts:
            answer = client.post("/v1/events", json={"type": "tag.assigned", "contact": contact, "tag": "t"})
            assert answer.status_code == 422, (contact, answer.text)
            assert answer.json()["error"]["code"] == "invalid_events"


def test_an_at_out_of_range_once_in_utc_is_refused(api: Api) -> None:
    event = {"type": "tag.assigned", "contact": "ann@x.test", "tag": "t", "at": "0001-01-01T00:00:00+05:00"}
    with api.client("write") as client:
        answer = client.post("/v1/events", json=event)
    assert answer.status_code == 422, answer.text
    assert "out of range" in answer.json()["error"]["problems"][0]["message"]


def test_a_nul_character_is_refused_on_every_store(api: Api) -> None:
    """PostgreSQL cannot store U+0000: a NUL in a body or a parameter is a 422, never a 500."""
    event = {"type": "list.subscribed", "contact": "ann@x.test", "list": "news", "id": "a\x00b"}
    with api.client("admin") as client:
        answers = [
            client.post("/v1/events", json=event),
            client.get("/v1/contacts/a%00b"),
            client.get("/v1/enrollments", params={"sequence": "a\x00b"}),
            client.post("/v1/sequences/a%00b/pause"),
        ]
    for answer in answers:
        assert answer.status_code == 422, answer.text
        assert "NUL" in answer.json()["error"]["message"]


def test_a_body_that_is_not_utf8_is_a_structured_400(api: Api) -> None:
    with api.client("write") as client:
        answer = client.post(
            "/v1/events", content=b'{"type": "\xff"}', headers={"Content-Type": "application/json"}
        )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "bad_request"
