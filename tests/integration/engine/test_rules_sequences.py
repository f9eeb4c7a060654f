"""SPEC §4 (T2, T5, T9) and §5 (S3, S5, S6, S7, S13) end to end through the engine, on both stores.

Each test drives the real ingestion, automations and scheduler on a virtual clock (``run_sim``)
and reads what a user would read: the X3 log (``message.sent``, ``enrollment.status``,
``not_enrolled``, ``step.skipped``). Workspaces are in the account zone America/New_York
(UTC-5 in winter, UTC-4 in summer) with ``default_send_time`` 10:00 unless a test says otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dripflow.core.validate import load_workspace_text
from dripflow.simulate import InputEvent, parse_at, simulate
from tests.integration.engine.conftest import Log, RunSim

Seq = dict[str, Any]


def _ws(*sequences: Seq, ruleset: dict[str, Any] | None = None, **extra: Any) -> str:
    """A small workspace holding ``sequences``; ``extra`` adds top-level sections, and
    ``step_slots``/``default_send_time``/``timezone`` go into ``workspace:``."""
    settings = {
        "id": "acme",
        "name": "Acme",
        "timezone": extra.pop("timezone", "America/New_York"),
        "default_send_time": extra.pop("default_send_time", "10:00"),
        "physical_address": "1 Main St",
    }
    if "step_slots" in extra:
        settings["step_slots"] = extra.pop("step_slots")
    document: dict[str, Any] = {
        "workspace": settings,
        "ruleset": ruleset or {},
        "mailboxes": [{"id": "ann", "from": "Ann <ann@acme.test>", "default": True}],
        "tags": ["vip", "done"],
        "templates": {"t": {"subject": "Hi", "text": "Hello"}},
        "sequences": list(sequences),
        **extra,
    }
    return yaml.safe_dump(document, sort_keys=False)


def _email(step_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "email", "template": "t", **fields}


def _enroll(at: str, contact: str, sequence: str) -> dict[str, Any]:
    return {"at": at, "type": "admin.enroll", "contact": contact, "sequence": sequence}


def _update(at: str, sequence: Seq) -> dict[str, Any]:
    return {"at": at, "type": "admin.sequence.update", "sequence": sequence}


def _sent(log: Log, contact: str, sequence: str | None = None) -> list[tuple[str, str]]:
    match = {"contact": contact} if sequence is None else {"contact": contact, "sequence": sequence}
    return [(r["at"], r["step"]) for r in log.sent(**match)]


# -- T2 · daylight saving ------------------------------------------------------------------------

DST = (
    {
        "id": "night",
        "steps": [
            _email("first", at="02:30"),
            _email("second", after={"days": 1}, at="02:30"),
        ],
    },
    {"id": "late", "steps": [_email("only", at="01:30")]},
)


def test_T2_a_wall_time_skipped_by_spring_forward_fires_at_the_first_valid_minute_after(
    run_sim: RunSim,
) -> None:
    """T2: on 2026-03-08 New York jumps from 02:00 EST to 03:00 EDT, so 02:30 does not exist that
    day: a step `at: "02:30"` fires at 03:00 EDT (07:00Z); the next day's 02:30 is normal again."""
    log = run_sim(
        _ws(*DST),
        [
            _enroll("2026-03-07T17:00:00Z", "eve@x.test", "night"),  # Saturday 12:00 EST
            _enroll("2026-03-08T06:45:00Z", "early@x.test", "night"),  # 01:45 EST, before the jump
            _enroll("2026-03-08T07:10:00Z", "after@x.test", "night"),  # 03:10 EDT, 03:00 is past
        ],
        "2026-03-12T00:00:00Z",
    )
    assert _sent(log, "eve@x.test") == [
        ("2026-03-08T07:00:00Z", "first"),  # 02:30 does not exist → 03:00 EDT
        ("2026-03-09T06:30:00Z", "second"),  # 02:30 EDT the next day
    ]
    assert _sent(log, "early@x.test") == [
        ("2026-03-08T07:00:00Z", "first"),
        ("2026-03-09T06:30:00Z", "second"),
    ]
    assert _sent(log, "after@x.test") == [
        ("2026-03-09T06:30:00Z", "first"),
        ("2026-03-10T06:30:00Z", "second"),
    ]


def test_T2_an_ambiguous_wall_time_at_fall_back_fires_once_at_its_first_occurrence(run_sim: RunSim) -> None:
    """T2: on 2026-11-01 New York falls back from 02:00 EDT to 01:00 EST, so 01:30 happens twice
    (05:30Z EDT, then 06:30Z EST). A step `at: "01:30"` fires once, at 05:30Z; a contact arriving
    after that first occurrence (even in the repeated hour, at 01:10 EST) waits for the next day's
    01:30, not for the repeat. 02:30 exists once that night (07:30Z EST)."""
    log = run_sim(
        _ws(*DST),
        [
            _enroll("2026-10-31T16:00:00Z", "ann@x.test", "late"),  # Saturday 12:00 EDT
            _enroll("2026-10-31T16:00:00Z", "ann@x.test", "night"),
            _enroll("2026-11-01T05:45:00Z", "bob@x.test", "late"),  # 01:45 EDT, first pass
            _enroll("2026-11-01T06:10:00Z", "cat@x.test", "late"),  # 01:10 EST, second pass
        ],
        "2026-11-04T00:00:00Z",
    )
    assert _sent(log, "ann@x.test", "late") == [("2026-11-01T05:30:00Z", "only")]
    assert _sent(log, "bob@x.test") == [("2026-11-02T06:30:00Z", "only")]
    assert _sent(log, "cat@x.test") == [("2026-11-02T06:30:00Z", "only")]
    assert _sent(log, "ann@x.test", "night") == [
        ("2026-11-01T07:30:00Z", "first"),  # 02:30 EST, after the clocks went back
        ("2026-11-02T07:30:00Z", "second"),
    ]


