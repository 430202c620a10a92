"""The audit trail: one structured line for each certificate the token signed, and what became of it.

Each line is a ``trusted-issuer.audit`` log record whose text reads as key=value pairs and whose
``audit`` extra carries the same fields as a mapping, so ``--log-format json`` emits them as JSON
fields. Only public facts are recorded (names, serial, subject, SANs, validity, key handle id); never a
PIN, key bytes or the CSR.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from issuer.signer.api import PEMBundle

log = logging.getLogger("trusted-issuer.audit")


@dataclass(frozen=True)
class Issuance:
    """A certificate the token signed for one request."""

    kind: str
    request: str  # namespace/name, or name for cluster-scoped requests
    issuer: str
    requester: str
    serial: str
    subject: str
    sans: tuple[str, ...]
    not_after: str
    key_label: str
    key_id: str

    @classmethod
    def of(
        cls,
        bundle: PEMBundle,
        *,
        kind: str,
        request: str,
        issuer: str,
        requester: str,
        key_label: str,
        key_id: str,
    ) -> Issuance:
        """Describe ``bundle``'s leaf certificate (the first in its chain), from what the signer
        learned while building it."""
        return cls(
            kind=kind,
            request=request,
            issuer=issuer,
            requester=requester,
            serial=f"{bundle.serial_number:x}",
            subject=bundle.subject,
            sans=bundle.sans,
            not_after=bundle.not_after.isoformat(),
            key_label=key_label,
            key_id=key_id,
        )


def issued(record: Issuance) -> None:
    """The certificate reached the request's status: the one line per issuance."""
    _emit("issued", record)


def unpublished(record: Issuance, reason: str) -> None:
    """The token signed, but the certificate never reached the request (deleted, finished elsewhere,
    or conflicts): the signature exists and is recorded, though no one received it."""
    _emit("unpublished", record, reason=reason)


def refused(kind: str, request: str, issuer: str, requester: str, outcome: str, message: str) -> None:
    """A request that ended without a certificate (Failed or Denied)."""
    fields = {"kind": kind, "request": request, "issuer": issuer, "requester": requester, "message": message}
    log.info(_text(outcome, fields), extra={"audit": {"event": outcome, **fields}})


def _emit(event: str, record: Issuance, **more: str) -> None:
    fields: dict[str, Any] = {**asdict(record), **more}
    log.info(_text(event, fields), extra={"audit": {"event": event, **fields}})


def _text(event: str, fields: dict[str, Any]) -> str:
    # repr() quotes every value, so a name carrying spaces or newlines cannot forge a second line or field.
    return f"{event} " + " ".join(f"{name}={value!r}" for name, value in fields.items())
