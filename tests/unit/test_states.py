"""The enrollment state machine's pure decisions (core/states.py) against SPEC §5 (S1–S4, S7, S9,
S10), §6 (statuses, not_enrolled reasons), §7 (L2, L3) and §8 D8 (mailbox pools).

S7 is checked by simulation: an enrollment walks a random sequence, the sequence is edited live
(steps inserted, removed, reordered by id) and the walk goes on; no step may be sent twice and no
contact may move backwards. S9's frequency check uses a fixed set of contact ids, so it is a
deterministic computation that either always passes or always fails.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from dripflow.core.contact_view import ContactView
from dripflow.core.model import Sequence as SequenceDef
from dripflow.core.model import Workspace
from dripflow.core.modeltypes import format_duration
from dripflow.core.states import (
    CLOSED_STATUSES,
    OPEN_STATUSES,
    PriorEnrollment,
    choose_mailbox,
    choose_variant,
    enrollment_refusal,
    matching_exclusion,
    next_step,
    repoint_last_step,
    route_mailbox,
)
from dripflow.core.steps_model import Variant
from dripflow.core.validate import load_workspace_text

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
ZULU = "%Y-%m-%dT%H:%M:%SZ"  # how every time is written to users (X3)
SECOND = timedelta(seconds=1)
PROPERTY = settings(max_examples=120, deadline=None)

# SPEC S1 / §6: the open statuses ("in" the sequence) and the closed ones.
SPEC_OPEN = ("draft", "active", "queued", "blocked", "paused", "finished")
SPEC_CLOSED = ("completed", "canceled", "excluded", "bounced")
# SPEC S3: "an open, unfinished enrollment elsewhere".
SPEC_UNFINISHED = ("draft", "active", "queued", "blocked", "paused")

# --------------------------------------------------------------------------------------------------
# Building workspaces, sequences and contacts


def _email(step_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "email", "template": "hello", **extra}


BASE: dict[str, Any] = {
    "workspace": {"name": "Acme", "timezone": "America/New_York"},
    "mailboxes": [{"id": "ann", "from": "Ann Lee <ann@acme.test>", "default": True}],
    "tags": ["dnc", "vip"],
    "templates": {
        "hello": {"subject": "Hello", "text": "Hello there"},
        "offer-a": {"subject": "Offer A", "text": "A"},
        "offer-b": {"subject": "Offer B", "text": "B"},
    },
    "sequences": [
        {"id": "onboarding", "steps": [_email("hello"), _email("tips", after={"days": 2})]},
        {"id": "promo", "steps": [_email("pitch")]},
    ],
}


def make_workspace(**sections: Any) -> Workspace:
    """The base workspace with some top-level sections replaced, loaded as a file is (SPEC §2)."""
    return load_workspace_text(yaml.safe_dump({**BASE, **sections}, sort_keys=False), "states.yaml")


def the_sequence(workspace: Workspace, sequence_id: str = "onboarding") -> SequenceDef:
    found = workspace.sequence(sequence_id)
    assert found is not None
    return found


def with_reenroll(sequence: SequenceDef, reenroll: str) -> SequenceDef:
    return SequenceDef.model_validate({**sequence.model_dump(mode="json"), "reenroll": reenroll})


def contact(**attrs: Any) -> ContactView:
    return ContactView(**{"id": 1, "email": "pat@example.test", "lead_status": "active", **attrs})


def closed(sequence: str, at: datetime, status: str = "completed") -> PriorEnrollment:
    return PriorEnrollment(sequence=sequence, status=status, closed_at=at)


def opened(sequence: str, status: str) -> PriorEnrollment:
    return PriorEnrollment(sequence=sequence, status=status, closed_at=None)


WS = make_workspace()
ONBOARDING = the_sequence(WS)


def refusal(
    prior: Sequence[PriorEnrollment] = (),
    *,
    workspace: Workspace = WS,
    sequence: SequenceDef = ONBOARDING,
    status: str = "active",
    who: ContactView | None = None,
    now: datetime = NOW,
) -> tuple[str, str | None] | None:
    return enrollment_refusal(workspace, sequence, status, who or contact(), prior, now)


# Steps for S7: (id, active) pairs turned into a sequence.
StepList = list[tuple[str, bool]]


def sequence_of(steps: StepList) -> SequenceDef:
    return SequenceDef.model_validate(
        {"id": "seq", "steps": [_email(step_id, active=active) for step_id, active in steps]}
    )


def walk(
    sequence: SequenceDef, last: str | None, done: frozenset[str], limit: int | None = None
) -> list[str]:
    """The steps an enrollment runs from ``last`` on, the way the engine calls next_step (S7)."""
    sent: list[str] = []
    while limit is None or len(sent) < limit:
        step = next_step(sequence, last, done)
        if step is None:
            break
        assert len(sent) <= len(sequence.steps), "next_step went round in circles"
        sent.append(step.id)
        done, last = done | {step.id}, step.id
    return sent


@st.composite
def step_lists(draw: st.DrawFn, min_size: int = 1, max_size: int = 9) -> StepList:
    numbers = draw(st.lists(st.integers(0, 60), unique=True, min_size=min_size, max_size=max_size))
    return [(f"s{n}", draw(st.sampled_from([True, True, True, False]))) for n in numbers]


@st.composite
def progress(draw: st.DrawFn, steps: StepList) -> tuple[list[str], str | None]:
    """The steps completed so far (in order) and the last one, after k of the active steps ran."""
    active = [step_id for step_id, is_active in steps if is_active]
    k = draw(st.integers(0, len(active)))
    sent = walk(sequence_of(steps), None, frozenset(), limit=k)
    return sent, (sent[-1] if sent else None)


@st.composite
def insertions(draw: st.DrawFn, steps: StepList) -> StepList:
    """``steps`` with 1–3 new steps inserted at random places (the others keep their order)."""
    result = list(steps)
    for number in range(draw(st.integers(1, 3))):
        position = draw(st.integers(0, len(result)))
        result.insert(position, (f"new{number}", draw(st.booleans())))
    return result


def ids(steps: StepList) -> list[str]:
    return [step_id for step_id, _ in steps]


# --------------------------------------------------------------------------------------------------
# §6 statuses


def test_s1_open_and_closed_statuses_are_the_specs() -> None:
    # SPEC S1 lists the open statuses; §6 closes the others (completed, canceled, excluded, bounced)
    assert set(SPEC_OPEN) == OPEN_STATUSES
    assert set(SPEC_CLOSED) == CLOSED_STATUSES
    assert not OPEN_STATUSES & CLOSED_STATUSES
    for status in SPEC_OPEN:
        assert PriorEnrollment("onboarding", status, None).is_open
    for status in SPEC_CLOSED:
        assert not PriorEnrollment("onboarding", status, NOW).is_open


def test_a_clean_contact_may_enter() -> None:
    # SPEC §5: none of S1–S4, S10, L2, L3 applies to a fresh contact, so it is enrolled
    assert refusal() is None
    assert refusal([closed("promo", NOW - DAY)]) is None


# --------------------------------------------------------------------------------------------------
# Sequence status, L2, L3


def test_archived_sequence_refuses_with_sequence_archived() -> None:
    # SPEC §6 not_enrolled reasons: sequence_archived
    assert refusal(status="archived") == ("sequence_archived", None)
    assert refusal(status="active") is None


def test_l2_blacklisted_contact_is_not_enrolled() -> None:
    # SPEC L2: nothing is sent to a blacklisted contact; §6 not_enrolled: blacklisted
    assert refusal(who=contact(lead_status="blacklisted")) == ("blacklisted", None)


def test_l3_globally_unsubscribed_contact_is_not_enrolled() -> None:
    # SPEC L3: a global unsubscribe stops all marketing email; §6 not_enrolled: unsubscribed
    assert refusal(who=contact(unsubscribed=True)) == ("unsubscribed", None)


# --------------------------------------------------------------------------------------------------
# S1, S2: one open enrollment per sequence; re-entry after the close


@pytest.mark.parametrize("status", SPEC_OPEN)
@pytest.mark.parametrize("policy", ["always", "never", "30d"])
def test_s1_open_enrollment_means_already_enrolled(status: str, policy: str) -> None:
    """SPEC S1: entering again while open (any open status, finished included, S13) does nothing but
    record already_enrolled, whatever the re-enrollment rule and any older closed enrollment."""
    sequence = with_reenroll(ONBOARDING, policy)
    assert refusal([opened("onboarding", status)], sequence=sequence) == ("already_enrolled", None)
    earlier = [closed("onboarding", NOW - 400 * DAY), opened("onboarding", status)]
    assert refusal(earlier, sequence=sequence) == ("already_enrolled", None)


@pytest.mark.parametrize("status", SPEC_OPEN)
def test_s1_an_open_enrollment_in_another_sequence_is_not_already_enrolled(status: str) -> None:
    # SPEC S1 is per sequence (multi_sequence defaults to allow)
    assert refusal([opened("promo", status)]) is None


@pytest.mark.parametrize("status", SPEC_CLOSED)
def test_s2_reenroll_never_refuses_after_any_close(status: str) -> None:
    # SPEC S2: never records not_enrolled: reenroll_never
    sequence = with_reenroll(ONBOARDING, "never")
    assert refusal([closed("onboarding", NOW - 1000 * DAY, status)], sequence=sequence) == (
        "reenroll_never",
        None,
    )


@pytest.mark.parametrize("status", SPEC_CLOSED)
def test_s2_reenroll_always_lets_a_closed_contact_in_at_once(status: str) -> None:
    # SPEC S2: always starts again (even a moment after the close)
    sequence = with_reenroll(ONBOARDING, "always")
    assert refusal([closed("onboarding", NOW, status)], sequence=sequence) is None
    assert refusal([closed("onboarding", NOW - SECOND, status)], sequence=sequence) is None


def test_s2_cooldown_boundary_is_exactly_close_plus_cooldown() -> None:
    """SPEC S2: a cooldown records not_enrolled: cooldown until it has passed since the close —
    at close + cooldown the contact may enter, a second (or a microsecond) before it may not."""
    sequence = with_reenroll(ONBOARDING, "30d")
    close = NOW - 30 * DAY
    assert refusal([closed("onboarding", close)], sequence=sequence) is None
    for early in (SECOND, timedelta(microseconds=1)):
        reason = refusal([closed("onboarding", close)], sequence=sequence, now=NOW - early)
        assert reason is not None and reason[0] == "cooldown"
        assert reason[1] is not None and (close + 30 * DAY).strftime(ZULU) in reason[1]
    assert refusal([closed("onboarding", close)], sequence=sequence, now=NOW + SECOND) is None


def test_s2_the_ruleset_policy_applies_when_the_sequence_sets_none() -> None:
    # SPEC S2 with §2 ruleset.reenroll: the workspace-wide rule is the default for every sequence
    workspace = make_workspace(ruleset={"reenroll": "7d"})
    sequence = the_sequence(workspace)
    assert sequence.reenroll is None
    assert refusal([closed("onboarding", NOW - 6 * DAY)], workspace=workspace, sequence=sequence) == (
        "cooldown",
        f"until {(NOW + DAY).strftime(ZULU)}",
    )
    assert refusal([closed("onboarding", NOW - 7 * DAY)], workspace=workspace, sequence=sequence) is None
    never = make_workspace(ruleset={"reenroll": "never"})
    assert refusal([closed("onboarding", NOW)], workspace=never, sequence=the_sequence(never)) == (
        "reenroll_never",
        None,
    )
    # …and the sequence's own rule wins over the ruleset's
    own = with_reenroll(the_sequence(never), "always")
    assert refusal([closed("onboarding", NOW)], workspace=never, sequence=own) is None


@PROPERTY
@given(
    minutes=st.integers(1, 60 * 24 * 400),
    ages=st.lists(st.integers(0, 60 * 24 * 800), min_size=1, max_size=4),
    status=st.sampled_from(SPEC_CLOSED),
)
def test_s2_cooldown_counts_from_the_latest_close(minutes: int, ages: list[int], status: str) -> None:
    """SPEC S2: re-entry is refused (cooldown) exactly while less than the cooldown has passed since
    the enrollment closed — with several closed enrollments, since the latest close."""
    sequence = with_reenroll(ONBOARDING, format_duration(timedelta(minutes=minutes)))
    prior = [closed("onboarding", NOW - timedelta(minutes=age), status) for age in ages]
    reason = refusal(prior, sequence=sequence)
    if min(ages) < minutes:
        until = NOW - timedelta(minutes=min(ages)) + timedelta(minutes=minutes)
        assert reason == ("cooldown", f"until {until.strftime(ZULU)}")
    else:
        assert reason is None


# --------------------------------------------------------------------------------------------------
# S3: multi_sequence deny

DENY = make_workspace(ruleset={"multi_sequence": "deny"})


@pytest.mark.parametrize("status", SPEC_UNFINISHED)
def test_s3_deny_refuses_with_an_open_unfinished_enrollment_elsewhere(status: str) -> None:
    # SPEC S3: multi_sequence: deny — not enrolled (in_other_sequence), the detail names the sequence
    sequence = the_sequence(DENY)
    assert refusal([opened("promo", status)], workspace=DENY, sequence=sequence) == (
        "in_other_sequence",
        "promo",
    )


@pytest.mark.parametrize("status", ["finished", *SPEC_CLOSED])
def test_s3_deny_ignores_finished_and_closed_enrollments_elsewhere(status: str) -> None:
    # SPEC S3: only an open, *unfinished* enrollment elsewhere counts
    prior = [PriorEnrollment("promo", status, None if status == "finished" else NOW - DAY)]
    assert refusal(prior, workspace=DENY, sequence=the_sequence(DENY)) is None


@pytest.mark.parametrize("status", SPEC_UNFINISHED)
def test_s3_allow_ignores_other_sequences(status: str) -> None:
    # SPEC S3 applies to deny only; the default is allow (§2 ruleset)
    assert WS.ruleset.multi_sequence == "allow"
    assert refusal([opened("promo", status)]) is None


@PROPERTY
@given(
    others=st.lists(
        st.tuples(st.sampled_from(["promo", "winback", "launch"]), st.sampled_from(SPEC_OPEN + SPEC_CLOSED)),
        max_size=5,
    )
)
def test_s3_deny_refuses_iff_some_other_enrollment_is_open_and_unfinished(
    others: list[tuple[str, str]],
) -> None:
    # SPEC S3 over any mix of enrollments in other sequences
    prior = [
        PriorEnrollment(seq, status, None if status in SPEC_OPEN else NOW - DAY) for seq, status in others
    ]
    blocking = [seq for seq, status in others if status in SPEC_UNFINISHED]
    reason = refusal(prior, workspace=DENY, sequence=the_sequence(DENY))
    if blocking:
        assert reason is not None and reason[0] == "in_other_sequence" and reason[1] in blocking
    else:
        assert reason is None


# --------------------------------------------------------------------------------------------------
# S4: exclusions at enrollment

EXCLUDING = make_workspace(
    ruleset={
        "exclusions": [
            {"name": "competitors", "if": {"email_domain": ["rival.test"]}},
            {"name": "do-not-contact", "if": {"has_tag": "dnc"}},
        ]
    }
)


def test_s4_matching_exclusion_is_the_first_rule_the_contact_matches() -> None:
    # SPEC S4: the exclusion's name is the reason's detail; rules are read in order
    assert matching_exclusion(EXCLUDING, contact(), NOW) is None
    assert matching_exclusion(EXCLUDING, contact(tags=frozenset({"dnc"})), NOW) == "do-not-contact"
    assert matching_exclusion(EXCLUDING, contact(email="x@rival.test"), NOW) == "competitors"
    both = contact(email="x@rival.test", tags=frozenset({"dnc"}))
    assert matching_exclusion(EXCLUDING, both, NOW) == "competitors"
    assert matching_exclusion(WS, both, NOW) is None


def test_s4_an_excluded_contact_is_not_enrolled() -> None:
    # SPEC S4: exclusions are checked at enrollment (not_enrolled: excluded)
    sequence = the_sequence(EXCLUDING)
    who = contact(tags=frozenset({"dnc", "vip"}))
    assert refusal(workspace=EXCLUDING, sequence=sequence, who=who) == ("excluded", "do-not-contact")
    assert refusal(workspace=EXCLUDING, sequence=sequence, who=contact(tags=frozenset({"vip"}))) is None


# --------------------------------------------------------------------------------------------------
# S10, D8: routing


def _routing_workspace(default: bool) -> Workspace:
    boxes = [
        {"id": "step-box", "from": "s@acme.test"},
        {"id": "seq-box", "from": "q@acme.test"},
        {"id": "carol", "from": "Carol <carol@acme.test>"},
        {"id": "house", "from": "h@acme.test", "default": default},
    ]
    sequences = [
        {
            "id": f"seq-{with_step}-{with_sequence}",
            **({"mailbox": "seq-box"} if with_sequence else {}),
            "steps": [_email("mail", **({"mailbox": "step-box"} if with_step else {}))],
        }
        for with_step, with_sequence in itertools.product([True, False], repeat=2)
    ]
    return make_workspace(mailboxes=boxes, sequences=sequences)


ROUTING = {default: _routing_workspace(default) for default in (True, False)}
OWNERS = {"owner with a mailbox": "carol", "owner without one": "dave", "no owner": None}


@pytest.mark.parametrize("default", [True, False])
@pytest.mark.parametrize("owner", list(OWNERS))
@pytest.mark.parametrize("with_sequence", [True, False])
@pytest.mark.parametrize("with_step", [True, False])
def test_s10_routing_precedence(default: bool, owner: str, with_sequence: bool, with_step: bool) -> None:
    """SPEC S10: an email step sends from its mailbox, else the sequence's, else the contact's
    owner's, else the workspace default; a contact with an unroutable email step is not enrolled
    (missing_routing, naming the step)."""
    workspace = ROUTING[default]
    sequence = the_sequence(workspace, f"seq-{with_step}-{with_sequence}")
    (step,) = sequence.email_steps
    who = contact(owner=OWNERS[owner])
    expected = (
        "step-box"
        if with_step
        else "seq-box"
        if with_sequence
        else "carol"
        if OWNERS[owner] == "carol"
        else "house"
        if default
        else None
    )
    assert route_mailbox(step, sequence, who, workspace) == expected
    reason = enrollment_refusal(workspace, sequence, "active", who, [], NOW)
    assert reason == (None if expected is not None else ("missing_routing", "mail"))


def test_s10_the_only_mailbox_is_the_default() -> None:
    # §2 / S10: with a single mailbox, it is the workspace default even unmarked
    workspace = make_workspace(mailboxes=[{"id": "solo", "from": "solo@acme.test"}])
    sequence = the_sequence(workspace)
    assert route_mailbox(sequence.email_steps[0], sequence, contact(), workspace) == "solo"


def test_s10_missing_routing_names_the_first_unroutable_email_step() -> None:
    # SPEC S10: "some email step cannot be routed" — one routed step does not save the other
    workspace = make_workspace(
        mailboxes=[{"id": "a", "from": "a@acme.test"}, {"id": "b", "from": "b@acme.test"}],
        sequences=[{"id": "onboarding", "steps": [_email("first", mailbox="a"), _email("second")]}],
    )
    assert refusal(workspace=workspace, sequence=the_sequence(workspace)) == ("missing_routing", "second")


def test_d8_a_sequence_pool_routes_to_the_pool_and_a_step_mailbox_overrides_it() -> None:
    # SPEC D8: a sequence's mailbox may be a list (a pool); S10: the step's own mailbox comes first
    workspace = make_workspace(
        mailboxes=[
            {"id": "a", "from": "a@acme.test"},
            {"id": "b", "from": "b@acme.test"},
            {"id": "c", "from": "c@acme.test"},
        ],
        sequences=[
            {
                "id": "onboarding",
                "mailbox": ["b", "a"],
                "steps": [_email("pooled"), _email("own", mailbox="c")],
            }
        ],
    )
    sequence = the_sequence(workspace)
    pooled, own = sequence.email_steps
    assert route_mailbox(pooled, sequence, contact(owner="a"), workspace) == ("b", "a")
    assert route_mailbox(own, sequence, contact(), workspace) == "c"


def test_d8_pool_choice_examples() -> None:
    # SPEC D8: most capacity left that day; all at their cap → None (the step waits, daily_cap)
    caps = {"a": 100, "b": 50, "c": 80}
    assert choose_mailbox(["a", "b", "c"], {"a": 90, "b": 10, "c": 50}, caps) == "b"  # 10, 40, 30 left
    assert choose_mailbox(["a", "b", "c"], {}, caps) == "a"
    assert choose_mailbox(["a", "b", "c"], {"a": 100, "b": 50, "c": 80}, caps) is None
    assert choose_mailbox(["a", "b"], {"a": 120, "b": 50}, caps) is None  # over the cap is full too
    # ties are deterministic: the earlier mailbox in the pool
    assert choose_mailbox(["c", "b"], {"c": 30}, caps) == "c"
    assert choose_mailbox(["b", "c"], {"c": 30}, caps) == "b"


_boxes = st.lists(st.sampled_from("abcdefgh"), unique=True, min_size=1, max_size=6)


@PROPERTY
@given(
    pool=_boxes,
    caps=st.dictionaries(st.sampled_from("abcdefgh"), st.integers(1, 30)),
    sent=st.dictionaries(st.sampled_from("abcdefgh"), st.integers(0, 40)),
)
def test_d8_pool_choice_has_the_most_capacity_left_ties_to_the_earliest(
    pool: list[str], caps: dict[str, int], sent: dict[str, int]
) -> None:
    """SPEC D8: the mailbox of the pool with the most capacity left that day; when every mailbox is
    at its cap, none. Ties go to the earliest in the pool, so the choice is deterministic."""
    caps = {box: caps.get(box, 10) for box in pool}  # the engine passes a cap for every pool member
    left = {box: caps[box] - sent.get(box, 0) for box in pool}
    chosen = choose_mailbox(pool, sent, caps)
    if all(value <= 0 for value in left.values()):
        assert chosen is None
        return
    assert chosen is not None and chosen in pool and left[chosen] > 0
    best = max(left.values())
    assert left[chosen] == best
    assert pool.index(chosen) == min(pool.index(box) for box in pool if left[box] == best)
    assert choose_mailbox(list(pool), dict(sent), dict(caps)) == chosen


# --------------------------------------------------------------------------------------------------
# S9: split tests


def _variants(*weights: int) -> tuple[Variant, ...]:
    return tuple(Variant(template=f"arm{index}", weight=weight) for index, weight in enumerate(weights))


@PROPERTY
@given(
    contact_id=st.integers(1, 2**62),
    step_id=st.text(min_size=1, max_size=20),
    weights=st.lists(st.integers(1, 100), min_size=1, max_size=6),
)
def test_s9_variant_is_deterministic_from_contact_and_step_ids(
    contact_id: int, step_id: str, weights: list[int]
) -> None:
    # SPEC S9: deterministically from the contact and step ids (a rebuilt, equal variant list agrees)
    variants = _variants(*weights)
    first = choose_variant(contact_id, step_id, variants)
    assert any(first is variant for variant in variants)
    assert choose_variant(contact_id, step_id, variants) is first
    assert choose_variant(contact_id, step_id, _variants(*weights)).template == first.template


def test_s9_variant_does_not_depend_on_the_process_hash_seed() -> None:
    # SPEC S9: a retried step, a second simulation and a report agree — also in another process
    weights = (3, 1, 2)
    here = [choose_variant(cid, "offer", _variants(*weights)).template for cid in range(1, 60)]
    script = (
        "import json\n"
        "from dripflow.core.states import choose_variant\n"
        "from dripflow.core.steps_model import Variant\n"
        f"vs = tuple(Variant(template=f'arm{{i}}', weight=w) for i, w in enumerate({weights!r}))\n"
        "print(json.dumps([choose_variant(c, 'offer', vs).template for c in range(1, 60)]))\n"
    )
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        output = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        ).stdout
        assert json.loads(output) == here


def test_s9_the_step_id_is_part_of_the_assignment() -> None:
    # SPEC S9: "from the contact and step ids" — two split steps do not put everyone in the same arm
    variants = _variants(1, 1)
    at_a = [choose_variant(cid, "offer", variants).template for cid in range(1, 201)]
    at_b = [choose_variant(cid, "upsell", variants).template for cid in range(1, 201)]
    assert at_a != at_b


@PROPERTY
@given(
    weights=st.lists(st.integers(0, 5), min_size=1, max_size=6).filter(any),
    contact_id=st.integers(1, 10**9),
    step_id=st.sampled_from(["offer", "upsell", "s1"]),
)
def test_s9_only_arms_with_positive_weight_are_chosen(
    weights: list[int], contact_id: int, step_id: str
) -> None:
    """SPEC S9: by weight — an arm of weight 0 (not allowed in a file, forced here past validation)
    gets no contact."""
    variants = tuple(
        Variant.model_construct(template=f"arm{index}", weight=weight) for index, weight in enumerate(weights)
    )
    chosen = choose_variant(contact_id, step_id, variants)
    assert chosen.weight > 0
    assert any(chosen is variant for variant in variants)


def test_s9_a_zero_weight_is_refused_in_the_file() -> None:
    # SPEC S9 / §2: weights are positive
    with pytest.raises(ValidationError):
        Variant.model_validate({"template": "offer-a", "weight": 0})


@pytest.mark.parametrize("weights", [(1, 1), (1, 3), (70, 20, 10), (1, 1, 1, 1, 1), (5, 1), (1, 99)])
def test_s9_arm_frequencies_approach_the_weights(weights: tuple[int, ...]) -> None:
    """SPEC S9: each contact is assigned a variant by weight. Over 20 000 fixed contact ids the share
    of each arm is within 0.02 of its weight share (about 6 standard deviations; deterministic)."""
    variants = _variants(*weights)
    sample = 20_000
    counts = Counter(choose_variant(cid, "offer", variants).template for cid in range(1, sample + 1))
    total = sum(weights)
    for index, weight in enumerate(weights):
        assert abs(counts[f"arm{index}"] / sample - weight / total) < 0.02, (weights, counts)


# --------------------------------------------------------------------------------------------------
# S7, S13: the next step after live edits


def test_s7_walk_examples_inactive_steps_are_passed_over() -> None:
    # SPEC S7: an inactive step is skipped; S13: after the last step there is no next step
    sequence = sequence_of([("a", True), ("b", False), ("c", True), ("d", False)])
    first = next_step(sequence, None)
    assert first is not None and first.id == "a"
    after_a = next_step(sequence, "a")
    assert after_a is not None and after_a.id == "c"
    assert next_step(sequence, "c") is None
    assert next_step(sequence_of([("x", False)]), None) is None


def test_s7_next_step_is_addressed_by_id_and_refuses_an_unknown_one() -> None:
    # SPEC S7: steps are addressed by id; a last step no longer in the sequence must be repointed first
    with pytest.raises(ValueError, match="repoint"):
        next_step(sequence_of([("a", True), ("b", True)]), "gone", frozenset({"gone"}))


def test_s7_examples_of_live_edits() -> None:
    # SPEC S7: contact completed a and b of a, b, c, d
    done = frozenset({"a", "b"})
    old = ["a", "b", "c", "d"]

    def after(new: StepList, last: str = "b") -> str | None:
        step = next_step(sequence_of(new), repoint_last_step(old, ids(new), last), done)
        return step.id if step is not None else None

    # a step inserted before the contact's position is not sent; one right after it is next
    assert after([("a", True), ("x", True), ("b", True), ("c", True), ("d", True)]) == "c"
    assert after([("a", True), ("b", True), ("x", True), ("c", True), ("d", True)]) == "x"
    # the last completed step removed: the following surviving step is next
    assert after([("a", True), ("c", True), ("d", True)]) == "c"
    assert after([("a", True), ("d", True)]) == "d"
    # a sent step moved below the contact is not sent twice; a skipped one moved above is not sent
    assert after([("b", True), ("c", True), ("a", True), ("d", True)]) == "c"
    assert after([("b", True), ("a", True), ("d", True)]) == "d"
    assert after([("c", True), ("a", True), ("b", True), ("d", True)]) == "d"


def test_s7_repoint_last_step_contract() -> None:
    # SPEC S7: a removed last step stands at its nearest surviving predecessor in the old order
    old = ["a", "b", "c", "d"]
    assert repoint_last_step(old, ["d", "c", "b", "a"], "c") == "c"  # still there: unchanged
    assert repoint_last_step(old, ["a", "b", "d"], "c") == "b"
    assert repoint_last_step(old, ["a", "d"], "c") == "a"
    assert repoint_last_step(old, ["d", "a"], "c") == "a"
    assert repoint_last_step(old, ["d"], "c") is None  # nothing before it survives: the start
    assert repoint_last_step(old, ["b", "c", "d"], "a") is None
    assert repoint_last_step(old, ["b"], None) is None


def test_s13_t9_a_step_appended_after_the_end_reaches_a_finished_enrollment() -> None:
    # SPEC S13 / T9: a finished enrollment stays in the sequence, and appended steps reach it
    steps: StepList = [("a", True), ("b", True)]
    done = frozenset({"a", "b"})
    assert next_step(sequence_of(steps), "b", done) is None
    appended = next_step(sequence_of([*steps, ("c", True)]), "b", done)
    assert appended is not None and appended.id == "c"


@PROPERTY
@given(steps=step_lists(min_size=0))
def test_s7_a_walk_runs_every_active_step_once_in_order(steps: StepList) -> None:
    # SPEC S7: inactive steps are skipped; each active step runs once, in the sequence's order
    assert walk(sequence_of(steps), None, frozenset()) == [step_id for step_id, active in steps if active]


@PROPERTY
@given(data=st.data())
def test_s7_insert_never_sends_twice_nor_reaches_back(data: st.DataObject) -> None:
    """SPEC S7 (and T9): after steps are inserted while the contact is inside, the next step is the
    first active one following the last completed step in the new order; an inserted step is run
    exactly when it lies after the contact's position."""
    steps = data.draw(step_lists())
    sent, last = data.draw(progress(steps))
    new = data.draw(insertions(steps))
    new_ids = ids(new)
    anchor = repoint_last_step(ids(steps), new_ids, last)
    assert anchor == last
    position = new_ids.index(last) if last is not None else -1
    rest = walk(sequence_of(new), anchor, frozenset(sent))
    assert rest == [step_id for step_id, active in new[position + 1 :] if active]
    for step_id, active in new:
        if step_id.startswith("new"):
            assert (step_id in rest) == (active and new_ids.index(step_id) > position)
    assert len(set(sent + rest)) == len(sent + rest)


