"""cert-manager's CertificateRequest contract on a real kube-apiserver, with the operator holding exactly the
chart's RBAC: approval, denial, publish once, foreign requests untouched, hostile requests Failed, both
issuer kinds. Certificates are verified with openssl against the issuer's own ``status.ca``."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.cluster.conftest import Live
from tests.cluster.controlplane import OPERATOR_USER
from tests.cluster.kube import ClusterKube, assert_each_published_once
from tests.csrs import leaf_key, make_csr, pem_armour
from tests.operator.kube import (
    CLUSTER_ISSUER_PATH,
    CR_PATH,
    ISSUER_PATH,
    certificate_request,
    condition,
    issuer_body,
    pem,
)
from tests.verifiers import openssl_verify


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def ready_issuer(kube: ClusterKube, namespace: str | None, name: str, **kwargs: Any) -> dict[str, Any]:
    """A TrustedIssuer in ``namespace`` (or a TrustedClusterIssuer for None), once Ready."""
    if namespace:
        kube.namespace(namespace)
        path = ISSUER_PATH.format(ns=namespace)
    else:
        path = CLUSTER_ISSUER_PATH
    kube.create(path, issuer_body(name, namespace=namespace, **kwargs))
    return kube.wait(f"{path}/{name}", lambda o: condition(o).get("status") == "True", timeout=120)


def issuer_ca(issuer: dict[str, Any]) -> bytes:
    """The issuer's own ``status.ca``: PEM text (a request's ``status.ca`` is base64 of PEM)."""
    return str(issuer["status"]["ca"]).encode()


def finished(obj: dict[str, Any]) -> bool:
    ready = condition(obj)
    return ready.get("status") == "True" or ready.get("reason") in ("Failed", "Denied")


def status_writers(live: Live, namespace: str, name: str) -> set[str]:
    """Who wrote the status of one CertificateRequest (audit log)."""
    return {
        e["user"]["username"]
        for e in live.plane.audit_events()
        if (e.get("objectRef") or {}).get("namespace") == namespace
        and (e.get("objectRef") or {}).get("name") == name
        and (e.get("objectRef") or {}).get("subresource") == "status"
    }


@pytest.mark.parametrize(
    ("kind", "algorithm"), [("TrustedIssuer", "ecdsa-p256"), ("TrustedClusterIssuer", "rsa-2048")]
)
def test_approved_request_is_issued_once_and_verifies(live: Live, kind: str, algorithm: str) -> None:
    kube, namespace = live.kube, unique("issue")
    kube.namespace(namespace)
    issuer_name = unique("ca")
    issuer = ready_issuer(
        kube, namespace if kind == "TrustedIssuer" else None, issuer_name, algorithm=algorithm
    )
    assert issuer["status"]["keyHandle"]["algorithm"] == algorithm
    path = CR_PATH.format(ns=namespace)
    names = [f"web-{i}" for i in range(5)]
    for name in names:
        csr = make_csr(key=leaf_key("ecdsa-p256"), common_name=name, dns=[f"{name}.example.com"])
        body = certificate_request(
            name, csr, issuer=issuer_name, kind=kind, usages=["digital signature", "server auth"]
        )
        kube.create(path, body)
        kube.approve(namespace, name)
    for name in names:
        kube.wait(f"{path}/{name}", finished)
    items = assert_each_published_once(kube, live.plane.audit_events(), path, namespace, names)
    for name, item in items.items():
        assert pem(item["status"]["ca"]) == issuer_ca(issuer)
        openssl_verify(pem(item["status"]["certificate"]), issuer_ca(issuer), purpose="sslserver")
        meta = item["metadata"]
        assert not meta.get("finalizers"), name  # a guest: nothing of ours but its status
        assert not [k for k in meta.get("annotations") or {} if "trusted-issuer" in k or "kopf" in k], name
    assert status_writers(live, namespace, names[0]) == {"admin", OPERATOR_USER}


def test_unapproved_request_waits_and_denied_request_is_never_signed(live: Live) -> None:
    kube, namespace = live.kube, unique("decide")
    issuer = unique("ca")
    ready_issuer(kube, namespace, issuer)
    path = CR_PATH.format(ns=namespace)
    kube.create(path, certificate_request("later", make_csr(dns=["later.example.com"]), issuer=issuer))
    kube.create(path, certificate_request("nope", make_csr(dns=["nope.example.com"]), issuer=issuer))
    kube.deny(namespace, "nope")
    denied = kube.wait(f"{path}/nope", finished)
    assert (condition(denied)["status"], condition(denied)["reason"]) == ("False", "Denied")
    assert denied["status"].get("failureTime")
    assert not denied["status"].get("certificate")
    assert not kube.get(f"{path}/later").get("status", {}).get("certificate")
    kube.approve(namespace, "later")
    assert condition(kube.wait(f"{path}/later", finished))["reason"] == "Issued"
    assert not kube.get(f"{path}/nope")["status"].get("certificate")


def test_foreign_requests_are_untouched(live: Live) -> None:
    kube, namespace = live.kube, unique("foreign")
    issuer = unique("ca")
    ready_issuer(kube, namespace, issuer)
    path = CR_PATH.format(ns=namespace)
    csr = make_csr(dns=["f.example.com"])
    kube.create(
        path, certificate_request("other-group", csr, issuer=issuer, group="cert-manager.io", kind="Issuer")
    )
    kube.create(path, certificate_request("other-kind", csr, issuer=issuer, kind="Issuer"))
    kube.create(path, certificate_request("ours", csr, issuer=issuer))
    for name in ("other-group", "other-kind", "ours"):
        kube.approve(namespace, name)
    kube.wait(f"{path}/ours", finished)
    time.sleep(1)
    for name in ("other-group", "other-kind"):
        item = kube.get(f"{path}/{name}")
        assert condition(item) == {}, item["status"]
        assert not item["status"].get("certificate")
        # The API server's own record: only the tests' approver ever wrote its status.
        assert status_writers(live, namespace, name) == {"admin"}


def test_hostile_requests_fail_and_do_not_stop_the_others(live: Live) -> None:
    kube, namespace = live.kube, unique("hostile")
    issuer = unique("ca")
    ready_issuer(kube, namespace, issuer, policy={"dnsDomains": ["example.com"]})
    path = CR_PATH.format(ns=namespace)
    hostile = {
        "not-a-csr": pem_armour("CERTIFICATE REQUEST", b"\x30\x03\x02\x01\x00"),
        "outside-policy": make_csr(dns=["bank.example.org"]),
        "ca-not-allowed": make_csr(common_name="sub", dns=["sub.example.com"]),
    }
    for name, csr in hostile.items():
        kube.create(path, certificate_request(name, csr, issuer=issuer, is_ca=name == "ca-not-allowed"))
        kube.approve(namespace, name)
    kube.create(path, certificate_request("fine", make_csr(dns=["fine.example.com"]), issuer=issuer))
    kube.approve(namespace, "fine")
    for name in hostile:
        failed = kube.wait(f"{path}/{name}", finished)
        assert (condition(failed)["status"], condition(failed)["reason"]) == ("False", "Failed"), name
        assert failed["status"].get("failureTime"), name
        assert not failed["status"].get("certificate"), name
    assert condition(kube.wait(f"{path}/fine", finished))["reason"] == "Issued"
    assert live.operator.process is not None and live.operator.process.poll() is None
