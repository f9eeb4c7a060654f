"""`dripflow contacts clean-up`: remove blacklisted or long-inactive contacts, reporting first (L5).

Without ``--apply`` it only reports what it would delete and what it keeps; with it, it reports the
same and then deletes. ``--review FILE`` writes every judged contact as CSV, for a person to read
before applying.
"""

from __future__ import annotations

import csv
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.console import Console

from dripflow.cli.options import DatabaseOption, WorkspaceOption
from dripflow.cli.store import open_store, resolve_workspace
from dripflow.core.cleanup import Candidate, CleanupRequest, Verdict
from dripflow.core.clock import SystemClock
from dripflow.core.errors import UserError
from dripflow.core.timing import parse_duration
from dripflow.csvio.contacts_export import neutralize
from dripflow.engine.removal import CleanupReport, OnVerdict, clean_up

__all__ = ["register"]

_out = Console(soft_wrap=True, highlight=False)
_REVIEW_COLUMNS = ("id", "email", "lead_status", "reason", "last_activity", "verdict", "why")


def register(app: typer.Typer) -> None:
    app.command("clean-up")(clean_up_command)


def clean_up_command(
    blacklisted: Annotated[
        bool, typer.Option("--blacklisted", help="Target blacklisted contacts (hard bounce, complaint …).")
    ] = False,
    inactive_for: Annotated[
        str | None,
        typer.Option(
            "--inactive-for",
            metavar="DURATION",
            help="Target inactive contacts (on no list, in no sequence) with no activity for this "
            "long, e.g. 180d.",
        ),
    ] = None,
    include_buyers: Annotated[
        bool, typer.Option("--include-buyers", help="Also delete targets who bought something.")
    ] = False,
    include_members: Annotated[
        bool, typer.Option("--include-members", help="Also delete targets who were given a membership.")
    ] = False,
    apply: Annotated[
        bool, typer.Option("--apply", help="Delete. Without it, only report what would be deleted.")
    ] = False,
    review: Annotated[
        Path | None, typer.Option("--review", help="Write every judged contact, and the verdict, as CSV.")
    ] = None,
    database: DatabaseOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Remove blacklisted or long-inactive contacts (SPEC L5). Buyers and members are kept unless
    --include-buyers / --include-members say otherwise. Reports before it deletes."""
    clock = SystemClock()
    request = CleanupRequest(
        blacklisted=blacklisted,
        inactive_since=clock.now() - _duration(inactive_for) if inactive_for is not None else None,
        include_buyers=include_buyers,
        include_members=include_members,
    )
    if not request.asks_anything:
        raise UserError("say what to clean up: --blacklisted, --inactive-for DURATION (e.g. 180d), or both")
    engine = open_store(database)
    workspace_id = resolve_workspace(engine, workspace)
    if review is not None:
        review.parent.mkdir(parents=True, exist_ok=True)
    try:
        sink = review.open("w", newline="", encoding="utf-8") if review is not None else nullcontext(None)
    except OSError as exc:
        raise UserError(f"cannot write {review}: {exc.strerror}") from None
    with sink as out:
        plan = clean_up(engine, workspace_id, request, clock, apply=False, on_verdict=_reviewer(out))
    _print_plan(workspace_id, request, plan, inactive_for)
    if review is not None:
        _out.print(f"every judged contact is in {review}", markup=False)
    if not apply:
        if plan.to_delete:
            _out.print("nothing was deleted; run again with --apply to delete them", markup=False)
        return
    done = clean_up(engine, workspace_id, request, clock, apply=True)
    _out.print(f"deleted {done.deleted} contact(s)", markup=False)


def _duration(text: str) -> timedelta:
    try:
        duration = parse_duration(text)
    except ValueError as exc:
        raise UserError(f"--inactive-for: {exc}") from None
    if duration <= timedelta(0):
        raise UserError("--inactive-for must be longer than nothing, e.g. 180d")
    return duration


def _reviewer(out: TextIO | None) -> OnVerdict | None:
    if out is None:
        return None
    writer = csv.writer(out)
    writer.writerow(_REVIEW_COLUMNS)

    def write(candidate: Candidate, verdict: Verdict) -> None:
        why = verdict.target if verdict.kept_for is None else f"{verdict.target}, kept: {verdict.kept_for}"
        writer.writerow(
            (
                candidate.id,
                neutralize(candidate.email or ""),
                candidate.lead_status,
                candidate.reason or "",
                candidate.last_activity.isoformat(),
                "delete" if verdict.delete else "keep",
                why,
            )
        )

    return write


def _print_plan(
    workspace_id: str, request: CleanupRequest, plan: CleanupReport, inactive_for: str | None
) -> None:
    asked = []
    if request.blacklisted:
        asked.append("blacklisted contacts")
    if request.inactive_since is not None:
        asked.append(
            f"inactive contacts with no activity for {inactive_for}"
            f" (since {request.inactive_since:%Y-%m-%d %H:%M} UTC)"
        )
    _out.print(f"clean-up of workspace {workspace_id}: {' and '.join(asked)}", markup=False)
    _out.print(f"  to delete: {plan.to_delete}", markup=False)
    for why, count in sorted(plan.targets.items()):
        _out.print(f"    {count} {why}", markup=False)
    flags = {"purchase": "--include-buyers", "membership": "--include-members"}
    for protection, count in sorted(plan.kept.items()):
        _out.print(
            f"  kept: {count} with a {protection} (L5; {flags[protection]} deletes them too)", markup=False
        )
    if plan.suppressed:
        _out.print(
            f"  {plan.suppressed} of them blacklisted or unsubscribed: their addresses stay suppressed, "
            "so if one comes back (an import, a form) it is blacklisted or unsubscribed again",
            markup=False,
        )
