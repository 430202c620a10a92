"""The trust bundle an issuer publishes (issue 16), through the running operator: a ConfigMap it owns,
holding every CA a workload must trust, which grows before a new key signs and shrinks only once nothing
the old key signed can still be valid, through the phases Distributing -> Signing -> Retiring -> Done
shown in status; and a phase that ``spec.key.rotation.hold`` holds. The sandbox serves no
ClusterTrustBundle API: the condition says the bundle was skipped there (the cluster tier has one)."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from typing import Any

from cryptography import x509

from issuer.clock import parse_rfc3339
from issuer.durations import parse_duration
from tests.operator.conftest import Cluster, wait_until
from tests.operator.kube import CLUSTER_ISSUER_PATH, ISSUER_PATH, condition, issuer_body

#: Workload certificates live at most this long: distribution lasts that long at least, and the old CA
#: stays trusted that long after the switch.
LIFETIME = 6
POLICY = {"maxDuration": f"{LIFETIME}s", "minDuration": "2s"}


def config_map(kube: Any, namespace: str, name: str) -> dict[str, Any]:
    return kube.get(f"/api/v1/namespaces/{namespace}/configmaps/{name}")


def bundle_certs(cm: dict[str, Any]) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(cm["data"]["ca.crt"].encode())


def signing_ca(status: dict[str, Any]) -> x509.Certificate:
    (pem,) = [c["pem"] for c in status["caCertificates"] if c.get("use") == "Signing"]
    return x509.load_pem_x509_certificate(pem.encode())


def patch_spec(kube: Any, path: str, spec: dict[str, Any]) -> None:
    kube.call("PATCH", path, {"spec": spec}, "application/merge-patch+json")


def test_the_bundle_grows_before_the_new_key_signs_and_shrinks_after_the_last_old_certificate(
    cluster: Cluster,
) -> None:
    kube = cluster.kube
    namespace = f"bundle-{uuid.uuid4().hex[:6]}"
    kube.namespace(namespace)
    issuers = ISSUER_PATH.format(ns=namespace)
    path = f"{issuers}/ca"
    kube.create(issuers, issuer_body("ca", namespace=namespace, policy=POLICY))
    first = kube.wait(path, lambda o: condition(o, "TrustBundlePublished").get("status") == "True")
    uid = first["metadata"]["uid"]
    name = "trusted-issuer-ca-bundle"
    assert first["status"]["trustBundle"]["configMap"] == f"{namespace}/{name}"
    assert (
        "ClusterTrustBundle API (certificates.k8s.io/v1) not served"
        in condition(first, "TrustBundlePublished")["message"]
    )
    cm = config_map(kube, namespace, name)
    assert cm["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "trusted-issuer.dev/v1alpha1",
            "kind": "TrustedIssuer",
            "name": "ca",
            "uid": uid,
            "controller": True,
        }
    ]
    old_ca = signing_ca(first["status"])
    assert bundle_certs(cm) == [old_ca]

    # Every status and every ConfigMap version from here on, with the time it was seen.
    statuses: list[tuple[float, dict[str, Any]]] = []
    bundles: list[tuple[float, list[x509.Certificate]]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            now = time.time()
            statuses.append((now, kube.get(path).get("status") or {}))
            bundles.append((now, bundle_certs(config_map(kube, namespace, name))))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        asked = time.time()
        # overlap 0s: the operator raises it to one workload-certificate lifetime.
        patch_spec(kube, path, {"key": {"rotation": {"generation": 1, "overlap": "0s"}}})
        distributing = kube.wait(
            path, lambda o: (o["status"].get("rotation") or {}).get("phase") == "Distributing"
        )
        report = distributing["status"]["rotation"]
        assert parse_duration(report["distribution"]) == timedelta(seconds=LIFETIME)
        assert "raised from overlap" in report["waitingFor"]
        new_key = distributing["status"]["nextKey"]["keyHandle"]
        done = kube.wait(
            path,
            lambda o: (o["status"].get("rotation") or {}).get("phase") == "Done",
            timeout=LIFETIME * 6 + 30,
        )
    finally:
        stop.set()
        watcher.join(timeout=10)
    statuses.append((time.time(), done["status"]))

    new_ca = signing_ca(done["status"])
    assert done["status"]["keyHandle"] == new_key and new_ca != old_ca
    # The phases, in order, each seen.
    seen: list[str] = []
    for _, status in statuses:
        phase = (status.get("rotation") or {}).get("phase")
        if phase and (not seen or seen[-1] != phase):
            seen.append(phase)
    assert seen == ["Distributing", "Signing", "Retiring", "Done"], seen

    # Each phase entered is an Event on the issuer (reason RotationPhase), in the same order.
    def phase_events() -> list[str]:
        items = kube.get(f"/api/v1/namespaces/{namespace}/events")["items"]
        ordered = sorted(items, key=lambda e: e.get("firstTimestamp") or e.get("eventTime") or "")
        return [e["message"] for e in ordered if e.get("reason") == "RotationPhase"]

    wait_until(lambda: len(phase_events()) >= 4)
    assert [m.split("phase ", 1)[1].split(";")[0] for m in phase_events()] == seen, phase_events()

    # The new key signed only after its CA had been in the published ConfigMap for a full lifetime.
    first_signing_new = min(t for t, s in statuses if s.get("keyHandle") == new_key)
    first_bundle_with_new = min(t for t, b in bundles if new_ca in b)
    assert first_bundle_with_new < first_signing_new
    assert first_signing_new - asked >= LIFETIME - 1  # second precision of status times
    # The old CA stayed in the ConfigMap until trustUntil (switch + maxDuration), and left it after.
    retired = done["status"]["retiredKeys"][0]
    trust_until = parse_rfc3339(retired["trustUntil"]).timestamp()
    switched = parse_rfc3339(retired["retiredAt"]).timestamp()
    assert trust_until - switched == LIFETIME
    assert all(old_ca in b for t, b in bundles if t < trust_until - 1)
    assert bundle_certs(config_map(kube, namespace, name)) == [new_ca]
    left = min(t for t, b in bundles if old_ca not in b)
    assert left >= trust_until - 1, (left, trust_until)
    # And the ConfigMap always held what status.ca said, or was at most one reconciliation behind it.
    assert condition(done, "TrustBundlePublished")["status"] == "True"


def test_a_held_phase_does_not_advance_until_released(cluster: Cluster) -> None:
    kube = cluster.kube
    namespace = f"hold-{uuid.uuid4().hex[:6]}"
    kube.namespace(namespace)
    issuers = ISSUER_PATH.format(ns=namespace)
    path = f"{issuers}/ca"
    kube.create(
        issuers, issuer_body("ca", namespace=namespace, policy={"maxDuration": "2s", "minDuration": "1s"})
    )
    first = kube.wait(path, lambda o: condition(o).get("status") == "True")
    patch_spec(kube, path, {"key": {"rotation": {"generation": 1, "overlap": "0s", "hold": "Distributing"}}})
    held = kube.wait(path, lambda o: (o["status"].get("rotation") or {}).get("held") is True)
    assert held["status"]["rotation"]["phase"] == "Distributing"
    assert "held by spec.key.rotation.hold" in held["status"]["rotation"]["waitingFor"]
    assert "advancesAt" not in held["status"]["rotation"]
    time.sleep(6)  # three lifetimes: unheld, it would have switched
    still = kube.get(path)["status"]
    assert still["keyHandle"] == first["status"]["keyHandle"]
    assert still["rotation"]["phase"] == "Distributing"
    # Released into a hold on Signing: it switches, and keeps the old CA past its trustUntil.
    patch_spec(kube, path, {"key": {"rotation": {"hold": "Signing"}}})
    signing = kube.wait(
        path,
        lambda o: (
            (o["status"].get("rotation") or {}).get("phase") == "Signing"
            and o["status"]["rotation"].get("held") is True
        ),
        timeout=30,
    )
    assert signing["status"]["keyHandle"] != first["status"]["keyHandle"]
    time.sleep(5)
    cm = config_map(kube, namespace, "trusted-issuer-ca-bundle")
    assert signing_ca(first["status"]) in bundle_certs(cm)
    patch_spec(kube, path, {"key": {"rotation": {"hold": None}}})
    done = kube.wait(path, lambda o: (o["status"].get("rotation") or {}).get("phase") == "Done", timeout=30)
    assert bundle_certs(config_map(kube, namespace, "trusted-issuer-ca-bundle")) == [
        signing_ca(done["status"])
    ]


def test_a_cluster_issuer_publishes_to_the_configured_namespace(cluster: Cluster) -> None:
    kube = cluster.kube
    kube.namespace("trusted-issuer")  # TRUSTED_ISSUER_CLUSTER_RESOURCE_NAMESPACE of the test operator
    name = f"bundle-{uuid.uuid4().hex[:6]}"
    kube.create(CLUSTER_ISSUER_PATH, issuer_body(name))
    ready = kube.wait(
        f"{CLUSTER_ISSUER_PATH}/{name}",
        lambda o: condition(o, "TrustBundlePublished").get("status") == "True",
    )
    cm = config_map(kube, "trusted-issuer", f"trusted-cluster-issuer-{name}-bundle")
    assert cm["metadata"]["ownerReferences"][0]["uid"] == ready["metadata"]["uid"]
    assert cm["data"]["ca.crt"] == ready["status"]["ca"]


def test_a_sigkill_in_each_phase_neither_skips_nor_shortens_it(cluster: Cluster) -> None:
    """The operator SIGKILLed in Distributing, in Signing and in Retiring (held there so the kill lands
    in it), each time left down past the phase's deadline: after each restart the rotation goes on from
    what the API server holds, the new key signs only once its CA is in the ConfigMap, the old CA leaves
    it only after trustUntil, and the retired key is destroyed only at Done."""
    kube = cluster.kube
    namespace = f"kill-{uuid.uuid4().hex[:6]}"
    kube.namespace(namespace)
    issuers = ISSUER_PATH.format(ns=namespace)
    path = f"{issuers}/ca"
    name = "trusted-issuer-ca-bundle"
    kube.create(issuers, issuer_body("ca", namespace=namespace, policy=POLICY, deletion_policy="Retain"))
    first = kube.wait(path, lambda o: condition(o, "TrustBundlePublished").get("status") == "True")
    old_ca = signing_ca(first["status"])
    statuses: list[tuple[float, dict[str, Any]]] = []
    bundles: list[tuple[float, list[x509.Certificate]]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            now = time.time()
            statuses.append((now, kube.get(path).get("status") or {}))
            bundles.append((now, bundle_certs(config_map(kube, namespace, name))))
            time.sleep(0.2)

    def phase_is(wanted: str) -> Any:
        return lambda o: (o["status"].get("rotation") or {}).get("phase") == wanted

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        rotation = {"generation": 1, "overlap": "0s", "hold": "Retiring", "retiredKeyPolicy": "Destroy"}
        patch_spec(kube, path, {"key": {"rotation": rotation}})
        for phase in ("Distributing", "Signing"):
            kube.wait(path, phase_is(phase), timeout=LIFETIME * 6)
            cluster.operator.kill()
            time.sleep(LIFETIME + 2)  # down past the phase's deadline
            assert (kube.get(path)["status"].get("rotation") or {}).get("phase") == phase
            cluster.operator.start()
        held = kube.wait(path, phase_is("Retiring"), timeout=LIFETIME * 6)
        assert held["status"]["rotation"]["held"] is True
        cluster.operator.kill()
        cluster.operator.start()
        time.sleep(4)
        assert (kube.get(path)["status"].get("rotation") or {}).get("phase") == "Retiring"
        assert not kube.get(path)["status"]["retiredKeys"][0].get("destroyedAt")
        patch_spec(kube, path, {"key": {"rotation": {"hold": None}}})
        done = kube.wait(path, phase_is("Done"), timeout=60)
        done = kube.wait(path, lambda o: bool(o["status"]["retiredKeys"][0].get("destroyedAt")), timeout=30)
    finally:
        stop.set()
        watcher.join(timeout=10)
        process = cluster.operator.process
        if process is None or process.poll() is not None:
            cluster.operator.start()  # the package's operator serves the tests after this one
    statuses.append((time.time(), done["status"]))

    new_ca = signing_ca(done["status"])
    new_key = done["status"]["keyHandle"]
    seen: list[str] = []
    for _, status in statuses:
        phase = (status.get("rotation") or {}).get("phase")
        if phase and (not seen or seen[-1] != phase):
            seen.append(phase)
    assert seen == ["Distributing", "Signing", "Retiring", "Done"], seen
    first_signing_new = min(t for t, s in statuses if s.get("keyHandle") == new_key)
    assert min(t for t, b in bundles if new_ca in b) < first_signing_new
    retired = done["status"]["retiredKeys"][0]
    trust_until = parse_rfc3339(retired["trustUntil"]).timestamp()
    assert min(t for t, b in bundles if old_ca not in b) >= trust_until - 1
    assert bundle_certs(config_map(kube, namespace, name)) == [new_ca]
