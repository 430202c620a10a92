"""Issue 12, sections 2 and 3, as attacks on the running operator: a tenant whose issuer restricts names
tries to get, or to make for itself, certificates for names its policy does not allow.

Section 2: a sub-CA the operator signs (through the token) is then used offline, with its software key,
to sign leaves; openssl and Go's crypto/x509 must refuse every leaf outside the issuer's rules and accept
those inside. Section 3: requests that the old defaults let through are refused, each with a message
naming its problem. Each test here fails against the code before issue 12.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from tests.csrs import make_csr
from tests.goverify import Verdicts, both_verdicts, go_binary, offline_leaf
from tests.operator.kube import Kube, condition, pem
from tests.security.conftest import SecureCluster
from tests.security.scenario import create_issuer, finished, not_ready, ready_issuer, request


@pytest.fixture
def request_name(request: pytest.FixtureRequest) -> str:
    """A CertificateRequest name from the test's case id (``ip-san-8-8-8-8``)."""
    callspec = getattr(request.node, "callspec", None)
    return str(callspec.id if callspec else request.node.name).lower()


ALPHA = "alpha.svc.cluster.local"
TRUST_DOMAIN = "cluster.local"


def _ip(text: str) -> x509.IPAddress:
    return x509.IPAddress(ipaddress.ip_address(text))


def _sub_ca(
    kube: Kube, namespace: str, policy: dict[str, Any]
) -> tuple[x509.Certificate, x509.Certificate, ec.EllipticCurvePrivateKey]:
    """An issuer with ``policy`` signs a sub-CA through the token; returns the sub-CA, the issuer's root
    and the sub-CA's software key (what its holder then signs leaves with, out of our reach)."""
    ready_issuer(kube, namespace, "ca", policy=policy)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = make_csr(
        key=key,
        common_name=f"{namespace} sub-CA",
        extensions=[(x509.BasicConstraints(ca=True, path_length=0), True)],
    )
    path = request(kube, namespace, "sub-ca", csr, "ca", is_ca=True, usages=["cert sign", "crl sign"])
    done = kube.wait(path, finished)
    assert condition(done)["reason"] == "Issued", condition(done)
    sub = x509.load_pem_x509_certificates(pem(done["status"]["certificate"]))[0]
    root = x509.load_pem_x509_certificate(pem(done["status"]["ca"]))
    return sub, root, key


def _assert_refused_by_both(verdicts: Verdicts) -> None:
    assert verdicts.openssl is not None and "subtree violation" in verdicts.openssl, verdicts
    assert verdicts.go is not None and "not authorized to sign for this name" in verdicts.go, verdicts


# -- section 2: a sub-CA cannot escape its parent's name policy ---------------------------------------------

SubCA = tuple[x509.Certificate, x509.Certificate, ec.EllipticCurvePrivateKey]
BETA_ID = f"spiffe://{TRUST_DOMAIN}/ns/beta/sa/admin"


@pytest.fixture(scope="module")
def alpha_sub_ca(secure: SecureCluster) -> SubCA:
    """The issue's setup: an issuer with allowCA and dnsDomains [alpha.svc.cluster.local] only."""
    go_binary()  # skip (or, under CI=true, fail) before creating anything when Go is absent
    return _sub_ca(secure.cluster.kube, "nc-alpha", {"allowCA": True, "dnsDomains": [ALPHA]})


@pytest.fixture(scope="module")
def uri_sub_ca(secure: SecureCluster) -> SubCA:
    """An issuer whose URI rule names a whole trust domain, which a URI subtree can carry."""
    go_binary()
    policy = {"allowCA": True, "dnsDomains": [ALPHA], "uriPrefixes": [f"spiffe://{TRUST_DOMAIN}/"]}
    return _sub_ca(secure.cluster.kube, "nc-uri", policy)


