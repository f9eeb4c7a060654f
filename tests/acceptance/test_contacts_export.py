"""`dripflow contacts export`: safe to open in a spreadsheet, and UTF-8 names come back as they went in."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.acceptance.conftest import Dripflow, write

CONTACTS = """\
email,first_name,last_name,phone,plan
f1@example.com,"=HYPERLINK(""http://x"")",One,,
f2@example.com,+1+1,Two,,
f3@example.com,@SUM(A1),Three,,
f4@example.com,-2+3,Four,,
f5@example.com,Zoë,Ångström-李,+15550100,+15550100
"""


def exported(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:  # strict UTF-8: a bad byte fails here
        return {row["email"]: row for row in csv.DictReader(handle)}


def test_export_neutralises_formulas_and_round_trips_utf8(
    dripflow: Dripflow, db_url: str, demo_file: Path, tmp_path: Path
) -> None:
    assert dripflow("apply", demo_file, "--database", db_url).code == 0
    source = write(tmp_path / "contacts.csv", CONTACTS)
    imported = dripflow("contacts", "import", source, "--database", db_url)
    assert imported.code == 0, imported.output
    assert "5 rows: 5 created, 0 updated, 0 rejected" in imported.out

    output = tmp_path / "out" / "export.csv"
    result = dripflow("contacts", "export", "-o", output, "--database", db_url)

    assert result.code == 0, result.output
    assert result.lines("err") == [f"exported 5 contacts to {output}"]
    rows = exported(output)
    # docs/decisions.md (OWASP CSV injection): a cell a spreadsheet would run gets an apostrophe ...
    assert rows["f1@example.com"]["first_name"] == '\'=HYPERLINK("http://x")'
    assert rows["f2@example.com"]["first_name"] == "'+1+1"
    assert rows["f3@example.com"]["first_name"] == "'@SUM(A1)"
    assert rows["f4@example.com"]["first_name"] == "'-2+3"
    # ... but an E.164 phone number, which cannot run anything, is left as it is
    assert rows["f5@example.com"]["phone"] == "+15550100"
    assert rows["f5@example.com"]["plan"] == "+15550100"
    # UTF-8 names leave the database unchanged
    assert (rows["f5@example.com"]["first_name"], rows["f5@example.com"]["last_name"]) == (
        "Zoë",
        "Ångström-李",
    )

    # ... and come back unchanged when the export is imported into a new database (created on
    # first use, docs/decisions.md), then exported from there
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert dripflow("apply", demo_file, "--database", other).code == 0
    reimported = dripflow("contacts", "import", output, "--database", other)
    assert reimported.code == 0, reimported.output
    assert "5 rows: 5 created, 0 updated, 0 rejected" in reimported.out
    again = tmp_path / "again.csv"
    assert dripflow("contacts", "export", "-o", again, "--database", other).code == 0
    row = exported(again)["f5@example.com"]
    assert (row["first_name"], row["last_name"], row["phone"]) == ("Zoë", "Ångström-李", "+15550100")


def test_export_to_stdout(dripflow: Dripflow, db_url: str, demo_file: Path, tmp_path: Path) -> None:
    # SPEC §10 `contacts export`: without -o the CSV goes to standard output, nothing else with it
    assert dripflow("apply", demo_file, "--database", db_url).code == 0
    write(tmp_path / "c.csv", "email,first_name\nzoe@example.com,Zoë\n")
    assert dripflow("contacts", "import", tmp_path / "c.csv", "--database", db_url).code == 0

    result = dripflow("contacts", "export", "--database", db_url)

    assert result.code == 0, result.output
    rows = list(csv.DictReader(result.out.splitlines()))
    assert [(row["email"], row["first_name"]) for row in rows] == [("zoe@example.com", "Zoë")]
