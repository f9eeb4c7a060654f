"""Reading replies (issue 6): which messages an email answers, and whether a program sent it."""

from __future__ import annotations

import pytest

from dripflow.delivery.replies import read_reply

OURS = "<enrollment.7.0.shop@shop.test>"


def _email(headers: str, body: str = "Thanks!\r\n") -> bytes:
    return (headers.replace("\n", "\r\n") + "\r\n" + body).encode()


def test_in_reply_to_comes_first_then_references_from_the_newest() -> None:
    reply = read_reply(
        _email(
            "From: Ann Lee <Ann@X.test>\n"
            "Subject: Re: Hello\n"
            "Message-ID: <abc@mail.x.test>\n"
            f"In-Reply-To: {OURS}\n"
            f"References: <first@a.test>\n <second@a.test> {OURS}\n"
        )
    )
    assert reply.answers == (OURS, "<second@a.test>", "<first@a.test>")
    assert reply.sender == "ann@x.test"
    assert reply.automatic is None
    assert reply.key == read_reply(_email(f"Message-ID: <abc@mail.x.test>\nIn-Reply-To: {OURS}\n")).key


def test_without_its_own_message_id_the_key_is_a_hash_of_the_bytes() -> None:
    one = read_reply(_email(f"In-Reply-To: {OURS}\n", "one"))
    two = read_reply(_email(f"In-Reply-To: {OURS}\n", "two"))
    assert one.key != two.key and one.key.startswith("reply:")


def test_a_message_without_thread_headers_answers_nothing() -> None:
    assert read_reply(_email("From: a@x.test\nSubject: hi\n")).answers == ()


def test_only_printable_ascii_message_ids_are_taken() -> None:
    raw = b"In-Reply-To: <caf\xe9@x.test> <ok@x.test>\r\n\r\nhi\r\n"
    assert read_reply(raw).answers == ("<ok@x.test>",)


@pytest.mark.parametrize(
    "header",
    [
        "Auto-Submitted: auto-replied",
        "Auto-Submitted: auto-generated; owner-email=it@x.test",
        "X-Autoreply: yes",
        "X-Autorespond: Vacation",
        "Precedence: bulk",
        "Precedence: auto_reply",
        "X-Failed-Recipients: ann@x.test",
        "Return-Path: <>",
        "Sender: x\nFrom: MAILER-DAEMON@mx.x.test",
        "Subject: Automatic reply: Hello",
        "Subject: Out of Office: Hello",
        "Subject: AUTO: Ann is out of the office",
        "Subject: =?utf-8?q?R=C3=A9ponse_automatique=3A_Hello?=",
        "Subject: Abwesenheitsnotiz: Hello",
    ],
)
def test_automatic_answers_are_recognised(header: str) -> None:
    reply = read_reply(_email(f"{header}\nIn-Reply-To: {OURS}\n"))
    assert reply.automatic is not None
    assert reply.answers == (OURS,)


@pytest.mark.parametrize(
    "header",
    [
        "Auto-Submitted: no",
        "Subject: Re: Out of office hours?",
        "Subject: Re: Hello",
        "Precedence: first-class",
    ],
)
def test_a_person_writing_is_a_reply(header: str) -> None:
    assert read_reply(_email(f"{header}\nFrom: ann@x.test\nIn-Reply-To: {OURS}\n")).automatic is None
