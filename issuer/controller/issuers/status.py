"""Our issuers' status: one typed view to read it (``IssuerStatus``) and one builder to write it
(``StatusPatch``), so each status field has one home and one spelling.

Status is a cache, not an authority: anyone with ``/status`` rights may have written what is read here.
The view only names the fields; every key handle it yields is checked against the issuer's scope
(``key_scope.KeyScope``) before it is used, and nothing read here ever grants a key.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from issuer import api
from issuer.clock import rfc3339
from issuer.controller import conditions
from issuer.signer.api import KeyHandle, WrappingKey

# The status fields of our CRDs (crds/*.yaml), each spelled once.
KEY_HANDLE = "keyHandle"
KEY_GENERATION = "keyGeneration"
NEXT_KEY = "nextKey"
RETIRED_KEYS = "retiredKeys"
CA_CERTIFICATES = "caCertificates"
CA = "ca"
CA_CHAIN = "caChain"
CA_CSR = "caCSR"
WRAPPING_KEY = "wrappingKey"
KEY_IMPORT = "keyImport"
KEY_QUOTA = "keyQuota"
ROTATION = "rotation"
TRUST_BUNDLE = "trustBundle"
CONDITIONS = "conditions"
OBSERVED_GENERATION = "observedGeneration"


@dataclass(frozen=True)
class IssuerStatus:
    """An issuer's status as read from the API server (a tenant may have written any of it)."""

    raw: Mapping[str, Any]

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> IssuerStatus:
        return cls(body.get("status") or {})

    @property
    def key_handle(self) -> Mapping[str, Any] | None:
        """The recorded signing key (unchecked: ``KeyScope.signing_key`` decides whether it is ours)."""
        return self.raw.get(KEY_HANDLE) or None

    @property
    def next_key(self) -> Mapping[str, Any] | None:
        """A rotation's published next key: ``keyHandle``, ``generation``, ``publishedAt``, ``signFrom``."""
        return self.raw.get(NEXT_KEY) or None

    @property
    def retired_keys(self) -> list[Mapping[str, Any]]:
        return list(self.raw.get(RETIRED_KEYS) or [])

    @property
    def rotation_phase(self) -> Mapping[str, Any] | None:
        """``rotation``: the phase of the latest key rotation, when it may advance and what it waits for."""
        return self.raw.get(ROTATION) or None

    @property
    def ca_certificates(self) -> list[Mapping[str, Any]]:
        return list(self.raw.get(CA_CERTIFICATES) or [])

    @property
    def ca_chain(self) -> str | None:
        return self.raw.get(CA_CHAIN) or None

    @property
    def ca_csr(self) -> str:
        return str(self.raw.get(CA_CSR) or "")

    @property
    def wrapping_key(self) -> Mapping[str, Any] | None:
        return self.raw.get(WRAPPING_KEY) or None

    @property
    def conditions(self) -> Sequence[Mapping[str, Any]] | None:
        return self.raw.get(CONDITIONS)

    @property
    def ready(self) -> bool:
        return conditions.is_true(self.conditions, api.CONDITION_READY)

    @property
    def awaiting_administrator(self) -> bool:
        """Not Ready and waiting on an administrator's Secret: an import not done yet (a wrapping key is
        advertised), or an intermediate CA without a usable certificate (a CSR is published)."""
        return bool(self.wrapping_key or self.ca_csr) and not self.ready


def retired_record(
    handle: KeyHandle,
    generation: int,
    now: datetime,
    trust_until: datetime | None = None,
    max_duration_seconds: int | None = None,
) -> dict[str, Any]:
    """An entry of ``retiredKeys``: when the key stopped signing, and (a cache, re-derived on every use)
    until when its CA stays in the trust bundle and the longest lifetime it could give then."""
    record: dict[str, Any] = {
        KEY_HANDLE: handle.to_status(),
        "generation": generation,
        "retiredAt": rfc3339(now),
    }
    if trust_until is not None:
        record["trustUntil"] = rfc3339(trust_until)
    if max_duration_seconds is not None:
        record["maxDurationSeconds"] = max_duration_seconds
    return record