def test_the_sub_ca_carries_critical_name_constraints(alpha_sub_ca: SubCA) -> None:
    sub, _, _ = alpha_sub_ca
    assert sub.extensions.get_extension_for_class(x509.NameConstraints).critical


@pytest.mark.parametrize(
    "names",
    [
        pytest.param([x509.DNSName("www.bank.example")], id="bank-dns-name"),
        pytest.param([x509.DNSName(f"evil{ALPHA}")], id="dns-suffix-off-label-boundary"),
        pytest.param([x509.UniformResourceIdentifier(BETA_ID)], id="beta-spiffe-id"),
        pytest.param([_ip("8.8.8.8")], id="public-ipv4"),
        pytest.param([_ip("2001:db8::1")], id="ipv6"),
        pytest.param([x509.RFC822Name("admin@evil.com")], id="email"),
        pytest.param(
            [x509.DNSName(f"web.{ALPHA}"), x509.UniformResourceIdentifier(BETA_ID)],
            id="inside-dns-beside-beta-spiffe-id",
        ),
    ],
)
def test_a_dns_only_issuers_sub_ca_cannot_sign_outside_alpha(
    alpha_sub_ca: SubCA, names: list[x509.GeneralName]
) -> None:
    sub, root, key = alpha_sub_ca
    _assert_refused_by_both(both_verdicts(offline_leaf(sub, key, names), [sub], root))


@pytest.mark.parametrize(
    "names",
    [
        pytest.param([x509.DNSName(f"web.{ALPHA}")], id="dns-under-domain"),
        pytest.param([x509.DNSName(ALPHA)], id="dns-domain-itself"),
    ],
)
def test_a_dns_only_issuers_sub_ca_still_signs_inside_alpha(
    alpha_sub_ca: SubCA, names: list[x509.GeneralName]
) -> None:
    sub, root, key = alpha_sub_ca
    assert both_verdicts(offline_leaf(sub, key, names), [sub], root) == Verdicts(None, None)


@pytest.mark.parametrize(
    "names",
    [
        pytest.param(
            [x509.UniformResourceIdentifier("spiffe://evil.example/ns/alpha/sa/web")], id="other-host"
        ),
        pytest.param(
            [x509.UniformResourceIdentifier(f"spiffe://x.{TRUST_DOMAIN}/ns/alpha/sa/web")],
            id="subdomain-host",
        ),
        pytest.param([x509.DNSName("www.bank.example")], id="dns-outside"),
        pytest.param([x509.RFC822Name("admin@evil.com")], id="email-closed"),
    ],
)
def test_a_host_level_uri_rule_bounds_the_sub_ca(uri_sub_ca: SubCA, names: list[x509.GeneralName]) -> None:
    sub, root, key = uri_sub_ca
    _assert_refused_by_both(both_verdicts(offline_leaf(sub, key, names), [sub], root))


def test_a_host_level_uri_rule_admits_its_trust_domain(uri_sub_ca: SubCA) -> None:
    sub, root, key = uri_sub_ca
    leaf = offline_leaf(
        sub, key, [x509.UniformResourceIdentifier(f"spiffe://{TRUST_DOMAIN}/ns/alpha/sa/web")]
    )
    assert both_verdicts(leaf, [sub], root) == Verdicts(None, None)


@pytest.mark.parametrize(
    ("prefix", "problem"),
    [
        pytest.param(f"spiffe://{TRUST_DOMAIN}/ns/alpha/", "limits the URI path", id="path-prefix"),
        pytest.param("https://example.com:8443/", "limits more than the host", id="port"),
    ],
)
def test_allow_ca_is_refused_where_a_uri_rule_cannot_be_a_constraint(
    secure: SecureCluster, prefix: str, problem: str
) -> None:
    kube = secure.cluster.kube
    name = f"ca-{'path' if 'ns/alpha' in prefix else 'port'}"
    refused = not_ready(
        kube, create_issuer(kube, "nc-refused", name, policy={"allowCA": True, "uriPrefixes": [prefix]})
    )
    ready = condition(refused)
    assert ready["reason"] == "InvalidSpec", ready
    assert problem in ready["message"] and repr(prefix) in ready["message"], ready
    assert "policy.allowCA" in ready["message"]


