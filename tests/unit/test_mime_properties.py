"""What we put on the wire parses back to what we meant, for any Unicode names, subjects and bodies.

The receiving side is the stdlib parser with ``policy.default`` (what the tests' SMTP server and
most Python mail code use). For every generated message: the headers are exactly the ones we set
(nothing smuggled in), each reads back as its value, and each part's decoded text is the body we
gave it (line ends normalised, ending with one line break), footer included.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import getaddresses

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dripflow.core.validate import load_workspace_text
from dripflow.delivery.mime import (
    _html_footer,
    _one_line,
    _text_footer,
    build_message,
    envelope_recipient,
    envelope_sender,
    parse_single_address,
)
from dripflow.store.tables import Message

WORKSPACE = load_workspace_text(
    """\
workspace: {id: acme, name: Acme, timezone: UTC, base_url: "https://mail.acme.test",
            physical_address: "1 Main St, Springfield, IL"}
mailboxes:
  - {id: ann, from: "Ann <ann@acme.test>", reply_to: "Help Désk <help@acme.test>", default: true}
templates:
  hello: {subject: "Hello", text: "Hi"}
""",
    "acme.yaml",
)
UNSUB = "https://mail.acme.test/t/u/eyJjIjoxfQ.c2lnbmF0dXJl"

# Text as templates render it: any character but NUL and lone surrogates (which no rendered
# template holds); names also without line breaks (a name is one line of a header).
texts = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=300)
names = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00\r\n"), max_size=80)
# ... and plain ASCII, where long words (a pasted URL) and folding meet.
ascii_texts = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=200)
unsubscribe_urls = st.from_regex(r"[A-Za-z0-9_.-]{0,150}", fullmatch=True).map(lambda token: UNSUB + token)
local_parts = st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,20}", fullmatch=True)
dates = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda moment: moment.replace(microsecond=0))


def _lines(text: str) -> str:
    """A body as the recipient reads it: CRLF or CR line ends are line ends; it ends with one."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") else text + "\n"


def _quoted(name: str, addr: str) -> str:
    """``"Name" <addr>`` as a person writes it in a workspace file (no encoding, quoted-pairs)."""
    if not name:
        return addr
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + f'" <{addr}>'


def _read_address(wire: bytes, msg: EmailMessage, header: str) -> tuple[str, str]:
    """(display name, address) as a reader following RFC 2047 sees them.

    ``policy.default`` reads the address, and the name too except for one known flaw: it keeps the
    folding white space between two adjacent encoded words of a display name, which RFC 2047 §6.2
    says to ignore (python/cpython#128110, open). The compat32 decoder does ignore it, so the name is
    compared exactly through that one, and through ``policy.default`` but for white space.
    """
    [parsed] = msg[header].addresses
    raw = message_from_bytes(wire, policy=policy.compat32)[header]
    [(name, addr)] = getaddresses([raw])
    name = str(make_header(decode_header(name)))
    assert addr == parsed.addr_spec
    assert "".join(parsed.display_name.split()) == "".join(name.split())
    return name, addr


