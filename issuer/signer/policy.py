"""Pure rules about what a certificate may say: durations, usages, basic constraints and SAN patterns.

Nothing here does I/O or reads the clock; every violation is a ``PermanentError`` naming the rule.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from issuer.durations import format_duration, parse_duration
from issuer.errors import PermanentError
from issuer.signer import name_constraints

# -- usages (cert-manager's KeyUsage strings) ------------------------------------------------------------

KEY_USAGE_BITS = {
    "signing": "digital_signature",
    "digital signature": "digital_signature",
    "content commitment": "content_commitment",
    "key encipherment": "key_encipherment",
    "key agreement": "key_agreement",
    "data encipherment": "data_encipherment",
    "cert sign": "key_cert_sign",
    "crl sign": "crl_sign",
    "encipher only": "encipher_only",
    "decipher only": "decipher_only",
}
EXTENDED_KEY_USAGES = {
    "any": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "s/mime": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "ipsec end system": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.5"),
    "ipsec tunnel": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.6"),
    "ipsec user": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.7"),
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "microsoft sgc": x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"),
    "netscape sgc": x509.ObjectIdentifier("2.16.840.1.113730.4.1"),
}
#: KeyUsage bits that make a certificate able to sign others: only a CA certificate may carry them.
CA_ONLY_USAGES = frozenset({"cert sign", "crl sign"})
#: cert-manager's default when a request names no usages.
DEFAULT_USAGES = ("digital signature", "key encipherment")
ALL_USAGES = frozenset(KEY_USAGE_BITS) | frozenset(EXTENDED_KEY_USAGES)
#: Key usages RFC 5480 (ECDSA) and RFC 8410 (Ed25519) forbid for those keys.
FORBIDDEN_KEY_USAGE_BITS = {
    "ec": frozenset({"key_encipherment", "data_encipherment"}),
    "ed25519": frozenset(
        {"key_encipherment", "data_encipherment", "key_agreement", "encipher_only", "decipher_only"}
    ),
    "rsa": frozenset({"key_agreement", "encipher_only", "decipher_only"}),
}


@dataclass(frozen=True)
class Usages:
    """Resolved usages: the KeyUsage bits and the ExtendedKeyUsage OIDs of a certificate."""

    key_usage_bits: frozenset[str]
    extended: tuple[x509.ObjectIdentifier, ...]


def normalise_usages(usages: Iterable[str]) -> tuple[str, ...]:
    """Lower-cased, de-duplicated usages in request order; unknown strings are a PermanentError."""
    seen: list[str] = []
    for usage in usages:
        name = usage.strip().lower()
        if name not in ALL_USAGES:
            raise PermanentError(f"unknown usage {usage!r}")
        if name not in seen:
            seen.append(name)
    return tuple(seen)


def resolve_usages(usages: Sequence[str], *, is_ca: bool, key_family: str) -> Usages:
    """The usages a certificate gets: the request's (or cert-manager's default), plus cert sign for a CA,
    less the KeyUsage bits the subject key's algorithm forbids."""
    names = normalise_usages(usages) or DEFAULT_USAGES
    bits = {KEY_USAGE_BITS[n] for n in names if n in KEY_USAGE_BITS}
    if is_ca:
        bits.add("key_cert_sign")
    if bits & {"encipher_only", "decipher_only"} and "key_agreement" not in bits:
        raise PermanentError("usages 'encipher only' and 'decipher only' need 'key agreement'")
    asked = bits - {"key_cert_sign"}
    bits -= FORBIDDEN_KEY_USAGE_BITS.get(key_family, frozenset())
    if asked and not bits - {"key_cert_sign"}:
        # Omitting KeyUsage would mean "any usage" (RFC 5280 4.2.1.3): wider than what was asked.
        wanted = ", ".join(n for n in names if n in KEY_USAGE_BITS)
        raise PermanentError(f"usages {wanted} are not possible for a {key_family} key")
    extended: list[x509.ObjectIdentifier] = []
    for name in names:
        oid = EXTENDED_KEY_USAGES.get(name)
        if oid is not None and oid not in extended:
            extended.append(oid)
    return Usages(frozenset(bits), tuple(extended))