@PROPERTY
@given(data=st.data())
def test_s7_removed_steps_resolve_to_the_following_surviving_step(data: st.DataObject) -> None:
    """SPEC S7: removing steps (the last completed one included) never sends a step twice nor moves
    the contact backwards: the next step is the first active surviving step that followed the last
    completed one in the old order."""
    steps = data.draw(step_lists())
    sent, last = data.draw(progress(steps))
    keep = data.draw(st.lists(st.booleans(), min_size=len(steps), max_size=len(steps)))
    new = [step for step, kept in zip(steps, keep, strict=True) if kept]
    old_ids, new_ids = ids(steps), ids(new)
    anchor = repoint_last_step(old_ids, new_ids, last)
    if last is not None and last in new_ids:
        assert anchor == last
    if anchor is not None:
        assert anchor in new_ids
        assert last is not None and old_ids.index(anchor) <= old_ids.index(last)
    position = old_ids.index(last) if last is not None else -1
    following = [sid for sid, active in steps[position + 1 :] if active and sid in new_ids]
    rest = walk(sequence_of(new), anchor, frozenset(sent))
    assert rest == following
    assert not set(rest) & set(sent)


@PROPERTY
@given(data=st.data())
def test_s7_reorder_never_sends_twice_nor_moves_back(data: st.DataObject) -> None:
    """SPEC S7: after a reorder the contact goes on with the active steps that follow its last
    completed step in the new order, minus those it already ran; a step moved above its position is
    never run (that would be moving backwards)."""
    steps = data.draw(step_lists())
    sent, last = data.draw(progress(steps))
    new = data.draw(st.permutations(steps))
    new_ids = ids(new)
    anchor = repoint_last_step(ids(steps), new_ids, last)
    assert anchor == last
    position = new_ids.index(last) if last is not None else -1
    rest = walk(sequence_of(new), anchor, frozenset(sent))
    assert rest == [sid for sid, active in new[position + 1 :] if active and sid not in sent]
    assert not set(rest) & set(new_ids[: position + 1])


