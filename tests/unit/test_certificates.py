"""CSR in, certificate out: what load_csr refuses, and what issue_certificate and the CA builders produce.

Every certificate is signed through the token adapter (``token_private_key``) over a software key, then
parsed back with cryptography and its signature verified with the CA's public key.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID, SignatureAlgorithmOID
from cryptography.x509.verification import PolicyBuilder, Store

from issuer.errors import IssuerError, PermanentError
from issuer.signer.certificates import (
    BACKDATE,
    CAChain,
    SigningRequest,
    canonical_subject,
    check_ca_usable,
    check_csr_agrees,
    csr_matches,
    describe_ca,
    issue_certificate,
    load_csr,
    subject_alternative_names,
)
from issuer.signer.keys import public_key_fingerprint
from issuer.signer.policy import KEY_USAGE_FIELDS, Policy
from tests.goverify import Verdicts, both_verdicts, offline_leaf, openssl_verdict

if TYPE_CHECKING:
    from tests.unit.conftest import PKI, IssuingCA

NOW_CA_AGE = timedelta(days=1)
KU_BITS = KEY_USAGE_FIELDS
CA_KEY_TYPES = ("ecdsa-p256", "ecdsa-p384", "rsa-2048", "ed25519")
LEAF_KEY_TYPES = ("ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "rsa-2048", "rsa-3072", "ed25519")
#: (signature algorithm OID, what the token was asked for: digest name, PSS) per CA key type.
CA_SIGNATURES = {
    "ecdsa-p256": (SignatureAlgorithmOID.ECDSA_WITH_SHA256, ("sha256", False)),
    "ecdsa-p384": (SignatureAlgorithmOID.ECDSA_WITH_SHA384, ("sha384", False)),
    "rsa-2048": (SignatureAlgorithmOID.RSA_WITH_SHA256, ("sha256", False)),
    "ed25519": (SignatureAlgorithmOID.ED25519, (None, False)),
}


def _ip_name(text: str) -> x509.IPAddress:
    return x509.IPAddress(ipaddress.ip_address(text))


def _ku(*bits: str) -> x509.KeyUsage:
    return x509.KeyUsage(**{bit: bit in bits for bit in KU_BITS})  # type: ignore[arg-type]


def _ku_bits(cert: x509.Certificate) -> set[str]:
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    bits = {b for b in KU_BITS[:7] if getattr(usage, b)}
    if usage.key_agreement:
        bits |= {b for b in KU_BITS[7:] if getattr(usage, b)}
    return bits


def _certs(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


def _pem_of_der(der: bytes) -> bytes:
    body = base64.encodebytes(der)
    return b"-----BEGIN CERTIFICATE REQUEST-----\n" + body + b"-----END CERTIFICATE REQUEST-----\n"


def _issue(
    pki: PKI,
    csr: x509.CertificateSigningRequest,
    *,
    ca: IssuingCA | None = None,
    policy: Policy | None = None,
    is_ca: bool = False,
    usages: tuple[str, ...] = (),
    duration: timedelta | None = None,
    at: timedelta = timedelta(0),
    rsa_pss: bool = False,
) -> tuple[x509.Certificate, IssuingCA]:
    ca = ca or pki.ca(now=pki.now - NOW_CA_AGE)
    request = SigningRequest(pki.pem(csr), duration=duration, is_ca=is_ca, usages=usages)
    bundle = issue_certificate(
        csr, request, ca=ca.chain, ca_key=ca.key, policy=policy or Policy(), now=pki.now + at, rsa_pss=rsa_pss
    )
    leaf = _certs(bundle.chain_pem)[0]
    assert bundle.serial_number == leaf.serial_number
    assert bundle.not_after == leaf.not_valid_after_utc
    return leaf, ca


# -- load_csr: what is refused, and why ----------------------------------------------------------------------


def _tampered_signature(pki: PKI) -> bytes:
    der = bytearray(pki.csr().public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte of the ECDSA signature's s
    return _pem_of_der(bytes(der))


def _swapped_public_key(pki: PKI) -> bytes:
    signer, other = pki.key("ecdsa-p256"), pki.key("ecdsa-p256", "other")
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    der = pki.csr(key=signer).public_bytes(serialization.Encoding.DER)
    theirs, ours = signer.public_key().public_bytes(*spki), other.public_key().public_bytes(*spki)
    assert der.count(theirs) == 1 and len(theirs) == len(ours)
    return _pem_of_der(der.replace(theirs, ours))


def _many_attributes(pki: PKI) -> bytes:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"unit {i}") for i in range(33)]
    return pki.pem(pki.csr(subject=x509.Name(attributes)))


BAD_CSRS: list[tuple[Callable[[PKI], bytes], str, str]] = [
    (lambda pki: b"hello, issuer", "CSR is not PEM: no BEGIN CERTIFICATE REQUEST line", "not-pem"),
    (lambda pki: pki.csr().public_bytes(serialization.Encoding.DER), "CSR is not PEM", "der-instead-of-pem"),
    (lambda pki: b"\x30\x82\xff\xff" + bytes(range(256)), "CSR is not PEM", "der-garbage"),
    (lambda pki: pki.pem(pki.csr())[:200], "CSR cannot be parsed", "truncated-pem"),
    (
        lambda pki: b"-----BEGIN CERTIFICATE REQUEST-----\nMIIBAAAA\n-----END CERTIFICATE REQUEST-----\n",
        "CSR cannot be parsed",
        "garbage-between-markers",
    ),
    (lambda pki: pki.pem(pki.csr()) + pki.pem(pki.csr()), "more than one CSR", "two-csrs"),
    (
        lambda pki: (
            pki.pem(pki.csr())
            + pki.pem(pki.csr()).replace(b" CERTIFICATE REQUEST", b" NEW CERTIFICATE REQUEST")
        ),
        "more than one CSR",
        "two-csrs-old-and-new-markers",
    ),
    (_tampered_signature, "CSR signature does not verify with its own public key", "tampered-signature"),
    (_swapped_public_key, "CSR signature does not verify with its own public key", "swapped-public-key"),
    (
        lambda pki: pki.pem(pki.csr(key=pki.key("rsa-1024"))),
        "CSR has an RSA-1024 key; at least 2048 bits are required",
        "rsa-1024",
    ),
    (
        lambda pki: pki.pem(pki.csr(key=pki.key("secp256k1"))),
        "EC key on secp256k1; use P-256",
        "ec-secp256k1",
    ),
    (
        lambda pki: pki.pem(pki.csr(key=pki.key("secp224r1"))),
        "EC key on secp224r1; use P-256",
        "ec-secp224r1",
    ),
    (lambda pki: pki.pem(pki.csr(key=pki.key("ed448"))), "unsupported Ed448PublicKey", "ed448"),
    (lambda pki: pki.pem(pki.csr()) + b"\n" * (64 * 1024), "more than the 65536 allowed", "oversize"),
    (
        lambda pki: pki.pem(pki.csr(common_name="app\x00.evil.com")),
        "CSR subject has a NUL character",
        "nul-in-cn",
    ),
    (_many_attributes, "more than 32 attributes", "too-many-subject-attributes"),
]


@pytest.mark.parametrize(("make", "problem"), [pytest.param(m, p, id=i) for m, p, i in BAD_CSRS])
def test_load_csr_refuses(pki: PKI, make: Callable[[PKI], bytes], problem: str) -> None:
    with pytest.raises(PermanentError, match=re.escape(problem)):
        load_csr(make(pki))


@pytest.mark.parametrize("kind", LEAF_KEY_TYPES)
def test_load_csr_accepts_every_leaf_key_type(pki: PKI, kind: str) -> None:
    csr = load_csr(pki.pem(pki.csr(key=pki.key(kind))))
    assert csr.public_key() == pki.key(kind).public_key()


def test_load_csr_accepts_new_certificate_request_marker(pki: PKI) -> None:
    legacy = pki.pem(pki.csr()).replace(b" CERTIFICATE REQUEST", b" NEW CERTIFICATE REQUEST")
    assert load_csr(legacy).subject == pki.csr().subject


def _raw_dns_san(value: bytes) -> x509.UnrecognizedExtension:
    """A SAN with one dNSName of arbitrary bytes, past cryptography's A-label check."""
    inner = b"\x82" + bytes([len(value)]) + value
    return x509.UnrecognizedExtension(
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30" + bytes([len(inner)]) + inner
    )


