"""One active signer among several replicas: leader election on a ``coordination.k8s.io/v1`` Lease,
with fencing.

Why a Lease and not kopf's peering: kopf peering pauses every operator that sees a live peer of equal
or higher priority, so equal replicas would all pause, and distinct priorities would have to be handed
out per pod by hand (a Deployment cannot); peering has no fencing either (a pausing operator's
in-flight writes have no deadline), and it needs kopf's peering CRD, cluster-wide. A Lease is
what kube-controller-manager, cert-manager and every client-go controller use: one object, written
with resourceVersion preconditions, so two replicas can never both believe they acquired it, and a
dead holder's claim expires after ``leaseDurationSeconds`` as observed on the *standby's own* clock
(client-go's rule: no replica compares its clock with another's).

The record and its rules are client-go's (``resourcelock.LeaseLock`` and ``LeaderElector``):

- ``holderIdentity``, ``leaseDurationSeconds``, ``acquireTime``, ``renewTime`` (MicroTime) and
  ``leaseTransitions`` (incremented whenever the holder changes);
- a replica takes the Lease when it does not exist (create), when its holder is empty (released), or
  when the record has not changed for ``leaseDurationSeconds`` since this replica first saw it;
- the holder renews every ``retry_period``; every write is a PUT carrying the resourceVersion it
  read, so a concurrent writer gets 409 Conflict and tries again later;
- a graceful stop releases the Lease (empty holder), so a standby takes over on its next try
  instead of waiting for expiry.

**Fencing.** ``Leadership.holds()`` is true only until ``renew_deadline`` after the *start* of the
last successful renewal, measured on the monotonic clock. Every write the request path makes (the
fenced API client) and every signature (``FencedSigner``, the wrapper around the signer) checks it, so
a leader that cannot renew (API server unreachable, process starved) stops signing and publishing at
that instant, without waiting for any task to notice, and then stops kopf and exits. A standby takes
the Lease only ``lease_duration`` after it saw the last renewal, which is later than that instant by at
least ``lease_duration - renew_deadline``: that margin covers a write already in flight. Publishing a
certificate stays at most once per request regardless, by the resourceVersion precondition of
every status write (``requests/processing``), so even an overlap could not publish twice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from issuer.clock import parse_rfc3339, rfc3339_micro
from issuer.controller.kubeapi import Conflict, Credentials, KubeClient, NotFound, own_namespace
from issuer.errors import RetryableError, TrustedIssuerError
from issuer.signer.api import Operation, Signer

log = logging.getLogger("trusted-issuer.election")
R = TypeVar("R")

LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


@dataclass(frozen=True)
class LeaseTiming:
    """client-go's three durations, in seconds; ``retry < renew_deadline < duration``."""

    duration: float
    renew_deadline: float
    retry_period: float

    def failover_bound(self) -> float:
        """Worst case from a leader's death to a standby holding the Lease: the standby sees the last
        renewal at most one retry period after it, waits ``duration``, and tries every retry period."""
        return self.duration + 2 * self.retry_period


class Leadership:
    """Whether this replica may sign and publish right now (the fence)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._valid_until = -math.inf

    def holds(self) -> bool:
        return self._clock() < self._valid_until

    def renewed(self, attempt_started: float, renew_deadline: float) -> None:
        """A renewal that began at ``attempt_started`` succeeded: hold until ``renew_deadline`` after it."""
        self._valid_until = max(self._valid_until, attempt_started + renew_deadline)

    def drop(self) -> None:
        self._valid_until = -math.inf

    def remaining(self) -> float:
        return max(0.0, self._valid_until - self._clock())

    def check(self, what: str) -> None:
        """Raise ``RetryableError`` (reason ``Fenced``) unless this replica holds the Lease."""
        if not self.holds():
            raise RetryableError(f"{what} refused: this replica does not hold the lease (fenced)", "Fenced")


class Attempt(enum.Enum):
    HELD = "held"  # we hold the Lease now (acquired or renewed)
    TAKEN = "taken"  # another replica holds it and its claim is live
    FAILED = "failed"  # the API failed or another writer won a race: try again later


def microtime(moment: datetime) -> str:
    """Kubernetes MicroTime: RFC 3339 with microseconds, in UTC."""
    return rfc3339_micro(moment)


def holder_of(lease: Mapping[str, Any]) -> str:
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def lease_record(
    name: str,
    namespace: str,
    *,
    holder: str | None,
    duration: float,
    acquired: datetime,
    renewed: datetime,
    transitions: int,
    resource_version: str | None = None,
) -> dict[str, Any]:
    """The whole Lease object as this replica writes it (a PUT replaces the spec)."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    spec: dict[str, Any] = {
        "leaseDurationSeconds": max(1, math.ceil(duration)),
        "acquireTime": microtime(acquired),
        "renewTime": microtime(renewed),
        "leaseTransitions": transitions,
    }
    if holder:
        spec["holderIdentity"] = holder
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}


