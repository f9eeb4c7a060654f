"""DKIM signatures on outgoing email, per From domain (RFC 6376; RFC 8058 §4; docs/delivery.md).

A workspace lists the domains it signs under ``delivery.dkim`` (:class:`~dripflow.core.model.Dkim`):
each entry a domain, a selector and where its RSA private key is, by environment variable name
only (the key itself is never in the workspace file). A message whose From address is at one of
those domains gets a ``DKIM-Signature`` header prepended to the exact bytes that go on the wire;
any other message goes unsigned.

The signature, made with dkimpy (message parsing, canonicalisation, header selection and hashing,
the header's layout) and OpenSSL (the RSA step, through ``cryptography``; see :meth:`Signer.signature`):

* ``a=rsa-sha256``, ``c=relaxed/relaxed`` (RFC 6376 §3.4.2, §3.4.4: survives the refolding and
  trailing-space changes that relays make);
* ``h=`` covers :data:`SIGNED_HEADERS`, among them ``List-Unsubscribe`` and
  ``List-Unsubscribe-Post``, which RFC 8058 §4 requires a one-click unsubscribe to be signed with
  (SPEC D1). Each name is listed twice: once for the header the message has, once more for one it
  does not have, which signs its absence (RFC 6376 §5.4, "oversigning"): a relay cannot add a
  second From or List-Unsubscribe, nor a Reply-To or a List-Unsubscribe that we did not write,
  without breaking the signature.

Keys are read from the environment and parsed once per distinct key text (a cache keyed by the
domain, selector and PEM text; loading one costs OpenSSL some 35 ms of checks), not per message.
The variables are looked up again for each claimed batch, so a rotated key is used from the next
batch on. A named variable that is not set, an unreadable key file, or a key that is not an RSA
private key of at least 1024 bits (RFC 8301 §3.2) is a :class:`DkimConfigError` naming the domain:
the outbox raises it inside the claim's transaction, which is rolled back, so the messages stay
queued and nothing meant to be signed goes out unsigned.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import dkim
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from dkim.canonicalization import CanonicalizationPolicy

from dripflow.core.errors import UserError
from dripflow.core.model import Delivery, Dkim

__all__ = ["SIGNED_HEADERS", "DkimConfigError", "Signer", "SigningFailed", "sign_from", "signers_for"]

SIGNED_HEADERS: tuple[bytes, ...] = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"in-reply-to",
    b"references",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)
"""What ``h=`` covers (each name twice: oversigned, see the module docstring)."""

_INCLUDE = tuple(name for name in SIGNED_HEADERS for _ in range(2))
_CANONICALIZE = (b"relaxed", b"relaxed")
_POLICY = CanonicalizationPolicy.from_c_value(b"/".join(_CANONICALIZE))
_NAME = b"DKIM-Signature"
MIN_KEY_BITS = 1024
"""RFC 8301 §3.2: signers MUST use RSA keys of at least 1024 bits (2048 recommended)."""


class DkimConfigError(UserError):
    """``delivery.dkim`` cannot be used as configured (a key missing, unreadable or malformed)."""


class SigningFailed(ValueError):
    """dkimpy refused to sign one message (it found it malformed): that message fails, not the batch."""


@dataclass(frozen=True)
class Signer:
    """Signs messages whose From is at ``domain`` with ``selector`` and one parsed private key."""

    domain: str
    selector: str
    key: rsa.RSAPrivateKey = field(repr=False)

    def sign(self, data: bytes) -> bytes:
        """``data`` (a whole message, CRLF line ends) with its ``DKIM-Signature`` header prepended."""
        return self.signature(data) + data

    def signature(self, data: bytes, timestamp: int | None = None) -> bytes:
        """The ``DKIM-Signature`` header (CRLF-terminated) for ``data``, signed now (``t=``).

        The steps of dkimpy's ``DKIM.sign`` (1.1.8, pinned), with dkimpy's own functions, except
        the RSA step: dkimpy computes RSA in pure Python (6.3 ms for a 2048-bit key here), OpenSSL
        takes 0.27 ms, and the key is parsed once instead of per message. The output is byte for
        byte what ``dkim.sign`` gives for the same message, key and moment; a unit test holds it to
        that (tests/unit/test_dkim.py), and every signature in the tests is checked by dkimpy's
        independent verifier.
        """
        try:
            headers, body = dkim.rfc822_parse(data)
        except dkim.DKIMException as exc:
            raise SigningFailed(f"DKIM signing for {self.domain} failed: {exc}") from None
        domain = self.domain.encode("ascii")
        signed_at = int(time.time()) if timestamp is None else timestamp
        fields = [
            (b"v", b"1"),
            (b"a", b"rsa-sha256"),
            (b"c", b"/".join(_CANONICALIZE)),
            (b"d", domain),
            (b"i", b"@" + domain),
            (b"q", b"dns/txt"),
            (b"s", self.selector.encode("ascii")),
            (b"t", str(signed_at).encode("ascii")),
            (b"h", b" : ".join(_INCLUDE)),
            (b"bh", base64.b64encode(hashlib.sha256(_POLICY.canonicalize_body(body)).digest())),
            (b"b", b"0" * 60),  # as dkimpy does: a placeholder that puts b= on a line of its own
        ]
        # RFC 6376 §3.7: the signed headers, then this header with an empty b=, no final CRLF.
        unsigned = dkim.fold(b"; ".join(b"=".join(item) for item in fields), namelen=len(_NAME))
        unsigned = dkim.RE_BTAG.sub(b"\\1", unsigned)
        hasher = hashlib.sha256()
        dkim.hash_headers(
            hasher,
            _POLICY,
            _POLICY.canonicalize_headers(headers),
            _INCLUDE,
            (_NAME, b" " + unsigned),
            dict(fields),
        )
        signature = self.key.sign(hasher.digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        fields[-1] = (b"b", base64.b64encode(signature))
        value: bytes = dkim.fold(b"; ".join(b"=".join(item) for item in fields) + b"\r\n", namelen=len(_NAME))
        return _NAME + b": " + value


def signers_for(delivery: Delivery, environ: Mapping[str, str] | None = None) -> dict[str, Signer]:
    """The signer of each domain of ``delivery.dkim``, by domain (wire form, lower case); {} when
    nothing is signed. Raises :class:`DkimConfigError` when a key cannot be had."""
    if not delivery.dkim:
        return {}
    env = os.environ if environ is None else environ
    return {item.domain: _signer(item.domain, item.selector, _key_text(item, env)) for item in delivery.dkim}


def sign_from(signers: Mapping[str, Signer], sender: str, data: bytes) -> bytes:
    """``data`` signed by the signer of the domain of ``sender`` (the bare From address, domain in
    its IDNA form, as ``mime.envelope_sender`` gives it), or as it is when that domain has none."""
    signer = signers.get(sender.rpartition("@")[2].lower()) if signers else None
    return signer.sign(data) if signer is not None else data


def _key_text(entry: Dkim, env: Mapping[str, str]) -> bytes:
    """The PEM text of ``entry``'s key, from its variable or the file its variable names."""
    where = f"delivery.dkim for {entry.domain}"
    unsent = f"messages from {entry.domain} stay queued until it is"
    if entry.private_key_env is not None:
        text = env.get(entry.private_key_env)
        if text is None:
            raise DkimConfigError(
                f"{where}: private_key_env names {entry.private_key_env}, which is not set in the "
                f"environment; {unsent}"
            )
        # A PEM key in a one-line variable often has its line breaks written as \n.
        return _pem(text.replace("\\n", "\n").encode("utf-8", "replace"))
    assert entry.private_key_file_env is not None  # the model requires one of the two
    path = env.get(entry.private_key_file_env)
    if not path:
        raise DkimConfigError(
            f"{where}: private_key_file_env names {entry.private_key_file_env}, which is not set in "
            f"the environment; {unsent}"
        )
    try:
        with open(path, "rb") as file:
            return _pem(file.read())
    except OSError as exc:
        raise DkimConfigError(
            f"{where}: cannot read the key file {path} ({entry.private_key_file_env}): "
            f"{exc.strerror or type(exc).__name__}; {unsent}"
        ) from None


def _pem(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").strip() + b"\n"


@lru_cache(maxsize=64)
def _signer(domain: str, selector: str, pem: bytes) -> Signer:
    """Parse and check a key once per (domain, selector, key text). A failure is not cached."""
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # not PEM, encrypted, unknown kind
        raise DkimConfigError(
            f"delivery.dkim for {domain}: the private key is not a PEM RSA private key "
            f"(PKCS#1 or PKCS#8, unencrypted): {_first_line(exc)}"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DkimConfigError(
            f"delivery.dkim for {domain}: the private key is not a PEM RSA private key "
            f"(it is {type(key).__name__.removeprefix('_')}; only rsa-sha256 is supported)"
        )
    if key.key_size < MIN_KEY_BITS:
        raise DkimConfigError(
            f"delivery.dkim for {domain}: the private key has {key.key_size} bits; DKIM needs at least "
            f"{MIN_KEY_BITS} (RFC 8301), 2048 recommended"
        )
    return Signer(domain, selector, key)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
