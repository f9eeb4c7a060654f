"""Building the message a recipient's mail client sees (SPEC D1, D6) and refusing header injection."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from dripflow.core.validate import load_workspace_text
from dripflow.delivery.mime import UnsafeHeader, build_message, envelope_sender
from dripflow.store.tables import Message

WORKSPACE = load_workspace_text(
    """\
workspace: {id: acme, name: Acme, timezone: UTC, base_url: "https://mail.acme.test",
            physical_address: "1 Main St, Springfield, IL"}
mailboxes:
  - {id: ann, from: "Ann Lée <ann@acme.test>", reply_to: "help@acme.test", default: true}
templates:
  hello: {subject: "Hello", text: "Hi"}
""",
    "acme.yaml",
)
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
UNSUB = "https://mail.acme.test/t/u/eyJjIjoxfQ.c2lnbmF0dXJl"


def _row(**overrides: object) -> Message:
    values: dict[str, object] = {
        "key": "enrollment:1:0",
        "contact_id": 1,
        "channel": "email",
        "recipient": "bob@example.test",
        "sender": "Ann Lée <ann@acme.test>",
        "mailbox": "ann",
        "template": "hello",
        "subject": "Welcome, Bob — ça va?",
        "body_text": "Hi Bob,\nwelcome aboard.",
        "body_html": "<html><body><p>Hi Bob</p></body></html>",
        "in_reply_to": None,
        "message_id": "<enrollment.1.0.acme@acme.test>",
        "sequence_id": "onboarding",
    }
    values.update(overrides)
    return Message(**values)


def _roundtrip(msg: EmailMessage) -> EmailMessage:
    """What the receiving side parses out of the bytes we would put on the wire."""
    parsed = message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _parts(msg: EmailMessage) -> dict[str, str]:
    """Decoded parts by type, with the wire's CRLF line ends read as plain newlines."""
    return {
        part.get_content_type(): part.get_content().replace("\r\n", "\n")
        for part in msg.walk()
        if not part.is_multipart()
    }


def test_headers_and_both_alternatives() -> None:
    msg = _roundtrip(build_message(_row(), WORKSPACE, date=NOW, unsubscribe_url=UNSUB))
    assert msg["From"].addresses[0].display_name == "Ann Lée"  # UTF-8 name survives RFC 2047
    assert msg["From"].addresses[0].addr_spec == "ann@acme.test"
    assert str(msg["To"]) == "bob@example.test"
    assert str(msg["Reply-To"]) == "help@acme.test"
    assert str(msg["Subject"]) == "Welcome, Bob — ça va?"
    assert str(msg["Message-ID"]) == "<enrollment.1.0.acme@acme.test>"
    assert msg["Date"].datetime == NOW
    assert msg.get_content_type() == "multipart/alternative"
    parts = _parts(msg)
    assert set(parts) == {"text/plain", "text/html"}
    assert parts["text/plain"].startswith("Hi Bob,\nwelcome aboard.")
    assert "<p>Hi Bob</p>" in parts["text/html"]
    assert "In-Reply-To" not in msg


def test_text_only_message_is_a_single_part() -> None:
    msg = _roundtrip(build_message(_row(body_html=None), WORKSPACE, date=NOW, unsubscribe_url=UNSUB))
    assert msg.get_content_type() == "text/plain"


def test_d1_one_click_unsubscribe_headers_and_footer() -> None:
    """D1: List-Unsubscribe (https, plus mailto when given), RFC 8058 POST, address in the footer."""
    msg = _roundtrip(
        build_message(
            _row(),
            WORKSPACE,
            date=NOW,
            unsubscribe_url=UNSUB,
            unsubscribe_mailto="mailto:unsubscribe@acme.test?subject=unsubscribe",
        )
    )
    assert str(msg["List-Unsubscribe"]) == f"<{UNSUB}>, <mailto:unsubscribe@acme.test?subject=unsubscribe>"
    assert str(msg["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    parts = _parts(msg)
    for content in parts.values():
        assert "1 Main St, Springfield, IL" in content
    assert f"Unsubscribe: {UNSUB}" in parts["text/plain"]
    html = parts["text/html"]
    assert f'<a href="{UNSUB}">Unsubscribe</a>' in html
    assert html.index("Unsubscribe") < html.index("</body>")  # inside the body, not after it


def test_d1_footer_not_repeated_when_the_template_has_it() -> None:
    text = f"Hi\n1 Main St, Springfield, IL\nLeave: {UNSUB}"
    msg = _roundtrip(
        build_message(_row(body_text=text, body_html=None), WORKSPACE, date=NOW, unsubscribe_url=UNSUB)
    )
    assert _parts(msg)["text/plain"].rstrip("\n") == text


def test_d6_reply_to_previous_threads_the_message() -> None:
    row = _row(
        subject="Re: Welcome",
        in_reply_to="<enrollment.1.0.acme@acme.test>",
        message_id="<enrollment.1.1.acme@acme.test>",
    )
    msg = _roundtrip(build_message(row, WORKSPACE, date=NOW, unsubscribe_url=UNSUB))
    assert str(msg["In-Reply-To"]) == "<enrollment.1.0.acme@acme.test>"
    assert str(msg["References"]) == "<enrollment.1.0.acme@acme.test>"
    assert str(msg["Subject"]) == "Re: Welcome"


def test_subject_line_breaks_from_user_data_cannot_add_headers() -> None:
    """A contact's name rendered into the subject must not smuggle in a Bcc header."""
    row = _row(subject="Hi Eve\r\nBcc: victim@example.test\nX-Evil: 1")
    wire = build_message(row, WORKSPACE, date=NOW, unsubscribe_url=UNSUB).as_bytes()
    msg = _roundtrip(build_message(row, WORKSPACE, date=NOW, unsubscribe_url=UNSUB))
    assert "Bcc" not in msg and "X-Evil" not in msg
    assert b"\r\nBcc:" not in wire and b"\nX-Evil:" not in wire
    assert str(msg["Subject"]) == "Hi Eve Bcc: victim@example.test X-Evil: 1"


@pytest.mark.parametrize(
    "field, value",
    [
        ("recipient", "bob@example.test\r\nBcc: victim@example.test"),
        ("recipient", "bob@example.test, victim@example.test"),
        ("recipient", "not an address"),
        ("sender", "Ann <ann@acme.test>\nBcc: victim@example.test"),
        ("in_reply_to", "<a@b>\r\nBcc: victim@example.test"),
        ("message_id", "<x@acme.test>\nBcc: victim@example.test"),
    ],
)
def test_addresses_and_ids_with_line_breaks_are_refused(field: str, value: str) -> None:
    with pytest.raises(UnsafeHeader):
        build_message(_row(**{field: value}), WORKSPACE, date=NOW, unsubscribe_url=UNSUB)


def test_unsubscribe_url_with_line_break_is_refused() -> None:
    with pytest.raises(UnsafeHeader):
        build_message(_row(), WORKSPACE, date=NOW, unsubscribe_url=UNSUB + "\r\nBcc: x@y.test")


def test_envelope_sender_is_the_bare_from_address() -> None:
    assert envelope_sender(_row(), WORKSPACE) == "ann@acme.test"
    assert envelope_sender(_row(sender=None), WORKSPACE) == "ann@acme.test"  # the mailbox's From