# -- T5 · step slots -----------------------------------------------------------------------------


def test_T5_step_slots_30_round_hour_and_minute_delays_up_to_the_next_00_or_30(run_sim: RunSim) -> None:
    """T5: with `step_slots: 30` an hour/minute delay fires at the first :00 or :30 at or after the
    due minute (due 15:01 → 15:30; due 16:15 → 16:30; due 16:00 → 16:00). `after: 0` still fires at
    once and whole-day delays with `at` keep their HH:MM (T3/T4)."""
    sequence = {
        "id": "slots",
        "steps": [
            _email("now"),  # after 0: at once, 14:01
            _email("hour", after={"hours": 1}),  # due 15:01 → 15:30
            _email("half", after={"minutes": 30}),  # due 16:00, on a slot → 16:00
            _email("quarter", after={"minutes": 15}),  # due 16:15 → 16:30
            _email("mixed", after={"hours": 1, "minutes": 1}),  # due 17:31 → 18:00
            _email("day", after={"days": 1}, at="09:15"),  # next day 09:15 EDT, not slotted
        ],
    }
    log = run_sim(
        _ws(sequence, step_slots=30),
        [_enroll("2026-06-15T14:01:00Z", "ann@x.test", "slots")],  # 10:01 EDT
        "2026-06-20T00:00:00Z",
    )
    assert _sent(log, "ann@x.test") == [
        ("2026-06-15T14:01:00Z", "now"),
        ("2026-06-15T15:30:00Z", "hour"),
        ("2026-06-15T16:00:00Z", "half"),
        ("2026-06-15T16:30:00Z", "quarter"),
        ("2026-06-15T18:00:00Z", "mixed"),
        ("2026-06-16T13:15:00Z", "day"),
    ]


def test_T5_without_step_slots_minute_delays_fire_exactly(run_sim: RunSim) -> None:
    """T5 (control): `step_slots: 0` (the default) fires hour/minute delays at the exact minute."""
    sequence = {
        "id": "slots",
        "steps": [
            _email("now"),
            _email("hour", after={"hours": 1}),
            _email("quarter", after={"minutes": 15}),
        ],
    }
    log = run_sim(
        _ws(sequence),
        [_enroll("2026-06-15T14:01:00Z", "ann@x.test", "slots")],
        "2026-06-20T00:00:00Z",
    )
    assert _sent(log, "ann@x.test") == [
        ("2026-06-15T14:01:00Z", "now"),
        ("2026-06-15T15:01:00Z", "hour"),
        ("2026-06-15T15:16:00Z", "quarter"),
    ]


# -- T9 · steps appended to a sequence whose contacts have finished -------------------------------


def _finished_sequence(sequence_id: str) -> Seq:
    return {"id": sequence_id, "steps": [_email("first")]}


def _appended(sequence_id: str, *steps: dict[str, Any]) -> Seq:
    return {"id": sequence_id, "steps": [_email("first"), *steps]}


def test_T9_appended_step_reaches_finished_contacts_the_four_worked_examples(run_sim: RunSim) -> None:
    """T9 worked examples (account zone; last step fired 16:00, new step appended at 18:00 on
    Wednesday 2026-06-10, EDT): after 1 h → tomorrow 10:00; after 3 h → today 19:00;
    `at: "17:30"` → tomorrow 17:30; `at: "18:30"` → today 18:30."""
    ids = ("one-hour", "three-hours", "at-1730", "at-1830")
    enrolls = [_enroll("2026-06-10T20:00:00Z", f"{sid}@x.test", sid) for sid in ids]  # 16:00 EDT
    updates = [
        _update("2026-06-10T22:00:00Z", _appended("one-hour", _email("new", after={"hours": 1}))),
        _update("2026-06-10T22:00:00Z", _appended("three-hours", _email("new", after={"hours": 3}))),
        _update("2026-06-10T22:00:00Z", _appended("at-1730", _email("new", at="17:30"))),
        _update("2026-06-10T22:00:00Z", _appended("at-1830", _email("new", at="18:30"))),
    ]
    log = run_sim(
        _ws(*(_finished_sequence(sid) for sid in ids)),
        enrolls + updates,
        "2026-06-14T00:00:00Z",
    )
    expected_new = {
        "one-hour": "2026-06-11T14:00:00Z",  # tomorrow 10:00 EDT
        "three-hours": "2026-06-10T23:00:00Z",  # today 19:00 EDT
        "at-1730": "2026-06-11T21:30:00Z",  # tomorrow 17:30 EDT
        "at-1830": "2026-06-10T22:30:00Z",  # today 18:30 EDT
    }
    for sid, at in expected_new.items():
        contact = f"{sid}@x.test"
        assert _sent(log, contact) == [("2026-06-10T20:00:00Z", "first"), (at, "new")], sid
        # finished after the first step, back in progress when the step is appended, finished again
        assert log.statuses(contact, sid) == [
            ("active", None),
            ("finished", None),
            ("active", None),
            ("finished", None),
        ], sid
        finished = log.of("enrollment.status", contact=contact, sequence=sid, status="finished")
        assert [r["at"] for r in finished] == ["2026-06-10T20:00:00Z", at], sid


