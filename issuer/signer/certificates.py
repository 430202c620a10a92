"""CSR in, signed certificate out: parsing, checking and building X.509 with cryptography's builders.

Pure functions: the clock and the CA's private key (usually a token-backed key object from
``token_keys``) are passed in. Every problem with a request is a ``PermanentError`` that names it;
every problem with the CA is an ``IssuerError``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property, lru_cache
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtensionOID

from issuer.errors import IssuerError, PermanentError
from issuer.signer.keys import public_key_fingerprint
from issuer.signer.policy import (
    FORBIDDEN_KEY_USAGE_BITS,
    KEY_USAGE_FIELDS,
    Policy,
    Usages,
    check_dns_name,
    key_usage_extension,
    resolve_usages,
)

#: A CSR larger than this is not a CSR anyone needs; refusing it early bounds parsing work.
MAX_CSR_BYTES = 64 * 1024
MAX_SANS = 500
MAX_SUBJECT_ATTRIBUTES = 32
#: RFC 5280's ub-common-name; other attribute values get a looser bound (its largest, for addresses).
MAX_COMMON_NAME = 64
MAX_ATTRIBUTE_VALUE = 256
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
LEAF_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})
#: Tolerance for clocks that run slightly behind ours.
BACKDATE = timedelta(minutes=5)

CSR_PEM_MARKERS = (b"-----BEGIN CERTIFICATE REQUEST-----", b"-----BEGIN NEW CERTIFICATE REQUEST-----")
CERT_PEM_MARKER = b"-----BEGIN CERTIFICATE-----"

T = TypeVar("T", bound=x509.ExtensionType)
CAPrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
LeafPublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True)
class SigningRequest:
    """A request as cert-manager defines one: a PEM CSR plus what the requester asks of the issuer."""

    csr_pem: bytes
    duration: timedelta | None = None
    is_ca: bool = False
    usages: tuple[str, ...] = ()


@dataclass(frozen=True)
class PEMBundle:
    """What goes back to cert-manager: the chain (leaf first, never the root) and the root CA, with
    what the controller records of the leaf (serial, subject, SANs, not-after), learned where it was
    built so nobody parses the PEM again on the event loop."""

    chain_pem: bytes
    ca_pem: bytes
    serial_number: int
    not_after: datetime
    #: The leaf's subject, RFC 4514.
    subject: str = ""
    #: The leaf's subject alternative names as ``DNS:...``, ``IP:...``, ``URI:...``, ``email:...``.
    sans: tuple[str, ...] = ()


@dataclass(frozen=True)
class CAChain:
    """The issuing CA certificate, any intermediates above it, and the root (which may be the issuer)."""

    issuer: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    root: x509.Certificate

    @classmethod
    def from_pem(cls, pem: bytes) -> CAChain:
        """Read a bundle whose first certificate is the issuing CA; a self-signed last one is the root."""
        certificates = load_certificates(pem, what="CA certificate")
        issuer = certificates[0]
        above = certificates[1:]
        if above and _self_signed(above[-1]):
            return cls(issuer, tuple(above[:-1]), above[-1])
        return cls(issuer, tuple(above), issuer if not above else above[-1])

    def chain_above_leaf(self) -> tuple[x509.Certificate, ...]:
        """Certificates that follow a leaf in ``status.certificate``: intermediates, never the root."""
        if self.issuer == self.root:
            return ()
        return (self.issuer, *self.intermediates)

    # Values every certificate issued under this CA needs, computed on first use and kept: a worker keeps
    # one CAChain per CA, so each request reuses them instead of re-encoding the same certificates.

    @cached_property
    def issuer_key_sha256(self) -> str:
        """``public_key_fingerprint`` of the issuing CA's public key."""
        return public_key_fingerprint(self.issuer.public_key())  # type: ignore[arg-type]

    @cached_property
    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)

    @cached_property
    def chain_above_leaf_pem(self) -> bytes:
        """:meth:`chain_above_leaf` as concatenated PEM."""
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain_above_leaf())

    @cached_property
    def authority_key_identifier(self) -> x509.AuthorityKeyIdentifier:
        """The AKI extension value for certificates this CA issues."""
        return _authority_key_identifier(self.issuer)

    @cached_property
    def pem(self) -> bytes:
        """What an ``IssuerKey`` signs with: the issuing CA, the intermediates, then the root (once)."""
        certificates = [self.issuer, *self.intermediates]
        if self.root != self.issuer:
            certificates.append(self.root)
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)

    @cached_property
    def issuer_pem(self) -> bytes:
        """The issuing CA certificate alone."""
        return self.issuer.public_bytes(serialization.Encoding.PEM)

    @property
    def not_after(self) -> datetime:
        """When the issuing CA certificate expires."""
        return self.issuer.not_valid_after_utc


