"""cert-manager's external-issuer contract, observed from outside against the running operator."""

from __future__ import annotations

import time
import uuid

import pytest
from cryptography import x509

from tests.csrs import leaf_key, make_csr
from tests.operator.conftest import Cluster
from tests.operator.kube import (
    CLUSTER_ISSUER_PATH,
    CR_PATH,
    ISSUER_PATH,
    ApiFailure,
    certificate_request,
    condition,
    issuer_body,
    pem,
)
from tests.verifiers import openssl_verify, pkilint_errors


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _ready_issuer(cluster: Cluster, namespace: str | None, name: str, **kwargs: object) -> dict:
    kube = cluster.kube
    if namespace:
        kube.namespace(namespace)
        path = ISSUER_PATH.format(ns=namespace)
    else:
        path = CLUSTER_ISSUER_PATH
    kube.create(path, issuer_body(name, namespace=namespace, **kwargs))  # type: ignore[arg-type]
    return kube.wait(f"{path}/{name}", lambda o: condition(o).get("status") == "True", timeout=60)


def _finished(obj: dict) -> bool:
    ready = condition(obj)
    return ready.get("status") == "True" or ready.get("reason") in ("Failed", "Denied")


@pytest.mark.parametrize(
    ("kind", "algorithm"),
    [
        ("TrustedIssuer", "ecdsa-p256"),
        ("TrustedIssuer", "rsa-2048"),
        ("TrustedClusterIssuer", "ecdsa-p384"),
        ("TrustedClusterIssuer", "ed25519"),
    ],
)
def test_request_is_issued_and_verifies(cluster: Cluster, kind: str, algorithm: str) -> None:
    kube = cluster.kube
    namespace = _name("issue")
    kube.namespace(namespace)
    issuer_name = _name("ca")
    issuer = _ready_issuer(
        cluster, namespace if kind == "TrustedIssuer" else None, issuer_name, algorithm=algorithm
    )

    handle = issuer["status"]["keyHandle"]
    assert handle["algorithm"] == algorithm
    assert handle["tokenLabel"] == cluster.token.token_label
    assert len(handle["publicKeySHA256"]) == 64
    ca_pem = issuer["status"]["caCertificates"][0]["pem"].encode()
    assert "PRIVATE" not in str(issuer)

    csr = make_csr(key=leaf_key("ecdsa-p256"), common_name="web", dns=["web.example.com"])
    body = certificate_request(
        "web", csr, issuer=issuer_name, kind=kind, duration="24h", usages=["digital signature", "server auth"]
    )
    path = CR_PATH.format(ns=namespace)
    kube.create(path, body)
    kube.approve(namespace, "web")
    done = kube.wait(f"{path}/web", _finished)

    ready = condition(done)
    assert (ready["status"], ready["reason"]) == ("True", "Issued"), ready
    chain, root = pem(done["status"]["certificate"]), pem(done["status"]["ca"])
    assert root == ca_pem
    openssl_verify(chain, root, purpose="sslserver")
    assert pkilint_errors(chain) == []
    leaf = x509.load_pem_x509_certificate(chain)
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == ["web.example.com"]
    meta = done["metadata"]
    # The request is a guest: nothing of ours on it but its status.
    assert not meta.get("finalizers")
    assert not [k for k in (meta.get("annotations") or {}) if "trusted-issuer" in k or "kopf" in k]
    assert not [k for k in (meta.get("labels") or {}) if "trusted-issuer" in k or "kopf" in k]


def test_unapproved_request_waits_until_approved(cluster: Cluster) -> None:
    kube, namespace = cluster.kube, _name("approve")
    issuer = _name("ca")
    _ready_issuer(cluster, namespace, issuer)
    path = CR_PATH.format(ns=namespace)
    kube.create(path, certificate_request("later", make_csr(dns=["later.example.com"]), issuer=issuer))
    time.sleep(2)
    assert not kube.get(f"{path}/later").get("status", {}).get("certificate")
    kube.approve(namespace, "later")
    done = kube.wait(f"{path}/later", _finished)
    assert condition(done)["reason"] == "Issued"


