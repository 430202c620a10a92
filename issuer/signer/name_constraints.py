"""NameConstraints for sub-CA certificates: the issuer's SAN rules, carried into the sub-CA so that what
it signs offline stays inside them.

A NameConstraints extension limits only the name forms it lists, so the extension built here lists all
four forms that verifiers enforce (DNS, IP, email, URI): a form with a rule gets permitted subtrees, a
form without one is closed. How a form is closed was chosen by what OpenSSL 3.0 and Go's crypto/x509
actually do (tests/unit/test_certificates.py and tests/security/test_policy_attacks.py prove it with both):

- DNS: an excluded empty name. Both treat an empty DNS constraint as matching every name.
- IP: excluded ``0.0.0.0/0`` and ``::/0``.
- email and URI: a permitted ``.invalid`` (RFC 6761: that TLD never resolves) and an excluded empty
  name. Go excludes every name with the empty one; OpenSSL ignores an empty email or URI constraint, so
  the permitted ``.invalid`` is what closes the form there, leaving it only names that cannot exist.

Other name forms (otherName, directoryName, ...) cannot be listed: Go refuses a critical extension with
them, and refuses the whole chain. The issuing policy already refuses SANs of those forms.

A URI constraint limits only the host, so a URI rule can be carried only when it names a whole host
(``spiffe://cluster.local/``, which becomes the subtree ``cluster.local`` with its subdomains
excluded, since Go would otherwise admit them); a rule on a path (``spiffe://cluster.local/ns/alpha/``)
or a port cannot, and :func:`check_expressible` says so. The scheme is not constrained either: a
host-level rule for ``spiffe://td/`` lets the sub-CA name ``https://td/...`` too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

from cryptography import x509

from issuer.errors import PermanentError

#: RFC 6761's reserved top-level domain, which no real host or mailbox is under.
NEVER_EXISTING = ".invalid"
ALL_IPV4 = ipaddress.IPv4Network("0.0.0.0/0")
ALL_IPV6 = ipaddress.IPv6Network("::/0")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def uri_constraint_host(prefix: str) -> str:
    """The host a URI rule (``policy.uriPrefixes`` entry) becomes as a URI name constraint.

    Raises PermanentError naming the rule when it limits more than a host (a path, a port, user info,
    a query or fragment) or names an IP address, none of which a URI constraint can express.
    """
    parts = urlsplit(prefix)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.path not in ("", "/"):
        raise PermanentError(
            f"policy.uriPrefixes entry {prefix!r} limits the URI path ({parts.path!r}), which a sub-CA's "
            f"NameConstraints cannot express (a URI constraint limits only the host): a sub-CA could name "
            f"any path under {host!r}. Use a host-level prefix such as '{parts.scheme}://{host}/' or set "
            "policy.allowCA to false"
        )
    if port is not None or parts.username is not None or parts.query or parts.fragment:
        raise PermanentError(
            f"policy.uriPrefixes entry {prefix!r} limits more than the host (port, user info, query or "
            "fragment), which a sub-CA's NameConstraints cannot express; use a prefix naming only "
            "scheme and host, or set policy.allowCA to false"
        )
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        raise PermanentError(
            f"policy.uriPrefixes entry {prefix!r} names an IP address, which a URI name constraint "
            "cannot carry (RFC 5280 4.2.1.10); set policy.allowCA to false"
        )
    if not host:
        raise PermanentError(f"policy.uriPrefixes entry {prefix!r} names no host")
    return host


def check_expressible(uri_prefixes: Sequence[str] | None) -> None:
    """Raise PermanentError unless every URI rule can be carried into a sub-CA's NameConstraints."""
    for prefix in uri_prefixes or ():
        uri_constraint_host(prefix)


def _closed(kind: type[x509.RFC822Name] | type[x509.UniformResourceIdentifier]) -> x509.GeneralName:
    # cryptography's RFC822Name refuses "", which is exactly the value Go reads as "every name".
    return kind._init_without_validation("")


def build_name_constraints(
    *,
    dns_domains: Sequence[str] | None,
    networks: Sequence[Network] | None,
    email_domains: Sequence[str] | None,
    uri_prefixes: Sequence[str] | None,
) -> x509.NameConstraints | None:
    """The NameConstraints for a sub-CA signed under these SAN rules, or None when no rule exists.

    A rule of ``None`` closes its form, as an empty rule does; with no rule at all the issuer restricts
    no names, so neither does the sub-CA. DNS and email domains keep the policy's meaning: ``example.com``
    admits the domain and names under it, ``.example.com`` only names under it.
    """
    if all(rule is None for rule in (dns_domains, networks, email_domains, uri_prefixes)):
        return None
    permitted: list[x509.GeneralName] = []
    excluded: list[x509.GeneralName] = []

    if dns_domains:
        for domain in dict.fromkeys(d.lower().rstrip(".") for d in dns_domains):
            permitted.append(x509.DNSName(domain))
    else:
        excluded.append(x509.DNSName(""))

    if networks:
        permitted.extend(x509.IPAddress(net) for net in dict.fromkeys(networks))
    else:
        excluded += [x509.IPAddress(ALL_IPV4), x509.IPAddress(ALL_IPV6)]

    if email_domains:
        for domain in dict.fromkeys(d.lower().rstrip(".") for d in email_domains):
            # An email constraint without a leading dot is one host exactly: add the subdomains too.
            permitted.append(x509.RFC822Name(domain))
            if not domain.startswith("."):
                permitted.append(x509.RFC822Name("." + domain))
    else:
        permitted.append(x509.RFC822Name(NEVER_EXISTING))
        excluded.append(_closed(x509.RFC822Name))

    if uri_prefixes:
        hosts = list(dict.fromkeys(uri_constraint_host(p).lower() for p in uri_prefixes))
        for host in hosts:
            permitted.append(x509.UniformResourceIdentifier(host))
            # Go lets a URI constraint admit subdomains of its host, OpenSSL does not; the rule names
            # one host, so its subdomains are excluded unless another rule names them.
            if not any(other.endswith("." + host) for other in hosts):
                excluded.append(x509.UniformResourceIdentifier("." + host))
    else:
        permitted.append(x509.UniformResourceIdentifier(NEVER_EXISTING))
        excluded.append(_closed(x509.UniformResourceIdentifier))

    return x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=excluded)
