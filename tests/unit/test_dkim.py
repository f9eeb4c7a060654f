"""DKIM signatures on the messages the outbox builds (RFC 6376; RFC 8058 §4, SPEC D1):
``delivery.dkim`` read, keys loaded from the environment, messages signed and verified with dkimpy
against the test key's DNS record."""

from __future__ import annotations

import re
from pathlib import Path

import dkim
import pytest

from dripflow.core.model import Delivery, Dkim, Workspace
from dripflow.core.validate import load_workspace_text
from dripflow.delivery import dkim as signing
from dripflow.delivery.dkim import SIGNED_HEADERS, DkimConfigError, Signer, signers_for
from dripflow.delivery.mime import build_message
from tests.dkimkeys import make_key, weak_key_pem
from tests.unit.test_mime import NOW, UNSUB, WORKSPACE, _row

KEY = make_key()
DNS = KEY.dns("s2026", "acme.test")
ENV = {"DKIM_ACME_KEY": KEY.pem}


def _delivery(**entry: str) -> Delivery:
    fields = {"domain": "acme.test", "selector": "s2026", **entry}
    if "private_key_file_env" not in entry:
        fields.setdefault("private_key_env", "DKIM_ACME_KEY")
    return Delivery(dkim=(Dkim.model_validate(fields),))


def _signer(env: dict[str, str] | None = None) -> Signer:
    return signers_for(_delivery(), env if env is not None else ENV)["acme.test"]


def _message(**overrides: object) -> bytes:
    """A marketing message as claim_due puts it on the wire: built, flattened (CRLF line ends)."""
    return build_message(_row(**overrides), WORKSPACE, date=NOW, unsubscribe_url=UNSUB).as_bytes()


def _tags(signed: bytes) -> dict[str, str]:
    header = signed.split(b"\r\n\r\n", 1)[0].decode("ascii")
    value = re.match(r"DKIM-Signature:(.*?)\r\n(?! |\t)", header, re.S)
    assert value is not None, "the message does not start with a DKIM-Signature header"
    unfolded = re.sub(r"\s+", "", value.group(1))
    return dict(item.split("=", 1) for item in unfolded.split(";") if item)


def test_a_signed_message_verifies_against_the_dns_record() -> None:
    # RFC 6376 §3.5/§6: the signature verifies with the public key published at s2026._domainkey.acme.test
    data = _message()
    signed = _signer().sign(data)
    assert dkim.verify(signed, dnsfunc=DNS)
    # The signature is a header prepended to the exact bytes that go on the wire, nothing else changed.
    assert signed.startswith(b"DKIM-Signature: ") and signed.endswith(data)
    header = signed[: len(signed) - len(data)]
    assert header.endswith(b"\r\n") and b"\n" not in header.replace(b"\r\n", b"")
    # A verifier with another key for that selector refuses it.
    assert not dkim.verify(signed, dnsfunc=make_key(label="other").dns("s2026", "acme.test"))


def test_the_header_is_byte_for_byte_what_dkimpy_itself_signs() -> None:
    # The RSA step is OpenSSL's (docs/performance.md); everything else is dkimpy's sign(), and the
    # result must not differ from dkim.sign for the same message, key, header list and moment
    data = _message(in_reply_to="<enrollment.1.0.acme@acme.test>")
    ours = _signer().signature(data, timestamp=1_790_000_000)
    theirs = _dkimpy_sign(data, 1_790_000_000)
    assert ours == theirs
    assert ours.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=acme.test;")


def _dkimpy_sign(data: bytes, at: int) -> bytes:
    original = dkim.time.time
    dkim.time.time = lambda: at  # dkimpy reads the wall clock for t=
    try:
        signature: bytes = dkim.sign(
            data,
            b"s2026",
            b"acme.test",
            KEY.pem.encode("ascii"),
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=[name for name in SIGNED_HEADERS for _ in range(2)],
        )
    finally:
        dkim.time.time = original
    return signature


