"""Issuer lifecycle: recorded keys are never silently replaced, adoption stays in scope, deletion policy."""

from __future__ import annotations

import time
import uuid
from typing import Any

from issuer.signer.keys import Algorithm, KeyHandle
from issuer.signer.pool import SignerPool
from tests.conftest import TokenAbilities
from tests.operator.conftest import Cluster
from tests.operator.kube import ISSUER_PATH, ApiFailure, condition, issuer_body


def _ns(cluster: Cluster, prefix: str) -> str:
    namespace = f"{prefix}-{uuid.uuid4().hex[:6]}"
    cluster.kube.namespace(namespace)
    return namespace


def _ready(cluster: Cluster, path: str) -> dict:
    return cluster.kube.wait(path, lambda o: condition(o).get("status") == "True", timeout=60)


def test_a_recorded_key_that_vanished_is_an_error_never_replaced(cluster: Cluster, pool: SignerPool) -> None:
    kube, namespace = cluster.kube, _ns(cluster, "vanish")
    path = f"{ISSUER_PATH.format(ns=namespace)}/ca"
    kube.create(ISSUER_PATH.format(ns=namespace), issuer_body("ca", namespace=namespace))
    before = _ready(cluster, path)["status"]["keyHandle"]
    pool.destroy_key.blocking(
        cluster.token, KeyHandle.from_status(before)
    )  # someone with token access deletes it
    # A spec change makes the operator reconcile now rather than at its next periodic check.
    kube.call("PATCH", path, {"spec": {"policy": {"maxDuration": "48h"}}}, "application/merge-patch+json")
    broken = kube.wait(path, lambda o: condition(o).get("status") == "False")
    assert condition(broken)["reason"] == "KeyNotFound"
    assert broken["status"]["keyHandle"] == before  # still the recorded key: nothing generated in its place
    labels = [r.handle.key_label for r in pool.list_keys.blocking(cluster.token)]
    assert before["keyLabel"] not in labels


def test_adopting_a_key_outside_the_issuers_scope_is_refused(cluster: Cluster, pool: SignerPool) -> None:
    kube = cluster.kube
    victim, thief = _ns(cluster, "victim"), _ns(cluster, "thief")
    kube.create(ISSUER_PATH.format(ns=victim), issuer_body("ca", namespace=victim))
    victim_key = _ready(cluster, f"{ISSUER_PATH.format(ns=victim)}/ca")["status"]["keyHandle"]["keyLabel"]
    body = issuer_body("stolen", namespace=thief)
    body["spec"]["key"]["adopt"] = {"keyLabel": victim_key}
    kube.create(ISSUER_PATH.format(ns=thief), body)
    refused = kube.wait(
        f"{ISSUER_PATH.format(ns=thief)}/stolen", lambda o: condition(o).get("status") == "False"
    )
    assert condition(refused)["reason"] == "KeyOutOfScope"
    assert "keyHandle" not in refused["status"]


def test_adopting_a_key_in_scope_works(cluster: Cluster, pool: SignerPool, token_can: TokenAbilities) -> None:
    kube, namespace = cluster.kube, _ns(cluster, "adopt")
    label = f"ti:ns/{namespace}/imported"
    algorithm = Algorithm.ECDSA_P384 if token_can(Algorithm.ECDSA_P384) else token_can.default
    handle = pool.generate_key.blocking(cluster.token, algorithm, label)
    body = issuer_body("adopter", namespace=namespace, algorithm=algorithm.value)
    body["spec"]["key"]["adopt"] = {"keyLabel": label}
    kube.create(ISSUER_PATH.format(ns=namespace), body)
    ready = _ready(cluster, f"{ISSUER_PATH.format(ns=namespace)}/adopter")
    assert ready["status"]["keyHandle"] == handle.to_status()


def test_deletion_keeps_the_key_unless_destroy_is_asked(cluster: Cluster, pool: SignerPool) -> None:
    kube, namespace = cluster.kube, _ns(cluster, "delete")
    issuers = ISSUER_PATH.format(ns=namespace)
    kube.create(issuers, issuer_body("keep", namespace=namespace))
    kube.create(issuers, issuer_body("burn", namespace=namespace, deletion_policy="Destroy"))
    kept = _ready(cluster, f"{issuers}/keep")["status"]["keyHandle"]["keyLabel"]
    burnt = _ready(cluster, f"{issuers}/burn")["status"]["keyHandle"]["keyLabel"]
    for name in ("keep", "burn"):
        kube.delete(f"{issuers}/{name}")

    def gone(name: str) -> bool:
        try:
            kube.get(f"{issuers}/{name}")
        except ApiFailure as err:
            return err.status == 404
        return False

    from tests.operator.conftest import wait_until

    try:
        wait_until(lambda: gone("keep") and gone("burn"), timeout=90)
    except AssertionError:
        left = [kube.get(f"{issuers}/{n}")["metadata"] for n in ("keep", "burn") if not gone(n)]
        raise AssertionError(f"not deleted: {left}") from None
    labels = {r.handle.key_label for r in pool.list_keys.blocking(cluster.token)}
    assert kept in labels
    assert burnt not in labels


def test_an_issuer_is_told_what_the_stricter_policy_defaults_now_refuse(cluster: Cluster) -> None:
    kube = cluster.kube
    namespace = "policy-events"
    kube.namespace(namespace)
    body = issuer_body("dns-only", namespace=namespace, policy={"dnsDomains": ["svc.cluster.local"]})
    kube.create(ISSUER_PATH.format(ns=namespace), body)
    path = f"{ISSUER_PATH.format(ns=namespace)}/dns-only"
    uid = kube.wait(path, lambda o: condition(o).get("status") == "True")["metadata"]["uid"]
    deadline = time.monotonic() + 30
    tightened: list[dict[str, Any]] = []
    while not tightened and time.monotonic() < deadline:
        events = kube.get(f"/api/v1/namespaces/{namespace}/events")["items"]
        tightened = [
            e
            for e in events
            if e.get("reason") == "PolicyTightened" and e.get("involvedObject", {}).get("uid") == uid
        ]
        time.sleep(0.2)
    assert len(tightened) == 1, tightened
    assert tightened[0]["type"] == "Warning"
    message = tightened[0]["message"]
    assert "IP address SANs" in message and "policy.ipRanges" in message
