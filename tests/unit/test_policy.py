"""The per-issuer policy (names, CA, usages, durations) and the resolution of cert-manager usages."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from issuer.errors import PermanentError
from issuer.signer.policy import Policy, newly_refused_forms, resolve_usages, tightening_message

NO_SUBJECT = x509.Name([])


def _cn(value: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, value)])


def _ip(text: str) -> x509.IPAddress:
    return x509.IPAddress(ipaddress.ip_address(text))


def _judge(policy: Policy, names: Sequence[x509.GeneralName], subject: x509.Name = NO_SUBJECT) -> str:
    """``"allowed"``, or the policy's refusal message."""
    try:
        policy.check_names(subject, names)
    except PermanentError as err:
        return err.message
    return "allowed"


# -- DNS names -----------------------------------------------------------------------------------------------

SVC = Policy(dns_domains=("svc.cluster.local",))
SVC_SUBDOMAINS_ONLY = Policy(dns_domains=(".svc.cluster.local",))


@pytest.mark.parametrize(
    ("policy", "dns", "allowed"),
    [
        pytest.param(SVC, "a.svc.cluster.local", True, id="subdomain-of-domain"),
        pytest.param(SVC, "x.y.svc.cluster.local", True, id="deep-subdomain-of-domain"),
        pytest.param(SVC, "svc.cluster.local", True, id="domain-itself"),
        pytest.param(SVC, "evilsvc.cluster.local", False, id="suffix-not-on-label-boundary"),
        pytest.param(SVC, "svc.cluster.local.evil.com", False, id="domain-as-prefix-of-other-domain"),
        pytest.param(SVC, "cluster.local", False, id="parent-of-domain"),
        pytest.param(SVC, "A.SVC.Cluster.Local", True, id="case-insensitive-name"),
        pytest.param(SVC, "a.svc.cluster.local.", True, id="trailing-dot-on-name"),
        pytest.param(
            Policy(dns_domains=("SVC.Cluster.Local.",)), "a.svc.cluster.local", True, id="policy-case-and-dot"
        ),
        pytest.param(SVC, "*.a.svc.cluster.local", True, id="wildcard-under-domain"),
        pytest.param(SVC, "*.svc.cluster.local", True, id="wildcard-directly-under-domain"),
        pytest.param(SVC, "*.cluster.local", False, id="wildcard-wider-than-domain"),
        pytest.param(SVC_SUBDOMAINS_ONLY, "a.svc.cluster.local", True, id="leading-dot-admits-subdomain"),
        pytest.param(SVC_SUBDOMAINS_ONLY, "svc.cluster.local", False, id="leading-dot-refuses-domain-itself"),
        pytest.param(
            SVC_SUBDOMAINS_ONLY, "evilsvc.cluster.local", False, id="leading-dot-refuses-non-boundary"
        ),
        pytest.param(
            SVC_SUBDOMAINS_ONLY, "*.svc.cluster.local", True, id="leading-dot-admits-wildcard-below"
        ),
        pytest.param(Policy(dns_domains=()), "a.svc.cluster.local", False, id="empty-list-admits-nothing"),
        pytest.param(
            Policy(dns_domains=("a.example", "b.example")), "x.b.example", True, id="any-domain-of-list"
        ),
        pytest.param(Policy(), "anything.example.com", True, id="no-rule-admits-anything"),
    ],
)
def test_dns_names_on_label_boundaries(policy: Policy, dns: str, allowed: bool) -> None:
    verdict = _judge(policy, [x509.DNSName(dns)])
    if allowed:
        assert verdict == "allowed"
    else:
        assert verdict == f"policy forbids DNS name {dns!r} (not under policy.dnsDomains)"


# -- URIs ----------------------------------------------------------------------------------------------------

NS_A = Policy(uri_prefixes=("spiffe://cluster.local/ns/a/",))


