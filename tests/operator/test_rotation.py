"""Rolling an issuer to a new key through the running operator (issue 6): the new CA is published (and
trusted) before it signs, requests carry both CAs during the overlap, requests after it are signed by
the new key, and the old key leaves the token only when the user asks."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from issuer.errors import IssuerError
from issuer.signer.keys import public_key_fingerprint
from issuer.signer.pool import SignerPool
from tests.csrs import make_csr
from tests.operator.conftest import Cluster
from tests.operator.kube import CR_PATH, ISSUER_PATH, certificate_request, condition, issuer_body, pem
from tests.verifiers import openssl_verify

OVERLAP_SECONDS = 15  # long enough to issue one request inside it on a busy two-core machine
#: Workload certificates live at most this long: the old CA stays trusted that long after the switch, and
#: the distribution phase lasts at least that long (here the overlap is longer).
SHORT_LIFETIME = {"maxDuration": "8s", "minDuration": "2s"}


def _issue(cluster: Cluster, namespace: str) -> dict[str, Any]:
    name = f"leaf-{uuid.uuid4().hex[:6]}"
    requests = CR_PATH.format(ns=namespace)
    cluster.kube.create(requests, certificate_request(name, make_csr(dns=["svc.example.com"]), issuer="ca"))
    cluster.kube.approve(namespace, name)
    done = cluster.kube.wait(
        f"{requests}/{name}", lambda o: condition(o).get("reason") in ("Issued", "Failed"), timeout=60
    )
    assert condition(done)["reason"] == "Issued", condition(done)
    return done


def _signer_key(issued: dict[str, Any], candidates: dict[str, x509.Certificate]) -> str:
    """Which CA (by name in ``candidates``) signed the issued leaf, checked by signature."""
    leaf = x509.load_pem_x509_certificate(pem(issued["status"]["certificate"]))
    signers = []
    for name, ca in candidates.items():
        try:
            leaf.verify_directly_issued_by(ca)
        except (InvalidSignature, ValueError, TypeError):  # another key, or another issuer name
            continue
        signers.append(name)
    assert len(signers) == 1, signers
    return signers[0]


def _by_use(status: dict[str, Any], use: str) -> list[x509.Certificate]:
    return [
        x509.load_pem_x509_certificate(c["pem"].encode())
        for c in status["caCertificates"]
        if c.get("use") == use
    ]


def test_rotation_publishes_before_signing_and_destroys_only_on_request(
    cluster: Cluster, pool: SignerPool
) -> None:
    kube = cluster.kube
    namespace = f"rotate-{uuid.uuid4().hex[:6]}"
    kube.namespace(namespace)
    issuers = ISSUER_PATH.format(ns=namespace)
    path = f"{issuers}/ca"
    kube.create(issuers, issuer_body("ca", namespace=namespace, policy=SHORT_LIFETIME))
    first = kube.wait(path, lambda o: condition(o).get("status") == "True")["status"]
    old_key = first["keyHandle"]
    old_ca = _by_use(first, "Signing")[0]

    # Record every status the API server holds from here on, to check the order of publication.
    history: list[dict[str, Any]] = []
    stop = threading.Event()
    watch_path = issuers  # the namespace holds this one issuer

    def record() -> None:
        for event in kube.watch_events(watch_path, stop, first_rv):
            history.append(event["object"].get("status") or {})

    first_rv = kube.get(path)["metadata"]["resourceVersion"]
    watcher = threading.Thread(target=record, daemon=True)
    watcher.start()
    try:
        kube.call(
            "PATCH",
            path,
            {"spec": {"key": {"rotation": {"generation": 1, "overlap": f"{OVERLAP_SECONDS}s"}}}},
            "application/merge-patch+json",
        )
        overlap = kube.wait(path, lambda o: bool(o["status"].get("nextKey")))["status"]
        new_key = overlap["nextKey"]["keyHandle"]
        assert new_key["publicKeySHA256"] != old_key["publicKeySHA256"]
        assert overlap["keyHandle"] == old_key  # still signing with the old key
        new_ca = _by_use(overlap, "Next")[0]
        assert public_key_fingerprint(new_ca.public_key()) == new_key["publicKeySHA256"]  # type: ignore[arg-type]
        trusted = x509.load_pem_x509_certificates(overlap["ca"].encode())
        assert old_ca in trusted and new_ca in trusted

        # During the overlap: signed by the old key, and the request's ca carries both CAs.
        during = _issue(cluster, namespace)
        assert _signer_key(during, {"old": old_ca, "new": new_ca}) == "old"
        during_ca = x509.load_pem_x509_certificates(pem(during["status"]["ca"]))
        assert old_ca in during_ca and new_ca in during_ca
        openssl_verify(pem(during["status"]["certificate"]), pem(during["status"]["ca"]))

        # After the overlap the issuer signs with the new key; the old CA is still trusted.
        switched = kube.wait(
            path, lambda o: o["status"]["keyHandle"] == new_key, timeout=OVERLAP_SECONDS + 60
        )["status"]
        assert switched["keyGeneration"] == 1
        assert "nextKey" not in switched
        assert [r["keyHandle"] for r in switched["retiredKeys"]] == [old_key]
        assert _by_use(switched, "Signing") == [new_ca]
        assert old_ca in _by_use(switched, "Previous")
        after = _issue(cluster, namespace)
        assert _signer_key(after, {"old": old_ca, "new": new_ca}) == "new"
        openssl_verify(pem(after["status"]["certificate"]), new_ca.public_bytes(serialization.Encoding.PEM))
    finally:
        stop.set()
        watcher.join(timeout=30)

    # Publish before sign, in the API server's own order of versions: the new key was published as
    # nextKey, with its CA in status.ca, in a version before the first one that signs with it, and the
    # switch came no earlier than signFrom.
    signing_new = [i for i, s in enumerate(history) if (s.get("keyHandle") or {}) == new_key]
    published = [
        i
        for i, s in enumerate(history)
        if (s.get("nextKey") or {}).get("keyHandle") == new_key
        and new_ca in x509.load_pem_x509_certificates(s["ca"].encode())
    ]
    assert signing_new and published and published[0] < signing_new[0], (published, signing_new)

    # The retired key stays in the token until the user asks; then it is destroyed, and recorded.
    assert (
        pool.find_key.blocking(cluster.token, old_key["keyLabel"]).public_key_sha256
        == old_key["publicKeySHA256"]
    )
    time.sleep(3)  # a few rotation ticks and rechecks later, still there: never destroyed silently
    assert pool.find_key.blocking(cluster.token, old_key["keyLabel"]).key_id == old_key["keyID"]
    kube.call(
        "PATCH",
        path,
        {"spec": {"key": {"rotation": {"retiredKeyPolicy": "Destroy"}}}},
        "application/merge-patch+json",
    )
    # Destroyed once the rotation is Done: the old CA left the published bundle after its last
    # certificate (maxDuration after the switch) expired.
    destroyed = kube.wait(path, lambda o: bool(o["status"]["retiredKeys"][0].get("destroyedAt")))["status"]
    assert destroyed["rotation"]["phase"] == "Done"
    with pytest.raises(IssuerError) as gone:
        pool.find_key.blocking(cluster.token, old_key["keyLabel"])
    assert gone.value.reason == "KeyNotFound"
    assert old_ca not in x509.load_pem_x509_certificates(destroyed["ca"].encode())
    assert pool.find_key.blocking(cluster.token, new_key["keyLabel"]).key_id == new_key["keyID"]
    assert condition(kube.get(path))["status"] == "True"
    assert "destroyed retired key" in cluster.operator.log()


def test_generations_never_go_back(cluster: Cluster) -> None:
    kube = cluster.kube
    namespace = f"rotback-{uuid.uuid4().hex[:6]}"
    kube.namespace(namespace)
    issuers = ISSUER_PATH.format(ns=namespace)
    body = issuer_body("ca", namespace=namespace, policy=SHORT_LIFETIME)
    body["spec"]["key"]["rotation"] = {"generation": 1, "overlap": "0s"}
    kube.create(issuers, body)
    path = f"{issuers}/ca"
    kube.wait(path, lambda o: o.get("status", {}).get("keyGeneration") == 1, timeout=60)
    kube.call(
        "PATCH", path, {"spec": {"key": {"rotation": {"generation": 0}}}}, "application/merge-patch+json"
    )
    refused = kube.wait(path, lambda o: condition(o).get("reason") == "InvalidSpec")
    assert "generations only go up" in condition(refused)["message"]


def test_self_signed_ca_is_renewed_with_the_same_key_and_both_are_trusted(cluster: Cluster) -> None:
    kube = cluster.kube
    namespace = f"renew-{uuid.uuid4().hex[:6]}"
    kube.namespace(namespace)
    issuers = ISSUER_PATH.format(ns=namespace)
    body = issuer_body("ca", namespace=namespace)
    # Due for renewal ten seconds after it is made.
    body["spec"]["ca"]["selfSigned"].update({"duration": "1h", "renewBefore": "59m50s"})
    kube.create(issuers, body)
    path = f"{issuers}/ca"
    first = kube.wait(path, lambda o: condition(o).get("status") == "True")["status"]
    original = _by_use(first, "Signing")[0]
    time.sleep(11)
    # A spec change makes the operator reconcile now rather than at its next periodic check.
    kube.call("PATCH", path, {"spec": {"policy": {"maxDuration": "30m"}}}, "application/merge-patch+json")
    renewed = kube.wait(path, lambda o: _by_use(o["status"], "Signing") != [original])["status"]
    assert renewed["keyHandle"] == first["keyHandle"]  # same key, new certificate
    current = _by_use(renewed, "Signing")[0]
    assert current.public_key() == original.public_key()
    assert current.not_valid_after_utc > original.not_valid_after_utc
    assert _by_use(renewed, "Previous") == [original]
    trusted = x509.load_pem_x509_certificates(renewed["ca"].encode())
    assert original in trusted and current in trusted
    # Same subject, same key: a leaf signed after the renewal verifies under the old root alone, which is
    # why a renewal needs no distribution phase (docs/operations.md), only the renewBefore window.
    after = _issue(cluster, namespace)
    openssl_verify(pem(after["status"]["certificate"]), original.public_bytes(serialization.Encoding.PEM))

    issued = _issue(cluster, namespace)
    leaf = x509.load_pem_x509_certificate(pem(issued["status"]["certificate"]))
    assert leaf.issuer == current.subject
    assert x509.load_pem_x509_certificates(pem(issued["status"]["ca"])) == trusted
    openssl_verify(pem(issued["status"]["certificate"]), current.public_bytes(serialization.Encoding.PEM))
