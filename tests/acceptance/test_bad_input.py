"""Bad input never shows a traceback: each mistake gets a message a person can act on, on one line.

These run the installed `dripflow` script in a child process with a narrow terminal, so what is
checked is exactly what reaches a user: the exit code, the two streams, nothing wrapped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dripflow.store.contacts import ContactRepo
from tests.acceptance.conftest import (
    DEMO_YAML,
    Dripflow,
    Result,
    assert_no_traceback,
    run_process,
    store,
    write,
)

# An unclosed list on line 4: YAML notices on line 5, where `tags:` cannot be a list item.
BAD_YAML = """\
workspace:
  name: Acme
  timezone: America/New_York
lists: [newsletter, customers
tags: [vip]
"""


@pytest.fixture
def database(dripflow: Dripflow, tmp_path: Path) -> str:
    """A SQLite file holding the demo workspace `acme` (applied in-process: fast)."""
    url = f"sqlite:///{tmp_path / 'acme.db'}"
    assert dripflow("apply", write(tmp_path / "acme.yaml", DEMO_YAML), "--database", url).code == 0
    return url


def assert_one_error(result: Result, expected: str) -> None:
    """Exit 1, no traceback, and stderr is exactly one line, ``error: ...`` holding ``expected``."""
    assert result.code == 1, result.output
    assert_no_traceback(result)
    [line] = result.lines("err")
    assert line.startswith("error: "), result.err
    assert expected in line, result.err


def assert_file_problems(result: Result, expected: list[str]) -> None:
    """Exit 1, no traceback, and stderr is the FILE:LINE problems then their count (SPEC §2)."""
    assert result.code == 1, result.output
    assert_no_traceback(result)
    assert result.out == ""
    assert result.lines("err") == expected


def test_validate_a_missing_file(tmp_path: Path) -> None:
    # SPEC §2: every problem as FILE:LINE: path: message — "there is no such file" included
    result = run_process("validate", "missing.yaml", cwd=tmp_path)

    assert_file_problems(
        result,
        ["missing.yaml:1: (top level): cannot read the file: No such file or directory", "1 problem found"],
    )


def test_apply_a_missing_file_touches_no_database(tmp_path: Path) -> None:
    # SPEC §2: nothing is applied from a file that cannot be read — the database is not even created
    result = run_process(
        "apply", "missing.yaml", "--database", f"sqlite:///{tmp_path / 'x.db'}", cwd=tmp_path
    )

    assert_file_problems(
        result,
        [
            "missing.yaml:1: (top level): cannot read the file: No such file or directory",
            "1 problem found",
            "nothing was applied",
        ],
    )
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("command", ["validate", "apply"])
def test_a_yaml_syntax_error_is_reported_at_its_line(tmp_path: Path, command: str) -> None:
    # SPEC §2: FILE:LINE: path: message, for a file that is not even YAML
    write(tmp_path / "bad.yaml", BAD_YAML)
    args = ["--database", f"sqlite:///{tmp_path / 'x.db'}"] if command == "apply" else []

    result = run_process(command, "bad.yaml", *args, cwd=tmp_path)

    assert result.code == 1, result.output
    assert_no_traceback(result)
    problem = result.lines("err")[0]
    assert problem.startswith("bad.yaml:5: (top level): YAML syntax error: "), result.err
    assert "started on line 4" in problem
    assert result.lines("err")[1] == "1 problem found"


def test_import_a_missing_csv(tmp_path: Path, database: str) -> None:
    # SPEC §10 `contacts import`
    result = run_process("contacts", "import", "missing.csv", "--database", database, cwd=tmp_path)

    assert_one_error(result, "cannot read missing.csv: No such file or directory")


def test_import_a_csv_that_is_not_utf8_names_the_line_and_imports_nothing(
    tmp_path: Path, database: str
) -> None:
    # docs/decisions.md: "if the file turns out to be unreadable part-way (bad encoding ...), none
    # [of its rows] does [land] and the error names the line" — a Latin-1 export from a spreadsheet
    path = tmp_path / "latin1.csv"
    path.write_bytes("email,first_name\nann@example.com,Ann\njerome@example.com,Jérôme\n".encode("latin-1"))

    result = run_process("contacts", "import", path, "--database", database, cwd=tmp_path)

    assert_one_error(result, f"{path}:3: the file is not UTF-8 text")
    with store(database) as session:
        assert ContactRepo(session, "acme").count() == 0


def test_import_a_csv_without_an_email_column(tmp_path: Path, database: str) -> None:
    # docs/decisions.md: imports match contacts by email
    write(tmp_path / "names.csv", "First Name,Last Name\nAnn,Lee\n")

    result = run_process("contacts", "import", "names.csv", "--database", database, cwd=tmp_path)

    assert_one_error(result, "the CSV has no email column (columns: First Name, Last Name)")


@pytest.mark.parametrize("command", [("contacts", "export"), ("contacts", "import", "c.csv")])
def test_an_unknown_workspace(tmp_path: Path, database: str, command: tuple[str, ...]) -> None:
    # SPEC §10: "Every command that touches a database takes --workspace ID"
    write(tmp_path / "c.csv", "email\nann@example.com\n")

    result = run_process(*command, "--workspace", "acmee", "--database", database, cwd=tmp_path)

    assert_one_error(result, "no workspace 'acmee' in this database (workspaces: acme)")
    with store(database) as session:
        assert ContactRepo(session, "acme").count() == 0


def test_a_database_that_cannot_be_opened(tmp_path: Path) -> None:
    # SPEC §10 `db upgrade`, pointed at a directory that does not exist
    url = f"sqlite:///{tmp_path / 'no-such-dir' / 'x.db'}"

    result = run_process("db", "upgrade", "--database", url, cwd=tmp_path)

    assert_one_error(result, f"cannot open the database {url}: unable to open database file")


@pytest.mark.parametrize("url", ["mysql://ann@db.test/crm", "not a url"])
def test_a_database_url_dripflow_cannot_use(tmp_path: Path, url: str) -> None:
    # SPEC §10: the database is SQLite or PostgreSQL
    result = run_process("contacts", "export", "--database", url, cwd=tmp_path)

    assert_one_error(result, "cannot use the database URL given (--database / DRIPFLOW_DATABASE_URL)")