def test_T9_later_appended_steps_follow_normally_from_the_first_new_one(run_sim: RunSim) -> None:
    """T9: "later new steps follow normally": only the first new step gets the catch-up time
    (tomorrow 10:00); the ones after it are timed from when it fired (T3/T4), not pushed again."""
    sequence = _appended(
        "grow",
        _email("a", after={"hours": 1}),  # 17:00 is past at 18:00 → tomorrow 10:00
        _email("b", after={"hours": 2}),  # 2 h after a → tomorrow 12:00
        _email("c", after={"days": 1}),  # a whole day after b → the day after, 10:00
    )
    log = run_sim(
        _ws(_finished_sequence("grow")),
        [
            _enroll("2026-06-10T20:00:00Z", "ann@x.test", "grow"),
            _update("2026-06-10T22:00:00Z", sequence),
        ],
        "2026-06-20T00:00:00Z",
    )
    assert _sent(log, "ann@x.test") == [
        ("2026-06-10T20:00:00Z", "first"),
        ("2026-06-11T14:00:00Z", "a"),
        ("2026-06-11T16:00:00Z", "b"),
        ("2026-06-12T14:00:00Z", "c"),
    ]
    assert log.enrollment("ann@x.test", "grow")["status"] == "finished"


def test_T9_a_second_append_reaches_contacts_that_finished_the_first_one(run_sim: RunSim) -> None:
    """T9 again: a step appended later still reaches contacts who finished the earlier append; an
    appended step whose computed time is still ahead keeps it (after 3 h from 16:00 → 19:00)."""
    log = run_sim(
        _ws(_finished_sequence("grow-twice")),
        [
            _enroll("2026-06-10T20:00:00Z", "ann@x.test", "grow-twice"),  # first 16:00 EDT
            _update("2026-06-10T22:00:00Z", _appended("grow-twice", _email("a", after={"hours": 3}))),
            # a fired 19:00 EDT (23:00Z); appended 20:00 EDT with `at: "20:30"` → today 20:30
            _update(
                "2026-06-11T00:00:00Z",
                _appended("grow-twice", _email("a", after={"hours": 3}), _email("b", at="20:30")),
            ),
        ],
        "2026-06-20T00:00:00Z",
    )
    assert _sent(log, "ann@x.test") == [
        ("2026-06-10T20:00:00Z", "first"),
        ("2026-06-10T23:00:00Z", "a"),
        ("2026-06-11T00:30:00Z", "b"),
    ]


# -- S3 · multi_sequence: deny --------------------------------------------------------------------


def test_S3_deny_refuses_a_contact_with_an_unfinished_enrollment_elsewhere(run_sim: RunSim) -> None:
    """S3: with `multi_sequence: deny` a contact active in another sequence is not enrolled
    (`in_other_sequence`); a contact whose other enrollment is `finished` (open, but finished) is;
    and once the first sequence finishes, the refused contact may enter."""
    sequences = (
        {"id": "long", "steps": [_email("l1"), _email("l2", after={"days": 1})]},
        {"id": "short", "steps": [_email("s1")]},
        {"id": "promo", "steps": [_email("p1")]},
    )
    log = run_sim(
        _ws(*sequences, ruleset={"multi_sequence": "deny"}),
        [
            _enroll("2026-06-10T14:00:00Z", "busy@x.test", "long"),
            _enroll("2026-06-10T14:00:00Z", "done@x.test", "short"),
            _enroll("2026-06-10T15:00:00Z", "busy@x.test", "promo"),
            _enroll("2026-06-10T15:00:00Z", "done@x.test", "promo"),
            _enroll("2026-06-11T15:00:00Z", "busy@x.test", "promo"),  # long finished at 14:00Z
        ],
        "2026-06-15T00:00:00Z",
    )
    refused = [(r["at"], r["contact"], r["reason"]) for r in log.of("not_enrolled", sequence="promo")]
    assert refused == [("2026-06-10T15:00:00Z", "busy@x.test", "in_other_sequence")]
    assert log.enrollment("done@x.test", "short")["status"] == "finished"
    assert _sent(log, "done@x.test", "promo") == [("2026-06-10T15:00:00Z", "p1")]
    assert _sent(log, "busy@x.test") == [
        ("2026-06-10T14:00:00Z", "l1"),
        ("2026-06-11T14:00:00Z", "l2"),
        ("2026-06-11T15:00:00Z", "p1"),
    ]