def test_the_signature_covers_the_one_click_unsubscribe_headers() -> None:
    # RFC 8058 §4: List-Unsubscribe and List-Unsubscribe-Post MUST be covered by the DKIM signature (D1)
    tags = _tags(_signer().sign(_message()))
    signed_names = tags["h"].lower().split(":")
    assert "list-unsubscribe" in signed_names and "list-unsubscribe-post" in signed_names
    for name in ("from", "to", "subject", "date", "message-id", "mime-version", "content-type", "reply-to"):
        assert name in signed_names
    # Oversigned (RFC 6376 §5.4): each name twice, so a second instance cannot be added.
    assert signed_names.count("from") == 2 and signed_names.count("list-unsubscribe") == 2
    assert signed_names == [name.decode() for name in SIGNED_HEADERS for _ in range(2)]
    assert (tags["v"], tags["a"], tags["c"], tags["d"], tags["s"]) == (
        "1",
        "rsa-sha256",
        "relaxed/relaxed",
        "acme.test",
        "s2026",
    )


def test_a_reply_signs_in_reply_to_and_references() -> None:
    # D6 replies carry In-Reply-To/References; RFC 6376 §5.4 lists them among the fields to sign
    signed = _signer().sign(
        _message(in_reply_to="<enrollment.1.0.acme@acme.test>", message_id="<r@acme.test>")
    )
    assert dkim.verify(signed, dnsfunc=DNS)
    names = _tags(signed)["h"].split(":")
    assert "in-reply-to" in names and "references" in names
    tampered = signed.replace(b"In-Reply-To: <enrollment.1.0", b"In-Reply-To: <enrollment.9.0", 1)
    assert tampered != signed and not dkim.verify(tampered, dnsfunc=DNS)


@pytest.mark.parametrize(
    ("change", "what"),
    [
        (
            (
                b"List-Unsubscribe: <https://mail.acme.test/t/u/eyJjIjoxfQ",
                b"List-Unsubscribe: <https://evil.test/u/eyJjIjoxfQ",
            ),
            "the unsubscribe URL",
        ),
        (
            (
                b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                b"List-Unsubscribe-Post: List-Unsubscribe=Two-Click",
            ),
            "the one-click header",
        ),
        ((b"Hi Bob,", b"Hi Rob,"), "the body"),
        ((b"Subject: ", b"Subject: Re: "), "the subject"),
    ],
)
def test_tampering_breaks_the_signature(change: tuple[bytes, bytes], what: str) -> None:
    # RFC 6376 §3.7: the body hash and the header hash; RFC 8058 §4: the unsubscribe headers are covered
    signed = _signer().sign(_message())
    tampered = signed.replace(*change, 1)
    assert tampered != signed, what
    assert not dkim.verify(tampered, dnsfunc=DNS), what


@pytest.mark.parametrize(
    "added",
    [
        b"List-Unsubscribe: <https://evil.test/u>\r\n",
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
        b"Reply-To: thief@evil.test\r\n",
        b"Subject: Urgent: confirm your password\r\n",
        b"To: someone-else@evil.test\r\n",
    ],
)
def test_oversigning_breaks_the_signature_when_a_header_is_added_on_top(added: bytes) -> None:
    # RFC 6376 §5.4 (and §8.15): a verifier hashes the *last* instance of each signed name, and a
    # reader shows the first; signing one instance more than there is means an extra one, added
    # above, no longer verifies. Signed once per name only, these would all still verify.
    signed = _signer().sign(_message())
    assert dkim.verify(signed, dnsfunc=DNS)
    assert not dkim.verify(added + signed, dnsfunc=DNS)
    once_each = dkim.sign(
        _message(),
        b"s2026",
        b"acme.test",
        KEY.pem.encode("ascii"),
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=list(SIGNED_HEADERS),
    )
    assert dkim.verify(added + once_each + _message(), dnsfunc=DNS)  # what oversigning prevents


def test_relaxed_canonicalisation_survives_refolding_by_a_relay() -> None:
    # RFC 6376 §3.4.2/§3.4.4 relaxed/relaxed: whitespace changes of a relay keep the signature valid
    signed = _signer().sign(_message())
    refolded = signed.replace(b"Date: Mon, 02 Mar", b"Date: Mon,\r\n\t02   Mar", 1).replace(
        b"Hi Bob,\r\n", b"Hi Bob,   \r\n", 1
    )
    assert refolded != signed and dkim.verify(refolded, dnsfunc=DNS)


