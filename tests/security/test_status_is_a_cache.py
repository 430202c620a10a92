"""Status is a cache, never proof of ownership: a tenant who may patch its own issuer's ``/status`` (a
right namespace-admin roles often carry) writes there the key handles that another namespace's issuer,
or a cluster issuer, shows in its status. Each field the operator records (``keyHandle``, ``nextKey``,
``retiredKeys``, ``wrappingKey``) is tried, from a TrustedIssuer and from a TrustedClusterIssuer, on
signing, rotation, retirement with ``Destroy`` and deletion with ``Destroy``: nothing is signed with the
victim's key, nothing of the victim's is destroyed, and the attacker's issuer says ``KeyOutOfScope``.

Which keys exist is asked of the token itself (``trusted-issuer hsm keys`` in a process of its own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.csrs import make_csr
from tests.operator.kube import CLUSTER_ISSUER_PATH, Kube, condition, issuer_body
from tests.security.conftest import SecureCluster
from tests.security.scenario import create_issuer, not_ready, ready_issuer, request

SPIFFE_ADMIN = "spiffe://cluster.local/ns/{ns}/sa/admin"


def token_labels(secure: SecureCluster) -> set[str]:
    """Labels of every private key in the token, as the token answers."""
    answer = subprocess.run(
        [sys.executable, "-m", "issuer", "hsm", "keys", "--json"],
        env={
            **os.environ,
            "SOFTHSM2_CONF": str(secure.token.config_file),
            "TRUSTED_ISSUER_TOKEN_LABEL": secure.token.label,
            "TRUSTED_ISSUER_PIN_FILE": str(secure.token.pin_file),
            "TRUSTED_ISSUER_WORKERS": "1",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return {str(row["keyLabel"]) for row in json.loads(answer.stdout)}


def victim(kube: Kube, kind: str, tag: str) -> tuple[str, dict[str, Any]]:
    """A Ready issuer of ``kind`` whose key the attacker reaches for: its path and key handle."""
    if kind == "TrustedIssuer":
        body = ready_issuer(kube, f"beta-{tag}", "ca")
        return f"{_path(kube, body)}", body["status"]["keyHandle"]
    kube.create(CLUSTER_ISSUER_PATH, issuer_body(f"victim-{tag}"))
    path = f"{CLUSTER_ISSUER_PATH}/victim-{tag}"
    body = kube.wait(path, lambda o: condition(o).get("status") == "True", timeout=90)
    return path, body["status"]["keyHandle"]


def attacker(kube: Kube, kind: str, tag: str, **spec: Any) -> tuple[str, str]:
    """A Ready issuer of the attacker's own (namespace ``alpha-<tag>`` or cluster-scoped): its path and
    the namespace its requests live in."""
    if kind == "TrustedIssuer":
        namespace = f"alpha-{tag}"
        body = issuer_body("evil", namespace=namespace)
        body["spec"].update(spec)
        path = create_issuer(kube, namespace, "evil", body=body)
    else:
        namespace = f"alpha-{tag}"
        kube.namespace(namespace)
        body = issuer_body(f"evil-{tag}")
        body["spec"].update(spec)
        kube.create(CLUSTER_ISSUER_PATH, body)
        path = f"{CLUSTER_ISSUER_PATH}/evil-{tag}"
    kube.wait(path, lambda o: condition(o).get("status") == "True", timeout=90)
    return path, namespace


def _path(kube: Kube, body: dict[str, Any]) -> str:
    meta = body["metadata"]
    return f"/apis/trusted-issuer.dev/v1alpha1/namespaces/{meta['namespace']}/trustedissuers/{meta['name']}"


def touch(kube: Kube, path: str, spec: dict[str, Any] | None = None) -> None:
    """A spec change (a new generation), so the operator reconciles the poisoned status now."""
    patch = spec or {"policy": {"maxDuration": "719h"}}
    kube.call("PATCH", path, {"spec": patch}, "application/merge-patch+json")


def out_of_scope(kube: Kube, path: str) -> dict[str, Any]:
    refused = kube.wait(path, lambda o: condition(o).get("reason") == "KeyOutOfScope", timeout=60)
    assert condition(refused)["status"] == "False"
    return refused


def assert_nothing_signed(kube: Kube, namespace: str, issuer: str, victim_namespace: str, kind: str) -> None:
    """An approved request for the victim's identity, through the attacker's issuer, stays unsigned."""
    csr = make_csr(uris=[SPIFFE_ADMIN.format(ns=victim_namespace)])
    path = request(kube, namespace, "steal", csr, issuer, kind=kind)
    time.sleep(3)
    stolen = kube.get(path)
    assert not stolen.get("status", {}).get("certificate"), stolen["status"]
    assert condition(stolen).get("reason") == "Pending", stolen["status"]


KINDS = [
    pytest.param("TrustedIssuer", "TrustedIssuer", id="namespaced-reaches-other-namespace"),
    pytest.param("TrustedIssuer", "TrustedClusterIssuer", id="namespaced-reaches-cluster-issuer"),
    pytest.param("TrustedClusterIssuer", "TrustedIssuer", id="cluster-issuer-reaches-namespaced"),
]


@pytest.mark.parametrize(("attacker_kind", "victim_kind"), KINDS)
def test_a_foreign_key_handle_in_status_is_never_signed_with(
    secure: SecureCluster, attacker_kind: str, victim_kind: str
) -> None:
    kube = secure.cluster.kube
    tag = f"kh-{attacker_kind[7:].lower()}-{victim_kind[7:].lower()}"
    _, stolen = victim(kube, victim_kind, tag)
    path, namespace = attacker(kube, attacker_kind, tag)
    kube.merge_status(path, {"keyHandle": stolen})
    touch(kube, path)
    refused = out_of_scope(kube, path)
    assert stolen["keyLabel"] in condition(refused)["message"]
    assert "status.keyHandle" in condition(refused)["message"]
    name = path.rsplit("/", 1)[1]
    assert_nothing_signed(kube, namespace, name, f"beta-{tag}", attacker_kind)


@pytest.mark.parametrize(("attacker_kind", "victim_kind"), KINDS[:2])
def test_a_foreign_next_key_is_never_rotated_to(
    secure: SecureCluster, attacker_kind: str, victim_kind: str
) -> None:
    kube = secure.cluster.kube
    tag = f"nk-{victim_kind[7:].lower()}"
    _, stolen = victim(kube, victim_kind, tag)
    path, namespace = attacker(kube, attacker_kind, tag)
    long_ago = "2020-01-01T00:00:00Z"
    kube.merge_status(
        path,
        {"nextKey": {"keyHandle": stolen, "generation": 1, "publishedAt": long_ago, "signFrom": long_ago}},
    )
    # Asking for generation 1 is what would switch to the "published" next key.
    touch(kube, path, {"key": {"algorithm": "ecdsa-p256", "rotation": {"generation": 1, "overlap": "0s"}}})
    refused = out_of_scope(kube, path)
    assert "status.nextKey" in condition(refused)["message"]
    assert_nothing_signed(kube, namespace, "evil", f"beta-{tag}", attacker_kind)
    assert (kube.get(path)["status"].get("keyHandle") or {}).get("keyLabel") != stolen["keyLabel"]


@pytest.mark.parametrize(("attacker_kind", "victim_kind"), KINDS)
def test_a_foreign_retired_key_is_never_destroyed(
    secure: SecureCluster, attacker_kind: str, victim_kind: str
) -> None:
    kube = secure.cluster.kube
    tag = f"rk-{attacker_kind[7:].lower()}-{victim_kind[7:].lower()}"
    victim_path, stolen = victim(kube, victim_kind, tag)
    destroy = {"key": {"algorithm": "ecdsa-p256", "rotation": {"retiredKeyPolicy": "Destroy"}}}
    path, _ = attacker(kube, attacker_kind, tag, **destroy)
    retired = {"keyHandle": stolen, "generation": 0, "retiredAt": "2020-01-01T00:00:00Z"}
    kube.merge_status(path, {"retiredKeys": [retired]})
    touch(kube, path)
    refused = out_of_scope(kube, path)
    assert "status.retiredKeys[0]" in condition(refused)["message"]
    assert stolen["keyLabel"] in token_labels(secure)
    # The victim, looked at again, still finds and proves its key.
    touch(kube, victim_path)
    again = kube.wait(
        victim_path,
        lambda o: o["status"].get("observedGeneration") == o["metadata"]["generation"] and condition(o),
        timeout=60,
    )
    assert condition(again)["status"] == "True", condition(again)
    assert again["status"]["keyHandle"] == stolen


def test_a_refused_profile_destroys_nothing_on_deletion(secure: SecureCluster) -> None:
    """The delete path checks the profile too: an issuer the profile never served, whose status names a
    victim's key, is deleted with ``deletionPolicy: Destroy`` and the victim's key stays."""
    kube = secure.cluster.kube
    _, stolen = victim(kube, "TrustedIssuer", "pd")
    path = create_issuer(kube, "outsider", "evil", profile="team-a-only", deletion_policy="Destroy")
    assert condition(not_ready(kube, path))["reason"] == "ProfileNotAllowed"
    kube.merge_status(path, {"keyHandle": stolen})
    kube.delete(path)
    _wait_gone(kube, path)
    assert stolen["keyLabel"] in token_labels(secure)
    assert "no key destroyed: reason=ProfileNotAllowed" in secure.cluster.operator.log()


@pytest.mark.parametrize("field", ["keyHandle", "nextKey", "retiredKeys", "wrappingKey"])
def test_deletion_with_destroy_destroys_only_the_issuers_own_keys(secure: SecureCluster, field: str) -> None:
    kube = secure.cluster.kube
    tag = f"dd-{field.lower()}"
    _, stolen = victim(kube, "TrustedIssuer", tag)
    path, _ = attacker(kube, "TrustedIssuer", tag, deletionPolicy="Destroy")
    # The delete handler runs only once the operator holds its finalizer on the issuer.
    own = kube.wait(path, lambda o: bool(o["metadata"].get("finalizers")))["status"]["keyHandle"]
    poisoned: dict[str, Any] = {
        "keyHandle": {"keyHandle": stolen},
        "nextKey": {"nextKey": {"keyHandle": stolen, "generation": 1}},
        "retiredKeys": {"retiredKeys": [{"keyHandle": stolen, "generation": 0}]},
        "wrappingKey": {
            "wrappingKey": {
                "keyHandle": stolen,
                "publicKeyPEM": "-----BEGIN PUBLIC KEY-----\n",
                "publicKeySHA256": stolen["publicKeySHA256"],
                "parameters": ["RSA-OAEP-SHA1+AES-KWP-256"],
                "attestation": {"provider": "none", "format": "none", "bindsPublicKeySHA256": "00"},
            }
        },
    }[field]
    kube.merge_status(path, poisoned)
    kube.delete(path)
    _wait_gone(kube, path)
    labels = token_labels(secure)
    assert stolen["keyLabel"] in labels
    left = [
        line
        for line in secure.cluster.operator.log().splitlines()
        if "key left in the token" in line and stolen["keyLabel"] in line
    ]
    assert left, f"the operator did not report refusing {stolen['keyLabel']!r}"
    if field != "keyHandle":
        # The issuer's own key, still recorded, is destroyed as asked.
        assert own["keyLabel"] not in labels


def _wait_gone(kube: Kube, path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            kube.get(path)
        except Exception as err:
            if getattr(err, "status", None) == 404:
                return
            raise
        time.sleep(0.2)
    raise AssertionError(f"{path} was not deleted in time")