@pytest.mark.parametrize(
    ("sans", "extensions", "problem"),
    [
        pytest.param(
            [], [_raw_dns_san("bücher.example".encode())], "is not a valid DNS name", id="idna-u-label"
        ),
        pytest.param(
            [x509.DNSName("-app.example.com")], [], "not a valid DNS name", id="label-starts-with-hyphen"
        ),
        pytest.param(
            [x509.DNSName("app-.example.com")], [], "not a valid DNS name", id="label-ends-with-hyphen"
        ),
        pytest.param([x509.DNSName("app..example.com")], [], "not a valid DNS name", id="empty-label"),
        pytest.param(
            [x509.DNSName("a" * 64 + ".example.com")], [], "not a valid DNS name", id="label-over-63"
        ),
        pytest.param([x509.DNSName("a." * 127 + "com")], [], "not a valid DNS name", id="name-over-253"),
        pytest.param([x509.DNSName("app example.com")], [], "not a valid DNS name", id="space"),
        pytest.param([x509.DNSName("*.*.example.com")], [], "not a valid DNS name", id="double-wildcard"),
        pytest.param([x509.DNSName("app.*.example.com")], [], "not a valid DNS name", id="inner-wildcard"),
        pytest.param([x509.DNSName("a*.example.com")], [], "not a valid DNS name", id="partial-wildcard"),
        pytest.param([x509.DNSName("*")], [], "not a valid DNS name", id="bare-wildcard"),
        pytest.param(
            [x509.RFC822Name("alice")], [], "email SAN 'alice' is not a valid address", id="email-without-at"
        ),
        pytest.param(
            [x509.RFC822Name("@example.com")], [], "is not a valid address", id="email-without-local"
        ),
        pytest.param(
            [x509.RFC822Name("alice@exa mple.com")], [], "not a valid DNS name", id="email-bad-domain"
        ),
        pytest.param(
            [x509.UniformResourceIdentifier("spiffe://a b/x")], [], "is not a valid URI", id="uri-space"
        ),
        pytest.param(
            [x509.UniformResourceIdentifier("no-scheme")], [], "is not a valid URI", id="uri-no-scheme"
        ),
        pytest.param(
            [x509.DNSName(f"n{i}.example.com") for i in range(501)],
            [],
            "CSR has 501 subject alternative names, more than 500",
            id="too-many-sans",
        ),
    ],
)
def test_subject_alternative_names_refuses(
    pki: PKI, sans: list[x509.GeneralName], extensions: list[x509.UnrecognizedExtension], problem: str
) -> None:
    csr = load_csr(pki.pem(pki.csr(sans=sans, extensions=[(e, False) for e in extensions])))
    with pytest.raises(PermanentError, match=re.escape(problem)):
        subject_alternative_names(csr)


@pytest.mark.parametrize(
    "sans",
    [
        pytest.param([x509.DNSName("xn--bcher-kva.example")], id="idna-a-label"),
        pytest.param([x509.DNSName("*.app.example.com")], id="wildcard"),
        pytest.param([x509.DNSName("_acme.app.example.com")], id="underscore-label"),
        pytest.param([x509.DNSName(f"n{i}.example.com") for i in range(500)], id="exactly-500-sans"),
        pytest.param([x509.DNSName("a" * 63 + ".example.com")], id="label-of-63"),
    ],
)
def test_subject_alternative_names_accepts(pki: PKI, sans: list[x509.GeneralName]) -> None:
    assert subject_alternative_names(load_csr(pki.pem(pki.csr(sans=sans)))) == sans


def test_ip_network_san_is_refused(pki: PKI) -> None:
    csr = load_csr(pki.pem(pki.csr(sans=[x509.IPAddress(ipaddress.ip_network("10.0.0.0/8"))])))
    with pytest.raises(PermanentError, match="IP"):
        subject_alternative_names(csr)


def test_dns_name_with_two_trailing_dots_is_refused(pki: PKI) -> None:
    csr = load_csr(pki.pem(pki.csr(dns=["app.example.com.."])))
    with pytest.raises(PermanentError, match="not a valid DNS name"):
        subject_alternative_names(csr)