# -- section 3: policy defaults a security team expects ----------------------------------------------------


WEB = f"web.{ALPHA}"
ALPHA_ID = f"spiffe://{TRUST_DOMAIN}/ns/alpha/sa/web"
RESTRICTED = "defaults"


@pytest.fixture(scope="module")
def restricted(secure: SecureCluster) -> Kube:
    """The issue's section 3 issuer: it restricts DNS names and URIs, and names no other SAN kind."""
    kube = secure.cluster.kube
    policy = {"dnsDomains": [ALPHA], "uriPrefixes": [f"spiffe://{TRUST_DOMAIN}/ns/alpha/"]}
    ready_issuer(kube, RESTRICTED, "ca", policy=policy)
    return kube


@pytest.mark.parametrize(
    ("csr", "usages", "problem"),
    [
        pytest.param(
            make_csr(dns=[WEB], ips=["8.8.8.8"]), None, "but not policy.ipRanges", id="ip-san-8-8-8-8"
        ),
        pytest.param(
            make_csr(dns=[WEB], emails=["admin@evil.com"]),
            None,
            "but not policy.emailDomains",
            id="email-san",
        ),
        pytest.param(
            make_csr(common_name="www.bank.example ", dns=[WEB]),
            None,
            "common name 'www.bank.example ' (trimmed 'www.bank.example') is not one of the request's SANs",
            id="cn-trailing-space",
        ),
        pytest.param(
            make_csr(common_name="www.bank.example", dns=[WEB]),
            None,
            "is not one of the request's SANs",
            id="cn-not-a-san",
        ),
        pytest.param(
            make_csr(uris=[f"{ALPHA_ID}?ns=beta&sa=admin"]),
            None,
            "not a canonical SPIFFE ID: it has a query",
            id="uri-query-names-beta",
        ),
        pytest.param(
            make_csr(uris=[f"{ALPHA_ID}#/../../../beta/sa/admin"]),
            None,
            "not a canonical SPIFFE ID: it has a fragment",
            id="uri-fragment-names-beta",
        ),
        pytest.param(
            make_csr(uris=["spiffe://CLUSTER.local/ns/alpha/sa/web"]),
            None,
            "trust domain must be lower-case",
            id="uri-upper-case-trust-domain",
        ),
        pytest.param(
            make_csr(uris=["SPIFFE://cluster.local/ns/alpha/sa/web"]),
            None,
            "scheme must be lower-case",
            id="uri-upper-case-scheme",
        ),
        pytest.param(
            make_csr(dns=[WEB]),
            ["digital signature", "cert sign"],
            "cert sign are for CA certificates only",
            id="cert-sign-on-a-leaf",
        ),
        pytest.param(
            make_csr(dns=[WEB]),
            ["digital signature", "crl sign"],
            "crl sign are for CA certificates only",
            id="crl-sign-on-a-leaf",
        ),
        pytest.param(
            make_csr(dns=[WEB]),
            ["digital signature", "any"],
            "policy forbids the 'any' extended key usage",
            id="any-extended-key-usage",
        ),
    ],
)
def test_requests_the_old_defaults_let_through_are_refused(
    restricted: Kube, request_name: str, csr: bytes, usages: list[str] | None, problem: str
) -> None:
    done = restricted.wait(request(restricted, RESTRICTED, request_name, csr, "ca", usages=usages), finished)
    ready = condition(done)
    assert (ready["reason"], done["status"].get("certificate")) == ("Failed", None), ready
    assert problem in ready["message"], ready["message"]


