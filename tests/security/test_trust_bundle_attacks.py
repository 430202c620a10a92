"""The trust bundle, attacked by a tenant (issue 16, under the rules of issue 12: status is a cache).

- A ConfigMap the operator does not own, where an issuer's bundle would go (a tenant's, or one made to
  squat the name), is never overwritten: the issuer says ``ConfigMapNotOwned`` and keeps signing, and a
  rotation does not let the new key sign while its CA is not published.
- A tenant who writes its issuer's status cannot send the bundle into another namespace (the place is
  derived from kind, namespace and name, never read from ``status.trustBundle``) nor shorten a phase by
  rewriting ``nextKey.signFrom``, ``retiredKeys[].retiredAt`` or ``trustUntil``: the new key still signs
  only after a full certificate lifetime, and the old CA stays in the bundle until its last certificate
  expired.
"""

from __future__ import annotations

import time
from typing import Any

from cryptography import x509

from issuer.clock import parse_rfc3339
from tests.operator.kube import Kube, condition
from tests.security.conftest import SecureCluster
from tests.security.scenario import create_issuer, ready_issuer

CONFIG_MAPS = "/api/v1/namespaces/{ns}/configmaps"


def _phase(obj: dict[str, Any]) -> str | None:
    return (obj.get("status", {}).get("rotation") or {}).get("phase")


def _touch(kube: Kube, path: str, spec: dict[str, Any]) -> None:
    kube.call("PATCH", path, {"spec": spec}, "application/merge-patch+json")


def _bundle(kube: Kube, namespace: str, name: str) -> list[x509.Certificate]:
    cm = kube.get(f"{CONFIG_MAPS.format(ns=namespace)}/{name}")
    return x509.load_pem_x509_certificates(cm["data"]["ca.crt"].encode())


def _signing_ca(status: dict[str, Any]) -> x509.Certificate:
    (pem,) = [c["pem"] for c in status["caCertificates"] if c.get("use") == "Signing"]
    return x509.load_pem_x509_certificate(pem.encode())


def test_a_config_map_the_operator_does_not_own_is_never_overwritten(secure: SecureCluster) -> None:
    kube = secure.cluster.kube
    namespace = "squat-a"
    kube.namespace(namespace)
    squatted = {
        "metadata": {"name": "trusted-issuer-ca-bundle"},
        "data": {"ca.crt": "mine, not the operator's"},
    }
    kube.create(CONFIG_MAPS.format(ns=namespace), squatted)
    path = create_issuer(kube, namespace, "ca", policy={"maxDuration": "2s", "minDuration": "1s"})
    refused = kube.wait(
        path, lambda o: condition(o, "TrustBundlePublished").get("status") == "False", timeout=90
    )
    published = condition(refused, "TrustBundlePublished")
    assert published["reason"] == "ConfigMapNotOwned"
    assert f"ConfigMap {namespace}/trusted-issuer-ca-bundle exists and is not owned" in published["message"]
    assert condition(refused)["status"] == "True"  # it still signs
    cm_path = f"{CONFIG_MAPS.format(ns=namespace)}/trusted-issuer-ca-bundle"
    before = kube.get(cm_path)
    # A rotation: the new key must not sign while its CA cannot be published.
    _touch(kube, path, {"key": {"rotation": {"generation": 1, "overlap": "0s"}}})
    kube.wait(path, lambda o: _phase(o) == "Distributing", timeout=60)
    time.sleep(6)  # three certificate lifetimes
    waiting = kube.get(path)
    assert waiting["status"]["keyHandle"] == refused["status"]["keyHandle"]
    assert "to be published in the trust bundle ConfigMap" in waiting["status"]["rotation"]["waitingFor"]
    after = kube.get(cm_path)
    assert after["data"] == {"ca.crt": "mine, not the operator's"}
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert not after["metadata"].get("ownerReferences")
    # Once the squatter's ConfigMap is gone, the operator makes its own and the rotation proceeds.
    kube.delete(cm_path)
    switched = kube.wait(path, lambda o: _phase(o) in ("Signing", "Retiring", "Done"), timeout=60)
    assert switched["status"]["keyHandle"] != refused["status"]["keyHandle"]
    assert kube.get(cm_path)["metadata"]["ownerReferences"][0]["uid"] == refused["metadata"]["uid"]


