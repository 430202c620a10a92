"""A burst interrupted by SIGKILL: every request published exactly once, and none carries our marks."""

from __future__ import annotations

import time
import uuid

from tests.csrs import make_csr
from tests.operator.conftest import Cluster, wait_until
from tests.operator.kube import CR_PATH, ISSUER_PATH, certificate_request, condition, issuer_body
from tests.operator.publications import Publications, issued_count

BURST = 200


def test_sigkill_mid_burst_publishes_every_request_exactly_once(cluster: Cluster) -> None:
    kube = cluster.kube
    namespace = f"burst-{uuid.uuid4().hex[:6]}"
    kube.namespace(namespace)
    kube.create(ISSUER_PATH.format(ns=namespace), issuer_body("mesh", namespace=namespace))
    kube.wait(f"{ISSUER_PATH.format(ns=namespace)}/mesh", lambda o: condition(o).get("status") == "True")
    path = CR_PATH.format(ns=namespace)

    # Observe every version of every request from before the burst: one certificate value per request.
    seen = Publications(kube, path)

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

    deadline = time.monotonic() + 60
    while issued_count(kube, path) < BURST // 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    cluster.operator.kill()
    at_kill = issued_count(kube, path)
    cluster.operator.start()

    deadline = time.monotonic() + 120
    while issued_count(kube, path) < BURST and time.monotonic() < deadline:
        time.sleep(0.2)
    assert at_kill < BURST, "the kill came after the burst; the test proved nothing"
    seen.assert_each_published_once(kube, names)


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
    kube = cluster.kube
    namespace = f"events-{uuid.uuid4().hex[:6]}"
    kube.namespace(namespace)
    kube.create(ISSUER_PATH.format(ns=namespace), issuer_body("ca", namespace=namespace))
    kube.wait(f"{ISSUER_PATH.format(ns=namespace)}/ca", lambda o: condition(o).get("status") == "True")
    path = CR_PATH.format(ns=namespace)
    kube.create(path, certificate_request("good", make_csr(dns=["good.example.com"]), issuer="ca"))
    # A CA certificate, which the issuer's default policy refuses: Failed.
    kube.create(path, certificate_request("bad", make_csr(dns=["bad.example.com"]), issuer="ca", is_ca=True))
    for name in ("good", "bad"):
        kube.approve(namespace, name)

    def reasons() -> set[tuple[str, str]]:
        events = kube.get(f"/api/v1/namespaces/{namespace}/events")["items"]
        return {(e["involvedObject"]["name"], e["reason"]) for e in events}

    wait_until(lambda: {("good", "Issued"), ("bad", "Failed")} <= reasons())