# -- check_csr_agrees ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "extensions", "is_ca", "usages", "problem"),
    [
        pytest.param("rsa-2048", [], False, (), None, id="no-ku-no-eku-constrains-nothing"),
        pytest.param(
            "ecdsa-p256",
            [x509.BasicConstraints(ca=True, path_length=None)],
            False,
            (),
            "CSR asks for a CA certificate but spec.isCA is false",
            id="csr-ca-true-request-not-ca",
        ),
        pytest.param(
            "ecdsa-p256",
            [x509.BasicConstraints(ca=False, path_length=None)],
            True,
            (),
            "CSR asks for a non-CA certificate but spec.isCA is true",
            id="csr-ca-false-request-ca",
        ),
        pytest.param(
            "ecdsa-p256", [x509.BasicConstraints(ca=True, path_length=0)], True, (), None, id="csr-ca-agrees"
        ),
        pytest.param(
            "rsa-2048",
            [_ku("digital_signature", "key_encipherment")],
            False,
            (),
            None,
            id="rsa-ku-matches-default-usages",
        ),
        pytest.param(
            "rsa-2048",
            [_ku("digital_signature")],
            False,
            (),
            "CSR key usages (digital_signature) differ from "
            "spec.usages (digital_signature, key_encipherment)",
            id="rsa-ku-differs-from-default-usages",
        ),
        pytest.param(
            "rsa-2048",
            [_ku("digital_signature", "content_commitment")],
            False,
            ("digital signature",),
            "CSR key usages (content_commitment, digital_signature) differ from "
            "spec.usages (digital_signature)",
            id="ku-asks-more-than-usages",
        ),
        pytest.param(
            "ecdsa-p256", [_ku("digital_signature")], False, (), None, id="ec-omits-key-encipherment"
        ),
        pytest.param(
            "ecdsa-p256",
            [_ku("digital_signature", "key_encipherment")],
            False,
            (),
            None,
            id="ec-includes-key-encipherment",
        ),
        pytest.param(
            "ed25519", [_ku("digital_signature")], False, (), None, id="ed25519-omits-key-encipherment"
        ),
        pytest.param(
            "ecdsa-p256",
            [x509.BasicConstraints(ca=True, path_length=None), _ku("digital_signature", "key_cert_sign")],
            True,
            (),
            None,
            id="ca-csr-with-cert-sign",
        ),
        pytest.param(
            "ecdsa-p256",
            [x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH])],
            False,
            ("digital signature", "server auth", "client auth"),
            None,
            id="eku-agrees-in-any-order",
        ),
        pytest.param(
            "ecdsa-p256",
            [x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])],
            False,
            ("digital signature", "client auth"),
            "CSR extended key usages (1.3.6.1.5.5.7.3.1) differ from spec.usages (1.3.6.1.5.5.7.3.2)",
            id="eku-differs",
        ),
        pytest.param(
            "ecdsa-p256",
            [x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING])],
            False,
            (),
            "CSR extended key usages (1.3.6.1.5.5.7.3.3) differ from spec.usages (none)",
            id="eku-where-usages-have-none",
        ),
    ],
)
def test_check_csr_agrees(
    pki: PKI,
    kind: str,
    extensions: list[x509.ExtensionType],
    is_ca: bool,
    usages: tuple[str, ...],
    problem: str | None,
) -> None:
    csr = load_csr(pki.pem(pki.csr(key=pki.key(kind), extensions=[(e, True) for e in extensions])))
    request = SigningRequest(pki.pem(csr), is_ca=is_ca, usages=usages)
    if problem is None:
        check_csr_agrees(csr, request)
    else:
        with pytest.raises(PermanentError, match=re.escape(problem)):
            check_csr_agrees(csr, request)


def test_issue_certificate_checks_the_csr_agrees(pki: PKI) -> None:
    csr = pki.csr(extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)])
    with pytest.raises(PermanentError, match=r"spec\.isCA is false"):
        _issue(pki, csr, policy=Policy(allow_ca=True))


# -- issue_certificate: every CA key type signs every leaf key type ------------------------------------------


@pytest.mark.parametrize("leaf_kind", [pytest.param(k, id=f"leaf-{k}") for k in LEAF_KEY_TYPES])
@pytest.mark.parametrize("ca_kind", [pytest.param(k, id=f"ca-{k}") for k in CA_KEY_TYPES])
def test_issues_for_every_ca_and_leaf_key_type(pki: PKI, ca_kind: str, leaf_kind: str) -> None:
    ca = pki.ca(ca_kind, now=pki.now - NOW_CA_AGE)
    csr = pki.csr(key=pki.key(leaf_kind), common_name="app.svc.cluster.local", dns=["app.svc.cluster.local"])
    leaf, _ = _issue(pki, csr, ca=ca, duration=timedelta(hours=24))

    algorithm, token_call = CA_SIGNATURES[ca_kind]
    assert leaf.signature_algorithm_oid == algorithm
    assert ca.token.signatures == [token_call, token_call]  # the CA's own, then the leaf's
    leaf.verify_directly_issued_by(ca.cert)
    assert leaf.issuer == ca.cert.subject
    assert leaf.subject == csr.subject
    assert leaf.public_key() == pki.key(leaf_kind).public_key()
    assert leaf.version == x509.Version.v3

    assert 2**63 < leaf.serial_number < 2**159  # positive, at most 20 octets, 64+ bits of entropy
    assert leaf.not_valid_before_utc == pki.now - BACKDATE
    assert leaf.not_valid_after_utc == pki.now + timedelta(hours=24)

    extensions = leaf.extensions
    constraints = extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value == x509.BasicConstraints(ca=False, path_length=None)
    ski = extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(leaf.public_key())  # type: ignore[arg-type]
    assert not ski.critical
    aki = extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    assert aki.authority_cert_issuer is None and aki.authority_cert_serial_number is None
    usage = extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    expected_bits = (
        {"digital_signature", "key_encipherment"} if leaf_kind.startswith("rsa") else {"digital_signature"}
    )
    assert _ku_bits(leaf) == expected_bits  # EC and Ed25519 leaves never get keyEncipherment
    san = extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical
    assert list(san.value) == [x509.DNSName("app.svc.cluster.local")]
    with pytest.raises(x509.ExtensionNotFound):
        extensions.get_extension_for_class(x509.ExtendedKeyUsage)


@pytest.mark.parametrize("leaf_kind", ["ecdsa-p256", "rsa-2048"])
def test_rsa_pss_signature(pki: PKI, leaf_kind: str) -> None:
    ca = pki.ca("rsa-2048", now=pki.now - NOW_CA_AGE, rsa_pss=True)
    leaf, _ = _issue(pki, pki.csr(key=pki.key(leaf_kind)), ca=ca, rsa_pss=True)
    assert ca.cert.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS
    assert leaf.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS
    assert ca.token.signatures == [("sha256", True), ("sha256", True)]
    leaf.verify_directly_issued_by(ca.cert)


