"""How many token keys each tenant may hold: a profile's key capacity split by issuer scope.

Hardware tokens have few key slots (and the chart's SoftHSM2 volume is small), and every issuer, every
rotation generation and every pending import holds keys. Without a bound, one namespace that bumps
``rotation.generation`` in a loop fills the token that every other namespace signs with. So each
token profile may carry a ``keyQuota``, set only in the operator's configuration (never in a tenant's
spec)::

    keyQuota:
      perNamespace: 10                 # the TrustedIssuers of any one namespace, together
      namespaces: {istio-system: 20}   # a namespace's own share, instead of perNamespace
      clusterIssuers: 20               # every TrustedClusterIssuer, together

A scope's usage is the number of private keys in the token whose label lies in the scope's prefix
(``ti:ns/<namespace>/`` or ``ti:cluster/``: signing, rotation, retired and wrapping keys alike),
counted in the token itself, never taken from status. A key is refused, before it is made, to the
issuer whose scope is at its share: that tenant's issuer fails, no other. A profile without a quota,
or a scope it leaves out, is unbounded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from issuer.errors import ConfigurationError, IssuerError

REASON_KEY_QUOTA_EXCEEDED = "KeyQuotaExceeded"


@dataclass(frozen=True)
class KeyQuota:
    """One profile's key shares: ``None`` means unbounded."""

    per_namespace: int | None = None
    namespaces: Mapping[str, int] = field(default_factory=dict)
    cluster_issuers: int | None = None

    def limit(self, namespace: str | None) -> int | None:
        """The share of a namespace's TrustedIssuers (``namespace=None``: of the cluster issuers)."""
        if namespace is None:
            return self.cluster_issuers
        return self.namespaces.get(namespace, self.per_namespace)

    @classmethod
    def parse(cls, data: Any, where: str) -> KeyQuota:
        """Read a profile's ``keyQuota``; anything malformed is a ConfigurationError naming ``where``."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"{where}: keyQuota must be a mapping")
        unknown = set(data) - {"perNamespace", "namespaces", "clusterIssuers"}
        if unknown:
            raise ConfigurationError(f"{where}: keyQuota has unknown fields {sorted(unknown)}")
        shares = data.get("namespaces") or {}
        if not isinstance(shares, Mapping):
            raise ConfigurationError(f"{where}: keyQuota.namespaces must map namespaces to key counts")
        return cls(
            per_namespace=_count(data.get("perNamespace"), f"{where}: keyQuota.perNamespace"),
            namespaces={
                str(ns): _required(_count(n, f"{where}: keyQuota.namespaces.{ns}"), where)
                for ns, n in shares.items()
            },
            cluster_issuers=_count(data.get("clusterIssuers"), f"{where}: keyQuota.clusterIssuers"),
        )


@dataclass(frozen=True)
class KeyUsage:
    """How many keys a scope holds in the token, and its share (``limit`` None: unbounded)."""

    scope: str
    used: int
    limit: int | None

    def to_status(self) -> dict[str, Any]:
        """The camelCase shape recorded in an issuer's ``status.keyQuota`` (a report, never an input)."""
        report: dict[str, Any] = {"scope": self.scope, "used": self.used}
        if self.limit is not None:
            report["limit"] = self.limit
        return report

    def check_room(self, issuer: str, wanted: str) -> None:
        """Refuse to make one more key in a scope at its share, naming what to do."""
        if self.limit is not None and self.used >= self.limit:
            raise IssuerError(
                f"{issuer}: cannot create {wanted}: the token holds {self.used} keys labelled "
                f"{self.scope}… and this scope's key quota is {self.limit}; delete issuers of this scope "
                "with deletionPolicy: Destroy, destroy retired keys (spec.key.rotation.retiredKeyPolicy: "
                "Destroy), or ask the operator's administrator for a larger keyQuota",
                REASON_KEY_QUOTA_EXCEEDED,
            )


def usage(labels: Iterable[str], scope: str, limit: int | None) -> KeyUsage:
    """The usage of ``scope`` (a label prefix) among the token's private-key ``labels``."""
    return KeyUsage(scope, sum(1 for label in labels if label.startswith(scope)), limit)


def _count(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{where} must be a whole number of keys, 0 or more")
    return value


def _required(value: int | None, where: str) -> int:
    if value is None:
        raise ConfigurationError(f"{where}: keyQuota.namespaces values must be key counts")
    return value
