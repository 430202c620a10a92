"""The chart's RBAC, neither too narrow nor wider than needed, judged by a real API server.

Too narrow: every test here fails on a 403 answered to the operator (conftest's ``no_forbidden``). Wider
than needed: the API server's audit log records every call of the operator's identity (the chart's
ServiceAccount) for the whole session; after this test drives each thing the operator does (both issuer
kinds, an intermediate CA whose Secret it reads, a ``Destroy`` deletion, a CertificateRequest, a
Kubernetes CSR with its SubjectAccessReview, a rotation that updates the trust bundle), the (apiGroup,
resource[/subresource], verb) of those calls must be exactly what the chart grants, but for
``signers``/``sign`` and ``signers``/``attest``, which the API server checks on the operator's behalf
when it writes a CSR's certificate or a ClusterTrustBundle naming our signer, and never appear as calls.
Named ``zz`` so that, in a full run, the session's other scenarios are in the log too.
"""

from __future__ import annotations

import base64
import contextlib
import threading
import uuid
from collections.abc import Callable
from typing import Any

from tests.chart.rendering import render
from tests.cluster.conftest import Live
from tests.cluster.controlplane import OPERATOR_USER
from tests.cluster.install import CHART_VALUES, SECRETS_NAMESPACE
from tests.cluster.kube import ClusterKube
from tests.cluster.test_requests import finished, ready_issuer
from tests.csrs import make_csr
from tests.operator.kube import (
    CLUSTER_ISSUER_PATH,
    CR_PATH,
    ISSUER_PATH,
    ApiFailure,
    certificate_request,
    condition,
    issuer_body,
)
from tests.operator.test_rbac import CHECKED_BY_THE_API_SERVER, _chart_grants

CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"


def _observed(live: Live) -> set[tuple[tuple[str, str, str], str | None]]:
    """Every (rule, namespace) the operator's identity called: namespace None for a cluster-scoped call."""
    calls = set()
    for event in live.plane.audit_events():
        if (event.get("user") or {}).get("username") != OPERATOR_USER or "objectRef" not in event:
            continue
        ref = event["objectRef"]
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        calls.add(((ref.get("apiGroup", ""), resource, event["verb"]), ref.get("namespace") or None))
    return calls


def _churn(kube: ClusterKube, paths: list[str], stop: threading.Event) -> None:
    """Keep changing the objects' labels, so the operator's status writes meet conflicts (409) and it
    reads the object again (``get``), as it does when cert-manager touches a request meanwhile."""
    i = 0
    while not stop.is_set():
        for path in paths:
            i += 1
            with contextlib.suppress(ApiFailure):
                kube.call(
                    "PATCH", path, {"metadata": {"labels": {"churn": str(i)}}}, "application/merge-patch+json"
                )


def _with_conflicts(
    live: Live, make: Callable[[ClusterKube, str], str], wanted: tuple[str, str, str]
) -> None:
    """Make objects under churn until the operator has re-read one after a conflict."""
    churner = live.kube.clone()
    for round_ in range(10):
        stop = threading.Event()
        paths: list[str] = []
        worker = threading.Thread(target=_churn, args=(churner, paths, stop), daemon=True)
        worker.start()
        try:
            for i in range(8):
                paths.append(make(live.kube, f"c{round_}-{i}-{uuid.uuid4().hex[:4]}"))
            for path in paths:
                live.kube.wait(path, lambda o: bool(o.get("status", {}).get("certificate")) or finished(o))
        finally:
            stop.set()
            worker.join(timeout=10)
        if wanted in {rule for rule, _ in _observed(live)}:
            return
    raise AssertionError(f"no conflict made the operator call {wanted}")


