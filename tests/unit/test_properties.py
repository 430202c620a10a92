"""Property-based tests (hypothesis) of the CSR parser, the duration parser and the policy.

Two kinds of property:

- **No input crashes or hangs them.** Arbitrary bytes, arbitrary bytes in PEM armour, mutated real
  CSRs, arbitrary duration strings and policy specs: each either passes or raises our ``PermanentError``,
  within a deadline.
- **Every issued certificate obeys the policy**, judged by an oracle that does NOT use
  ``issuer/signer/policy.py``: the certificate is parsed back with cryptography and compared with the
  request (SANs, key, usages, isCA) and with the policy's plain rules, written again here from the
  README's words (duration clamp, DNS domains on a label boundary, URI prefixes on a segment boundary, IP
  ranges, never outliving the CA). The oracle also says when a request is acceptable, so an issuer that
  refuses a good request fails too.

CA keys are software keys (``tests.unit.conftest``) for speed; the token path is the same code.
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from issuer.durations import parse_duration
from issuer.errors import PermanentError
from issuer.signer.certificates import SigningRequest, check_csr, issue_checked_certificate
from issuer.signer.policy import Policy
from tests.unit.conftest import NOW, IssuingCA, build_csr, make_ca, software_key

# Generous: the machine is shared, and a hang is minutes, not milliseconds.
DEADLINE = timedelta(seconds=5)
FUZZ = settings(max_examples=300, deadline=DEADLINE, suppress_health_check=[HealthCheck.too_slow])

ARMOUR = (b"-----BEGIN CERTIFICATE REQUEST-----\n", b"\n-----END CERTIFICATE REQUEST-----\n")


def _armour(der: bytes) -> bytes:
    return ARMOUR[0] + base64.encodebytes(der) + ARMOUR[1]


def _refuses_cleanly(pem: bytes) -> None:
    """check_csr either accepts or raises PermanentError with a message; anything else is a crash."""
    try:
        check_csr(pem)
    except PermanentError as err:
        assert err.message and "\n" not in err.message[:300]


# -- no crash, no hang -----------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=4096))
def test_csr_parser_survives_arbitrary_bytes(data: bytes) -> None:
    _refuses_cleanly(data)


@FUZZ
@given(st.binary(max_size=4096))
def test_csr_parser_survives_arbitrary_der_in_armour(data: bytes) -> None:
    _refuses_cleanly(_armour(data))


_VALID_DER = build_csr(
    dns=["www.example.com"], ips=["10.1.2.3"], uris=["spiffe://cluster.local/ns/a/sa/b"]
).public_bytes(serialization.Encoding.DER)


@FUZZ
@given(
    st.lists(st.tuples(st.integers(0, len(_VALID_DER) - 1), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, len(_VALID_DER)),
)
def test_csr_parser_survives_mutated_real_csrs(edits: list[tuple[int, int]], cut: int) -> None:
    """Byte edits and truncations of a real CSR reach deeper into the DER parser than random bytes."""
    der = bytearray(_VALID_DER)
    for position, value in edits:
        der[position] = value
    _refuses_cleanly(_armour(bytes(der[: max(cut, 1)])))


@st.composite
def _csr_ish(draw: st.DrawFn) -> bytes:
    """CSR-shaped DER: a SEQUENCE of random TLVs with plausible tags and (possibly lying) lengths."""
    tags = st.sampled_from([0x02, 0x03, 0x04, 0x05, 0x06, 0x0C, 0x13, 0x16, 0x30, 0x31, 0xA0, 0x80])

    def tlv(depth: int) -> bytes:
        tag = draw(tags)
        if depth < 3 and tag in (0x30, 0x31, 0xA0) and draw(st.booleans()):
            body = b"".join(tlv(depth + 1) for _ in range(draw(st.integers(0, 4))))
        else:
            body = draw(st.binary(max_size=40))
        length = draw(st.one_of(st.just(len(body)), st.integers(0, 300)))
        encoded = bytes([length]) if length < 0x80 else bytes([0x81, length & 0xFF])
        return bytes([tag]) + encoded + body

    return tlv(0)


@FUZZ
@given(_csr_ish())
def test_csr_parser_survives_csr_shaped_structures(der: bytes) -> None:
    _refuses_cleanly(_armour(der))


def _duration_parses_in_bounds_or_refuses(text: str) -> None:
    try:
        value = parse_duration(text)
    except PermanentError as err:
        assert err.message
        return
    assert timedelta(0) <= value <= timedelta(days=365 * 100)


@FUZZ
@given(st.text(max_size=64))
def test_duration_parser_never_crashes_and_stays_in_bounds(text: str) -> None:
    _duration_parses_in_bounds_or_refuses(text)


@FUZZ
@given(
    st.from_regex(r"\A[+-]?(\d{1,25}(\.\d{0,5})?(ns|us|µs|ms|s|m|h)){1,4}\Z", fullmatch=True),
)
def test_duration_parser_on_go_shaped_strings(text: str) -> None:
    _duration_parses_in_bounds_or_refuses(text)


_SPEC_TEXT = st.text(max_size=30)
_POLICY_SPECS = st.fixed_dictionaries(
    {},
    optional={
        "dnsDomains": st.lists(_SPEC_TEXT, max_size=4),
        "uriPrefixes": st.lists(_SPEC_TEXT, max_size=4),
        "ipRanges": st.lists(
            _SPEC_TEXT | st.sampled_from(["10.0.0.0/8", "::1/128", "300.1.1.1/8"]), max_size=4
        ),
        "emailDomains": st.lists(_SPEC_TEXT, max_size=3),
        "allowedUsages": st.lists(
            _SPEC_TEXT | st.sampled_from(["server auth", "digital signature"]), max_size=3
        ),
        "allowCA": st.booleans(),
        "defaultDuration": _SPEC_TEXT | st.sampled_from(["1h", "2160h", "0s"]),
        "maxDuration": _SPEC_TEXT | st.sampled_from(["24h", "720h"]),
        "minDuration": _SPEC_TEXT | st.sampled_from(["1m", "48h"]),
    },
)


@FUZZ
@given(_POLICY_SPECS)
def test_policy_from_any_schema_shaped_spec_is_built_or_refused(spec: dict[str, Any]) -> None:
    """The CRD guarantees the shapes (lists of strings, a boolean, strings); the values are anyone's."""
    try:
        Policy.from_spec(spec)
    except PermanentError as err:
        assert err.message


