"""The two shapes of a signing request the operator serves, behind one interface.

cert-manager's ``CertificateRequest`` (namespaced; Ready condition, ``status.ca``) and Kubernetes'
``CertificateSigningRequest`` (cluster-scoped; ``spec.signerName``; only ``status.certificate`` or a
``Failed`` condition are ever written). The processing in ``processing.py`` is the same for both; each
kind says how to read its objects and how to write its status.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from issuer import api
from issuer.clock import rfc3339
from issuer.controller import conditions as st
from issuer.controller.kubeapi import KubeClient
from issuer.controller.registry import IssuerRef, issuer_ref, signer_name
from issuer.controller.requests import status as request_status
from issuer.durations import parse_duration
from issuer.errors import PermanentError
from issuer.signer.api import PEMBundle, SigningRequest

CSR_DURATION_ANNOTATION = "experimental.cert-manager.io/request-duration"
CSR_IS_CA_ANNOTATION = "experimental.cert-manager.io/request-is-ca"
_SIGNER = re.compile(
    rf"^(?P<plural>{api.ISSUER_PLURAL}|{api.CLUSTER_ISSUER_PLURAL})\.{re.escape(api.GROUP)}/(?P<rest>.+)$"
)


def _pem_from_base64(value: Any, field: str) -> bytes:
    try:
        decoded = base64.b64decode(str(value or ""), validate=True)
    except (binascii.Error, ValueError):
        raise PermanentError(f"{field} is not base64") from None
    if not decoded:
        raise PermanentError(f"{field} is empty")
    return decoded


def _usages(value: Any) -> tuple[str, ...]:
    usages = value or ()
    if not isinstance(usages, list | tuple) or not all(isinstance(u, str) for u in usages):
        raise PermanentError("spec.usages must be a list of strings")
    return tuple(usages)


@dataclass(frozen=True)
class RequestKind:
    """How one kind of request is read and answered. ``resource`` is (group, version, plural)."""

    name: str
    group: str
    version: str
    plural: str
    namespaced: bool
    #: Whether Pending and Denied are written to the object (Kubernetes CSRs get neither).
    writes_progress: bool

    def collection(self, namespace: str | None = None) -> str:
        """The path of all objects of this kind, or of one namespace's (namespaced kinds only)."""
        scope = f"namespaces/{namespace}/" if namespace and self.namespaced else ""
        return f"/apis/{self.group}/{self.version}/{scope}{self.plural}"

    def path(self, namespace: str, name: str, subresource: str = "") -> str:
        scope = f"namespaces/{namespace}/" if self.namespaced else ""
        path = f"/apis/{self.group}/{self.version}/{scope}{self.plural}/{name}"
        return f"{path}/{subresource}" if subresource else path

    def issuer_of(self, body: Mapping[str, Any]) -> IssuerRef | None:
        raise NotImplementedError

    def signing_request(self, body: Mapping[str, Any]) -> SigningRequest:
        raise NotImplementedError

    def requester(self, body: Mapping[str, Any]) -> str:
        return str((body.get("spec") or {}).get("username", ""))

    def is_finished(self, status: Mapping[str, Any] | None) -> bool:
        raise NotImplementedError

    def issued(self, status: Mapping[str, Any], bundle: PEMBundle, now: datetime) -> dict[str, Any]:
        raise NotImplementedError

    def failed(self, status: Mapping[str, Any], message: str, now: datetime) -> dict[str, Any]:
        raise NotImplementedError

    async def authorize(self, client: KubeClient, body: Mapping[str, Any], ref: IssuerRef) -> None:
        """Refuse (PermanentError) a requester who may not use the issuer; by default anyone may."""


class CertificateRequestKind(RequestKind):
    def issuer_of(self, body: Mapping[str, Any]) -> IssuerRef | None:
        ref = (body.get("spec") or {}).get("issuerRef") or {}
        if ref.get("group") != api.GROUP or ref.get("kind") not in api.ISSUER_KINDS:
            return None
        namespace = (body.get("metadata") or {}).get("namespace")
        return issuer_ref(str(ref["kind"]), namespace, str(ref.get("name", "")))

    def signing_request(self, body: Mapping[str, Any]) -> SigningRequest:
        spec = body.get("spec") or {}
        duration = spec.get("duration")
        return SigningRequest(
            csr_pem=_pem_from_base64(spec.get("request"), "spec.request"),
            duration=parse_duration(str(duration)) if duration else None,
            is_ca=bool(spec.get("isCA", False)),
            usages=_usages(spec.get("usages")),
        )

    def is_finished(self, status: Mapping[str, Any] | None) -> bool:
        return request_status.is_finished(status)

    def issued(self, status: Mapping[str, Any], bundle: PEMBundle, now: datetime) -> dict[str, Any]:
        return request_status.issued(status.get("conditions"), bundle.chain_pem, bundle.ca_pem, now)

    def failed(self, status: Mapping[str, Any], message: str, now: datetime) -> dict[str, Any]:
        return request_status.failed(status.get("conditions"), message, now)


