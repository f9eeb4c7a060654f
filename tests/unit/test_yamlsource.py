"""Reading the workspace YAML keeps the line of every key, so problems point at the right line (SPEC §2)."""

from textwrap import dedent

import pytest

from dripflow.core.yamlsource import format_path, parse_yaml


def test_every_key_path_knows_its_line_in_block_and_flow_style() -> None:
    # SPEC §2: problems are reported as FILE:LINE: path.to.key
    source = parse_yaml(
        dedent(
            """\
            workspace:
              name: Acme
            sequences:
              - id: onboarding
                steps:
                  - {id: hello, type: email, template: welcome}
                  - id: tips
                    type: email
                    template: tips
                  - {id: offer, type: email,
                     variants: [{template: a, weight: 50}]}
            """
        )
    )
    assert source.issues == []
    assert source.lines["workspace.name"] == 2
    assert source.lines["sequences[0]"] == 4
    assert source.lines["sequences[0].steps[0].template"] == 6
    assert source.lines["sequences[0].steps[1]"] == 7
    assert source.lines["sequences[0].steps[1].template"] == 9
    assert source.lines["sequences[0].steps[2].variants[0].weight"] == 11


def test_a_missing_key_points_at_its_nearest_parent() -> None:
    # SPEC §2: a missing key is reported on the line of the mapping that lacks it
    source = parse_yaml("a:\n  b:\n    c: 1\n")
    assert source.line_of(("a", "b", "missing", "deeper")) == 2
    assert source.line_of(()) == 1


def test_duplicate_keys_are_refused_with_both_lines() -> None:
    # SPEC §2: a key given twice would silently lose one of its values
    source = parse_yaml("tags: [a]\nlists: [x]\ntags: [b]\n")
    assert [(issue.line, issue.path) for issue in source.issues] == [(3, "tags")]
    assert "first given on line 1" in source.issues[0].message


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("a: 1\nb: [1, 2\nc: 3\n", 3, "expected ',' or ']'"),
        ("a: 1\n  b: 2\n", 2, "mapping values are not allowed"),
        ("a:\n\tb: 1\n", 2, "'\\t'"),
        ("a: 1\n---\nb: 2\n", 2, "expected a single document"),
    ],
)
def test_syntax_errors_carry_the_line_pyyaml_reports(text: str, line: int, words: str) -> None:
    source = parse_yaml(text)
    assert source.data is None
    [issue] = source.issues
    assert issue.line == line
    assert issue.message.startswith("YAML syntax error")
    assert words in issue.message


def test_values_are_read_as_a_marketer_writes_them() -> None:
    # SPEC §2: `at: 10:00`, `on:` and `from: +15550100` must not turn into 600, True and 15550100
    source = parse_yaml(
        "at: 10:00\non: {field: birthday}\nfrom: +15550100\nday: 2026-12-24\nn: 7\nok: true\n"
    )
    assert source.data == {
        "at": "10:00",
        "on": {"field": "birthday"},
        "from": "+15550100",
        "day": "2026-12-24",
        "n": 7,
        "ok": True,
    }


def test_merge_keys_copy_defaults_and_explicit_keys_win() -> None:
    source = parse_yaml("base: &b {daily_cap: 100, default: false}\nbox:\n  <<: *b\n  default: true\n")
    assert isinstance(source.data, dict)
    assert source.data["box"] == {"default": True, "daily_cap": 100}
    assert source.lines["box.daily_cap"] == 1


def test_python_tags_are_never_executed() -> None:
    source = parse_yaml('a: !!python/object/apply:os.system ["echo hi"]\n')
    assert source.data == {"a": ["echo hi"]}


@pytest.mark.parametrize(
    "text",
    [
        "a: &x [*x]\n",
        "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9 if i else ['1'] * 9)}]\n" for i in range(9)),
        "[" * 5000 + "]" * 5000,
    ],
    ids=["self-reference", "billion-laughs", "deep-nesting"],
)
def test_runaway_documents_are_problems_not_crashes(text: str) -> None:
    source = parse_yaml(text)
    assert source.data is None
    assert len(source.issues) == 1


def test_paths_use_dots_and_brackets() -> None:
    assert format_path(("sequences", 0, "steps", 2, "template")) == "sequences[0].steps[2].template"
    assert format_path(()) == ""
