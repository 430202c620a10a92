"""The issuers this replica knows: their references, their state for the request path, and the
requests waiting for each. A module of its own, so the request path and the issuer handlers meet here
rather than importing each other."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from issuer import api
from issuer.signer.api import IssuerKey, PEMBundle

IssuerRef = tuple[str, str | None, str]  # (kind, namespace or None, name)


def issuer_ref(kind: str, namespace: str | None, name: str) -> IssuerRef:
    return (kind, namespace if kind == api.ISSUER_KIND else None, name)


def metric_label(ref: IssuerRef) -> str:
    kind, namespace, name = ref
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"


def signer_name(ref: IssuerRef) -> str:
    """The issuer's signer name, as Kubernetes CSRs and ClusterTrustBundles spell it:
    ``trustedissuers.trusted-issuer.dev/<namespace>.<name>`` or
    ``trustedclusterissuers.trusted-issuer.dev/<name>`` (a namespace is a DNS label: the first dot ends
    it)."""
    kind, namespace, name = ref
    if kind == api.ISSUER_KIND:
        return f"{api.ISSUER_PLURAL}.{api.GROUP}/{namespace}.{name}"
    return f"{api.CLUSTER_ISSUER_PLURAL}.{api.GROUP}/{name}"


def describe(ref: IssuerRef) -> str:
    """How logs, Events and messages name an issuer: ``TrustedIssuer ns/name``, ``TrustedClusterIssuer n``."""
    kind, namespace, name = ref
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


@dataclass
class IssuerState:
    """What the request handlers need of an issuer: whether it is Ready at its current generation."""

    generation: int
    ready: bool = False
    message: str = "not reconciled yet"
    signing: IssuerKey | None = None
    #: The issuer's status.ca: every CA certificate requesters must trust (both during a rotation).
    trust_pem: bytes | None = None

    def trusted(self, bundle: PEMBundle) -> PEMBundle:
        """``bundle`` whose ``ca`` is everything the issuer asks requesters to trust, so a request issued
        during a rotation overlap carries the old and the new CA."""
        return dataclasses.replace(bundle, ca_pem=self.trust_pem) if self.trust_pem else bundle


@dataclass
class IssuerRegistry:
    """The issuers this replica knows, and the requests waiting for each to become Ready."""

    states: dict[IssuerRef, IssuerState] = field(default_factory=dict)
    waiting: dict[IssuerRef, set[Any]] = field(default_factory=dict)
    #: One reconciliation of an issuer at a time (handler, periodic check and rotation tick may overlap).
    locks: dict[IssuerRef, asyncio.Lock] = field(default_factory=dict)
    #: When the provisioning timer last looked at each waiting issuer (monotonic seconds).
    looked: dict[IssuerRef, float] = field(default_factory=dict)
    #: The generation whose policy this replica last announced (``announce_policy``), per issuer.
    announced: dict[IssuerRef, int] = field(default_factory=dict)

    def lock(self, ref: IssuerRef) -> asyncio.Lock:
        return self.locks.setdefault(ref, asyncio.Lock())

    def get(self, ref: IssuerRef) -> IssuerState | None:
        return self.states.get(ref)

    def wait_for(self, ref: IssuerRef, request_key: Any) -> None:
        self.waiting.setdefault(ref, set()).add(request_key)

    def woken(self, ref: IssuerRef) -> set[Any]:
        return self.waiting.pop(ref, set())