def test_serials_are_distinct(pki: PKI) -> None:
    ca = pki.ca(now=pki.now - NOW_CA_AGE)
    csr = pki.csr()
    serials = {_issue(pki, csr, ca=ca)[0].serial_number for _ in range(32)}
    assert len(serials) == 32
    assert all(s > 2**63 for s in serials)


def test_signature_verifies_with_ca_public_key_only(pki: PKI) -> None:
    leaf, ca = _issue(pki, pki.csr())
    other = pki.ca(slot="other-ca", now=pki.now - NOW_CA_AGE)
    leaf.verify_directly_issued_by(ca.cert)
    with pytest.raises(InvalidSignature):
        leaf.verify_directly_issued_by(other.cert)


# -- validity ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ca_made", "ca_duration", "at", "policy", "duration", "not_before", "not_after"),
    [
        pytest.param(
            -timedelta(days=1), timedelta(days=3650), timedelta(0), Policy(), None,
            -BACKDATE, timedelta(hours=2160), id="default-duration-backdated",
        ),
        pytest.param(
            -timedelta(days=1), timedelta(days=3650), timedelta(0), Policy(), timedelta(minutes=90),
            -BACKDATE, timedelta(minutes=90), id="requested-duration",
        ),
        pytest.param(
            -timedelta(days=1), timedelta(days=3650), timedelta(0),
            Policy(max_duration=timedelta(hours=2160)), timedelta(days=365),
            -BACKDATE, timedelta(hours=2160), id="clamped-to-policy-max",
        ),
        pytest.param(
            -timedelta(days=1), timedelta(days=30), timedelta(0), Policy(), timedelta(days=90),
            -BACKDATE, timedelta(days=29), id="clamped-to-ca-not-after",
        ),
        pytest.param(
            timedelta(0), timedelta(days=3650), timedelta(minutes=2), Policy(), timedelta(hours=1),
            timedelta(minutes=2) - BACKDATE, timedelta(minutes=62), id="backdated-after-ca-not-before",
        ),
        pytest.param(
            timedelta(0), timedelta(days=3650), -timedelta(minutes=2), Policy(), timedelta(hours=1),
            -BACKDATE, timedelta(minutes=58), id="backdate-stops-at-ca-not-before",
        ),
        pytest.param(
            -timedelta(days=1), timedelta(days=3650), timedelta(0),
            Policy(min_duration=timedelta(seconds=1), max_duration=timedelta(seconds=30),
                   default_duration=timedelta(seconds=30)), None,
            -timedelta(seconds=3), timedelta(seconds=30), id="short-lifetime-backdated-a-tenth",
        ),
    ],
)  # fmt: skip
def test_validity(
    pki: PKI,
    ca_made: timedelta,
    ca_duration: timedelta,
    at: timedelta,
    policy: Policy,
    duration: timedelta | None,
    not_before: timedelta,
    not_after: timedelta,
) -> None:
    ca = pki.ca(now=pki.now + ca_made, duration=ca_duration)
    leaf, _ = _issue(pki, pki.csr(), ca=ca, policy=policy, duration=duration, at=at)
    assert leaf.not_valid_before_utc == pki.now + not_before
    assert leaf.not_valid_after_utc == pki.now + not_after
    assert leaf.not_valid_before_utc >= ca.cert.not_valid_before_utc
    assert leaf.not_valid_after_utc <= ca.cert.not_valid_after_utc


@pytest.mark.parametrize(
    "at",
    [
        pytest.param(timedelta(days=10), id="at-ca-not-after"),
        pytest.param(timedelta(days=11), id="after-ca-not-after"),
    ],
)
def test_expired_ca_is_refused(pki: PKI, at: timedelta) -> None:
    ca = pki.ca(now=pki.now, duration=timedelta(days=10))
    with pytest.raises(IssuerError, match="the CA certificate expired at") as caught:
        _issue(pki, pki.csr(), ca=ca, at=at)
    assert caught.value.reason == "CAExpired"
    assert ca.token.signatures == [("sha256", False)]  # only the CA's own: nothing signed for the request


# -- subject, SANs and usages in the certificate -------------------------------------------------------------

EVERY_SAN_KIND = [
    x509.DNSName("app.example.com"),
    x509.DNSName("*.app.example.com"),
    x509.IPAddress(ipaddress.ip_address("10.1.2.3")),
    x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
    x509.UniformResourceIdentifier("spiffe://cluster.local/ns/a/sa/x"),
    x509.UniformResourceIdentifier("https://example.com/path?q=1"),
    x509.RFC822Name("alice@example.com"),
    x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), b"\x0c\x11alice@example.com"),
]


def test_every_san_kind_is_copied(pki: PKI) -> None:
    leaf, _ = _issue(pki, pki.csr(sans=EVERY_SAN_KIND))
    assert list(leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value) == EVERY_SAN_KIND


@pytest.mark.parametrize(
    ("subject", "sans", "san_critical"),
    [
        pytest.param(
            "CN=app.example.com,O=Example", [x509.DNSName("app.example.com")], False, id="subject-and-san"
        ),
        pytest.param("", [x509.DNSName("app.example.com")], True, id="empty-subject-critical-san"),
        pytest.param(
            "", [x509.UniformResourceIdentifier("spiffe://cluster.local/ns/a/sa/x")], True, id="spiffe-only"
        ),
        pytest.param("CN=payments,OU=team,O=Example,C=DE", [], None, id="subject-without-sans"),
    ],
)
def test_subject_and_san_criticality(
    pki: PKI, subject: str, sans: list[x509.GeneralName], san_critical: bool | None
) -> None:
    leaf, _ = _issue(pki, pki.csr(subject=pki.name(subject), sans=sans))
    assert leaf.subject == pki.name(subject)
    if san_critical is None:
        with pytest.raises(x509.ExtensionNotFound):
            leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    else:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert san.critical is san_critical
        assert list(san.value) == sans


def test_neither_subject_nor_sans_is_refused(pki: PKI) -> None:
    with pytest.raises(PermanentError, match="neither a subject nor subject alternative names"):
        _issue(pki, pki.csr(common_name=None))


