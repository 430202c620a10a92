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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from issuer import api
from issuer.clock import parse_rfc3339, rfc3339
from issuer.controller import conditions as st
from issuer.controller.issuers.key_budget import KeyBudget
from issuer.controller.issuers.key_scope import KeyScope, rotation_key_label
from issuer.controller.issuers.spec import IssuerSpec
from issuer.controller.issuers.status import IssuerStatus, StatusPatch, next_key_record, retired_record
from issuer.controller.runtime import Runtime
from issuer.errors import IssuerError, PermanentError
from issuer.key_quota import REASON_KEY_QUOTA_EXCEEDED
from issuer.signer.api import CAInfo, KeyHandle, canonical_subject, describe_ca
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
) -> Outcome:
    """Renew the CA of the signing key when due, and take one step of a key rotation; write the outcome
    (``keyHandle``, ``keyGeneration``, ``nextKey``, ``retiredKeys``, ``caCertificates``, ``ca``) into
    ``patch``. Every key handle taken from ``status`` is checked against ``scope`` again here: this
    function never signs with, switches to or destroys a key that is not the issuer's own."""
    now = runtime.clock()
    entries = status.ca_certificates
    published_next = status.next_key
    retired: list[dict[str, Any]] = [dict(r) for r in status.retired_keys]
    plan = plan_rotation(spec.rotation.generation, generation, published_next, now)

    next_record: dict[str, Any] | None = dict(published_next) if published_next else None
    refused = (REASON_ROTATION_PENDING, plan.refused) if plan.refused else None
    if plan.switch:
        assert next_record is not None
        upcoming, _ = scope.signing_key(next_record["keyHandle"], "nextKey.keyHandle")
        await runtime.pool.verify_key(token, upcoming)
        retired.append(retired_record(handle, generation, now))
        log.info(
            f"rotation: signing with generation {next_record['generation']} key {upcoming.key_label!r} "
            f"from now; retired key {handle.key_label!r} stays in the token"
        )
        handle, generation, next_record = upcoming, int(next_record["generation"]), None
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
            next_record = next_key_record(
                fresh, plan.prepare, now, now + max(spec.rotation.overlap, timedelta(0))
            )
            log.info(
                f"rotation: published generation {plan.prepare} key {fresh.key_label!r}; "
                f"it signs from {next_record['signFrom']}"
            )
    elif next_record is not None:
        upcoming, _ = scope.signing_key(next_record["keyHandle"], "nextKey.keyHandle")
        await runtime.pool.verify_key(token, upcoming)

    # Destroy retired keys only when asked, and only those whose retirement was already published.
    published_retired = {str((r.get("keyHandle") or {}).get("publicKeySHA256")) for r in status.retired_keys}
    if spec.rotation.destroy_retired:
        for record in retired:
            fingerprint = str(record["keyHandle"].get("publicKeySHA256"))
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

    current = newest_for_key(entries, handle.public_key_sha256, now)
    fresh_signing = current is None or needs_new_ca(current, handle, spec, now)
    signing_entry = await _new_ca(runtime, token, handle, spec) if fresh_signing else dict(current or {})
    result = [with_use(signing_entry, USE_SIGNING)]
    if next_record is not None:
        upcoming, _ = scope.signing_key(next_record["keyHandle"], "nextKey.keyHandle")
        next_entry = newest_for_key(entries, upcoming.public_key_sha256, now)
        if next_entry is None or needs_new_ca(next_entry, upcoming, spec, now):
            next_entry = await _new_ca(runtime, token, upcoming, spec)
        result.append(with_use(next_entry, USE_NEXT))
    # Still trusted: the signing key's previous certificate (after a renewal) and the newest certificate
    # of every retired key still in the token, while valid.
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
    for record in retired:
        if record.get("destroyedAt"):
            continue
        kept = newest_for_key(entries, str(record["keyHandle"].get("publicKeySHA256")), now)
        if kept is not None:
            result.append(with_use(kept, USE_PREVIOUS))

    trust = "".join(str(e["pem"]) for e in result)
    patch.signing_key(handle, generation)
    patch.rotation(next_record, retired)
    patch.trust(result, trust)
    message = ""
    if next_record is not None:
        message = (
            f"; rotation to generation {next_record['generation']} published, "
            f"signing with the new key from {next_record['signFrom']}"
        )
    return Outcome(handle, str(signing_entry["pem"]).encode(), trust.encode(), message, refused)
