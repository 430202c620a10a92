"""Pure builders of conditions and status patches, for our issuers and for CertificateRequests."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from cryptography import x509

from issuer import api
from issuer.clock import rfc3339

#: RFC 3339 in UTC, second precision, as the API server writes times (one spelling: ``issuer.clock``).
timestamp = rfc3339


def condition_of(conditions: Sequence[Mapping[str, Any]] | None, kind: str) -> Mapping[str, Any] | None:
    for condition in conditions or ():
        if condition.get("type") == kind:
            return condition
    return None


def is_true(conditions: Sequence[Mapping[str, Any]] | None, kind: str) -> bool:
    found = condition_of(conditions, kind)
    return found is not None and found.get("status") == "True"


def set_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    kind: str,
    status: bool,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None = None,
) -> list[dict[str, Any]]:
    """``conditions`` with ``kind`` set; others (e.g. the approver's Approved) are kept untouched.

    The transition time moves only when the status changes, as Kubernetes conventions require.
    """
    text = "True" if status else "False"
    previous = condition_of(conditions, kind)
    changed = previous is None or previous.get("status") != text
    updated: dict[str, Any] = {
        "type": kind,
        "status": text,
        "reason": reason,
        "message": message,
        "lastTransitionTime": (
            timestamp(now)
            if changed or previous is None
            else previous.get("lastTransitionTime", timestamp(now))
        ),
    }
    if generation is not None:
        updated["observedGeneration"] = generation
    result = [dict(c) for c in conditions or () if c.get("type") != kind]
    result.append(updated)
    return result


def pem_field(pem: bytes) -> str:
    """cert-manager's ``[]byte`` status fields travel as base64 of the PEM."""
    return base64.b64encode(pem).decode("ascii")


# -- CertificateRequest status ----------------------------------------------------------------------------


def request_issued(
    conditions: Sequence[Mapping[str, Any]] | None, chain_pem: bytes, ca_pem: bytes, now: datetime
) -> dict[str, Any]:
    return {
        "certificate": pem_field(chain_pem),
        "ca": pem_field(ca_pem),
        "conditions": set_condition(
            conditions,
            api.CONDITION_READY,
            True,
            api.REASON_ISSUED,
            "Certificate fetched from issuer successfully",
            now,
        ),
    }


def _ended(
    conditions: Sequence[Mapping[str, Any]] | None, reason: str, message: str, now: datetime
) -> dict[str, Any]:
    """Ready=False with a final reason and ``failureTime``: cert-manager stops waiting on the request."""
    return {
        "failureTime": timestamp(now),
        "conditions": set_condition(conditions, api.CONDITION_READY, False, reason, message, now),
    }


def request_failed(
    conditions: Sequence[Mapping[str, Any]] | None, message: str, now: datetime
) -> dict[str, Any]:
    return _ended(conditions, api.REASON_FAILED, message, now)


def request_denied(conditions: Sequence[Mapping[str, Any]] | None, now: datetime) -> dict[str, Any]:
    return _ended(
        conditions, api.REASON_DENIED, "The CertificateRequest was denied by an approval controller", now
    )


def request_pending(
    conditions: Sequence[Mapping[str, Any]] | None, message: str, now: datetime
) -> dict[str, Any]:
    return {
        "conditions": set_condition(conditions, api.CONDITION_READY, False, api.REASON_PENDING, message, now)
    }


def request_is_finished(status: Mapping[str, Any] | None) -> bool:
    """Issued, Failed or Denied requests are left alone, by cert-manager's contract."""
    status = status or {}
    if status.get("certificate") or status.get("failureTime"):
        return True
    ready = condition_of(status.get("conditions"), api.CONDITION_READY)
    if ready is None:
        return False
    return ready.get("status") == "True" or ready.get("reason") in (api.REASON_FAILED, api.REASON_DENIED)


# -- our issuers' status ----------------------------------------------------------------------------------


def ca_entry(pem: bytes) -> dict[str, str]:
    cert = x509.load_pem_x509_certificate(pem)
    return {
        "pem": pem.decode("ascii"),
        "serialNumber": format(cert.serial_number, "x"),
        "subject": cert.subject.rfc4514_string(),
        "notBefore": timestamp(cert.not_valid_before_utc),
        "notAfter": timestamp(cert.not_valid_after_utc),
    }