#: The fields of cryptography's ``x509.KeyUsage``, in RFC 5280 bit order.
KEY_USAGE_FIELDS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


def key_usage_extension(bits: frozenset[str]) -> x509.KeyUsage:
    return x509.KeyUsage(**{name: name in bits for name in KEY_USAGE_FIELDS})


# -- the per-issuer policy -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """What one issuer may sign.

    - SAN rules (``dns_domains``, ``uri_prefixes``, ``ip_ranges``, ``email_domains``): with none set
      (all ``None``) every name is admitted. Once any is set, the policy restricts names: a kind whose
      rule is ``None`` is refused like one whose rule is empty, SANs of other kinds (otherName, ...) are
      refused, and every Common Name, trimmed, must repeat one of the SANs.
    - SPIFFE URIs (``spiffe:``) are admitted only in canonical form (:func:`check_spiffe_id`), whatever
      the policy; other URIs under ``uri_prefixes`` may carry no query or fragment.
    - ``cert sign`` and ``crl sign`` only with isCA; the ``any`` extended key usage only with
      ``allow_any_extended_key_usage``.
    - with ``allow_ca``, a CA certificate carries NameConstraints built from the SAN rules
      (:meth:`sub_ca_name_constraints`); a URI rule a constraint cannot express makes the policy invalid.
    - ``default_duration`` applies when a request names none; ``max_duration`` caps every certificate
      (a longer request is shortened, as cert-manager's issuers clamp to the CA's validity).
    - ``dns_domains``: a name is admitted if it equals a domain or lies under it on a label boundary; a
      domain written with a leading dot (``.svc.cluster.local``) admits only names under it.
    - ``uri_prefixes``: compared segment by segment after scheme and authority; a prefix ending in ``/``
      admits only URIs below it.
    """

    default_duration: timedelta = timedelta(hours=2160)
    max_duration: timedelta | None = None
    min_duration: timedelta = timedelta(minutes=10)
    allow_ca: bool = False
    allow_any_extended_key_usage: bool = False
    allowed_usages: frozenset[str] | None = None
    dns_domains: tuple[str, ...] | None = None
    uri_prefixes: tuple[str, ...] | None = None
    ip_ranges: tuple[str, ...] | None = None
    email_domains: tuple[str, ...] | None = None
    _networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        default=(), init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.max_duration is not None and self.default_duration > self.max_duration:
            raise PermanentError(
                f"policy: defaultDuration {format_duration(self.default_duration)} exceeds "
                f"maxDuration {format_duration(self.max_duration)}"
            )
        if self.max_duration is not None and self.min_duration > self.max_duration:
            raise PermanentError(
                f"policy: minDuration {format_duration(self.min_duration)} exceeds "
                f"maxDuration {format_duration(self.max_duration)}"
            )
        if self.default_duration < self.min_duration:
            raise PermanentError(
                f"policy: defaultDuration {format_duration(self.default_duration)} is under "
                f"minDuration {format_duration(self.min_duration)}"
            )
        if self.allowed_usages is not None:
            object.__setattr__(self, "allowed_usages", frozenset(normalise_usages(self.allowed_usages)))
        for domain in self.dns_domains or ():
            bare = domain[1:] if domain.startswith(".") else domain
            _check_dns_name(bare, what="policy dnsDomains entry", allow_wildcard=False)
        for prefix in self.uri_prefixes or ():
            _split_uri(prefix, what="policy uriPrefixes entry", prefix=True)
        if self.allow_ca:
            try:
                name_constraints.check_expressible(self.uri_prefixes)
            except PermanentError as err:
                raise PermanentError(f"policy: allowCA is true, but {err.message}") from None
        try:
            networks = tuple(ipaddress.ip_network(r, strict=False) for r in self.ip_ranges or ())
        except ValueError as err:
            raise PermanentError(f"policy: ipRanges: {err}") from None
        object.__setattr__(self, "_networks", networks)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> Policy:
        """Build a policy from the camelCase ``spec.policy`` of an issuer (or a CLI config)."""
        spec = spec or {}

        def names(key: str) -> tuple[str, ...] | None:
            value = spec.get(key)
            return None if value is None else tuple(str(v) for v in value)

        usages = spec.get("allowedUsages")
        flags: dict[str, bool] = {}
        for key in ("allowCA", "allowAnyExtendedKeyUsage"):
            value = spec.get(key, False)
            if not isinstance(value, bool):
                raise PermanentError(f"policy: {key} must be true or false, not {value!r}")
            flags[key] = value
        kwargs: dict[str, Any] = {
            "allow_ca": flags["allowCA"],
            "allow_any_extended_key_usage": flags["allowAnyExtendedKeyUsage"],
            "allowed_usages": None if usages is None else frozenset(str(u) for u in usages),
            "dns_domains": names("dnsDomains"),
            "uri_prefixes": names("uriPrefixes"),
            "ip_ranges": names("ipRanges"),
            "email_domains": names("emailDomains"),
        }
        for key, attr in (
            ("defaultDuration", "default_duration"),
            ("maxDuration", "max_duration"),
            ("minDuration", "min_duration"),
        ):
            if spec.get(key):
                kwargs[attr] = parse_duration(str(spec[key]))
        if "default_duration" not in kwargs and kwargs.get("max_duration") is not None:
            # Only a maximum was written: the implicit default must not exceed it.
            kwargs["default_duration"] = min(cls.default_duration, kwargs["max_duration"])
        return cls(**kwargs)

    # -- checks --------------------------------------------------------------------------------------

    def lifetime(self, requested: timedelta | None) -> timedelta:
        """The lifetime to issue for a requested duration: default if absent, capped at the maximum."""
        duration = self.default_duration if requested is None else requested
        if duration <= timedelta(0):
            raise PermanentError(f"duration {format_duration(duration)} is not positive")
        if duration < self.min_duration:
            raise PermanentError(
                f"duration {format_duration(duration)} is shorter than the issuer's minimum "
                f"{format_duration(self.min_duration)} (policy.minDuration)"
            )
        if self.max_duration is not None:
            duration = min(duration, self.max_duration)
        return duration

    def check_request(self, *, is_ca: bool, usages: Sequence[str]) -> None:
        """Refuse a CA certificate unless allowed, CA usages on a non-CA, the ``any`` extended key usage
        unless allowed, and usages outside ``allowed_usages``."""
        if is_ca and not self.allow_ca:
            raise PermanentError("policy forbids CA certificates (policy.allowCA is false)")
        names = normalise_usages(usages) or DEFAULT_USAGES
        ca_only = [n for n in names if n in CA_ONLY_USAGES]
        if ca_only and not is_ca:
            raise PermanentError(
                f"usages {', '.join(ca_only)} are for CA certificates only; spec.isCA is false"
            )
        if "any" in names and not self.allow_any_extended_key_usage:
            raise PermanentError(
                "policy forbids the 'any' extended key usage "
                "(set policy.allowAnyExtendedKeyUsage to allow it)"
            )
        if self.allowed_usages is not None:
            refused = [n for n in names if n not in self.allowed_usages]
            if refused:
                raise PermanentError(f"policy forbids usages {', '.join(refused)} (policy.allowedUsages)")

    def check_names(
        self, subject: x509.Name, names: Sequence[x509.GeneralName], *, is_ca: bool = False
    ) -> None:
        """Every SAN must be allowed; a SPIFFE URI must be canonical; when the policy restricts names,
        SAN kinds it does not name are refused and every Common Name of a non-CA certificate, trimmed,
        must be one of the SANs (a CA's Common Name names the CA, and no client reads it as a host:
        what a CA may name is bounded by its NameConstraints instead)."""
        for name in names:
            if isinstance(name, x509.UniformResourceIdentifier) and _is_spiffe(name.value):
                check_spiffe_id(name.value)
        if not self.restricts_names():
            return
        for name in names:
            if isinstance(name, x509.DNSName):
                self._check_dns(name.value)
            elif isinstance(name, x509.UniformResourceIdentifier):
                self._check_uri(name.value)
            elif isinstance(name, x509.IPAddress):
                self._check_ip(name.value)
            elif isinstance(name, x509.RFC822Name):
                self._check_email(name.value)
            else:
                raise PermanentError(
                    f"policy restricts names, so {type(name).__name__} SANs cannot be judged and are refused"
                )
        if is_ca:
            return
        for attribute in subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME):
            self._check_common_name(str(attribute.value), names)

    def restricts_names(self) -> bool:
        """Whether any SAN rule is set (then SAN kinds without a rule are refused)."""
        rules = (self.dns_domains, self.uri_prefixes, self.ip_ranges, self.email_domains)
        return any(rule is not None for rule in rules)

    def _rule_missing(self, kind: str, rule: str) -> PermanentError:
        named = ", ".join(
            f"policy.{key}"
            for key, value in (
                ("dnsDomains", self.dns_domains),
                ("uriPrefixes", self.uri_prefixes),
                ("ipRanges", self.ip_ranges),
                ("emailDomains", self.email_domains),
            )
            if value is not None
        )
        return PermanentError(
            f"policy forbids {kind} SANs: the policy names {named} but not policy.{rule}, and a policy "
            "that names any SAN kind refuses the kinds it does not name"
        )

    def _check_common_name(self, value: str, names: Sequence[x509.GeneralName]) -> None:
        cn = value.strip()
        if not any(_same_name(cn, name) for name in names):
            shown = f"{value!r} (trimmed {cn!r})" if cn != value else repr(value)
            raise PermanentError(
                f"common name {shown} is not one of the request's SANs; the policy restricts names, so a "
                "common name must repeat a DNS, IP, email or URI SAN"
            )

    def sub_ca_name_constraints(self) -> x509.NameConstraints | None:
        """The NameConstraints a CA certificate issued under this policy carries (critical), or None when
        the policy restricts no names. See :mod:`issuer.signer.name_constraints`."""
        return name_constraints.build_name_constraints(
            dns_domains=self.dns_domains,
            networks=None if self.ip_ranges is None else self._networks,
            email_domains=self.email_domains,
            uri_prefixes=self.uri_prefixes,
        )

    def _check_dns(self, value: str, what: str = "DNS name") -> None:
        if self.dns_domains is None:
            raise self._rule_missing("DNS name", "dnsDomains")
        name = value.lower().rstrip(".")
        if not any(_under_domain(name, d) for d in self.dns_domains):
            raise PermanentError(f"policy forbids {what} {value!r} (not under policy.dnsDomains)")

    def _check_uri(self, value: str) -> None:
        if self.uri_prefixes is None:
            raise self._rule_missing("URI", "uriPrefixes")
        uri = _split_uri(value, what="URI SAN")
        if not any(_under_prefix(uri, _split_uri(p, what="prefix", prefix=True)) for p in self.uri_prefixes):
            raise PermanentError(f"policy forbids URI {value!r} (not under policy.uriPrefixes)")

    def _check_ip(self, value: ipaddress.IPv4Address | ipaddress.IPv6Address | Any) -> None:
        if self.ip_ranges is None:
            raise self._rule_missing("IP address", "ipRanges")
        if not isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address) or not any(
            value in net for net in self._networks if net.version == value.version
        ):
            raise PermanentError(f"policy forbids IP address {value} (not in policy.ipRanges)")

    def _check_email(self, value: str) -> None:
        if self.email_domains is None:
            raise self._rule_missing("email", "emailDomains")
        domain = value.rpartition("@")[2].lower()
        if not any(_under_domain(domain, d) for d in self.email_domains):
            raise PermanentError(f"policy forbids email {value!r} (not under policy.emailDomains)")


def newly_refused_forms(policy: Policy) -> tuple[str, ...]:
    """The request forms ``policy`` refuses that the rules before the stricter defaults (issue 12)
    admitted, one plain sentence each naming the policy field involved, in a stable order. Never empty:
    every issuer now refuses non-canonical SPIFFE IDs. For an Event on the issuer, so that its owner
    learns why requests that used to be issued fail."""
    refused: list[str] = []
    if policy.restricts_names():
        for kind, rule, value in (
            ("DNS name", "dnsDomains", policy.dns_domains),
            ("IP address", "ipRanges", policy.ip_ranges),
            ("email", "emailDomains", policy.email_domains),
            ("URI", "uriPrefixes", policy.uri_prefixes),
        ):
            if value is None:
                refused.append(f"{kind} SANs (the policy names SAN rules but not policy.{rule})")
        refused.append("a common name that is not, once trimmed, one of the request's SANs")
    refused.append(
        "SPIFFE IDs not in canonical form (query, fragment, port, user info, %-encoding, upper case, "
        "empty or dot segments)"
    )
    if policy.uri_prefixes is not None:
        refused.append("URIs with a query or fragment (policy.uriPrefixes)")
    allowed = policy.allowed_usages
    ca_only = sorted(u for u in CA_ONLY_USAGES if allowed is None or u in allowed)
    if ca_only:
        refused.append(f"usages {' and '.join(ca_only)} without spec.isCA")
    if not policy.allow_any_extended_key_usage and (allowed is None or "any" in allowed):
        refused.append("the 'any' extended key usage (unless policy.allowAnyExtendedKeyUsage is true)")
    return tuple(refused)


#: Names the policy semantics of issue 12; an announcement of :func:`tightening_message` made under an
#: older value (or none) is due again.
POLICY_SEMANTICS = "2026-12-stricter-defaults"


def tightening_message(policy: Policy) -> str:
    """One Event message telling an issuer's owner what :func:`newly_refused_forms` found, at most 1024
    characters (an Event's message limit). Never empty: every issuer now refuses non-canonical SPIFFE IDs."""
    refused = newly_refused_forms(policy)
    message = (
        "stricter policy defaults: this issuer now refuses " + "; ".join(refused) + " (see docs/policy.md)"
    )
    return message[:1024]


_DNS_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


def _check_dns_name(name: str, *, what: str, allow_wildcard: bool = True) -> None:
    """DNS syntax as certificates carry it: ASCII (A-labels), at most 253 characters, 63 per label,
    and a wildcard only as the whole leftmost label."""
    if not name or len(name) > 253 or not name.isascii():
        raise PermanentError(f"{what} {name!r} is not a valid DNS name")
    bare = name[:-1] if name.endswith(".") else name
    labels = bare.lower().split(".")
    for index, label in enumerate(labels):
        if label == "*" and index == 0 and allow_wildcard and len(labels) > 1:
            continue
        if not _DNS_LABEL.match(label) or (label.startswith("xn--") and not _is_a_label(label)):
            raise PermanentError(f"{what} {name!r} is not a valid DNS name")


def _is_a_label(label: str) -> bool:
    """Whether an ``xn--`` label is the punycode of a real U-label: it decodes, the result has a
    non-ASCII character and no control characters, and it encodes back to the same label. Invalid
    punycode would otherwise pass the LDH check and reach clients that decode it differently."""
    try:
        decoded = label[4:].encode("ascii").decode("punycode")
    except (UnicodeError, ValueError):
        return False
    if decoded.isascii() or any(unicodedata.category(ch) in ("Cc", "Cs", "Cn") for ch in decoded):
        return False
    return "xn--" + decoded.encode("punycode").decode("ascii") == label


def check_dns_name(name: str) -> None:
    """Public form of the DNS syntax check, for SANs read from a CSR."""
    _check_dns_name(name, what="DNS name")


def _under_domain(name: str, domain: str) -> bool:
    domain = domain.lower().rstrip(".")
    if domain.startswith("."):
        return name.endswith(domain) and len(name) > len(domain)
    return name == domain or name.endswith("." + domain)


def _same_name(cn: str, name: x509.GeneralName) -> bool:
    """Whether a (trimmed) Common Name says the same as a SAN, compared as that kind of name."""
    if isinstance(name, x509.DNSName):
        return cn.lower().rstrip(".") == name.value.lower().rstrip(".")
    if isinstance(name, x509.IPAddress):
        try:
            return bool(ipaddress.ip_address(cn) == name.value)
        except ValueError:
            return False
    if isinstance(name, x509.RFC822Name):
        local, _, domain = name.value.rpartition("@")
        cn_local, _, cn_domain = cn.rpartition("@")
        return (cn_local, cn_domain.lower()) == (local, domain.lower())
    if isinstance(name, x509.UniformResourceIdentifier):
        return cn == name.value
    return False


# -- SPIFFE IDs (https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md) ------------------------

_SPIFFE_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]+")
_SPIFFE_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")