@pytest.mark.parametrize(
    ("kind", "usages", "is_ca", "bits", "extended"),
    [
        pytest.param(
            "rsa-2048", ("digital signature", "key encipherment", "server auth", "client auth"), False,
            {"digital_signature", "key_encipherment"},
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            id="rsa-tls-server-and-client",
        ),
        pytest.param(
            "ecdsa-p256", ("digital signature", "key encipherment", "server auth"), False,
            {"digital_signature"}, [ExtendedKeyUsageOID.SERVER_AUTH], id="ec-drops-key-encipherment",
        ),
        pytest.param(
            "ed25519", ("digital signature", "key agreement", "client auth"), False,
            {"digital_signature"}, [ExtendedKeyUsageOID.CLIENT_AUTH], id="ed25519-drops-key-agreement",
        ),
        pytest.param(
            "ecdsa-p384", ("signing", "key agreement", "encipher only"), False,
            {"digital_signature", "key_agreement", "encipher_only"}, [], id="ec-encipher-only",
        ),
        pytest.param(
            "ecdsa-p256", ("cert sign", "crl sign"), True, {"key_cert_sign", "crl_sign"}, [], id="ca-cert",
        ),
        pytest.param(
            "rsa-2048", (), True, {"digital_signature", "key_encipherment", "key_cert_sign"}, [],
            id="ca-default-usages-get-cert-sign",
        ),
    ],
)  # fmt: skip
def test_usages_in_the_certificate(
    pki: PKI,
    kind: str,
    usages: tuple[str, ...],
    is_ca: bool,
    bits: set[str],
    extended: list[x509.ObjectIdentifier],
) -> None:
    leaf, _ = _issue(
        pki, pki.csr(key=pki.key(kind)), usages=usages, is_ca=is_ca, policy=Policy(allow_ca=is_ca)
    )
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).critical
    assert _ku_bits(leaf) == bits
    constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is is_ca
    if extended:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        assert not eku.critical
        assert list(eku.value) == extended
    else:
        with pytest.raises(x509.ExtensionNotFound):
            leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)


@pytest.mark.parametrize(
    ("policy", "csr_args", "is_ca", "usages", "problem"),
    [
        pytest.param(
            Policy(), {}, True, (), "policy forbids CA certificates",
            id="rejects-ca-request-when-not-allowed",
        ),
        pytest.param(
            Policy(dns_domains=("svc.cluster.local",)), {"dns": ["app.evil.com"]}, False, (),
            "policy forbids DNS name 'app.evil.com'", id="rejects-dns-outside-policy",
        ),
        pytest.param(
            Policy(dns_domains=("svc.cluster.local",)), {"common_name": "app.evil.com"}, False, (),
            "common name 'app.evil.com' is not one of the request's SANs", id="rejects-cn-that-is-no-san",
        ),
        pytest.param(
            Policy(uri_prefixes=("spiffe://cluster.local/ns/a/",)),
            {"common_name": None, "uris": ["spiffe://cluster.local/ns/b/sa/x"]}, False, (),
            "policy forbids URI", id="rejects-spiffe-id-of-other-namespace",
        ),
        pytest.param(
            Policy(dns_domains=("example.com",)),
            {"sans": [x509.DNSName("a.example.com"), EVERY_SAN_KIND[-1]]}, False, (),
            "OtherName SANs cannot be judged", id="rejects-other-name-under-name-rules",
        ),
        pytest.param(
            Policy(allowed_usages=frozenset({"digital signature", "key encipherment"})), {}, False,
            ("digital signature", "code signing"), "policy forbids usages code signing",
            id="rejects-usage-outside-policy",
        ),
        pytest.param(
            Policy(), {}, False, ("digital signature", "frobnicate"), "unknown usage", id="unknown-usage",
        ),
        pytest.param(
            Policy(min_duration=timedelta(hours=1)), {}, False, (), None, id="accepts-default-over-min",
        ),
    ],
)  # fmt: skip
def test_issue_applies_the_policy(
    pki: PKI,
    policy: Policy,
    csr_args: dict[str, object],
    is_ca: bool,
    usages: tuple[str, ...],
    problem: str | None,
) -> None:
    csr = pki.csr(**csr_args)  # type: ignore[arg-type]
    if problem is None:
        _issue(pki, csr, policy=policy, is_ca=is_ca, usages=usages)
        return
    ca = pki.ca(now=pki.now - NOW_CA_AGE)
    with pytest.raises(PermanentError, match=re.escape(problem)):
        _issue(pki, csr, ca=ca, policy=policy, is_ca=is_ca, usages=usages)
    assert len(ca.token.signatures) == 1  # nothing signed for a refused request


# -- chains --------------------------------------------------------------------------------------------------


def test_self_signed_issuer_chain_is_the_leaf_alone(pki: PKI) -> None:
    ca = pki.ca(now=pki.now - NOW_CA_AGE)
    request = SigningRequest(pki.pem(pki.csr()))
    bundle = issue_certificate(pki.csr(), request, ca=ca.chain, ca_key=ca.key, policy=Policy(), now=pki.now)
    chain = _certs(bundle.chain_pem)
    assert len(chain) == 1
    assert _certs(bundle.ca_pem) == [ca.cert]
    chain[0].verify_directly_issued_by(ca.cert)


def test_intermediate_issuer_chain_is_leaf_and_intermediate(pki: PKI) -> None:
    root = pki.ca("ecdsa-p384", subject="CN=unit root", now=pki.now - timedelta(days=30))
    intermediate_key = pki.key("ecdsa-p256", "intermediate")
    intermediate_csr = pki.csr(
        key=intermediate_key,
        subject=pki.name("CN=unit intermediate"),
        extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)],
    )
    intermediate, _ = _issue(
        pki,
        intermediate_csr,
        ca=root,
        policy=Policy(allow_ca=True),
        is_ca=True,
        usages=("cert sign", "crl sign"),
        duration=timedelta(days=365),
        at=-timedelta(days=7),
    )
    intermediate_pem = intermediate.public_bytes(serialization.Encoding.PEM)
    chain = CAChain.from_pem(intermediate_pem + root.pem)
    assert (chain.issuer, chain.intermediates, chain.root) == (intermediate, (), root.cert)

    issuing = pki.adopt_ca(intermediate_key, intermediate_pem + root.pem)
    leaf_csr = pki.csr(dns=["app.svc.cluster.local"])
    request = SigningRequest(pki.pem(leaf_csr), usages=("digital signature", "server auth"))
    bundle = issue_certificate(
        leaf_csr, request, ca=issuing.chain, ca_key=issuing.key, policy=Policy(), now=pki.now
    )

    leaf, above = _certs(bundle.chain_pem)
    assert above == intermediate
    assert _certs(bundle.ca_pem) == [root.cert]
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert (
        aki.key_identifier
        == intermediate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    )
    # An independent path builder accepts leaf -> intermediate -> root for TLS server use.
    verifier = (
        PolicyBuilder()
        .store(Store([root.cert]))
        .time(pki.now)
        .build_server_verifier(x509.DNSName("app.svc.cluster.local"))
    )
    path = verifier.verify(leaf, [intermediate])
    assert path == [leaf, intermediate, root.cert]