@pytest.mark.parametrize(
    ("policy", "uri", "problem"),
    [
        pytest.param(NS_A, "spiffe://cluster.local/ns/a/sa/x", None, id="spiffe-id-under-prefix"),
        pytest.param(
            NS_A,
            "spiffe://CLUSTER.Local/ns/a/sa/x",
            "trust domain must be lower-case",
            id="spiffe-upper-host",
        ),
        pytest.param(
            NS_A, "SPIFFE://cluster.local/ns/a/sa/x", "scheme must be lower-case", id="spiffe-upper-scheme"
        ),
        pytest.param(
            NS_A, "spiffe://cluster.local/ns/a/sa/x?/ns/b/sa/admin", "has a query", id="spiffe-query-names-b"
        ),
        pytest.param(
            NS_A, "spiffe://cluster.local/ns/a/sa/x#/../../b", "has a fragment", id="spiffe-fragment"
        ),
        pytest.param(NS_A, "spiffe://cluster.local/ns/a/sa/x/", "empty", id="spiffe-trailing-slash"),
        pytest.param(
            NS_A, "spiffe://cluster.local/ns/a/sa/x y", "may hold only", id="spiffe-space-in-segment"
        ),
        pytest.param(
            Policy(uri_prefixes=("https://example.com/api/",)),
            "https://example.com/api/v1?redirect=https://evil",
            "query or fragment",
            id="other-scheme-query",
        ),
        pytest.param(
            Policy(uri_prefixes=("https://example.com/api/",)),
            "https://example.com/api/v1#frag",
            "query or fragment",
            id="other-scheme-fragment",
        ),
        pytest.param(
            Policy(uri_prefixes=("https://example.com/api/",)),
            "HTTPS://Example.com/api/v1",
            None,
            id="other-scheme-host-case-insensitive",
        ),
        pytest.param(
            NS_A, "spiffe://cluster.local/ns/ab/sa/x", "not under", id="segment-prefix-is-not-string-prefix"
        ),
        pytest.param(NS_A, "spiffe://cluster.local/ns/A/sa/x", "not under", id="path-case-sensitive"),
        pytest.param(
            NS_A, "spiffe://cluster.local/ns/a/../b/sa/x", "'..' path segments", id="dot-dot-segment"
        ),
        pytest.param(NS_A, "spiffe://cluster.local/ns/a/./sa/x", "'..' path segments", id="dot-segment"),
        pytest.param(NS_A, "spiffe://cluster.local/ns/a//sa/x", "empty", id="empty-segment"),
        pytest.param(NS_A, "spiffe://cluster.local/ns/a%2fb/sa/x", "%-encoding", id="encoded-slash-lower"),
        pytest.param(NS_A, "spiffe://cluster.local/ns/a/%2E%2E/b/sa/x", "%-encoding", id="encoded-dot-dot"),
        pytest.param(NS_A, "spiffe://cluster.local/ns/%61/sa/x", "%-encoding", id="encoded-letter"),
        pytest.param(NS_A, "spiffe://cluster.local/ns/a%5Cb/sa/x", "%-encoding", id="encoded-backslash"),
        pytest.param(
            NS_A, "spiffe://cluster.local/ns/a\\..\\b/sa/x", "may hold only letters", id="raw-backslash"
        ),
        pytest.param(
            Policy(uri_prefixes=("https://example.com/",)),
            "https://example.com/a%2fb",
            "percent-encoded",
            id="other-scheme-encoded-slash",
        ),
        pytest.param(NS_A, "spiffe://cluster.local@evil/ns/a/sa/x", "has user info", id="user-info-trick"),
        pytest.param(NS_A, "spiffe://evil/ns/a/sa/x", "not under", id="other-host"),
        pytest.param(NS_A, "spiffe://cluster.local:8443/ns/a/sa/x", "has a port", id="spiffe-port"),
        pytest.param(
            Policy(uri_prefixes=("https://example.com/",)),
            "https://example.com:8443/x",
            "not under",
            id="other-scheme-other-port",
        ),
        pytest.param(NS_A, "https://cluster.local/ns/a/sa/x", "not under", id="other-scheme"),
        pytest.param(NS_A, "spiffe://cluster.local/ns/a", "not under", id="open-prefix-refuses-parent"),
        pytest.param(
            NS_A, "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66", "needs a scheme and a host", id="no-host"
        ),
        pytest.param(
            Policy(uri_prefixes=("spiffe://cluster.local/ns/a",)),
            "spiffe://cluster.local/ns/a",
            None,
            id="closed-prefix-admits-itself",
        ),
        pytest.param(
            Policy(uri_prefixes=("spiffe://cluster.local/ns/a",)),
            "spiffe://cluster.local/ns/a/sa/x",
            None,
            id="closed-prefix-admits-below",
        ),
        pytest.param(
            Policy(uri_prefixes=("spiffe://cluster.local/ns/a",)),
            "spiffe://cluster.local/ns/ab",
            "not under",
            id="closed-prefix-refuses-longer-segment",
        ),
        pytest.param(Policy(), "spiffe://anything/at/all", None, id="no-rule-admits-anything"),
    ],
)
def test_uri_prefixes_on_path_segments(policy: Policy, uri: str, problem: str | None) -> None:
    verdict = _judge(policy, [x509.UniformResourceIdentifier(uri)])
    if problem is None:
        assert verdict == "allowed"
    else:
        assert problem in verdict
        assert repr(uri) in verdict


# -- IP addresses and email ----------------------------------------------------------------------------------


IPS = Policy(ip_ranges=("10.0.0.0/8", "192.168.1.0/24", "fd00::/8"))


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        pytest.param("10.1.2.3", True, id="v4-inside-slash-8"),
        pytest.param("192.168.1.255", True, id="v4-last-of-slash-24"),
        pytest.param("192.168.2.1", False, id="v4-next-network"),
        pytest.param("11.0.0.1", False, id="v4-outside"),
        pytest.param("fd12:3456::1", True, id="v6-inside"),
        pytest.param("fe80::1", False, id="v6-outside"),
        pytest.param("::ffff:10.0.0.1", False, id="v4-mapped-v6-is-not-v4"),
    ],
)
def test_ip_ranges(address: str, allowed: bool) -> None:
    verdict = _judge(IPS, [_ip(address)])
    if allowed:
        assert verdict == "allowed"
    else:
        assert (
            verdict == f"policy forbids IP address {ipaddress.ip_address(address)} (not in policy.ipRanges)"
        )


EMAIL = Policy(email_domains=("example.com",))


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        pytest.param("alice@example.com", True, id="domain-itself"),
        pytest.param("alice@mail.Example.COM", True, id="subdomain-any-case"),
        pytest.param("alice@evilexample.com", False, id="suffix-not-on-label-boundary"),
        pytest.param("example.com@evil.org", False, id="domain-in-local-part"),
    ],
)
def test_email_domains(address: str, allowed: bool) -> None:
    verdict = _judge(EMAIL, [x509.RFC822Name(address)])
    if allowed:
        assert verdict == "allowed"
    else:
        assert verdict == f"policy forbids email {address!r} (not under policy.emailDomains)"


# -- names the policy cannot judge, and the common name ------------------------------------------------------