_ANY_NAME = st.one_of(
    st.text(max_size=80).map(lambda t: ("dns", t)),
    st.text(max_size=80).map(lambda t: ("uri", t)),
    st.text(max_size=80).map(lambda t: ("email", t)),
    st.ip_addresses().map(lambda a: ("ip", a)),
)


def _general_name(kind: str, value: Any) -> x509.GeneralName:
    if kind == "dns":
        return x509.DNSName._init_without_validation(value)  # type: ignore[attr-defined]
    if kind == "uri":
        return x509.UniformResourceIdentifier._init_without_validation(value)  # type: ignore[attr-defined]
    if kind == "email":
        return x509.RFC822Name._init_without_validation(value)  # type: ignore[attr-defined]
    return x509.IPAddress(value)


@FUZZ
@given(st.lists(_ANY_NAME, max_size=6), st.text(min_size=1, max_size=64))
def test_policy_name_checks_never_crash(names: list[tuple[str, Any]], common_name: str) -> None:
    policy = Policy.from_spec(
        {
            "dnsDomains": ["example.com", ".svc.cluster.local"],
            "uriPrefixes": ["spiffe://cluster.local/ns/"],
            "ipRanges": ["10.0.0.0/8", "fd00::/8"],
            "emailDomains": ["example.com"],
        }
    )
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name, _validate=False)])
    try:
        policy.check_names(subject, [_general_name(kind, value) for kind, value in names])
    except PermanentError as err:
        assert err.message


# -- every issued certificate obeys the policy: an independent oracle -----------------------------------

#: cert-manager's usage strings, as its API documents them (written again, not imported).
ORACLE_KEY_USAGE = {
    "digital signature": "digital_signature",
    "key encipherment": "key_encipherment",
    "content commitment": "content_commitment",
    "key agreement": "key_agreement",
}
ORACLE_EXTENDED = {
    "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code signing": ExtendedKeyUsageOID.CODE_SIGNING,
}
#: RFC 5480: an ECDSA key may not encipher. cert-manager's default usages when none are named.
ORACLE_EC_FORBIDDEN = {"key_encipherment", "data_encipherment"}
ORACLE_DEFAULT_USAGES = ("digital signature", "key encipherment")
ORACLE_DEFAULT_DURATION = timedelta(hours=2160)
ORACLE_MIN_DURATION = timedelta(minutes=10)
ORACLE_BACKDATE = timedelta(minutes=5)


