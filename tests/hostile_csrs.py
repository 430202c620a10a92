"""A corpus of hostile and broken signing requests, as data: each case says what it sends and what the
issuer must answer.

Every case is a CertificateRequest body's worth of input (the CSR bytes, or a raw ``spec.request``
string, plus duration, isCA and usages) and the substring the ``Failed`` message must contain. Cases the
API server's schema refuses before any issuer sees them (invalid base64, unknown usages) say so with
``api_expect``, the substring of the API's answer.

The CSRs are made with real software keys. The few that no builder will make (non-UTF-8 names, a
non-ASCII DNS name, an over-long common name) are built by editing the to-be-signed bytes of a real
CSR and signing the result again, so that their signatures are valid and only the content is hostile.

The corpus is judged against the issuer policy ``CORPUS_POLICY``; ``VALID_DNS`` is a name that policy
admits, for the request sent after the corpus to prove the issuer still works.
"""

from __future__ import annotations

import base64
import ipaddress
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from issuer.signer.policy import KEY_USAGE_FIELDS
from tests.csrs import leaf_key, make_csr, pem_armour

#: The policy of the issuer the corpus is sent to (camelCase, as in a TrustedIssuer's spec.policy).
CORPUS_POLICY: dict[str, Any] = {
    "dnsDomains": ["example.com"],
    "uriPrefixes": ["spiffe://cluster.local/ns/"],
    "ipRanges": ["10.0.0.0/8"],
    "emailDomains": ["example.com"],
    "maxDuration": "720h",
}
VALID_DNS = "www.example.com"


@dataclass(frozen=True)
class HostileCase:
    """One hostile request. ``csr`` is PEM (or any bytes) to base64 into ``spec.request``; ``raw_request``
    overrides it with a literal string. ``expect`` must appear in the Failed message; a case the API
    server refuses (``api_expect`` set) must be refused with that substring, and ``expect`` is then what
    the issuer itself says when handed the same input."""

    id: str
    expect: str
    csr: bytes = b""
    raw_request: str | None = None
    duration: str | None = None
    is_ca: bool = False
    usages: tuple[str, ...] = ()
    api_expect: str | None = None
    notes: str = field(default="", compare=False)

    def spec_request(self) -> str:
        if self.raw_request is not None:
            return self.raw_request
        return base64.b64encode(self.csr).decode()


# -- generators ----------------------------------------------------------------------------------------------


@cache
def _key(kind: str) -> Any:
    """Keys the ordinary builder (tests.csrs.leaf_key) does not make: weak, odd curves, other algorithms."""
    if kind == "rsa-1024":
        return rsa.generate_private_key(public_exponent=65537, key_size=1024)
    if kind == "dsa-2048":
        return dsa.generate_private_key(key_size=2048)
    if kind == "ed448":
        return ed448.Ed448PrivateKey.generate()
    curves = {
        "secp256k1": ec.SECP256K1(),
        "secp192r1": ec.SECP192R1(),
        "secp224r1": ec.SECP224R1(),
        "brainpoolP256r1": ec.BrainpoolP256R1(),
        "brainpoolP384r1": ec.BrainpoolP384R1(),
    }
    return ec.generate_private_key(curves[kind])