def test_chain_from_pem_refuses_non_pem() -> None:
    with pytest.raises(IssuerError, match="CA certificate is not PEM") as caught:
        CAChain.from_pem(b"not a certificate")
    assert caught.value.reason == "CAInvalid"


# -- the CA certificate --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "path_length", "rsa_pss", "algorithm"),
    [
        pytest.param("ecdsa-p256", None, False, SignatureAlgorithmOID.ECDSA_WITH_SHA256, id="ecdsa-p256"),
        pytest.param(
            "ecdsa-p384", 0, False, SignatureAlgorithmOID.ECDSA_WITH_SHA384, id="ecdsa-p384-pathlen-0"
        ),
        pytest.param("rsa-2048", 1, False, SignatureAlgorithmOID.RSA_WITH_SHA256, id="rsa-2048-pathlen-1"),
        pytest.param("rsa-2048", None, True, SignatureAlgorithmOID.RSASSA_PSS, id="rsa-2048-pss"),
        pytest.param("ed25519", None, False, SignatureAlgorithmOID.ED25519, id="ed25519"),
    ],
)
def test_build_ca_certificate(
    pki: PKI, kind: str, path_length: int | None, rsa_pss: bool, algorithm: x509.ObjectIdentifier
) -> None:
    ca = pki.ca(
        kind,
        subject="CN=mesh root,O=example",
        duration=timedelta(days=3650),
        path_length=path_length,
        rsa_pss=rsa_pss,
    )
    cert = ca.cert
    assert cert.subject == cert.issuer == pki.name("CN=mesh root,O=example")
    assert cert.signature_algorithm_oid == algorithm
    cert.verify_directly_issued_by(cert)
    assert cert.public_key() == pki.key(kind, "ca").public_key()
    assert cert.serial_number > 2**63
    assert cert.not_valid_before_utc == pki.now - BACKDATE
    assert cert.not_valid_after_utc == pki.now + timedelta(days=3650)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value == x509.BasicConstraints(ca=True, path_length=path_length)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert _ku_bits(cert) == {"key_cert_sign", "crl_sign"}
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert not ski.critical
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())  # type: ignore[arg-type]
    check_ca_usable(ca.chain, ca.fingerprint, pki.now)


@pytest.mark.parametrize(
    "duration", [pytest.param(timedelta(0), id="zero"), pytest.param(-timedelta(days=1), id="negative")]
)
def test_build_ca_certificate_refuses_non_positive_duration(pki: PKI, duration: timedelta) -> None:
    with pytest.raises(PermanentError, match="CA duration must be positive"):
        pki.ca(duration=duration)


def _self_signed(
    pki: PKI, extensions: list[tuple[x509.ExtensionType, bool]], *, slot: str = "odd-ca"
) -> x509.Certificate:
    key = pki.key("ecdsa-p256", slot)
    subject = pki.name("CN=odd ca")
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(pki.now - timedelta(days=1))
        .not_valid_after(pki.now + timedelta(days=1))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]


def _usable(pki: PKI, cert: x509.Certificate, at: timedelta, fingerprint: str | None) -> None:
    chain = CAChain.from_pem(cert.public_bytes(serialization.Encoding.PEM))
    fingerprint = fingerprint or public_key_fingerprint(cert.public_key())  # type: ignore[arg-type]
    check_ca_usable(chain, fingerprint, pki.now + at)


@pytest.mark.parametrize(
    ("make", "at", "other_key", "reason", "problem"),
    [
        pytest.param(lambda pki: pki.ca().cert, timedelta(0), False, None, None, id="usable"),
        pytest.param(
            lambda pki: pki.ca().cert, timedelta(0), True, "CAKeyMismatch",
            "public key is not the token key's", id="wrong-key",
        ),
        pytest.param(
            lambda pki: _self_signed(pki, [(x509.BasicConstraints(ca=False, path_length=None), True)]),
            timedelta(0), False, "CAInvalid", "is not a CA", id="basic-constraints-not-ca",
        ),
        pytest.param(
            lambda pki: _self_signed(pki, []), timedelta(0), False, "CAInvalid", "is not a CA",
            id="no-basic-constraints",
        ),
        pytest.param(
            lambda pki: _self_signed(
                pki,
                [(x509.BasicConstraints(ca=True, path_length=None), True), (_ku("digital_signature"), True)],
            ),
            timedelta(0), False, "CAInvalid", "lacks keyCertSign", id="ca-without-key-cert-sign",
        ),
        pytest.param(
            lambda pki: _self_signed(pki, [(x509.BasicConstraints(ca=True, path_length=None), True)]),
            timedelta(0), False, None, None, id="ca-without-key-usage-extension",
        ),
        pytest.param(
            lambda pki: pki.ca(duration=timedelta(days=10)).cert, timedelta(days=10), False, "CAExpired",
            "expired at", id="expired-at-not-after",
        ),
        pytest.param(
            lambda pki: pki.ca(duration=timedelta(days=10)).cert, timedelta(days=10) - timedelta(seconds=1),
            False, None, None, id="last-second-of-validity",
        ),
        pytest.param(
            lambda pki: pki.ca(now=pki.now + timedelta(days=1)).cert, timedelta(0), False, "CANotYetValid",
            "is not valid before", id="not-yet-valid",
        ),
        pytest.param(
            lambda pki: pki.ca(now=pki.now + BACKDATE).cert, -BACKDATE, False, None, None,
            id="not-yet-valid-within-clock-tolerance",
        ),
    ],
)  # fmt: skip
def test_check_ca_usable(
    pki: PKI,
    make: Callable[[PKI], x509.Certificate],
    at: timedelta,
    other_key: bool,
    reason: str | None,
    problem: str | None,
) -> None:
    cert = make(pki)
    wrong = pki.ca(slot="wrong").fingerprint if other_key else None
    if problem is None:
        _usable(pki, cert, at, wrong)
        return
    with pytest.raises(IssuerError, match=re.escape(problem)) as caught:
        _usable(pki, cert, at, wrong)
    assert caught.value.reason == reason


# -- sub-CA path lengths ------------------------------------------------------------------------------------


def _sub_ca(pki: PKI, root: IssuingCA, asked: int | None) -> x509.Certificate:
    csr = pki.csr(
        key=pki.key("ecdsa-p256", "sub-ca"),
        subject=pki.name("CN=unit sub-CA"),
        extensions=[(x509.BasicConstraints(ca=True, path_length=asked), True)],
    )
    sub, _ = _issue(
        pki, csr, ca=root, policy=Policy(allow_ca=True), is_ca=True, usages=("cert sign", "crl sign")
    )
    return sub