OTHER_NAME = x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), b"\x0c\x05a@b.c")


@pytest.mark.parametrize(
    ("policy", "allowed"),
    [
        pytest.param(Policy(), True, id="no-name-rule-admits-other-name"),
        pytest.param(
            Policy(allow_ca=True, allowed_usages=frozenset({"any"})), True, id="non-name-rules-admit"
        ),
        pytest.param(Policy(dns_domains=("example.com",)), False, id="dns-rule-refuses"),
        pytest.param(Policy(uri_prefixes=("spiffe://x/",)), False, id="uri-rule-refuses"),
        pytest.param(Policy(ip_ranges=("10.0.0.0/8",)), False, id="ip-rule-refuses"),
        pytest.param(Policy(email_domains=("example.com",)), False, id="email-rule-refuses"),
        pytest.param(Policy(dns_domains=()), False, id="empty-rule-refuses"),
    ],
)
def test_other_name_refused_when_names_are_restricted(policy: Policy, allowed: bool) -> None:
    verdict = _judge(policy, [OTHER_NAME])
    if allowed:
        assert verdict == "allowed"
    else:
        assert "OtherName SANs cannot be judged" in verdict


ALL_KINDS = Policy(
    dns_domains=("svc.cluster.local",),
    ip_ranges=("10.0.0.0/8",),
    email_domains=("example.com",),
    uri_prefixes=("spiffe://cluster.local/",),
)
SVC_SAN = x509.DNSName("a.svc.cluster.local")


@pytest.mark.parametrize(
    ("common_name", "names", "problem"),
    [
        pytest.param("a.svc.cluster.local", [SVC_SAN], None, id="cn-repeats-dns-san"),
        pytest.param("A.SVC.cluster.local.", [SVC_SAN], None, id="cn-repeats-dns-san-any-case-and-dot"),
        pytest.param("a.svc.cluster.local ", [SVC_SAN], None, id="cn-with-trailing-space-trimmed-matches"),
        pytest.param("10.1.2.3", [_ip("10.1.2.3")], None, id="cn-repeats-ip-san"),
        pytest.param(
            "alice@example.com", [x509.RFC822Name("alice@example.com")], None, id="cn-repeats-email"
        ),
        pytest.param(
            "spiffe://cluster.local/ns/a",
            [x509.UniformResourceIdentifier("spiffe://cluster.local/ns/a")],
            None,
            id="cn-repeats-uri-san",
        ),
        pytest.param(
            "evil.example.com ",
            [SVC_SAN],
            "'evil.example.com ' (trimmed 'evil.example.com')",
            id="cn-trailing-space",
        ),
        pytest.param(" evil.example.com", [SVC_SAN], "trimmed 'evil.example.com'", id="cn-leading-space"),
        pytest.param("evil.example.com\t", [SVC_SAN], "trimmed 'evil.example.com'", id="cn-trailing-tab"),
        pytest.param(
            "b.svc.cluster.local", [SVC_SAN], "'b.svc.cluster.local'", id="cn-inside-policy-not-a-san"
        ),
        pytest.param("Evil.Example.Com.", [], "'Evil.Example.Com.'", id="cn-without-sans"),
        pytest.param("my service", [SVC_SAN], "'my service'", id="cn-free-text"),
        pytest.param("payments", [SVC_SAN], "'payments'", id="cn-single-label"),
        pytest.param("10.1.2.4", [_ip("10.1.2.3")], "'10.1.2.4'", id="cn-other-ip"),
        pytest.param(
            "Alice@example.com",
            [x509.RFC822Name("alice@example.com")],
            "'Alice@example.com'",
            id="cn-email-local-case",
        ),
    ],
)
def test_common_name_must_repeat_a_san_when_names_are_restricted(
    common_name: str, names: list[x509.GeneralName], problem: str | None
) -> None:
    verdict = _judge(ALL_KINDS, names, subject=_cn(common_name))
    if problem is None:
        assert verdict == "allowed"
    else:
        assert verdict.startswith("common name "), verdict
        assert problem in verdict
        assert "is not one of the request's SANs" in verdict


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param(Policy(), id="no-policy"),
        pytest.param(Policy(allow_ca=True, allowed_usages=frozenset({"server auth"})), id="non-name-rules"),
    ],
)
def test_common_name_unchecked_without_name_rules(policy: Policy) -> None:
    assert _judge(policy, [SVC_SAN], subject=_cn("anything.example.com ")) == "allowed"
    assert _judge(policy, [], subject=_cn("free text")) == "allowed"