def test_S3_allow_is_the_default(run_sim: RunSim) -> None:
    """S3 (control): without `multi_sequence: deny` the same contact enters both sequences."""
    sequences = (
        {"id": "long", "steps": [_email("l1"), _email("l2", after={"days": 1})]},
        {"id": "promo", "steps": [_email("p1")]},
    )
    log = run_sim(
        _ws(*sequences),
        [
            _enroll("2026-06-10T14:00:00Z", "busy@x.test", "long"),
            _enroll("2026-06-10T15:00:00Z", "busy@x.test", "promo"),
        ],
        "2026-06-15T00:00:00Z",
    )
    assert log.of("not_enrolled") == []
    assert _sent(log, "busy@x.test", "promo") == [("2026-06-10T15:00:00Z", "p1")]


# -- S5 · pausing and resuming a sequence ---------------------------------------------------------


def _three_steps(sequence_id: str, resume: str, **fields: Any) -> Seq:
    return {
        "id": sequence_id,
        "resume": resume,
        **fields,
        "steps": [_email("one"), _email("two", after={"hours": 4}), _email("three", after={"hours": 4})],
    }


def test_S5_paused_sequence_executes_nothing_and_continue_fires_overdue_steps_at_once(
    run_sim: RunSim,
) -> None:
    """S5: while `keep` is paused (Mon 15:00Z → Wed 20:00Z) nothing is sent, its enrollments show
    `paused` (one entering during the pause too); on resume with `continue` the steps that fell due
    during the pause fire at once, and the next ones are timed from then."""
    log = run_sim(
        _ws(_three_steps("keep", "continue")),
        [
            _enroll("2026-01-05T14:00:00Z", "k@x.test", "keep"),  # Monday; `two` due 18:00Z
            {"at": "2026-01-05T15:00:00Z", "type": "admin.sequence.pause", "sequence": "keep"},
            _enroll("2026-01-06T15:00:00Z", "n@x.test", "keep"),  # enters while paused
            {"at": "2026-01-07T20:00:00Z", "type": "admin.sequence.resume", "sequence": "keep"},
        ],
        "2026-01-10T00:00:00Z",
    )
    assert _sent(log, "k@x.test") == [
        ("2026-01-05T14:00:00Z", "one"),
        ("2026-01-07T20:00:00Z", "two"),  # due Mon 18:00Z, overdue at resume → at once
        ("2026-01-08T00:00:00Z", "three"),
    ]
    assert _sent(log, "n@x.test") == [
        ("2026-01-07T20:00:00Z", "one"),
        ("2026-01-08T00:00:00Z", "two"),
        ("2026-01-08T04:00:00Z", "three"),
    ]
    during = [r for r in log.sent() if "2026-01-05T15:00:00Z" <= r["at"] < "2026-01-07T20:00:00Z"]
    assert during == []
    paused = log.of("enrollment.status", sequence="keep", status="paused")
    assert [(r["at"], r["contact"]) for r in paused] == [
        ("2026-01-05T15:00:00Z", "k@x.test"),
        ("2026-01-06T15:00:00Z", "n@x.test"),
    ]
    assert log.statuses("k@x.test", "keep") == [
        ("active", None),
        ("paused", None),
        ("active", None),
        ("finished", None),
    ]
    assert log.statuses("n@x.test", "keep") == [("paused", None), ("active", None), ("finished", None)]


def test_S5_a_live_edit_to_status_paused_pauses_its_enrollments_and_back_to_active_resumes_them(
    run_sim: RunSim,
) -> None:
    """S5 through a live edit (`admin.sequence.update`, as `dripflow apply` and `PUT /v1/sequences`
    do): setting `status: paused` pauses the running enrollments where they stand, exactly as
    `admin.sequence.pause` does, and `status: active` resumes them with the `continue` rule."""
    log = run_sim(
        _ws(_three_steps("keep", "continue")),
        [
            _enroll("2026-01-05T14:00:00Z", "k@x.test", "keep"),  # `two` due 18:00Z
            _update("2026-01-05T15:00:00Z", _three_steps("keep", "continue", status="paused")),
            _update("2026-01-07T20:00:00Z", _three_steps("keep", "continue", status="active")),
        ],
        "2026-01-10T00:00:00Z",
    )
    assert _sent(log, "k@x.test") == [
        ("2026-01-05T14:00:00Z", "one"),
        ("2026-01-07T20:00:00Z", "two"),  # overdue at resume → at once
        ("2026-01-08T00:00:00Z", "three"),
    ]
    assert log.statuses("k@x.test", "keep") == [
        ("active", None),
        ("paused", None),
        ("active", None),
        ("finished", None),
    ]


