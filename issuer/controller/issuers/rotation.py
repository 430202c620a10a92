"""Self-signed CA renewal and rolling to a new key (issue 6), as recorded in an issuer's status.

Design, and why:

- The user raises ``spec.key.rotation.generation`` to ask for a new key. A counter says exactly which
  key is wanted, is idempotent (reconciling twice never makes two keys: the new key's label carries the
  generation, so a crash between generating and recording finds it again) and is visible in git history.
- Publish before sign: the new key and its CA are written to ``status.nextKey`` and into ``status.ca``
  (so requesters start trusting it) first. The issuer switches to the new key only on a later
  reconciliation that *reads* ``nextKey`` back from the API server, and only once ``signFrom``
  (publication + ``overlap``) has passed; so no certificate is ever signed by a key whose CA was not
  already published, even with ``overlap: 0s`` or a crash in between.
- The old key becomes a retired key: it no longer signs, its CA stays in ``status.ca`` (certificates it
  issued are still in use) and it stays in the token. It is destroyed only when the user sets
  ``retiredKeyPolicy: Destroy``, and only once its retirement has itself been published, so a crash can
  never leave the status naming a destroyed key as the signing key. The destruction is recorded
  (``retiredKeys[].destroyedAt``) and logged, never silent; its CA then leaves ``status.ca``.

Everything but :func:`self_signed` is pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from issuer import api
from issuer.clock import parse_rfc3339, rfc3339
from issuer.controller import conditions as st
from issuer.controller.issuers.key_budget import KeyBudget
from issuer.controller.issuers.key_scope import KeyScope, rotation_key_label
from issuer.controller.issuers.rotation_phases import (
    Phase,
    PhaseReport,
    ceil_second,
    checked_trust_until,
    describe_lifetime,
    distribution_time,
    longest_lifetime,
    seconds,
    trust_until,
)
from issuer.controller.issuers.spec import IssuerSpec, Rotation
from issuer.controller.issuers.status import IssuerStatus, StatusPatch, next_key_record, retired_record
from issuer.controller.runtime import Runtime
from issuer.durations import format_duration
from issuer.errors import IssuerError, PermanentError
from issuer.key_quota import REASON_KEY_QUOTA_EXCEEDED
from issuer.signer.api import BACKDATE, CAInfo, KeyHandle, canonical_subject, describe_ca
from issuer.tokens import TokenConfig

USE_SIGNING = "Signing"
USE_NEXT = "Next"
USE_PREVIOUS = "Previous"
#: A rotation asked for while another is pending: it waits (condition RotationRefused on the issuer).
REASON_ROTATION_PENDING = "RotationPending"


parse_time = parse_rfc3339


def _described(entry: Mapping[str, Any]) -> CAInfo:
    return describe_ca(str(entry["pem"]).encode())


def entry_key(entry: Mapping[str, Any]) -> str:
    """The SHA-256 of the public key of a ``caCertificates`` entry (older entries lack the field)."""
    recorded = entry.get("publicKeySHA256")
    if recorded:
        return str(recorded)
    return _described(entry).public_key_sha256


def still_valid(entry: Mapping[str, Any], now: datetime) -> bool:
    return now < _described(entry).not_after


def needs_new_ca(current: Mapping[str, Any] | None, key: KeyHandle, spec: IssuerSpec, now: datetime) -> bool:
    """A CA certificate is made anew when there is none, it is not the key's, its subject or path length
    changed, or it is within renewBefore of expiry."""
    if not current or not current.get("pem"):
        return True
    info = _described(current)
    if entry_key(current) != key.public_key_sha256:
        return True
    if info.subject != canonical_subject(spec.subject):
        return True
    if not info.is_ca or info.path_length != spec.path_length:
        return True
    return now >= info.not_after - spec.renew_before


def newest_for_key(
    entries: Sequence[Mapping[str, Any]], fingerprint: str, now: datetime
) -> Mapping[str, Any] | None:
    """The most recently issued, still valid CA certificate of one key, if any."""
    mine = [e for e in entries if entry_key(e) == fingerprint and still_valid(e, now)]
    return max(mine, key=lambda e: _described(e).not_before, default=None)


def with_use(entry: Mapping[str, Any], use: str) -> dict[str, Any]:
    return {**entry, "use": use}


@dataclass(frozen=True)
class RotationPlan:
    """What one reconciliation does about key rotation, decided from the spec and the *published* status."""

    #: Switch signing to the published next key now.
    switch: bool
    #: Generate (or find) the key of this generation and publish it as the next key.
    prepare: int | None
    #: Why the generation asked for waits: a rotation is already pending (never a second new key meanwhile).
    refused: str | None = None


def plan_rotation(
    wanted: int, signing_generation: int, published_next: Mapping[str, Any] | None, now: datetime
) -> RotationPlan:
    """Decide the rotation step. ``published_next`` must come from the API server (status as read), never
    from this reconciliation's own patch: that is what makes publish-before-sign hold."""
    if wanted < signing_generation:
        raise PermanentError(
            f"spec.key.rotation.generation is {wanted} but the issuer already signs with generation "
            f"{signing_generation}; generations only go up",
            api.REASON_INVALID_SPEC,
        )
    if wanted == signing_generation:
        return RotationPlan(switch=False, prepare=None)
    if published_next is None:
        return RotationPlan(switch=False, prepare=wanted)
    pending = int(published_next.get("generation", -1))
    due = now >= parse_time(str(published_next["signFrom"]))
    if pending == wanted:
        return RotationPlan(switch=due, prepare=None)
    # Asked again while a rotation is pending: each request used to leave one more key in the token.
    # The pending rotation goes on (it moves toward what is asked, so it may still switch); the new one
    # starts once it signs.
    waits = (
        f"spec.key.rotation.generation {wanted} waits: generation {pending} is pending "
        f"(signs from {published_next['signFrom']}); a new rotation starts only once it signs"
    )
    return RotationPlan(switch=due and pending < wanted, prepare=None, refused=waits)