def csr_with_key(key: Any, *, dns: Sequence[str] = (VALID_DNS,)) -> bytes:
    """A well-formed CSR for ``key`` (whatever its algorithm), naming ``dns``."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hostile")])
    )
    builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), False)
    algorithm = (
        None if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey) else hashes.SHA256()
    )
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def _der_header_size(der: bytes) -> int:
    first = der[1]
    return 2 if first < 0x80 else 2 + (first & 0x7F)


def resigned_csr(template: bytes, replacements: Sequence[tuple[bytes, bytes]]) -> bytes:
    """``template`` (a PEM CSR made with ``leaf_key('ecdsa-p256')``) with byte strings replaced inside its
    to-be-signed part, signed again: the result's signature is valid, its content whatever was put in.

    Each replacement must keep the length, so every DER length stays right."""
    key = leaf_key("ecdsa-p256")
    csr = x509.load_pem_x509_csr(template)
    tbs = csr.tbs_certrequest_bytes
    for old, new in replacements:
        if len(old) != len(new) or old not in tbs:
            raise ValueError(f"replacement {old!r} must occur in the CSR and keep its length")
        tbs = tbs.replace(old, new)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    der = csr.public_bytes(serialization.Encoding.DER)
    rest = der[_der_header_size(der) + len(csr.tbs_certrequest_bytes) :]
    algorithm = rest[: 2 + rest[1]]  # the AlgorithmIdentifier TLV (short form: it is a dozen bytes)
    bit_string = b"\x03" + _der_length(len(signature) + 1) + b"\x00" + signature
    body = tbs + algorithm + bit_string
    return pem_armour("CERTIFICATE REQUEST", b"\x30" + _der_length(len(body)) + body)


def tampered_signature(pem: bytes) -> bytes:
    """The same CSR with one bit of its signature flipped."""
    der = bytearray(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01
    return pem_armour("CERTIFICATE REQUEST", bytes(der))


def tampered_content(pem: bytes, old: bytes, new: bytes) -> bytes:
    """The same CSR with ``old`` replaced by ``new`` (same length) in the signed part, NOT signed again."""
    der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
    assert len(old) == len(new) and old in der
    return pem_armour("CERTIFICATE REQUEST", der.replace(old, new, 1))


def _name_attributes(count: int) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"unit-{i}") for i in range(count)]
    )


def _cn_name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _csr(
    *,
    subject: x509.Name | None = None,
    names: Sequence[x509.GeneralName] = (),
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    key: Any = None,
) -> bytes:
    key = key or leaf_key("ecdsa-p256")
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject or x509.Name([]))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)


def _ku(**bits: bool) -> x509.KeyUsage:
    return x509.KeyUsage(**{name: bits.get(name, False) for name in KEY_USAGE_FIELDS})  # type: ignore[arg-type]


# -- the corpus ----------------------------------------------------------------------------------------------


@cache
def corpus() -> tuple[HostileCase, ...]:
    """Every hostile case, built once per run."""
    with warnings.catch_warnings():
        # cryptography warns about the deliberately over-long names it is told not to validate.
        warnings.filterwarnings("ignore", "Attribute's length must be")
        return _corpus()


def _corpus() -> tuple[HostileCase, ...]:
    good = make_csr(common_name=VALID_DNS, dns=[VALID_DNS])
    good_der = x509.load_pem_x509_csr(good).public_bytes(serialization.Encoding.DER)
    cn_placeholder = "P" * 60
    with_placeholder_cn = make_csr(common_name=cn_placeholder, dns=[VALID_DNS])
    dns_placeholder = "q" * 20 + ".example.com"
    with_placeholder_dns = make_csr(common_name="hostile", dns=[dns_placeholder])
    # One CN of 4000 characters: cryptography's builder refuses more than 64, so skip its check.
    long_cn = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "L" * 4000, _validate=False)])
    long_ou = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "U" * 5000, _validate=False)])

    cases = [
        # -- encoding and armour ---
        HostileCase("empty-request", "spec.request is empty", raw_request=""),
        HostileCase(
            "request-not-base64",
            "spec.request is not base64",
            raw_request="this is not base64!",
            api_expect="spec.request",
            notes="format: byte in cert-manager's CRD: the API server refuses it",
        ),
        HostileCase(
            "plain-text", "no BEGIN CERTIFICATE REQUEST line", csr=b"hello, I am a certificate request"
        ),
        HostileCase("der-without-armour", "no BEGIN CERTIFICATE REQUEST line", csr=good_der, notes="raw DER"),
        HostileCase(
            "certificate-armour",
            "no BEGIN CERTIFICATE REQUEST line",
            csr=pem_armour("CERTIFICATE", good_der),
        ),
        HostileCase(
            "private-key-armour", "no BEGIN CERTIFICATE REQUEST line", csr=pem_armour("PRIVATE KEY", good_der)
        ),
        HostileCase(
            "der-garbage-in-armour",
            "CSR cannot be parsed",
            csr=pem_armour("CERTIFICATE REQUEST", bytes(range(256)) * 3),
        ),
        HostileCase(
            "empty-armour",
            "CSR cannot be parsed",
            csr=b"-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n",
        ),
        HostileCase(
            "invalid-base64-in-armour",
            "CSR cannot be parsed",
            csr=b"-----BEGIN CERTIFICATE REQUEST-----\n!!!!####\n-----END CERTIFICATE REQUEST-----\n",
        ),
        HostileCase("truncated-pem", "CSR cannot be parsed", csr=good[: len(good) // 2]),
        HostileCase(
            "truncated-der", "CSR cannot be parsed", csr=pem_armour("CERTIFICATE REQUEST", good_der[:-20])
        ),
        HostileCase(
            "der-with-trailing-garbage",
            "CSR cannot be parsed",
            csr=pem_armour("CERTIFICATE REQUEST", good_der + b"\x00\x01trailing"),
        ),
        HostileCase("two-csrs", "more than one CSR", csr=good + good),
        HostileCase("oversized-request", "more than the 65536", csr=good + b"\n" + b"A" * 70_000),
        # -- signatures ---
        HostileCase("signature-bit-flipped", "does not verify", csr=tampered_signature(good)),
        HostileCase(
            "content-edited-after-signing",
            "does not verify",
            csr=tampered_content(good, VALID_DNS.encode(), b"evil.example.com"[: len(VALID_DNS)]),
        ),
        # -- keys ---
        HostileCase("rsa-1024", "RSA-1024", csr=csr_with_key(_key("rsa-1024"))),
        HostileCase("ec-secp256k1", "secp256k1", csr=csr_with_key(_key("secp256k1"))),
        HostileCase("ec-p192", "secp192r1", csr=csr_with_key(_key("secp192r1"))),
        HostileCase("ec-p224", "secp224r1", csr=csr_with_key(_key("secp224r1"))),
        HostileCase("ec-brainpool-p256", "brainpoolP256r1", csr=csr_with_key(_key("brainpoolP256r1"))),
        HostileCase("ec-brainpool-p384", "brainpoolP384r1", csr=csr_with_key(_key("brainpoolP384r1"))),
        HostileCase("dsa-2048", "DSAPublicKey", csr=csr_with_key(_key("dsa-2048"))),
        HostileCase("ed448", "Ed448PublicKey", csr=csr_with_key(_key("ed448"))),
        # -- subjects ---
        HostileCase(
            "subject-40-attributes", "more than 32 attributes", csr=_csr(subject=_name_attributes(40))
        ),
        HostileCase(
            "common-name-4000-chars", "common name has 4000 characters; at most 64", csr=_csr(subject=long_cn)
        ),
        HostileCase(
            "subject-attribute-5000-chars",
            "has 5000 characters; at most 256",
            csr=_csr(subject=long_ou),
        ),
        HostileCase(
            "nul-in-common-name",
            "NUL character",
            csr=resigned_csr(with_placeholder_cn, [(cn_placeholder.encode(), b"ok\x00" + b"P" * 57)]),
        ),
        HostileCase(
            "non-utf8-common-name",
            "CSR subject cannot be parsed",
            csr=resigned_csr(
                with_placeholder_cn, [(cn_placeholder.encode(), b"\xff\xfe\xc0\x80" + b"P" * 56)]
            ),
        ),
        HostileCase("no-subject-no-sans", "neither a subject nor subject alternative names", csr=_csr()),
        HostileCase(
            "common-name-host-outside-policy",
            "common name 'evil.example.net' is not one of the request's SANs",
            csr=make_csr(common_name="evil.example.net"),
        ),
        # -- SANs ---
        HostileCase(
            "sans-501",
            "501 subject alternative names",
            csr=_csr(names=[x509.DNSName(f"h{i}.example.com") for i in range(501)]),
        ),
        HostileCase(
            "dns-name-300-chars",
            "is not a valid DNS name",
            csr=_csr(names=[x509.DNSName(("a" * 60 + ".") * 4 + "a" * 50 + ".example.com")]),
        ),
        HostileCase(
            "dns-label-64-chars",
            "is not a valid DNS name",
            csr=_csr(names=[x509.DNSName("a" * 64 + ".example.com")]),
        ),
        HostileCase(
            "nul-in-dns-name",
            "is not a valid DNS name",
            csr=_csr(names=[x509.DNSName("www.example.com\x00.evil.net")]),
        ),
        HostileCase(
            "non-ascii-dns-name",
            "not a valid DNS name",
            csr=resigned_csr(
                with_placeholder_dns,
                [(dns_placeholder.encode(), "bücher".encode() + b"q" * 13 + b".example.com")],
            ),
            notes="a U-label smuggled past the builder; SANs must carry A-labels",
        ),
        HostileCase(
            "non-utf8-dns-name",
            "CSR",
            csr=resigned_csr(
                with_placeholder_dns, [(dns_placeholder.encode(), b"\xff" * 20 + b".example.com")]
            ),
        ),
        HostileCase(
            "idna-mixed-script-lookalike",
            "policy forbids DNS name 'xn--exmple-4nf.com'",
            csr=_csr(names=[x509.DNSName("xn--exmple-4nf.com")]),
            notes="'ex\u0430mple.com' with a Cyrillic a, as an A-label: not under example.com",
        ),
        HostileCase(
            "idna-invalid-punycode",
            "not a valid DNS name",
            csr=_csr(names=[x509.DNSName("xn--99999999999.example.com")]),
        ),
        HostileCase(
            "idna-punycode-of-control-character",
            "not a valid DNS name",
            csr=_csr(names=[x509.DNSName("xn--a.example.com")]),
            notes="decodes to U+0080, which IDNA forbids",
        ),
        HostileCase(
            "dns-double-trailing-dot",
            "is not a valid DNS name",
            csr=_csr(names=[x509.DNSName("www.example.com..")]),
        ),
        HostileCase(
            "dns-trailing-dot-outside-policy",
            "policy forbids DNS name 'example.com.evil.net.'",
            csr=_csr(names=[x509.DNSName("example.com.evil.net.")]),
        ),
        HostileCase(
            "dns-uppercase-outside-policy",
            "policy forbids DNS name 'WWW.EVIL.NET'",
            csr=_csr(names=[x509.DNSName("WWW.EVIL.NET")]),
        ),
        HostileCase(
            "dns-suffix-without-label-boundary",
            "policy forbids DNS name 'evilexample.com'",
            csr=_csr(names=[x509.DNSName("evilexample.com")]),
        ),
        HostileCase(
            "dns-wildcard-not-leftmost",
            "is not a valid DNS name",
            csr=_csr(names=[x509.DNSName("www.*.example.com")]),
        ),
        HostileCase(
            "dns-wildcard-tld", "policy forbids DNS name '*.com'", csr=_csr(names=[x509.DNSName("*.com")])
        ),
        HostileCase(
            "ip-outside-range",
            "policy forbids IP address 8.8.8.8",
            csr=_csr(names=[x509.IPAddress(ipaddress.ip_address("8.8.8.8"))]),
        ),
        HostileCase(
            "ipv4-mapped-ipv6",
            "policy forbids IP address ::ffff:a00:1",
            csr=_csr(names=[x509.IPAddress(ipaddress.ip_address("::ffff:10.0.0.1"))]),
        ),
        HostileCase(
            "ip-network-in-san",
            "is a network, not an address",
            csr=_csr(names=[x509.IPAddress(ipaddress.ip_network("10.0.0.0/8"))]),
        ),
        HostileCase(
            "uri-dot-segments",
            "'.' or '..' path segments",
            csr=_csr(names=[x509.UniformResourceIdentifier("spiffe://cluster.local/ns/../admin")]),
        ),
        HostileCase(
            "uri-encoded-slash",
            "not a canonical SPIFFE ID: it has %-encoding",
            csr=_csr(names=[x509.UniformResourceIdentifier("spiffe://cluster.local/ns/a%2F..%2Fadmin")]),
        ),
        HostileCase(
            "uri-user-info",
            "not a canonical SPIFFE ID: it has user info",
            csr=_csr(names=[x509.UniformResourceIdentifier("spiffe://evil@cluster.local/ns/x")]),
        ),
        HostileCase(
            "uri-prefix-without-segment-boundary",
            "not under policy.uriPrefixes",
            csr=_csr(names=[x509.UniformResourceIdentifier("spiffe://cluster.local/nsx/sa/admin")]),
        ),
        HostileCase(
            "uri-with-space",
            "is not a valid URI",
            csr=_csr(names=[x509.UniformResourceIdentifier("spiffe://cluster.local/ns/a b")]),
        ),
        # -- the stricter defaults (issue 12, section 3) ---
        HostileCase(
            "common-name-trailing-space-outside-policy",
            "common name 'evil.example.net ' (trimmed 'evil.example.net') is not one of the request's SANs",
            csr=_csr(subject=_cn_name("evil.example.net "), names=[x509.DNSName(VALID_DNS)]),
        ),
        HostileCase(
            "common-name-free-text-beside-sans",
            "common name 'payments admin' is not one of the request's SANs",
            csr=_csr(subject=_cn_name("payments admin"), names=[x509.DNSName(VALID_DNS)]),
        ),
        HostileCase(
            "spiffe-query-names-other-namespace",
            "not a canonical SPIFFE ID: it has a query",
            csr=_csr(names=[x509.UniformResourceIdentifier("spiffe://cluster.local/ns/a/sa/x?ns=beta")]),
        ),
        HostileCase(
            "spiffe-fragment-names-other-namespace",
            "not a canonical SPIFFE ID: it has a fragment",
            csr=_csr(
                names=[x509.UniformResourceIdentifier("spiffe://cluster.local/ns/a/sa/x#/ns/beta/sa/admin")]
            ),
        ),
        HostileCase(
            "spiffe-port",
            "not a canonical SPIFFE ID: it has a port",
            csr=_csr(names=[x509.UniformResourceIdentifier("spiffe://cluster.local:443/ns/a/sa/x")]),
        ),
        HostileCase(
            "spiffe-upper-case-trust-domain",
            "not a canonical SPIFFE ID: the trust domain must be lower-case",
            csr=_csr(names=[x509.UniformResourceIdentifier("spiffe://Cluster.Local/ns/a/sa/x")]),
        ),
        HostileCase(
            "spiffe-upper-case-scheme",
            "not a canonical SPIFFE ID: the scheme must be lower-case",
            csr=_csr(names=[x509.UniformResourceIdentifier("SPIFFE://cluster.local/ns/a/sa/x")]),
        ),
        HostileCase(
            "spiffe-encoded-letter",
            "not a canonical SPIFFE ID: it has %-encoding",
            csr=_csr(names=[x509.UniformResourceIdentifier("spiffe://cluster.local/ns/%61/sa/x")]),
        ),
        HostileCase(
            "cert-sign-on-a-leaf",
            "usages cert sign are for CA certificates only; spec.isCA is false",
            csr=make_csr(dns=[VALID_DNS]),
            usages=("digital signature", "cert sign"),
        ),
        HostileCase(
            "crl-sign-on-a-leaf",
            "usages crl sign are for CA certificates only; spec.isCA is false",
            csr=make_csr(dns=[VALID_DNS]),
            usages=("digital signature", "crl sign"),
        ),
        HostileCase(
            "any-extended-key-usage",
            "policy forbids the 'any' extended key usage",
            csr=make_csr(dns=[VALID_DNS]),
            usages=("digital signature", "any"),
        ),
        HostileCase(
            "email-without-at",
            "is not a valid address",
            csr=_csr(names=[x509.RFC822Name("nobody.example.com")]),
        ),
        HostileCase(
            "email-outside-policy",
            "not under policy.emailDomains",
            csr=_csr(names=[x509.RFC822Name("root@evil.net")]),
        ),
        HostileCase(
            "other-name-under-restrictive-policy",
            "OtherName SANs cannot be judged",
            csr=_csr(names=[x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), b"\x0c\x03a@b")]),
        ),
        HostileCase(
            "directory-name-san",
            "DirectoryName SANs cannot be judged",
            csr=_csr(
                names=[x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "root")]))]
            ),
        ),
        # -- what the request asks versus what the CSR says ---
        HostileCase(
            "is-ca-true-csr-not-ca",
            "CSR asks for a non-CA certificate but spec.isCA is true",
            csr=_csr(
                names=[x509.DNSName(VALID_DNS)],
                extensions=[(x509.BasicConstraints(ca=False, path_length=None), True)],
            ),
            is_ca=True,
        ),
        HostileCase(
            "is-ca-false-csr-is-ca",
            "CSR asks for a CA certificate but spec.isCA is false",
            csr=_csr(
                names=[x509.DNSName(VALID_DNS)],
                extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)],
            ),
        ),
        HostileCase(
            "is-ca-refused-by-policy",
            "policy.allowCA is false",
            csr=_csr(
                names=[x509.DNSName(VALID_DNS)],
                extensions=[(x509.BasicConstraints(ca=True, path_length=0), True)],
            ),
            is_ca=True,
        ),
        HostileCase(
            "csr-key-usage-differs",
            "differ from spec.usages",
            csr=_csr(
                names=[x509.DNSName(VALID_DNS)],
                extensions=[(_ku(digital_signature=True, crl_sign=True), True)],
            ),
            usages=("digital signature",),
        ),
        HostileCase(
            "csr-extended-usage-differs",
            "CSR extended key usages",
            csr=_csr(
                names=[x509.DNSName(VALID_DNS)],
                extensions=[(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CODE_SIGNING]), False)],
            ),
            usages=("digital signature", "server auth"),
        ),
        HostileCase(
            "usage-unknown",
            "unknown usage 'world domination'",
            csr=good,
            usages=("world domination",),
            api_expect="Unsupported value",
            notes="cert-manager's CRD enumerates usages: the API server refuses it",
        ),
        HostileCase(
            "encipher-only-without-key-agreement",
            "need 'key agreement'",
            csr=good,
            usages=("digital signature", "encipher only"),
        ),
        HostileCase(
            "usages-impossible-for-ed25519",
            "not possible for a ed25519 key",
            csr=make_csr(key=leaf_key("ed25519"), dns=[VALID_DNS]),
            usages=("key encipherment",),
        ),
        # -- durations ---
        HostileCase("duration-zero", "is not positive", csr=good, duration="0s"),
        HostileCase("duration-bare-zero", "is not positive", csr=good, duration="0"),
        HostileCase("duration-negative", "is negative", csr=good, duration="-24h"),
        HostileCase("duration-absurd", "longer than 100 years", csr=good, duration="8760000h"),
        HostileCase("duration-huge-number", "longer than 100 years", csr=good, duration="9" * 40 + "h"),
        HostileCase("duration-under-minimum", "shorter than the issuer's minimum", csr=good, duration="1s"),
        HostileCase("duration-not-go-syntax", "is not a Go duration", csr=good, duration="forever"),
        HostileCase("duration-iso8601", "is not a Go duration", csr=good, duration="P90D"),
        HostileCase("duration-no-unit", "is not a Go duration", csr=good, duration="3600"),
    ]
    ids = [case.id for case in cases]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    return tuple(cases)
