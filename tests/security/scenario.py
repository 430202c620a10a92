"""Shared steps of the security tests: issuers, requests and Kubernetes CSRs against the canary cluster."""

from __future__ import annotations

import base64
import time
from typing import Any

from tests.operator.kube import CR_PATH, ISSUER_PATH, Kube, certificate_request, condition, issuer_body

CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"


def ready_issuer(kube: Kube, namespace: str, name: str, **kwargs: Any) -> dict[str, Any]:
    created = create_issuer(kube, namespace, name, **kwargs)
    return kube.wait(created, lambda o: condition(o).get("status") == "True", timeout=90)


def create_issuer(kube: Kube, namespace: str, name: str, **kwargs: Any) -> str:
    """Create a TrustedIssuer (or with ``body`` a prepared one); returns its path."""
    kube.namespace(namespace)
    path = ISSUER_PATH.format(ns=namespace)
    body = kwargs.pop("body", None) or issuer_body(name, namespace=namespace, **kwargs)
    kube.create(path, body)
    return f"{path}/{name}"


def not_ready(kube: Kube, path: str) -> dict[str, Any]:
    return kube.wait(path, lambda o: condition(o).get("status") == "False", timeout=90)


def finished(obj: dict[str, Any]) -> bool:
    ready = condition(obj)
    return ready.get("status") == "True" or ready.get("reason") in ("Failed", "Denied")


def request(
    kube: Kube, namespace: str, name: str, csr: bytes, issuer: str, *, approve: bool = True, **kwargs: Any
) -> str:
    path = CR_PATH.format(ns=namespace)
    kube.create(path, certificate_request(name, csr, issuer=issuer, **kwargs))
    if approve:
        kube.approve(namespace, name)
    return f"{path}/{name}"


def kubernetes_csr(kube: Kube, name: str, csr: bytes, signer: str) -> str:
    kube.create(
        CSR_PATH,
        {
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": {
                "request": base64.b64encode(csr).decode(),
                "signerName": signer,
                "usages": ["digital signature", "client auth"],
            },
        },
    )
    approval = {
        "type": "Approved",
        "status": "True",
        "reason": "tests",
        "message": "tests approve",
        "lastUpdateTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    kube.call(
        "PATCH",
        f"{CSR_PATH}/{name}/approval",
        {"status": {"conditions": [approval]}},
        "application/merge-patch+json",
    )
    return f"{CSR_PATH}/{name}"


def csr_done(obj: dict[str, Any]) -> bool:
    status = obj.get("status", {})
    return bool(status.get("certificate")) or any(
        c.get("type") == "Failed" for c in status.get("conditions", [])
    )
