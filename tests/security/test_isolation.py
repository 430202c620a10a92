"""Namespaces are walls: a namespaced issuer cannot use another namespace's token profile or key, and
cannot serve another namespace's requests, whether CertificateRequests or Kubernetes CSRs."""

from __future__ import annotations

import time

from trusted_issuer_sandbox import allow_rows

from tests.csrs import make_csr
from tests.operator.kube import CLUSTER_ISSUER_PATH, condition, issuer_body
from tests.security.conftest import SecureCluster
from tests.security.scenario import (
    create_issuer,
    csr_done,
    kubernetes_csr,
    not_ready,
    ready_issuer,
    request,
)


def test_a_profile_open_to_one_namespace_is_closed_to_others(secure: SecureCluster) -> None:
    kube = secure.cluster.kube
    ready_issuer(kube, "team-a", "allowed", profile="team-a-only")  # the control: its own namespace
    refused = not_ready(kube, create_issuer(kube, "team-b", "borrower", profile="team-a-only"))
    assert condition(refused)["reason"] == "ProfileNotAllowed"
    assert "keyHandle" not in refused["status"]
    kube.create(CLUSTER_ISSUER_PATH, issuer_body("cluster-borrower", profile="team-a-only"))
    refused = not_ready(kube, f"{CLUSTER_ISSUER_PATH}/cluster-borrower")
    assert condition(refused)["reason"] == "ProfileNotAllowed"
    assert "keyHandle" not in refused["status"]


def test_another_namespaces_key_cannot_be_adopted(secure: SecureCluster) -> None:
    kube = secure.cluster.kube
    victim = ready_issuer(kube, "victim", "ca")
    victim_key = victim["status"]["keyHandle"]
    label = victim_key["keyLabel"]
    assert label.startswith("ti:ns/victim/")
    attempts = {
        "namespaced-issuer-takes-victim-label": ("thief", label),
        "label-with-dot-segments": ("dots", f"ti:ns/thief/../victim/{label.split('/', 3)[3]}"),
    }
    for name, (issuer, wanted) in attempts.items():
        body = issuer_body(issuer, namespace="thief")
        body["spec"]["key"]["adopt"] = {"keyLabel": wanted}
        refused = not_ready(kube, create_issuer(kube, "thief", issuer, body=body))
        assert condition(refused)["reason"] in ("KeyOutOfScope", "KeyNotFound", "InvalidSpec"), (
            name,
            refused,
        )
        handle = refused["status"].get("keyHandle") or {}
        assert handle.get("publicKeySHA256") != victim_key["publicKeySHA256"], name
    body = issuer_body("cluster-thief")
    body["spec"]["key"]["adopt"] = {"keyLabel": label}
    kube.create(CLUSTER_ISSUER_PATH, body)
    refused = not_ready(kube, f"{CLUSTER_ISSUER_PATH}/cluster-thief")
    assert condition(refused)["reason"] == "KeyOutOfScope"
    assert "keyHandle" not in refused["status"]


def test_a_namespaced_issuer_never_serves_another_namespaces_requests(secure: SecureCluster) -> None:
    kube = secure.cluster.kube
    ready_issuer(kube, "home", "ca")
    kube.namespace("elsewhere")
    path = request(kube, "elsewhere", "sneaky", make_csr(dns=["s.example.com"]), "ca")
    pending = kube.wait(path, lambda o: condition(o).get("reason") == "Pending")
    assert "TrustedIssuer elsewhere/ca" in condition(pending)["message"]
    time.sleep(2)
    assert not kube.get(path)["status"].get("certificate")


def test_a_kubernetes_csr_for_another_namespaces_issuer_is_refused(secure: SecureCluster) -> None:
    cluster, kube = secure.cluster, secure.cluster.kube
    ready_issuer(kube, "payments", "vault")
    ready_issuer(kube, "web", "ca")
    # The requester may reference the web issuer's signer only.
    previous = cluster.sandbox.access_policy
    cluster.sandbox.access_policy = allow_rows(
        [("*", "reference", "signers.certificates.k8s.io", "trustedissuers.trusted-issuer.dev/web.ca")]
    )
    try:
        csr = make_csr(dns=["x.example.com"])
        refused = kube.wait(
            kubernetes_csr(kube, "to-payments", csr, "trustedissuers.trusted-issuer.dev/payments.vault"),
            csr_done,
        )
        allowed = kube.wait(
            kubernetes_csr(kube, "to-web", csr, "trustedissuers.trusted-issuer.dev/web.ca"), csr_done
        )
    finally:
        cluster.sandbox.access_policy = previous
    failure = next(c for c in refused["status"]["conditions"] if c["type"] == "Failed")
    assert "not allowed to reference signer" in failure["message"]
    assert not refused["status"].get("certificate")
    assert allowed["status"].get("certificate"), allowed["status"]