def _parse(wire: bytes) -> EmailMessage:
    parsed = message_from_bytes(wire, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    from_name=names | ascii_texts,
    to_name=names | ascii_texts,
    local=local_parts,
    subject=texts | ascii_texts,
    unsub=unsubscribe_urls,
    text=texts,
    body_html=st.none() | texts,
    reply=st.booleans(),
    date=dates,
)
@example(
    from_name="Ann Lée",
    to_name="=?utf-8?q?not_an_encoded_word?=",
    local="bob",
    subject="=?utf-8?q?Bcc:_x?=\r\nBcc: victim@example.test",
    text="From here\r\n.\rline",
    body_html="<p>é</p>",
    reply=True,
    date=datetime(2026, 3, 2, 9, 30, tzinfo=UTC),
    unsub=UNSUB + "x" * 120,
)
def test_what_is_built_parses_back_to_the_same_headers_and_bodies(
    from_name: str,
    to_name: str,
    local: str,
    subject: str,
    text: str,
    body_html: str | None,
    reply: bool,
    date: datetime,
    unsub: str,
) -> None:
    sender = _quoted(from_name, "ann@acme.test")
    recipient = _quoted(to_name, f"{local}@example.test")
    row = Message(
        key="enrollment:1:0",
        contact_id=1,
        channel="email",
        recipient=recipient,
        sender=sender,
        mailbox="ann",
        template="hello",
        subject=subject,
        body_text=text,
        body_html=body_html,
        in_reply_to="<enrollment.1.0.acme@acme.test>" if reply else None,
        message_id="<enrollment.1.1.acme@acme.test>",
    )
    wire = build_message(row, WORKSPACE, date=date, unsubscribe_url=unsub).as_bytes()
    assert wire.isascii()
    assert all(len(line) <= 998 for line in wire.split(b"\r\n"))
    assert b"\n" not in wire.replace(b"\r\n", b"")  # CRLF line ends only
    msg = _parse(wire)

    expected = {"From", "To", "Reply-To", "Subject", "Date", "Message-ID", "List-Unsubscribe"}
    expected |= {"List-Unsubscribe-Post", "MIME-Version", "Content-Type"}
    if reply:
        expected |= {"In-Reply-To", "References"}
    if body_html is None:
        expected.add("Content-Transfer-Encoding")
    assert sorted(msg.keys()) == sorted(expected)  # each once, nothing else

    # The names and addresses we understood are what the recipient reads.
    for header, value in (("From", sender), ("To", recipient)):
        assert _read_address(wire, msg, header) == parse_single_address(value, header)
    assert _read_address(wire, msg, "Reply-To") == ("Help Désk", "help@acme.test")
    assert envelope_sender(row, WORKSPACE) == "ann@acme.test"
    assert envelope_recipient(row) == f"{local}@example.test"
    assert str(msg["Subject"]) == _one_line(subject)
    assert msg["Date"].datetime == date
    assert str(msg["Message-ID"]) == "<enrollment.1.1.acme@acme.test>"
    if reply:
        assert str(msg["In-Reply-To"]) == str(msg["References"]) == "<enrollment.1.0.acme@acme.test>"
    assert str(msg["List-Unsubscribe"]) == f"<{unsub}>"
    assert str(msg["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"

    parts = [part for part in msg.walk() if not part.is_multipart()]
    assert msg.get_content_type() == ("text/plain" if body_html is None else "multipart/alternative")
    assert [part.get_content_type() for part in parts] == ["text/plain"] + (
        ["text/html"] * (body_html is not None)
    )
    plain = parts[0].get_content().replace("\r\n", "\n")
    assert plain == _lines(_text_footer(text, "1 Main St, Springfield, IL", unsub))
    if body_html is not None:
        html = parts[1].get_content().replace("\r\n", "\n")
        assert html == _lines(_html_footer(body_html, "1 Main St, Springfield, IL", unsub))


@given(name=names.filter(lambda name: name == " ".join(name.split()) and name.isprintable()))
def test_a_printable_name_survives_being_written_as_an_address(name: str) -> None:
    """For names a person would type (printable, single spaces), the name read back is the name."""
    sender = _quoted(name, "ann@acme.test")
    row = Message(
        key="k",
        recipient="bob@example.test",
        sender=sender,
        mailbox="ann",
        subject="s",
        body_text="t",
        body_html=None,
        in_reply_to=None,
        message_id="<m@acme.test>",
    )
    wire = build_message(
        row, WORKSPACE, date=datetime(2026, 1, 1, tzinfo=UTC), unsubscribe_url=None
    ).as_bytes()
    assert _read_address(wire, _parse(wire), "From") == (name, "ann@acme.test")


def test_internationalised_domain_goes_out_in_ascii_and_a_utf8_local_part_is_refused() -> None:
    row = Message(
        key="k",
        recipient="Jörg <jorg@bücher.example>",
        sender=None,
        mailbox="ann",
        subject="s",
        body_text="t",
        body_html=None,
        in_reply_to=None,
        message_id="<m@acme.test>",
    )
    date = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=1)
    msg = _parse(build_message(row, WORKSPACE, date=date, unsubscribe_url=None).as_bytes())
    assert msg["To"].addresses[0].addr_spec == "jorg@xn--bcher-kva.example"
    assert envelope_recipient(row) == "jorg@xn--bcher-kva.example"
    row.recipient = "jörg@bücher.example"
    try:
        build_message(row, WORKSPACE, date=date, unsubscribe_url=None)
    except ValueError as exc:
        assert "SMTPUTF8" in str(exc)
    else:
        raise AssertionError("a non-ASCII local part must be refused")
