"""The token bucket behind the tracking links' rate limit (issue 6): refill, burst, bounded memory."""

from __future__ import annotations

import pytest

from dripflow.api.ratelimit import Limit, TokenBuckets, parse_limit


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    "text, limit",
    [
        ("600/minute", Limit(10.0, 600)),
        ("5/second", Limit(5.0, 5)),
        ("3600 / hours", Limit(1.0, 3600)),
        ("60/min; burst=10", Limit(1.0, 10)),
        ("off", None),
        ("0", None),
        ("0/minute", None),
    ],
)
def test_limits_are_read_from_text(text: str, limit: Limit | None) -> None:
    assert parse_limit(text) == limit


@pytest.mark.parametrize("text", ["", "fast", "10/fortnight", "-1/minute", "10 per minute"])
def test_a_wrong_limit_says_what_to_write(text: str) -> None:
    with pytest.raises(ValueError, match="N/second, N/minute or N/hour"):
        parse_limit(text)


def test_a_bucket_grants_its_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(Limit(rate=2.0, burst=3), clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # the next token in half a second
    assert buckets.take("b") == 0.0  # another address has its own bucket
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    clock.now += 100  # refills to the burst, not beyond
    assert [buckets.take("a") for _ in range(4)][-1] > 0


def test_memory_stays_bounded_whatever_the_number_of_addresses() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(Limit(rate=1.0, burst=2), max_keys=100, clock=clock)
    for number in range(1000):
        buckets.take(f"10.0.{number // 256}.{number % 256}")
        assert len(buckets) <= 100
    assert len(buckets) == 100


def test_refilled_buckets_are_dropped_before_a_spent_one() -> None:
    """A full bucket holds nothing a new one would not; a spent one holds the client's debt."""
    clock = FakeClock()
    buckets = TokenBuckets(Limit(rate=0.01, burst=2), max_keys=10, clock=clock)
    for number in range(9):
        buckets.take(f"idle-{number}")
    clock.now += 1000  # the idle ones have refilled
    buckets.take("busy")
    buckets.take("busy")
    buckets.take("newcomer")  # over the bound: the full buckets go
    assert len(buckets) == 2
    assert buckets.take("busy") > 0  # still spent: it was kept