@pytest.mark.parametrize(
    ("policy", "name", "missing"),
    [
        pytest.param(SVC, _ip("8.8.8.8"), "policy.ipRanges", id="dns-rule-refuses-ip"),
        pytest.param(
            SVC, x509.RFC822Name("admin@evil.com"), "policy.emailDomains", id="dns-rule-refuses-email"
        ),
        pytest.param(
            SVC,
            x509.UniformResourceIdentifier("spiffe://cluster.local/ns/b"),
            "policy.uriPrefixes",
            id="dns-rule-refuses-uri",
        ),
        pytest.param(
            NS_A, x509.DNSName("a.svc.cluster.local"), "policy.dnsDomains", id="uri-rule-refuses-dns"
        ),
        pytest.param(
            Policy(ip_ranges=("10.0.0.0/8",)),
            x509.DNSName("x.example"),
            "policy.dnsDomains",
            id="ip-rule-refuses-dns",
        ),
        pytest.param(
            Policy(email_domains=("example.com",)),
            _ip("10.0.0.1"),
            "policy.ipRanges",
            id="email-rule-refuses-ip",
        ),
    ],
)
def test_san_kinds_the_policy_does_not_name_are_refused(
    policy: Policy, name: x509.GeneralName, missing: str
) -> None:
    verdict = _judge(policy, [name])
    assert verdict.startswith("policy forbids "), verdict
    assert f"but not {missing}" in verdict
    assert "refuses the kinds it does not name" in verdict


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(x509.DNSName("a.svc.cluster.local"), id="dns"),
        pytest.param(_ip("10.9.8.7"), id="ip"),
        pytest.param(x509.RFC822Name("bob@mail.example.com"), id="email"),
        pytest.param(x509.UniformResourceIdentifier("spiffe://cluster.local/ns/a/sa/b"), id="uri"),
    ],
)
def test_every_named_kind_is_admitted_within_its_rule(name: x509.GeneralName) -> None:
    assert _judge(ALL_KINDS, [name]) == "allowed"
    assert _judge(Policy(), [name]) == "allowed"


def test_every_name_is_checked_not_just_the_first() -> None:
    names = [
        x509.DNSName("a.svc.cluster.local"),
        x509.DNSName("b.svc.cluster.local"),
        x509.DNSName("evil.com"),
    ]
    assert "'evil.com'" in _judge(SVC, names)


# -- CA and usages -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "is_ca", "usages", "problem"),
    [
        pytest.param(
            Policy(), True, [], "policy forbids CA certificates", id="rejects-ca-request-when-not-allowed"
        ),
        pytest.param(Policy(allow_ca=True), True, [], None, id="admits-ca-request-when-allowed"),
        pytest.param(Policy(), False, ["server auth", "client auth"], None, id="no-usage-rule-admits-any"),
        pytest.param(
            Policy(allowed_usages=frozenset({"Digital Signature", "key encipherment", "server auth"})),
            False,
            ["digital signature", "Server Auth"],
            None,
            id="allowed-usages-case-insensitive",
        ),
        pytest.param(
            Policy(allowed_usages=frozenset({"digital signature", "key encipherment"})),
            False,
            [],
            None,
            id="defaults-within-allowed-usages",
        ),
        pytest.param(
            Policy(allowed_usages=frozenset({"digital signature"})),
            False,
            [],
            "policy forbids usages key encipherment",
            id="defaults-checked-against-allowed-usages",
        ),
        pytest.param(
            Policy(allowed_usages=frozenset({"digital signature", "server auth"})),
            False,
            ["server auth", "client auth", "code signing"],
            "policy forbids usages client auth, code signing (policy.allowedUsages)",
            id="names-every-refused-usage",
        ),
        pytest.param(
            Policy(allowed_usages=frozenset({"any"})),
            False,
            ["frobnicate"],
            "unknown usage 'frobnicate'",
            id="unknown-usage",
        ),
        pytest.param(
            Policy(),
            False,
            ["digital signature", "cert sign"],
            "cert sign are for CA certificates only",
            id="rejects-cert-sign-on-leaf",
        ),
        pytest.param(
            Policy(),
            False,
            ["crl sign"],
            "crl sign are for CA certificates only",
            id="rejects-crl-sign-on-leaf",
        ),
        pytest.param(
            Policy(allowed_usages=frozenset({"cert sign", "crl sign", "digital signature"})),
            False,
            ["cert sign", "crl sign"],
            "usages cert sign, crl sign are for CA certificates only; spec.isCA is false",
            id="rejects-cert-sign-on-leaf-even-when-listed",
        ),
        pytest.param(
            Policy(allow_ca=True), True, ["cert sign", "crl sign"], None, id="admits-cert-sign-on-ca"
        ),
        pytest.param(
            Policy(),
            False,
            ["digital signature", "any"],
            "policy.allowAnyExtendedKeyUsage",
            id="rejects-any-eku-by-default",
        ),
        pytest.param(
            Policy(allowed_usages=frozenset({"any", "digital signature"})),
            False,
            ["any"],
            "policy forbids the 'any' extended key usage",
            id="rejects-any-eku-listed-in-allowed-usages-without-flag",
        ),
        pytest.param(
            Policy(allow_any_extended_key_usage=True),
            False,
            ["digital signature", "any"],
            None,
            id="admits-any-eku-with-flag",
        ),
        pytest.param(
            Policy(allow_any_extended_key_usage=True, allowed_usages=frozenset({"digital signature"})),
            False,
            ["any"],
            "policy forbids usages any (policy.allowedUsages)",
            id="flag-does-not-override-allowed-usages",
        ),
    ],
)
def test_check_request(policy: Policy, is_ca: bool, usages: list[str], problem: str | None) -> None:
    if problem is None:
        policy.check_request(is_ca=is_ca, usages=usages)
    else:
        with pytest.raises(PermanentError, match=re.escape(problem)):
            policy.check_request(is_ca=is_ca, usages=usages)


# -- durations -----------------------------------------------------------------------------------------------


BOUNDED = Policy(
    default_duration=timedelta(hours=24), min_duration=timedelta(hours=1), max_duration=timedelta(hours=48)
)