def default_identity() -> str:
    """The pod's name (the hostname in Kubernetes) and a random suffix, as client-go builds it, so a
    restarted container is a new holder and never mistakes the old one's Lease for its own."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def lease_namespace(configured: str | None) -> str:
    """The configured namespace, else the pod's own (``kubeapi.own_namespace``), else ``default``."""
    return configured or own_namespace() or "default"


class LeaseElector:
    """Acquire, keep and release one Lease with client-go's rules (see the module docstring)."""

    def __init__(
        self,
        client: KubeClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        timing: LeaseTiming,
        leadership: Leadership | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing
        self.leadership = leadership or Leadership(clock)
        self._clock = clock
        self._wall = wall_clock
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self.last_holder = ""

    @property
    def collection(self) -> str:
        return LEASES.format(namespace=self.namespace)

    @property
    def path(self) -> str:
        return f"{self.collection}/{self.name}"

    async def attempt(self, timeout: float | None = None) -> Attempt:
        """One try to acquire or renew, given up after ``timeout`` (default: the renew deadline); never
        raises for API trouble (that is ``FAILED``)."""
        try:
            return await asyncio.wait_for(self._attempt(), timeout or self.timing.renew_deadline)
        except (TrustedIssuerError, TimeoutError) as err:
            log.warning(f"lease={self.namespace}/{self.name} attempt failed: {err}")
            return Attempt.FAILED

    async def _attempt(self) -> Attempt:
        started = self._clock()
        now = self._wall()
        try:
            current = await self.client.get(self.path)
        except NotFound:
            record = lease_record(
                self.name,
                self.namespace,
                holder=self.identity,
                duration=self.timing.duration,
                acquired=now,
                renewed=now,
                transitions=0,
            )
            try:
                await self.client.request("POST", self.collection, record)
            except Conflict:
                return Attempt.FAILED  # another replica created it first
            return self._held(started, record, first=True)
        spec = current.get("spec") or {}
        holder = holder_of(current)
        self.last_holder = holder
        seen = (holder, spec.get("renewTime"), spec.get("leaseDurationSeconds"), spec.get("leaseTransitions"))
        if seen != self._observed:
            self._observed, self._observed_at = seen, self._clock()
        if holder and holder != self.identity:
            held_for = float(spec.get("leaseDurationSeconds") or self.timing.duration)
            if self._clock() < self._observed_at + held_for:
                return Attempt.TAKEN
        ours = holder == self.identity
        transitions = int(spec.get("leaseTransitions") or 0)
        acquired = spec.get("acquireTime") if ours else None
        record = lease_record(
            self.name,
            self.namespace,
            holder=self.identity,
            duration=self.timing.duration,
            acquired=_parse_time(acquired) or now,
            renewed=now,
            transitions=transitions if ours else transitions + 1,
            resource_version=str(current["metadata"]["resourceVersion"]),
        )
        try:
            await self.client.request("PUT", self.path, record)
        except (Conflict, NotFound):
            return Attempt.FAILED
        return self._held(started, record, first=not ours)

    def _held(self, started: float, record: Mapping[str, Any], *, first: bool) -> Attempt:
        self.leadership.renewed(started, self.timing.renew_deadline)
        spec = record["spec"]
        self._observed = (
            self.identity,
            spec["renewTime"],
            spec["leaseDurationSeconds"],
            spec["leaseTransitions"],
        )
        self._observed_at = self._clock()
        self.last_holder = self.identity
        if first:
            log.info(
                f"acquired lease={self.namespace}/{self.name} identity={self.identity} "
                f"transitions={spec['leaseTransitions']}"
            )
        return Attempt.HELD

    async def acquire(self, stopping: asyncio.Event) -> bool:
        """Try every retry period until this replica holds the Lease (True) or ``stopping`` is set."""
        reported = ""
        while not stopping.is_set():
            if await self.attempt() is Attempt.HELD:
                return True
            if self.last_holder and self.last_holder != reported:
                reported = self.last_holder
                log.info(f"standby: lease={self.namespace}/{self.name} is held by {reported}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.timing.retry_period)
        return False

    async def keep(self) -> None:
        """Renew every retry period; return as soon as the Lease is lost: another replica holds it,
        or no renewal succeeded within the renew deadline (the fence has already closed by then)."""
        while True:
            await asyncio.sleep(min(self.timing.retry_period, self.leadership.remaining()))
            # As client-go: once past the deadline, step down; never try to win the Lease back.
            if self.leadership.holds():
                outcome = await self.attempt(timeout=self.leadership.remaining())
                if outcome is Attempt.TAKEN:
                    self.leadership.drop()
            if not self.leadership.holds():
                log.error(
                    f"lost lease={self.namespace}/{self.name} identity={self.identity} "
                    f"holder={self.last_holder or 'none'}: stopped signing and publishing"
                )
                return

    async def release(self) -> None:
        """Give the Lease up (empty holder) so a standby takes it on its next try. Only while it is
        still ours: a replica past its renew deadline writes nothing."""
        if not self.leadership.holds():
            return
        self.leadership.drop()  # stop signing before anyone else may start
        try:
            current = await self.client.get(self.path)
            if holder_of(current) != self.identity:
                return
            spec = current.get("spec") or {}
            now = self._wall()
            record = lease_record(
                self.name,
                self.namespace,
                holder=None,
                duration=1,
                acquired=now,
                renewed=now,
                transitions=int(spec.get("leaseTransitions") or 0),
                resource_version=str(current["metadata"]["resourceVersion"]),
            )
            await self.client.request("PUT", self.path, record)
        except (TrustedIssuerError, Conflict, NotFound) as err:
            log.warning(f"could not release lease={self.namespace}/{self.name}: {err}")
            return
        log.info(f"released lease={self.namespace}/{self.name} identity={self.identity}")


def _parse_time(text: object) -> datetime | None:
    if not text:
        return None
    try:
        return parse_rfc3339(str(text))
    except ValueError:
        return None


class FencedKubeClient(KubeClient):
    """The request path's API client: every write is refused once this replica does not hold the Lease."""

    def __init__(self, credentials: Credentials, leadership: Leadership, **kwargs: Any) -> None:
        super().__init__(credentials, **kwargs)
        self.leadership = leadership

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        *,
        answer: bool = True,
    ) -> dict[str, Any]:
        if method != "GET":
            self.leadership.check(f"API {method} {path}")
        return await super().request(method, path, body, content_type, answer=answer)


class FencedSigner(Signer):
    """A signer whose signatures stop the instant this replica stops holding the Lease; it wraps the
    signer that does the work and hands it every operation. Without a fence (leader election off) it
    only delegates; a standby has no request path at all."""

    def __init__(self, inner: Signer, fence: Leadership | None = None) -> None:
        self.inner = inner
        self.fence = fence

    def dispatch(
        self, operation: Operation[Any, R], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> concurrent.futures.Future[R]:
        if operation is Signer.sign and self.fence is not None:
            self.fence.check("signing")
        return self.inner.dispatch(operation, args, kwargs)

    def close(self) -> None:
        self.inner.close()