@dataclass(frozen=True)
class CAInfo:
    """What the controller needs to know of a CA certificate it keeps as PEM (``status.caCertificates``),
    learned here so the controller never parses X.509 itself."""

    serial_number: int
    #: RFC 4514, as :func:`canonical_subject` spells it.
    subject: str
    not_before: datetime
    not_after: datetime
    #: ``public_key_fingerprint`` of the certified key.
    public_key_sha256: str
    #: basicConstraints CA:true.
    is_ca: bool
    #: basicConstraints pathLenConstraint (None: unlimited, or no basicConstraints).
    path_length: int | None


# The same few CA certificates are described on every reconciliation: parse each PEM once per process.
@lru_cache(maxsize=256)
def describe_ca(pem: bytes) -> CAInfo:
    """The first certificate of ``pem`` described; ``ValueError`` if it is not a PEM certificate."""
    cert = x509.load_pem_x509_certificate(pem)
    try:
        constraints: x509.BasicConstraints | None = cert.extensions.get_extension_for_class(
            x509.BasicConstraints
        ).value
    except x509.ExtensionNotFound:
        constraints = None
    return CAInfo(
        serial_number=cert.serial_number,
        subject=cert.subject.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        public_key_sha256=public_key_fingerprint(cert.public_key()),  # type: ignore[arg-type]
        is_ca=constraints is not None and constraints.ca,
        path_length=constraints.path_length if constraints is not None else None,
    )


@lru_cache(maxsize=256)
def canonical_subject(text: str) -> str:
    """An RFC 4514 name as cryptography spells it, so two spellings of one name compare equal;
    ``ValueError`` if it is not one."""
    return x509.Name.from_rfc4514_string(text).rfc4514_string()


def csr_matches(pem: str | bytes | None, key_sha256: str, subject: str) -> bool:
    """``pem`` is a PEM CSR for the key whose fingerprint is ``key_sha256``, asking for ``subject``
    (RFC 4514); False for anything else, including no CSR or one that does not parse."""
    if not pem:
        return False
    try:
        csr = x509.load_pem_x509_csr(pem.encode() if isinstance(pem, str) else pem)
    except ValueError:
        return False
    return (
        public_key_fingerprint(csr.public_key()) == key_sha256  # type: ignore[arg-type]
        and csr.subject.rfc4514_string() == canonical_subject(subject)
    )


def _self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def load_certificates(pem: bytes, *, what: str) -> list[x509.Certificate]:
    if CERT_PEM_MARKER not in pem:
        raise IssuerError(f"{what} is not PEM (no BEGIN CERTIFICATE line)", "CAInvalid")
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as err:
        raise IssuerError(f"{what} cannot be parsed: {err}", "CAInvalid") from None
    return certificates


def parse_subject(text: str) -> x509.Name:
    """Parse an RFC 4514 distinguished name (``CN=mesh root,O=example``)."""
    try:
        name = x509.Name.from_rfc4514_string(text)
    except ValueError as err:
        raise PermanentError(f"subject {text!r} is not an RFC 4514 name: {err}") from None
    if not len(name):
        raise PermanentError("subject is empty")
    return name


