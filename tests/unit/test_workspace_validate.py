"""`dripflow validate`'s engine: every problem at once, as FILE:LINE: path: message (SPEC §2, X4)."""

import copy
from pathlib import Path
from textwrap import dedent

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dripflow.core.validate import (
    Problem,
    WorkspaceInvalid,
    check_workspace_text,
    load_workspace_file,
    load_workspace_text,
    parse_sequence,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HEAD = "workspace: {name: Acme, timezone: America/New_York}\n"


def problems_of(text: str) -> list[Problem]:
    workspace, problems = check_workspace_text(dedent(text), "w.yaml")
    assert (workspace is None) == bool(problems)
    return problems


def lines(text: str) -> list[str]:
    return [str(problem) for problem in problems_of(text)]


def test_the_demo_workspace_has_no_problems() -> None:
    # SPEC §2: examples/demo.yaml is the reference workspace
    workspace = load_workspace_file(EXAMPLES / "demo.yaml")
    assert workspace.workspace.id == "acme"
    assert [s.id for s in workspace.sequences] == ["onboarding", "birthday"]
    assert len(workspace.automations) == 3 and len(workspace.broadcasts) == 1


def test_invalid_example_reports_exactly_its_three_mistakes() -> None:
    # SPEC §2: "unknown tag 'custmer' — did you mean 'customer'?", one FILE:LINE line each
    with pytest.raises(WorkspaceInvalid) as caught:
        load_workspace_file(EXAMPLES / "invalid.yaml")
    name = str(EXAMPLES / "invalid.yaml")
    assert [str(problem) for problem in caught.value.problems] == [
        f"{name}:4: workspace.timezone: unknown time zone 'America/New_Yrok' "
        "— did you mean 'America/New_York'?",
        f"{name}:19: sequences[0].recipients.not.has_tag: unknown tag 'custmer' — did you mean 'customer'?",
        f"{name}:22: sequences[0].steps[1].template: unknown template 'welcome-mail' "
        "— did you mean 'welcome'?",
    ]
    assert str(caught.value).splitlines() == [str(problem) for problem in caught.value.problems]


def test_every_problem_of_a_messy_file_is_reported_in_one_pass() -> None:
    # SPEC X4: the validator does not stop at the first problem; structure and references together
    found = lines(
        """\
        workspace:
          name: Messy
          timezone: Europe/Londn
          default_send_time: "25:00"
        ruleset: {multi_sequence: allw}
        mailboxes:
          - {id: ann, from: "ann@acme.test", default: true}
          - {id: bob, from: "bob@acme.test", default: true}
        schedules:
          - {id: biz, hours: ["17:00-09:00"], excluded_dates: ["2026-02-30"]}
        tags: [customer]
        templates:
          welcome: {subject: Hi, text: "{{ link('ofer') }}"}
        sequences:
          - id: onboarding
            mailbox: carl
            steps:
              - {id: a, type: emial, template: welcome}
              - {id: b, type: email, template: welcom}
              - {id: b, type: email, variants: [{template: welcome, weight: 0}]}
              - {id: c, type: rule, if: {has_tagg: customer}, then: [{goto: zz}]}
        automations:
          - id: x
            when: {event: tag.asigned, tag: customer}
            then: [{add_tag: custmer}]
        """
    )
    assert found == [
        "w.yaml:3: workspace.timezone: unknown time zone 'Europe/Londn' — did you mean 'Europe/London'?",
        "w.yaml:4: workspace.default_send_time: '25:00' is not a time of day: "
        'use HH:MM, 24-hour (such as "09:30")',
        "w.yaml:5: ruleset.multi_sequence: must be one of allow, deny, not 'allw' — did you mean 'allow'?",
        "w.yaml:8: mailboxes[1].default: only one mailbox can be the default ('ann' already is)",
        "w.yaml:10: schedules[0].excluded_dates[0]: '2026-02-30' is not a valid date: use YYYY-MM-DD "
        '(such as "2026-12-24")',
        "w.yaml:10: schedules[0].hours[0]: the hours '17:00-09:00' end before they start",
        "w.yaml:13: templates.welcome.text: unknown link 'ofer' — no links are declared",
        "w.yaml:16: sequences[0].mailbox: unknown mailbox 'carl' (declared: ann, bob)",
        "w.yaml:18: sequences[0].steps[0].type: unknown step type 'emial' — did you mean 'email'?",
        "w.yaml:19: sequences[0].steps[1].template: unknown template 'welcom' — did you mean 'welcome'?",
        "w.yaml:20: sequences[0].steps[2].id: step 'b' is declared twice (first on line 19)",
        "w.yaml:20: sequences[0].steps[2].variants[0].weight: must be more than 0, not 0",
        "w.yaml:21: sequences[0].steps[3].if.has_tagg: unknown condition 'has_tagg' "
        "— did you mean 'has_tag'?",
        "w.yaml:21: sequences[0].steps[3].then[0].goto: unknown step 'zz' in sequence 'onboarding' "
        "(declared: a, b, c)",
        "w.yaml:24: automations[0].when.event: unknown event 'tag.asigned' — did you mean 'tag.assigned'?",
        "w.yaml:25: automations[0].then[0].add_tag: unknown tag 'custmer' — did you mean 'customer'?",
    ]


def test_line_numbers_follow_nested_keys_and_missing_keys_point_at_their_parent() -> None:
    # SPEC §2: FILE:LINE of the offending key, or of the nearest existing parent
    found = problems_of(
        HEAD
        + """\
sequences:
  - id: s
    steps:
      - id: call
        type: task
        after:
          days: 1
          hourz: 2
"""
    )
    assert [(p.line, p.path, p.message) for p in found] == [
        (5, "sequences[0].steps[0].title", "required but missing"),
        (9, "sequences[0].steps[0].after.hourz", "unknown key 'hourz' — did you mean 'hours'?"),
    ]


def test_problems_are_sorted_by_line() -> None:
    found = problems_of(
        HEAD + "tags: [a]\nsequences:\n  - {id: s, recipients: {has_tag: b}}\nlists: [5, {}]\n"
    )
    assert [p.line for p in found] == sorted(p.line for p in found)
    assert [p.path for p in found] == ["sequences[0].recipients.has_tag", "lists[1]"]


def test_a_literal_smtp_password_is_refused_without_echoing_it() -> None:
    # SPEC §2: "secrets only by environment variable name"
    [problem] = problems_of(HEAD + "delivery:\n  smtp: {host: smtp.acme.test, password: hunter2}\n")
    assert (problem.line, problem.path) == (3, "delivery.smtp.password")
    assert "password_env" in problem.message and "environment variable" in problem.message
    assert "hunter2" not in str(problem)


DKIM_HEAD = HEAD + 'mailboxes:\n  - {id: ann, from: "Ann <ann@acme.test>"}\ndelivery:\n  dkim:\n'


def test_a_dkim_entry_names_its_domain_selector_and_key_variable() -> None:
    # docs/delivery.md "DKIM" (the SPEC has no DKIM key): a domain a mailbox sends from, one key source
    workspace, problems = check_workspace_text(
        DKIM_HEAD + "    - {domain: Acme.Test, selector: s2026, private_key_env: DKIM_ACME_KEY}\n", "w.yaml"
    )
    assert problems == [] and workspace is not None
    [entry] = workspace.delivery.dkim
    assert (entry.domain, entry.selector, entry.private_key_env) == ("acme.test", "s2026", "DKIM_ACME_KEY")


@pytest.mark.parametrize(
    ("entry", "path", "message"),
    [
        (
            "{domain: acme.tst, selector: s1, private_key_env: K}",
            "delivery.dkim[0].domain",
            "no mailbox sends from 'acme.tst', and an entry signs mail from its own domain only "
            "— did you mean 'acme.test'?",
        ),
        (
            "{domain: zzz.example, selector: s1, private_key_env: K}",
            "delivery.dkim[0].domain",
            "no mailbox sends from 'zzz.example', and an entry signs mail from its own domain only "
            "(mailboxes send from acme.test)",
        ),
        (
            "{domain: acme.test, selector: s1}",
            "delivery.dkim[0]",
            "give exactly one of private_key_env (a variable holding the PEM key) and private_key_file_env "
            "(a variable holding the path of the PEM key file)",
        ),
        (
            "{domain: acme.test, selector: s1, private_key_env: A, private_key_file_env: B}",
            "delivery.dkim[0]",
            "give exactly one of private_key_env (a variable holding the PEM key) and private_key_file_env "
            "(a variable holding the path of the PEM key file)",
        ),
        (
            "{domain: acme test, selector: s1, private_key_env: K}",
            "delivery.dkim[0].domain",
            "'acme test' is not a domain name such as acme.test",
        ),
        (
            "{domain: acme.test, selector: 's 1', private_key_env: K}",
            "delivery.dkim[0].selector",
            "'s 1' is not a DKIM selector: use letters, digits, _ and -, such as s2026",
        ),
    ],
)
def test_dkim_entries_are_checked_with_file_lines(entry: str, path: str, message: str) -> None:
    # X4-style FILE:LINE: path: message for the DKIM block; an unused domain is an error (a typo
    # there would send the mail it was meant for unsigned)
    assert lines(DKIM_HEAD + f"    - {entry}\n") == [f"w.yaml:6: {path}: {message}"]


def test_a_dkim_domain_listed_twice_is_refused() -> None:
    found = lines(
        DKIM_HEAD
        + "    - {domain: acme.test, selector: s1, private_key_env: A}\n"
        + "    - {domain: ACME.test., selector: s2, private_key_env: B}\n"
    )
    assert found == [
        "w.yaml:7: delivery.dkim[1].domain: DKIM domain 'acme.test' is declared twice (first on line 6)"
    ]


def test_a_literal_dkim_key_is_refused_without_echoing_it() -> None:
    # SPEC §2: "secrets only by environment variable name"; never a private key in the file
    [problem] = problems_of(
        DKIM_HEAD + "    - {domain: acme.test, selector: s1, private_key: '-----BEGIN PRIVATE KEY-----'}\n"
    )
    assert (problem.line, problem.path) == (6, "delivery.dkim[0].private_key")
    assert "private_key_env" in problem.message and "BEGIN" not in str(problem)


def test_time_zones_get_the_closest_iana_name() -> None:
    # SPEC T1
    [problem] = problems_of("workspace: {name: A, timezone: america/new_york}\n")
    assert problem.message == "unknown time zone 'america/new_york' — did you mean 'America/New_York'?"
    [problem] = problems_of(HEAD + "schedules: [{id: b, timezone: Europe/Pari}]\n")
    assert problem.message.endswith("did you mean 'Europe/Paris'?")


@pytest.mark.parametrize(
    ("body", "path", "words"),
    [
        (
            "sequences: [{id: s}, {id: s}]\n",
            "sequences[1].id",
            "sequence 's' is declared twice (first on line 2)",
        ),
        (
            "automations: [{id: a, when: {event: contact.created}, then: [{give_points: 1}]}]\n"
            "broadcasts: []\nschedules: [{id: x}, {id: x}]\n",
            "schedules[1].id",
            "declared twice",
        ),
        (
            "mailboxes: [{id: a, from: a@x.test}, {id: a, from: b@x.test}]\n",
            "mailboxes[1].id",
            "declared twice",
        ),
        (
            "fields: [{key: birthday, type: date}]\nsequences: [{id: s, kind: date, steps: "
            "[{id: a, type: task, title: T}]}]\n",
            "sequences[0].steps[0].on",
            "needs on:",
        ),
        (
            "fields: [{key: plan}]\nsequences: [{id: s, kind: date, steps: "
            "[{id: a, type: task, title: T, on: {field: plan}}]}]\n",
            "sequences[0].steps[0].on.field",
            "not a date field",
        ),
        (
            "sequences: [{id: s, steps: [{id: a, type: task, title: T, at: '9:75'}]}]\n",
            "sequences[0].steps[0].at",
            "is not a time of day",
        ),
        (
            "fields: [{key: size, type: number}]\nautomations: [{id: a, when: {event: contact.created}, "
            "then: [{set_field: {key: size, value: big}}]}]\n",
            "automations[0].then[0].set_field.value",
            "number",
        ),
    ],
)
def test_ids_times_dates_and_field_types_are_checked(body: str, path: str, words: str) -> None:
    found = problems_of(HEAD + body)
    assert path in [p.path for p in found]
    assert any(words in p.message for p in found if p.path == path)


def test_email_steps_need_somewhere_to_send_from() -> None:
    # SPEC S10: no step, sequence or default mailbox at all
    found = problems_of(
        HEAD
        + "templates: {t: {subject: S, text: T}}\n"
        + "sequences: [{id: s, steps: [{id: a, type: email, template: t}]}]\n"
    )
    assert [(p.path, p.message) for p in found] == [
        (
            "sequences[0].steps[0]",
            "no mailbox to send this email from: declare one under mailboxes (SPEC S10)",
        )
    ]


def test_a_template_of_the_wrong_kind_is_named() -> None:
    found = problems_of(
        HEAD
        + "mailboxes: [{id: a, from: a@x.test}]\ntemplates: {t: {sms: Hi}}\n"
        + "sequences: [{id: s, steps: [{id: a, type: email, template: t}]}]\n"
    )
    assert [p.message for p in found] == [
        "template 't' is an SMS template, but this needs an email template (with subject and text)"
    ]


def test_an_unreadable_file_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    # SPEC X4: validate reports, it never crashes
    with pytest.raises(WorkspaceInvalid, match="cannot read the file"):
        load_workspace_file(tmp_path / "missing.yaml")
    with pytest.raises(WorkspaceInvalid, match="empty"):
        load_workspace_text("", "empty.yaml")


def test_a_standalone_sequence_is_checked_against_the_workspace() -> None:
    # SPEC X2 admin.sequence.update: a full definition replaces the sequence of that id
    demo = load_workspace_file(EXAMPLES / "demo.yaml")
    current = demo.sequence("onboarding")
    assert current is not None
    definition = current.model_dump(mode="json")
    definition["steps"].append({"id": "extra", "type": "email", "template": "tips", "after": {"days": 1}})
    updated = parse_sequence(definition, demo)
    assert [step.id for step in updated.steps][-1] == "extra"

    definition["steps"][-1]["template"] = "tipz"
    with pytest.raises(WorkspaceInvalid) as caught:
        parse_sequence(definition, demo)
    assert [(p.path, p.message) for p in caught.value.problems] == [
        ("steps[11].template", "unknown template 'tipz' — did you mean 'tips'?")
    ]


def test_removing_a_step_another_rule_points_at_is_caught() -> None:
    demo = load_workspace_file(EXAMPLES / "demo.yaml")
    current = demo.sequence("onboarding")
    assert current is not None
    definition = copy.deepcopy(current.model_dump(mode="json"))
    definition["steps"] = [step for step in definition["steps"] if step["id"] != "tips"]
    with pytest.raises(WorkspaceInvalid, match="unknown step 'tips' in sequence 'onboarding'"):
        parse_sequence(definition, demo)


# ------------------------------------------------------------------------------------------ robustness

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12),
    st.sampled_from(["welcome", "10:00", "2h", "mon", "email", "has_tag", "2026-01-01", "@x"]),
)  # fmt: skip
_keys = st.sampled_from(
    ["workspace", "name", "timezone", "id", "type", "steps", "sequences", "if", "then", "not", "all",
     "has_tag", "event", "template", "after", "days", "on", "mailboxes", "from", "templates", "subject"]
)  # fmt: skip
_documents = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=5)
)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_is_either_a_workspace_or_a_list_of_problems(text: str) -> None:
    # SPEC X4: whatever the file holds, the answer is problems, never a crash
    try:
        load_workspace_text(text, "fuzz.yaml")
    except WorkspaceInvalid as exc:
        assert exc.problems and all(problem.line >= 1 for problem in exc.problems)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents)
def test_any_yaml_document_is_either_a_workspace_or_a_list_of_problems(document: object) -> None:
    try:
        load_workspace_text(yaml.safe_dump(document), "fuzz.yaml")
    except WorkspaceInvalid as exc:
        assert exc.problems


def _leaf_paths(node: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _leaf_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _leaf_paths(value, (*prefix, index))
    return found


_DEMO = yaml.safe_load((EXAMPLES / "demo.yaml").read_text())
_DEMO_PATHS = _leaf_paths(_DEMO)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_DEMO_PATHS), _documents), min_size=1, max_size=4))
def test_a_damaged_demo_is_reported_not_crashed_on(damage: list[tuple[tuple[object, ...], object]]) -> None:
    document = copy.deepcopy(_DEMO)
    for path, value in damage:
        node = document
        try:
            for part in path[:-1]:
                node = node[part]
            node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    try:
        load_workspace_text(yaml.safe_dump(document), "fuzz.yaml")
    except WorkspaceInvalid as exc:
        assert exc.problems