@pytest.mark.parametrize(
    ("root_path_length", "asked", "issued"),
    [
        (None, None, None),  # no constraint anywhere: none added
        (None, 2, 2),  # the CSR's own limit is kept
        (3, None, 2),  # one below the issuing CA's, so the chain verifies
        (3, 1, 1),  # the tighter of the two
        (1, 5, 0),  # a CSR cannot widen what the issuing CA allows
    ],
)
def test_a_sub_ca_gets_the_tightest_path_length_the_chain_allows(
    pki: PKI, root_path_length: int | None, asked: int | None, issued: int | None
) -> None:
    root = pki.ca(path_length=root_path_length, now=pki.now - NOW_CA_AGE)
    sub = _sub_ca(pki, root, asked)
    constraints = sub.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value == x509.BasicConstraints(ca=True, path_length=issued)
    # The chain itself is valid: each step lies within its parent's constraint.
    CAChain.from_pem(sub.public_bytes(serialization.Encoding.PEM) + root.pem)


def test_a_ca_whose_path_length_is_zero_signs_no_ca(pki: PKI) -> None:
    root = pki.ca(path_length=0, now=pki.now - NOW_CA_AGE)
    with pytest.raises(PermanentError, match="has pathLenConstraint 0: no further CA certificate"):
        _sub_ca(pki, root, None)
    leaf, _ = _issue(pki, pki.csr(dns=["app.svc.cluster.local"]), ca=root)  # leaves are still fine
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


@pytest.mark.parametrize(("root_path_length", "issued"), [(1, None), (2, 0), (4, 2)])
def test_a_sub_ca_fits_every_constraint_above_its_issuer_too(
    pki: PKI, root_path_length: int, issued: int | None
) -> None:
    # root (pathLen n) -> intermediate with no constraint of its own -> the sub-CA asked for now
    root = pki.ca(path_length=root_path_length, now=pki.now - NOW_CA_AGE)
    key = pki.key("ecdsa-p256", "intermediate")
    intermediate = (
        x509.CertificateBuilder()
        .subject_name(pki.name("CN=unit unconstrained intermediate"))
        .issuer_name(root.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(pki.now - NOW_CA_AGE)
        .not_valid_after(pki.now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ku("key_cert_sign", "crl_sign"), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(root.chain.authority_key_identifier, critical=False)
        .sign(root.key, hashes.SHA256())
    )
    issuing = pki.adopt_ca(key, intermediate.public_bytes(serialization.Encoding.PEM) + root.pem)
    if issued is None:  # the root's 1 is spent on the intermediate: no CA may follow it
        with pytest.raises(PermanentError, match="has pathLenConstraint 1: no further CA"):
            _sub_ca(pki, issuing, None)
        return
    sub = _sub_ca(pki, issuing, None)
    assert sub.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == issued


# -- sub-CA name constraints, judged by openssl and Go ------------------------------------------------------

ALPHA_DNS = Policy(allow_ca=True, dns_domains=("alpha.svc.cluster.local",))
EVERY_RULE = Policy(
    allow_ca=True,
    dns_domains=("alpha.svc.cluster.local", ".example.com"),
    ip_ranges=("10.0.0.0/8", "fd00::/8"),
    email_domains=("example.com",),
    uri_prefixes=("spiffe://cluster.local/",),
)


def _real_time_sub_ca(pki: PKI, policy: Policy) -> tuple[x509.Certificate, IssuingCA]:
    """A sub-CA issued by ``issue_certificate`` under ``policy``, valid now on the real clock (openssl
    and Go judge at the real time); its key is a software key the test then signs leaves with."""
    real_now = datetime.now(UTC)
    root = pki.ca(now=real_now - NOW_CA_AGE, slot="nc-root")
    csr = pki.csr(
        key=pki.key("ecdsa-p256", "nc-sub-ca"),
        subject=pki.name("CN=unit constrained sub-CA"),
        extensions=[(x509.BasicConstraints(ca=True, path_length=0), True)],
    )
    sub, _ = _issue(
        pki, csr, ca=root, policy=policy, is_ca=True, usages=("cert sign", "crl sign"), at=real_now - pki.now
    )
    return sub, root


@pytest.mark.parametrize(
    ("policy", "names", "accepted"),
    [
        # the issue's escape: a DNS-only issuer's sub-CA signing a bank's name and another tenant's identity
        pytest.param(
            ALPHA_DNS, [x509.DNSName("www.bank.example")], False, id="dns-rule-refuses-other-domain"
        ),
        pytest.param(
            ALPHA_DNS,
            [x509.UniformResourceIdentifier("spiffe://cluster.local/ns/beta/sa/admin")],
            False,
            id="dns-rule-closes-uri",
        ),
        pytest.param(ALPHA_DNS, [_ip_name("8.8.8.8")], False, id="dns-rule-closes-ipv4"),
        pytest.param(ALPHA_DNS, [_ip_name("2001:db8::1")], False, id="dns-rule-closes-ipv6"),
        pytest.param(ALPHA_DNS, [x509.RFC822Name("admin@evil.com")], False, id="dns-rule-closes-email"),
        pytest.param(
            ALPHA_DNS, [x509.DNSName("evilalpha.svc.cluster.local")], False, id="dns-rule-label-boundary"
        ),
        pytest.param(
            ALPHA_DNS, [x509.DNSName("web.alpha.svc.cluster.local")], True, id="dns-rule-admits-inside"
        ),
        pytest.param(ALPHA_DNS, [x509.DNSName("alpha.svc.cluster.local")], True, id="dns-rule-admits-domain"),
        pytest.param(
            EVERY_RULE, [x509.DNSName("example.com")], False, id="leading-dot-refuses-domain-itself"
        ),
        pytest.param(EVERY_RULE, [x509.DNSName("www.example.com")], True, id="leading-dot-admits-below"),
        pytest.param(EVERY_RULE, [_ip_name("10.1.2.3")], True, id="ip-rule-admits-inside"),
        pytest.param(EVERY_RULE, [_ip_name("11.1.2.3")], False, id="ip-rule-refuses-outside"),
        pytest.param(EVERY_RULE, [_ip_name("fd00::1")], True, id="ipv6-rule-admits-inside"),
        pytest.param(EVERY_RULE, [_ip_name("fe80::1")], False, id="ipv6-rule-refuses-outside"),
        pytest.param(EVERY_RULE, [x509.RFC822Name("bob@example.com")], True, id="email-rule-admits-domain"),
        pytest.param(
            EVERY_RULE, [x509.RFC822Name("bob@mail.example.com")], True, id="email-rule-admits-below"
        ),
        pytest.param(EVERY_RULE, [x509.RFC822Name("bob@evil.com")], False, id="email-rule-refuses-outside"),
        pytest.param(
            EVERY_RULE,
            [x509.UniformResourceIdentifier("spiffe://cluster.local/ns/alpha/sa/web")],
            True,
            id="uri-host-rule-admits-host",
        ),
        pytest.param(
            EVERY_RULE,
            [x509.UniformResourceIdentifier("spiffe://evil.example/ns/alpha/sa/web")],
            False,
            id="uri-host-rule-refuses-other-host",
        ),
        pytest.param(
            EVERY_RULE,
            [x509.UniformResourceIdentifier("spiffe://x.cluster.local/ns/alpha/sa/web")],
            False,
            id="uri-host-rule-refuses-subdomain",
        ),
    ],
)
def test_a_sub_ca_cannot_sign_outside_its_issuers_names(
    pki: PKI, policy: Policy, names: list[x509.GeneralName], accepted: bool
) -> None:
    sub, root = _real_time_sub_ca(pki, policy)
    constraints = sub.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    leaf = offline_leaf(sub, pki.key("ecdsa-p256", "nc-sub-ca"), names)  # type: ignore[arg-type]
    verdicts = both_verdicts(leaf, [sub], root.cert)
    if accepted:
        assert verdicts == Verdicts(None, None)
    else:
        assert verdicts.openssl is not None and "subtree violation" in verdicts.openssl, verdicts
        assert verdicts.go is not None and "not authorized to sign for this name" in verdicts.go, verdicts


def test_a_host_like_common_name_cannot_escape_either(pki: PKI) -> None:
    # openssl reads a host-like CN as a DNS name when there is no DNS SAN; the closed forms still hold.
    sub, root = _real_time_sub_ca(pki, ALPHA_DNS)
    key = pki.key("ecdsa-p256", "nc-sub-ca")
    leaf = offline_leaf(sub, key, [x509.RFC822Name("a@evil.com")], common_name="www.bank.example")  # type: ignore[arg-type]
    assert openssl_verdict(leaf, [sub], root.cert) is not None


def test_a_sub_ca_of_an_issuer_without_name_rules_is_unconstrained(pki: PKI) -> None:
    sub, root = _real_time_sub_ca(pki, Policy(allow_ca=True))
    with pytest.raises(x509.ExtensionNotFound):
        sub.extensions.get_extension_for_class(x509.NameConstraints)
    leaf = offline_leaf(sub, pki.key("ecdsa-p256", "nc-sub-ca"), [x509.DNSName("anything.example")])  # type: ignore[arg-type]
    assert both_verdicts(leaf, [sub], root.cert) == Verdicts(None, None)


def test_a_leaf_gets_no_name_constraints(pki: PKI) -> None:
    leaf, _ = _issue(pki, pki.csr(common_name=None, dns=["a.alpha.svc.cluster.local"]), policy=ALPHA_DNS)
    with pytest.raises(x509.ExtensionNotFound):
        leaf.extensions.get_extension_for_class(x509.NameConstraints)


def test_a_sub_ca_is_refused_when_its_issuers_uri_rule_is_a_path(pki: PKI) -> None:
    # A Policy built with such a rule and allowCA cannot exist: the issuer is refused before any request.
    with pytest.raises(PermanentError, match=re.escape("limits the URI path ('/ns/alpha/')")):
        Policy(allow_ca=True, uri_prefixes=("spiffe://cluster.local/ns/alpha/",))


# -- what the controller learns of a CA certificate or CSR through the door -------------------------------


def _ca(subject: str, path_length: int | None) -> tuple[bytes, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name.from_rfc4514_string(subject)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x1234)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=10))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .sign(key, hashes.SHA256())
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), csr.public_bytes(
        serialization.Encoding.PEM
    ).decode()