def _is_spiffe(value: str) -> bool:
    return value[:7].lower() == "spiffe:"


def check_spiffe_id(value: str, *, what: str = "URI SAN", prefix: bool = False) -> None:
    """Refuse a SPIFFE ID not in the canonical form the SPIFFE standard defines: lower-case ``spiffe``
    scheme and trust domain, no user info, port, query or fragment, no percent-encoding, and path
    segments of letters, digits, ``.``, ``-`` and ``_`` that are neither empty nor ``.``/``..``. Such
    IDs are what every SPIFFE library parses alike, so a raw segment-wise comparison cannot be fooled.
    A ``prefix`` (a policy rule) may end with ``/``. The error names the first problem found."""

    def refuse(problem: str) -> PermanentError:
        return PermanentError(f"{what} {value!r} is not a canonical SPIFFE ID: {problem}")

    if not value.startswith("spiffe:"):
        raise refuse("the scheme must be lower-case 'spiffe'")
    if not value.startswith("spiffe://"):
        raise refuse("it must start with 'spiffe://'")
    rest = value[len("spiffe://") :]
    for mark, problem in (("?", "it has a query"), ("#", "it has a fragment"), ("%", "it has %-encoding")):
        if mark in rest:
            raise refuse(problem)
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        raise refuse("it has user info")
    if ":" in authority:
        raise refuse("it has a port")
    if not authority:
        raise refuse("the trust domain is empty")
    if authority != authority.lower() and _SPIFFE_TRUST_DOMAIN.fullmatch(authority.lower()):
        raise refuse("the trust domain must be lower-case")
    if not _SPIFFE_TRUST_DOMAIN.fullmatch(authority):
        raise refuse("the trust domain may hold only a-z, 0-9, '.', '-' and '_'")
    if not slash:
        return
    segments = path.split("/")
    if prefix and segments[-1] == "":
        segments = segments[:-1]
    for segment in segments:
        if segment in ("", ".", ".."):
            raise refuse("it has empty, '.' or '..' path segments")
        if not _SPIFFE_SEGMENT.fullmatch(segment):
            raise refuse(f"path segment {segment!r} may hold only letters, digits, '.', '-' and '_'")