def public_key_family(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ec"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    return type(key).__name__


# -- the CSR --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckedCSR:
    """A CSR that :func:`check_csr` accepted, with its public key parsed once for every later step."""

    csr: x509.CertificateSigningRequest
    public_key: LeafPublicKey


def load_csr(pem: bytes) -> x509.CertificateSigningRequest:
    """Parse and check a PEM CSR: one block, its own signature valid, a key strong enough to certify."""
    return check_csr(pem).csr


def check_csr(pem: bytes) -> CheckedCSR:
    """:func:`load_csr`, also returning the CSR's public key (parsing it costs as much as a signature
    check on small keys, so the issuing path parses it once)."""
    if len(pem) > MAX_CSR_BYTES:
        raise PermanentError(f"CSR is {len(pem)} bytes, more than the {MAX_CSR_BYTES} allowed")
    if not any(marker in pem for marker in CSR_PEM_MARKERS):
        raise PermanentError("CSR is not PEM: no BEGIN CERTIFICATE REQUEST line")
    if sum(pem.count(marker) for marker in CSR_PEM_MARKERS) > 1:
        raise PermanentError("more than one CSR in the request")
    try:
        csr = x509.load_pem_x509_csr(pem)
    except (ValueError, UnsupportedAlgorithm) as err:
        raise PermanentError(f"CSR cannot be parsed: {_short(err)}") from None
    try:
        public_key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as err:
        raise PermanentError(f"CSR public key is not supported: {_short(err)}") from None
    _check_leaf_key(public_key)
    try:
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm, InvalidSignature) as err:
        raise PermanentError(f"CSR signature cannot be checked: {_short(err)}") from None
    if not valid:
        raise PermanentError("CSR signature does not verify with its own public key")
    try:
        subject = csr.subject
    except ValueError as err:  # e.g. a UTF8String that is not UTF-8
        raise PermanentError(f"CSR subject cannot be parsed: {_short(err)}") from None
    _check_subject(subject)
    _extensions(csr)  # surfaces malformed or duplicate extensions as a clear error now
    return CheckedCSR(csr, public_key)  # type: ignore[arg-type]  # _check_leaf_key narrowed it


def _short(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:200]


def _check_leaf_key(key: object) -> None:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise PermanentError(
                f"CSR has an RSA-{key.key_size} key; at least {MIN_RSA_BITS} bits are required"
            )
        if key.key_size > MAX_RSA_BITS:
            raise PermanentError(
                f"CSR has an RSA-{key.key_size} key; at most {MAX_RSA_BITS} bits are accepted"
            )
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in LEAF_CURVES:
            raise PermanentError(f"CSR has an EC key on {key.curve.name}; use P-256, P-384 or P-521")
        return
    if isinstance(key, ed25519.Ed25519PublicKey):
        return
    raise PermanentError(f"CSR has an unsupported {type(key).__name__}; use RSA, ECDSA or Ed25519")


def _check_subject(subject: x509.Name) -> None:
    if len(list(subject)) > MAX_SUBJECT_ATTRIBUTES:
        raise PermanentError(f"CSR subject has more than {MAX_SUBJECT_ATTRIBUTES} attributes")
    for attribute in subject:
        value = attribute.value
        if isinstance(value, str) and "\x00" in value:
            raise PermanentError("CSR subject has a NUL character")
        limit = MAX_COMMON_NAME if attribute.oid == x509.NameOID.COMMON_NAME else MAX_ATTRIBUTE_VALUE
        if len(value) > limit:
            what = (
                "common name"
                if limit == MAX_COMMON_NAME
                else f"subject attribute {attribute.oid.dotted_string}"
            )
            raise PermanentError(f"CSR {what} has {len(value)} characters; at most {limit} are allowed")


def _extensions(csr: x509.CertificateSigningRequest) -> x509.Extensions:
    try:
        return csr.extensions
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as err:
        raise PermanentError(f"CSR extensions cannot be parsed: {_short(err)}") from None


