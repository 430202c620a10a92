"""Software keys, CSRs and token-adapted CAs for the pure signer tests.

CA keys are software keys behind ``token_private_key``, so every certificate signed here goes through the
same adapter the token path uses; the fake token records each signature it makes. Keys are generated
once per run (RSA generation is slow and a key's freshness is irrelevant here). The clock is fixed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from issuer.signer.certificates import CAChain, build_ca_certificate
from issuer.signer.keys import public_key_fingerprint
from issuer.signer.token_keys import TokenPrivateKey, token_private_key

#: The fixed "now" of every test: far from any real clock, so no test depends on when it runs.
NOW = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)

SoftwareKey = (
    rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey
)
_CURVES: dict[str, Callable[[], ec.EllipticCurve]] = {
    "ecdsa-p256": ec.SECP256R1,
    "ecdsa-p384": ec.SECP384R1,
    "ecdsa-p521": ec.SECP521R1,
    "secp256k1": ec.SECP256K1,
    "secp224r1": ec.SECP224R1,
}


@cache
def software_key(kind: str, slot: str = "leaf") -> SoftwareKey:
    """One key per (kind, slot) for the whole run; ``slot`` keeps a CA's key apart from a leaf's."""
    del slot  # only part of the cache key
    if kind.startswith("rsa-"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind.removeprefix("rsa-")))
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "ed448":
        return ed448.Ed448PrivateKey.generate()
    return ec.generate_private_key(_CURVES[kind]())


def name(text: str) -> x509.Name:
    return x509.Name.from_rfc4514_string(text) if text else x509.Name([])


def build_csr(
    *,
    key: SoftwareKey | None = None,
    subject: x509.Name | None = None,
    common_name: str | None = "app.svc.cluster.local",
    sans: Sequence[x509.GeneralName] = (),
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    uris: Sequence[str] = (),
    emails: Sequence[str] = (),
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> x509.CertificateSigningRequest:
    """A CSR signed by ``key`` (a P-256 key by default) with the given subject, SANs and extensions."""
    key = key or software_key("ecdsa-p256")
    if subject is None:
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
        subject = x509.Name(attributes)
    names = list(sans)
    names += [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    names += [x509.UniformResourceIdentifier(u) for u in uris]
    names += [x509.RFC822Name(e) for e in emails]
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=not len(subject))
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    digest = None if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey) else hashes.SHA256()
    return builder.sign(key, digest)


def pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


@dataclass
class FakeToken:
    """A software key answering ``sign(data, algorithm, pss=...)`` as ``hsm.SigningKey`` does."""

    private: SoftwareKey
    signatures: list[tuple[str | None, bool]] = field(default_factory=list)

    def sign(self, data: bytes, algorithm: hashes.HashAlgorithm | None, *, pss: bool = False) -> bytes:
        self.signatures.append((None if algorithm is None else algorithm.name, pss))
        key = self.private
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(data)
        assert algorithm is not None
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(data, ec.ECDSA(algorithm))
        assert isinstance(key, rsa.RSAPrivateKey)
        scheme = (
            padding.PSS(mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size)
            if pss
            else padding.PKCS1v15()
        )
        return key.sign(data, scheme, algorithm)

    @property
    def key(self) -> TokenPrivateKey:
        public = self.private.public_key()
        assert not isinstance(public, ed448.Ed448PublicKey)
        return token_private_key(public, self.sign)


@dataclass
class IssuingCA:
    """A CA whose key sits behind the token adapter, with its certificate and chain."""

    token: FakeToken
    cert: x509.Certificate
    chain: CAChain

    @property
    def key(self) -> TokenPrivateKey:
        return self.token.key

    @property
    def fingerprint(self) -> str:
        public = self.cert.public_key()
        assert isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey)
        return public_key_fingerprint(public)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def make_ca(
    kind: str = "ecdsa-p256",
    *,
    subject: str = "CN=unit test root,O=trusted-issuer tests",
    now: datetime = NOW,
    duration: timedelta = timedelta(days=3650),
    path_length: int | None = None,
    rsa_pss: bool = False,
    slot: str = "ca",
) -> IssuingCA:
    """A self-signed CA built by ``build_ca_certificate`` through the token adapter."""
    token = FakeToken(software_key(kind, slot))
    cert = build_ca_certificate(
        token.key, name(subject), duration=duration, now=now, path_length=path_length, rsa_pss=rsa_pss
    )
    return IssuingCA(token, cert, CAChain.from_pem(cert.public_bytes(serialization.Encoding.PEM)))


def adopt_ca(private: SoftwareKey, chain_pem: bytes) -> IssuingCA:
    """An issuing CA for an existing chain (an intermediate issued in a test) whose key is ``private``."""
    chain = CAChain.from_pem(chain_pem)
    return IssuingCA(FakeToken(private), chain.issuer, chain)


class PKI:
    """The toolkit a test gets from the ``pki`` fixture: the fixed clock, keys, CSRs and CAs."""

    now = NOW
    key = staticmethod(software_key)
    csr = staticmethod(build_csr)
    pem = staticmethod(pem)
    name = staticmethod(name)
    ca = staticmethod(make_ca)
    adopt_ca = staticmethod(adopt_ca)


@pytest.fixture(scope="session")
def pki() -> PKI:
    return PKI()