class Log(Protocol):
    """What reconciliation logs through: kopf's per-object logger, or any ``logging.Logger``."""

    def info(self, message: str, /) -> None: ...

    def warning(self, message: str, /) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """A Ready issuer: the key that signs, its CA chain (``IssuerKey.ca_pem``: issuing CA, intermediates,
    root), what requesters must trust (``status.ca``), and a note for the Ready condition's message."""

    handle: KeyHandle
    ca_pem: bytes
    trust_pem: bytes
    note: str = ""
    #: A rotation asked for and refused (reason, message): reported on the issuer, which keeps signing.
    rotation_refused: tuple[str, str] | None = None
    #: A rotation phase entered in this reconciliation: the message of its Event (reason RotationPhase).
    phase_event: str | None = None


async def _new_ca(
    runtime: Runtime, token: TokenConfig, handle: KeyHandle, spec: IssuerSpec
) -> dict[str, Any]:
    pem = await runtime.pool.create_self_signed_ca(
        token, handle, spec.subject, spec.ca_duration, path_length=spec.path_length, rsa_pss=spec.rsa_pss
    )
    return {**st.ca_entry(pem), "publicKeySHA256": handle.public_key_sha256}


async def find_or_generate(
    runtime: Runtime, token: TokenConfig, spec: IssuerSpec, label: str, budget: KeyBudget
) -> KeyHandle:
    """The key under ``label``: found (a crash after generating but before recording leaves our own key
    behind: take it back), else generated if the scope's key quota has room (``KeyQuotaExceeded``)."""
    found = await runtime.pool.find_key_or_none(token, label)
    if found is not None:
        return found
    async with budget.room(f"key {label!r}"):
        return await runtime.pool.generate_key(token, spec.algorithm, label)


class PublishedBundle(Protocol):
    """The trust bundle as workloads read it now (the issuer's ConfigMap), before this reconciliation
    writes: what a phase may advance on."""

    def holds(self, pem: str) -> bool: ...

    def holds_key(self, public_key_sha256: str) -> bool: ...


@dataclass
class _Phases:
    """What one reconciliation learns about the phase of the rotation, for ``status.rotation``."""

    report: PhaseReport | None = None
    notes: list[str] = field(default_factory=list)