@pytest.mark.parametrize(
    ("policy", "requested", "expected"),
    [
        pytest.param(Policy(), None, timedelta(hours=2160), id="default-is-cert-manager-default"),
        pytest.param(BOUNDED, None, timedelta(hours=24), id="default-when-absent"),
        pytest.param(BOUNDED, timedelta(hours=2), timedelta(hours=2), id="requested-within-bounds"),
        pytest.param(BOUNDED, timedelta(hours=48), timedelta(hours=48), id="requested-equals-max"),
        pytest.param(BOUNDED, timedelta(hours=2160), timedelta(hours=48), id="longer-clamped-to-max"),
        pytest.param(BOUNDED, timedelta(hours=1), timedelta(hours=1), id="requested-equals-min"),
        pytest.param(Policy(), timedelta(days=36500), timedelta(days=36500), id="no-max-no-clamp"),
    ],
)
def test_lifetime(policy: Policy, requested: timedelta | None, expected: timedelta) -> None:
    assert policy.lifetime(requested) == expected


@pytest.mark.parametrize(
    ("requested", "problem"),
    [
        pytest.param(timedelta(minutes=59), "shorter than the issuer's minimum 1h0m0s", id="below-min"),
        pytest.param(timedelta(0), "is not positive", id="zero"),
        pytest.param(timedelta(hours=-1), "is not positive", id="negative"),
    ],
)
def test_lifetime_refuses(requested: timedelta, problem: str) -> None:
    with pytest.raises(PermanentError, match=problem):
        BOUNDED.lifetime(requested)


# -- building a policy ---------------------------------------------------------------------------------------


def test_from_spec_reads_camel_case() -> None:
    policy = Policy.from_spec(
        {
            "defaultDuration": "24h",
            "maxDuration": "720h0m0s",
            "minDuration": "30m",
            "allowCA": True,
            "allowedUsages": ["Digital Signature", "server auth"],
            "dnsDomains": ["svc.cluster.local"],
            "uriPrefixes": ["spiffe://cluster.local/"],
            "ipRanges": ["10.0.0.0/8"],
            "emailDomains": ["example.com"],
            "allowAnyExtendedKeyUsage": True,
        }
    )
    assert policy == Policy(
        default_duration=timedelta(hours=24),
        max_duration=timedelta(hours=720),
        min_duration=timedelta(minutes=30),
        allow_ca=True,
        allowed_usages=frozenset({"digital signature", "server auth"}),
        dns_domains=("svc.cluster.local",),
        uri_prefixes=("spiffe://cluster.local/",),
        ip_ranges=("10.0.0.0/8",),
        email_domains=("example.com",),
        allow_any_extended_key_usage=True,
    )
    assert _judge(policy, [_ip("10.9.8.7")]) == "allowed"
    assert "not in policy.ipRanges" in _judge(policy, [_ip("11.0.0.1")])


@pytest.mark.parametrize("spec", [pytest.param(None, id="none"), pytest.param({}, id="empty")])
def test_from_spec_without_policy_admits_everything(spec: dict[str, Any] | None) -> None:
    assert Policy.from_spec(spec) == Policy()


def test_from_spec_empty_list_is_not_absent() -> None:
    policy = Policy.from_spec({"dnsDomains": []})
    assert policy.dns_domains == ()
    assert "not under policy.dnsDomains" in _judge(policy, [x509.DNSName("a.example.com")])


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        pytest.param(
            {"defaultDuration": "48h", "maxDuration": "24h"},
            "defaultDuration 48h0m0s exceeds",
            id="default-over-max",
        ),
        pytest.param({"ipRanges": ["10.0.0.0/33"]}, "ipRanges", id="cidr-prefix-too-long"),
        pytest.param({"ipRanges": ["not-an-ip"]}, "ipRanges", id="cidr-not-an-address"),
        pytest.param({"dnsDomains": ["bad domain.com"]}, "dnsDomains entry", id="dns-domain-with-space"),
        pytest.param({"dnsDomains": ["*.example.com"]}, "dnsDomains entry", id="dns-domain-wildcard"),
        pytest.param(
            {"uriPrefixes": ["cluster.local/ns/a"]}, "uriPrefixes entry", id="uri-prefix-without-scheme"
        ),
        pytest.param({"uriPrefixes": ["spiffe://x/ns/../a/"]}, "uriPrefixes entry", id="uri-prefix-dot-dot"),
        pytest.param(
            {"allowedUsages": ["server auth", "teleport"]}, "unknown usage 'teleport'", id="unknown-usage"
        ),
        pytest.param({"maxDuration": "10d"}, "not a Go duration", id="bad-duration"),
        pytest.param({"defaultDuration": "-1h"}, "negative", id="negative-duration"),
    ],
)
def test_invalid_policy_is_refused(spec: dict[str, Any], problem: str) -> None:
    with pytest.raises(PermanentError, match=problem):
        Policy.from_spec(spec)


