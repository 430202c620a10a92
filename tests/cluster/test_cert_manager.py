"""cert-manager's own controllers (v1.21.1, built from its module: ``scripts/client-bins.sh``) turn
Certificates into keys, CertificateRequests and Secrets on the real control plane, against our operator
holding exactly the chart's RBAC. The Certificate's own conditions are the oracle; the Secrets are checked
with openssl against the issuer's ``status.ca``.

cert-manager's webhook cannot run here (it cannot be built from outside its repository), so its
CertificateRequests carry no ``spec.username``/``groups``/``uid`` and nothing checks who approves.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from tests.cluster.clients import (
    APPROVER,
    CERTIFICATE_CONTROLLERS,
    REQUESTER_IDENTITY_POLICIES,
    ClientsMissing,
    cert_manager_controllers,
    client_bins_dir,
)
from tests.cluster.conftest import Live
from tests.cluster.controlplane import Component
from tests.cluster.install import FIELD_MANAGER
from tests.cluster.kube import ClusterKube
from tests.cluster.test_requests import issuer_ca, ready_issuer, unique
from tests.csrs import make_csr
from tests.operator.kube import CR_PATH, ISSUER_PATH, ApiFailure, certificate_request, condition
from tests.verifiers import openssl_verify

CERT_PATH = "/apis/cert-manager.io/v1/namespaces/{ns}/certificates"
#: The issuer cuts every lifetime to 30 s. cert-manager renews at 2/3 of the lifetime it got, counted from
#: notBefore, which the issuer backdates by a tenth of the lifetime (at most 5 minutes): 33 s in all,
#: renewed ~19 s after issuance.
SHORT_LIFETIME = {"maxDuration": "30s", "minDuration": "5s"}
BACKDATE = 3


@dataclass
class CertManager:
    """cert-manager's certificate controllers and, apart, its approver (a test may stop it)."""

    certificates: Component
    approver: Component

    def logs(self) -> str:
        return "\n".join(c.tail(60) for c in (self.certificates, self.approver))


@pytest.fixture(scope="module")
def cert_manager(live: Live, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertManager]:
    try:
        bins = client_bins_dir()
    except ClientsMissing as err:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI: cert-manager's controllers cannot run: {err}")
        pytest.skip(f"cert-manager tests: {err}")
    # cert-manager's CRDs of the very version its controllers are built from (the control plane may have
    # started with another copy), applied as an administrator would upgrade them.
    for crd in sorted((bins / "crds").glob("cert-manager.io_*.yaml")):
        live.plane.kubectl(
            "apply", "--server-side", "--force-conflicts", f"--field-manager={FIELD_MANAGER}", "-f", str(crd)
        )
    live.plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    apply_requester_identity_policies(live)
    workdir = tmp_path_factory.mktemp("cert-manager")
    # As an administrator: cert-manager's own RBAC is its chart's, not ours to reproduce.
    kubeconfig: Path = live.plane.admin_kubeconfig
    running = CertManager(
        cert_manager_controllers(bins, kubeconfig, workdir / "certificates.log", CERTIFICATE_CONTROLLERS),
        cert_manager_controllers(bins, kubeconfig, workdir / "approver.log", (APPROVER,)),
    )
    running.certificates.start()
    running.approver.start()
    try:
        yield running
    finally:
        running.approver.stop()
        running.certificates.stop()
        for policy in reversed(REQUESTER_IDENTITY_POLICIES):
            meta = policy["metadata"]
            assert isinstance(meta, dict)
            live.plane.kubectl("delete", str(policy["kind"]).lower(), str(meta["name"]), "--ignore-not-found")