def test_a_mailbox_on_an_unconfigured_domain_gets_no_signer() -> None:
    # Only the domains listed under delivery.dkim are signed; the outbox looks the From domain up here
    signers = signers_for(_delivery(), ENV)
    assert set(signers) == {"acme.test"}
    assert signers_for(Delivery(), {}) == {}


def test_the_workspace_file_entry_reaches_the_signer(tmp_path: Path) -> None:
    # docs/delivery.md "DKIM": domains are matched in wire form (lower case, IDNA)
    workspace = load_workspace_text(
        """\
workspace: {id: acme, name: Acme, timezone: UTC}
mailboxes:
  - {id: ann, from: "Ann <ann@Acme.TEST>"}
  - {id: bea, from: "Bea <bea@bücher.test>"}
delivery:
  dkim:
    - {domain: ACME.test, selector: s2026, private_key_env: DKIM_ACME_KEY}
    - {domain: bücher.test, selector: b1, private_key_file_env: DKIM_BOOKS_FILE}
""",
        "acme.yaml",
    )
    assert isinstance(workspace, Workspace)
    path = tmp_path / "books.pem"
    path.write_text(make_key(label="books").pem)
    signers = signers_for(workspace.delivery, {**ENV, "DKIM_BOOKS_FILE": str(path)})
    assert set(signers) == {"acme.test", "xn--bcher-kva.test"}
    assert signers["xn--bcher-kva.test"].selector == "b1"


def test_keys_are_parsed_once_and_a_new_key_is_picked_up() -> None:
    # "Load and parse each key once": the same key text gives the same signer object
    assert _signer() is _signer()
    rotated = _signer({"DKIM_ACME_KEY": make_key(label="rotated").pem})
    assert rotated is not _signer()
    assert dkim.verify(rotated.sign(_message()), dnsfunc=make_key(label="rotated").dns("s2026", "acme.test"))


def test_a_key_with_escaped_line_breaks_in_a_one_line_variable_is_accepted() -> None:
    one_line = KEY.pem.strip().replace("\n", "\\n")
    assert "\n" not in one_line
    assert dkim.verify(_signer({"DKIM_ACME_KEY": one_line}).sign(_message()), dnsfunc=DNS)


def test_an_unset_variable_is_a_configuration_error_naming_it() -> None:
    with pytest.raises(DkimConfigError) as caught:
        signers_for(_delivery(), {})
    message = str(caught.value)
    assert "acme.test" in message and "DKIM_ACME_KEY" in message and "not set" in message
    with pytest.raises(DkimConfigError) as caught:
        signers_for(_delivery(private_key_file_env="DKIM_ACME_FILE"), {})
    assert "DKIM_ACME_FILE" in str(caught.value) and "not set" in str(caught.value)


def test_an_unreadable_key_file_is_a_configuration_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(DkimConfigError) as caught:
        signers_for(_delivery(private_key_file_env="DKIM_ACME_FILE"), {"DKIM_ACME_FILE": str(missing)})
    assert str(missing) in str(caught.value) and "acme.test" in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "not a key",
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
        make_key().public,  # the public half, base64, by mistake
    ],
)
def test_a_malformed_key_is_an_error_naming_the_domain(text: str) -> None:
    with pytest.raises(DkimConfigError) as caught:
        _signer({"DKIM_ACME_KEY": text})
    message = str(caught.value)
    assert "acme.test" in message and "not a PEM RSA private key" in message
    assert text not in message  # never echo what might be key material


def test_an_encrypted_or_non_rsa_key_is_refused_naming_the_domain() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1())
    for key in (
        other.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        ),
    ):
        with pytest.raises(DkimConfigError, match=r"delivery\.dkim for acme\.test: the private key is not"):
            _signer({"DKIM_ACME_KEY": key.decode("ascii")})


def test_a_key_under_1024_bits_is_refused() -> None:
    # RFC 8301 §3.2: signers MUST use RSA keys of at least 1024 bits
    with pytest.raises(DkimConfigError, match=r"acme\.test.*512 bits.*at least 1024"):
        _signer({"DKIM_ACME_KEY": weak_key_pem(512)})


def test_the_signer_module_caches_by_key_text() -> None:
    signing._signer.cache_clear()
    _signer()
    _signer()
    assert signing._signer.cache_info().hits >= 1
