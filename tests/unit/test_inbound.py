"""Bounce (RFC 3464) and complaint (RFC 5965) reports in the shapes real MTAs send, parsed into the
X2 events the engine applies (SPEC D5, L1)."""

from __future__ import annotations

import pytest

from dripflow.delivery.inbound import NotAReport, parse_arf, parse_dsn, parse_report

ORIGINAL_ID = "<enrollment.7.0.acme@acme.test>"


def _crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


POSTFIX_HARD = _crlf(f"""\
Return-Path: <>
Received: by mx.acme.test (Postfix) id 4F2A1C0042; Mon,  2 Mar 2026 09:00:05 +0000 (UTC)
Date: Mon,  2 Mar 2026 09:00:05 +0000 (UTC)
From: MAILER-DAEMON@mx.acme.test (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: ann@acme.test
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4F2A1C0042.1772442005/mx.acme.test"
Message-Id: <20260302090005.4F2A1C0042@mx.acme.test>

This is a MIME-encapsulated message.

--4F2A1C0042.1772442005/mx.acme.test
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.acme.test.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<bob@example.test>: host mx.example.test[203.0.113.5] said: 550 5.1.1
    <bob@example.test>: Recipient address rejected: User unknown (in reply to
    RCPT TO command)

--4F2A1C0042.1772442005/mx.acme.test
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.acme.test
X-Postfix-Queue-ID: 4F2A1C0042
X-Postfix-Sender: rfc822; ann@acme.test
Arrival-Date: Mon,  2 Mar 2026 09:00:03 +0000 (UTC)

Final-Recipient: rfc822; bob@example.test
Original-Recipient: rfc822;bob@example.test
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.test
Diagnostic-Code: smtp; 550 5.1.1 <bob@example.test>: Recipient address
    rejected: User unknown

--4F2A1C0042.1772442005/mx.acme.test
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Return-Path: <ann@acme.test>
From: Ann Lee <ann@acme.test>
To: bob@example.test
Subject: Welcome, Bob
Message-ID: {ORIGINAL_ID}
Date: Mon, 02 Mar 2026 09:00:00 +0000

--4F2A1C0042.1772442005/mx.acme.test--
""")

EXIM_SOFT_GAVE_UP = _crlf(f"""\
From: Mail Delivery System <Mailer-Daemon@relay.acme.test>
To: ann@acme.test
Subject: Mail delivery failed: returning message to sender
Content-Type: multipart/report; report-type=delivery-status; boundary=1772442005-eximdsn-1804289383
MIME-Version: 1.0
Auto-Submitted: auto-replied

--1772442005-eximdsn-1804289383
Content-type: text/plain; charset=us-ascii

This message was created automatically by mail delivery software.
A message that you sent could not be delivered to one or more of its
recipients. This is a temporary error. The following address(es) deferred:

  carol@full.test
    retry timeout exceeded

--1772442005-eximdsn-1804289383
Content-type: message/delivery-status

Reporting-MTA: dns; relay.acme.test

Action: failed
Final-Recipient: rfc822;carol@full.test
Status: 4.2.2
Remote-MTA: dns; mx.full.test
Diagnostic-Code: smtp; 452 4.2.2 Mailbox full
Last-Attempt-Date: Thu, 05 Mar 2026 09:00:00 +0000

--1772442005-eximdsn-1804289383
Content-type: message/rfc822

Return-path: <ann@acme.test>
From: Ann Lee <ann@acme.test>
To: carol@full.test
Subject: Hello
Message-ID: {ORIGINAL_ID}
Content-Type: text/plain; charset=utf-8

Hi Carol.

--1772442005-eximdsn-1804289383--
""")

# Exchange-style: two recipients (one failed, one only delayed), Status only in the diagnostic.
EXCHANGE_MIXED = _crlf(f"""\
From: postmaster@corp.test
To: ann@acme.test
Subject: Undeliverable: Hello
Content-Type: multipart/report; report-type="delivery-status";
 boundary="_000_dsn_"
MIME-Version: 1.0

--_000_dsn_
Content-Type: text/plain; charset="us-ascii"

Delivery has failed to these recipients or groups.

--_000_dsn_
Content-Type: message/delivery-status

Reporting-MTA: dns;EX01.corp.test
Received-From-MTA: dns;mx.acme.test
Arrival-Date: Mon, 2 Mar 2026 09:00:04 +0000

Original-Recipient: rfc822;Dan@Corp.test
Final-Recipient: rfc822;dan@corp.test
Action: failed
Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup

Final-Recipient: rfc822;erin@corp.test
Action: delayed
Status: 4.4.7

--_000_dsn_
Content-Type: message/rfc822

From: Ann Lee <ann@acme.test>
To: dan@corp.test, erin@corp.test
Subject: Hello
Message-ID: {ORIGINAL_ID}

Hi.

--_000_dsn_--
""")