async def self_signed(
    runtime: Runtime,
    token: TokenConfig,
    spec: IssuerSpec,
    scope: KeyScope,
    budget: KeyBudget,
    handle: KeyHandle,
    generation: int,
    status: IssuerStatus,
    patch: StatusPatch,
    log: Log,
    bundle: PublishedBundle,
) -> Outcome:
    """Renew the CA of the signing key when due, and take one step of a key rotation; write the outcome
    (``keyHandle``, ``keyGeneration``, ``nextKey``, ``retiredKeys``, ``caCertificates``, ``ca``,
    ``rotation``) into ``patch``. Every key handle taken from ``status`` is checked against ``scope``
    again here: this function never signs with, switches to or destroys a key that is not the issuer's
    own. A phase advances only on what ``bundle`` (the published ConfigMap) shows: the new key signs only
    once its CA is published there, and a retired key is destroyed only once its CA has left it."""
    now = runtime.clock()
    entries = status.ca_certificates
    published_next = status.next_key
    retired: list[dict[str, Any]] = [dict(r) for r in status.retired_keys]
    plan = plan_rotation(spec.rotation.generation, generation, published_next, now)
    rotation = spec.rotation
    max_duration = spec.policy.max_duration
    phases = _Phases()

    current_before = newest_for_key(entries, handle.public_key_sha256, now)
    signing_not_after = _described(current_before).not_after if current_before else now

    next_record: dict[str, Any] | None = dict(published_next) if published_next else None
    refused = (REASON_ROTATION_PENDING, plan.refused) if plan.refused else None
    upcoming: KeyHandle | None = None
    if next_record is not None:
        upcoming, _ = scope.signing_key(next_record["keyHandle"], "nextKey.keyHandle")
        await runtime.pool.verify_key(token, upcoming)
        phases.report = _distributing(
            rotation, max_duration, signing_not_after, next_record, entries, upcoming, plan, bundle, now, log
        )
    if plan.switch and upcoming is not None and next_record is not None and phases.report is not None:
        if (
            phases.report.advances_at is not None
            and now >= phases.report.advances_at
            and not phases.report.held
        ):
            old_not_after = signing_not_after
            longest = longest_lifetime(max_duration, old_not_after, now)
            retired.append(
                retired_record(
                    handle,
                    generation,
                    now,
                    trust_until(now, max_duration, old_not_after),
                    seconds(longest) if max_duration is not None else None,
                )
            )
            log.info(
                f"rotation: phase Signing: generation {next_record['generation']} key {upcoming.key_label!r} "
                f"signs from now; retired key {handle.key_label!r} stays in the token and its CA in the "
                f"trust bundle until {retired[-1].get('trustUntil')}"
            )
            handle, generation, next_record, upcoming = upcoming, int(next_record["generation"]), None, None
            phases.report = None
    elif plan.prepare is not None:
        label = rotation_key_label(scope.base_label, plan.prepare)
        try:
            fresh = await find_or_generate(runtime, token, spec, label, budget)
        except IssuerError as err:
            if err.reason != REASON_KEY_QUOTA_EXCEEDED:
                raise
            # The issuer keeps signing with its key; only the rotation waits for room.
            refused = (err.reason, f"spec.key.rotation.generation {plan.prepare} waits: {err.message}")
        else:
            distribution = distribution_time(rotation.overlap, max_duration, signing_not_after, now)
            next_record = next_key_record(fresh, plan.prepare, now, ceil_second(now + distribution))
            upcoming = fresh
            held = rotation.hold == Phase.DISTRIBUTING.value
            phases.report = PhaseReport(
                plan.prepare,
                Phase.DISTRIBUTING,
                "held by spec.key.rotation.hold"
                if held
                else _distribution_wait(distribution, rotation, max_duration, signing_not_after),
                None if held else parse_time(str(next_record["signFrom"])),
                held=held,
                distribution=distribution,
            )
            log.info(
                f"rotation: phase Distributing: published generation {plan.prepare} key {fresh.key_label!r}; "
                f"its CA is in the trust bundle now and it signs from {next_record['signFrom']} "
                f"(distribution {format_duration(distribution)})"
            )

    current = newest_for_key(entries, handle.public_key_sha256, now)
    fresh_signing = current is None or needs_new_ca(current, handle, spec, now)
    signing_entry = await _new_ca(runtime, token, handle, spec) if fresh_signing else dict(current or {})
    result = [with_use(signing_entry, USE_SIGNING)]
    if next_record is not None and upcoming is not None:
        next_entry = newest_for_key(entries, upcoming.public_key_sha256, now)
        if next_entry is None or needs_new_ca(next_entry, upcoming, spec, now):
            next_entry = await _new_ca(runtime, token, upcoming, spec)
        result.append(with_use(next_entry, USE_NEXT))
    # Still trusted: the signing key's previous certificate (after a renewal).
    if fresh_signing and current is not None:
        result.append(with_use(current, USE_PREVIOUS))
    elif current is not None:
        older = [
            e
            for e in entries
            if entry_key(e) == handle.public_key_sha256
            and e.get("pem") != current.get("pem")
            and still_valid(e, now)
        ]
        result.extend(with_use(e, USE_PREVIOUS) for e in older[:1])

    # Retired keys: their CA stays trusted until nothing they signed can be valid (re-derived here).
    known = [*entries, signing_entry]
    published_retired = {str((r.get("keyHandle") or {}).get("publicKeySHA256")) for r in status.retired_keys}
    latest = max(retired, key=lambda r: int(r.get("generation", 0)), default=None)
    for record in retired:
        fingerprint = str(record["keyHandle"].get("publicKeySHA256"))
        kept = newest_for_key(entries, fingerprint, now)
        is_latest = record is latest and next_record is None
        if kept is not None:
            successor = _successor_key(record, retired, handle)
            checked = checked_trust_until(
                record,
                parse_time,
                max_duration,
                _described(kept).not_after,
                _first_not_before(known, successor),
            )
            if checked.drift:
                log.warning(f"rotation: {checked.drift}")
            record["trustUntil"] = rfc3339(checked.until)
            held = is_latest and rotation.hold == Phase.SIGNING.value
            if now < checked.until or held:
                result.append(with_use(kept, USE_PREVIOUS))
                if is_latest:
                    phases.report = PhaseReport(
                        generation,
                        Phase.SIGNING,
                        _signing_wait(record, max_duration, held),
                        None if held else checked.until,
                        held=held,
                    )
                continue
        # Out of the bundle. Retiring until the published bundle no longer holds its CA; then Done.
        leaving = bundle.holds_key(fingerprint)
        held = is_latest and rotation.hold == Phase.RETIRING.value
        if is_latest and (leaving or held):
            why = (
                "held by spec.key.rotation.hold"
                if held
                else "the trust bundle without the old CA to be published"
            )
            phases.report = PhaseReport(generation, Phase.RETIRING, why, None if held else now, held=held)
        elif is_latest:
            phases.report = PhaseReport(generation, Phase.DONE, "nothing: the rotation is complete")
        # Destroy retired keys only when asked, only those whose retirement was already published, and
        # only once their CA has left the published bundle.
        if not rotation.destroy_retired or held or leaving:
            continue
        if record.get("destroyedAt") or fingerprint not in published_retired:
            continue
        old, _ = scope.signing_key(record["keyHandle"], "retiredKeys[].keyHandle")
        if old.key_label == handle.key_label:
            continue  # never the key that signs (status.retiredKeys may have been rewritten)
        await runtime.pool.destroy_key_if_present(token, old)
        record["destroyedAt"] = rfc3339(now)
        log.warning(
            f"rotation: destroyed retired key {old.key_label!r} id={old.key_id} "
            "(spec.key.rotation.retiredKeyPolicy=Destroy)"
        )

    trust = "".join(str(e["pem"]) for e in result)
    patch.signing_key(handle, generation)
    patch.rotation(next_record, retired)
    patch.trust(result, trust)
    phase_event = _report_phase(patch, status, phases.report, now, log)
    message = ""
    if next_record is not None:
        message = (
            f"; rotation to generation {next_record['generation']} published, "
            f"signing with the new key from {next_record['signFrom']}"
        )
    return Outcome(handle, str(signing_entry["pem"]).encode(), trust.encode(), message, refused, phase_event)