def test_from_spec_max_alone_caps_the_default() -> None:
    policy = Policy.from_spec({"maxDuration": "720h"})
    assert policy.lifetime(None) == timedelta(hours=720)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param(
            {
                "min_duration": timedelta(hours=2),
                "max_duration": timedelta(hours=1),
                "default_duration": timedelta(hours=1),
            },
            id="min-over-max",
        ),
        pytest.param(
            {"min_duration": timedelta(hours=2), "default_duration": timedelta(hours=1)},
            id="default-under-min",
        ),
    ],
)
def test_policy_that_can_issue_nothing_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(PermanentError, match="minDuration"):
        Policy(**kwargs)


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        pytest.param(
            {"allowCA": True, "uriPrefixes": ["spiffe://td/ns/alpha/"]},
            "limits the URI path ('/ns/alpha/')",
            id="ca-with-uri-path-prefix",
        ),
        pytest.param(
            {"allowCA": True, "uriPrefixes": ["spiffe://td/", "spiffe://td/ns/alpha"]},
            "'spiffe://td/ns/alpha'",
            id="ca-with-one-path-prefix-among-host-prefixes",
        ),
        pytest.param(
            {"allowCA": True, "uriPrefixes": ["https://example.com:8443/"]},
            "limits more than the host",
            id="ca-with-uri-port",
        ),
        pytest.param(
            {"allowCA": True, "uriPrefixes": ["https://10.0.0.1/"]},
            "names an IP address",
            id="ca-with-uri-ip-host",
        ),
        pytest.param({"allowCA": "yes"}, "allowCA must be true or false", id="allow-ca-not-bool"),
        pytest.param(
            {"allowAnyExtendedKeyUsage": "true"},
            "allowAnyExtendedKeyUsage must be true or false",
            id="allow-any-eku-not-bool",
        ),
    ],
)
def test_policy_a_sub_ca_could_escape_is_refused(spec: dict[str, Any], problem: str) -> None:
    with pytest.raises(PermanentError, match=re.escape(problem)) as refused:
        Policy.from_spec(spec)
    assert refused.value.message.startswith("policy: ")


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"allowCA": True, "uriPrefixes": ["spiffe://td/"]}, id="ca-with-host-prefix"),
        pytest.param({"allowCA": True, "uriPrefixes": ["spiffe://td"]}, id="ca-with-host-prefix-no-slash"),
        pytest.param(
            {"allowCA": False, "uriPrefixes": ["spiffe://td/ns/alpha/"]}, id="no-ca-with-path-prefix"
        ),
        pytest.param({"allowCA": True}, id="ca-without-name-rules"),
    ],
)
def test_policy_a_sub_ca_cannot_escape_is_accepted(spec: dict[str, Any]) -> None:
    Policy.from_spec(spec)


def test_dns_domain_with_two_leading_dots_is_refused() -> None:
    with pytest.raises(PermanentError, match="dnsDomains entry"):
        Policy(dns_domains=("..svc.cluster.local",))


# -- usages --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("usages", "family", "bits"),
    [
        pytest.param(["signing"], "rsa", {"digital_signature"}, id="signing"),
        pytest.param(["digital signature"], "rsa", {"digital_signature"}, id="digital-signature"),
        pytest.param(["content commitment"], "rsa", {"content_commitment"}, id="content-commitment"),
        pytest.param(["key encipherment"], "rsa", {"key_encipherment"}, id="key-encipherment"),
        pytest.param(["data encipherment"], "rsa", {"data_encipherment"}, id="data-encipherment"),
        pytest.param(["key agreement"], "ec", {"key_agreement"}, id="key-agreement"),
        pytest.param(["cert sign"], "rsa", {"key_cert_sign"}, id="cert-sign"),
        pytest.param(["crl sign"], "rsa", {"crl_sign"}, id="crl-sign"),
        pytest.param(
            ["key agreement", "encipher only"], "ec", {"key_agreement", "encipher_only"}, id="encipher-only"
        ),
        pytest.param(
            ["key agreement", "decipher only"], "ec", {"key_agreement", "decipher_only"}, id="decipher-only"
        ),
        pytest.param(
            ["Digital Signature", " KEY ENCIPHERMENT "],
            "rsa",
            {"digital_signature", "key_encipherment"},
            id="case-and-space",
        ),
        pytest.param([], "rsa", {"digital_signature", "key_encipherment"}, id="rsa-default"),
        pytest.param([], "ec", {"digital_signature"}, id="ec-default-drops-key-encipherment"),
        pytest.param([], "ed25519", {"digital_signature"}, id="ed25519-default-drops-key-encipherment"),
        pytest.param(
            ["digital signature", "key encipherment", "data encipherment", "key agreement"],
            "ec",
            {"digital_signature", "key_agreement"},
            id="ec-drops-key-and-data-encipherment",
        ),
        pytest.param(
            ["digital signature", "key encipherment", "data encipherment", "key agreement", "decipher only"],
            "ed25519",
            {"digital_signature"},
            id="ed25519-drops-encipherment-and-agreement",
        ),
        pytest.param(["server auth"], "rsa", set(), id="extended-only-no-key-usage"),
    ],
)
def test_resolve_key_usages(usages: list[str], family: str, bits: set[str]) -> None:
    assert resolve_usages(usages, is_ca=False, key_family=family).key_usage_bits == bits


@pytest.mark.parametrize(
    ("usage", "oid"),
    [
        pytest.param("any", "2.5.29.37.0", id="any"),
        pytest.param("server auth", "1.3.6.1.5.5.7.3.1", id="server-auth"),
        pytest.param("client auth", "1.3.6.1.5.5.7.3.2", id="client-auth"),
        pytest.param("code signing", "1.3.6.1.5.5.7.3.3", id="code-signing"),
        pytest.param("email protection", "1.3.6.1.5.5.7.3.4", id="email-protection"),
        pytest.param("s/mime", "1.3.6.1.5.5.7.3.4", id="s-mime"),
        pytest.param("ipsec end system", "1.3.6.1.5.5.7.3.5", id="ipsec-end-system"),
        pytest.param("ipsec tunnel", "1.3.6.1.5.5.7.3.6", id="ipsec-tunnel"),
        pytest.param("ipsec user", "1.3.6.1.5.5.7.3.7", id="ipsec-user"),
        pytest.param("timestamping", "1.3.6.1.5.5.7.3.8", id="timestamping"),
        pytest.param("ocsp signing", "1.3.6.1.5.5.7.3.9", id="ocsp-signing"),
        pytest.param("microsoft sgc", "1.3.6.1.4.1.311.10.3.3", id="microsoft-sgc"),
        pytest.param("netscape sgc", "2.16.840.1.113730.4.1", id="netscape-sgc"),
    ],
)
def test_resolve_extended_key_usages(usage: str, oid: str) -> None:
    resolved = resolve_usages(["digital signature", usage], is_ca=False, key_family="rsa")
    assert [o.dotted_string for o in resolved.extended] == [oid]
    assert resolved.key_usage_bits == {"digital_signature"}


