"""A namespaced operator on a real API server: the chart rendered as one shard (``watchNamespaces``,
``issuerKinds: [TrustedIssuer]``), its operator started with the chart's own arguments. It serves its
namespace's issuers and requests, and never even lists or watches another namespace's (the audit log
says so); issuers and requests elsewhere, and cluster issuers, stay untouched. Its own control plane,
so the cluster-wide operator of the other tests is not there to serve what this one must leave alone."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from issuer.tokens import TokenConfig
from tests.cluster.conftest import admin_of, assert_no_forbidden, control_plane_binaries, start_operator
from tests.cluster.controlplane import OPERATOR_USER, ControlPlane
from tests.cluster.install import install
from tests.cluster.kube import assert_each_published_once
from tests.cluster.test_requests import finished, ready_issuer
from tests.csrs import make_csr
from tests.operator.conftest import Operator
from tests.operator.kube import CLUSTER_ISSUER_PATH, CR_PATH, ISSUER_PATH, certificate_request, issuer_body

SHARD = "shard-a"
VALUES = {"operator": {"watchNamespaces": [SHARD], "issuerKinds": ["TrustedIssuer"]}}


@pytest.fixture(scope="module")
def shard(
    token_config: TokenConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ControlPlane, Operator]]:
    workdir = tmp_path_factory.mktemp("shard")
    with ControlPlane(workdir / "plane", control_plane_binaries()) as plane:
        install(plane, VALUES)
        operator = start_operator(plane, token_config, workdir / "operator", VALUES)
        try:
            yield plane, operator
        finally:
            operator.stop()


def test_a_shard_serves_its_namespace_only(shard: tuple[ControlPlane, Operator]) -> None:
    plane, operator = shard
    assert operator.args == ("--namespace", SHARD)
    kube = admin_of(plane)
    other = f"other-{uuid.uuid4().hex[:6]}"
    ready_issuer(kube, SHARD, "ca")
    kube.namespace(other)
    kube.create(ISSUER_PATH.format(ns=other), issuer_body("ca", namespace=other))
    kube.create(CLUSTER_ISSUER_PATH, issuer_body(f"cluster-{other}"))
    names = ["one", "two", "three"]
    for namespace in (SHARD, other):
        path = CR_PATH.format(ns=namespace)
        for name in names:
            kube.create(path, certificate_request(name, make_csr(dns=[f"{name}.example.com"]), issuer="ca"))
            kube.approve(namespace, name)
    for name in names:
        kube.wait(f"{CR_PATH.format(ns=SHARD)}/{name}", finished)
    assert_each_published_once(kube, plane.audit_events(), CR_PATH.format(ns=SHARD), SHARD, names)
    time.sleep(2)
    for name in names:
        status = kube.get(f"{CR_PATH.format(ns=other)}/{name}")["status"]
        assert [c["type"] for c in status["conditions"]] == ["Approved"], status
    assert "status" not in kube.get(f"{ISSUER_PATH.format(ns=other)}/ca")
    assert "status" not in kube.get(f"{CLUSTER_ISSUER_PATH}/cluster-{other}")
    # What it asked the API server: requests and issuers of its own namespace only.
    reads = {
        (e["objectRef"]["resource"], e["objectRef"].get("namespace", "<cluster>"))
        for e in plane.audit_events()
        if e["user"]["username"] == OPERATOR_USER
        and e.get("objectRef", {}).get("resource") in ("certificaterequests", "trustedissuers")
        and e["verb"] in ("list", "watch", "get", "patch")
    }
    assert reads == {("certificaterequests", SHARD), ("trustedissuers", SHARD)}, reads
    assert not [
        e
        for e in plane.audit_events()
        if e["user"]["username"] == OPERATOR_USER
        and e.get("objectRef", {}).get("resource") == "trustedclusterissuers"
    ], "a shard serving TrustedIssuers only still watched TrustedClusterIssuers"
    assert_no_forbidden(operator, plane)
