"""Bounds against the running operator: an oversized request is Failed on its own, and with no room in
the request store a burst still ends with every request published exactly once."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.csrs import make_csr
from tests.operator.conftest import Cluster, Operator, _free_port
from tests.operator.kube import CR_PATH, ISSUER_PATH, certificate_request, condition, issuer_body
from tests.operator.publications import Publications


def _finished(obj: dict) -> bool:
    ready = condition(obj)
    return ready.get("status") == "True" or ready.get("reason") in ("Failed", "Denied")


def _ready_issuer(cluster: Cluster, namespace: str) -> None:
    kube = cluster.kube
    kube.namespace(namespace)
    kube.create(ISSUER_PATH.format(ns=namespace), issuer_body("ca", namespace=namespace))
    kube.wait(f"{ISSUER_PATH.format(ns=namespace)}/ca", lambda o: condition(o).get("status") == "True")


def test_an_oversized_request_is_failed_and_others_are_issued(cluster: Cluster) -> None:
    kube, namespace = cluster.kube, f"huge-{uuid.uuid4().hex[:6]}"
    _ready_issuer(cluster, namespace)
    path = CR_PATH.format(ns=namespace)
    body = certificate_request("huge", make_csr(dns=["huge.example.com"]), issuer="ca")
    # Valid base64, far over the default limit (64 KiB): refused by size before it is decoded or parsed.
    body["spec"]["request"] = base64.b64encode(b"\0" * 300_000).decode()
    kube.create(path, body)
    kube.create(path, certificate_request("fine", make_csr(dns=["fine.example.com"]), issuer="ca"))
    kube.approve(namespace, "huge")
    kube.approve(namespace, "fine")

    huge = kube.wait(f"{path}/huge", _finished)
    ready = condition(huge)
    assert (ready["status"], ready["reason"]) == ("False", "Failed"), ready
    assert "spec.request is 400000 bytes" in ready["message"], ready
    assert "65536" in ready["message"], ready
    assert huge["status"].get("failureTime")
    assert not huge["status"].get("certificate")
    assert condition(kube.wait(f"{path}/fine", _finished))["reason"] == "Issued"
    assert cluster.operator.process is not None and cluster.operator.process.poll() is None


@pytest.fixture
def bounded_operator(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[Operator]:
    """The package's operator swapped for one with the limits in the test's parameter (environment
    variables), and back afterwards."""
    env = {**cluster.operator.env, **request.param, "TRUSTED_ISSUER_METRICS_PORT": str(_free_port())}
    operator = Operator(env, cluster.workdir / f"operator-bounded-{uuid.uuid4().hex[:6]}.log")
    try:
        yield operator
    finally:
        operator.stop()
        if cluster.operator.process is None or cluster.operator.process.poll() is not None:
            cluster.operator.start()


# A store limit of 0 sends every request down the path of those whose body did not fit; a queue of 10
# refuses most of the burst, which the operator must find again by listing.
NO_STORE = {"TRUSTED_ISSUER_MAX_CACHED_REQUESTS": "0", "TRUSTED_ISSUER_CONCURRENCY": "4"}
SMALL_QUEUE = {"TRUSTED_ISSUER_MAX_QUEUED_REQUESTS": "10", "TRUSTED_ISSUER_CONCURRENCY": "4"}


@pytest.mark.parametrize(
    "bounded_operator", [NO_STORE, SMALL_QUEUE], ids=["no-store", "queue-of-10"], indirect=True
)
def test_a_burst_past_the_limits_is_published_exactly_once(
    cluster: Cluster, bounded_operator: Operator
) -> None:
    small_store_operator = bounded_operator
    kube, namespace = cluster.kube, f"flood-{uuid.uuid4().hex[:6]}"
    _ready_issuer(cluster, namespace)
    # The burst lands while no operator runs, so the new one meets 120 requests at once.
    cluster.operator.stop()
    path = CR_PATH.format(ns=namespace)
    seen = Publications(kube, path)
    csr = make_csr(dns=["flood.example.com"])
    names = [f"f{i:03d}" for i in range(120)]
    for name in names:
        kube.create(path, certificate_request(name, csr, issuer="ca"))
        kube.approve(namespace, name)
    cluster.sandbox.clear_calls()
    small_store_operator.start()

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        items = kube.get(path)["items"]
        if sum(1 for item in items if _finished(item)) == len(names):
            break
        time.sleep(0.5)
    seen.assert_each_published_once(kube, names)
    assert "unexpected failure" not in small_store_operator.log()
    if "TRUSTED_ISSUER_MAX_CACHED_REQUESTS" in small_store_operator.env:
        # Every body was read again when its turn came (the test itself only lists and watches).
        reads = [
            c
            for c in cluster.sandbox.calls
            if c.verb == "get" and c.resource == "certificaterequests" and c.namespace == namespace and c.name
        ]
        assert {c.name for c in reads} == set(names), len(reads)
    else:
        assert "queue was full (max 10); listing requests" in small_store_operator.log()
