"""RSA keys for DKIM tests, and the DNS answer a verifier would get for them (RFC 6376 §3.6.1)."""

from __future__ import annotations

import base64
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


@dataclass(frozen=True)
class DkimKey:
    pem: str
    """The private key, PKCS#8 PEM (what ``openssl genrsa`` writes since OpenSSL 3)."""
    public: str
    """The public key for the ``p=`` tag: base64 SubjectPublicKeyInfo DER."""

    def txt(self) -> bytes:
        return f"v=DKIM1; k=rsa; p={self.public}".encode("ascii")

    def dns(self, selector: str, domain: str) -> Callable[..., bytes | None]:
        """A ``dnsfunc`` for ``dkim.verify``: this key's TXT record at SELECTOR._domainkey.DOMAIN."""
        wanted = f"{selector}._domainkey.{domain}.".encode("ascii")

        def lookup(name: bytes, timeout: int = 5) -> bytes | None:
            return self.txt() if name == wanted else None

        return lookup


@cache
def make_key(bits: int = 2048, label: str = "a") -> DkimKey:
    """One key per (size, label) for the whole test run: generating one takes a while."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return DkimKey(pem, base64.b64encode(der).decode("ascii"))


def weak_key_pem(bits: int = 512) -> str:
    """An RSA key too short for DKIM (RFC 8301 §3.2), which ``generate_private_key`` refuses to make:
    built from two random probable primes (Fermat-tested; a test key, not a secure one)."""
    e = 65537

    def prime(size: int) -> int:
        while True:
            n = secrets.randbits(size) | (3 << (size - 2)) | 1  # top two bits: p·q has 2·size bits
            if all(pow(a, n - 1, n) == 1 for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)):
                return n

    while True:
        p, q = prime(bits // 2), prime(bits // 2)
        if p != q and math.gcd(e, (p - 1) * (q - 1)) == 1:
            break
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), rsa.RSAPublicNumbers(e, p * q)
    )
    key = numbers.private_key(unsafe_skip_rsa_key_validation=True)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