def test_S5_continue_keeps_a_due_time_and_restart_restarts_the_delay_from_the_resume(
    run_sim: RunSim,
) -> None:
    """S5: both sequences are paused 15:00Z–16:00Z while `two` (after 4 h) is due at 18:00Z.
    `continue` keeps 18:00Z; `restart` starts the 4 h again from the resume: 20:00Z. A whole-day
    step restarted at Wed 15:00 EST fires at `default_send_time` the next day (T4)."""
    by_days = {
        "id": "redo-days",
        "resume": "restart",
        "steps": [_email("one"), _email("two", after={"days": 1})],
    }
    commands = [
        {"at": at, "type": f"admin.sequence.{verb}", "sequence": sid}
        for at, verb, sid in [
            ("2026-01-05T15:00:00Z", "pause", "keep"),
            ("2026-01-05T15:00:00Z", "pause", "redo"),
            ("2026-01-05T15:00:00Z", "pause", "redo-days"),
            ("2026-01-05T16:00:00Z", "resume", "keep"),
            ("2026-01-05T16:00:00Z", "resume", "redo"),
            ("2026-01-07T20:00:00Z", "resume", "redo-days"),  # Wed 15:00 EST
        ]
    ]
    log = run_sim(
        _ws(_three_steps("keep", "continue"), _three_steps("redo", "restart"), by_days),
        [
            _enroll("2026-01-05T14:00:00Z", "k@x.test", "keep"),
            _enroll("2026-01-05T14:00:00Z", "r@x.test", "redo"),
            _enroll("2026-01-05T14:00:00Z", "d@x.test", "redo-days"),  # `two` due Tue 10:00 EST
            *commands,
        ],
        "2026-01-10T00:00:00Z",
    )
    assert _sent(log, "k@x.test") == [
        ("2026-01-05T14:00:00Z", "one"),
        ("2026-01-05T18:00:00Z", "two"),
        ("2026-01-05T22:00:00Z", "three"),
    ]
    assert _sent(log, "r@x.test") == [
        ("2026-01-05T14:00:00Z", "one"),
        ("2026-01-05T20:00:00Z", "two"),
        ("2026-01-06T00:00:00Z", "three"),
    ]
    assert _sent(log, "d@x.test") == [
        ("2026-01-05T14:00:00Z", "one"),
        ("2026-01-08T15:00:00Z", "two"),  # Thu 10:00 EST
    ]


def test_S5_an_overdue_step_on_resume_still_waits_for_the_send_schedule(run_sim: RunSim) -> None:
    """S5 with T6: resumed on Saturday, an overdue email is held (`queued`, `outside_schedule`)
    and goes out when the Mon–Fri 09:00–17:00 window opens."""
    office = {"id": "office", "timezone": "workspace", "days": ["mon", "tue", "wed", "thu", "fri"],
              "hours": ["09:00-17:00"]}  # fmt: skip
    log = run_sim(
        _ws(_three_steps("held", "continue", schedule="office"), schedules=[office]),
        [
            _enroll("2026-01-09T14:00:00Z", "h@x.test", "held"),  # Friday 09:00 EST
            {"at": "2026-01-09T15:00:00Z", "type": "admin.sequence.pause", "sequence": "held"},
            {"at": "2026-01-10T15:00:00Z", "type": "admin.sequence.resume", "sequence": "held"},  # Sat
        ],
        "2026-01-14T00:00:00Z",
    )
    assert _sent(log, "h@x.test") == [
        ("2026-01-09T14:00:00Z", "one"),
        ("2026-01-12T14:00:00Z", "two"),  # Monday 09:00 EST
        ("2026-01-12T18:00:00Z", "three"),
    ]
    queued = log.of("enrollment.status", contact="h@x.test", status="queued")
    assert [(r["at"], r["reason"]) for r in queued] == [("2026-01-10T15:00:00Z", "outside_schedule")]


# -- S6 · recipients ------------------------------------------------------------------------------


def test_S6_a_contact_not_matching_recipients_skips_that_step_and_goes_on(run_sim: RunSim) -> None:
    """S6: `recipients: {not: {has_tag: vip}}`; tagged vip when `two` falls due, the contact skips
    it (`step.skipped`, `recipients`) and goes on: `three` (after 1 h) is timed from the skip and
    sent once the tag is gone. A contact who never matches skips every step and finishes."""
    sequence = {
        "id": "nurture",
        "recipients": {"not": {"has_tag": "vip"}},
        "steps": [_email("one"), _email("two", after={"hours": 1}), _email("three", after={"hours": 1})],
    }
    log = run_sim(
        _ws(sequence),
        [
            {"at": "2026-06-10T13:00:00Z", "type": "tag.assigned", "contact": "vip@x.test", "tag": "vip"},
            _enroll("2026-06-10T14:00:00Z", "ann@x.test", "nurture"),
            _enroll("2026-06-10T14:00:00Z", "vip@x.test", "nurture"),
            {"at": "2026-06-10T14:30:00Z", "type": "tag.assigned", "contact": "ann@x.test", "tag": "vip"},
            {"at": "2026-06-10T15:30:00Z", "type": "tag.removed", "contact": "ann@x.test", "tag": "vip"},
        ],
        "2026-06-12T00:00:00Z",
    )
    assert _sent(log, "ann@x.test") == [
        ("2026-06-10T14:00:00Z", "one"),
        ("2026-06-10T16:00:00Z", "three"),
    ]
    skipped = log.of("step.skipped", contact="ann@x.test", sequence="nurture")
    assert [(r["at"], r["step"], r["reason"]) for r in skipped] == [
        ("2026-06-10T15:00:00Z", "two", "recipients")
    ]
    assert log.enrollment("ann@x.test", "nurture")["status"] == "finished"
    assert _sent(log, "vip@x.test") == []
    vip_skips = log.of("step.skipped", contact="vip@x.test", sequence="nurture")
    assert [(r["at"], r["step"], r["reason"]) for r in vip_skips] == [
        ("2026-06-10T14:00:00Z", "one", "recipients"),
        ("2026-06-10T15:00:00Z", "two", "recipients"),
        ("2026-06-10T16:00:00Z", "three", "recipients"),
    ]
    assert log.enrollment("vip@x.test", "nurture")["status"] == "finished"


