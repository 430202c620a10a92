"""Where an issuer's trust bundle goes and what is written there: derived from the issuer's kind, name and
uid and the operator's settings only; ConfigMaps and ClusterTrustBundles named so the API server accepts
them (the signer-name prefix rule of ClusterTrustBundles), and owned by the issuer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from issuer.controller.issuers.trust_bundle import BUNDLE_KEY, BundlePlace, Held, pem_blocks
from issuer.errors import IssuerError

META = {"name": "mesh", "namespace": "team-a", "uid": "1111-2222"}
PEM_A = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
PEM_B = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize(
    ("kind", "meta", "configured", "namespace", "config_map", "bundle"),
    [
        pytest.param(
            "TrustedIssuer",
            META,
            "trust-ns",
            "team-a",
            "trusted-issuer-mesh-bundle",
            "trustedissuers.trusted-issuer.dev:team-a.mesh:bundle",
            id="namespaced-issuer-writes-its-own-namespace-whatever-is-configured",
        ),
        pytest.param(
            "TrustedClusterIssuer",
            {"name": "mesh", "uid": "3333"},
            "trust-ns",
            "trust-ns",
            "trusted-cluster-issuer-mesh-bundle",
            "trustedclusterissuers.trusted-issuer.dev:mesh:bundle",
            id="cluster-issuer-writes-the-configured-namespace",
        ),
        pytest.param(
            "TrustedClusterIssuer",
            {"name": "mesh", "uid": "3333", "namespace": "tenant-says-here"},
            "trust-ns",
            "trust-ns",
            "trusted-cluster-issuer-mesh-bundle",
            "trustedclusterissuers.trusted-issuer.dev:mesh:bundle",
            id="cluster-issuer-ignores-a-namespace-in-its-metadata",
        ),
    ],
)
def test_place(
    kind: str, meta: dict[str, Any], configured: str, namespace: str, config_map: str, bundle: str
) -> None:
    place = BundlePlace.of(kind, meta, configured)
    assert (place.namespace, place.config_map, place.cluster_trust_bundle) == (namespace, config_map, bundle)
    # ClusterTrustBundle validation: the name starts with the signer name, "/" spelled ":", then ":".
    assert place.cluster_trust_bundle.startswith(place.signer_name.replace("/", ":") + ":")


def test_cluster_issuer_without_a_configured_namespace_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    monkeypatch.setattr("issuer.controller.kubeapi.SERVICE_ACCOUNT_NAMESPACE", Path("/nonexistent/namespace"))
    with pytest.raises(IssuerError, match="CLUSTER_RESOURCE_NAMESPACE"):
        BundlePlace.of("TrustedClusterIssuer", {"name": "x", "uid": "u"}, None)


def test_bodies_are_owned_by_the_issuer() -> None:
    place = BundlePlace.of("TrustedIssuer", META, None)
    body = place.config_map_body(PEM_A)
    assert body["data"] == {BUNDLE_KEY: PEM_A}
    assert body["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "trusted-issuer.dev/v1alpha1",
            "kind": "TrustedIssuer",
            "name": "mesh",
            "uid": "1111-2222",
            "controller": True,
        }
    ]
    assert place.owns(body)
    ctb = place.cluster_trust_bundle_body(PEM_A)
    assert ctb["spec"] == {
        "signerName": "trustedissuers.trusted-issuer.dev/team-a.mesh",
        "trustBundle": PEM_A,
    }
    # A cluster-scoped object may not be owned by a namespaced one: the uid goes in an annotation.
    assert "ownerReferences" not in ctb["metadata"]
    assert place.owns(ctb)
    cluster = BundlePlace.of("TrustedClusterIssuer", {"name": "mesh", "uid": "3333"}, "trust-ns")
    assert cluster.cluster_trust_bundle_body(PEM_A)["metadata"]["ownerReferences"][0]["uid"] == "3333"


@pytest.mark.parametrize(
    "owners",
    [
        pytest.param([], id="no-owner"),
        pytest.param([{"kind": "TrustedIssuer", "uid": "other", "controller": True}], id="another-issuer"),
        pytest.param([{"kind": "TrustedIssuer", "uid": "1111-2222"}], id="not-controller"),
        pytest.param([{"kind": "Deployment", "uid": "1111-2222", "controller": True}], id="another-kind"),
    ],
)
def test_a_config_map_someone_else_made_is_not_ours(owners: list[dict[str, Any]]) -> None:
    place = BundlePlace.of("TrustedIssuer", META, None)
    found = {"kind": "ConfigMap", "metadata": {"ownerReferences": owners}, "data": {BUNDLE_KEY: PEM_A}}
    assert not place.owns(found)
    # Nor does an annotation make a ConfigMap ours (only a ClusterTrustBundle, which needs attest).
    found["metadata"]["annotations"] = {"trusted-issuer.dev/issuer-uid": "1111-2222"}
    assert not place.owns(found)


def test_held_bundle_counts_only_when_ours() -> None:
    assert Held({}, True, PEM_A + PEM_B).holds(PEM_B)
    assert not Held({}, True, PEM_A).holds(PEM_B)
    assert not Held({}, False, PEM_A + PEM_B).holds(PEM_B)
    assert not Held(None, False, "").holds("")
    assert pem_blocks(PEM_A + "junk" + PEM_B) == [PEM_A.strip(), PEM_B.strip()]
