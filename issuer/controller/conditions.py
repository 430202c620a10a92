"""Pure builders of Kubernetes conditions, shared by our issuers' status and the requests' status."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from issuer.clock import rfc3339
from issuer.signer.api import describe_ca


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
            rfc3339(now) if changed or previous is None else previous.get("lastTransitionTime", rfc3339(now))
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


# -- our issuers' status ----------------------------------------------------------------------------------


def ca_entry(pem: bytes) -> dict[str, str]:
    """A ``status.caCertificates`` entry for one CA certificate."""
    info = describe_ca(pem)
    return {
        "pem": pem.decode("ascii"),
        "serialNumber": format(info.serial_number, "x"),
        "subject": info.subject,
        "notBefore": rfc3339(info.not_before),
        "notAfter": rfc3339(info.not_after),
    }
