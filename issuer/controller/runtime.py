"""What the issuer handlers and the request path share for the operator's lifetime, built once at
start-up and kept in kopf's memo. The request path's own state is ``requests`` (``RequestStore``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from issuer.clock import Clock
from issuer.controller.kubeapi import KubeClient
from issuer.controller.registry import IssuerRef, IssuerRegistry
from issuer.controller.requests.store import RequestKey, RequestStore
from issuer.profiles import Profiles
from issuer.settings import Settings
from issuer.signer.api import Signer

__all__ = ["RequestKey", "Runtime"]


@dataclass
class Runtime:
    settings: Settings
    profiles: Profiles
    pool: Signer
    client: KubeClient
    clock: Clock
    issuers: IssuerRegistry
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    #: Namespaces whose requests and issuers this operator serves (``run --namespace``); empty: all.
    namespaces: frozenset[str] = frozenset()
    #: The request path's state: queue, bodies, retry counts, Event poster.
    requests: RequestStore = field(init=False)

    def __post_init__(self) -> None:
        self.requests = RequestStore(self.client, self.settings.max_cached_requests)
        self.requests.queue.max_size = self.settings.max_queued_requests

    def serves(self, ref: IssuerRef) -> bool:
        """Is this issuer ours: a kind we serve (``TRUSTED_ISSUER_ISSUER_KINDS``) and, for a namespaced
        one, in a namespace we watch? A request for another shard's issuer is left alone, unwritten."""
        kind, namespace, _ = ref
        if kind not in self.settings.issuer_kinds:
            return False
        return namespace is None or not self.namespaces or namespace in self.namespaces