def _extension(csr: x509.CertificateSigningRequest, kind: type[T]) -> T | None:
    try:
        return _extensions(csr).get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def subject_alternative_names(csr: x509.CertificateSigningRequest) -> list[x509.GeneralName]:
    """The CSR's SANs, each checked for syntax a certificate may carry."""
    san = _extension(csr, x509.SubjectAlternativeName)
    names = list(san) if san is not None else []
    if len(names) > MAX_SANS:
        raise PermanentError(f"CSR has {len(names)} subject alternative names, more than {MAX_SANS}")
    for name in names:
        if isinstance(name, x509.DNSName):
            check_dns_name(name.value)
        elif isinstance(name, x509.RFC822Name):
            local, at, domain = name.value.rpartition("@")
            if not at or not local or not name.value.isascii() or "\x00" in name.value:
                raise PermanentError(f"email SAN {name.value!r} is not a valid address")
            check_dns_name(domain)
        elif isinstance(name, x509.IPAddress):
            if not isinstance(name.value, ipaddress.IPv4Address | ipaddress.IPv6Address):
                raise PermanentError(f"IP SAN {name.value} is a network, not an address")
        elif isinstance(name, x509.UniformResourceIdentifier):
            value = name.value
            if not value.isascii() or any(ch in value for ch in " \x00\r\n\t") or ":" not in value:
                raise PermanentError(f"URI SAN {value!r} is not a valid URI")
    return names


def check_csr_agrees(csr: x509.CertificateSigningRequest, request: SigningRequest) -> None:
    """The CSR's own BasicConstraints, KeyUsage and ExtendedKeyUsage must say what the request says.

    cert-manager builds a CSR from its Certificate with these extensions, so a disagreement means the
    request was edited or forged; an extension the CSR lacks constrains nothing.
    """
    _check_csr_agrees(csr, request, public_key_family(csr.public_key()))


def _check_csr_agrees(csr: x509.CertificateSigningRequest, request: SigningRequest, family: str) -> Usages:
    """:func:`check_csr_agrees` for a key of ``family``; returns the usages the certificate gets."""
    constraints = _extension(csr, x509.BasicConstraints)
    if constraints is not None and constraints.ca != request.is_ca:
        wanted = "a CA" if constraints.ca else "a non-CA"
        raise PermanentError(
            f"CSR asks for {wanted} certificate but spec.isCA is {str(request.is_ca).lower()}"
        )
    usages = resolve_usages(request.usages, is_ca=request.is_ca, key_family=family)
    csr_usage = _extension(csr, x509.KeyUsage)
    if csr_usage is not None:
        ignorable = FORBIDDEN_KEY_USAGE_BITS.get(family, frozenset()) | {"key_cert_sign"}
        csr_bits = _key_usage_bits(csr_usage) - ignorable
        wanted_bits = usages.key_usage_bits - ignorable
        if csr_bits != wanted_bits:
            raise PermanentError(
                f"CSR key usages ({_names(csr_bits)}) differ from spec.usages ({_names(wanted_bits)})"
            )
    csr_extended = _extension(csr, x509.ExtendedKeyUsage)
    if csr_extended is not None:
        csr_oids = {oid.dotted_string for oid in csr_extended}
        wanted_oids = {oid.dotted_string for oid in usages.extended}
        if csr_oids != wanted_oids:
            raise PermanentError(
                f"CSR extended key usages ({_names(csr_oids)}) differ from "
                f"spec.usages ({_names(wanted_oids)})"
            )
    return usages


def _sub_ca_path_length(csr: x509.CertificateSigningRequest, chain: CAChain) -> int | None:
    """pathLenConstraint of a CA certificate issued under ``chain``: what the CSR asks for, within what
    every CA above allows (one at depth d with constraint n leaves n - d - 1 below the new CA), so that
    the whole chain verifies; none when nothing sets one. Refused when some CA allows no more CAs."""
    above = [chain.issuer, *chain.intermediates]
    if chain.root not in above:
        above.append(chain.root)
    asked = _extension(csr, x509.BasicConstraints)
    limits = [asked.path_length] if asked is not None and asked.path_length is not None else []
    for depth, ca_cert in enumerate(above):
        try:
            own = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
        except x509.ExtensionNotFound:
            continue
        if own is None:
            continue
        if own - depth - 1 < 0:
            raise PermanentError(
                f"the CA {ca_cert.subject.rfc4514_string()!r} has pathLenConstraint {own}: no further CA "
                "certificate may be signed below the issuing CA (spec.isCA)"
            )
        limits.append(own - depth - 1)
    return min(limits) if limits else None


