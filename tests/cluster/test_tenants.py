"""Tenants with real RBAC: users bound to the built-in ``admin`` role in their own namespace (aggregated by
the real kube-controller-manager), trying every cross-namespace reach, and, with the extra Role some
clusters give (``trustedissuers/status`` patch), forging their issuer's status to point at another
namespace's key. Nothing may be signed with, or destroy, the other namespace's key."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from tests.cluster.conftest import Live
from tests.cluster.kube import ClusterKube
from tests.cluster.test_requests import finished, issuer_ca, ready_issuer
from tests.csrs import make_csr
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
from tests.verifiers import openssl_verify

RBAC = "rbac.authorization.k8s.io"


def _tenant(live: Live, namespace: str, *, status_writer: bool = False) -> ClusterKube:
    """A user bound to the built-in ``admin`` ClusterRole in ``namespace`` (and, if ``status_writer``, to a
    Role that may patch ``trustedissuers/status`` there)."""
    user = f"tenant-{namespace}"
    live.kube.namespace(namespace)
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": f"{RBAC}/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "tenant-admin", "namespace": namespace},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "admin"},
            "subjects": [{"apiGroup": RBAC, "kind": "User", "name": user}],
        }
    ]
    if status_writer:
        objects += [
            {
                "apiVersion": f"{RBAC}/v1",
                "kind": "Role",
                "metadata": {"name": "issuer-status", "namespace": namespace},
                "rules": [
                    {
                        "apiGroups": ["trusted-issuer.dev"],
                        "resources": ["trustedissuers/status"],
                        "verbs": ["get", "patch"],
                    }
                ],
            },
            {
                "apiVersion": f"{RBAC}/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "issuer-status", "namespace": namespace},
                "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "issuer-status"},
                "subjects": [{"apiGroup": RBAC, "kind": "User", "name": user}],
            },
        ]
    live.plane.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(objects))
    return live.tenant(user)


def _forbidden(call: Any, *args: Any) -> None:
    with pytest.raises(ApiFailure) as refused:
        call(*args)
    assert refused.value.status == 403, str(refused.value)


def _signed_by(certificate_pem: bytes, ca_pem: bytes) -> bool:
    leaf = x509.load_pem_x509_certificates(certificate_pem)[0]
    ca = x509.load_pem_x509_certificate(ca_pem)
    try:
        leaf.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def test_a_tenant_admin_cannot_write_issuer_status_or_reach_another_namespace(live: Live) -> None:
    suffix = uuid.uuid4().hex[:6]
    home, other = f"home-{suffix}", f"other-{suffix}"
    ready_issuer(live.kube, home, "ca")
    ready_issuer(live.kube, other, "ca")
    tenant = _tenant(live, home)
    forged = {"conditions": [{"type": "Ready", "status": "True", "reason": "Forged", "message": "x"}]}
    _forbidden(tenant.merge_status, f"{ISSUER_PATH.format(ns=home)}/ca", forged)
    # Every reach into another namespace, the cluster scope and the operator's namespace.
    _forbidden(tenant.get, f"{ISSUER_PATH.format(ns=other)}/ca")
    _forbidden(tenant.merge_status, f"{ISSUER_PATH.format(ns=other)}/ca", forged)
    _forbidden(tenant.create, CLUSTER_ISSUER_PATH, issuer_body(f"mine-{suffix}"))
    _forbidden(
        tenant.create,
        CR_PATH.format(ns=other),
        certificate_request("x", make_csr(dns=["x.example.com"]), issuer="ca"),
    )
    _forbidden(tenant.get, "/api/v1/namespaces/trusted-issuer/secrets")
    _forbidden(tenant.get, "/apis/coordination.k8s.io/v1/namespaces/trusted-issuer/leases")
    # The control: the same user does hold the admin role at home.
    assert tenant.get(f"/api/v1/namespaces/{home}/secrets")["kind"] == "SecretList"


def test_forged_status_never_signs_with_another_namespaces_key(live: Live) -> None:
    """Attack: a tenant who may patch its issuer's status copies the victim's keyHandle and CA into it.
    Status is a cache, not an authority: nothing the thief's issuer signs may verify under the victim's
    key, and the victim's key survives the thief's issuer being deleted with ``deletionPolicy: Destroy``.
    (Needs main's fix that derives the key from spec and scope, never from status.)"""
    suffix = uuid.uuid4().hex[:6]
    victim_ns, thief_ns = f"victim-{suffix}", f"thief-{suffix}"
    victim = ready_issuer(live.kube, victim_ns, "ca")
    thief_path = f"{ISSUER_PATH.format(ns=thief_ns)}/ca"
    thief_issuer = ready_issuer(live.kube, thief_ns, "ca", deletion_policy="Destroy")
    thief = _tenant(live, thief_ns, status_writer=True)
    forged = {
        key: victim["status"][key] for key in ("keyHandle", "ca", "caCertificates") if key in victim["status"]
    }
    thief.merge_status(thief_path, forged)  # allowed by the extra Role: the attack begins
    assert thief.get(f"{thief_path}/status")["status"]["keyHandle"] == victim["status"]["keyHandle"]
    # cert-manager, acting on the thief's Certificates, creates and approves requests to the thief's issuer.
    path = CR_PATH.format(ns=thief_ns)
    names = [f"loot-{i}" for i in range(3)]
    for name in names:
        live.kube.create(path, certificate_request(name, make_csr(dns=[f"{name}.example.com"]), issuer="ca"))
        live.kube.approve(thief_ns, name)
    for name in names:
        done = live.kube.wait(
            f"{path}/{name}", lambda o: finished(o) or condition(o).get("reason") == "Pending"
        )
        certificate = (done.get("status") or {}).get("certificate")
        if certificate:
            assert not _signed_by(pem(certificate), issuer_ca(victim)), (
                f"{thief_ns}/{name} was signed with {victim_ns}'s key"
            )
            assert _signed_by(pem(certificate), issuer_ca(thief_issuer))
    live.kube.delete(thief_path)
    live.kube.wait(
        ISSUER_PATH.format(ns=thief_ns),
        lambda o: not [i for i in o["items"] if i["metadata"]["name"] == "ca"],
    )
    # The victim's key is still in the token and still signs.
    victim_path = CR_PATH.format(ns=victim_ns)
    live.kube.create(
        victim_path, certificate_request("after", make_csr(dns=["after.example.com"]), issuer="ca")
    )
    live.kube.approve(victim_ns, "after")
    after = live.kube.wait(
        f"{victim_path}/after", lambda o: finished(o) or "not in the token" in condition(o).get("message", "")
    )
    assert condition(after)["reason"] == "Issued", (
        f"the victim's key was destroyed through the thief's forged status: {condition(after)['message']}"
    )
    openssl_verify(pem(after["status"]["certificate"]), issuer_ca(victim))
