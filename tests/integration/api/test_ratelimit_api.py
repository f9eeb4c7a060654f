"""Rate limiting of the public tracking links over real HTTP (issue 6): past the per-address budget
the answer is a structured 429 with Retry-After; the API itself and other paths are not limited."""

from __future__ import annotations

import pytest

from dripflow.api.ratelimit import LIMIT_ENV
from tests.integration.api.conftest import Api

PIXEL = "/t/o/shop/not-a-real-token"


def test_past_the_limit_tracking_links_answer_429_with_a_structured_error(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LIMIT_ENV, "5/minute")  # read by the server when it changes (same process)
    with api.client(None) as anonymous, api.client("read") as reader:
        answers = [anonymous.get(PIXEL) for _ in range(5)]
        limited = anonymous.get("/t/c/shop/another-token")
        unsubscribe = anonymous.post("/t/u/shop/x", data={"List-Unsubscribe": "One-Click"})
        others = [anonymous.get("/healthz"), reader.get("/v1/sequences"), reader.get("/v1/outbox")]
    assert [answer.status_code for answer in answers] == [200] * 5
    assert limited.status_code == unsubscribe.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert "too many requests" in limited.json()["error"]["message"]
    assert 1 <= int(limited.headers["Retry-After"]) <= 12  # a token comes back every 12 s
    assert [answer.status_code for answer in others] == [200, 200, 200]


def test_the_default_is_generous_and_the_limit_can_be_turned_off(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(LIMIT_ENV, raising=False)
    with api.client(None) as anonymous:
        assert {anonymous.get(PIXEL).status_code for _ in range(100)} == {200}
        monkeypatch.setenv(LIMIT_ENV, "1/hour")
        assert [anonymous.get(PIXEL).status_code for _ in range(2)] == [200, 429]
        monkeypatch.setenv(LIMIT_ENV, "off")
        assert {anonymous.get(PIXEL).status_code for _ in range(20)} == {200}