def _names(values: set[str] | frozenset[str]) -> str:
    return ", ".join(sorted(values)) or "none"


def _key_usage_bits(usage: x509.KeyUsage) -> frozenset[str]:
    # cryptography raises when encipher_only/decipher_only are read without key_agreement.
    readable = KEY_USAGE_FIELDS if usage.key_agreement else KEY_USAGE_FIELDS[:-2]
    return frozenset(name for name in readable if getattr(usage, name))


# -- certificates ---------------------------------------------------------------------------------------


def _sign(builder: x509.CertificateBuilder, key: CAPrivateKey, rsa_pss: bool) -> x509.Certificate:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return builder.sign(key, None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        digest: hashes.SHA256 | hashes.SHA384 = (
            hashes.SHA384() if key.curve.key_size >= 384 else hashes.SHA256()
        )
        return builder.sign(key, digest)
    if rsa_pss:
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
        return builder.sign(key, hashes.SHA256(), rsa_padding=pss)
    return builder.sign(key, hashes.SHA256())


def build_ca_certificate(
    key: CAPrivateKey,
    subject: x509.Name,
    *,
    duration: timedelta,
    now: datetime,
    path_length: int | None = None,
    rsa_pss: bool = False,
) -> x509.Certificate:
    """A self-signed CA certificate for ``key``: CA:true (critical), keyCertSign+cRLSign (critical), SKI."""
    if duration <= timedelta(0):
        raise PermanentError("CA duration must be positive")
    public_key = key.public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + duration)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(key_usage_extension(frozenset({"key_cert_sign", "crl_sign"})), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    )
    return _sign(builder, key, rsa_pss)


