"""Signing requests that name our issuers: observed, signed, published once (the path of one request:
docs/architecture.md).

The requests belong to others; kopf never sees them. ``start`` runs the reflectors, the queue's workers and
the Event posters; ``process`` is one pass over one request. Our only writes go to ``/status``, with the
resourceVersion we read as a precondition, so a certificate is published at most once per request across
restarts, replayed watch events and competing replicas.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from issuer import api, metrics
from issuer.backoff import backoff
from issuer.clock import parse_rfc3339
from issuer.controller import conditions as st
from issuer.controller.kubeapi import Conflict, NotFound
from issuer.controller.registry import describe, metric_label
from issuer.controller.requests import audit
from issuer.controller.requests import status as request_status
from issuer.controller.requests.reflector import ObjectName, Reflector, WatchEvent
from issuer.controller.requests.request_kinds import (
    CSR_DURATION_ANNOTATION,
    CSR_IS_CA_ANNOTATION,
    KINDS,
    RequestKind,
)
from issuer.controller.requests.store import RequestKey
from issuer.controller.runtime import Runtime
from issuer.errors import (
    ConfigurationError,
    IssuerError,
    PendingError,
    PermanentError,
    Reason,
    TrustedIssuerError,
)
from issuer.signer.api import PEMBundle

log = logging.getLogger("trusted-issuer.requests")


#: Backoff of a request failing with passing errors: 1 s after its first failure, up to a minute.
FIRST_BACKOFF, MAX_BACKOFF = 0.5, 60.0
PUBLISH_ATTEMPTS = 5
#: Reasons of passing signer faults that mean the token itself is unreachable.
TOKEN_FAULTS = frozenset({Reason.TOKEN_UNAVAILABLE})


def _key(kind: RequestKind, body: Mapping[str, Any]) -> RequestKey:
    meta = body.get("metadata") or {}
    return (kind.plural, meta.get("namespace", "") or "", meta.get("name", ""))


def _name(key: RequestKey) -> str:
    return f"{key[1]}/{key[2]}" if key[1] else key[2]


def _observe(kind: RequestKind, event: WatchEvent, runtime: Runtime) -> None:
    """Keep the latest body of each unfinished request of ours and queue it; nothing is written here."""
    body = event["object"]
    key = _key(kind, body)
    ref = kind.issuer_of(body)
    if (
        event["type"] == "DELETED"
        or ref is None
        or not runtime.serves(ref)
        or kind.is_finished(body.get("status"))
    ):
        runtime.requests.forget(key)
        return
    runtime.requests.keep(key, _essence(runtime, body))
    runtime.requests.queue.add(key)


#: Where a body whose ``spec.request`` was too large to keep records that request's size.
OVERSIZED = "trusted-issuer.dev/oversized-request-bytes"
_KEPT_METADATA = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
_KEPT_ANNOTATIONS = (CSR_DURATION_ANNOTATION, CSR_IS_CA_ANNOTATION)
_KEPT_STATUS = ("conditions", "certificate", "failureTime")


def _request_bytes(body: Mapping[str, Any]) -> int:
    request = (body.get("spec") or {}).get("request")
    return len(request) if isinstance(request, str) else 0


def _essence(runtime: Runtime, body: Mapping[str, Any]) -> dict[str, Any]:
    """What is kept of a request: what signing, status writes and Events read, and nothing else (not
    managedFields, other annotations or foreign status), so an object bloated by others costs little.
    A ``spec.request`` over the limit is left out too (never held, decoded or parsed) and its size
    noted for the Failed message."""
    meta = body.get("metadata") or {}
    kept_meta = {k: meta[k] for k in _KEPT_METADATA if k in meta}
    annotations = meta.get("annotations") or {}
    if any(k in annotations for k in _KEPT_ANNOTATIONS):
        kept_meta["annotations"] = {k: annotations[k] for k in _KEPT_ANNOTATIONS if k in annotations}
    status = body.get("status") or {}
    spec: dict[str, Any] = dict(body.get("spec") or {})
    size = _request_bytes(body)
    if size > runtime.settings.max_request_bytes:
        del spec["request"]
    essence = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": kept_meta,
        "spec": spec,
        "status": {k: status[k] for k in _KEPT_STATUS if k in status},
    }
    if size > runtime.settings.max_request_bytes:
        essence[OVERSIZED] = size
    return essence


def _oversized_message(runtime: Runtime, body: Mapping[str, Any]) -> str | None:
    size = body.get(OVERSIZED) or _request_bytes(body)
    limit = runtime.settings.max_request_bytes
    if size <= limit:
        return None
    return (
        f"spec.request is {size} bytes, more than the {limit} bytes this issuer accepts "
        f"({api.ENV_PREFIX}MAX_REQUEST_BYTES)"
    )


#: Tasks posting Events about requests (a post is a short write; two keep up with a burst).
EVENT_POSTERS = 2


def start(runtime: Runtime, namespaces: Collection[str] = ()) -> list[Reflector]:
    """Start the request path: the queue's workers, the Event posters and one reflector per request
    kind, watching ``namespaces`` (every namespace when empty; cluster-scoped kinds are always
    watched whole). Everything runs as ``runtime.tasks``, until cancelled."""
    start_workers(runtime)
    for index in range(EVENT_POSTERS):
        runtime.tasks.append(asyncio.create_task(runtime.requests.events.run(), name=f"event-poster-{index}"))
    reflectors = []
    for kind in KINDS.values():
        for namespace in _scopes(kind, namespaces):
            reflector = Reflector(
                runtime.client,
                kind.collection(namespace),
                functools.partial(_observe_event, kind, runtime),
                listed=functools.partial(_listed, kind, namespace, runtime),
            )
            reflectors.append(reflector)
            name = f"watch-{kind.plural}-{namespace or 'all'}"
            runtime.tasks.append(asyncio.create_task(reflector.run(), name=name))
    return reflectors


def _scopes(kind: RequestKind, namespaces: Collection[str]) -> list[str | None]:
    """The namespaces whose ``kind`` objects we watch and list; [None]: the whole collection."""
    if kind.namespaced and namespaces:
        return [*sorted(namespaces)]
    return [None]


def _observe_event(kind: RequestKind, runtime: Runtime, event: WatchEvent) -> None:
    _observe(kind, event, runtime)


def _listed(kind: RequestKind, namespace: str | None, runtime: Runtime, names: set[ObjectName]) -> None:
    """After a (re)listing: forget the requests of its scope that it no longer holds (deleted while no
    watch was looking)."""
    for key in [*runtime.requests.bodies, *runtime.requests.uncached]:
        if key[0] == kind.plural and namespace in (None, key[1]) and (key[1], key[2]) not in names:
            runtime.requests.forget(key)


def start_workers(runtime: Runtime) -> None:
    """Start the queue's workers (and its delay and refill tasks) as ``runtime.tasks``."""
    runtime.tasks.append(asyncio.create_task(runtime.requests.queue.run_delays(), name="queue-delays"))
    runtime.tasks.append(asyncio.create_task(refill(runtime), name="queue-refill"))
    for index in range(runtime.settings.concurrency):
        worker = runtime.requests.queue.worker(functools.partial(process, runtime))
        runtime.tasks.append(asyncio.create_task(worker, name=f"request-worker-{index}"))