@st.composite
def live_edit(draw: st.DrawFn, steps: StepList, round_: int) -> StepList:
    """Any edit by id: drop some steps, insert new ones, shuffle — alone or together."""
    keep = draw(st.lists(st.booleans(), min_size=len(steps), max_size=len(steps)))
    result = [step for step, kept in zip(steps, keep, strict=True) if kept]
    for number in range(draw(st.integers(0, 2))):
        result.insert(draw(st.integers(0, len(result))), (f"r{round_}n{number}", draw(st.booleans())))
    if draw(st.booleans()):
        result = list(draw(st.permutations(result)))
    return result


@PROPERTY
@given(data=st.data())
def test_s7_any_series_of_edits_never_sends_a_step_twice_nor_moves_back(data: st.DataObject) -> None:
    """SPEC S7 over several rounds of progress and live edits (insert, remove, reorder, combined):
    every step sent is sent once, is active, and follows the contact's position in the order current
    at the time; a removed last step stands at a surviving step that preceded it."""
    steps = data.draw(step_lists())
    sent: list[str] = []
    last: str | None = None
    for round_ in range(data.draw(st.integers(1, 4))):
        done = frozenset(sent)
        budget = data.draw(st.integers(0, 3))
        sequence = sequence_of(steps)
        order = ids(steps)
        ran = walk(sequence, last, done, limit=budget)
        for step_id in ran:
            assert step_id not in sent, f"{step_id} sent twice"
            assert dict(steps)[step_id], f"inactive {step_id} sent"
            if last is not None:
                assert order.index(step_id) > order.index(last), f"{step_id} is behind {last}"
            sent.append(step_id)
            last = step_id
        new = data.draw(live_edit(steps, round_))
        anchor = repoint_last_step(order, ids(new), last)
        if last is not None and last in ids(new):
            assert anchor == last
        elif anchor is not None:
            assert last is not None and order.index(anchor) < order.index(last)
            assert anchor in ids(new)
        else:
            kept = set(ids(new))
            assert last is None or not any(sid in kept for sid in order[: order.index(last)])
        steps, last = new, anchor
    final = walk(sequence_of(steps), last, frozenset(sent))
    assert not set(final) & set(sent)
    assert len(set(final)) == len(final)
