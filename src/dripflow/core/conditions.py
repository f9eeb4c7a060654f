"""The condition evaluator of SPEC §3: does a condition hold for a contact, and if not, why not.

Both functions are pure: they read the parsed condition tree (:mod:`dripflow.core.conditions_model`)
and a :class:`~dripflow.core.contact_view.ContactView` snapshot, never the store or the clock
(``now`` is passed in), so the scheduler, automations, rule steps, broadcasts and ``dripflow
explain`` all get the same answer for the same data.

Decisions where SPEC §3 is silent (also in ``docs/conditions.md``):

* **Missing values.** A ``field`` with no value (absent, ``None``, blank text or an empty list) is
  false for every op except ``ne`` (true) and ``exists`` (false). The same rule covers a survey
  answer or score the contact has not given: ``is``/``contains``/comparisons are false, ``is_not``,
  ``not_contains`` and ``ne`` are true. So a negative test is always exactly ``not`` of its positive.
* **Field keys.** A key the contact has in ``fields`` is read from there; otherwise a contact
  attribute of that name (``first_name``, ``email``, ``source`` … the validator's
  ``CONTACT_ATTRIBUTES``).
* **Field comparison** picks the type from the values: booleans as booleans (``"true"``/``"yes"``
  text counts), numbers numerically (numeric text counts when compared with a number), dates as
  dates (``date`` objects, or ``YYYY-MM-DD`` text on both sides), anything else as text compared
  case-insensitively. Ordering ops on booleans, or on values that cannot be brought to one type,
  are false. ``contains`` is a case-insensitive substring test; on a list value it means "one
  item equals".
* **source** and **email_domain** compare case-insensitively; ``email_domain`` matches the
  domain exactly (``eu.rival.test`` is not ``rival.test``).
* **History conditions** (``bought_product``, ``refunded_product`` …) ask whether such a fact
  exists: a later refund does not undo "bought". ``calendar_canceled`` stays true after a new
  booking; ``calendar_active`` is the state.
* **"Latest"** is by the fact's time, ties broken by the order of ``contact.facts``; naive times
  are read as UTC (T1).
* **active_subscription**: a purchase and no ``subscription.canceled`` after the latest purchase
  (a cancellation request or a refund does not end it).
* **has_membership** keeps one state per level: a grant turns its level on, a revoke with a level
  turns that level off, a revoke without a level turns every level off. Without ``level`` the
  condition holds when any level (or a grant without a level) is on; with ``level``, when that one is.
* **clicked_link** counts ``link.clicked`` facts only and **clicked_split_link**
  ``split_link.clicked`` only (of any variant); **completed_video** also counts as played.
* **survey_answer** reads the latest ``survey.completed`` of that survey. A list answer (several
  choices) ``is`` X when one of its choices is X, and ``contains`` X when one choice contains X.
* **engagement** counts ``email.opened`` and ``link.clicked`` facts with ``now - 90 days <= at <=
  now``: 0 none, 1–2 low, 3–5 medium, 6 or more high.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, Never, NoReturn, Protocol

from dripflow.core.conditions_model import (
    ENGAGEMENT_ORDER,
    ActiveSubscription,
    AllOf,
    AnyOf,
    BoughtProduct,
    CalendarActive,
    CalendarCanceled,
    CalendarCompleted,
    CanceledSubscription,
    ClickedLink,
    ClickedSplitLink,
    CompletedLevel,
    CompletedSurvey,
    CompletedVideo,
    ConditionNode,
    EmailDomain,
    EmailRef,
    Engagement,
    EngagementLevel,
    FieldIs,
    FieldTest,
    FilledForm,
    FinishedSequence,
    HasMembership,
    HasTag,
    InSequence,
    IsAffiliate,
    IsJvBroker,
    IsLeadStatus,
    Not,
    OnList,
    OpenedEmail,
    PartiallyRefundedProduct,
    PlayedVideo,
    ReachedStep,
    RefundedProduct,
    Scalar,
    Score,
    Source,
    SurveyAnswer,
    SurveyAnswerTest,
    SurveyScore,
    VisitedPage,
    WebinarAttended,
    WebinarLeftEarly,
    WebinarMissed,
    WebinarRegistered,
    WebinarWatchedFully,
)
from dripflow.core.contact_view import ContactView, FactView
from dripflow.core.modeltypes import CompareOp
from dripflow.core.references import CONTACT_ATTRIBUTES

__all__ = ["ENGAGEMENT_WINDOW", "engagement_level", "evaluate", "explain_false"]

ENGAGEMENT_WINDOW = timedelta(days=90)
"""How far back ``engagement`` looks (SPEC §3: "the last 90 days of opens and clicks")."""

_ENGAGEMENT_FACTS = frozenset({"email.opened", "link.clicked"})
_CALENDAR_FACTS = frozenset({"calendar.registered", "calendar.canceled", "calendar.completed"})
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_TRUE = frozenset({"true", "yes"})
_FALSE = frozenset({"false", "no"})

# Negative tests: true when the value is missing, and always the inverse of their positive twin.
_NEGATIVE_OPS = frozenset({"ne", "is_not", "not_contains"})

SurveyOp = Literal["is", "is_not", "contains", "not_contains"]


class _Ordered(Protocol):
    def __lt__(self, other: Any, /) -> bool: ...


# --------------------------------------------------------------------------------------------------
# Public API


def evaluate(condition: ConditionNode, contact: ContactView, now: datetime) -> bool:
    """Whether ``condition`` holds for ``contact`` at ``now`` (SPEC §3).

    Raises TypeError for a node class it does not know, so a condition added to the model without
    a rule here fails loudly instead of silently being false.
    """
    match condition:
        case AllOf(items=items):
            return all(evaluate(item, contact, now) for item in items)
        case AnyOf(items=items):
            return any(evaluate(item, contact, now) for item in items)
        case Not(item=item):
            return not evaluate(item, contact, now)
        case OnList(arg=name):
            return name in contact.lists
        case HasTag(arg=name):
            return name in contact.tags
        case FieldIs(arg=test):
            return _field_holds(test, _field_value(contact, test.key))
        case Source(arg=name):
            return contact.source is not None and contact.source.strip().casefold() == name.casefold()
        case EmailDomain(arg=domains):
            domain = contact.email_domain
            return domain is not None and domain in {item.lower() for item in domains}
        case IsLeadStatus(arg=status):
            return contact.lead_status == status
        case FilledForm(arg=name):
            return _has(contact, "form.submitted", name)
        case InSequence(arg=name):
            enrollment = contact.enrollment(name)
            return enrollment is not None and enrollment.is_open
        case FinishedSequence(arg=name):
            enrollment = contact.enrollment(name)
            return enrollment is not None and enrollment.ever_finished
        case ReachedStep(arg=ref):
            enrollment = contact.enrollment(ref.sequence)
            return enrollment is not None and ref.step in enrollment.reached_steps
        case OpenedEmail(arg=ref):
            return any(_email_matches(fact, ref) for fact in contact.facts_of("email.opened"))
        case ClickedLink(arg=name):
            return _has(contact, "link.clicked", name)
        case ClickedSplitLink(arg=name):
            return _has(contact, "split_link.clicked", name)
        case VisitedPage(arg=name):
            return _has(contact, "page.visited", name)
        case BoughtProduct(arg=name):
            return _has(contact, "product.purchased", name)
        case RefundedProduct(arg=name):
            return _has(contact, "product.refunded", name)
        case PartiallyRefundedProduct(arg=name):
            return _has(contact, "product.partially_refunded", name)
        case CanceledSubscription(arg=name):
            return _has(contact, "subscription.canceled", name)
        case ActiveSubscription(arg=name):
            return _subscription_state(contact, name) == "active"
        case PlayedVideo(arg=name):
            return _has(contact, "video.played", name) or _has(contact, "video.completed", name)
        case CompletedVideo(arg=name):
            return _has(contact, "video.completed", name)
        case Score(arg=test):
            return _compare(float(contact.score), test.op, test.value)
        case HasMembership(arg=ref):
            return _has_membership(contact, ref.membership, ref.level)
        case CompletedLevel(arg=ref):
            return any(
                _level(fact) == ref.level
                for fact in contact.facts_of("membership.level_completed", ref.membership)
            )
        case WebinarRegistered(arg=name):
            return _has(contact, "webinar.registered", name)
        case WebinarAttended(arg=name):
            return _has(contact, "webinar.attended", name)
        case WebinarMissed(arg=name):
            return _has(contact, "webinar.missed", name)
        case WebinarWatchedFully(arg=name):
            return _has(contact, "webinar.watched_fully", name)
        case WebinarLeftEarly(arg=name):
            return _has(contact, "webinar.left_early", name)
        case CalendarActive(arg=name):
            latest = _latest(f for f in contact.facts if f.kind in _CALENDAR_FACTS and f.key == name)
            return latest is not None and latest.kind == "calendar.registered"
        case CalendarCompleted(arg=name):
            return _has(contact, "calendar.completed", name)
        case CalendarCanceled(arg=name):
            return _has(contact, "calendar.canceled", name)
        case CompletedSurvey(arg=name):
            return _has(contact, "survey.completed", name)
        case SurveyAnswer(arg=test):
            op, wanted = test.test
            return _answer_holds(_survey_answer(contact, test), op, wanted)
        case SurveyScore(arg=test):
            score = _survey_score(contact, test.survey)
            return test.op in _NEGATIVE_OPS if score is None else _compare(score, test.op, test.value)
        case IsAffiliate(arg=which):
            return _partner(contact, "affiliate.joined", which)
        case IsJvBroker(arg=which):
            return _partner(contact, "jv_broker.joined", which)
        case Engagement(arg=test):
            level = engagement_level(contact, now)
            return _compare(ENGAGEMENT_ORDER.index(level), test.op, ENGAGEMENT_ORDER.index(test.value))
        case _:
            _unhandled(condition)


def explain_false(condition: ConditionNode, contact: ContactView, now: datetime) -> str | None:
    """None when ``condition`` holds; otherwise a sentence fragment saying why not (SPEC X5).

    It names the first leaf that decided the outcome ("the contact does not have the tag 'vip'",
    "no purchase of 'course-101'"); under ``not`` it says what held ("the contact has the tag
    'dnc'"). When every item of an ``any`` failed, their reasons are joined with "and".
    """
    return _why(condition, contact, now, expected=True)


def engagement_level(contact: ContactView, now: datetime) -> EngagementLevel:
    """The contact's engagement at ``now``: opens and clicks within the last 90 days (SPEC §3)."""
    count = _recent_engagement(contact, now)
    if count == 0:
        return "none"
    if count <= 2:
        return "low"
    if count <= 5:
        return "medium"
    return "high"


# --------------------------------------------------------------------------------------------------
# Facts


def _unhandled(condition: Never) -> NoReturn:
    """Static and runtime guard that every node class has a rule (mypy narrows to Never here)."""
    raise TypeError(f"no rule to evaluate condition {type(condition).__name__}")


def _has(contact: ContactView, kind: str, key: str) -> bool:
    return any(fact.kind == kind and fact.key == key for fact in contact.facts)


def _utc(moment: datetime) -> datetime:
    """Instants are UTC (T1); a naive one (as SQLite returns them) is read as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _chronological(facts: Iterable[FactView]) -> list[FactView]:
    """Oldest first; the sort is stable, so same-instant facts keep the contact's order."""
    return sorted(facts, key=lambda fact: _utc(fact.at))


def _latest(facts: Iterable[FactView]) -> FactView | None:
    ordered = _chronological(facts)
    return ordered[-1] if ordered else None


def _level(fact: FactView) -> str | None:
    level = fact.detail.get("level")
    return None if level is None else str(level)


def _email_matches(fact: FactView, ref: EmailRef) -> bool:
    wanted = {"sequence": ref.sequence, "step": ref.step, "broadcast": ref.broadcast}
    return all(fact.detail.get(key) == value for key, value in wanted.items() if value is not None)


def _subscription_state(contact: ContactView, product: str) -> Literal["never", "canceled", "active"]:
    facts = _chronological(
        f
        for f in contact.facts
        if f.key == product and f.kind in ("product.purchased", "subscription.canceled")
    )
    purchases = [index for index, fact in enumerate(facts) if fact.kind == "product.purchased"]
    if not purchases:
        return "never"
    after = facts[purchases[-1] + 1 :]
    return "canceled" if any(fact.kind == "subscription.canceled" for fact in after) else "active"


def _has_membership(contact: ContactView, membership: str, level: str | None) -> bool:
    on: dict[str | None, bool] = {}
    granted_or_revoked = ("membership.granted", "membership.revoked")
    for fact in _chronological(
        f for f in contact.facts if f.kind in granted_or_revoked and f.key == membership
    ):
        fact_level = _level(fact)
        if fact.kind == "membership.granted":
            on[fact_level] = True
        elif fact_level is None:
            on = dict.fromkeys(on, False)
        else:
            on[fact_level] = False
    return any(on.values()) if level is None else on.get(level, False)


def _partner(contact: ContactView, kind: str, which: bool | str) -> bool:
    if isinstance(which, bool):
        return bool(contact.facts_of(kind)) == which
    return bool(contact.facts_of(kind, which))


def _recent_engagement(contact: ContactView, now: datetime) -> int:
    end = _utc(now)
    start = end - ENGAGEMENT_WINDOW
    return sum(1 for f in contact.facts if f.kind in _ENGAGEMENT_FACTS and start <= _utc(f.at) <= end)


def _latest_survey(contact: ContactView, survey: str) -> FactView | None:
    return _latest(contact.facts_of("survey.completed", survey))


def _survey_answer(contact: ContactView, test: SurveyAnswerTest) -> list[str]:
    """The latest answer to the question as a list of choices (empty: not answered)."""
    fact = _latest_survey(contact, test.survey)
    answers = fact.detail.get("answers") if fact is not None else None
    answer = answers.get(test.question) if isinstance(answers, Mapping) else None
    items: Sequence[object] = answer if isinstance(answer, list | tuple) else [answer]
    return [_text(item) for item in items if not _missing(item)]


def _survey_score(contact: ContactView, survey: str) -> float | None:
    fact = _latest_survey(contact, survey)
    return None if fact is None else _as_number(fact.detail.get("score"))


# --------------------------------------------------------------------------------------------------
# Values


def _field_value(contact: ContactView, key: str) -> object:
    if key in contact.fields:
        return contact.fields[key]
    if key in CONTACT_ATTRIBUTES:
        return getattr(contact, key)
    return None


def _missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, list | tuple | set | frozenset) and not value