def test_describe_ca_says_what_status_records() -> None:
    pem, _ = _ca("CN=root,O=example", 1)
    info = describe_ca(pem)
    cert = x509.load_pem_x509_certificate(pem)
    assert (info.serial_number, info.subject, info.is_ca, info.path_length) == (
        0x1234,
        "CN=root,O=example",
        True,
        1,
    )
    assert (info.not_before, info.not_after) == (cert.not_valid_before_utc, cert.not_valid_after_utc)
    assert info.public_key_sha256 == public_key_fingerprint(cert.public_key())  # type: ignore[arg-type]
    assert canonical_subject("2.5.4.3=root,O=example") == info.subject


@pytest.mark.parametrize(
    ("which", "subject", "fits"),
    [
        pytest.param("own", "CN=root,O=example", True, id="same-key-same-subject"),
        pytest.param("own", "2.5.4.3=root,O=exampl\\65", True, id="same-subject-spelled-otherwise"),
        pytest.param("own", "CN=renamed", False, id="subject-changed"),
        pytest.param("other", "CN=root,O=example", False, id="another-key"),
        pytest.param("none", "CN=root,O=example", False, id="no-csr"),
        pytest.param("garbage", "CN=root,O=example", False, id="not-a-csr"),
    ],
)
def test_csr_matches(which: str, subject: str, fits: bool) -> None:
    pem, csr = _ca("CN=root,O=example", None)
    _, other = _ca("CN=root,O=example", None)
    key = describe_ca(pem).public_key_sha256
    given = {"own": csr, "other": other, "none": None, "garbage": "-----BEGIN CERTIFICATE REQUEST-----\nx"}[
        which
    ]
    assert csr_matches(given, key, subject) is fits


@pytest.mark.parametrize("seconds", [5, 30, 150, 600, 86400])
def test_a_certificate_is_never_due_for_renewal_when_issued(pki: PKI, seconds: int) -> None:
    """cert-manager renews at 2/3 of notAfter - notBefore: that point lies ahead at issuance, however short
    the lifetime the policy grants (a 5-minute backdate on a 30 s certificate made renewal loop)."""
    lifetime = timedelta(seconds=seconds)
    policy = Policy(min_duration=timedelta(seconds=1), max_duration=lifetime, default_duration=lifetime)
    leaf, _ = _issue(pki, pki.csr(), ca=pki.ca(now=pki.now - timedelta(days=1)), policy=policy, duration=None)
    validity = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert leaf.not_valid_before_utc + validity * 2 / 3 > pki.now