def apply_requester_identity_policies(live: Live) -> None:
    """The admission policies standing in for cert-manager's webhook's identity fields; returns once the
    API server enforces them (a dry-run create comes back with the creator's name)."""
    live.plane.kubectl(
        "apply",
        "--server-side",
        f"--field-manager={FIELD_MANAGER}",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(REQUESTER_IDENTITY_POLICIES),
    )
    probe = certificate_request("probe", make_csr(dns=["probe.example.com"]), issuer="none")
    probe["spec"]["username"] = "forged"
    deadline = time.monotonic() + 30
    while True:
        created = live.kube.call("POST", CR_PATH.format(ns="default") + "?dryRun=All", probe)
        if created["spec"].get("username") == "admin":
            return
        assert time.monotonic() < deadline, f"the admission policies are not enforced: {created['spec']}"
        time.sleep(0.3)


def certificate(
    name: str,
    issuer: str,
    kind: str,
    *,
    dns: list[str] | None = None,
    is_ca: bool = False,
    rotation_policy: str = "Always",
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": name},
        "spec": {
            "secretName": f"{name}-tls",
            "commonName": (dns or [f"{name}.example.com"])[0],
            "dnsNames": dns or [f"{name}.example.com"],
            "issuerRef": {"group": "trusted-issuer.dev", "kind": kind, "name": issuer},
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": rotation_policy},
            **spec,
        },
    }
    if is_ca:
        body["spec"]["isCA"] = True
    return body


def ready(obj: dict[str, Any]) -> bool:
    return condition(obj).get("status") == "True"


def secret_data(kube: ClusterKube, namespace: str, name: str) -> dict[str, bytes]:
    data = kube.get(f"/api/v1/namespaces/{namespace}/secrets/{name}").get("data") or {}
    return {k: base64.b64decode(v) for k, v in data.items()}


def leaf(data: dict[str, bytes]) -> x509.Certificate:
    return x509.load_pem_x509_certificates(data["tls.crt"])[0]


