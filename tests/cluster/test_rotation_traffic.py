"""A CA key rotation under live mTLS traffic, on the real control plane with cert-manager's controllers
(issue 16): zero failed handshakes and zero failed issuances across Distributing -> Signing -> Retiring
-> Done, with counts printed; and the same workloads moved to a new CA with no distribution phase, which
must fail: the proof that the harness can see an outage.

Two Certificates (a server and a client) get 30 s certificates that cert-manager renews about every 20 s.
Each workload mounts its Secret and the issuer's trust-bundle ConfigMap as a kubelet would
(``mesh_traffic.ProjectedVolume``: ``..data`` swapped atomically) and reloads on change; the client
handshakes mTLS with the server eight times a second and trusts only the published bundle, never the
Secret's ``ca.crt``. istio-csr's half of the issue is not here: the Go module proxy serves none of its
versions."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from tests.cluster.conftest import Live
from tests.cluster.mesh_traffic import Counts, MTLSClient, MTLSServer, ProjectedVolume, Workload
from tests.cluster.test_cert_manager import (  # noqa: F401  # cert_manager: the module's fixture, reused
    CERT_PATH,
    CertManager,
    cert_manager,
    certificate,
    wait_certificate,
)
from tests.cluster.test_requests import ready_issuer, unique
from tests.operator.kube import CR_PATH, ISSUER_PATH, condition
from tests.verifiers import openssl_verify

LIFETIME = 30
POLICY = {"maxDuration": f"{LIFETIME}s", "minDuration": "5s"}
USAGES = ["digital signature", "key encipherment", "server auth", "client auth"]
CLUSTER_TRUST_BUNDLES = "/apis/certificates.k8s.io/v1/clustertrustbundles"


@dataclass
class Mesh:
    namespace: str
    issuer: str
    counts: Counts
    volumes: list[ProjectedVolume]
    server: MTLSServer
    client: MTLSClient

    def stop(self) -> None:
        self.client.stop()
        self.server.stop()
        for volume in self.volumes:
            volume.stop()


def phase(obj: dict[str, Any]) -> str | None:
    return (obj.get("status", {}).get("rotation") or {}).get("phase")


def start_mesh(live: Live, cm: CertManager, workdir: Path, prefix: str) -> Mesh:
    kube, namespace = live.kube, unique(prefix)
    issuer = unique("mesh-ca")
    ready_issuer(kube, namespace, issuer, policy=POLICY)
    for name in ("server", "client"):
        kube.create(
            CERT_PATH.format(ns=namespace),
            certificate(name, issuer, "TrustedIssuer", dns=[f"{name}.mesh.example.com"], usages=USAGES),
        )
    for name in ("server", "client"):
        wait_certificate(kube, namespace, name, cm=cm)
    bundle = f"trusted-issuer-{issuer}-bundle"
    volumes = [
        ProjectedVolume(kube.clone(), namespace, f"{name}-tls", bundle, workdir / name)
        for name in ("server", "client")
    ]
    for volume in volumes:
        volume.start()
    counts = Counts()
    server = MTLSServer(Workload(volumes[0].root), counts)
    client = MTLSClient(Workload(volumes[1].root), server.port, "server.mesh.example.com", counts)
    server.start()
    client.start()
    return Mesh(namespace, issuer, counts, volumes, server, client)


def issuance_failures(live: Live, namespace: str) -> list[tuple[str, Any]]:
    """CertificateRequests that ended other than Issued, and Certificates that recorded a failed
    issuance (cert-manager keeps one old request per Certificate: its revisionHistoryLimit; a
    Certificate's lastFailureTime and failedIssuanceAttempts remember the ones it deleted)."""
    failed: list[tuple[str, Any]] = [
        (r["metadata"]["name"], condition(r))
        for r in live.kube.get(CR_PATH.format(ns=namespace))["items"]
        if condition(r).get("reason") in ("Failed", "Denied")
    ]
    for cert in live.kube.get(CERT_PATH.format(ns=namespace))["items"]:
        status = cert.get("status") or {}
        if status.get("lastFailureTime") or status.get("failedIssuanceAttempts"):
            failed.append((cert["metadata"]["name"], status))
    return failed


def revisions(live: Live, namespace: str) -> dict[str, int]:
    """Each Certificate's revision: how many certificates cert-manager has had issued for it."""
    return {
        c["metadata"]["name"]: int((c.get("status") or {}).get("revision", 0))
        for c in live.kube.get(CERT_PATH.format(ns=namespace))["items"]
    }


def signed_by(pem: bytes, ca: x509.Certificate) -> bool:
    try:
        x509.load_pem_x509_certificates(pem)[0].verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def signing_ca(obj: dict[str, Any]) -> x509.Certificate:
    (pem,) = [c["pem"] for c in obj["status"]["caCertificates"] if c.get("use") == "Signing"]
    return x509.load_pem_x509_certificate(pem.encode())


@pytest.fixture
def mesh(live: Live, cert_manager: CertManager, tmp_path: Path) -> Iterator[Mesh]:  # noqa: F811
    running = start_mesh(live, cert_manager, tmp_path, "mesh-rotate")
    try:
        yield running
    finally:
        running.stop()


def test_a_full_rotation_under_mtls_traffic_fails_no_handshake(live: Live, mesh: Mesh) -> None:
    kube = live.kube
    path = f"{ISSUER_PATH.format(ns=mesh.namespace)}/{mesh.issuer}"
    time.sleep(5)
    assert mesh.counts.handshakes > 10, mesh.counts.summary()
    revisions_before = revisions(live, mesh.namespace)
    before = kube.get(path)
    old_ca = signing_ca(before)
    started = time.monotonic()
    # overlap 10s: the operator raises the distribution to one certificate lifetime (30 s).
    kube.call(
        "PATCH",
        path,
        {"spec": {"key": {"rotation": {"generation": 1, "overlap": "10s"}}}},
        "application/merge-patch+json",
    )
    distributing = kube.wait(path, lambda o: phase(o) == "Distributing", timeout=60)
    assert distributing["status"]["rotation"]["distribution"] == "0h0m30s"
    signer = distributing["status"]["trustBundle"]["signerName"]
    # The ClusterTrustBundle, on the real API server: the same bundle, old and new CA, under our signer.
    ctb = kube.get(f"{CLUSTER_TRUST_BUNDLES}/{distributing['status']['trustBundle']['clusterTrustBundle']}")
    assert ctb["spec"]["signerName"] == signer
    timeline = [("Distributing", time.monotonic() - started)]
    for wanted in ("Signing", "Retiring", "Done"):
        kube.wait(path, lambda o, wanted=wanted: phase(o) in _at_or_after(wanted), timeout=LIFETIME * 3)
        timeline.append((wanted, time.monotonic() - started))
    done = kube.get(path)
    new_ca = signing_ca(done)
    # After Done, one more renewal of each under the shrunk bundle, still without a failure.
    for name in ("server", "client"):
        wait_certificate(
            kube,
            mesh.namespace,
            name,
            lambda o, name=name: _secret_signed_by(kube, mesh.namespace, f"{name}-tls", new_ca),
            timeout=LIFETIME * 2,
        )
    time.sleep(LIFETIME * 2 / 3)
    mesh.stop()
    failed_issuance = issuance_failures(live, mesh.namespace)
    summary = {
        **mesh.counts.summary(),
        "issuance_failures": len(failed_issuance),
        "issued_during_the_test": {
            name: count - revisions_before[name] for name, count in revisions(live, mesh.namespace).items()
        },
        "bundle_versions": [v.versions for v in mesh.volumes],
        "phases_at_seconds": [(p, round(t, 1)) for p, t in timeline],
        "total_seconds": round(time.monotonic() - started, 1),
    }
    print(f"\nrotation under mTLS traffic: {summary}")
    assert not mesh.counts.failures, (summary, mesh.counts.failures[:5])
    assert not mesh.counts.server_failures, (summary, mesh.counts.server_failures[:5])
    assert not failed_issuance, failed_issuance
    assert mesh.counts.handshakes > 8 * 60, summary  # several per second throughout
    # Each workload renewed under the old key, across the switch and after Done (every ~20 s).
    assert all(count >= 3 for count in summary["issued_during_the_test"].values()), summary
    # The old CA is gone from the ConfigMap and the ClusterTrustBundle; what is left verifies the leaves.
    bundle = kube.get(f"/api/v1/namespaces/{mesh.namespace}/configmaps/trusted-issuer-{mesh.issuer}-bundle")
    trusted = x509.load_pem_x509_certificates(bundle["data"]["ca.crt"].encode())
    assert trusted == [new_ca] and old_ca not in trusted
    ctb = kube.get(f"{CLUSTER_TRUST_BUNDLES}/{done['status']['trustBundle']['clusterTrustBundle']}")
    assert ctb["spec"]["trustBundle"] == bundle["data"]["ca.crt"]
    for name in ("server", "client"):
        secret = kube.get(f"/api/v1/namespaces/{mesh.namespace}/secrets/{name}-tls")
        leaf = _b64(secret["data"]["tls.crt"])
        openssl_verify(leaf, bundle["data"]["ca.crt"].encode(), purpose="sslserver")


def test_moving_to_a_new_ca_without_distribution_fails_handshakes(live: Live, mesh: Mesh) -> None:
    """The control: the same workloads switched at once to a CA their bundle has never held (what a
    rotation without its Distributing phase amounts to). The client must see failures; if it did not,
    the zero above would prove nothing."""
    kube = live.kube
    time.sleep(5)
    assert mesh.counts.handshakes > 10 and not mesh.counts.failures, mesh.counts.summary()
    undistributed = unique("new-ca")
    ready_issuer(kube, mesh.namespace, undistributed, policy=POLICY)
    started = time.time()
    kube.call(
        "PATCH",
        f"{CERT_PATH.format(ns=mesh.namespace)}/server",
        {
            "spec": {
                "issuerRef": {"group": "trusted-issuer.dev", "kind": "TrustedIssuer", "name": undistributed}
            }
        },
        "application/merge-patch+json",
    )
    deadline = started + LIFETIME * 3
    while not mesh.counts.failures and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(3)
    mesh.stop()
    summary: dict[str, Any] = {**mesh.counts.summary(), "first_failure_after_seconds": None}
    if mesh.counts.failures:
        summary["first_failure_after_seconds"] = round(mesh.counts.failures[0][0] - started, 1)
    print(f"\nnew CA without distribution: {summary}; first failure: {mesh.counts.failures[:1]}")
    assert mesh.counts.failures, f"no handshake failed without a distribution phase: {summary}"
    assert any("CERTIFICATE_VERIFY_FAILED" in reason for _, reason in mesh.counts.failures), (
        mesh.counts.failures[:3]
    )


def _at_or_after(wanted: str) -> tuple[str, ...]:
    order = ("Distributing", "Signing", "Retiring", "Done")
    return order[order.index(wanted) :]


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


def _secret_signed_by(kube: Any, namespace: str, secret: str, ca: x509.Certificate) -> bool:
    data = kube.get(f"/api/v1/namespaces/{namespace}/secrets/{secret}").get("data") or {}
    return "tls.crt" in data and signed_by(_b64(data["tls.crt"]), ca)