class SigningRequestKind(RequestKind):
    """Kubernetes ``certificates.k8s.io/v1`` CSRs addressed to our signer names."""

    def issuer_of(self, body: Mapping[str, Any]) -> IssuerRef | None:
        return issuer_of_signer(str((body.get("spec") or {}).get("signerName", "")))

    def signing_request(self, body: Mapping[str, Any]) -> SigningRequest:
        spec = body.get("spec") or {}
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        duration: timedelta | None = None
        if spec.get("expirationSeconds") is not None:
            seconds = spec["expirationSeconds"]
            if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds <= 0:
                raise PermanentError("spec.expirationSeconds must be a positive whole number")
            duration = timedelta(seconds=seconds)
        elif annotations.get(CSR_DURATION_ANNOTATION):
            duration = parse_duration(str(annotations[CSR_DURATION_ANNOTATION]))
        return SigningRequest(
            csr_pem=_pem_from_base64(spec.get("request"), "spec.request"),
            duration=duration,
            is_ca=str(annotations.get(CSR_IS_CA_ANNOTATION, "")).lower() == "true",
            usages=_usages(spec.get("usages")),
        )

    def is_finished(self, status: Mapping[str, Any] | None) -> bool:
        status = status or {}
        if status.get("certificate"):
            return True
        return st.is_true(status.get("conditions"), "Failed") or st.is_true(
            status.get("conditions"), "Denied"
        )

    def issued(self, status: Mapping[str, Any], bundle: PEMBundle, now: datetime) -> dict[str, Any]:
        return {"certificate": st.pem_field(bundle.chain_pem)}

    async def authorize(self, client: KubeClient, body: Mapping[str, Any], ref: IssuerRef) -> None:
        """A CSR is cluster-scoped, so whoever may create one could name any namespace's issuer. As
        cert-manager does, the requester must be allowed to ``reference`` the signer (by its exact
        name or the wildcard of its kind), asked of the API server with SubjectAccessReviews."""
        spec = body.get("spec") or {}
        signer = signer_name(ref)
        subject = {
            "user": spec.get("username", ""),
            "groups": list(spec.get("groups") or []),
            "uid": spec.get("uid", ""),
            "extra": dict(spec.get("extra") or {}),
        }
        for name in (signer, signer.split("/", 1)[0] + "/*"):
            attributes = {
                "group": "certificates.k8s.io",
                "resource": "signers",
                "verb": "reference",
                "name": name,
            }
            if ref[1]:
                attributes["namespace"] = ref[1]
            if await client.subject_access_review({**subject, "resourceAttributes": attributes}):
                return
        raise PermanentError(f"requester {subject['user']!r} is not allowed to reference signer {signer!r}")

    def failed(self, status: Mapping[str, Any], message: str, now: datetime) -> dict[str, Any]:
        conditions = [dict(c) for c in status.get("conditions") or () if c.get("type") != "Failed"]
        stamp = rfc3339(now)
        conditions.append(
            {
                "type": "Failed",
                "status": "True",
                "reason": "SigningError",
                "message": message,
                "lastUpdateTime": stamp,
                "lastTransitionTime": stamp,
            }
        )
        return {"conditions": conditions}


def issuer_of_signer(signer: str) -> IssuerRef | None:
    """``trustedissuers.trusted-issuer.dev/<namespace>.<name>`` or ``trustedclusterissuers...<name>``.

    A namespace is a DNS label (no dots), so the first dot separates it from the issuer's name."""
    match = _SIGNER.match(signer)
    if match is None:
        return None
    rest = match["rest"]
    if match["plural"] == api.CLUSTER_ISSUER_PLURAL:
        return issuer_ref(api.CLUSTER_ISSUER_KIND, None, rest)
    namespace, dot, name = rest.partition(".")
    if not dot or not namespace or not name:
        return None
    return issuer_ref(api.ISSUER_KIND, namespace, name)


CERTIFICATE_REQUESTS = CertificateRequestKind(
    "CertificateRequest",
    api.CERT_MANAGER_GROUP,
    api.CERT_MANAGER_VERSION,
    api.CERTIFICATE_REQUEST_PLURAL,
    namespaced=True,
    writes_progress=True,
)
SIGNING_REQUESTS = SigningRequestKind(
    "CertificateSigningRequest",
    "certificates.k8s.io",
    "v1",
    "certificatesigningrequests",
    namespaced=False,
    writes_progress=False,
)
KINDS = {kind.plural: kind for kind in (CERTIFICATE_REQUESTS, SIGNING_REQUESTS)}
