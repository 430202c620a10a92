"""Fault injection: a share of API calls answered with an error, answered slowly, or (watches) dropped.

Rules are matched against each resource call (discovery and ``/version`` are never faulted, so a
client can always start). The random choice is seeded, so a failing run can be replayed.

    sandbox.faults.add(status=500, share=0.2, verbs={"patch"}, resources={"certificaterequests/status"})
    sandbox.faults.add(delay=1.5, resources={"leases"})
    sandbox.faults.add(drop_watch_after=0.5, times=3)
    sandbox.faults.clear()
"""

from __future__ import annotations

import random
import threading
from collections.abc import Collection
from dataclasses import dataclass

from trusted_issuer_sandbox.routing import ApiCall


@dataclass
class FaultRule:
    """One rule; ``hits`` counts the calls it has affected so far."""

    status: int | None = None
    delay: float = 0.0
    drop_watch_after: float | None = None
    share: float = 1.0
    verbs: frozenset[str] | None = None
    resources: frozenset[str] | None = None
    namespaces: frozenset[str] | None = None
    times: int | None = None
    hits: int = 0

    def matches(self, call: ApiCall) -> bool:
        """Whether the rule applies to this call, before the share and the ``times`` limit."""
        if call.resource is None or (self.times is not None and self.hits >= self.times):
            return False
        if self.drop_watch_after is not None and call.verb != "watch":
            return False
        resource = f"{call.resource}/{call.subresource}" if call.subresource else call.resource
        return (
            (self.verbs is None or call.verb in self.verbs)
            and (self.resources is None or resource in self.resources or call.resource in self.resources)
            and (self.namespaces is None or call.namespace in self.namespaces)
        )


@dataclass(frozen=True)
class Fault:
    """What to do to one call: wait ``delay`` seconds, then answer ``status`` or cut the watch."""

    status: int | None = None
    delay: float = 0.0
    drop_watch_after: float | None = None


class FaultInjector:
    """The fault rules of one sandbox. Safe to change from any thread while it serves."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._rules: list[FaultRule] = []

    def add(
        self,
        *,
        status: int | None = None,
        delay: float = 0.0,
        drop_watch_after: float | None = None,
        share: float = 1.0,
        verbs: Collection[str] | None = None,
        resources: Collection[str] | None = None,
        namespaces: Collection[str] | None = None,
        times: int | None = None,
    ) -> FaultRule:
        """Add a rule: answer ``status`` (e.g. 500, 409, 429), wait ``delay`` s, or drop matching
        watches ``drop_watch_after`` s after they start; for a ``share`` (0..1) of the matching calls
        (``verbs``: RBAC verbs; ``resources``: plurals or ``plural/subresource``), at most ``times``."""
        if status is None and not delay and drop_watch_after is None:
            raise ValueError("a fault needs a status, a delay or drop_watch_after")
        if not 0.0 <= share <= 1.0:
            raise ValueError("share must be between 0 and 1")
        rule = FaultRule(
            status=status,
            delay=delay,
            drop_watch_after=drop_watch_after,
            share=share,
            verbs=frozenset(verbs) if verbs is not None else None,
            resources=frozenset(resources) if resources is not None else None,
            namespaces=frozenset(namespaces) if namespaces is not None else None,
            times=times,
        )
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule: FaultRule) -> None:
        """Stop applying one rule."""
        with self._lock:
            self._rules = [r for r in self._rules if r is not rule]

    def clear(self) -> None:
        """Stop all faults."""
        with self._lock:
            self._rules.clear()

    def decide(self, call: ApiCall) -> Fault | None:
        """The fault for this call (the first matching rule whose share comes up), or None."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(call) and self._random.random() < rule.share:
                    rule.hits += 1
                    return Fault(status=rule.status, delay=rule.delay, drop_watch_after=rule.drop_watch_after)
        return None
