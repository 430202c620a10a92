"""cert-manager CertificateRequests that name our issuers: watched, signed, published once.

CertificateRequests belong to cert-manager; we are guests. They are watched with ``kopf.on.event``
only (no kopf annotations, finalizers or progress on them), kept in memory, and processed by our own
work queue, whose workers await the signer pool. Our only writes go to ``/status``, with the
resourceVersion we read as a precondition, so a certificate is published at most once per request
across restarts, replayed watch events and competing replicas.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

import kopf

from issuer import api
from issuer.controller import status as st
from issuer.controller.issuers import describe, issuer_ref
from issuer.controller.kubeapi import Conflict, NotFound
from issuer.controller.runtime import RequestKey, Runtime
from issuer.errors import IssuerError, PendingError, PermanentError, TrustedIssuerError
from issuer.signer.policy import parse_duration
from issuer.signer.x509 import PEMBundle, SigningRequest

log = logging.getLogger("trusted-issuer.requests")
audit = logging.getLogger("trusted-issuer.audit")

MAX_BACKOFF = 60.0
PUBLISH_ATTEMPTS = 5


def is_ours(body: Mapping[str, Any]) -> bool:
    ref = (body.get("spec") or {}).get("issuerRef") or {}
    return ref.get("group") == api.GROUP and ref.get("kind") in api.ISSUER_KINDS


def signing_request(spec: Mapping[str, Any]) -> SigningRequest:
    """The signer's view of a request's spec; a malformed spec is a PermanentError naming the field."""
    try:
        csr_pem = base64.b64decode(str(spec.get("request", "")), validate=True)
    except (binascii.Error, ValueError):
        raise PermanentError("spec.request is not base64") from None
    if not csr_pem:
        raise PermanentError("spec.request is empty")
    duration = spec.get("duration")
    usages = spec.get("usages") or ()
    if not isinstance(usages, list | tuple) or not all(isinstance(u, str) for u in usages):
        raise PermanentError("spec.usages must be a list of strings")
    return SigningRequest(
        csr_pem=csr_pem,
        duration=parse_duration(str(duration)) if duration else None,
        is_ca=bool(spec.get("isCA", False)),
        usages=tuple(usages),
    )


def _created(meta: Mapping[str, Any], fallback: datetime) -> datetime:
    text = meta.get("creationTimestamp")
    if not text:
        return fallback
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return fallback


@kopf.on.event(api.CERT_MANAGER_GROUP, api.CERT_MANAGER_VERSION, api.CERTIFICATE_REQUEST_PLURAL, id="observe")
async def observe(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Keep the latest body of each unfinished request of ours and queue it; nothing is written here."""
    runtime: Runtime = memo["runtime"]
    if not runtime.tasks:
        start_workers(runtime)
    body = event["object"]
    meta = body.get("metadata") or {}
    key: RequestKey = (meta.get("namespace", ""), meta.get("name", ""))
    if event["type"] == "DELETED" or not is_ours(body) or st.request_is_finished(body.get("status")):
        runtime.requests.pop(key, None)
        runtime.attempts.pop(key, None)
        return
    runtime.requests[key] = dict(body)
    runtime.queue.add(key)


def start_workers(runtime: Runtime) -> None:
    """Start the queue's workers; tasks copy the caller's context, so call this from a kopf handler."""
    runtime.tasks.append(asyncio.create_task(runtime.queue.run_delays(), name="queue-delays"))
    for index in range(runtime.settings.concurrency):
        worker = runtime.queue.worker(functools.partial(process, runtime))
        runtime.tasks.append(asyncio.create_task(worker, name=f"request-worker-{index}"))


async def process(runtime: Runtime, key: RequestKey) -> None:
    """One pass over one request; never raises (a failure of one request never stops the operator)."""
    try:
        await _process(runtime, key)
    except Exception:
        log.exception(f"unexpected failure request={key[0]}/{key[1]}; retrying")
        _retry_later(runtime, key)


async def _process(runtime: Runtime, key: RequestKey) -> None:
    body = runtime.requests.get(key)
    if body is None:
        return
    spec, status = body.get("spec") or {}, body.get("status") or {}
    conditions = status.get("conditions")
    now = runtime.clock()
    if st.request_is_finished(status):
        return
    if st.is_true(conditions, api.CONDITION_DENIED):
        await _publish(runtime, key, body, st.request_denied(conditions, now))
        _tell(
            body,
            "Warning",
            reason="Denied",
            message="The request was denied by an approver; it will not be signed",
        )
        return
    if not st.is_true(conditions, api.CONDITION_APPROVED):
        return  # not approved yet: the approver's status update brings a new event

    ref_spec = spec.get("issuerRef") or {}
    ref = issuer_ref(str(ref_spec.get("kind")), key[0], str(ref_spec.get("name", "")))
    issuer = runtime.issuers.get(ref)
    if issuer is None or not issuer.ready or issuer.signing is None:
        why = "does not exist" if issuer is None else f"is not ready: {issuer.message}"
        runtime.issuers.wait_for(ref, key)
        message = f"Waiting for {describe(ref)}, which {why}"
        await _pending(runtime, key, body, message, now)
        return

    try:
        request = signing_request(spec)
        bundle = await runtime.pool.asign(issuer.signing, request)
    except PermanentError as err:
        await _fail(runtime, key, body, err.message, now)
        return
    except (IssuerError, PendingError) as err:
        # The issuer is broken, not the request: wait without a retry limit, and let the issuer's own
        # checks report it.
        issuer.ready = False
        issuer.message = err.message
        runtime.issuers.wait_for(ref, key)
        await _pending(runtime, key, body, f"{describe(ref)} cannot sign: {err.message}", now)
        _retry_later(runtime, key)
        return
    except TrustedIssuerError as err:
        await _retry_or_fail(runtime, key, body, err.message, now)
        return

    username = spec.get("username", "")
    audit.info(
        f"signed request={key[0]}/{key[1]} issuer={describe(ref)!r} requester={username!r} "
        f"serial={bundle.serial_number:x} notAfter={bundle.not_after.isoformat()} "
        f"keyID={issuer.signing.key.key_id}"
    )
    if await _publish_certificate(runtime, key, body, bundle, now):
        _tell(
            body,
            "Normal",
            reason="Issued",
            message=f"Certificate issued by {describe(ref)}, serial {bundle.serial_number:x}",
        )