def test_denied_request_is_marked_denied_and_never_signed(cluster: Cluster) -> None:
    kube, namespace = cluster.kube, _name("deny")
    issuer = _name("ca")
    _ready_issuer(cluster, namespace, issuer)
    path = CR_PATH.format(ns=namespace)
    kube.create(path, certificate_request("nope", make_csr(dns=["nope.example.com"]), issuer=issuer))
    kube.deny(namespace, "nope")
    done = kube.wait(f"{path}/nope", _finished)
    assert (condition(done)["status"], condition(done)["reason"]) == ("False", "Denied")
    assert done["status"].get("failureTime")
    assert not done["status"].get("certificate")


def test_foreign_issuer_refs_are_ignored(cluster: Cluster) -> None:
    kube, namespace = cluster.kube, _name("foreign")
    issuer = _name("ca")
    _ready_issuer(cluster, namespace, issuer)
    path = CR_PATH.format(ns=namespace)
    csr = make_csr(dns=["f.example.com"])
    kube.create(
        path, certificate_request("other-group", csr, issuer=issuer, group="cert-manager.io", kind="Issuer")
    )
    kube.create(path, certificate_request("other-kind", csr, issuer=issuer, kind="Issuer"))
    kube.create(path, certificate_request("ours", csr, issuer=issuer))
    for name in ("other-group", "other-kind", "ours"):
        kube.approve(namespace, name)
    kube.wait(f"{path}/ours", _finished)  # the operator has been through the queue by now
    for name in ("other-group", "other-kind"):
        status = kube.get(f"{path}/{name}")["status"]
        assert condition({"status": status}) == {}, status
        assert not status.get("certificate")


def test_issuer_of_another_namespace_is_not_reachable(cluster: Cluster) -> None:
    kube = cluster.kube
    home, elsewhere = _name("home"), _name("elsewhere")
    issuer = _name("ca")
    _ready_issuer(cluster, home, issuer)
    kube.namespace(elsewhere)
    path = CR_PATH.format(ns=elsewhere)
    kube.create(path, certificate_request("sneaky", make_csr(dns=["s.example.com"]), issuer=issuer))
    kube.approve(elsewhere, "sneaky")
    pending = kube.wait(f"{path}/sneaky", lambda o: condition(o).get("reason") == "Pending")
    assert "does not exist" in condition(pending)["message"]
    assert f"{elsewhere}/{issuer}" in condition(pending)["message"]
    time.sleep(1)
    assert not kube.get(f"{path}/sneaky")["status"].get("certificate")


def test_profile_not_open_to_the_namespace(cluster: Cluster) -> None:
    kube, namespace = cluster.kube, _name("team-b")
    kube.namespace(namespace)
    name = _name("ca")
    path = ISSUER_PATH.format(ns=namespace)
    kube.create(path, issuer_body(name, namespace=namespace, profile="restricted"))
    issuer = kube.wait(f"{path}/{name}", lambda o: condition(o).get("status") == "False")
    assert condition(issuer)["reason"] == "ProfileNotAllowed"
    assert "keyHandle" not in issuer["status"]


def test_cluster_issuer_cannot_use_a_namespace_only_profile(cluster: Cluster) -> None:
    kube, name = cluster.kube, _name("cca")
    kube.create(CLUSTER_ISSUER_PATH, issuer_body(name, profile="restricted"))
    issuer = kube.wait(f"{CLUSTER_ISSUER_PATH}/{name}", lambda o: condition(o).get("status") == "False")
    assert condition(issuer)["reason"] == "ProfileNotAllowed"


def test_wrong_pin_makes_the_issuer_not_ready_with_a_reason(cluster: Cluster) -> None:
    kube, namespace = cluster.kube, _name("pin")
    kube.namespace(namespace)
    name = _name("ca")
    path = ISSUER_PATH.format(ns=namespace)
    kube.create(path, issuer_body(name, namespace=namespace, profile="badpin"))
    issuer = kube.wait(f"{path}/{name}", lambda o: condition(o).get("status") == "False")
    assert condition(issuer)["reason"] == "PINIncorrect"
    assert "not-the-pin-4711" not in str(issuer)
    assert "not-the-pin-4711" not in cluster.operator.log()