async def refill(runtime: Runtime, interval: float = 1.0) -> None:
    """Find the requests a full queue refused: once it has drained to half, list every request of
    each kind (a page at a time) and observe them as if just added. Runs until cancelled."""
    queue = runtime.requests.queue
    while True:
        await asyncio.sleep(interval)
        if not queue.overflowed or len(queue) > (queue.max_size or 0) // 2:
            continue
        queue.take_overflow()
        log.info(f"queue was full (max {queue.max_size}); listing requests to find those it refused")
        for kind in KINDS.values():
            # The reflectors' scopes, not more: a namespace shard never takes up another's requests.
            for namespace in _scopes(kind, runtime.namespaces):
                try:
                    async for items in runtime.client.list_pages(kind.collection(namespace)):
                        for item in items:
                            _observe(kind, {"type": "ADDED", "object": item}, runtime)
                except Exception as err:  # the API is down: try again on the next round
                    log.warning(f"listing {kind.plural} to refill the queue failed: {err}")
                    queue.overflowed = True


async def process(runtime: Runtime, key: RequestKey) -> None:
    """One pass over one request; never raises (a failure of one request never stops the operator)."""
    try:
        await _process(runtime, KINDS[key[0]], key)
    except Exception:
        log.exception(f"unexpected failure request={_name(key)}; retrying")
        _retry_later(runtime, key)


