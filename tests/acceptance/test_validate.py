"""`dripflow validate FILE`: every problem of a workspace file, as FILE:LINE: key.path: message."""

from __future__ import annotations

import re
from pathlib import Path

from tests.acceptance.conftest import Dripflow, assert_no_traceback, line_of, run_process, write

# Three mistakes on known lines: a misspelt time zone, a tag that is not declared (close to one
# that is), and a step naming a template that does not exist.
BROKEN = """\
# a shop with three mistakes
workspace:
  id: shop
  name: Corner Shop
  timezone: Europe/Lodnon
mailboxes:
  - {id: ann, from: "Ann Lee <ann@shop.test>", default: true}
lists: [newsletter]
tags: [customer, vip]
templates:
  welcome:
    subject: "Hi"
    text: "Hello {{ contact.first_name | default('there') }}"
sequences:
  - id: onboarding
    recipients: {not: {has_tag: custmer}}
    steps:
      - {id: hello, type: email, template: welcome}

      - {id: later, type: email, template: welcome-back, after: {days: 2}}
"""

PROBLEM = re.compile(r"^(?P<file>.+):(?P<line>\d+): (?P<path>\S+): (?P<message>.+)$")


def test_validate_lists_every_problem_with_file_line_and_key_path(tmp_path: Path) -> None:
    # SPEC §2: "the validator reports each problem as FILE:LINE: path.to.key: message, suggests the
    # nearest declared name ... and exits non-zero"; run as a user would, so no traceback can hide.
    path = write(tmp_path / "shop.yaml", BROKEN)

    result = run_process("validate", path, cwd=tmp_path)

    assert result.code == 1, result.output
    assert_no_traceback(result)
    problems = [PROBLEM.match(line) for line in result.lines() if line.startswith(f"{path}:")]
    found = {(int(m["line"]), m["path"]): m["message"] for m in problems if m is not None}
    assert sorted(found) == [
        (line_of(BROKEN, "timezone: Europe/Lodnon"), "workspace.timezone"),
        (line_of(BROKEN, "has_tag: custmer"), "sequences[0].recipients.not.has_tag"),
        (line_of(BROKEN, "template: welcome-back"), "sequences[0].steps[1].template"),
    ], result.output
    assert [line for line, _ in sorted(found)] == [5, 16, 20]  # comment and blank lines count too
    messages = [found[key] for key in sorted(found)]
    assert "unknown time zone 'Europe/Lodnon'" in messages[0]
    assert messages[1] == "unknown tag 'custmer' — did you mean 'customer'?"
    assert "unknown template 'welcome-back'" in messages[2]
    assert "3 problems found" in result.err


def test_validate_accepts_a_valid_file(dripflow: Dripflow, tmp_path: Path) -> None:
    # SPEC §2 / §10 `validate`: a file whose every reference resolves passes, exit 0
    fixed = BROKEN.replace("Europe/Lodnon", "Europe/London").replace("custmer", "customer")
    path = write(tmp_path / "shop.yaml", fixed.replace("welcome-back", "welcome"))

    result = dripflow("validate", path)

    assert result.code == 0, result.output
    assert f"{path}: ok" in result.out
    assert "'shop'" in result.out and "1 sequences" in result.out
    assert result.err == ""


def test_validate_the_demo_workspace(dripflow: Dripflow) -> None:
    # README: `make demo` validates examples/demo.yaml; it must stay valid
    result = dripflow("validate", Path(__file__).resolve().parents[2] / "examples" / "demo.yaml")

    assert result.code == 0, result.output
    assert "ok — workspace 'acme', 2 sequences, 3 automations, 1 broadcasts" in result.out