def test_request_waits_for_an_issuer_that_becomes_ready(cluster: Cluster) -> None:
    kube, namespace = cluster.kube, _name("early")
    kube.namespace(namespace)
    issuer = _name("ca")
    path = CR_PATH.format(ns=namespace)
    kube.create(path, certificate_request("early", make_csr(dns=["e.example.com"]), issuer=issuer))
    kube.approve(namespace, "early")
    pending = kube.wait(f"{path}/early", lambda o: condition(o).get("reason") == "Pending")
    assert "does not exist" in condition(pending)["message"]
    _ready_issuer(cluster, namespace, issuer)
    done = kube.wait(f"{path}/early", _finished)
    assert condition(done)["reason"] == "Issued"


def test_malformed_csr_fails_only_its_own_request(cluster: Cluster) -> None:
    kube, namespace = cluster.kube, _name("bad")
    issuer = _name("ca")
    _ready_issuer(cluster, namespace, issuer)
    path = CR_PATH.format(ns=namespace)
    kube.create(
        path,
        certificate_request(
            "garbage",
            b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            issuer=issuer,
        ),
    )
    for i in range(5):
        kube.create(
            path, certificate_request(f"good-{i}", make_csr(dns=[f"g{i}.example.com"]), issuer=issuer)
        )
    for name in ["garbage", *(f"good-{i}" for i in range(5))]:
        kube.approve(namespace, name)
    failed = kube.wait(f"{path}/garbage", _finished)
    assert (condition(failed)["status"], condition(failed)["reason"]) == ("False", "Failed")
    assert "CSR" in condition(failed)["message"]
    assert failed["status"].get("failureTime")
    for i in range(5):
        assert condition(kube.wait(f"{path}/good-{i}", _finished))["reason"] == "Issued"
    assert cluster.operator.process is not None and cluster.operator.process.poll() is None


def test_policy_violation_fails_with_the_rule_named(cluster: Cluster) -> None:
    kube, namespace = cluster.kube, _name("policy")
    issuer = _name("ca")
    # maxDuration alone: the CRD must not default a defaultDuration that exceeds it.
    _ready_issuer(
        cluster, namespace, issuer, policy={"dnsDomains": ["svc.cluster.local"], "maxDuration": "720h"}
    )
    path = CR_PATH.format(ns=namespace)
    kube.create(path, certificate_request("evil", make_csr(dns=["evilsvc.cluster.local"]), issuer=issuer))
    kube.create(path, certificate_request("fine", make_csr(dns=["web.ns.svc.cluster.local"]), issuer=issuer))
    kube.approve(namespace, "evil")
    kube.approve(namespace, "fine")
    failed = kube.wait(f"{path}/evil", _finished)
    assert condition(failed)["reason"] == "Failed"
    assert "policy.dnsDomains" in condition(failed)["message"]
    assert condition(kube.wait(f"{path}/fine", _finished))["reason"] == "Issued"


def test_ca_request_refused_unless_policy_allows(cluster: Cluster) -> None:
    kube, namespace = cluster.kube, _name("isca")
    issuer = _name("ca")
    _ready_issuer(cluster, namespace, issuer)
    path = CR_PATH.format(ns=namespace)
    csr = make_csr(
        common_name="sub-ca", extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)]
    )
    kube.create(path, certificate_request("subca", csr, issuer=issuer, is_ca=True))
    kube.approve(namespace, "subca")
    failed = kube.wait(f"{path}/subca", _finished)
    assert condition(failed)["reason"] == "Failed"
    assert "allowCA" in condition(failed)["message"]


def test_request_deleted_mid_flight_is_no_error(cluster: Cluster) -> None:
    kube, namespace = cluster.kube, _name("gone")
    issuer = _name("ca")
    _ready_issuer(cluster, namespace, issuer)
    path = CR_PATH.format(ns=namespace)
    for i in range(20):
        kube.create(path, certificate_request(f"r{i}", make_csr(dns=[f"r{i}.example.com"]), issuer=issuer))
        kube.approve(namespace, f"r{i}")
        kube.delete(f"{path}/r{i}")
    kube.create(path, certificate_request("after", make_csr(dns=["after.example.com"]), issuer=issuer))
    kube.approve(namespace, "after")
    assert condition(kube.wait(f"{path}/after", _finished))["reason"] == "Issued"
    for i in range(20):
        with pytest.raises(ApiFailure):
            kube.get(f"{path}/r{i}")
    assert cluster.operator.process is not None and cluster.operator.process.poll() is None