async def _process(runtime: Runtime, kind: RequestKind, key: RequestKey) -> None:
    body = runtime.requests.bodies.get(key)
    if body is None:
        if key not in runtime.requests.uncached:
            return  # finished or deleted since it was queued
        try:
            body = await runtime.client.get(kind.path(key[1], key[2]))
        except NotFound:
            runtime.requests.forget(key)
            return
    status = body.get("status") or {}
    conditions = status.get("conditions")
    now = runtime.clock()
    if kind.is_finished(status):
        return
    if st.is_true(conditions, api.CONDITION_DENIED):
        metrics.REQUESTS_FAILED.labels(_issuer_label(kind, body), kind.name, "Denied").inc()
        if kind.writes_progress:
            _refused(kind, key, body, "denied", "denied by an approver")
            await _publish(runtime, kind, key, body, request_status.denied(conditions, now))
            _tell(
                runtime,
                body,
                "Warning",
                "Denied",
                "The request was denied by an approver; it will not be signed",
            )
        return
    if not st.is_true(conditions, api.CONDITION_APPROVED):
        return  # not approved yet: the approver's status update brings a new event
    oversized = _oversized_message(runtime, body)
    if oversized is not None:
        await _fail(runtime, kind, key, body, oversized, now)
        return

    ref = kind.issuer_of(body)
    assert ref is not None  # _observe keeps only requests of ours
    issuer = runtime.issuers.get(ref)
    if issuer is None or not issuer.ready or issuer.signing is None:
        why = "does not exist" if issuer is None else f"is not ready: {issuer.message}"
        runtime.issuers.wait_for(ref, key)
        await _pending(runtime, kind, key, body, f"Waiting for {describe(ref)}, which {why}", now)
        return

    started = time.monotonic()
    try:
        await kind.authorize(runtime.client, body, ref)
        request = kind.signing_request(body)
        with metrics.TOKEN_OPERATION_SECONDS.labels("sign").time():
            bundle = issuer.trusted(await runtime.pool.sign(issuer.signing, request))
    except PermanentError as err:
        await _fail(runtime, kind, key, body, err.message, now)
        return
    except TrustedIssuerError as err:
        if not _issuer_cannot_sign(err):
            await _retry_or_fail(runtime, kind, key, body, err.message, now)
            return
        # The issuer is broken, not the request: wait without a retry limit, and let the issuer's own
        # checks report it.
        issuer.ready = False
        issuer.message = err.message
        runtime.issuers.wait_for(ref, key)
        await _pending(runtime, kind, key, body, f"{describe(ref)} cannot sign: {err.message}", now)
        _retry_later(runtime, key)
        return

    record = audit.Issuance.of(
        bundle,
        kind=kind.name,
        request=_name(key),
        issuer=describe(ref),
        requester=kind.requester(body),
        key_label=issuer.signing.key.key_label,
        key_id=issuer.signing.key.key_id,
    )
    if await _publish_certificate(runtime, kind, key, body, bundle, now, record):
        metrics.CERTIFICATES_ISSUED.labels(metric_label(ref), kind.name).inc()
        metrics.SIGNING_SECONDS.labels(kind.name).observe(time.monotonic() - started)
        message = f"Certificate issued by {describe(ref)}, serial {bundle.serial_number:x}"
        _tell(runtime, body, "Normal", "Issued", message)


async def _publish_certificate(
    runtime: Runtime,
    kind: RequestKind,
    key: RequestKey,
    body: dict[str, Any],
    bundle: PEMBundle,
    now: datetime,
    record: audit.Issuance,
) -> bool:
    """Publish a signed certificate at most once: only onto the object version we read, and, after a
    conflict, only if the request is still unfinished. A signature that cannot be published is
    recorded in the audit log and dropped, never retried blindly."""
    path = kind.path(key[1], key[2])
    signed_for = body["metadata"].get("uid")
    for _ in range(PUBLISH_ATTEMPTS):
        patch = kind.issued(body.get("status") or {}, bundle, now)
        try:
            await runtime.client.patch_status(path, patch, body["metadata"]["resourceVersion"], answer=False)
        except NotFound:
            audit.unpublished(record, "deleted")
            runtime.requests.bodies.pop(key, None)
            return False
        except Conflict:
            try:
                body = await runtime.client.get(path)
            except NotFound:
                audit.unpublished(record, "deleted")
                return False
            if body["metadata"].get("uid") != signed_for:
                # Deleted and created again under the same name: a new CSR, which its own event brings.
                audit.unpublished(record, "replaced")
                return False
            if kind.is_finished(body.get("status")):
                audit.unpublished(record, "already-finished")
                return False
            continue
        runtime.requests.bodies.pop(key, None)
        runtime.requests.attempts.pop(key, None)
        audit.issued(record)
        return True
    audit.unpublished(record, "conflicts")
    _retry_later(runtime, key)
    return False


