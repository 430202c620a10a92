"""The service mesh's two ways in: Istio's Kubernetes CSR mode and istio-csr's CertificateRequests.

The CertificateRequests here have istio-csr's exact shape (taken from its source,
pkg/certmanager/certmanager.go): generateName ``istio-csr-``, the identities annotation, isCA false,
usages client auth + server auth, a 1h duration, a CSR with only a SPIFFE URI SAN (critical, empty
subject), and deletion right after the certificate is read.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from trusted_issuer_sandbox import allow_rows

from tests.csrs import make_csr
from tests.operator.conftest import Cluster
from tests.operator.kube import (
    CR_PATH,
    ISSUER_PATH,
    certificate_request,
    condition,
    issuer_body,
    pem,
)
from tests.verifiers import openssl_verify, pkilint_errors

CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
TRUST_DOMAIN = "spiffe://cluster.local/"


def _issuer(cluster: Cluster, namespace: str, name: str, **kwargs: Any) -> dict[str, Any]:
    cluster.kube.namespace(namespace)
    path = ISSUER_PATH.format(ns=namespace)
    cluster.kube.create(path, issuer_body(name, namespace=namespace, **kwargs))
    return cluster.kube.wait(f"{path}/{name}", lambda o: condition(o).get("status") == "True")


def _k8s_csr(name: str, csr_pem: bytes, signer: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64.b64encode(csr_pem).decode(),
            "signerName": signer,
            "usages": ["digital signature", "key encipherment", "client auth", "server auth"],
            **spec,
        },
    }


def _approve_csr(cluster: Cluster, name: str) -> None:
    condition_ = {"type": "Approved", "status": "True", "reason": "Test", "message": "approved by the tests"}
    cluster.kube.call(
        "PATCH",
        f"{CSR_PATH}/{name}/approval",
        {"status": {"conditions": [condition_]}},
        "application/merge-patch+json",
    )


def _csr_done(obj: dict[str, Any]) -> bool:
    status = obj.get("status", {})
    return bool(status.get("certificate")) or any(
        c.get("type") == "Failed" for c in status.get("conditions", [])
    )


def _spiffe_csr(namespace: str, account: str) -> bytes:
    return make_csr(uris=[f"spiffe://cluster.local/ns/{namespace}/sa/{account}"])


@pytest.fixture(scope="module")
def mesh(cluster: Cluster) -> Cluster:
    # The sandbox's SubjectAccessReview answers: the sandbox user (every CSR's requester here) may
    # reference the istio-system issuer's signer and nothing else.
    cluster.sandbox.access_policy = allow_rows(
        [
            (
                "sandbox-admin",
                "reference",
                "signers.certificates.k8s.io",
                "trustedissuers.trusted-issuer.dev/istio-system.mesh",
            )
        ]
    )
    _issuer(cluster, "istio-system", "mesh", policy={"uriPrefixes": [TRUST_DOMAIN], "maxDuration": "24h"})
    return cluster


def test_kubernetes_csr_is_signed_for_our_signer_name(mesh: Cluster) -> None:
    kube = mesh.kube
    issuer = kube.get(f"{ISSUER_PATH.format(ns='istio-system')}/mesh")
    name = f"istiod-{uuid.uuid4().hex[:8]}"
    kube.create(
        CSR_PATH,
        _k8s_csr(
            name,
            _spiffe_csr("default", "web"),
            "trustedissuers.trusted-issuer.dev/istio-system.mesh",
            expirationSeconds=3600,
        ),
    )
    time.sleep(0.5)
    assert not kube.get(f"{CSR_PATH}/{name}").get("status", {}).get("certificate"), "signed before approval"
    _approve_csr(mesh, name)
    done = kube.wait(f"{CSR_PATH}/{name}", _csr_done)
    chain = pem(done["status"].get("certificate"))
    assert chain, done["status"]
    root = issuer["status"]["ca"].encode()
    openssl_verify(chain, root, purpose="sslclient")
    openssl_verify(chain, root, purpose="sslserver")
    assert pkilint_errors(chain) == []
    leaf = x509.load_pem_x509_certificate(chain)
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert 3600 <= lifetime.total_seconds() <= 3600 + 301  # expirationSeconds, plus the 5 min backdating
    # Nothing of ours on the object but the certificate: no conditions, annotations or finalizers.
    assert [c["type"] for c in done["status"].get("conditions", [])] == ["Approved"]
    assert not done["metadata"].get("finalizers")
    assert not [
        k for k in (done["metadata"].get("annotations") or {}) if "trusted-issuer" in k or "kopf" in k
    ]


def test_kubernetes_csr_duration_and_is_ca_annotations(mesh: Cluster) -> None:
    kube, name = mesh.kube, f"annotated-{uuid.uuid4().hex[:8]}"
    body = _k8s_csr(
        name, _spiffe_csr("default", "ann"), "trustedissuers.trusted-issuer.dev/istio-system.mesh"
    )
    body["metadata"]["annotations"] = {"experimental.cert-manager.io/request-duration": "2h"}
    kube.create(CSR_PATH, body)
    _approve_csr(mesh, name)
    leaf = x509.load_pem_x509_certificate(
        pem(kube.wait(f"{CSR_PATH}/{name}", _csr_done)["status"]["certificate"])
    )
    assert abs((leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds() - 7200 - 300) < 5

    ca_name = f"ca-{uuid.uuid4().hex[:8]}"
    body = _k8s_csr(
        ca_name, make_csr(common_name="sub"), "trustedissuers.trusted-issuer.dev/istio-system.mesh"
    )
    body["metadata"]["annotations"] = {"experimental.cert-manager.io/request-is-ca": "true"}
    kube.create(CSR_PATH, body)
    _approve_csr(mesh, ca_name)
    failed = kube.wait(f"{CSR_PATH}/{ca_name}", _csr_done)
    failure = next(c for c in failed["status"]["conditions"] if c["type"] == "Failed")
    assert "allowCA" in failure["message"]
    assert not failed["status"].get("certificate")


def test_requester_who_may_not_reference_the_signer_is_refused(mesh: Cluster) -> None:
    kube = mesh.kube
    _issuer(mesh, "payments", "vault")  # an issuer the sandbox user is not allowed to reference
    name = f"sneaky-{uuid.uuid4().hex[:8]}"
    kube.create(
        CSR_PATH,
        _k8s_csr(name, _spiffe_csr("payments", "x"), "trustedissuers.trusted-issuer.dev/payments.vault"),
    )
    _approve_csr(mesh, name)
    failed = kube.wait(f"{CSR_PATH}/{name}", _csr_done)
    failure = next(c for c in failed["status"]["conditions"] if c["type"] == "Failed")
    assert "not allowed to reference signer" in failure["message"]
    assert not failed["status"].get("certificate")


def test_csr_for_another_signer_is_left_alone(mesh: Cluster) -> None:
    kube, name = mesh.kube, f"kubelet-{uuid.uuid4().hex[:8]}"
    kube.create(CSR_PATH, _k8s_csr(name, _spiffe_csr("default", "k"), "kubernetes.io/kube-apiserver-client"))
    _approve_csr(mesh, name)
    ours = f"ours-{uuid.uuid4().hex[:8]}"
    kube.create(
        CSR_PATH,
        _k8s_csr(ours, _spiffe_csr("default", "o"), "trustedissuers.trusted-issuer.dev/istio-system.mesh"),
    )
    _approve_csr(mesh, ours)
    kube.wait(f"{CSR_PATH}/{ours}", _csr_done)
    status = kube.get(f"{CSR_PATH}/{name}")["status"]
    assert not status.get("certificate")
    assert [c["type"] for c in status.get("conditions", [])] == ["Approved"]


def test_istio_csr_shaped_requests_are_issued_and_deleted(mesh: Cluster) -> None:
    kube = mesh.kube
    path = CR_PATH.format(ns="istio-system")
    roots = kube.get(f"{ISSUER_PATH.format(ns='istio-system')}/mesh")["status"]["ca"].encode()
    for account in ("productpage", "reviews", "ratings"):
        identity = f"spiffe://cluster.local/ns/bookinfo/sa/{account}"
        body = certificate_request(
            "istio-csr-",
            make_csr(uris=[identity]),
            issuer="mesh",
            duration="1h",
            usages=["client auth", "server auth"],
            generate_name=True,
        )
        body["metadata"]["annotations"] = {"istio.cert-manager.io/identities": identity}
        created = kube.create(path, body)
        name = created["metadata"]["name"]
        assert name.startswith("istio-csr-")
        kube.approve("istio-system", name)
        done = kube.wait(
            f"{path}/{name}",
            lambda o: bool(o.get("status", {}).get("certificate")) or condition(o).get("reason") == "Failed",
        )
        kube.delete(f"{path}/{name}")  # istio-csr deletes the request as soon as it has read it

        assert condition(done)["reason"] == "Issued", done["status"]
        chain, ca = pem(done["status"]["certificate"]), pem(done["status"]["ca"])
        assert ca == roots
        openssl_verify(chain, ca, purpose="sslclient")
        openssl_verify(chain, ca, purpose="sslserver")
        leaf = x509.load_pem_x509_certificate(chain)
        assert leaf.subject == x509.Name([])
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert san.critical and san.value.get_values_for_type(x509.UniformResourceIdentifier) == [identity]
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
        with pytest.raises(x509.ExtensionNotFound):  # cert-manager's semantics: EKU-only usages, no KeyUsage
            leaf.extensions.get_extension_for_class(x509.KeyUsage)
        assert abs((leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds() - 3600 - 300) < 5


def test_identity_outside_the_trust_domain_is_refused(mesh: Cluster) -> None:
    kube, path = mesh.kube, CR_PATH.format(ns="istio-system")
    for name, uri in (
        ("other-domain", "spiffe://evil.local/ns/bookinfo/sa/x"),
        ("dot-segments", "spiffe://cluster.local/ns/../../evil/sa/x"),
    ):
        body = certificate_request(
            name, make_csr(uris=[uri]), issuer="mesh", duration="1h", usages=["client auth", "server auth"]
        )
        kube.create(path, body)
        kube.approve("istio-system", name)
        failed = kube.wait(f"{path}/{name}", lambda o: condition(o).get("reason") in ("Failed", "Issued"))
        assert condition(failed)["reason"] == "Failed"
        assert "URI" in condition(failed)["message"]


def test_burst_of_500_workload_csrs_all_issued(mesh: Cluster) -> None:
    kube = mesh.kube
    run = uuid.uuid4().hex[:6]
    names = [f"burst-{run}-{i:03d}" for i in range(500)]
    csrs = [_spiffe_csr(f"ns{i % 30}", f"sa{i}") for i in range(500)]  # 30+ deployments restarting
    for name, csr in zip(names, csrs, strict=True):
        kube.create(
            CSR_PATH,
            _k8s_csr(
                name, csr, "trustedissuers.trusted-issuer.dev/istio-system.mesh", expirationSeconds=3600
            ),
        )
        _approve_csr(mesh, name)
    deadline = time.monotonic() + 180
    pending = set(names)
    while pending and time.monotonic() < deadline:
        items = kube.get(CSR_PATH)["items"]
        done = {i["metadata"]["name"] for i in items if i.get("status", {}).get("certificate")}
        failed = [
            i
            for i in items
            if i["metadata"]["name"] in pending and _csr_done(i) and not i["status"].get("certificate")
        ]
        assert not failed, failed[0]["status"]
        pending -= done
        time.sleep(0.5)
    assert not pending, f"{len(pending)} requests left behind"
    roots = kube.get(f"{ISSUER_PATH.format(ns='istio-system')}/mesh")["status"]["ca"].encode()
    openssl_verify(pem(kube.get(f"{CSR_PATH}/{names[-1]}")["status"]["certificate"]), roots)