def next_key_record(
    handle: KeyHandle, generation: int, published: datetime, sign_from: datetime
) -> dict[str, Any]:
    """``nextKey``: a key published before it signs, and when it may start to."""
    return {
        KEY_HANDLE: handle.to_status(),
        "generation": generation,
        "publishedAt": rfc3339(published),
        "signFrom": rfc3339(sign_from),
    }


class StatusPatch:
    """The one writer of an issuer's status: each method writes its fields into ``target`` (kopf's
    ``patch.status``); a field set to None is removed by the merge patch."""

    def __init__(self, target: MutableMapping[str, Any]) -> None:
        self.target = target

    def signing_key(self, handle: KeyHandle, generation: int | None = None) -> None:
        """``keyHandle`` (and ``keyGeneration``, for keys that rotate)."""
        self.target[KEY_HANDLE] = handle.to_status()
        if generation is not None:
            self.target[KEY_GENERATION] = generation

    def rotation(self, next_key: Mapping[str, Any] | None, retired: Sequence[Mapping[str, Any]]) -> None:
        """``nextKey`` (None once it signs) and ``retiredKeys``."""
        self.target[NEXT_KEY] = next_key
        self.target[RETIRED_KEYS] = list(retired)

    def trust(self, certificates: Sequence[Mapping[str, Any]], ca: str) -> None:
        """``caCertificates`` (with their ``use``) and ``ca``: every CA certificate requesters must trust."""
        self.target[CA_CERTIFICATES] = list(certificates)
        self.target[CA] = ca

    def ca_chain(self, pem: str) -> None:
        self.target[CA_CHAIN] = pem

    def ca_csr(self, pem: str | None) -> None:
        """``caCSR``: what an administrator signs for an intermediate CA; None when none is wanted."""
        self.target[CA_CSR] = pem

    def wrapping_key(self, key: WrappingKey | None) -> None:
        """``wrappingKey``: the key an administrator wraps the CA key for; None once it is destroyed."""
        self.target[WRAPPING_KEY] = key.to_status() if key is not None else None

    def key_import(self, secret_name: str, imported_at: datetime, message: str) -> None:
        self.target[KEY_IMPORT] = {
            "secretName": secret_name,
            "importedAt": rfc3339(imported_at),
            "message": message,
        }

    def ready(
        self,
        before: Sequence[Mapping[str, Any]] | None,
        ready: bool,
        reason: str,
        message: str,
        now: datetime,
        generation: int,
    ) -> None:
        """The Ready condition (other conditions kept) and ``observedGeneration``."""
        self.target[CONDITIONS] = conditions.set_condition(
            before, api.CONDITION_READY, ready, reason, message, now, generation
        )
        self.target[OBSERVED_GENERATION] = generation

    def condition(
        self, kind: str, status: bool, reason: str, message: str, now: datetime, generation: int
    ) -> None:
        """One more condition beside Ready (call after :meth:`ready`, whose conditions it keeps)."""
        self.target[CONDITIONS] = conditions.set_condition(
            self.target.get(CONDITIONS), kind, status, reason, message, now, generation
        )

    def rotation_phase(self, report: Mapping[str, Any] | None) -> None:
        """``rotation``: the phase report (None: no rotation was ever asked for)."""
        self.target[ROTATION] = dict(report) if report is not None else None

    def trust_bundle(self, where: Mapping[str, Any]) -> None:
        """``trustBundle``: where the bundle was published (a report: the place is always re-derived)."""
        self.target[TRUST_BUNDLE] = dict(where)

    def key_quota(self, usage: Mapping[str, Any]) -> None:
        """``keyQuota``: the scope's keys as counted in the token and its share (a report, not an input)."""
        self.target[KEY_QUOTA] = dict(usage)