_ENCODED_SEPARATORS = re.compile(r"%(2f|5c|2e|00)", re.IGNORECASE)


@dataclass(frozen=True)
class _URI:
    scheme: str
    authority: str
    segments: tuple[str, ...]
    open_ended: bool  # written with a trailing "/"


def _split_uri(value: str, *, what: str, prefix: bool = False) -> _URI:
    """Split a URI for segment-wise comparison of its raw (never decoded) path, refusing what could make
    a prefix match lie: dot segments, encoded separators or dots, backslashes, empty segments, user
    info, a query or fragment (a path prefix says nothing of them), and a non-canonical SPIFFE ID."""
    if _is_spiffe(value):
        check_spiffe_id(value, what=what, prefix=prefix)
    if not value.isascii() or any(ch in value for ch in "\\\x00 \t\r\n"):
        raise PermanentError(f"{what} {value!r} has characters a URI may not carry")
    if _ENCODED_SEPARATORS.search(value):
        raise PermanentError(f"{what} {value!r} has percent-encoded separators or dots")
    parts = urlsplit(value)
    if not parts.scheme or not parts.netloc or "@" in parts.netloc:
        raise PermanentError(f"{what} {value!r} needs a scheme and a host, without user info")
    if "?" in value or "#" in value:
        raise PermanentError(f"{what} {value!r} has a query or fragment, which a path prefix cannot judge")
    path = parts.path
    segments = tuple(path.split("/")[1:]) if path else ()
    open_ended = path.endswith("/")
    if open_ended:
        segments = segments[:-1]
    if any(s in ("", ".", "..") for s in segments):
        raise PermanentError(f"{what} {value!r} has empty, '.' or '..' path segments")
    return _URI(parts.scheme.lower(), parts.netloc.lower(), segments, open_ended)


def _under_prefix(uri: _URI, prefix: _URI) -> bool:
    if (uri.scheme, uri.authority) != (prefix.scheme, prefix.authority):
        return False
    if uri.segments[: len(prefix.segments)] != prefix.segments:
        return False
    return not prefix.open_ended or len(uri.segments) > len(prefix.segments)