# -- S7 · inactive steps and live edits -----------------------------------------------------------


def _abcd(sequence_id: str, *order: str) -> Seq:
    """Sequence ``sequence_id``: steps a (at once), then b, c, d two hours apart, in ``order``
    (``n``: 30 minutes). Each test edits its own sequence id, so that no test depends on what
    another left in the engine's in-process rules cache (see the `each_store` test below)."""
    steps = {
        "a": _email("a"),
        "b": _email("b", after={"hours": 2}),
        "c": _email("c", after={"hours": 2}),
        "d": _email("d", after={"hours": 2}),
        "n": _email("n", after={"minutes": 30}),
    }
    return {"id": sequence_id, "steps": [steps[step_id] for step_id in order]}


def test_S7_an_inactive_step_is_skipped_with_its_delay(run_sim: RunSim) -> None:
    """S7: `two` (`active: false`, after 5 days) is passed over together with its delay: `three`
    comes 2 h after `one`, not 5 days later, and `two` is never sent."""
    sequence = {
        "id": "gappy",
        "steps": [
            _email("one"),
            _email("two", active=False, after={"days": 5}),
            _email("three", after={"hours": 2}),
        ],
    }
    log = run_sim(
        _ws(sequence),
        [_enroll("2026-06-10T14:00:00Z", "ann@x.test", "gappy")],
        "2026-06-20T00:00:00Z",
    )
    assert _sent(log, "ann@x.test") == [
        ("2026-06-10T14:00:00Z", "one"),
        ("2026-06-10T16:00:00Z", "three"),
    ]
    assert log.enrollment("ann@x.test", "gappy")["status"] == "finished"


def test_S7_an_inserted_step_is_next_only_after_the_last_completed_step_and_fires_at_once_if_past(
    run_sim: RunSim,
) -> None:
    """S7: at 11:00Z step `n` (30 min) is inserted between `a` and `b`. `y` (last completed `a`,
    fired 10:00Z) gets `n` next, due 10:30Z, already past → at once; `b` then follows from `n`.
    `x` (already past `b`) is not moved back to `n`."""
    log = run_sim(
        _ws(_abcd("insert", "a", "b", "c", "d")),
        [
            _enroll("2026-06-10T08:00:00Z", "x@x.test", "insert"),
            _enroll("2026-06-10T10:00:00Z", "y@x.test", "insert"),
            _update("2026-06-10T11:00:00Z", _abcd("insert", "a", "n", "b", "c", "d")),
        ],
        "2026-06-12T00:00:00Z",
    )
    assert _sent(log, "x@x.test") == [
        ("2026-06-10T08:00:00Z", "a"),
        ("2026-06-10T10:00:00Z", "b"),
        ("2026-06-10T12:00:00Z", "c"),
        ("2026-06-10T14:00:00Z", "d"),
    ]
    assert _sent(log, "y@x.test") == [
        ("2026-06-10T10:00:00Z", "a"),
        ("2026-06-10T11:00:00Z", "n"),
        ("2026-06-10T13:00:00Z", "b"),
        ("2026-06-10T15:00:00Z", "c"),
        ("2026-06-10T17:00:00Z", "d"),
    ]


def test_S7_removing_steps_never_resends_nor_moves_anyone_back(run_sim: RunSim) -> None:
    """S7: at 11:00Z `b` is removed. `x` had completed `b` (10:00Z): its next step is `c`, timed
    from when `b` fired (12:00Z), and nothing is sent again. `y` was waiting for `b`: it goes to
    `c`, timed from when `a` fired (10:00Z + 2 h)."""
    log = run_sim(
        _ws(_abcd("remove", "a", "b", "c", "d")),
        [
            _enroll("2026-06-10T08:00:00Z", "x@x.test", "remove"),
            _enroll("2026-06-10T10:00:00Z", "y@x.test", "remove"),
            _update("2026-06-10T11:00:00Z", _abcd("remove", "a", "c", "d")),
        ],
        "2026-06-12T00:00:00Z",
    )
    assert _sent(log, "x@x.test") == [
        ("2026-06-10T08:00:00Z", "a"),
        ("2026-06-10T10:00:00Z", "b"),
        ("2026-06-10T12:00:00Z", "c"),
        ("2026-06-10T14:00:00Z", "d"),
    ]
    assert _sent(log, "y@x.test") == [
        ("2026-06-10T10:00:00Z", "a"),
        ("2026-06-10T12:00:00Z", "c"),
        ("2026-06-10T14:00:00Z", "d"),
    ]


def test_S7_reordering_goes_on_from_the_last_completed_step_in_the_new_order(run_sim: RunSim) -> None:
    """S7: at 11:00Z the order becomes a, c, b, d. `x` (completed a, b) goes on with what follows
    `b` now, `d`, timed from `b` (12:00Z); `c`, now behind it, is not sent. `y` (completed a) goes
    on with `c` (12:00Z), then `b`, then `d`."""
    log = run_sim(
        _ws(_abcd("reorder", "a", "b", "c", "d")),
        [
            _enroll("2026-06-10T08:00:00Z", "x@x.test", "reorder"),
            _enroll("2026-06-10T10:00:00Z", "y@x.test", "reorder"),
            _update("2026-06-10T11:00:00Z", _abcd("reorder", "a", "c", "b", "d")),
        ],
        "2026-06-12T00:00:00Z",
    )
    assert _sent(log, "x@x.test") == [
        ("2026-06-10T08:00:00Z", "a"),
        ("2026-06-10T10:00:00Z", "b"),
        ("2026-06-10T12:00:00Z", "d"),
    ]
    assert _sent(log, "y@x.test") == [
        ("2026-06-10T10:00:00Z", "a"),
        ("2026-06-10T12:00:00Z", "c"),
        ("2026-06-10T14:00:00Z", "b"),
        ("2026-06-10T16:00:00Z", "d"),
    ]


