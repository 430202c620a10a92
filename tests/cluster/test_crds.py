"""Our CRDs on a real kube-apiserver: every ``x-kubernetes-validations`` (CEL) rule rejects what it should
and admits its control, and the structural defaults are filled in, for both issuer kinds. Objects are
created with ``dryRun=All``: the API server validates and defaults them, and stores nothing."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.cluster.controlplane import ControlPlane
from tests.cluster.kube import ClusterKube
from tests.operator.kube import CLUSTER_ISSUER_PATH, ISSUER_PATH, ApiFailure, issuer_body

NAMESPACE = "crd-rules"
SELF_SIGNED = {"selfSigned": {"subject": "CN=rules"}}
INTERMEDIATE = {"intermediate": {"subject": "CN=rules sub", "secretName": "parent"}}


@pytest.fixture(scope="module")
def admin(control_plane: ControlPlane) -> ClusterKube:
    kube = ClusterKube(control_plane.server, control_plane.pki.ca_file, cert=control_plane.admin_client)
    kube.namespace(NAMESPACE)
    return kube


def _body(kind: str, spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    namespaced = kind == "TrustedIssuer"
    body = issuer_body("rules", namespace=NAMESPACE if namespaced else None)
    body["spec"] = {"tokenProfile": "dev", **copy.deepcopy(spec)}
    path = ISSUER_PATH.format(ns=NAMESPACE) if namespaced else CLUSTER_ISSUER_PATH
    return f"{path}?dryRun=All", body


def _create(kube: ClusterKube, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    path, body = _body(kind, spec)
    return kube.create(path, body)


def _rejected(kube: ClusterKube, kind: str, spec: dict[str, Any]) -> str:
    path, body = _body(kind, spec)
    with pytest.raises(ApiFailure) as refused:
        kube.create(path, body)
    assert refused.value.status == 422, str(refused.value)
    return str(refused.value)


KINDS = pytest.mark.parametrize("kind", ["TrustedIssuer", "TrustedClusterIssuer"])

#: (case id, spec, the rule's message the API server must answer with)
REJECTED = [
    ("ca-required-without-import", {"key": {"generate": {}}}, "spec.ca is required, except with key.import"),
    (
        "ca-forbidden-with-import",
        {"key": {"import": {"secretName": "wrapped"}}, "ca": SELF_SIGNED},
        "spec.ca is required, except with key.import",
    ),
    (
        "rotation-under-intermediate",
        {"key": {"rotation": {"generation": 1}}, "ca": INTERMEDIATE},
        "key.rotation needs a self-signed CA",
    ),
    (
        "two-key-sources",
        {"key": {"generate": {}, "adopt": {"keyLabel": "x"}}, "ca": SELF_SIGNED},
        "choose one key source: generate, adopt or import",
    ),
    (
        "three-key-sources",
        {"key": {"generate": {}, "adopt": {"keyLabel": "x"}, "import": {"secretName": "w"}}},
        "choose one key source: generate, adopt or import",
    ),
    (
        "rotation-of-adopted-key",
        {"key": {"adopt": {"keyLabel": "x"}, "rotation": {"generation": 2}}, "ca": SELF_SIGNED},
        "key.rotation rolls to a new generated key",
    ),
    (
        "rotation-of-imported-key",
        {"key": {"import": {"secretName": "w"}, "rotation": {"generation": 1}}},
        "key.rotation rolls to a new generated key",
    ),
    ("no-ca-source", {"ca": {}}, "choose one CA source: selfSigned or intermediate"),
    (
        "two-ca-sources",
        {"ca": {**SELF_SIGNED, **INTERMEDIATE}},
        "choose one CA source: selfSigned or intermediate",
    ),
]

#: Each rule's control: the nearest spec it must admit.
ADMITTED = [
    ("self-signed-generated", {"key": {"generate": {}}, "ca": SELF_SIGNED}),
    ("import-without-ca", {"key": {"import": {"secretName": "wrapped"}}}),
    ("rotation-under-self-signed", {"key": {"rotation": {"generation": 3}}, "ca": SELF_SIGNED}),
    ("generation-zero-under-intermediate", {"key": {"rotation": {"generation": 0}}, "ca": INTERMEDIATE}),
    ("adopted-key", {"key": {"adopt": {"keyLabel": "x"}}, "ca": SELF_SIGNED}),
    ("adopted-key-generation-zero", {"key": {"adopt": {"keyLabel": "x"}, "rotation": {}}, "ca": SELF_SIGNED}),
    ("intermediate", {"ca": INTERMEDIATE}),
]


@KINDS
@pytest.mark.parametrize(("spec", "message"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_cel_rule_rejects(admin: ClusterKube, kind: str, spec: dict[str, Any], message: str) -> None:
    answer = _rejected(admin, kind, spec)
    assert message in answer


@KINDS
@pytest.mark.parametrize("spec", [c[1] for c in ADMITTED], ids=[c[0] for c in ADMITTED])
def test_cel_rule_admits_its_control(admin: ClusterKube, kind: str, spec: dict[str, Any]) -> None:
    created = _create(admin, kind, spec)
    assert created["kind"] == kind


@KINDS
def test_structural_defaults_are_filled_in(admin: ClusterKube, kind: str) -> None:
    spec = _create(admin, kind, {"ca": SELF_SIGNED})["spec"]
    assert spec["key"] == {"algorithm": "ecdsa-p256", "rsaSignatureScheme": "PKCS1v15"}
    assert spec["ca"]["selfSigned"] == {"subject": "CN=rules", "duration": "87600h", "renewBefore": "720h"}
    assert spec["policy"] == {"minDuration": "10m", "allowCA": False}
    assert spec["deletionPolicy"] == "Retain"
    rotation = _create(admin, kind, {"key": {"rotation": {}}, "ca": SELF_SIGNED})["spec"]["key"]["rotation"]
    assert rotation == {"generation": 0, "overlap": "24h", "retiredKeyPolicy": "Retain"}
    sub = _create(admin, kind, {"ca": INTERMEDIATE})["spec"]["ca"]["intermediate"]
    assert sub["renewBefore"] == "720h"


@KINDS
@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"ca": SELF_SIGNED, "key": {"algorithm": "dsa-1024"}}, "spec.key.algorithm"),
        ({"ca": {"selfSigned": {"subject": "CN=x", "duration": "ten years"}}}, "spec.ca.selfSigned.duration"),
        ({"ca": {"selfSigned": {"subject": "CN=x", "pathLength": 17}}}, "spec.ca.selfSigned.pathLength"),
        ({"ca": SELF_SIGNED, "deletionPolicy": "Shred"}, "spec.deletionPolicy"),
        ({"ca": SELF_SIGNED, "key": {"rotation": {"generation": -1}}}, "spec.key.rotation.generation"),
    ],
    ids=[
        "algorithm-enum",
        "duration-pattern",
        "path-length-maximum",
        "deletion-policy-enum",
        "generation-minimum",
    ],
)
def test_schema_rejects(admin: ClusterKube, kind: str, spec: dict[str, Any], field: str) -> None:
    assert field in _rejected(admin, kind, spec)


def test_token_profile_is_required(admin: ClusterKube) -> None:
    path, body = _body("TrustedIssuer", {"ca": SELF_SIGNED})
    del body["spec"]["tokenProfile"]
    with pytest.raises(ApiFailure) as refused:
        admin.create(path, body)
    assert refused.value.status == 422
    assert "spec.tokenProfile" in str(refused.value)