def _text(value: object) -> str:
    """A value as the text a person would read (``True`` → ``true``, ``3.0`` → ``3``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _as_number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value.strip())
    return None


def _as_date(value: object) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value.strip()) == 10:
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def _as_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().casefold()
        return True if text in _TRUE else False if text in _FALSE else None
    return None


def _comparable(actual: object, wanted: object) -> tuple[_Ordered, _Ordered] | None:
    """The two values brought to one type (see the module docstring), or None if they cannot be."""
    if isinstance(actual, bool) or isinstance(wanted, bool):
        flags = _as_bool(actual), _as_bool(wanted)
        return (flags[0], flags[1]) if flags[0] is not None and flags[1] is not None else None
    if _as_number(actual) is not None and isinstance(wanted, int | float):
        return _pair(_as_number(actual), float(wanted))
    if isinstance(actual, int | float):
        return _pair(float(actual), _as_number(wanted))
    if isinstance(actual, date) or isinstance(wanted, date):
        return _pair(_as_date(actual), _as_date(wanted))
    if isinstance(actual, str) and isinstance(wanted, str):
        dates = _as_date(actual), _as_date(wanted)
        if dates[0] is not None and dates[1] is not None:
            return dates[0], dates[1]
        return actual.strip().casefold(), wanted.strip().casefold()
    return None


def _pair(left: _Ordered | None, right: _Ordered | None) -> tuple[_Ordered, _Ordered] | None:
    return (left, right) if left is not None and right is not None else None


def _compare(actual: _Ordered, op: CompareOp, wanted: _Ordered) -> bool:
    match op:
        case "eq":
            return not (actual < wanted or wanted < actual)
        case "ne":
            return actual < wanted or wanted < actual
        case "lt":
            return actual < wanted
        case "lte":
            return not wanted < actual
        case "gt":
            return wanted < actual
        case "gte":
            return not actual < wanted


def _field_holds(test: FieldTest, actual: object) -> bool:
    if _missing(actual):
        return test.op == "ne"
    match test.op:
        case "exists":
            return True
        case "contains":
            return _contains(actual, test.value)
        case "ne":
            pair = _comparable(actual, test.value)
            return pair is None or _compare(pair[0], "ne", pair[1])
        case op:
            pair = _comparable(actual, test.value)
            if pair is None or (op != "eq" and isinstance(pair[0], bool)):
                return False
            return _compare(pair[0], op, pair[1])


def _contains(actual: object, wanted: Scalar) -> bool:
    needle = _text(wanted).casefold()
    if isinstance(actual, list | tuple | set | frozenset):
        return any(_text(item).strip().casefold() == needle.strip() for item in actual)
    return needle in _text(actual).casefold()


def _answer_holds(choices: list[str], op: SurveyOp, wanted: Scalar) -> bool:
    if op in _NEGATIVE_OPS:
        positive: SurveyOp = "is" if op == "is_not" else "contains"
        return not _answer_holds(choices, positive, wanted)
    needle = _text(wanted).strip().casefold()
    if op == "is":
        return any(choice.strip().casefold() == needle for choice in choices)
    return any(needle in choice.casefold() for choice in choices)


# --------------------------------------------------------------------------------------------------
# Explanations


def _why(condition: ConditionNode, contact: ContactView, now: datetime, expected: bool) -> str | None:
    """None when ``condition`` evaluates to ``expected``, else why it does not."""
    match condition:
        case AllOf(items=items) | AnyOf(items=items):
            # `all` wanted true, or `any` wanted false: one item decides; otherwise every item does.
            one_decides = isinstance(condition, AllOf) == expected
            reasons = [_why(item, contact, now, expected) for item in items]
            found = [reason for reason in reasons if reason is not None]
            if one_decides:
                return found[0] if found else None
            return " and ".join(found) if len(found) == len(reasons) else None
        case Not(item=item):
            return _why(item, contact, now, not expected)
    holds = evaluate(condition, contact, now)
    return None if holds == expected else _describe(condition, contact, now, holds)


def _q(name: object) -> str:
    return f"'{_text(name)}'"


def _pick(holds: bool, yes: str, no: str) -> str:
    return yes if holds else no


_COMPARE_WORDS: dict[str, tuple[str, str]] = {
    "eq": ("equal to", "not equal to"),
    "ne": ("not equal to", "equal to"),
    "lt": ("less than", "not less than"),
    "lte": ("at most", "more than"),
    "gt": ("more than", "not more than"),
    "gte": ("at least", "less than"),
    "contains": ("containing", "not containing"),
    "is": ("equal to", "not equal to"),
    "is_not": ("not equal to", "equal to"),
    "not_contains": ("not containing", "containing"),
}


def _compared(op: str, holds: bool, wanted: object, *, level: bool = False) -> str:
    words = _COMPARE_WORDS[op][0 if holds else 1]
    if level:  # engagement levels are higher or lower, not more or less
        words = words.replace("less", "lower").replace("more", "higher")
    return f"{words} {wanted}"


def _shown(value: object) -> str:
    if _missing(value):
        return "empty"
    if isinstance(value, str | date):
        return _q(value)
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(_q(item) for item in value)
    return _text(value)


def _describe(condition: ConditionNode, contact: ContactView, now: datetime, holds: bool) -> str:
    """What is true of the contact about a leaf: its positive form if it holds, else its negation."""
    the = "the contact"
    match condition:
        case AllOf() | AnyOf() | Not():
            raise TypeError("combinators are explained by _why")
        case OnList(arg=name):
            return f"{the} is {_pick(holds, '', 'not ')}on the list {_q(name)}"
        case HasTag(arg=name):
            return f"{the} {_pick(holds, 'has', 'does not have')} the tag {_q(name)}"
        case FieldIs(arg=test):
            return _describe_field(test, _field_value(contact, test.key), holds)
        case Source(arg=name):
            if contact.source is None:
                return f"{the} has no source (not {_q(name)})"
            if holds:
                return f"{the}'s source is {_q(name)}"
            return f"{the}'s source is {_q(contact.source)}, not {_q(name)}"
        case EmailDomain(arg=domains):
            listed = ", ".join(_q(domain) for domain in domains)
            if contact.email_domain is None:
                return f"{the} has no email address (so its domain is not {listed})"
            verb = _pick(holds, "is", "is not") + (" one of" if len(domains) > 1 else "")
            return f"{the}'s email domain {_q(contact.email_domain)} {verb} {listed}"
        case IsLeadStatus(arg=status):
            if holds:
                return f"{the}'s lead status is {_q(status)}"
            return f"{the}'s lead status is {_q(contact.lead_status)}, not {_q(status)}"
        case FilledForm(arg=name):
            return f"{the} {_pick(holds, 'filled in', 'has not filled in')} the form {_q(name)}"
        case InSequence(arg=name):
            enrollment = contact.enrollment(name)
            if holds or enrollment is None:
                return f"{the} is {_pick(holds, '', 'not ')}in the sequence {_q(name)}"
            return f"{the} is not in the sequence {_q(name)} (its enrollment is {enrollment.status})"
        case FinishedSequence(arg=name):
            return f"{the} {_pick(holds, 'finished', 'has not finished')} the sequence {_q(name)}"
        case ReachedStep(arg=ref):
            verb = _pick(holds, "reached", "has not reached")
            return f"{the} {verb} step {_q(ref.step)} of the sequence {_q(ref.sequence)}"
        case OpenedEmail(arg=ref):
            return f"{the} {_pick(holds, 'opened', 'has not opened')} {_email_words(ref)}"
        case ClickedLink(arg=name):
            return f"{the} {_pick(holds, 'clicked', 'has not clicked')} the link {_q(name)}"
        case ClickedSplitLink(arg=name):
            return f"{the} {_pick(holds, 'clicked', 'has not clicked')} the split link {_q(name)}"
        case VisitedPage(arg=name):
            return f"{the} {_pick(holds, 'visited', 'has not visited')} the page {_q(name)}"
        case BoughtProduct(arg=name):
            return f"{the} bought {_q(name)}" if holds else f"no purchase of {_q(name)}"
        case RefundedProduct(arg=name):
            return f"{the} was refunded for {_q(name)}" if holds else f"no refund of {_q(name)}"
        case PartiallyRefundedProduct(arg=name):
            return (
                f"{the} was partly refunded for {_q(name)}" if holds else f"no partial refund of {_q(name)}"
            )
        case CanceledSubscription(arg=name):
            if holds:
                return f"{the} canceled the subscription to {_q(name)}"
            return f"no canceled subscription to {_q(name)}"
        case ActiveSubscription(arg=name):
            if holds:
                return f"{the} has an active subscription to {_q(name)}"
            if _subscription_state(contact, name) == "never":
                return f"no purchase of {_q(name)}, so no active subscription"
            return f"the subscription to {_q(name)} was canceled after its latest purchase"
        case PlayedVideo(arg=name):
            return f"{the} {_pick(holds, 'played', 'has not played')} the video {_q(name)}"
        case CompletedVideo(arg=name):
            return f"{the} {_pick(holds, 'watched', 'has not watched')} the video {_q(name)} to the end"
        case Score(arg=test):
            return f"{the}'s score is {contact.score}, {_compared(test.op, holds, _text(test.value))}"
        case HasMembership(arg=ref):
            at_level = f" at level {_q(ref.level)}" if ref.level is not None else ""
            verb = _pick(holds, "has", "does not have")
            return f"{the} {verb} the membership {_q(ref.membership)}{at_level}"
        case CompletedLevel(arg=ref):
            verb = _pick(holds, "completed", "has not completed")
            return f"{the} {verb} level {_q(ref.level)} of the membership {_q(ref.membership)}"
        case WebinarRegistered(arg=name):
            return f"{the} {_pick(holds, 'registered', 'has not registered')} for the webinar {_q(name)}"
        case WebinarAttended(arg=name):
            return f"{the} {_pick(holds, 'attended', 'has not attended')} the webinar {_q(name)}"
        case WebinarMissed(arg=name):
            return f"{the} {_pick(holds, 'missed', 'has not missed')} the webinar {_q(name)}"
        case WebinarWatchedFully(arg=name):
            verb = _pick(holds, "watched", "has not watched")
            return f"{the} {verb} the webinar {_q(name)} to the end"
        case WebinarLeftEarly(arg=name):
            return f"{the} {_pick(holds, 'left', 'has not left')} the webinar {_q(name)} early"
        case CalendarActive(arg=name):
            return f"{_pick(holds, f'{the} has an', 'no')} active booking on the calendar {_q(name)}"
        case CalendarCompleted(arg=name):
            return f"{_pick(holds, f'{the} has a', 'no')} completed booking on the calendar {_q(name)}"
        case CalendarCanceled(arg=name):
            return f"{_pick(holds, f'{the} has a', 'no')} canceled booking on the calendar {_q(name)}"
        case CompletedSurvey(arg=name):
            return f"{the} {_pick(holds, 'completed', 'has not completed')} the survey {_q(name)}"
        case SurveyAnswer(arg=test):
            choices = _survey_answer(contact, test)
            where = f"{_q(test.question)} in the survey {_q(test.survey)}"
            if not choices:
                return f"{the} has no answer to {where}"
            op, wanted = test.test
            return f"the answer to {where} is {_shown(choices)}, {_compared(op, holds, _q(wanted))}"
        case SurveyScore(arg=test):
            score = _survey_score(contact, test.survey)
            if score is None:
                return f"{the} has no score in the survey {_q(test.survey)}"
            compared = _compared(test.op, holds, _text(test.value))
            return f"{the}'s score in the survey {_q(test.survey)} is {_text(score)}, {compared}"
        case IsAffiliate(arg=which):
            return _describe_partner(contact, "affiliate.joined", "an affiliate", which)
        case IsJvBroker(arg=which):
            return _describe_partner(contact, "jv_broker.joined", "a JV broker", which)
        case Engagement(arg=test):
            count = _recent_engagement(contact, now)
            level = engagement_level(contact, now)
            times = "open or click" if count == 1 else "opens and clicks"
            return (
                f"{the}'s engagement is {level} ({count} {times} in the last 90 days), "
                f"{_compared(test.op, holds, test.value, level=True)}"
            )
        case _:
            _unhandled(condition)


def _describe_field(test: FieldTest, actual: object, holds: bool) -> str:
    name = f"field {_q(test.key)}"
    if test.op == "exists":
        return f"{name} is set to {_shown(actual)}" if holds else f"{name} is empty"
    return f"{name} is {_shown(actual)}, {_compared(test.op, holds, _shown(test.value))}"


def _describe_partner(contact: ContactView, kind: str, role: str, which: bool | str) -> str:
    if isinstance(which, str):
        is_one = bool(contact.facts_of(kind, which))
        return f"the contact is {_pick(is_one, '', 'not ')}{role} for {_q(which)}"
    is_one = bool(contact.facts_of(kind))
    return f"the contact is {_pick(is_one, '', 'not ')}{role}"


def _email_words(ref: EmailRef) -> str:
    if ref.broadcast is not None:
        return f"the broadcast {_q(ref.broadcast)}"
    if ref.step is not None:
        return f"the email of step {_q(ref.step)} of the sequence {_q(ref.sequence)}"
    if ref.sequence is not None:
        return f"any email of the sequence {_q(ref.sequence)}"
    return "any email"