def public_key_der(key: Any) -> bytes:
    return bytes(
        key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def assert_secret_verifies(
    kube: ClusterKube, namespace: str, secret: str, issuer: dict[str, Any]
) -> x509.Certificate:
    """tls.crt, tls.key and ca.crt present; the key is the certificate's; the chain verifies with openssl
    against the issuer's own status.ca, which is also what ca.crt says."""
    data = secret_data(kube, namespace, secret)
    assert {"tls.crt", "tls.key", "ca.crt"} <= set(data), sorted(data)
    assert data["ca.crt"] == issuer_ca(issuer)
    openssl_verify(data["tls.crt"], issuer_ca(issuer), purpose="sslserver")
    key = serialization.load_pem_private_key(data["tls.key"], None)
    cert = leaf(data)
    assert public_key_der(key.public_key()) == public_key_der(cert.public_key())
    return cert


def wait_certificate(
    kube: ClusterKube,
    namespace: str,
    name: str,
    predicate: Any = ready,
    timeout: float = 90,
    cm: CertManager | None = None,
) -> dict[str, Any]:
    try:
        return kube.wait(f"{CERT_PATH.format(ns=namespace)}/{name}", predicate, timeout=timeout)
    except AssertionError as err:
        raise AssertionError(f"{err}\ncert-manager:\n{cm.logs() if cm else ''}") from None


@pytest.mark.parametrize("algorithm", ["ecdsa-p256", "rsa-2048", "ed25519"])
@pytest.mark.parametrize("kind", ["TrustedIssuer", "TrustedClusterIssuer"])
def test_certificate_becomes_ready_and_its_secret_verifies(
    live: Live, cert_manager: CertManager, kind: str, algorithm: str
) -> None:
    kube, namespace = live.kube, unique("cm-issue")
    kube.namespace(namespace)
    name = unique("ca")
    issuer = ready_issuer(kube, namespace if kind == "TrustedIssuer" else None, name, algorithm=algorithm)
    kube.create(CERT_PATH.format(ns=namespace), certificate("web", name, kind))
    done = wait_certificate(kube, namespace, "web", cm=cert_manager)
    assert done["status"]["revision"] == 1
    cert = assert_secret_verifies(kube, namespace, "web-tls", issuer)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["web.example.com"]
    requests = kube.get(CR_PATH.format(ns=namespace))["items"]
    assert len(requests) == 1
    # Approved by cert-manager's own approver, issued by us; the requester is cert-manager's identity
    # (here an administrator), written by the admission policy standing in for its webhook.
    assert condition(requests[0], "Approved").get("status") == "True"
    assert requests[0]["spec"]["username"] == "admin"
    assert "system:masters" in requests[0]["spec"]["groups"]
    assert condition(requests[0]).get("reason") == "Issued"


@pytest.mark.parametrize("rotation_policy", ["Always", "Never"])
def test_renewal_at_two_thirds_of_the_lifetime_the_issuer_granted(
    live: Live, cert_manager: CertManager, rotation_policy: str
) -> None:
    """cert-manager asks for its default 90 days; the issuer grants 30 s; cert-manager renews ~19 s later
    with a new key (Always) or the same key (Never)."""
    kube, namespace = live.kube, unique("cm-renew")
    name = unique("ca")
    issuer = ready_issuer(kube, namespace, name, policy=SHORT_LIFETIME)
    kube.create(
        CERT_PATH.format(ns=namespace),
        certificate("short", name, "TrustedIssuer", rotation_policy=rotation_policy),
    )
    first = wait_certificate(kube, namespace, "short", cm=cert_manager)
    cert1 = assert_secret_verifies(kube, namespace, "short-tls", issuer)
    lifetime = cert1.not_valid_after_utc - cert1.not_valid_before_utc
    assert lifetime.total_seconds() <= 30 + BACKDATE, lifetime  # not the 90 days cert-manager asked
    renewal = first["status"]["renewalTime"]
    second = wait_certificate(
        kube,
        namespace,
        "short",
        # The readiness controller moves renewalTime a moment after the issuing controller's revision.
        lambda o: ready(o) and o["status"].get("revision", 0) >= 2 and o["status"]["renewalTime"] != renewal,
        timeout=90,
        cm=cert_manager,
    )
    assert second["status"]["revision"] <= 3, "renewed more often than every ~20 s"
    cert2 = assert_secret_verifies(kube, namespace, "short-tls", issuer)
    assert cert2.serial_number != cert1.serial_number
    same_key = public_key_der(cert1.public_key()) == public_key_der(cert2.public_key())
    assert same_key is (rotation_policy == "Never")
    failed = [
        r for r in kube.get(CR_PATH.format(ns=namespace))["items"] if condition(r).get("reason") != "Issued"
    ]
    assert not failed, [condition(r) for r in failed]


@pytest.mark.parametrize("allow_ca", [True, False])
def test_is_ca_certificate_follows_the_issuers_policy(
    live: Live, cert_manager: CertManager, allow_ca: bool
) -> None:
    kube, namespace = live.kube, unique("cm-ca")
    name = unique("ca")
    issuer = ready_issuer(kube, namespace, name, policy={"allowCA": allow_ca})
    kube.create(CERT_PATH.format(ns=namespace), certificate("sub", name, "TrustedIssuer", is_ca=True))
    if allow_ca:
        wait_certificate(kube, namespace, "sub", cm=cert_manager)
        data = secret_data(kube, namespace, "sub-tls")
        openssl_verify(data["tls.crt"], issuer_ca(issuer))
        assert leaf(data).extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        return
    refused = wait_certificate(
        kube, namespace, "sub", lambda o: condition(o, "Issuing").get("status") == "False", cm=cert_manager
    )
    assert refused["status"].get("lastFailureTime")
    assert not ready(refused)
    requests = kube.get(CR_PATH.format(ns=namespace))["items"]
    assert [condition(r).get("reason") for r in requests] == ["Failed"]
    assert not requests[0]["status"].get("certificate")
    assert "tls.crt" not in secret_data_or_empty(kube, namespace, "sub-tls")


def secret_data_or_empty(kube: ClusterKube, namespace: str, name: str) -> dict[str, bytes]:
    try:
        return secret_data(kube, namespace, name)
    except ApiFailure as err:
        if err.status != 404:
            raise
        return {}


def test_without_the_approver_a_denied_request_is_reported_and_never_signed(
    live: Live, cert_manager: CertManager
) -> None:
    kube, namespace = live.kube, unique("cm-deny")
    name = unique("ca")
    ready_issuer(kube, namespace, name)
    cert_manager.approver.stop()
    try:
        kube.create(CERT_PATH.format(ns=namespace), certificate("nope", name, "TrustedIssuer"))
        path = CR_PATH.format(ns=namespace)
        request = kube.wait(path, lambda o: len(o["items"]) == 1)["items"][0]["metadata"]["name"]
        time.sleep(2)
        waiting = kube.get(f"{path}/{request}")
        assert not waiting.get("status", {}).get("certificate"), "signed without approval"
        kube.deny(namespace, request)
        denied = wait_certificate(
            kube,
            namespace,
            "nope",
            lambda o: condition(o, "Issuing").get("status") == "False",
            cm=cert_manager,
        )
        assert "tests deny" in condition(denied, "Issuing")["message"]
        assert denied["status"].get("lastFailureTime")
        assert denied["status"].get("failedIssuanceAttempts") == 1
        assert not ready(denied)
        final = kube.wait(f"{path}/{request}", lambda o: condition(o).get("reason") == "Denied")
        assert not final["status"].get("certificate")
        assert "tls.crt" not in secret_data_or_empty(kube, namespace, "nope-tls")
    finally:
        cert_manager.approver.start()


def test_ca_rotation_overlap_while_certificates_renew(live: Live, cert_manager: CertManager) -> None:
    """Certificates renewing every ~20 s across a CA key rotation: their Secrets' ca.crt carries the new CA
    before it signs, their certificates then chain to it, and no request fails."""
    kube, namespace = live.kube, unique("cm-rotate")
    name = unique("ca")
    issuer = ready_issuer(kube, namespace, name, policy=SHORT_LIFETIME)
    old_key = issuer["status"]["keyHandle"]
    names = ["a", "b"]
    for item in names:
        kube.create(CERT_PATH.format(ns=namespace), certificate(item, name, "TrustedIssuer"))
    for item in names:
        wait_certificate(kube, namespace, item, cm=cert_manager)
    issuer_path = f"{ISSUER_PATH.format(ns=namespace)}/{name}"
    kube.call(
        "PATCH",
        issuer_path,
        {"spec": {"key": {"rotation": {"generation": 1, "overlap": "25s"}}}},
        "application/merge-patch+json",
    )
    overlap = kube.wait(issuer_path, lambda o: bool(o["status"].get("nextKey")), timeout=60)
    new_ca = _by_use(overlap, "Next")
    assert len(x509.load_pem_x509_certificates(issuer_ca(overlap))) >= 2
    # During the overlap: renewals are still signed by the old key, and ca.crt already trusts the new CA.
    for item in names:
        wait_certificate(
            kube,
            namespace,
            item,
            lambda o, item=item: ready(o) and new_ca in secret_data(kube, namespace, f"{item}-tls")["ca.crt"],
            timeout=60,
            cm=cert_manager,
        )
    kube.wait(issuer_path, lambda o: o["status"]["keyHandle"] != old_key, timeout=120)
    new_ca_cert = x509.load_pem_x509_certificate(new_ca)
    for item in names:
        # A renewal after the switch: signed by the new key, and verifies against today's status.ca.
        wait_certificate(
            kube,
            namespace,
            item,
            lambda o, item=item: (
                ready(o) and _signed_by(secret_data(kube, namespace, f"{item}-tls"), new_ca_cert)
            ),
            timeout=90,
            cm=cert_manager,
        )
        data = secret_data(kube, namespace, f"{item}-tls")
        assert new_ca in data["ca.crt"]
        openssl_verify(data["tls.crt"], data["ca.crt"], purpose="sslserver")
        openssl_verify(data["tls.crt"], issuer_ca(kube.get(issuer_path)), purpose="sslserver")
    failed = [
        r for r in kube.get(CR_PATH.format(ns=namespace))["items"] if condition(r).get("reason") != "Issued"
    ]
    assert not failed, [(r["metadata"]["name"], condition(r)) for r in failed]


def _by_use(status_of: dict[str, Any], use: str) -> bytes:
    """The one CA certificate (PEM) of ``use`` (Signing, Next, Previous) in the issuer's status."""
    found = [str(c["pem"]).encode() for c in status_of["status"]["caCertificates"] if c.get("use") == use]
    assert len(found) == 1, (use, status_of["status"].get("caCertificates"))
    return found[0]


def _signed_by(data: dict[str, bytes], ca: x509.Certificate) -> bool:
    try:
        leaf(data).verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def test_a_requester_cannot_forge_its_identity_or_rewrite_a_request(
    live: Live, cert_manager: CertManager
) -> None:
    """The admission policies in place of cert-manager's webhook: a tenant allowed to create
    CertificateRequests gets its own name in spec.username whatever it wrote, may not write spec.extra,
    and may not change a request's spec afterwards."""
    kube, namespace = live.kube, unique("cm-forge")
    kube.namespace(namespace)
    rules = [
        {
            "apiGroups": ["cert-manager.io"],
            "resources": ["certificaterequests"],
            "verbs": ["create", "get", "update", "patch"],
        }
    ]
    kube.create(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
        {"metadata": {"name": "requester"}, "rules": rules},
    )
    kube.create(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
        {
            "metadata": {"name": "mallory-requests"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "requester"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory"}],
        },
    )
    mallory = live.tenant("mallory")
    path = CR_PATH.format(ns=namespace)
    forged = certificate_request("forged", make_csr(dns=["forged.example.com"]), issuer="any")
    forged["spec"].update(
        {
            "username": "system:serviceaccount:cert-manager:cert-manager",
            "groups": ["system:masters"],
            "uid": "forged",
        }
    )
    deadline = time.monotonic() + 30
    while True:  # RBAC's authorizer learns of the new binding within moments
        try:
            created = mallory.create(path, forged)
            break
        except ApiFailure as err:
            if err.status != 403 or time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    assert created["spec"]["username"] == "mallory"
    assert created["spec"]["groups"] == ["system:authenticated"]
    assert created["spec"].get("uid", "") == ""
    with_extra = certificate_request("extra", make_csr(dns=["extra.example.com"]), issuer="any")
    with_extra["spec"]["extra"] = {"authentication.kubernetes.io/pod-name": ["cert-manager-0"]}
    with pytest.raises(ApiFailure) as refused:
        mallory.create(path, with_extra)
    assert refused.value.status == 422 and "spec.extra" in str(refused.value)
    with pytest.raises(ApiFailure) as rewritten:
        mallory.call(
            "PATCH", f"{path}/forged", {"spec": {"username": "admin"}}, "application/merge-patch+json"
        )
    assert rewritten.value.status == 422 and "immutable" in str(rewritten.value)


def test_a_short_max_duration_does_not_make_cert_manager_renew_in_a_loop(
    live: Live, cert_manager: CertManager
) -> None:
    kube, namespace = live.kube, unique("cm-loop")
    name = unique("ca")
    ready_issuer(kube, namespace, name, policy={"maxDuration": "30s", "minDuration": "5s"})
    path = CERT_PATH.format(ns=namespace)
    kube.create(path, certificate("short", name, "TrustedIssuer"))
    wait_certificate(kube, namespace, "short", cm=cert_manager)
    try:
        time.sleep(5)
        # 30 s granted: cert-manager should renew once, ~20 s from now, not before.
        assert kube.get(f"{path}/short")["status"].get("revision", 0) <= 2
    finally:
        kube.delete(f"{path}/short")
