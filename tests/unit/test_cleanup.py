"""The clean-up's judgement of one contact (SPEC L5), as a pure function."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from dripflow.core.cleanup import Candidate, CleanupRequest, judge

CUT = datetime(2026, 6, 1, tzinfo=UTC)

candidates = st.builds(
    Candidate,
    id=st.integers(1, 10**6),
    email=st.just("a@x.test"),
    lead_status=st.sampled_from(["active", "inactive", "blacklisted"]),
    reason=st.sampled_from([None, "hard_bounce", "complaint"]),
    unsubscribed=st.booleans(),
    last_activity=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
    ),
    bought=st.booleans(),
    member=st.booleans(),
)
requests = st.builds(
    CleanupRequest,
    blacklisted=st.booleans(),
    inactive_since=st.sampled_from([None, CUT]),
    include_buyers=st.booleans(),
    include_members=st.booleans(),
)


@given(candidates, requests)
def test_l5_never_deletes_a_buyer_or_member_unless_told(
    candidate: Candidate, request: CleanupRequest
) -> None:
    verdict = judge(candidate, request)
    if verdict is None or not verdict.delete:
        return
    assert not candidate.bought or request.include_buyers
    assert not candidate.member or request.include_members


@given(candidates, requests)
def test_l5_only_blacklisted_or_long_inactive_contacts_are_targets(
    candidate: Candidate, request: CleanupRequest
) -> None:
    verdict = judge(candidate, request)
    blacklisted = request.blacklisted and candidate.lead_status == "blacklisted"
    idle = (
        request.inactive_since is not None
        and candidate.lead_status == "inactive"
        and candidate.last_activity < request.inactive_since
    )
    assert (verdict is not None) == (blacklisted or idle)
    if verdict is not None:
        assert verdict.target == ("blacklisted" if blacklisted else "inactive")


def test_l5_activity_on_the_cut_off_itself_keeps_a_contact() -> None:
    base = Candidate(1, "a@x.test", "inactive", None, False, CUT, bought=False, member=False)
    request = CleanupRequest(inactive_since=CUT)
    assert judge(base, request) is None
    older = Candidate(1, "a@x.test", "inactive", None, False, CUT - timedelta(seconds=1), False, False)
    verdict = judge(older, request)
    assert verdict is not None and verdict.delete


def test_l5_an_active_contact_is_never_a_target() -> None:
    active = Candidate(1, "a@x.test", "active", None, True, datetime(2000, 1, 1, tzinfo=UTC), False, False)
    assert judge(active, CleanupRequest(blacklisted=True, inactive_since=CUT)) is None