def _drive_everything(live: Live) -> None:
    kube, namespace = live.kube, f"rbac-{uuid.uuid4().hex[:6]}"
    ready_issuer(kube, namespace, "ca")
    path = CR_PATH.format(ns=namespace)
    kube.create(path, certificate_request("one", make_csr(dns=["one.example.com"]), issuer="ca"))
    kube.approve(namespace, "one")
    assert condition(kube.wait(f"{path}/one", finished))["reason"] == "Issued"
    # A rotation: the new CA joins the trust bundle, so the operator updates the ConfigMap and the
    # ClusterTrustBundle it wrote when the issuer became Ready (attest checked by the API server).
    issuer_path = f"{ISSUER_PATH.format(ns=namespace)}/ca"
    kube.call(
        "PATCH",
        issuer_path,
        {"spec": {"key": {"rotation": {"generation": 1, "overlap": "1h"}}}},
        "application/merge-patch+json",
    )
    grown = kube.wait(
        f"/api/v1/namespaces/{namespace}/configmaps/trusted-issuer-ca-bundle",
        lambda o: o["data"]["ca.crt"].count("BEGIN CERTIFICATE") == 2,
    )
    bundle = kube.get(
        f"/apis/certificates.k8s.io/v1/clustertrustbundles/trustedissuers.trusted-issuer.dev:{namespace}.ca:bundle"
    )
    assert bundle["spec"]["trustBundle"] == grown["data"]["ca.crt"]
    # An intermediate CA: the operator reads (get, never list) the Secret named in its spec, in the one
    # namespace where the chart's values grant it.
    kube.namespace(SECRETS_NAMESPACE)
    sub = issuer_body("sub", namespace=SECRETS_NAMESPACE)
    sub["spec"]["ca"] = {"intermediate": {"subject": "CN=sub", "secretName": "sub-ca"}}
    kube.create(ISSUER_PATH.format(ns=SECRETS_NAMESPACE), sub)
    kube.wait(
        f"{ISSUER_PATH.format(ns=SECRETS_NAMESPACE)}/sub",
        lambda o: condition(o).get("reason") == "AwaitingCACertificate",
    )
    # A cluster issuer deleted with Destroy: kopf's finalizer and the key's destruction.
    cluster_name = f"rbac-{uuid.uuid4().hex[:6]}"
    ready_issuer(kube, None, cluster_name, deletion_policy="Destroy")
    kube.delete(f"{CLUSTER_ISSUER_PATH}/{cluster_name}")
    kube.wait(CLUSTER_ISSUER_PATH, lambda o: cluster_name not in [i["metadata"]["name"] for i in o["items"]])
    # A Kubernetes CSR: SubjectAccessReview of its requester (admin may reference any signer).
    csr = f"rbac-{namespace}"
    kube.create(CSR_PATH, _csr(csr, namespace))
    live.plane.kubectl("certificate", "approve", csr)
    kube.wait(f"{CSR_PATH}/{csr}", lambda o: bool(o.get("status", {}).get("certificate")))

    def request(kube: ClusterKube, name: str) -> str:
        kube.create(path, certificate_request(name, make_csr(dns=[f"{name}.example.com"]), issuer="ca"))
        kube.approve(namespace, name)
        return f"{path}/{name}"

    def signing_request(kube: ClusterKube, name: str) -> str:
        kube.create(CSR_PATH, _csr(f"{namespace}-{name}", namespace))
        live.plane.kubectl("certificate", "approve", f"{namespace}-{name}")
        return f"{CSR_PATH}/{namespace}-{name}"

    _with_conflicts(live, request, ("cert-manager.io", "certificaterequests", "get"))
    _with_conflicts(live, signing_request, ("certificates.k8s.io", "certificatesigningrequests", "get"))


def _csr(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64.b64encode(make_csr(dns=[f"{name}.example.com"])).decode(),
            "signerName": f"trustedissuers.trusted-issuer.dev/{namespace}.ca",
            "usages": ["digital signature", "client auth"],
        },
    }


def test_chart_rbac_is_exactly_what_the_operator_calls(live: Live) -> None:
    _drive_everything(live)
    grants = _chart_grants(render(CHART_VALUES))
    observed = _observed(live)
    called = {rule for rule, _ in observed}
    unused = {rule for rule in grants.cluster | set(grants.named) if rule not in called}
    unused |= {
        (rule, namespace)  # type: ignore[misc]
        for namespace, rules in grants.namespaced.items()
        for rule in rules
        if (rule, namespace) not in observed
    }
    assert unused == set(CHECKED_BY_THE_API_SERVER), (
        f"the chart grants what the operator never calls: {unused}"
    )
    ungranted = {
        (rule, namespace)
        for rule, namespace in observed
        if rule not in grants.cluster
        and rule not in grants.named
        and rule not in grants.namespaced.get(namespace or "", set())
    }
    assert not ungranted, f"the operator called what the chart does not grant: {ungranted}"
