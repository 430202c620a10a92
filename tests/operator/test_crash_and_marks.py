"""A burst interrupted by SIGKILL: every request published exactly once, and none carries our marks."""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict

from tests.csrs import make_csr
from tests.operator.conftest import Cluster
from tests.operator.kube import CR_PATH, ISSUER_PATH, certificate_request, condition, issuer_body, pem
from tests.verifiers import openssl_verify

BURST = 200


def test_sigkill_mid_burst_publishes_every_request_exactly_once(cluster: Cluster) -> None:
    kube = cluster.kube
    namespace = f"burst-{uuid.uuid4().hex[:6]}"
    kube.namespace(namespace)
    kube.create(ISSUER_PATH.format(ns=namespace), issuer_body("mesh", namespace=namespace))
    kube.wait(f"{ISSUER_PATH.format(ns=namespace)}/mesh", lambda o: condition(o).get("status") == "True")
    path = CR_PATH.format(ns=namespace)

    # Observe every version of every request from before the burst: one certificate value per request.
    start_rv = kube.get(path)["metadata"]["resourceVersion"]
    certificates: dict[str, set[str]] = defaultdict(set)
    stop = threading.Event()

    def observe() -> None:
        for event in kube.watch_events(path, stop, start_rv):
            obj = event.get("object", {})
            value = obj.get("status", {}).get("certificate")
            if value:
                certificates[obj["metadata"]["name"]].add(value)

    watcher = threading.Thread(target=observe, daemon=True)
    watcher.start()

    csr = make_csr(dns=["burst.example.com"])
    names = [f"r{i:03d}" for i in range(BURST)]
    # The burst lands while the operator is down, so it meets a full queue when it comes up.
    cluster.operator.stop()
    for name in names:
        kube.create(
            path, certificate_request(name, csr, issuer="mesh", usages=["client auth", "server auth"])
        )
        kube.approve(namespace, name)
    cluster.operator.start()

    def issued() -> int:
        return sum(1 for item in kube.get(path)["items"] if item.get("status", {}).get("certificate"))

    deadline = time.monotonic() + 60
    while issued() < BURST // 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    cluster.operator.kill()
    at_kill = issued()
    cluster.operator.start()

    deadline = time.monotonic() + 120
    while issued() < BURST and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)  # let the watcher see the last versions
    stop.set()
    items = {item["metadata"]["name"]: item for item in kube.get(path)["items"]}
    assert at_kill < BURST, "the kill came after the burst; the test proved nothing"
    assert sorted(items) == names
    for name, item in items.items():
        assert condition(item)["reason"] == "Issued", (name, item.get("status"))
        assert certificates[name] == {item["status"]["certificate"]}, f"{name} was published more than once"
    sample = items[names[-1]]["status"]
    openssl_verify(pem(sample["certificate"]), pem(sample["ca"]))


def test_no_request_carries_annotations_labels_or_finalizers_of_ours(cluster: Cluster) -> None:
    kube = cluster.kube
    items = kube.get("/apis/cert-manager.io/v1/certificaterequests")["items"]
    assert items, "run after the other operator tests: there must be requests to inspect"
    for item in items:
        meta = item["metadata"]
        assert not meta.get("finalizers"), meta
        for mapping in (meta.get("annotations") or {}, meta.get("labels") or {}):
            assert not [k for k in mapping if "trusted-issuer" in k or "kopf" in k], meta


def test_events_are_posted_on_requests(cluster: Cluster) -> None:
    events = cluster.kube.get("/api/v1/events")["items"]
    reasons = {(e["involvedObject"].get("kind"), e["reason"]) for e in events}
    assert ("CertificateRequest", "Issued") in reasons
    assert ("CertificateRequest", "Failed") in reasons
