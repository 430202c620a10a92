"""Pure builders of the status of signing requests (cert-manager's CertificateRequest contract)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from issuer import api
from issuer.clock import rfc3339
from issuer.controller.conditions import condition_of, pem_field, set_condition


def issued(
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
        "failureTime": rfc3339(now),
        "conditions": set_condition(conditions, api.CONDITION_READY, False, reason, message, now),
    }


def failed(conditions: Sequence[Mapping[str, Any]] | None, message: str, now: datetime) -> dict[str, Any]:
    return _ended(conditions, api.REASON_FAILED, message, now)


def denied(conditions: Sequence[Mapping[str, Any]] | None, now: datetime) -> dict[str, Any]:
    return _ended(
        conditions, api.REASON_DENIED, "The CertificateRequest was denied by an approval controller", now
    )


def pending(conditions: Sequence[Mapping[str, Any]] | None, message: str, now: datetime) -> dict[str, Any]:
    return {
        "conditions": set_condition(conditions, api.CONDITION_READY, False, api.REASON_PENDING, message, now)
    }


def is_finished(status: Mapping[str, Any] | None) -> bool:
    """Issued, Failed or Denied requests are left alone, by cert-manager's contract."""
    status = status or {}
    if status.get("certificate") or status.get("failureTime"):
        return True
    ready = condition_of(status.get("conditions"), api.CONDITION_READY)
    if ready is None:
        return False
    return ready.get("status") == "True" or ready.get("reason") in (api.REASON_FAILED, api.REASON_DENIED)