def test_S7_a_sent_step_moved_below_the_contact_is_not_sent_twice(run_sim: RunSim) -> None:
    """S7: at 11:00Z the order becomes b, c, a, d. `x` (completed a, b) goes on with `c` (12:00Z);
    `a`, now after it, was already sent and is not sent again: `d` follows `c`."""
    log = run_sim(
        _ws(_abcd("move-down", "a", "b", "c", "d")),
        [
            _enroll("2026-06-10T08:00:00Z", "x@x.test", "move-down"),
            _update("2026-06-10T11:00:00Z", _abcd("move-down", "b", "c", "a", "d")),
        ],
        "2026-06-12T00:00:00Z",
    )
    assert _sent(log, "x@x.test") == [
        ("2026-06-10T08:00:00Z", "a"),
        ("2026-06-10T10:00:00Z", "b"),
        ("2026-06-10T12:00:00Z", "c"),
        ("2026-06-10T14:00:00Z", "d"),
    ]
    assert log.enrollment("x@x.test", "move-down")["status"] == "finished"


def test_S7_each_store_follows_its_own_live_edit_in_one_process(tmp_path: Path) -> None:
    """S7 (and X1): two simulations in one process, on two fresh stores, start from the same
    workspace and make a different live edit (both become version 2 of `shared`). Each must follow
    its own current order: in the second, `y` (completed `a`) gets c, b, d, not the first run's
    c, d. (Runs `simulate` directly: ``run_sim`` runs once per test.)"""
    workspace = load_workspace_text(_ws(_abcd("shared", "a", "b", "c", "d")), "workspace.yaml")

    def run(order: tuple[str, ...], name: str) -> list[tuple[str, str]]:
        events = [
            _enroll("2026-06-10T10:00:00Z", "y@x.test", "shared"),
            _update("2026-06-10T11:00:00Z", _abcd("shared", *order)),
        ]
        items = [InputEvent(n, parse_at(e["at"], "events"), e) for n, e in enumerate(events, 1)]
        (tmp_path / name).mkdir()
        result = simulate(
            workspace, items, parse_at("2026-06-12T00:00:00Z", "until"), database_dir=tmp_path / name
        )
        result.engine.dispose()
        return [(r["at"], r["step"]) for r in result.log if r["kind"] == "message.sent"]

    assert run(("a", "c", "d"), "first") == [
        ("2026-06-10T10:00:00Z", "a"),
        ("2026-06-10T12:00:00Z", "c"),
        ("2026-06-10T14:00:00Z", "d"),
    ]
    assert run(("a", "c", "b", "d"), "second") == [
        ("2026-06-10T10:00:00Z", "a"),
        ("2026-06-10T12:00:00Z", "c"),
        ("2026-06-10T14:00:00Z", "b"),
        ("2026-06-10T16:00:00Z", "d"),
    ]


# -- S13 · finished enrollments stay in the sequence ----------------------------------------------

ONE_SHOT = {"id": "one-shot", "steps": [_email("hello")]}


def test_S13_a_finished_enrollment_stays_in_the_sequence_until_closed(run_sim: RunSim) -> None:
    """S13 with S1/S2: after its last step the enrollment is `finished` and still in the sequence,
    so entering again (even with `reenroll: always`) is `not_enrolled`, `already_enrolled`.
    `admin.unenroll` removes it (`canceled`, `manual`, §6); then re-entry starts again (S2).
    The contact's own unsubscribe from the sequence cancels a finished one too (S12)."""
    log = run_sim(
        _ws(ONE_SHOT, ruleset={"reenroll": "always"}),
        [
            _enroll("2026-06-10T14:00:00Z", "ann@x.test", "one-shot"),
            _enroll("2026-06-10T14:00:00Z", "bob@x.test", "one-shot"),
            _enroll("2026-06-11T14:00:00Z", "ann@x.test", "one-shot"),
            {
                "at": "2026-06-12T14:00:00Z",
                "type": "admin.unenroll",
                "contact": "ann@x.test",
                "sequence": "one-shot",
            },
            {
                "at": "2026-06-12T14:00:00Z",
                "type": "unsubscribed",
                "contact": "bob@x.test",
                "scope": "sequence",
                "sequence": "one-shot",
            },
            _enroll("2026-06-13T14:00:00Z", "ann@x.test", "one-shot"),
        ],
        "2026-06-15T00:00:00Z",
    )
    refused = log.of("not_enrolled", contact="ann@x.test")
    assert [(r["at"], r["reason"]) for r in refused] == [("2026-06-11T14:00:00Z", "already_enrolled")]
    assert _sent(log, "ann@x.test") == [
        ("2026-06-10T14:00:00Z", "hello"),
        ("2026-06-13T14:00:00Z", "hello"),
    ]
    ann = log.of("enrollment.status", contact="ann@x.test")
    assert [(r["at"], r["status"], r.get("reason")) for r in ann] == [
        ("2026-06-10T14:00:00Z", "active", None),
        ("2026-06-10T14:00:00Z", "finished", None),
        ("2026-06-12T14:00:00Z", "canceled", "manual"),
        ("2026-06-13T14:00:00Z", "active", None),
        ("2026-06-13T14:00:00Z", "finished", None),
    ]
    assert log.statuses("bob@x.test", "one-shot") == [
        ("active", None),
        ("finished", None),
        ("canceled", "unsubscribed"),
    ]


