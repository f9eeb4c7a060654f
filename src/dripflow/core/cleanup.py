"""Which contacts a list clean-up removes, and why (SPEC L5): a pure judgement of one contact.

L5: "A clean-up removes blacklisted or long-inactive contacts on request, but never a contact with
a purchase or a membership unless told so explicitly; it reports what it would do before doing it."

The store finds the candidates (blacklisted ones, and inactive ones created before the cut-off)
with what this judgement needs; :func:`judge` decides. Decisions the SPEC leaves open, written
down in docs/decisions.md ("List clean-up"):

* **Long-inactive** is lead status ``inactive`` (L1: on no list and in no open enrollment) *and*
  no activity since the cut-off: the contact was created before it, and has no fact (purchase,
  open, click, page visit …) and no logged event at or after it.
* **A purchase** is any ``product.purchased`` fact, refunded or not; **a membership** is any
  ``membership.granted`` fact, revoked or not. Both err on the side of keeping: a former buyer
  or member is still somebody the user has a relationship with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

__all__ = ["Candidate", "CleanupRequest", "Verdict", "judge"]

Protection = Literal["purchase", "membership"]


@dataclass(frozen=True)
class CleanupRequest:
    """What to remove: blacklisted contacts, contacts idle since ``inactive_since``, or both."""

    blacklisted: bool = False
    inactive_since: datetime | None = None
    include_buyers: bool = False
    include_members: bool = False

    @property
    def asks_anything(self) -> bool:
        return self.blacklisted or self.inactive_since is not None


@dataclass(frozen=True)
class Candidate:
    """A contact the store found, with its latest activity and what protects it."""

    id: int
    email: str | None
    lead_status: str
    reason: str | None
    """``lead_status_reason``: why a blacklisted contact is (hard_bounce, complaint, manual …)."""
    unsubscribed: bool
    last_activity: datetime
    bought: bool
    member: bool


@dataclass(frozen=True)
class Verdict:
    """``target``: why the contact is a clean-up target (``blacklisted`` / ``inactive``);
    ``kept_for``: the protection that keeps it anyway, None when it is to be deleted."""

    target: Literal["blacklisted", "inactive"]
    kept_for: Protection | None

    @property
    def delete(self) -> bool:
        return self.kept_for is None


def judge(candidate: Candidate, request: CleanupRequest) -> Verdict | None:
    """The clean-up's decision on one contact; None when it is not a target at all."""
    target: Literal["blacklisted", "inactive"]
    if request.blacklisted and candidate.lead_status == "blacklisted":
        target = "blacklisted"
    elif (
        request.inactive_since is not None
        and candidate.lead_status == "inactive"
        and candidate.last_activity < request.inactive_since
    ):
        target = "inactive"
    else:
        return None
    # L5: never a buyer or a member unless told so explicitly.
    if candidate.bought and not request.include_buyers:
        return Verdict(target, "purchase")
    if candidate.member and not request.include_members:
        return Verdict(target, "membership")
    return Verdict(target, None)