ONLY_DELAYED = EXCHANGE_MIXED.replace(b"Action: failed", b"Action: delayed")

ARF_ABUSE = _crlf(f"""\
From: <abuse@isp.test>
Date: Thu, 8 Mar 2026 14:00:00 EDT
Subject: FW: Hello
To: <fbl@acme.test>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
     boundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
192.0.2.1 on Thu, 8 Mar 2026 14:00:00 EDT.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <ann@acme.test>
Original-Rcpt-To: <Frank@Isp.test>
Arrival-Date: Thu, 8 Mar 2026 14:00:00 EDT
Reported-Domain: acme.test
Source-IP: 192.0.2.1

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

From: Ann Lee <ann@acme.test>
To: frank@isp.test
Subject: Hello
Message-ID: {ORIGINAL_ID}
Date: Thu, 8 Mar 2026 13:59:00 -0400

Hi Frank.

--part1_13d.2e68ed54_boundary--
""")

# A feedback loop that redacts the recipient and sends only the original headers.
ARF_REDACTED = _crlf(f"""\
From: fbl@bigmail.test
To: fbl@acme.test
Subject: complaint
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="b1"

--b1
Content-Type: text/plain

A complaint.

--b1
Content-Type: message/feedback-report

Feedback-Type: abuse
Version: 1
User-Agent: BigMail-FBL/2.0

--b1
Content-Type: text/rfc822-headers

From: Ann Lee <ann@acme.test>
To: redacted
Subject: Hello
Message-ID: {ORIGINAL_ID}

--b1--
""")

ARF_NOT_SPAM = ARF_ABUSE.replace(b"Feedback-Type: abuse", b"Feedback-Type: not-spam")


def test_postfix_user_unknown_is_a_hard_bounce_for_the_original_message() -> None:
    assert parse_dsn(POSTFIX_HARD) == [
        {
            "type": "email.bounced",
            "contact": "bob@example.test",
            "message": ORIGINAL_ID,
            "kind": "hard",
            "status": "5.1.1",
            "diagnostic": "smtp; 550 5.1.1 <bob@example.test>: Recipient address rejected: User unknown",
            "id": f"dsn:{ORIGINAL_ID}:bob@example.test",
        }
    ]


def test_exim_4xx_after_retries_is_a_soft_bounce() -> None:
    [event] = parse_dsn(EXIM_SOFT_GAVE_UP)
    assert (event["type"], event["kind"], event["contact"], event["message"]) == (
        "email.bounced",
        "soft",
        "carol@full.test",
        ORIGINAL_ID,
    )


def test_exchange_failed_recipient_counts_and_delayed_does_not() -> None:
    """Action: delayed is a progress note, not a bounce; with no Status, the 5xx code decides."""
    [event] = parse_dsn(EXCHANGE_MIXED)
    assert (event["contact"], event["kind"], event["message"]) == ("dan@corp.test", "hard", ORIGINAL_ID)
    assert "status" not in event
    assert parse_dsn(ONLY_DELAYED) == []


def test_arf_abuse_report_is_a_complaint_for_the_recipient() -> None:
    assert parse_arf(ARF_ABUSE) == [
        {
            "type": "email.complained",
            "contact": "frank@isp.test",
            "message": ORIGINAL_ID,
            "feedback_type": "abuse",
            "reporter": "SomeGenerator/1.0",
            "id": f"arf:{ORIGINAL_ID}:frank@isp.test",
        }
    ]


def test_arf_with_redacted_recipient_still_names_the_message() -> None:
    [event] = parse_arf(ARF_REDACTED)
    assert event["type"] == "email.complained" and event["message"] == ORIGINAL_ID
    assert "contact" not in event  # the caller finds the contact by the message (X2)


def test_arf_not_spam_is_not_a_complaint() -> None:
    assert parse_arf(ARF_NOT_SPAM) == []


def test_parse_report_tells_the_kinds_apart() -> None:
    assert [e["type"] for e in parse_report(POSTFIX_HARD)] == ["email.bounced"]
    assert [e["type"] for e in parse_report(ARF_ABUSE)] == ["email.complained"]


def test_the_same_report_twice_gives_the_same_event_id() -> None:
    """D3: the event id comes from the report's content, so re-processing applies it once."""
    assert parse_dsn(POSTFIX_HARD)[0]["id"] == parse_dsn(POSTFIX_HARD)[0]["id"]


@pytest.mark.parametrize(
    "raw",
    [
        b"From: bob@example.test\r\nSubject: out of office\r\n\r\nI am away.\r\n",
        ARF_ABUSE,  # a complaint is not a DSN
    ],
)
def test_anything_else_is_not_a_dsn(raw: bytes) -> None:
    with pytest.raises(NotAReport):
        parse_dsn(raw)


def test_a_dsn_is_not_an_arf() -> None:
    with pytest.raises(NotAReport):
        parse_arf(POSTFIX_HARD)