def test_S13_unsubscribe_sequence_closes_a_finished_enrollment_as_completed(run_sim: RunSim) -> None:
    """S13: an `unsubscribe_sequence` action (here from an automation) closes a finished enrollment
    as `completed` (§6 lists its reasons; the SPEC does not say which one this action gives, so
    either `marked_complete` or `unsubscribed` is accepted); after that re-entry is allowed (S2)."""
    automation = {
        "id": "wrap-up",
        "when": {"event": "tag.assigned", "tag": "done"},
        "then": [{"unsubscribe_sequence": "one-shot"}],
    }
    log = run_sim(
        _ws(ONE_SHOT, automations=[automation]),
        [
            _enroll("2026-06-10T14:00:00Z", "ann@x.test", "one-shot"),
            {"at": "2026-06-11T14:00:00Z", "type": "tag.assigned", "contact": "ann@x.test", "tag": "done"},
            _enroll("2026-06-12T14:00:00Z", "ann@x.test", "one-shot"),
        ],
        "2026-06-15T00:00:00Z",
    )
    ann = log.of("enrollment.status", contact="ann@x.test", sequence="one-shot")
    assert [(r["at"], r["status"]) for r in ann] == [
        ("2026-06-10T14:00:00Z", "active"),
        ("2026-06-10T14:00:00Z", "finished"),
        ("2026-06-11T14:00:00Z", "completed"),
        ("2026-06-12T14:00:00Z", "active"),
        ("2026-06-12T14:00:00Z", "finished"),
    ]
    assert ann[2]["reason"] in ("marked_complete", "unsubscribed")
    assert log.of("not_enrolled") == []
    assert _sent(log, "ann@x.test") == [
        ("2026-06-10T14:00:00Z", "hello"),
        ("2026-06-12T14:00:00Z", "hello"),
    ]


def test_S13_a_complete_rule_step_closes_a_finished_enrollment_as_completed_with_its_reason(
    run_sim: RunSim,
) -> None:
    """S13 with T9: a rule step `complete: goal` appended to a sequence whose contact has finished
    reaches it (T9: its time, 16:00 EDT, is past at 18:00, so the next day at 10:00) and closes the
    enrollment as `completed`, reason `goal`."""
    closing = {
        "id": "one-shot",
        "steps": [_email("hello"), {"id": "close", "type": "rule", "then": [{"complete": "goal"}]}],
    }
    log = run_sim(
        _ws(ONE_SHOT),
        [
            _enroll("2026-06-10T20:00:00Z", "ann@x.test", "one-shot"),  # 16:00 EDT
            _update("2026-06-10T22:00:00Z", closing),  # 18:00 EDT
            _enroll("2026-06-11T12:00:00Z", "ann@x.test", "one-shot"),  # still in it
        ],
        "2026-06-15T00:00:00Z",
    )
    ann = log.of("enrollment.status", contact="ann@x.test", sequence="one-shot")
    assert [(r["at"], r["status"], r.get("reason")) for r in ann] == [
        ("2026-06-10T20:00:00Z", "active", None),
        ("2026-06-10T20:00:00Z", "finished", None),
        ("2026-06-10T22:00:00Z", "active", None),
        ("2026-06-11T14:00:00Z", "completed", "goal"),
    ]
    refused = log.of("not_enrolled", contact="ann@x.test")
    assert [(r["at"], r["reason"]) for r in refused] == [("2026-06-11T12:00:00Z", "already_enrolled")]
    assert _sent(log, "ann@x.test") == [("2026-06-10T20:00:00Z", "hello")]


def test_S13_a_finished_enrollment_still_counts_for_lead_status(run_sim: RunSim) -> None:
    """S13 with L1: a finished enrollment is still "in the sequence" for lead status, so a contact
    on no list whose only enrollment is finished is `active`; once it is closed
    (`admin.unenroll`) the contact is `inactive`."""
    log = run_sim(
        _ws(ONE_SHOT),
        [
            _enroll("2026-06-10T14:00:00Z", "ann@x.test", "one-shot"),
            _enroll("2026-06-10T14:00:00Z", "bob@x.test", "one-shot"),
            {
                "at": "2026-06-11T14:00:00Z",
                "type": "admin.unenroll",
                "contact": "bob@x.test",
                "sequence": "one-shot",
            },
        ],
        "2026-06-15T00:00:00Z",
    )
    assert log.enrollment("ann@x.test", "one-shot")["status"] == "finished"
    lead = {entry["contact"]: entry["lead_status"] for entry in log.state()["contacts"]}
    assert lead == {"ann@x.test": "active", "bob@x.test": "inactive"}
