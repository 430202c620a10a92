"""Our own TrustedIssuer and TrustedClusterIssuer: find or make the key and the CA, report Ready.

Ordinary kopf handlers (these objects are ours): on create, resume and spec change the issuer is
reconciled; a timer re-checks it, so a token that went away or a CA nearing expiry is noticed; a
broken issuer is retried with backoff until it recovers. Ready issuers are published to the
``IssuerRegistry``, from which the request handlers read them.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import kopf
from cryptography import x509

from issuer import api, metrics
from issuer.controller import status as st
from issuer.controller.runtime import Runtime
from issuer.errors import ConfigurationError, IssuerError, PermanentError, TrustedIssuerError
from issuer.signer.keys import Algorithm, KeyHandle, public_key_fingerprint
from issuer.signer.policy import Policy, parse_duration
from issuer.signer.pool import IssuerKey

IssuerRef = tuple[str, str | None, str]  # (kind, namespace or None, name)
RECHECK_INTERVAL = 60.0
MAX_BACKOFF = 300.0


def issuer_ref(kind: str, namespace: str | None, name: str) -> IssuerRef:
    return (kind, namespace if kind == api.ISSUER_KIND else None, name)


def metric_label(ref: IssuerRef) -> str:
    kind, namespace, name = ref
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"


def describe(ref: IssuerRef) -> str:
    kind, namespace, name = ref
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


@dataclass
class IssuerState:
    """What the request handlers need of an issuer: whether it is Ready at its current generation."""

    generation: int
    ready: bool = False
    message: str = "not reconciled yet"
    signing: IssuerKey | None = None


@dataclass
class IssuerRegistry:
    """The issuers this replica knows, and the requests waiting for each to become Ready."""

    states: dict[IssuerRef, IssuerState] = field(default_factory=dict)
    waiting: dict[IssuerRef, set[Any]] = field(default_factory=dict)

    def get(self, ref: IssuerRef) -> IssuerState | None:
        return self.states.get(ref)

    def wait_for(self, ref: IssuerRef, request_key: Any) -> None:
        self.waiting.setdefault(ref, set()).add(request_key)

    def woken(self, ref: IssuerRef) -> set[Any]:
        return self.waiting.pop(ref, set())


# -- pure pieces -------------------------------------------------------------------------------------------


def key_scope(kind: str, namespace: str | None) -> str:
    """The label prefix of every key owned by issuers of one scope; adoption stays inside it."""
    return f"ti:ns/{namespace}/" if kind == api.ISSUER_KIND else "ti:cluster/"


def owned_key_label(kind: str, namespace: str | None, name: str, uid: str) -> str:
    """A label no other issuer can produce: scope, name (shortened with a hash if long) and uid."""
    if len(name) > 48:
        name = name[:37] + "~" + hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{key_scope(kind, namespace)}{name}/{uid.replace('-', '')[:8]}"


@dataclass(frozen=True)
class IssuerSpec:
    profile: str
    algorithm: Algorithm
    adopt_label: str | None
    rsa_pss: bool
    subject: str
    ca_duration: timedelta
    renew_before: timedelta
    path_length: int | None
    policy: Policy
    destroy_on_delete: bool

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> IssuerSpec:
        """Read a spec; anything wrong is a PermanentError naming the field."""
        key = spec.get("key") or {}
        ca = (spec.get("ca") or {}).get("selfSigned")
        if not spec.get("tokenProfile"):
            raise PermanentError("spec.tokenProfile is required", "InvalidSpec")
        if not ca or not ca.get("subject"):
            raise PermanentError("spec.ca.selfSigned.subject is required", "InvalidSpec")
        if key.get("generate") is not None and key.get("adopt") is not None:
            raise PermanentError("spec.key: choose one source, generate or adopt", "InvalidSpec")
        adopt = key.get("adopt")
        try:
            return cls(
                profile=str(spec["tokenProfile"]),
                algorithm=Algorithm.parse(str(key.get("algorithm", Algorithm.ECDSA_P256.value))),
                adopt_label=str(adopt["keyLabel"]) if adopt else None,
                rsa_pss=key.get("rsaSignatureScheme") == "PSS",
                subject=str(ca["subject"]),
                ca_duration=parse_duration(str(ca.get("duration", "87600h"))),
                renew_before=parse_duration(str(ca.get("renewBefore", "720h"))),
                path_length=ca.get("pathLength"),
                policy=Policy.from_spec(spec.get("policy")),
                destroy_on_delete=spec.get("deletionPolicy") == "Destroy",
            )
        except (ConfigurationError, PermanentError) as err:
            raise PermanentError(f"spec: {err.message}", "InvalidSpec") from None


def needs_new_ca(current: Mapping[str, Any] | None, key: KeyHandle, spec: IssuerSpec, now: datetime) -> bool:
    """A CA certificate is made anew when there is none, it is not the key's, its subject or path length
    changed, or it is within renewBefore of expiry."""
    if not current or not current.get("pem"):
        return True
    cert = x509.load_pem_x509_certificate(str(current["pem"]).encode())
    if public_key_fingerprint(cert.public_key()) != key.public_key_sha256:  # type: ignore[arg-type]
        return True
    if cert.subject.rfc4514_string() != x509.Name.from_rfc4514_string(spec.subject).rfc4514_string():
        return True
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    if constraints.path_length != spec.path_length:
        return True
    return now >= cert.not_valid_after_utc - spec.renew_before


# -- reconciliation ----------------------------------------------------------------------------------------


async def reconcile(runtime: Runtime, kind: str, body: Mapping[str, Any], patch: kopf.Patch) -> IssuerKey:
    """Find or make the key and CA of one issuer; writes status into ``patch``; raises on failure."""
    meta = body["metadata"]
    namespace = meta.get("namespace") if kind == api.ISSUER_KIND else None
    spec = IssuerSpec.parse(body.get("spec") or {})
    status = body.get("status") or {}
    profile = runtime.profiles.get(spec.profile)
    profile.check_allowed(namespace)
    token = profile.token

    recorded = status.get("keyHandle")
    if recorded:
        handle = KeyHandle.from_status(recorded)
        if handle.algorithm is not spec.algorithm:
            raise IssuerError(
                f"spec.key.algorithm is {spec.algorithm.value} but the issuer's key is "
                f"{handle.algorithm.value}; a key is never replaced silently: "
                "create a new issuer to change it",
                "KeyAlgorithmChanged",
            )
        await runtime.pool.averify_key(token, handle)
    elif spec.adopt_label:
        scope = key_scope(kind, namespace)
        if not spec.adopt_label.startswith(scope):
            raise IssuerError(
                f"key {spec.adopt_label!r} is outside this issuer's scope: only keys labelled {scope}… "
                "can be adopted",
                "KeyOutOfScope",
            )
        handle = await runtime.pool.afind_key(token, spec.adopt_label)
        if handle.algorithm is not spec.algorithm:
            raise IssuerError(
                f"key {spec.adopt_label!r} is {handle.algorithm.value}, not {spec.algorithm.value}",
                "KeyMismatch",
            )
        await runtime.pool.averify_key(token, handle)
    else:
        label = owned_key_label(kind, namespace, meta["name"], meta.get("uid", ""))
        try:
            # A crash after generating but before recording leaves our own key behind: take it back.
            handle = await runtime.pool.afind_key(token, label)
        except IssuerError as err:
            if err.reason != "KeyNotFound":
                raise
            handle = await runtime.pool.agenerate_key(token, spec.algorithm, label)
    patch.status["keyHandle"] = handle.to_status()

    now = runtime.clock()
    certificates: list[dict[str, Any]] = list(status.get("caCertificates") or [])
    current = certificates[0] if certificates else None
    if needs_new_ca(current, handle, spec, now):
        pem = await runtime.pool.acreate_self_signed_ca(
            token, handle, spec.subject, spec.ca_duration, path_length=spec.path_length, rsa_pss=spec.rsa_pss
        )
        previous = [c for c in certificates[:1] if _still_valid(c, now) and _same_key(c, handle)]
        certificates = [st.ca_entry(pem), *previous]
    patch.status["caCertificates"] = certificates
    # Requesters trust every CA certificate still valid for this key (old and new during a renewal).
    patch.status["ca"] = "".join(c["pem"] for c in certificates)
    signing = IssuerKey(token, handle, certificates[0]["pem"].encode(), spec.policy, spec.rsa_pss)
    await runtime.pool.acheck(signing)
    return signing


def _still_valid(entry: Mapping[str, Any], now: datetime) -> bool:
    cert = x509.load_pem_x509_certificate(str(entry["pem"]).encode())
    return now < cert.not_valid_after_utc


def _same_key(entry: Mapping[str, Any], handle: KeyHandle) -> bool:
    cert = x509.load_pem_x509_certificate(str(entry["pem"]).encode())
    return public_key_fingerprint(cert.public_key()) == handle.public_key_sha256  # type: ignore[arg-type]


def _backoff(retry: int) -> float:
    # Quick at first (a token hiccup heals in seconds), then slower, up to five minutes.
    return float(min(MAX_BACKOFF, 2.0 ** min(retry, 10)))


async def _reconcile_and_report(
    kind: str, body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int, logger: kopf.Logger
) -> None:
    runtime: Runtime = memo["runtime"]
    meta = body["metadata"]
    ref = issuer_ref(kind, meta.get("namespace"), meta["name"])
    generation = int(meta.get("generation") or 0)
    state = runtime.issuers.states.setdefault(ref, IssuerState(generation))
    state.generation = generation
    conditions = (body.get("status") or {}).get("conditions")
    now = runtime.clock()
    try:
        signing = await reconcile(runtime, kind, body, patch)
    except TrustedIssuerError as err:
        state.ready, state.signing, state.message = False, None, err.message
        patch.status["conditions"] = st.set_condition(
            conditions, api.CONDITION_READY, False, err.reason, err.message, now, generation
        )
        patch.status["observedGeneration"] = generation
        metrics.ISSUER_READY.labels(metric_label(ref)).set(0)
        if err.reason in ("PINIncorrect", "PINLocked", "PINExpired"):
            profile = str((body.get("spec") or {}).get("tokenProfile", ""))
            metrics.TOKEN_LOGIN_FAILURES.labels(profile).inc()
        logger.warning(f"issuer not ready: reason={err.reason} message={err.message!r}")
        if isinstance(err, PermanentError):
            # Only a spec change can fix it; kopf calls us again on the next change.
            raise kopf.PermanentError(err.message) from None
        raise kopf.TemporaryError(err.message, delay=_backoff(retry)) from None
    key = signing.key
    message = f"signing with {key.algorithm.value} key {key.key_label!r} in token {key.token_label!r}"
    patch.status["conditions"] = st.set_condition(
        conditions, api.CONDITION_READY, True, "KeyReady", message, now, generation
    )
    patch.status["observedGeneration"] = generation
    state.ready, state.signing, state.message = True, signing, message
    metrics.ISSUER_READY.labels(metric_label(ref)).set(1)
    ca = x509.load_pem_x509_certificate(signing.ca_pem)
    metrics.CA_NOT_AFTER.labels(metric_label(ref)).set(ca.not_valid_after_utc.timestamp())
    for waiting in runtime.issuers.woken(ref):
        runtime.queue.add(waiting)


def _register(kind: str, plural: str) -> None:
    group, version = api.GROUP, api.VERSION

    @kopf.on.resume(group, version, plural, id="reconcile")
    @kopf.on.create(group, version, plural, id="reconcile")
    @kopf.on.update(group, version, plural, id="reconcile", field="spec")
    async def reconcile_handler(
        body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int, logger: kopf.Logger, **_: Any
    ) -> None:
        await _reconcile_and_report(kind, body, patch, memo, retry, logger)

    @kopf.timer(
        group, version, plural, id="recheck", interval=RECHECK_INTERVAL, initial_delay=RECHECK_INTERVAL
    )
    async def recheck_handler(
        body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger, **_: Any
    ) -> None:
        # The token may have gone away, the PIN changed, or the CA may be due for renewal.
        # The status already says why it failed; the next tick checks again.
        with contextlib.suppress(kopf.TemporaryError, kopf.PermanentError):
            await _reconcile_and_report(kind, body, patch, memo, 0, logger)

    @kopf.on.event(group, version, plural, id="track")
    async def track_handler(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        runtime: Runtime = memo["runtime"]
        meta = event["object"].get("metadata", {})
        ref = issuer_ref(kind, meta.get("namespace"), meta.get("name", ""))
        if event["type"] == "DELETED":
            runtime.issuers.states.pop(ref, None)
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
        recorded = (body.get("status") or {}).get("keyHandle")
        if not recorded:
            return
        spec = IssuerSpec.parse(body.get("spec") or {})
        handle = KeyHandle.from_status(recorded)
        await runtime.pool.adestroy_key(runtime.profiles.get(spec.profile).token, handle)
        logger.info(f"destroyed key label={handle.key_label!r} id={handle.key_id} (deletionPolicy=Destroy)")


_register(api.ISSUER_KIND, api.ISSUER_PLURAL)
_register(api.CLUSTER_ISSUER_KIND, api.CLUSTER_ISSUER_PLURAL)
