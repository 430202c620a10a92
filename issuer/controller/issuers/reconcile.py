"""Our own TrustedIssuer and TrustedClusterIssuer: find or make the key and the CA, report Ready.

Ordinary kopf handlers (these objects are ours): on create, resume and spec change the issuer is
reconciled; a timer re-checks it every ``TRUSTED_ISSUER_ISSUER_RECHECK_INTERVAL``, so a token that
went away or a CA nearing expiry is noticed; a broken issuer is retried with backoff until it
recovers, and one waiting for an administrator (a wrapped key, a CA certificate: ``provisioned_ca``)
is looked at again every ``TRUSTED_ISSUER_PROVISIONING_RECHECK_INTERVAL`` by a quiet timer. During a
key rotation (``rotation``) a short timer switches to the new key as soon as its overlap has passed.
Ready issuers are published to the ``IssuerRegistry``, from which the request handlers read them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import kopf

from issuer import api, metrics
from issuer.backoff import backoff
from issuer.controller import conditions as st
from issuer.controller.issuers import provisioned_ca, rotation, trust_bundle
from issuer.controller.issuers.key_budget import KeyBudget
from issuer.controller.issuers.key_scope import KeyScope
from issuer.controller.issuers.rotation import Log as Logger
from issuer.controller.issuers.rotation import Outcome
from issuer.controller.issuers.spec import CASource, IssuerSpec, KeySource
from issuer.controller.issuers.status import IssuerStatus, StatusPatch
from issuer.controller.registry import IssuerRef, IssuerState, issuer_ref, metric_label
from issuer.controller.runtime import Runtime
from issuer.errors import PIN_REJECTED, IssuerError, PendingError, PermanentError, Reason, TrustedIssuerError
from issuer.settings import Settings
from issuer.signer.api import IssuerKey, KeyHandle, tightening_message
from issuer.tokens import TokenConfig

#: The recheck timer's tick; an issuer is reconciled again once ``issuer_recheck_interval`` has passed
#: since it was last looked at (by any handler), so the interval is a setting, not a decoration.
RECHECK_TICK = 5.0
#: How often an issuer in a rotation overlap looks whether its new key is due to sign; the check is a
#: comparison of two times until then, so a short tick costs nothing and the switch is punctual.
ROTATION_TICK = 2.0
#: The provisioning timer's tick; it looks at the Secret every ``provisioning_recheck_interval``.
PROVISIONING_TICK = 1.0
#: Backoff of a broken issuer: quick at first (a token hiccup heals in seconds), then up to five minutes.
FIRST_BACKOFF, MAX_BACKOFF = 1.0, 300.0


# -- pure pieces -------------------------------------------------------------------------------------------


async def _signing_key(
    runtime: Runtime,
    token: TokenConfig,
    spec: IssuerSpec,
    scope: KeyScope,
    budget: KeyBudget,
    status: IssuerStatus,
) -> tuple[KeyHandle, int]:
    """The key that signs now and its rotation generation: recorded in status (if the record names a key
    of this issuer's scope: ``KeyScope``), adopted, or generated."""
    recorded = status.key_handle
    if recorded:
        handle, generation = scope.signing_key(recorded, "keyHandle")
        if handle.algorithm is not spec.algorithm:
            raise IssuerError(
                f"spec.key.algorithm is {spec.algorithm.value} but the issuer's key is "
                f"{handle.algorithm.value}; a key is never replaced silently: "
                "create a new issuer to change it",
                "KeyAlgorithmChanged",
            )
        await runtime.pool.verify_key(token, handle)
        return handle, generation
    if spec.adopt_label:
        label = scope.check_adoptable()
        handle = await runtime.pool.find_key(token, label)
        if handle.algorithm is not spec.algorithm:
            raise IssuerError(
                f"key {label!r} is {handle.algorithm.value}, not {spec.algorithm.value}", Reason.KEY_MISMATCH
            )
        await runtime.pool.verify_key(token, handle)
        return handle, 0
    return await rotation.find_or_generate(runtime, token, spec, scope.base_label, budget), 0


@dataclass(frozen=True)
class Ready:
    """A reconciled issuer: what it signs with, what requesters must trust, a note for its condition."""

    signing: IssuerKey
    trust_pem: bytes
    note: str = ""
    #: The issuing CA certificate's not-after, as the signer's check found it.
    ca_not_after: datetime | None = None
    #: A rotation asked for and refused (reason, message); the issuer keeps signing.
    rotation_refused: tuple[str, str] | None = None
    #: A rotation phase entered (the message of a Normal Event, reason RotationPhase).
    phase_event: str | None = None
    #: Where the trust bundle goes, and the ConfigMap as it was before this reconciliation.
    bundle_place: trust_bundle.BundlePlace | None = None
    bundle_before: trust_bundle.Held | None = None


async def reconcile(
    runtime: Runtime, kind: str, body: Mapping[str, Any], patch: kopf.Patch, log: Logger
) -> Ready:
    """Find or make the key and CA of one issuer; writes status into ``patch`` (through ``StatusPatch``);
    raises on failure (``PendingError`` while it waits for an administrator)."""
    meta = body["metadata"]
    namespace = meta.get("namespace") if kind == api.ISSUER_KIND else None
    spec = IssuerSpec.parse(body.get("spec") or {})
    status = IssuerStatus.of(body)
    writer = StatusPatch(patch.status)
    profile = runtime.profiles.get(spec.profile)
    profile.check_allowed(namespace)
    token = profile.token
    # Before any key is looked at: every handle status records must be one of this issuer's own.
    scope = KeyScope.of(kind, meta, spec)
    scope.check_status(status.raw)
    budget = KeyBudget(
        runtime, token, profile.name, scope.prefix, profile.key_quota.limit(namespace), scope.issuer
    )
    settings = runtime.settings
    place = trust_bundle.BundlePlace.of(
        kind, meta, settings.trust_bundle_namespace or settings.cluster_resource_namespace
    )
    before = await trust_bundle.held(runtime.client, place)
    try:
        ready = await _reconciled(
            runtime, kind, meta, spec, scope, budget, token, status, writer, log, before
        )
        return dataclasses.replace(ready, bundle_place=place, bundle_before=before)
    finally:
        # Usage is reported whenever a quota applies, counted in the token (never taken from status).
        if budget.limit is not None:
            with contextlib.suppress(TrustedIssuerError):  # a token that fails has said so already
                writer.key_quota((budget.counted or await budget.count()).to_status())


async def _reconciled(
    runtime: Runtime,
    kind: str,
    meta: Mapping[str, Any],
    spec: IssuerSpec,
    scope: KeyScope,
    budget: KeyBudget,
    token: TokenConfig,
    status: IssuerStatus,
    writer: StatusPatch,
    log: Logger,
    bundle: trust_bundle.Held,
) -> Ready:
    namespace = meta.get("namespace") if kind == api.ISSUER_KIND else None

    if spec.key_source is KeySource.IMPORT or spec.ca_source is CASource.INTERMEDIATE:
        place = provisioned_ca.Place(
            kind,
            meta["name"],
            namespace,
            scope.base_label,
            provisioned_ca.secret_namespace(kind, namespace, runtime.settings.cluster_resource_namespace),
        )
        if spec.key_source is KeySource.IMPORT:
            outcome = await provisioned_ca.imported(
                runtime, token, spec, place, scope, budget, status, writer, log
            )
        else:
            handle, _ = await _signing_key(runtime, token, spec, scope, budget, status)
            outcome = await provisioned_ca.intermediate(runtime, token, spec, place, handle, status, writer)
        return await _checked(runtime, token, spec, outcome)

    handle, generation = await _signing_key(runtime, token, spec, scope, budget, status)
    outcome = await rotation.self_signed(
        runtime, token, spec, scope, budget, handle, generation, status, writer, log, bundle
    )
    return await _checked(runtime, token, spec, outcome)


async def _checked(runtime: Runtime, token: TokenConfig, spec: IssuerSpec, outcome: Outcome) -> Ready:
    signing = IssuerKey(token, outcome.handle, outcome.ca_pem, spec.policy, spec.rsa_pss)
    ca_not_after = await runtime.pool.check(signing)
    return Ready(
        signing,
        outcome.trust_pem,
        outcome.note,
        ca_not_after,
        outcome.rotation_refused,
        phase_event=outcome.phase_event,
    )


async def _reconcile_and_report(
    kind: str, body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int, logger: kopf.Logger
) -> None:
    runtime: Runtime = memo["runtime"]
    meta = body["metadata"]
    ref = issuer_ref(kind, meta.get("namespace"), meta["name"])
    async with runtime.issuers.lock(ref):
        runtime.issuers.looked[ref] = time.monotonic()
        await _report(runtime, kind, ref, body, patch, retry, logger)


async def _look_again(
    kind: str, body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger, interval: float
) -> None:
    """A timer's quiet reconciliation, skipped when any handler looked at the issuer within ``interval``
    seconds. Its failure is not raised: the status already says why, and the next tick looks again."""
    runtime: Runtime = memo["runtime"]
    meta = body["metadata"]
    last = runtime.issuers.looked.get(issuer_ref(kind, meta.get("namespace"), meta["name"]))
    if last is not None and time.monotonic() - last < interval:
        return
    with contextlib.suppress(kopf.TemporaryError, kopf.PermanentError):
        await _reconcile_and_report(kind, body, patch, memo, 0, logger)


async def _report(
    runtime: Runtime,
    kind: str,
    ref: IssuerRef,
    body: kopf.Body,
    patch: kopf.Patch,
    retry: int,
    logger: kopf.Logger,
) -> None:
    meta = body["metadata"]
    generation = int(meta.get("generation") or 0)
    state = runtime.issuers.states.setdefault(ref, IssuerState(generation))
    state.generation = generation
    if runtime.issuers.announced.get(ref) != generation:
        runtime.issuers.announced[ref] = generation
        announce_policy(body)
    conditions = IssuerStatus.of(body).conditions
    writer = StatusPatch(patch.status)
    now = runtime.clock()
    try:
        ready = await reconcile(runtime, kind, body, patch, logger)
    except TrustedIssuerError as err:
        state.ready, state.signing, state.message = False, None, err.message
        before = st.condition_of(conditions, api.CONDITION_READY) or {}
        # A Warning (and so an Event) when the issuer's state changes, not at every periodic look.
        changed = (before.get("reason"), before.get("message")) != (err.reason, err.message)
        report = logger.warning if changed else logger.info
        writer.ready(conditions, False, err.reason, err.message, now, generation)
        metrics.ISSUER_READY.labels(metric_label(ref)).set(0)
        if err.reason in PIN_REJECTED:
            profile = str((body.get("spec") or {}).get("tokenProfile", ""))
            metrics.TOKEN_LOGIN_FAILURES.labels(profile).inc()
        if isinstance(err, PermanentError):
            report(f"issuer not ready: reason={err.reason} message={err.message!r}")
            # Only a spec change can fix it; kopf calls us again on the next change.
            raise kopf.PermanentError(err.message) from None
        if isinstance(err, PendingError):
            # Waiting for an administrator (a wrapped key, a signed CA certificate) is no failure: the
            # status says what to do, and the "provisioning" timer looks again at a steady pace, quietly
            # (a kopf retry would post an error Event at every look).
            logger.info(f"issuer waiting: reason={err.reason} message={err.message!r}")
            return
        report(f"issuer not ready: reason={err.reason} message={err.message!r}")
        raise kopf.TemporaryError(
            err.message, delay=backoff(retry, first=FIRST_BACKOFF, cap=MAX_BACKOFF)
        ) from None
    signing = ready.signing
    key = signing.key
    message = (
        f"signing with {key.algorithm.value} key {key.key_label!r} in token {key.token_label!r}{ready.note}"
    )
    writer.ready(conditions, True, api.REASON_KEY_READY, message, now, generation)
    if ready.rotation_refused is not None:
        reason, why = ready.rotation_refused
        if (st.condition_of(conditions, api.CONDITION_ROTATION_REFUSED) or {}).get("message") != why:
            logger.warning(f"rotation refused: reason={reason} message={why!r}")
        writer.condition(api.CONDITION_ROTATION_REFUSED, True, reason, why, now, generation)
    elif st.condition_of(conditions, api.CONDITION_ROTATION_REFUSED) is not None:
        writer.condition(
            api.CONDITION_ROTATION_REFUSED, False, "RotationAccepted", "no rotation waits", now, generation
        )
    await _publish_bundle(runtime, ready, conditions, writer, now, generation, logger)
    if ready.phase_event is not None:
        # The operator posts only Warnings (lifecycle: posting level, which kopf.info obeys too); a phase
        # change is news for whoever watches the rotation, so it is a Normal Event of its own.
        kopf.event(body, type="Normal", reason=api.REASON_ROTATION_PHASE, message=ready.phase_event)
    state.ready, state.signing, state.message = True, signing, message
    state.trust_pem = ready.trust_pem
    metrics.ISSUER_READY.labels(metric_label(ref)).set(1)
    if ready.ca_not_after is not None:
        metrics.CA_NOT_AFTER.labels(metric_label(ref)).set(ready.ca_not_after.timestamp())
    runtime.requests.wake(runtime.issuers.woken(ref))


async def _publish_bundle(
    runtime: Runtime,
    ready: Ready,
    conditions: Any,
    writer: StatusPatch,
    now: datetime,
    generation: int,
    logger: kopf.Logger,
) -> None:
    """Publish the trust bundle (``trust_bundle``) and report it in condition ``TrustBundlePublished``;
    a refusal (a ConfigMap that is not ours) is a Warning Event once, never a failure of the issuer."""
    place, before = ready.bundle_place, ready.bundle_before
    if place is None or before is None:
        return
    done = await trust_bundle.publish(runtime.client, place, before, ready.trust_pem.decode())
    previous = st.condition_of(conditions, trust_bundle.CONDITION) or {}
    if (previous.get("reason"), previous.get("message")) != (done.reason, done.message):
        report = logger.info if done.published else logger.warning
        report(f"trust bundle: reason={done.reason} message={done.message!r}")
    writer.condition(trust_bundle.CONDITION, done.published, done.reason, done.message, now, generation)
    writer.trust_bundle(
        {
            "configMap": f"{place.namespace}/{place.config_map}",
            "key": trust_bundle.BUNDLE_KEY,
            "signerName": place.signer_name,
            "clusterTrustBundle": place.cluster_trust_bundle,
        }
    )


def announce_policy(body: kopf.Body) -> None:
    """A Warning Event telling the issuer's owner what its policy now refuses that the rules before the
    stricter defaults admitted (docs/policy.md): once per generation and replica, so a request that
    starts failing after an upgrade is explained on the issuer. A spec that does not parse says so in
    the Ready condition instead."""
    try:
        policy = IssuerSpec.parse(body.get("spec") or {}).policy
    except TrustedIssuerError:
        return
    kopf.warn(body, reason=api.REASON_POLICY_TIGHTENED, message=tightening_message(policy))


def _rotating(status: IssuerStatus) -> bool:
    """A rotation in a phase that advances by time (Distributing, Signing) or by publication (Retiring)."""
    phase = (status.rotation_phase or {}).get("phase")
    return status.next_key is not None or phase in ("Distributing", "Signing", "Retiring")


def _phase_due(status: IssuerStatus, now: datetime) -> bool:
    """Is the rotation's next step due: its recorded time passed (a cache: reconciling re-derives it, so a
    wrong one only costs a reconciliation), or a Retiring phase waiting on its publication?"""
    report = status.rotation_phase or {}
    if report.get("phase") == "Retiring" and not report.get("held"):
        return True
    for when in ((status.next_key or {}).get("signFrom"), report.get("advancesAt")):
        with contextlib.suppress(ValueError):
            if when and now >= rotation.parse_time(str(when)):
                return True
    return False


def _provisioning(status: Mapping[str, Any], **_: Any) -> bool:
    """Waiting on an administrator's Secret (``IssuerStatus.awaiting_administrator``)."""
    return IssuerStatus(status).awaiting_administrator


def _register(kind: str, plural: str) -> None:
    group, version = api.GROUP, api.VERSION

    @kopf.on.resume(group, version, plural, id="reconcile")
    @kopf.on.create(group, version, plural, id="reconcile")
    @kopf.on.update(group, version, plural, id="reconcile", field="spec")
    async def reconcile_handler(
        body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int, logger: kopf.Logger, **_: Any
    ) -> None:
        await _reconcile_and_report(kind, body, patch, memo, retry, logger)

    @kopf.timer(group, version, plural, id="recheck", interval=RECHECK_TICK, initial_delay=RECHECK_TICK)
    async def recheck_handler(
        body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger, **_: Any
    ) -> None:
        # The token may have gone away, the PIN changed, or the CA may be due for renewal.
        runtime: Runtime = memo["runtime"]
        await _look_again(kind, body, patch, memo, logger, runtime.settings.issuer_recheck_interval)

    @kopf.timer(group, version, plural, id="provisioning", interval=PROVISIONING_TICK, when=_provisioning)
    async def provisioning_handler(
        body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger, **_: Any
    ) -> None:
        # An administrator's answer (or a corrected Secret) is picked up within the configured interval,
        # not after a backoff that grew while they were working.
        runtime: Runtime = memo["runtime"]
        await _look_again(kind, body, patch, memo, logger, runtime.settings.provisioning_recheck_interval)

    @kopf.timer(
        group,
        version,
        plural,
        id="rotate",
        interval=ROTATION_TICK,
        when=lambda status, **_: _rotating(IssuerStatus(status)),
    )
    async def rotate_handler(
        body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger, **_: Any
    ) -> None:
        # During a rotation: advance a phase as soon as it is due, not a minute later.
        runtime: Runtime = memo["runtime"]
        if not _phase_due(IssuerStatus.of(body), runtime.clock()):
            return
        with contextlib.suppress(kopf.TemporaryError, kopf.PermanentError):
            await _reconcile_and_report(kind, body, patch, memo, 0, logger)

    @kopf.on.event(group, version, plural, id="track")
    async def track_handler(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        runtime: Runtime = memo["runtime"]
        meta = event["object"].get("metadata", {})
        ref = issuer_ref(kind, meta.get("namespace"), meta.get("name", ""))
        if event["type"] == "DELETED":
            runtime.issuers.states.pop(ref, None)
            runtime.issuers.locks.pop(ref, None)
            runtime.issuers.looked.pop(ref, None)
            runtime.issuers.announced.pop(ref, None)
            for gauge in (metrics.ISSUER_READY, metrics.CA_NOT_AFTER):
                with contextlib.suppress(KeyError):
                    gauge.remove(metric_label(ref))
            return
        state = runtime.issuers.states.get(ref)
        generation = int(str(meta.get("generation") or 0))
        if state is not None and state.generation != generation:
            state.ready, state.signing = False, None  # a spec change: wait for reconciliation
            state.generation = generation
            state.message = f"reconciling generation {generation}"

    @kopf.on.delete(
        group,
        version,
        plural,
        id="destroy-key",
        when=lambda spec, **_: spec.get("deletionPolicy") == "Destroy",
    )
    async def destroy_key_handler(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
        runtime: Runtime = memo["runtime"]
        await destroy_keys(runtime, kind, body, logger)


async def destroy_keys(runtime: Runtime, kind: str, body: Mapping[str, Any], log: Logger) -> None:
    """``deletionPolicy: Destroy``: destroy the keys of a deleted issuer, under the same checks as its
    reconciliation (the profile must serve its scope; every handle must be its own, whatever status
    says). What fails a check is reported and left in the token; the deletion itself goes on."""
    meta = body["metadata"]
    namespace = meta.get("namespace") if kind == api.ISSUER_KIND else None
    status = IssuerStatus.of(body)
    try:
        spec = IssuerSpec.parse(body.get("spec") or {})
        profile = runtime.profiles.get(spec.profile)
        profile.check_allowed(namespace)
    except TrustedIssuerError as err:
        log.warning(f"deletionPolicy=Destroy: no key destroyed: reason={err.reason} message={err.message!r}")
        return
    scope = KeyScope.of(kind, meta, spec)
    for found in scope.destroyable_keys(status.raw):
        if isinstance(found, TrustedIssuerError):
            log.warning(f"deletionPolicy=Destroy: key left in the token: {found.reason}: {found.message}")
            continue
        if not await runtime.pool.destroy_key_if_present(profile.token, found):
            continue
        log.info(f"destroyed key label={found.key_label!r} id={found.key_id} (deletionPolicy=Destroy)")
    if status.wrapping_key:
        # An import that never happened: its wrapping key is the issuer's too.
        try:
            wrapping = scope.wrapping_key(status.wrapping_key, "wrappingKey")
        except IssuerError as err:
            log.warning(f"deletionPolicy=Destroy: key left in the token: {err.reason}: {err.message}")
            return
        with contextlib.suppress(IssuerError):
            await runtime.pool.destroy_wrapping_key(profile.token, wrapping.handle)


#: The kinds whose handlers are registered in this process (kopf's default registry is process-wide).
_REGISTERED: set[str] = set()


def register_handlers(settings: Settings) -> None:
    """Register the kopf handlers of the issuer kinds ``settings`` serves (``TRUSTED_ISSUER_ISSUER_KINDS``);
    called once at start-up, before kopf watches anything, and idempotent.

    Kinds this operator does not serve get no handlers at all, so kopf does not even watch them: a
    namespace shard never writes onto a cluster issuer that another release serves."""
    for kind, plural in (
        (api.ISSUER_KIND, api.ISSUER_PLURAL),
        (api.CLUSTER_ISSUER_KIND, api.CLUSTER_ISSUER_PLURAL),
    ):
        if kind in settings.issuer_kinds and kind not in _REGISTERED:
            _REGISTERED.add(kind)
            _register(kind, plural)