def test_extended_usages_keep_request_order_without_duplicates() -> None:
    resolved = resolve_usages(
        ["client auth", "server auth", "Client Auth", "email protection", "s/mime"],
        is_ca=False,
        key_family="ec",
    )
    assert [o.dotted_string for o in resolved.extended] == [
        "1.3.6.1.5.5.7.3.2",
        "1.3.6.1.5.5.7.3.1",
        "1.3.6.1.5.5.7.3.4",
    ]


@pytest.mark.parametrize(
    ("usages", "family", "bits"),
    [
        pytest.param([], "rsa", {"digital_signature", "key_encipherment", "key_cert_sign"}, id="rsa-default"),
        pytest.param([], "ec", {"digital_signature", "key_cert_sign"}, id="ec-default"),
        pytest.param(["crl sign"], "ed25519", {"crl_sign", "key_cert_sign"}, id="ed25519-crl-sign"),
        pytest.param(["cert sign"], "ec", {"key_cert_sign"}, id="cert-sign-not-doubled"),
    ],
)
def test_ca_gets_cert_sign(usages: list[str], family: str, bits: set[str]) -> None:
    assert resolve_usages(usages, is_ca=True, key_family=family).key_usage_bits == bits


@pytest.mark.parametrize(
    ("usages", "problem"),
    [
        pytest.param(["encipher only"], "need 'key agreement'", id="encipher-only-without-key-agreement"),
        pytest.param(
            ["digital signature", "decipher only"], "need 'key agreement'", id="decipher-only-without"
        ),
        pytest.param(["server auth", "frobnicate"], "unknown usage 'frobnicate'", id="unknown-usage"),
        pytest.param(["serverauth"], "unknown usage 'serverauth'", id="near-miss-spelling"),
    ],
)
def test_resolve_usages_refuses(usages: list[str], problem: str) -> None:
    with pytest.raises(PermanentError, match=problem):
        resolve_usages(usages, is_ca=False, key_family="ec")


@pytest.mark.parametrize(
    ("usages", "family"),
    [
        pytest.param(["key encipherment"], "ec", id="ec-key-encipherment-only"),
        pytest.param(["key encipherment", "server auth"], "ed25519", id="ed25519-key-encipherment-and-eku"),
        pytest.param(["key agreement"], "rsa", id="rsa-key-agreement-only"),
    ],
)
def test_request_whose_key_usages_all_vanish_is_refused(usages: list[str], family: str) -> None:
    with pytest.raises(PermanentError, match="usage"):
        resolve_usages(usages, is_ca=False, key_family=family)


# -- NameConstraints for sub-CAs (the verifiers' verdicts: test_certificates.py) -----------------------------


def _subtrees(constraints: x509.NameConstraints | None) -> tuple[set[str], set[str]]:
    assert constraints is not None

    def show(names: Sequence[x509.GeneralName] | None) -> set[str]:
        return {f"{type(n).__name__}:{n.value}" for n in names or ()}

    return show(constraints.permitted_subtrees), show(constraints.excluded_subtrees)


CLOSED_EMAIL = ({"RFC822Name:.invalid"}, {"RFC822Name:"})
CLOSED_URI = ({"UniformResourceIdentifier:.invalid"}, {"UniformResourceIdentifier:"})
CLOSED_IP = {"IPAddress:0.0.0.0/0", "IPAddress:::/0"}


@pytest.mark.parametrize(
    ("policy", "permitted", "excluded"),
    [
        pytest.param(
            Policy(allow_ca=True, dns_domains=("alpha.svc.cluster.local",)),
            {"DNSName:alpha.svc.cluster.local"} | CLOSED_EMAIL[0] | CLOSED_URI[0],
            CLOSED_IP | CLOSED_EMAIL[1] | CLOSED_URI[1],
            id="dns-only-closes-ip-email-uri",
        ),
        pytest.param(
            Policy(allow_ca=True, dns_domains=(".svc.cluster.local", "Example.COM.")),
            {"DNSName:.svc.cluster.local", "DNSName:example.com"} | CLOSED_EMAIL[0] | CLOSED_URI[0],
            CLOSED_IP | CLOSED_EMAIL[1] | CLOSED_URI[1],
            id="dns-leading-dot-kept-case-folded",
        ),
        pytest.param(
            Policy(allow_ca=True, uri_prefixes=("spiffe://cluster.local/",)),
            {"UniformResourceIdentifier:cluster.local"} | CLOSED_EMAIL[0],
            {"DNSName:", "UniformResourceIdentifier:.cluster.local"} | CLOSED_IP | CLOSED_EMAIL[1],
            id="uri-host-rule-becomes-host-subtree",
        ),
        pytest.param(
            Policy(allow_ca=True, uri_prefixes=("spiffe://td/", "spiffe://a.td/")),
            {"UniformResourceIdentifier:td", "UniformResourceIdentifier:a.td"} | CLOSED_EMAIL[0],
            {"DNSName:", "UniformResourceIdentifier:.a.td"} | CLOSED_IP | CLOSED_EMAIL[1],
            id="uri-subdomain-named-by-another-rule-stays-open",
        ),
        pytest.param(
            Policy(allow_ca=True, ip_ranges=("10.0.0.0/8", "fd00::/8"), email_domains=("example.com",)),
            {
                "IPAddress:10.0.0.0/8",
                "IPAddress:fd00::/8",
                "RFC822Name:example.com",
                "RFC822Name:.example.com",
            }
            | CLOSED_URI[0],
            {"DNSName:"} | CLOSED_URI[1],
            id="ip-and-email-rules",
        ),
        pytest.param(
            Policy(allow_ca=True, dns_domains=()),
            CLOSED_EMAIL[0] | CLOSED_URI[0],
            {"DNSName:"} | CLOSED_IP | CLOSED_EMAIL[1] | CLOSED_URI[1],
            id="empty-rule-closes-everything",
        ),
    ],
)
def test_sub_ca_name_constraints(policy: Policy, permitted: set[str], excluded: set[str]) -> None:
    assert _subtrees(policy.sub_ca_name_constraints()) == (permitted, excluded)


