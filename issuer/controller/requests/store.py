"""What the request path holds for the operator's lifetime: its work queue, the latest body of each
unfinished request of ours (bounded), retry counts, and the Event poster. Only the request path writes it;
the issuer handlers only ``wake`` requests that waited for an issuer."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from issuer.controller.kubeapi import KubeClient
from issuer.controller.requests.events import EventPoster
from issuer.controller.requests.queue import WorkQueue

RequestKey = tuple[str, str, str]  # (plural, namespace or "", name)


@dataclass
class RequestStore:
    client: KubeClient
    #: How many bodies are held at most (``settings.max_cached_requests``).
    max_cached: int
    queue: WorkQueue[RequestKey] = field(default_factory=WorkQueue)
    #: The latest body seen of each unfinished request of ours, up to ``max_cached``.
    bodies: dict[RequestKey, dict[str, Any]] = field(default_factory=dict)
    #: Unfinished requests whose bodies did not fit: their bodies are read again when their turn comes.
    uncached: set[RequestKey] = field(default_factory=set)
    #: Retry counts of requests failing with passing errors, for backoff.
    attempts: dict[RequestKey, int] = field(default_factory=dict)
    #: Events about requests, posted in the background (its tasks are started with the watches).
    events: EventPoster = field(init=False)

    def __post_init__(self) -> None:
        self.events = EventPoster(self.client)

    def keep(self, key: RequestKey, body: dict[str, Any]) -> None:
        """Hold the latest body of an unfinished request, or only its key once the store is full, so a
        flood of requests costs memory per key (a few hundred bytes), not per body."""
        if key in self.bodies or len(self.bodies) < self.max_cached:
            self.bodies[key] = body
            self.uncached.discard(key)
        else:
            self.uncached.add(key)

    def forget(self, key: RequestKey) -> None:
        """Drop everything held about a request (finished, deleted, or no longer ours)."""
        self.bodies.pop(key, None)
        self.uncached.discard(key)
        self.attempts.pop(key, None)

    def wake(self, keys: Iterable[Any]) -> None:
        """Queue again the requests that waited for an issuer that is now Ready."""
        for key in keys:
            self.queue.add(key)