def test_status_cannot_send_the_bundle_into_another_namespace(secure: SecureCluster) -> None:
    kube = secure.cluster.kube
    victim_ns, attacker_ns = "bundle-victim", "bundle-attacker"
    kube.namespace(victim_ns)
    victim = ready_issuer(kube, victim_ns, "ca")
    victim_cm = f"{CONFIG_MAPS.format(ns=victim_ns)}/trusted-issuer-ca-bundle"
    kube.wait(victim_cm, lambda o: bool(o.get("data")), timeout=30)
    other = {"metadata": {"name": "payments-roots"}, "data": {"ca.crt": "the victim's own roots"}}
    kube.create(CONFIG_MAPS.format(ns=victim_ns), other)
    marks = {
        name: kube.get(f"{CONFIG_MAPS.format(ns=victim_ns)}/{name}")["metadata"]["resourceVersion"]
        for name in ("trusted-issuer-ca-bundle", "payments-roots")
    }
    path = create_issuer(kube, attacker_ns, "ca")
    kube.wait(path, lambda o: condition(o, "TrustBundlePublished").get("status") == "True", timeout=90)
    kube.merge_status(
        path,
        {
            "trustBundle": {
                "configMap": f"{victim_ns}/payments-roots",
                "key": "ca.crt",
                "clusterTrustBundle": "x",
                "signerName": "y",
            }
        },
    )
    _touch(kube, path, {"policy": {"maxDuration": "1h"}})
    again = kube.wait(
        path,
        lambda o: (
            o["status"].get("observedGeneration") == o["metadata"]["generation"]
            and condition(o, "TrustBundlePublished").get("status") == "True"
        ),
        timeout=60,
    )
    assert again["status"]["trustBundle"]["configMap"] == f"{attacker_ns}/trusted-issuer-ca-bundle"
    for name, version in marks.items():
        found = kube.get(f"{CONFIG_MAPS.format(ns=victim_ns)}/{name}")
        assert found["metadata"]["resourceVersion"] == version, name
    assert kube.get(f"{CONFIG_MAPS.format(ns=victim_ns)}/payments-roots")["data"] == other["data"]
    assert _bundle(kube, victim_ns, "trusted-issuer-ca-bundle") == [_signing_ca(victim["status"])]


def test_rewritten_times_never_shorten_a_phase(secure: SecureCluster) -> None:
    kube = secure.cluster.kube
    namespace, lifetime = "bundle-times", 12
    path = create_issuer(kube, namespace, "ca", policy={"maxDuration": f"{lifetime}s", "minDuration": "2s"})
    first = kube.wait(
        path, lambda o: condition(o, "TrustBundlePublished").get("status") == "True", timeout=90
    )
    old_ca = _signing_ca(first["status"])
    _touch(kube, path, {"key": {"rotation": {"generation": 1, "overlap": "0s"}}})
    distributing = kube.wait(path, lambda o: bool(o["status"].get("nextKey")), timeout=60)
    published = parse_rfc3339(distributing["status"]["nextKey"]["publishedAt"]).timestamp()
    forged = dict(distributing["status"]["nextKey"], signFrom="2020-01-01T00:00:00Z")
    kube.merge_status(path, {"nextKey": forged})
    switched = kube.wait(path, lambda o: _phase(o) == "Signing", timeout=lifetime * 3)
    retired = switched["status"]["retiredKeys"][0]
    assert parse_rfc3339(retired["retiredAt"]).timestamp() >= published + lifetime - 1
    # In Signing: retiredAt and trustUntil rewritten to long ago would drop the old CA now.
    kube.merge_status(
        path,
        {"retiredKeys": [dict(retired, retiredAt="2020-01-01T00:00:00Z", trustUntil="2020-01-01T00:00:00Z")]},
    )
    trust_until = parse_rfc3339(retired["trustUntil"]).timestamp()
    while time.time() < trust_until - 2:
        assert old_ca in _bundle(kube, namespace, "trusted-issuer-ca-bundle")
        status = kube.get(path)["status"]
        assert _phase({"status": status}) == "Signing", status.get("rotation")
        time.sleep(0.5)
    kube.wait(path, lambda o: _phase(o) == "Done", timeout=30)
    assert old_ca not in _bundle(kube, namespace, "trusted-issuer-ca-bundle")
    assert "trustUntil said 2020-01-01T00:00:00Z" in secure.cluster.operator.log()