def _successor_key(
    record: Mapping[str, Any], retired: Sequence[Mapping[str, Any]], signing: KeyHandle
) -> str:
    """The public-key fingerprint of the key that signed after ``record``'s: the next retired generation,
    else the key signing now. Its first CA certificate bounds when ``record``'s key stopped signing."""
    generation = int(record.get("generation", 0))
    later = [r for r in retired if int(r.get("generation", 0)) > generation]
    if not later:
        return signing.public_key_sha256
    successor = min(later, key=lambda r: int(r.get("generation", 0)))
    return str((successor.get("keyHandle") or {}).get("publicKeySHA256"))


def _first_not_before(entries: Sequence[Mapping[str, Any]], fingerprint: str) -> datetime | None:
    """The earliest notBefore of a key's CA certificates (as made, backdate taken back out)."""
    mine = [_described(e).not_before for e in entries if e.get("pem") and entry_key(e) == fingerprint]
    return min(mine) + BACKDATE if mine else None


def _distribution_wait(
    distribution: timedelta, rotation: Rotation, max_duration: timedelta | None, ca_not_after: datetime
) -> str:
    raised = (
        ""
        if distribution <= rotation.overlap
        else (
            f" (raised from overlap {format_duration(rotation.overlap)} to one full workload-certificate "
            "lifetime)"
        )
    )
    return (
        f"the new CA to reach every workload: it is distributed for {format_duration(distribution)}{raised}; "
        f"{describe_lifetime(max_duration, ca_not_after)}"
    )


