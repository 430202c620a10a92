"""Kubernetes CertificateSigningRequests for our signer names on a real kube-apiserver: the requester's
``reference`` right on the signer is decided by the real SubjectAccessReview, approval is ``kubectl
certificate approve``, and the API server itself checks the operator's ``sign`` right (the chart's
``signers`` rule) before it accepts ``status.certificate``."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from tests.cluster.conftest import Live
from tests.cluster.kube import ClusterKube
from tests.cluster.test_requests import issuer_ca, ready_issuer
from tests.csrs import make_csr
from tests.operator.kube import pem
from tests.verifiers import openssl_verify

CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"


def _apply(live: Live, *objects: dict[str, Any]) -> None:
    import yaml

    live.plane.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(objects))


def _requester(live: Live, user: str, signer: str | None) -> ClusterKube:
    """A user who may create and read CSRs, and (if ``signer``) reference that signer name."""
    rules: list[dict[str, Any]] = [
        {
            "apiGroups": ["certificates.k8s.io"],
            "resources": ["certificatesigningrequests"],
            "verbs": ["create", "get"],
        }
    ]
    if signer:
        rules.append(
            {
                "apiGroups": ["certificates.k8s.io"],
                "resources": ["signers"],
                "verbs": ["reference"],
                "resourceNames": [signer],
            }
        )
    _apply(
        live,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": user},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": user},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": user},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
    )
    return live.tenant(user)


def _submit(kube: ClusterKube, name: str, signer: str) -> None:
    kube.create(
        CSR_PATH,
        {
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": {
                "request": base64.b64encode(make_csr(dns=[f"{name}.example.com"])).decode(),
                "signerName": signer,
                "usages": ["digital signature", "client auth"],
            },
        },
    )


def _done(obj: dict[str, Any]) -> bool:
    status = obj.get("status", {})
    return bool(status.get("certificate")) or any(
        c.get("type") == "Failed" for c in status.get("conditions", [])
    )


def test_csr_is_signed_only_for_a_requester_who_may_reference_the_signer(live: Live) -> None:
    namespace, name = f"csr-{uuid.uuid4().hex[:6]}", "ca"
    issuer = ready_issuer(live.kube, namespace, name)
    signer = f"trustedissuers.trusted-issuer.dev/{namespace}.{name}"
    allowed = _requester(live, f"allowed-{namespace}", signer)
    refused = _requester(live, f"refused-{namespace}", None)
    # The control: the requester's rights are what the SubjectAccessReview decides, nothing else differs.
    other = _requester(
        live, f"other-signer-{namespace}", f"trustedissuers.trusted-issuer.dev/{namespace}.other"
    )
    good, bad, wrong = f"good-{namespace}", f"bad-{namespace}", f"wrong-{namespace}"
    _submit(allowed, good, signer)
    _submit(refused, bad, signer)
    _submit(other, wrong, signer)
    for csr in (good, bad, wrong):
        live.plane.kubectl("certificate", "approve", csr)
    signed = live.kube.wait(f"{CSR_PATH}/{good}", _done, timeout=60)
    assert signed["spec"]["username"] == f"allowed-{namespace}"
    openssl_verify(pem(signed["status"]["certificate"]), issuer_ca(issuer), purpose="sslclient")
    for csr in (bad, wrong):
        failed = live.kube.wait(f"{CSR_PATH}/{csr}", _done, timeout=60)
        assert not failed["status"].get("certificate"), csr
        reasons = [c for c in failed["status"]["conditions"] if c["type"] == "Failed"]
        assert reasons and "reference" in reasons[0]["message"], reasons


def test_unapproved_csr_is_not_signed(live: Live) -> None:
    import time

    namespace, name = f"csr-{uuid.uuid4().hex[:6]}", "ca"
    ready_issuer(live.kube, namespace, name)
    signer = f"trustedissuers.trusted-issuer.dev/{namespace}.{name}"
    requester = _requester(live, f"waiting-{namespace}", signer)
    csr = f"waiting-{namespace}"
    _submit(requester, csr, signer)
    time.sleep(3)
    assert not live.kube.get(f"{CSR_PATH}/{csr}").get("status", {}).get("certificate")
    live.plane.kubectl("certificate", "approve", csr)
    assert live.kube.wait(f"{CSR_PATH}/{csr}", _done, timeout=60)["status"].get("certificate")
