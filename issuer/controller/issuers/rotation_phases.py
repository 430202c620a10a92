"""The phases of a key rotation, their clocks and what each waits for (issue 16). Pure.

A rotation is ``Distributing`` (the new CA is in the trust bundle, the old key still signs) ->
``Signing`` (the new key signs; the old CA stays trusted while certificates it signed may still be
valid) -> ``Retiring`` (the old CA has left the bundle; the operator waits to see that published) ->
``Done`` (a retired key is destroyed here, if ``retiredKeyPolicy: Destroy`` asks).

Two times decide it, both derived here from what cannot be rewritten through ``/status`` (the spec, and
the CA certificates of keys already checked to be the issuer's own) and never taken from status alone:

- distribution lasts at least one full workload-certificate lifetime: ``max(overlap, maxDuration)``.
  Without ``spec.policy.maxDuration`` a certificate may live as long as the CA that signs it, so the new
  CA is distributed until the old CA expires (status says to set ``maxDuration``);
- the old CA leaves the bundle at its *trust-until*: when the new key started signing plus the longest
  lifetime the old key could give, capped at the old CA's own expiry. The time the new key started
  signing is read from ``retiredKeys[].retiredAt`` but never taken earlier than the first CA certificate
  of the key that signs now, plus the distribution time it had to wait: a rewritten ``retiredAt`` or
  ``trustUntil`` can keep an old CA longer, never drop it early.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from issuer.clock import rfc3339
from issuer.durations import format_duration


class Phase(enum.StrEnum):
    DISTRIBUTING = "Distributing"
    SIGNING = "Signing"
    RETIRING = "Retiring"
    DONE = "Done"


def ceil_second(moment: datetime) -> datetime:
    """Status times have second precision: round up, so a recorded time is never earlier than derived."""
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + timedelta(seconds=1)


def longest_lifetime(max_duration: timedelta | None, ca_not_after: datetime, now: datetime) -> timedelta:
    """The longest a certificate the issuer signs now may live: ``maxDuration``, or (without one) until
    its CA expires, since the signer clamps every certificate to its CA's notAfter."""
    remaining = max(ca_not_after - now, timedelta(0))
    return remaining if max_duration is None else min(max_duration, remaining)


def distribution_time(
    overlap: timedelta, max_duration: timedelta | None, ca_not_after: datetime, now: datetime
) -> timedelta:
    """How long a new CA is distributed before it signs: the user's overlap, raised to one full
    workload-certificate lifetime."""
    return max(overlap, longest_lifetime(max_duration, ca_not_after, now), timedelta(0))


def trust_until(
    signing_started: datetime, max_duration: timedelta | None, old_ca_not_after: datetime
) -> datetime:
    """When nothing the old key signed can still be valid: it signed until ``signing_started``, each
    certificate for at most ``maxDuration`` and never past its own CA's notAfter."""
    if max_duration is None:
        return old_ca_not_after
    return min(ceil_second(signing_started + max_duration), old_ca_not_after)


@dataclass(frozen=True)
class CheckedTrust:
    """A retired CA's trust-until as derived, and what status claimed if it disagreed."""

    until: datetime
    drift: str | None = None


def checked_trust_until(
    record: Mapping[str, Any],
    parse: Any,
    max_duration: timedelta | None,
    old_ca_not_after: datetime,
    signing_key_first_not_before: datetime | None,
) -> CheckedTrust:
    """The trust-until of one retired key, re-derived (see the module's docstring). ``record`` is a
    ``retiredKeys`` entry as read from status: its ``retiredAt`` is floored at the first CA certificate
    of the key signing now; its recorded ``maxDuration`` only ever lengthens the spec's; its recorded
    ``trustUntil`` is compared, never used."""
    started = parse(str(record["retiredAt"])) if record.get("retiredAt") else None
    floor = signing_key_first_not_before
    if started is None or (floor is not None and started < floor):
        started = floor or old_ca_not_after
    recorded_max = record.get("maxDurationSeconds")
    longest = max_duration
    if longest is not None and recorded_max is not None:
        with_recorded = timedelta(seconds=float(recorded_max))
        longest = max(longest, with_recorded)
    until = trust_until(started, longest, old_ca_not_after)
    claimed = record.get("trustUntil")
    drift = None
    if claimed and str(claimed) != rfc3339(until):
        drift = (
            f"status.retiredKeys[generation={record.get('generation')}].trustUntil said {claimed}; "
            f"derived {rfc3339(until)} from the spec and the CA certificates, which is what counts"
        )
    return CheckedTrust(until, drift)


@dataclass(frozen=True)
class PhaseReport:
    """``status.rotation``: the phase, since when, when it may advance and what it waits for."""

    generation: int
    phase: Phase
    waiting_for: str
    advances_at: datetime | None = None
    held: bool = False
    distribution: timedelta | None = None

    def to_status(self, since: str | None) -> dict[str, Any]:
        """Every field, absent ones as None: status is written as a merge patch, which keeps a key it
        is not told to remove."""
        return {
            "generation": self.generation,
            "phase": self.phase.value,
            "since": since,
            "waitingFor": self.waiting_for,
            "held": self.held,
            "advancesAt": rfc3339(self.advances_at) if self.advances_at is not None else None,
            "distribution": format_duration(self.distribution) if self.distribution is not None else None,
        }


def describe_lifetime(max_duration: timedelta | None, ca_not_after: datetime) -> str:
    if max_duration is None:
        return (
            "no spec.policy.maxDuration: a certificate may live until its CA expires "
            f"({rfc3339(ca_not_after)}); "
            "set maxDuration to bound the rotation"
        )
    return f"maxDuration {format_duration(max_duration)}"


def seconds(delta: timedelta) -> int:
    return math.ceil(delta.total_seconds())