async def _publish_certificate(
    runtime: Runtime, key: RequestKey, body: dict[str, Any], bundle: PEMBundle, now: datetime
) -> bool:
    """Publish a signed certificate at most once: only onto the object version we read, and, after a
    conflict, only if the request is still unfinished. A signature that cannot be published is
    recorded in the audit log and dropped, never retried blindly."""
    for _ in range(PUBLISH_ATTEMPTS):
        conditions = (body.get("status") or {}).get("conditions")
        try:
            updated = await runtime.client.patch_certificate_request_status(
                key[0],
                key[1],
                st.request_issued(conditions, bundle.chain_pem, bundle.ca_pem, now),
                body["metadata"]["resourceVersion"],
            )
        except NotFound:
            audit.info(
                f"unpublished request={key[0]}/{key[1]} serial={bundle.serial_number:x} reason=deleted"
            )
            runtime.requests.pop(key, None)
            return False
        except Conflict:
            try:
                body = await runtime.client.get_certificate_request(*key)
            except NotFound:
                audit.info(
                    f"unpublished request={key[0]}/{key[1]} serial={bundle.serial_number:x} reason=deleted"
                )
                return False
            if st.request_is_finished(body.get("status")):
                audit.info(
                    f"unpublished request={key[0]}/{key[1]} serial={bundle.serial_number:x} "
                    "reason=already-finished"
                )
                return False
            continue
        runtime.requests.pop(key, None)
        runtime.attempts.pop(key, None)
        audit.info(f"published request={key[0]}/{key[1]} serial={bundle.serial_number:x}")
        del updated
        return True
    audit.info(f"unpublished request={key[0]}/{key[1]} serial={bundle.serial_number:x} reason=conflicts")
    _retry_later(runtime, key)
    return False


async def _publish(runtime: Runtime, key: RequestKey, body: Mapping[str, Any], patch: dict[str, Any]) -> None:
    """Write a non-certificate status (Pending, Failed, Denied) onto the version we read; a conflict
    or a deleted request only means there is newer news, which brings its own event."""
    try:
        updated = await runtime.client.patch_certificate_request_status(
            key[0], key[1], patch, body["metadata"]["resourceVersion"]
        )
    except (Conflict, NotFound):
        return
    if key in runtime.requests and updated.get("metadata"):
        # Our own write is the newest version: keep it, so the next pass does not conflict with it.
        runtime.requests[key] = updated


async def _pending(
    runtime: Runtime, key: RequestKey, body: Mapping[str, Any], message: str, now: datetime
) -> None:
    ready = st.condition_of((body.get("status") or {}).get("conditions"), api.CONDITION_READY)
    if ready is not None and ready.get("reason") == api.REASON_PENDING and ready.get("message") == message:
        return  # already says so: no write, no event
    await _publish(
        runtime, key, body, st.request_pending((body.get("status") or {}).get("conditions"), message, now)
    )


async def _fail(runtime: Runtime, key: RequestKey, body: dict[str, Any], message: str, now: datetime) -> None:
    log.info(f"failed request={key[0]}/{key[1]} reason={message!r}")
    await _publish(
        runtime, key, body, st.request_failed((body.get("status") or {}).get("conditions"), message, now)
    )
    _tell(body, "Warning", reason="Failed", message=message)
    runtime.requests.pop(key, None)
    runtime.attempts.pop(key, None)


async def _retry_or_fail(
    runtime: Runtime, key: RequestKey, body: dict[str, Any], message: str, now: datetime
) -> None:
    deadline = _created(body["metadata"], now) + runtime.settings.max_retry_duration
    if now >= deadline:
        await _fail(
            runtime, key, body, f"Gave up after retrying until {deadline.isoformat()}: {message}", now
        )
        return
    _tell(body, "Warning", reason="Retrying", message=message)
    _retry_later(runtime, key)


def _tell(body: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
    """A Kubernetes Event on the request, posted by kopf in the background."""
    kopf.event(cast(kopf.Body, body), type=kind, reason=reason, message=message)


def _retry_later(runtime: Runtime, key: RequestKey) -> None:
    attempt = runtime.attempts.get(key, 0) + 1
    runtime.attempts[key] = attempt
    runtime.queue.add_after(key, min(MAX_BACKOFF, 0.5 * 2 ** min(attempt, 10)))
