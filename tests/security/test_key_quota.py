"""Token keys are bounded per tenant: a namespace at its key quota fails its own issuer, never
another's; a rotation asked for again while one is pending makes no second key; cluster issuers have
their own share. Quotas live in the operator's profiles (profile ``quota``: two keys a namespace, three
in ``quota-wide``, none for cluster issuers); usage is counted in the token, and the issuer's
``status.keyQuota`` is a report a tenant cannot turn into room."""

from __future__ import annotations

import time
from typing import Any

import requests

from tests.operator.kube import CLUSTER_ISSUER_PATH, Kube, condition, issuer_body
from tests.security.conftest import SecureCluster
from tests.security.scenario import create_issuer, not_ready, ready_issuer
from tests.security.test_status_is_a_cache import token_labels, touch


def quota_issuer(kube: Kube, namespace: str, name: str) -> str:
    return create_issuer(kube, namespace, name, profile="quota")


def ready(kube: Kube, path: str) -> dict[str, Any]:
    return kube.wait(path, lambda o: condition(o).get("status") == "True", timeout=90)


def refused_rotation(kube: Kube, path: str, reason: str) -> dict[str, Any]:
    return kube.wait(path, lambda o: condition(o, "RotationRefused").get("reason") == reason, timeout=60)


def in_scope(labels: set[str], namespace: str) -> set[str]:
    return {label for label in labels if label.startswith(f"ti:ns/{namespace}/")}


def test_a_namespace_at_its_quota_fails_only_its_own_issuer(secure: SecureCluster) -> None:
    kube = secure.cluster.kube
    ready(kube, quota_issuer(kube, "quota-a", "one"))
    second = ready(kube, quota_issuer(kube, "quota-a", "two"))
    assert second["status"]["keyQuota"] == {"scope": "ti:ns/quota-a/", "used": 2, "limit": 2}
    # The report is no input: a tenant who writes room into its status gets none.
    third = quota_issuer(kube, "quota-a", "three")
    kube.merge_status(third, {"keyQuota": {"scope": "ti:ns/quota-a/", "used": 0, "limit": 100}})
    refused = not_ready(kube, third)
    assert condition(refused)["reason"] == "KeyQuotaExceeded"
    assert "holds 2 keys labelled ti:ns/quota-a/" in condition(refused)["message"]
    assert "keyHandle" not in refused["status"]
    labels = token_labels(secure)
    assert len(in_scope(labels, "quota-a")) == 2
    # Another tenant of the same profile is untouched, and a namespace with its own share gets it.
    ready(kube, quota_issuer(kube, "quota-b", "one"))
    for name in ("one", "two", "three"):
        ready(kube, quota_issuer(kube, "quota-wide", name))
    assert len(in_scope(token_labels(secure), "quota-wide")) == 3
    assert _metric(secure, "trusted_issuer_token_keys", 'profile="quota",scope="ti:ns/quota-a/"') == 2.0
    assert _metric(secure, "trusted_issuer_token_key_quota", 'profile="quota",scope="ti:ns/quota-a/"') == 2.0


def test_a_rotation_asked_again_while_one_is_pending_makes_no_key(secure: SecureCluster) -> None:
    kube = secure.cluster.kube
    path = quota_issuer(kube, "quota-rot", "r")
    ready(kube, path)
    rotation = {"algorithm": "ecdsa-p256", "rotation": {"generation": 1, "overlap": "1h"}}
    touch(kube, path, {"key": rotation})
    pending = kube.wait(path, lambda o: (o["status"].get("nextKey") or {}).get("generation") == 1)
    signing = pending["status"]["keyHandle"]
    touch(kube, path, {"key": {**rotation, "rotation": {"generation": 2, "overlap": "1h"}}})
    waiting = refused_rotation(kube, path, "RotationPending")
    assert condition(waiting, "RotationRefused")["status"] == "True"
    assert "generation 1 is pending" in condition(waiting, "RotationRefused")["message"]
    assert condition(waiting)["status"] == "True", "the issuer keeps signing"
    assert waiting["status"]["keyHandle"] == signing
    assert waiting["status"]["nextKey"]["generation"] == 1
    labels = in_scope(token_labels(secure), "quota-rot")
    assert len(labels) == 2 and not any(label.endswith("/k2") for label in labels)


def test_a_rotation_at_the_quota_waits_and_the_issuer_keeps_signing(secure: SecureCluster) -> None:
    kube = secure.cluster.kube
    path = quota_issuer(kube, "quota-full", "r")
    before = ready(kube, path)["status"]["keyHandle"]
    ready(kube, quota_issuer(kube, "quota-full", "s"))
    touch(kube, path, {"key": {"algorithm": "ecdsa-p256", "rotation": {"generation": 1, "overlap": "1h"}}})
    waiting = refused_rotation(kube, path, "KeyQuotaExceeded")
    assert condition(waiting)["status"] == "True"
    assert waiting["status"]["keyHandle"] == before
    assert not waiting["status"].get("nextKey")
    assert len(in_scope(token_labels(secure), "quota-full")) == 2


def test_cluster_issuers_have_their_own_share(secure: SecureCluster) -> None:
    kube = secure.cluster.kube
    kube.create(CLUSTER_ISSUER_PATH, issuer_body("quota-cluster", profile="quota"))
    refused = not_ready(kube, f"{CLUSTER_ISSUER_PATH}/quota-cluster")
    assert condition(refused)["reason"] == "KeyQuotaExceeded"
    assert "ti:cluster/" in condition(refused)["message"]
    assert "keyHandle" not in refused["status"]
    ready_issuer(kube, "quota-c", "ns-issuer", profile="quota")


def _metric(secure: SecureCluster, name: str, labels: str) -> float:
    port = secure.cluster.operator.env["TRUSTED_ISSUER_METRICS_PORT"]
    deadline = time.monotonic() + 10
    while True:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith(f"{name}{{") and labels in line:
                return float(line.rsplit(" ", 1)[1])
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}{{{labels}}} not exported")
        time.sleep(0.5)