def _signing_wait(record: Mapping[str, Any], max_duration: timedelta | None, held: bool) -> str:
    if held:
        return "held by spec.key.rotation.hold: the old CA stays in the trust bundle"
    lifetime = f"maxDuration {format_duration(max_duration)}" if max_duration else "no maxDuration"
    return (
        f"the last certificate signed by generation {record.get('generation')}'s key to expire: it signed "
        f"until {record.get('retiredAt')}, {lifetime}, capped at its CA's expiry"
    )


def _distributing(
    rotation: Rotation,
    max_duration: timedelta | None,
    signing_not_after: datetime,
    next_record: dict[str, Any],
    entries: Sequence[Mapping[str, Any]],
    upcoming: KeyHandle,
    plan: RotationPlan,
    bundle: PublishedBundle,
    now: datetime,
    log: Log,
) -> PhaseReport:
    """The Distributing phase of a published next key: when it may sign, re-derived (never earlier than
    its CA certificate was made plus the distribution time), and what it waits for."""
    generation = int(next_record.get("generation", 0))
    next_entry = newest_for_key(entries, upcoming.public_key_sha256, now)
    sign_from = parse_time(str(next_record["signFrom"]))
    if next_entry is None:
        return PhaseReport(
            generation, Phase.DISTRIBUTING, "the new CA certificate to be made and published", None
        )
    made = _described(next_entry).not_before + BACKDATE
    distribution = distribution_time(rotation.overlap, max_duration, signing_not_after, made)
    floor = ceil_second(made + distribution)
    if sign_from < floor:
        log.warning(
            f"rotation: status.nextKey.signFrom said {next_record['signFrom']}; derived {rfc3339(floor)} "
            "from the new CA certificate and the distribution time, which is what counts"
        )
        sign_from = floor
        next_record["signFrom"] = rfc3339(floor)
    if rotation.hold == Phase.DISTRIBUTING.value:
        return PhaseReport(
            generation,
            Phase.DISTRIBUTING,
            "held by spec.key.rotation.hold",
            None,
            held=True,
            distribution=distribution,
        )
    if now >= sign_from and not bundle.holds(str(next_entry["pem"])):
        return PhaseReport(
            generation,
            Phase.DISTRIBUTING,
            "the new CA to be published in the trust bundle ConfigMap (see condition TrustBundlePublished)",
            None,
            distribution=distribution,
        )
    return PhaseReport(
        generation,
        Phase.DISTRIBUTING,
        _distribution_wait(distribution, rotation, max_duration, signing_not_after),
        sign_from,
        distribution=distribution,
    )


def _report_phase(
    patch: StatusPatch, status: IssuerStatus, report: PhaseReport | None, now: datetime, log: Log
) -> str | None:
    """Write ``status.rotation``; the message for an Event when a phase was entered (else None)."""
    before = status.rotation_phase or {}
    if report is None:
        if before and before.get("phase") != Phase.DONE.value:
            patch.rotation_phase(None)
        return None
    same = before.get("phase") == report.phase.value and before.get("generation") == report.generation
    since = str(before.get("since")) if same and before.get("since") else rfc3339(now)
    patch.rotation_phase(report.to_status(since))
    if same:
        return None
    entered = (
        f"rotation to generation {report.generation}: phase {report.phase.value}; waits for "
        f"{report.waiting_for}"
        + (f"; may advance at {rfc3339(report.advances_at)}" if report.advances_at else "")
    )
    log.info(entered)
    return entered
