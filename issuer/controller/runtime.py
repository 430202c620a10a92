"""What the handlers and the request path share for the operator's lifetime, built once at start-up and
kept in kopf's memo."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from issuer.controller.events import EventPoster
from issuer.controller.kubeapi import KubeClient
from issuer.controller.queue import WorkQueue
from issuer.profiles import Profiles
from issuer.settings import Settings
from issuer.signer.api import Signer

if TYPE_CHECKING:
    from issuer.controller.issuers import IssuerRef, IssuerRegistry

RequestKey = tuple[str, str, str]  # (plural, namespace or "", name)


@dataclass
class Runtime:
    settings: Settings
    profiles: Profiles
    pool: Signer
    client: KubeClient
    clock: Callable[[], datetime]
    issuers: IssuerRegistry
    queue: WorkQueue[RequestKey] = field(default_factory=WorkQueue)
    #: The latest body seen of each unfinished request of ours, up to ``settings.max_cached_requests``.
    requests: dict[RequestKey, dict[str, Any]] = field(default_factory=dict)
    #: Unfinished requests whose bodies did not fit: their bodies are read again when their turn comes.
    uncached: set[RequestKey] = field(default_factory=set)
    #: Retry counts of requests failing with passing errors, for backoff.
    attempts: dict[RequestKey, int] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    #: Namespaces whose requests and issuers this operator serves (``run --namespace``); empty: all.
    namespaces: frozenset[str] = frozenset()
    #: Events about requests, posted in the background (its tasks are started with the watches).
    events: EventPoster = field(init=False)

    def __post_init__(self) -> None:
        self.events = EventPoster(self.client)
        if self.queue.max_size is None:
            self.queue.max_size = self.settings.max_queued_requests

    def serves(self, ref: IssuerRef) -> bool:
        """Is this issuer ours: a kind we serve (``TRUSTED_ISSUER_ISSUER_KINDS``) and, for a namespaced
        one, in a namespace we watch? A request for another shard's issuer is left alone, unwritten."""
        kind, namespace, _ = ref
        if kind not in self.settings.issuer_kinds:
            return False
        return namespace is None or not self.namespaces or namespace in self.namespaces

    def keep(self, key: RequestKey, body: dict[str, Any]) -> None:
        """Hold the latest body of an unfinished request, or only its key once the store is full, so a
        flood of requests costs memory per key (a few hundred bytes), not per body."""
        if key in self.requests or len(self.requests) < self.settings.max_cached_requests:
            self.requests[key] = body
            self.uncached.discard(key)
        else:
            self.uncached.add(key)

    def forget(self, key: RequestKey) -> None:
        """Drop everything held about a request (finished, deleted, or no longer ours)."""
        self.requests.pop(key, None)
        self.uncached.discard(key)
        self.attempts.pop(key, None)
