"""Time for the whole operator: the clock that is passed in (never looked up deep inside) and the one
spelling of times on the wire, RFC 3339 in UTC as the API server writes them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

#: What code that needs the time takes as an argument, so tests can hand it another clock.
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The real clock, for callers at the edge; everything below takes ``now`` or a ``Clock``."""
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """A Kubernetes ``Time``: RFC 3339 in UTC, second precision (``2026-12-04T21:12:00Z``)."""
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(moment: datetime) -> str:
    """A Kubernetes ``MicroTime`` (Leases, events.k8s.io Events): RFC 3339 in UTC with microseconds."""
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(text: str) -> datetime:
    """A ``Time`` or ``MicroTime`` as the API server writes it (``Z`` or an offset); ``ValueError`` if it
    is not one."""
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def _utc(moment: datetime) -> datetime:
    # A naive time is taken as UTC already (it is never the local time here).
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment
