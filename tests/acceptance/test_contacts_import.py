"""`dripflow contacts import FILE.csv` on SQLite and PostgreSQL: rejects, typos, lists, re-imports."""

from __future__ import annotations

import csv
from pathlib import Path

from dripflow.store.contacts import ContactRepo
from tests.acceptance.conftest import Dripflow, store, write

# Line numbers matter: Gina's last name is a quoted cell over two lines (8 and 9), so Hank is on
# line 10 although he is the 9th record. Headers are written the way spreadsheets write them.
CONTACTS = """\
Email,First Name,Last Name,Phone,Time Zone,plan
ann@example.com,Ann,Lee,+1 555 010 0101,America/New_York,pro
bob@gmali.com,Bob,Stone,,Europe/London,
carla@hootmail.com,Carla,Diaz,,,
dev@aol.con,Dev,Patel,,,
eve@college.edi,Eve,Moss,,,
not-an-email,Ghost,Row,,,
gina@example.net,Gina,"Ortiz
Smith",,Mars/Olympus,
hank@example.com,Hank,Ito,+1 555,,
,Nobody,Atall,,,
"""
ACCEPTED = ["ann@example.com", "bob@gmali.com", "carla@hootmail.com", "dev@aol.con", "eve@college.edi"]


def test_import_reports_rejects_and_typos_subscribes_and_reimports(
    dripflow: Dripflow, db_url: str, demo_file: Path, tmp_path: Path
) -> None:
    assert dripflow("apply", demo_file, "--database", db_url).code == 0
    source = write(tmp_path / "contacts.csv", CONTACTS)
    rejects = tmp_path / "out" / "rejects.csv"

    result = dripflow(
        "contacts", "import", source, "--list", "newsletter", "--rejects", rejects, "--database", db_url
    )

    # SPEC §10: "a report of rejected rows" — each with the line it is on in the file and why
    assert result.code == 0, result.output
    lines = result.lines("out")
    assert "9 rows: 5 created, 0 updated, 4 rejected, 4 with a likely email typo" in lines
    rejected = [line.strip() for line in lines if ": rejected " in line]
    assert len(rejected) == 4, lines
    assert rejected[0].startswith("line 7: rejected not-an-email: invalid email 'not-an-email'")
    assert rejected[1].startswith("line 8: rejected gina@example.net: unknown time zone 'Mars/Olympus'")
    assert rejected[2].startswith("line 10: rejected hank@example.com: invalid phone number '+1 555'")
    assert rejected[3] == "line 11: rejected (no email): email is empty"
    # SPEC L4: likely domain typos are flagged with a suggestion (and imported as typed)
    assert [line.strip() for line in lines if "did you mean" in line] == [
        "line 3: bob@gmali.com: did you mean bob@gmail.com?",
        "line 4: carla@hootmail.com: did you mean carla@hotmail.com?",
        "line 5: dev@aol.con: did you mean dev@aol.com?",
        "line 6: eve@college.edi: did you mean eve@college.edu?",
    ]

    # --rejects: every rejected row, with its line and reason, then the cells as they were
    with rejects.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["line", "reason", "Email", "First Name", "Last Name", "Phone", "Time Zone", "plan"]
    assert [row[0] for row in rows[1:]] == ["7", "8", "10", "11"]
    assert "unknown time zone 'Mars/Olympus'" in rows[2][1]
    assert rows[2][2:] == ["gina@example.net", "Gina", "Ortiz\nSmith", "", "Mars/Olympus", ""]

    with store(db_url) as session:
        repo = ContactRepo(session, "acme")
        assert repo.count() == 5
        for email in ACCEPTED:
            contact = repo.get(email)
            assert contact is not None, email
            assert repo.lists(contact) == ["newsletter"], email  # --list subscribes every import
        for email in ("gina@example.net", "hank@example.com"):
            assert repo.get(email) is None  # a rejected row writes nothing
        ann = repo.get("ann@example.com")
        bob = repo.get("bob@gmali.com")
        assert ann is not None and bob is not None
        assert (ann.phone, ann.timezone, ann.fields) == ("+15550100101", "America/New_York", {"plan": "pro"})
        assert (bob.email, bob.email_suggestion) == ("bob@gmali.com", "bob@gmail.com")
        ann_id = ann.id

    # docs/decisions.md: re-running an import updates the contacts it created (matched by the
    # normalised email), it never duplicates them
    again = write(
        tmp_path / "again.csv",
        "email,first_name\nANN@Example.com,Annie\nbob@gmali.com,Robert\nzed@example.com,Zed\n",
    )
    second = dripflow("contacts", "import", again, "--list", "newsletter", "--database", db_url)

    assert second.code == 0, second.output
    assert "3 rows: 1 created, 2 updated, 0 rejected, 1 with a likely email typo" in second.lines("out")
    with store(db_url) as session:
        repo = ContactRepo(session, "acme")
        assert repo.count() == 6
        ann = repo.get("ann@example.com")
        assert ann is not None
        assert (ann.id, ann.first_name, ann.last_name, ann.phone) == (ann_id, "Annie", "Lee", "+15550100101")
        zed = repo.get("zed@example.com")
        assert zed is not None and repo.lists(zed) == ["newsletter"]
        assert repo.lists(ann) == ["newsletter"]


def test_import_of_an_unknown_list_is_refused_before_anything_is_written(
    dripflow: Dripflow, db_url: str, demo_file: Path, tmp_path: Path
) -> None:
    # SPEC §2: every reference must resolve — `--list` names a declared list (did-you-mean-free
    # here, but the message lists the lists there are)
    assert dripflow("apply", demo_file, "--database", db_url).code == 0
    source = write(tmp_path / "contacts.csv", CONTACTS)

    result = dripflow("contacts", "import", source, "--list", "newsleter", "--database", db_url)

    assert result.code == 1
    assert result.lines("err") == [
        "error: unknown list 'newsleter' in workspace 'acme' (lists: newsletter, customers, webinar-leads)"
    ]
    with store(db_url) as session:
        assert ContactRepo(session, "acme").count() == 0