def test_the_restricted_issuer_still_issues_within_its_rules(restricted: Kube) -> None:
    csr = make_csr(common_name=f" {WEB} ", dns=[WEB], uris=[ALPHA_ID])
    done = restricted.wait(request(restricted, RESTRICTED, "control", csr, "ca"), finished)
    assert condition(done)["reason"] == "Issued", condition(done)


def test_the_any_extended_key_usage_needs_the_policy_to_say_so(secure: SecureCluster) -> None:
    kube, namespace = secure.cluster.kube, "any-eku"
    ready_issuer(kube, namespace, "plain")
    ready_issuer(kube, namespace, "allows-any", policy={"allowAnyExtendedKeyUsage": True})
    csr = make_csr(dns=["app.example.com"])
    usages = ["digital signature", "any"]
    refused = kube.wait(request(kube, namespace, "to-plain", csr, "plain", usages=usages), finished)
    assert condition(refused)["reason"] == "Failed"
    assert "policy.allowAnyExtendedKeyUsage" in condition(refused)["message"]
    issued = kube.wait(request(kube, namespace, "to-allows-any", csr, "allows-any", usages=usages), finished)
    assert condition(issued)["reason"] == "Issued", condition(issued)
    leaf = x509.load_pem_x509_certificates(pem(issued["status"]["certificate"]))[0]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [x509.oid.ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]


@pytest.fixture(scope="module")
def open_issuer(secure: SecureCluster) -> Kube:
    """An issuer with no policy at all: before issue 12 it signed any URI whatever."""
    kube = secure.cluster.kube
    ready_issuer(kube, "no-policy", "open")
    return kube


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        pytest.param("spiffe://cluster.local:443/ns/beta/sa/admin", "it has a port", id="port"),
        pytest.param("spiffe://alpha@cluster.local/ns/beta/sa/admin", "it has user info", id="user-info"),
        pytest.param("spiffe://cluster.local/ns/alpha/sa/web?/ns/beta", "it has a query", id="query"),
        pytest.param("spiffe://cluster.local/ns/alpha/sa/web#/ns/beta", "it has a fragment", id="fragment"),
        pytest.param("spiffe://cluster.local/ns/%62eta/sa/admin", "it has %-encoding", id="percent-encoding"),
        pytest.param("spiffe://cluster.local/ns/alpha/../beta/sa/admin", "'..' path segments", id="dot-dot"),
        pytest.param("spiffe://cluster.local/ns//beta/sa/admin", "empty", id="empty-segment"),
        pytest.param(
            "SPIFFE://cluster.local/ns/beta/sa/admin", "scheme must be lower-case", id="upper-scheme"
        ),
        pytest.param(
            "spiffe://Cluster.Local/ns/beta/sa/admin",
            "trust domain must be lower-case",
            id="upper-trust-domain",
        ),
    ],
)
def test_a_non_canonical_spiffe_id_is_refused_even_without_a_policy(
    open_issuer: Kube, request_name: str, uri: str, problem: str
) -> None:
    done = open_issuer.wait(
        request(open_issuer, "no-policy", f"spiffe-{request_name}", make_csr(uris=[uri]), "open"), finished
    )
    ready = condition(done)
    assert (ready["reason"], done["status"].get("certificate")) == ("Failed", None), ready
    assert f"URI SAN {uri!r} is not a canonical SPIFFE ID: " in ready["message"], ready["message"]
    assert problem in ready["message"], ready["message"]


def test_an_issuer_without_policy_still_admits_every_san_kind(open_issuer: Kube) -> None:
    # The breaking change is scoped: no name rule, no name restriction (a canonical SPIFFE ID included).
    csr = make_csr(
        common_name="free text",
        dns=["www.example.com"],
        ips=["8.8.8.8"],
        emails=["admin@example.org"],
        uris=["https://example.net/x?y=1", "spiffe://cluster.local/ns/beta/sa/admin"],
    )
    done = open_issuer.wait(request(open_issuer, "no-policy", "every-kind", csr, "open"), finished)
    assert condition(done)["reason"] == "Issued", condition(done)