@dataclass(frozen=True)
class PolicyRules:
    """The plain rules of one issuer policy, in the oracle's own terms."""

    dns_domains: tuple[str, ...] | None
    uri_prefixes: tuple[str, ...] | None
    ip_ranges: tuple[str, ...] | None
    max_duration: timedelta | None
    allow_ca: bool

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"allowCA": self.allow_ca}
        if self.dns_domains is not None:
            spec["dnsDomains"] = list(self.dns_domains)
        if self.uri_prefixes is not None:
            spec["uriPrefixes"] = list(self.uri_prefixes)
        if self.ip_ranges is not None:
            spec["ipRanges"] = list(self.ip_ranges)
        if self.max_duration is not None:
            spec["maxDuration"] = f"{int(self.max_duration.total_seconds())}s"
        return spec

    def restricts_names(self) -> bool:
        """Once any SAN rule is written, a kind without a rule admits nothing (issue 12)."""
        return any(rule is not None for rule in (self.dns_domains, self.uri_prefixes, self.ip_ranges))

    def invalid(self) -> bool:
        """allowCA with a URI rule on a path: no sub-CA NameConstraints could carry it."""
        return self.allow_ca and any(p.split("://", 1)[1].partition("/")[2] for p in self.uri_prefixes or ())

    def admits_dns(self, name: str) -> bool:
        if self.dns_domains is None:
            return not self.restricts_names()
        name = name.lower().rstrip(".")
        return any(name == d or name.endswith("." + d) for d in self.dns_domains)

    def admits_uri(self, uri: str) -> bool:
        # Every generated prefix ends in "/": the URI must continue below it.
        if self.uri_prefixes is None:
            return not self.restricts_names()
        return any(uri.startswith(p) and len(uri) > len(p) for p in self.uri_prefixes)

    def admits_ip(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if self.ip_ranges is None:
            return not self.restricts_names()
        return any(
            address.version == net.version and address in net
            for net in (ipaddress.ip_network(r) for r in self.ip_ranges)
        )


_LABEL = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?\Z", fullmatch=True)
_DOMAINS = ("example.com", "svc.cluster.local", "corp.example.org")
_DNS = st.builds(
    lambda labels, suffix, upper: (".".join(labels) + suffix).upper() if upper else ".".join(labels) + suffix,
    st.lists(_LABEL, min_size=1, max_size=3),
    st.sampled_from(["." + d for d in _DOMAINS] + [".example.net", "example.com", ".com", ""]),
    st.booleans(),
).filter(lambda n: n and not n.startswith(".") and len(n) <= 253)
_URI = st.builds(
    lambda prefix, rest: prefix + "/".join(rest),
    st.sampled_from(["spiffe://cluster.local/ns/", "spiffe://cluster.local/nsx/", "https://example.com/a/"]),
    st.lists(st.from_regex(r"\A[a-z0-9]{1,6}\Z", fullmatch=True), min_size=1, max_size=3),
)
_IP = st.sampled_from(["10.1.2.3", "10.255.0.1", "192.168.1.1", "8.8.8.8", "fd00::1", "2001:db8::1"])
_USAGES = st.lists(
    st.sampled_from(sorted(ORACLE_KEY_USAGE) + sorted(ORACLE_EXTENDED)), max_size=4, unique=True
)
_RULES = st.builds(
    PolicyRules,
    dns_domains=st.none()
    | st.lists(st.sampled_from(_DOMAINS), min_size=1, max_size=2, unique=True).map(tuple),
    uri_prefixes=st.none() | st.sampled_from([("spiffe://cluster.local/ns/",), ("spiffe://cluster.local/",)]),
    ip_ranges=st.none() | st.sampled_from([("10.0.0.0/8",), ("10.0.0.0/8", "fd00::/8"), ("192.168.0.0/16",)]),
    max_duration=st.none() | st.sampled_from([timedelta(hours=1), timedelta(hours=24), timedelta(days=30)]),
    allow_ca=st.booleans(),
)


@dataclass(frozen=True)
class Case:
    rules: PolicyRules
    dns: tuple[str, ...]
    uris: tuple[str, ...]
    ips: tuple[str, ...]
    usages: tuple[str, ...]
    is_ca: bool
    duration: timedelta | None
    ca_days_left: int


_CASES = st.builds(
    Case,
    rules=_RULES,
    dns=st.lists(_DNS, max_size=3, unique=True).map(tuple),
    uris=st.lists(_URI, max_size=2, unique=True).map(tuple),
    ips=st.lists(_IP, max_size=2, unique=True).map(tuple),
    usages=_USAGES.map(tuple),
    is_ca=st.booleans(),
    duration=st.none() | st.timedeltas(min_value=timedelta(minutes=1), max_value=timedelta(days=800)),
    ca_days_left=st.sampled_from([1, 20, 365, 3650]),
)


def _oracle_refusal(case: Case) -> str | None:
    """Why the oracle's own reading of the rules refuses the request, or None if it must be issued."""
    rules = case.rules
    if case.is_ca and not rules.allow_ca:
        return "CA"
    if not case.dns and not case.uris and not case.ips:
        return "no names"  # the CSRs here have an empty subject
    if not all(rules.admits_dns(d) for d in case.dns):
        return "dns"
    if not all(rules.admits_uri(u) for u in case.uris):
        return "uri"
    if not all(rules.admits_ip(ipaddress.ip_address(i)) for i in case.ips):
        return "ip"
    if case.duration is not None and case.duration < ORACLE_MIN_DURATION:
        return "too short"
    asked = {ORACLE_KEY_USAGE[u] for u in case.usages if u in ORACLE_KEY_USAGE} or (
        set() if case.usages else {"digital_signature", "key_encipherment"}
    )
    if asked and not asked - ORACLE_EC_FORBIDDEN:
        return "usages impossible for an EC key"
    return None


_CAS: dict[int, IssuingCA] = {}


def _ca(days_left: int) -> IssuingCA:
    """A CA issued a year ago (or less) that has ``days_left`` days left at NOW."""
    if days_left not in _CAS:
        age = timedelta(days=min(365, 3650 - days_left))
        _CAS[days_left] = make_ca(
            now=NOW - age, duration=age + timedelta(days=days_left), subject=f"CN=oracle CA {days_left}d"
        )
    return _CAS[days_left]


@settings(max_examples=200, deadline=DEADLINE, suppress_health_check=[HealthCheck.too_slow])
@given(_CASES)
def test_every_issued_certificate_obeys_the_policy(case: Case) -> None:
    assume(case.rules.max_duration is None or case.rules.max_duration >= ORACLE_MIN_DURATION)
    _issue_and_judge(case)


def _issue_and_judge(case: Case) -> None:
    leaf_key = software_key("ecdsa-p256")
    assert isinstance(leaf_key, ec.EllipticCurvePrivateKey)
    extensions: list[tuple[x509.ExtensionType, bool]] = []
    if case.is_ca:
        extensions.append((x509.BasicConstraints(ca=True, path_length=None), True))
    csr = build_csr(
        key=leaf_key, common_name=None, dns=case.dns, uris=case.uris, ips=case.ips, extensions=extensions
    )
    if case.rules.invalid():
        with pytest.raises(PermanentError, match="cannot express"):
            Policy.from_spec(case.rules.spec())
        return
    policy = Policy.from_spec(case.rules.spec())
    ca = _ca(case.ca_days_left)
    request = SigningRequest(
        csr.public_bytes(serialization.Encoding.PEM),
        duration=case.duration,
        is_ca=case.is_ca,
        usages=case.usages,
    )
    expected_refusal = _oracle_refusal(case)
    try:
        bundle = issue_checked_certificate(
            check_csr(request.csr_pem), request, ca=ca.chain, ca_key=ca.key, policy=policy, now=NOW
        )
    except PermanentError as err:
        assert expected_refusal is not None, f"a request the rules admit was refused: {err.message}"
        return
    assert expected_refusal is None, f"issued although the rules refuse it ({expected_refusal})"
    cert = x509.load_pem_x509_certificates(bundle.chain_pem)[0]
    _judge(case, cert, ca, leaf_key)


def _judge(case: Case, cert: x509.Certificate, ca: IssuingCA, leaf_key: ec.EllipticCurvePrivateKey) -> None:
    rules = case.rules
    # Signed by the CA, for the requester's key.
    cert.verify_directly_issued_by(ca.cert)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert cert.public_key().public_bytes(*spki) == leaf_key.public_key().public_bytes(*spki)

    # Exactly the names asked for, each admitted by the rules.
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    assert san.get_values_for_type(x509.DNSName) == list(case.dns)
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == list(case.uris)
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == [
        str(ipaddress.ip_address(i)) for i in case.ips
    ]
    assert all(rules.admits_dns(d) for d in san.get_values_for_type(x509.DNSName))
    assert all(rules.admits_uri(u) for u in san.get_values_for_type(x509.UniformResourceIdentifier))
    assert all(rules.admits_ip(a) for a in san.get_values_for_type(x509.IPAddress))

    # isCA as asked, and only if allowed.
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca == case.is_ca
    assert not constraints.ca or rules.allow_ca

    # A CA issued under name rules carries them, critical; otherwise no NameConstraints.
    try:
        name_constraints = cert.extensions.get_extension_for_class(x509.NameConstraints)
    except x509.ExtensionNotFound:
        assert not (case.is_ca and rules.restricts_names())
    else:
        assert case.is_ca and rules.restricts_names() and name_constraints.critical
        permitted_dns = {
            n.value for n in name_constraints.value.permitted_subtrees or () if isinstance(n, x509.DNSName)
        }
        assert permitted_dns == set(rules.dns_domains or ())

    # Key usages: what was asked (or cert-manager's default), less what an EC key may not do, plus
    # keyCertSign for a CA; extended usages exactly as asked.
    names = case.usages or ORACLE_DEFAULT_USAGES
    wanted = {ORACLE_KEY_USAGE[u] for u in names if u in ORACLE_KEY_USAGE} - ORACLE_EC_FORBIDDEN
    if case.is_ca:
        wanted.add("key_cert_sign")
    fields = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment")
    fields += ("key_agreement", "key_cert_sign", "crl_sign")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        assert not wanted, "KeyUsage missing: that would mean any usage"
    else:
        assert {f for f in fields if getattr(usage, f)} == wanted
    extended = [ORACLE_EXTENDED[u] for u in names if u in ORACLE_EXTENDED]
    try:
        got_extended = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        got_extended = []
    assert got_extended == extended

    # Validity: the requested (or default) lifetime, clamped to the maximum, never past the CA.
    lifetime = case.duration if case.duration is not None else ORACLE_DEFAULT_DURATION
    if rules.max_duration is not None:
        lifetime = min(lifetime, rules.max_duration)
    expected_end = min(NOW + lifetime, ca.cert.not_valid_after_utc)
    assert abs(cert.not_valid_after_utc - expected_end) < timedelta(seconds=1)
    assert cert.not_valid_after_utc <= ca.cert.not_valid_after_utc
    assert cert.not_valid_before_utc >= ca.cert.not_valid_before_utc
    assert NOW - ORACLE_BACKDATE - timedelta(seconds=1) <= cert.not_valid_before_utc <= NOW
    assert cert.issuer == ca.cert.subject


def test_the_oracle_sees_both_outcomes() -> None:
    """Guard against a generator that only ever makes refusals (or only acceptances)."""
    seen: set[bool] = set()

    @settings(max_examples=100, deadline=None, database=None)
    @given(_CASES)
    def sample(case: Case) -> None:
        seen.add(_oracle_refusal(case) is None)

    sample()
    assert seen == {True, False}


@pytest.mark.parametrize("days_left", [1, 20])
def test_a_ca_near_its_end_clamps_the_certificate(days_left: int) -> None:
    """A fixed example of the clamp, so it is exercised on every run whatever hypothesis draws."""
    case = Case(
        rules=PolicyRules(None, None, None, None, False),
        dns=("www.example.com",),
        uris=(),
        ips=(),
        usages=("digital signature", "server auth"),
        is_ca=False,
        duration=timedelta(days=90),
        ca_days_left=days_left,
    )
    _issue_and_judge(case)