def test_no_name_rules_no_name_constraints() -> None:
    assert Policy(allow_ca=True).sub_ca_name_constraints() is None


# -- what the stricter defaults refuse, for the Event on each issuer -----------------------------------------

SPIFFE_FORM = "SPIFFE IDs not in canonical form"
CA_USAGES_FORM = "usages cert sign and crl sign without spec.isCA"
ANY_EKU_FORM = "the 'any' extended key usage"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param({}, [SPIFFE_FORM, CA_USAGES_FORM, ANY_EKU_FORM], id="no-policy-usages-and-spiffe-only"),
        pytest.param(
            {"dnsDomains": ["svc.cluster.local"], "uriPrefixes": ["spiffe://cluster.local/ns/a/"]},
            [
                "IP address SANs (the policy names SAN rules but not policy.ipRanges)",
                "email SANs (the policy names SAN rules but not policy.emailDomains)",
                "a common name that is not, once trimmed, one of the request's SANs",
                SPIFFE_FORM,
                "URIs with a query or fragment (policy.uriPrefixes)",
                CA_USAGES_FORM,
                ANY_EKU_FORM,
            ],
            id="dns-and-uri-rules",
        ),
        pytest.param(
            {
                "dnsDomains": ["a"],
                "ipRanges": ["10.0.0.0/8"],
                "emailDomains": ["a"],
                "uriPrefixes": ["spiffe://a/"],
                "allowedUsages": ["digital signature", "server auth"],
            },
            [
                "a common name that is not, once trimmed, one of the request's SANs",
                SPIFFE_FORM,
                "URIs with a query or fragment (policy.uriPrefixes)",
            ],
            id="every-kind-named-usages-already-narrow",
        ),
        pytest.param(
            {"allowedUsages": ["crl sign", "any"], "allowAnyExtendedKeyUsage": True},
            [SPIFFE_FORM, "usages crl sign without spec.isCA"],
            id="any-allowed-explicitly-crl-sign-listed",
        ),
    ],
)
def test_newly_refused_forms(spec: dict[str, Any], expected: list[str]) -> None:
    found = newly_refused_forms(Policy.from_spec(spec))
    assert len(found) == len(expected), found
    for sentence, start in zip(found, expected, strict=True):
        assert sentence.startswith(start), (sentence, start)


def test_a_ca_common_name_need_not_repeat_a_san() -> None:
    # A sub-CA's CN names the CA; its NameConstraints, not its CN, bound what it may name.
    assert ALL_KINDS.check_names(_cn("alpha sub-CA"), [], is_ca=True) is None
    assert "is not one of the request's SANs" in _judge(ALL_KINDS, [], subject=_cn("alpha sub-CA"))


# -- the shipped examples ------------------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _example_policies() -> list[Any]:
    found = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") in ("TrustedIssuer", "TrustedClusterIssuer"):
                policy = document["spec"].get("policy")
                found.append(pytest.param(policy, id=f"{path.stem}-{document['metadata']['name']}"))
    return found


@pytest.mark.parametrize("spec", _example_policies())
def test_every_example_policy_is_valid(spec: dict[str, Any] | None) -> None:
    policy = Policy.from_spec(spec)
    if policy.allow_ca and policy.restricts_names():
        assert policy.sub_ca_name_constraints() is not None


def test_tightening_message_names_every_refused_form() -> None:
    policy = Policy.from_spec({"dnsDomains": ["svc.cluster.local"]})
    message = tightening_message(policy)
    assert message is not None and message.startswith("stricter policy defaults: this issuer now refuses ")
    for form in newly_refused_forms(policy):
        assert form in message
    assert len(message) <= 1024


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        pytest.param({}, ["SPIFFE IDs", "cert sign and crl sign", "'any'"], id="no-policy"),
        pytest.param(
            {"uriPrefixes": ["spiffe://td/"], "allowedUsages": ["client auth", "digital signature"]},
            ["DNS name SANs", "IP address SANs", "email SANs", "common name", "query or fragment"],
            id="uri-only-narrow-usages",
        ),
    ],
)
def test_tightening_message_for_an_issuer(spec: dict[str, Any], words: list[str]) -> None:
    message = tightening_message(Policy.from_spec(spec))
    for word in words:
        assert word in message
    if spec.get("allowedUsages"):
        assert "cert sign" not in message and "'any'" not in message