async def _publish(
    runtime: Runtime, kind: RequestKind, key: RequestKey, body: Mapping[str, Any], patch: dict[str, Any]
) -> None:
    """Write a non-certificate status (Pending, Failed, Denied) onto the version we read; a conflict
    or a deleted request only means there is newer news, which brings its own event."""
    try:
        updated = await runtime.client.patch_status(
            kind.path(key[1], key[2]), patch, body["metadata"]["resourceVersion"]
        )
    except (Conflict, NotFound):
        return
    if key in runtime.requests.bodies and updated.get("metadata"):
        # Our own write is the newest version: keep it, so the next pass does not conflict with it.
        runtime.requests.bodies[key] = _essence(runtime, updated)


async def _pending(
    runtime: Runtime, kind: RequestKind, key: RequestKey, body: Mapping[str, Any], message: str, now: datetime
) -> None:
    if not kind.writes_progress:
        return  # a Kubernetes CSR gets nothing of ours but a certificate or a Failed condition
    conditions = (body.get("status") or {}).get("conditions")
    ready = st.condition_of(conditions, api.CONDITION_READY)
    if ready is not None and ready.get("reason") == api.REASON_PENDING and ready.get("message") == message:
        return  # already says so: no write, no event
    await _publish(runtime, kind, key, body, request_status.pending(conditions, message, now))


async def _fail(
    runtime: Runtime,
    kind: RequestKind,
    key: RequestKey,
    body: dict[str, Any],
    message: str,
    now: datetime,
) -> None:
    metrics.REQUESTS_FAILED.labels(_issuer_label(kind, body), kind.name, "Failed").inc()
    _refused(kind, key, body, "failed", message)
    await _publish(runtime, kind, key, body, kind.failed(body.get("status") or {}, message, now))
    _tell(runtime, body, "Warning", "Failed", message)
    runtime.requests.bodies.pop(key, None)
    runtime.requests.attempts.pop(key, None)


async def _retry_or_fail(
    runtime: Runtime, kind: RequestKind, key: RequestKey, body: dict[str, Any], message: str, now: datetime
) -> None:
    deadline = _created(body["metadata"], now) + runtime.settings.max_retry_duration
    if now >= deadline:
        await _fail(
            runtime, kind, key, body, f"Gave up after retrying until {deadline.isoformat()}: {message}", now
        )
        return
    _tell(runtime, body, "Warning", "Retrying", message)
    _retry_later(runtime, key)


def _issuer_cannot_sign(err: TrustedIssuerError) -> bool:
    """Whether a signing failure is the issuer's (its token or module gone, its PIN refused), so the
    request waits for the issuer without a deadline. A token that went away shows up as a passing
    fault (TokenUnavailable) or, when the module cannot even start, as a ConfigurationError; both
    are found by the tests in tests/operator/test_faults.py to outlast any request's retry deadline."""
    return isinstance(err, IssuerError | PendingError | ConfigurationError) or err.reason in TOKEN_FAULTS


def _created(meta: Mapping[str, Any], fallback: datetime) -> datetime:
    text = meta.get("creationTimestamp")
    if not text:
        return fallback
    try:
        return parse_rfc3339(str(text))
    except ValueError:
        return fallback


def _refused(kind: RequestKind, key: RequestKey, body: Mapping[str, Any], outcome: str, message: str) -> None:
    ref = kind.issuer_of(body)
    issuer = describe(ref) if ref else ""
    audit.refused(kind.name, _name(key), issuer, kind.requester(body), outcome, message)


def _issuer_label(kind: RequestKind, body: Mapping[str, Any]) -> str:
    ref = kind.issuer_of(body)
    return metric_label(ref) if ref else ""


def _tell(runtime: Runtime, body: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
    """A Kubernetes Event on the request, posted in the background (dropped if too many are waiting)."""
    runtime.requests.events.post(body, kind, reason, message)


def _retry_later(runtime: Runtime, key: RequestKey) -> None:
    attempt = runtime.requests.attempts.get(key, 0) + 1
    runtime.requests.attempts[key] = attempt
    runtime.requests.queue.add_after(key, backoff(attempt, first=FIRST_BACKOFF, cap=MAX_BACKOFF))