def build_ca_csr(
    key: CAPrivateKey,
    subject: x509.Name,
    *,
    path_length: int | None = None,
    rsa_pss: bool = False,
) -> x509.CertificateSigningRequest:
    """A CSR for ``key`` asking to be a CA: CA:true (critical, ``path_length``), keyCertSign+cRLSign
    (critical) and the SKI, signed by ``key`` (in the token)."""
    public_key = key.public_key()
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(key_usage_extension(frozenset({"key_cert_sign", "crl_sign"})), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return builder.sign(key, None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return builder.sign(key, hashes.SHA384() if key.curve.key_size >= 384 else hashes.SHA256())
    if rsa_pss:
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
        return builder.sign(key, hashes.SHA256(), rsa_padding=pss)
    return builder.sign(key, hashes.SHA256())


def check_ca_usable(ca: CAChain, key_fingerprint: str, now: datetime) -> None:
    """The issuing CA certificate must belong to the token key, be a CA, and be valid now."""
    cert = ca.issuer
    if ca.issuer_key_sha256 != key_fingerprint:
        raise IssuerError("the CA certificate's public key is not the token key's", "CAKeyMismatch")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise IssuerError("the CA certificate is not a CA (basicConstraints CA:true missing)", "CAInvalid")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.key_cert_sign:
            raise IssuerError("the CA certificate lacks keyCertSign", "CAInvalid")
    except x509.ExtensionNotFound:
        pass
    if now >= cert.not_valid_after_utc:
        raise IssuerError(
            f"the CA certificate expired at {cert.not_valid_after_utc.isoformat()}", "CAExpired"
        )
    if now + BACKDATE < cert.not_valid_before_utc:
        raise IssuerError(
            f"the CA certificate is not valid before {cert.not_valid_before_utc.isoformat()}", "CANotYetValid"
        )


def issue_certificate(
    csr: x509.CertificateSigningRequest,
    request: SigningRequest,
    *,
    ca: CAChain,
    ca_key: CAPrivateKey,
    policy: Policy,
    now: datetime,
    rsa_pss: bool = False,
) -> PEMBundle:
    """Check ``request`` against its CSR and the policy, then sign a certificate for it.

    ``ca_key`` is the issuing CA's key (normally token-backed); the caller has checked that it belongs
    to ``ca.issuer`` with :func:`check_ca_usable`. The certificate never outlives the issuing CA.
    """
    return issue_checked_certificate(
        CheckedCSR(csr, csr.public_key()),  # type: ignore[arg-type]  # load_csr narrowed it
        request,
        ca=ca,
        ca_key=ca_key,
        policy=policy,
        now=now,
        rsa_pss=rsa_pss,
    )


def issue_checked_certificate(
    checked: CheckedCSR,
    request: SigningRequest,
    *,
    ca: CAChain,
    ca_key: CAPrivateKey,
    policy: Policy,
    now: datetime,
    rsa_pss: bool = False,
) -> PEMBundle:
    """:func:`issue_certificate` for a CSR from :func:`check_csr`, reusing its parsed public key."""
    csr, public_key = checked.csr, checked.public_key
    family = public_key_family(public_key)
    usages = _check_csr_agrees(csr, request, family)
    policy.check_request(is_ca=request.is_ca, usages=request.usages)
    names = subject_alternative_names(csr)
    policy.check_names(csr.subject, names, is_ca=request.is_ca)
    subject = csr.subject
    if not len(subject) and not names:
        raise PermanentError("CSR has neither a subject nor subject alternative names")

    ca_cert = ca.issuer
    if now >= ca_cert.not_valid_after_utc:
        raise IssuerError(
            f"the CA certificate expired at {ca_cert.not_valid_after_utc.isoformat()}", "CAExpired"
        )
    lifetime = policy.lifetime(request.duration)
    # Backdated for clocks a little behind ours, but by at most a tenth of the lifetime: cert-manager
    # renews at 2/3 of notAfter - notBefore, so a 5-minute backdate on a 30-second certificate made it
    # due for renewal the moment it was issued, and cert-manager reissued in a loop.
    not_before = max(now - min(BACKDATE, lifetime / 10), ca_cert.not_valid_before_utc)
    not_after = min(now + lifetime, ca_cert.not_valid_after_utc)

    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.BasicConstraints(
                ca=request.is_ca, path_length=_sub_ca_path_length(csr, ca) if request.is_ca else None
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(ca.authority_key_identifier, critical=False)
    )
    if usages.key_usage_bits:
        builder = builder.add_extension(key_usage_extension(usages.key_usage_bits), critical=True)
    if usages.extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages.extended)), critical=False)
    if request.is_ca:
        constraints = policy.sub_ca_name_constraints()
        if constraints is not None:
            # Critical (RFC 5280 4.2.1.10): a verifier that cannot enforce it must refuse the chain.
            builder = builder.add_extension(constraints, critical=True)
    if names:
        # RFC 5280 4.2.1.6: with an empty subject the SAN extension carries the identity and is critical.
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=not len(subject))
    certificate = _sign(builder, ca_key, rsa_pss)
    return PEMBundle(
        chain_pem=certificate.public_bytes(serialization.Encoding.PEM) + ca.chain_above_leaf_pem,
        ca_pem=ca.root_pem,
        serial_number=certificate.serial_number,
        not_after=certificate.not_valid_after_utc,
        subject=certificate.subject.rfc4514_string(),
        sans=described_sans(names),
    )


_SAN_PREFIX: dict[type, str] = {
    x509.DNSName: "DNS",
    x509.IPAddress: "IP",
    x509.UniformResourceIdentifier: "URI",
    x509.RFC822Name: "email",
}


def described_sans(names: Sequence[x509.GeneralName]) -> tuple[str, ...]:
    """Subject alternative names as the audit trail writes them: ``DNS:web.apps.svc``, ``IP:10.0.0.7``."""
    return tuple(f"{_SAN_PREFIX.get(type(name), type(name).__name__)}:{name.value}" for name in names)


def _authority_key_identifier(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = ca_cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_KEY_IDENTIFIER).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())  # type: ignore[arg-type]
    assert isinstance(ski, x509.SubjectKeyIdentifier)
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
