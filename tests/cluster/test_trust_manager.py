"""trust-manager distributes a TrustedClusterIssuer's trust bundle across a rotation (issue 16): its
``Bundle`` takes the issuer's ConfigMap (``ca.crt``, in the trust namespace the operator is configured
with) as a source and writes it to every labelled namespace; the target gains the new CA before the
new key signs, and loses the old one only when the issuer's rotation retires it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509

from tests.chart.rendering import NAMESPACE
from tests.cluster.conftest import Live
from tests.cluster.install import FIELD_MANAGER
from tests.cluster.test_requests import ready_issuer, unique
from tests.cluster.trust_manager import TrustManager, TrustManagerMissing, trust_manager_dir
from tests.operator.kube import CLUSTER_ISSUER_PATH, ApiFailure, condition

BUNDLES = "/apis/trust.cert-manager.io/v1alpha1/bundles"
LIFETIME = 8


@pytest.fixture(scope="module")
def trust_manager(live: Live, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrustManager]:
    try:
        bins = trust_manager_dir()
    except TrustManagerMissing as err:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI: trust-manager cannot run: {err}")
        pytest.skip(f"trust-manager test: {err}")
    for crd in sorted((bins / "crds").glob("*.yaml")):
        live.plane.kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", str(crd))
    live.plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    running = TrustManager(
        bins, live.plane.admin_kubeconfig, NAMESPACE, tmp_path_factory.mktemp("trust-manager")
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _phase(obj: dict[str, Any]) -> str | None:
    return (obj.get("status", {}).get("rotation") or {}).get("phase")


def _target(live: Live, namespace: str, name: str) -> list[x509.Certificate]:
    try:
        found = live.kube.get(f"/api/v1/namespaces/{namespace}/configmaps/{name}")
    except ApiFailure as err:
        if err.status == 404:
            return []
        raise
    text = (found.get("data") or {}).get("mesh-roots.pem", "")
    return x509.load_pem_x509_certificates(text.encode()) if text else []


def _signing_ca(obj: dict[str, Any]) -> x509.Certificate:
    (pem,) = [c["pem"] for c in obj["status"]["caCertificates"] if c.get("use") == "Signing"]
    return x509.load_pem_x509_certificate(pem.encode())


def test_trust_manager_carries_the_bundle_through_a_rotation(live: Live, trust_manager: TrustManager) -> None:
    kube = live.kube
    issuer = unique("tm-ca")
    first = ready_issuer(kube, None, issuer, policy={"maxDuration": f"{LIFETIME}s", "minDuration": "2s"})
    path = f"{CLUSTER_ISSUER_PATH}/{issuer}"
    first = kube.wait(path, lambda o: condition(o, "TrustBundlePublished").get("status") == "True")
    assert (
        first["status"]["trustBundle"]["configMap"] == f"{NAMESPACE}/trusted-cluster-issuer-{issuer}-bundle"
    )
    old_ca = _signing_ca(first)
    workload = unique("tm-workload")
    kube.create("/api/v1/namespaces", {"metadata": {"name": workload, "labels": {"mesh-roots": issuer}}})
    bundle = {
        "apiVersion": "trust.cert-manager.io/v1alpha1",
        "kind": "Bundle",
        "metadata": {"name": issuer},
        "spec": {
            "sources": [{"configMap": {"name": f"trusted-cluster-issuer-{issuer}-bundle", "key": "ca.crt"}}],
            "target": {
                "configMap": {"key": "mesh-roots.pem"},
                "namespaceSelector": {"matchLabels": {"mesh-roots": issuer}},
            },
        },
    }
    kube.create(BUNDLES, bundle)
    deadline = time.monotonic() + 60
    while _target(live, workload, issuer) != [old_ca]:
        assert time.monotonic() < deadline, f"trust-manager wrote no target:\n{trust_manager.tail()}"
        time.sleep(0.5)

    kube.call(
        "PATCH",
        path,
        {"spec": {"key": {"rotation": {"generation": 1, "overlap": "0s"}}}},
        "application/merge-patch+json",
    )
    seen: list[tuple[float, str | None, list[x509.Certificate], str]] = []
    started = time.monotonic()
    while time.monotonic() - started < LIFETIME * 6:
        status = kube.get(path)
        seen.append(
            (
                time.monotonic() - started,
                _phase(status),
                _target(live, workload, issuer),
                str(status["status"]["keyHandle"]),
            )
        )
        if _phase(status) == "Done" and len(seen[-1][2]) == 1:
            break
        time.sleep(0.3)
    done = kube.get(path)
    new_ca = _signing_ca(done)
    assert new_ca != old_ca and _phase(done) == "Done", (_phase(done), trust_manager.tail())
    old_key = str(first["status"]["keyHandle"])
    gained = min(t for t, _, target, _ in seen if new_ca in target)
    switched = min(t for t, _, _, key in seen if key != old_key)
    dropped = min(t for t, _, target, _ in seen if old_ca not in target)
    print(
        f"\ntrust-manager target: new CA in at {gained:.1f} s, new key signs at {switched:.1f} s, "
        f"old CA out at {dropped:.1f} s"
    )
    assert gained < switched, "the new key signed before trust-manager distributed its CA"
    assert dropped >= switched + LIFETIME - 1, "the old CA left before its last certificate expired"
    assert _target(live, workload, issuer) == [new_ca]
