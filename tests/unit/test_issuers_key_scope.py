"""KeyScope: which token keys one issuer may touch, derived from its metadata and spec, never from status.

Every case is an issuer status as a tenant with ``patch`` on ``/status`` could write it; a handle the
scope accepts is one the operator may look up, sign with or destroy."""

from __future__ import annotations

from typing import Any

import pytest

from issuer.controller.issuers.key_scope import (
    KeyScope,
    owned_key_label,
    rotation_key_label,
    wrapping_key_label,
)
from issuer.controller.issuers.spec import IssuerSpec
from issuer.errors import IssuerError, TrustedIssuerError
from issuer.signer.keys import Algorithm, KeyHandle

UID = "0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9"
ALPHA = {"name": "ca", "namespace": "alpha", "uid": UID}
BASE = "ti:ns/alpha/ca/0f1e2d3c"


def spec(**key: Any) -> IssuerSpec:
    return IssuerSpec.parse(
        {
            "tokenProfile": "dev",
            "key": {"algorithm": "ecdsa-p256", **key},
            "ca": {"selfSigned": {"subject": "CN=x"}},
        }
    )


def scope(kind: str = "TrustedIssuer", meta: dict[str, str] = ALPHA, **key: Any) -> KeyScope:
    return KeyScope.of(kind, meta, spec(**key))


def handle(label: str, fingerprint: str = "ab" * 32) -> dict[str, str]:
    return KeyHandle("tok", "1", label, "01", Algorithm.ECDSA_P256, fingerprint).to_status()


def wrapping(label: str) -> dict[str, Any]:
    return {
        "keyHandle": handle(label, "cd" * 32),
        "publicKeyPEM": "-----BEGIN PUBLIC KEY-----\n",
        "publicKeySHA256": "cd" * 32,
        "parameters": ["RSA-OAEP-SHA1+AES-KWP-256"],
        "attestation": {"provider": "none", "format": "none", "bindsPublicKeySHA256": "cd" * 32},
    }


def test_labels_derive_from_kind_namespace_name_and_uid() -> None:
    assert owned_key_label("TrustedIssuer", "alpha", "ca", UID) == BASE
    assert owned_key_label("TrustedClusterIssuer", None, "ca", UID) == "ti:cluster/ca/0f1e2d3c"
    assert rotation_key_label(BASE, 0) == BASE
    assert rotation_key_label(BASE, 3) == BASE + "/k3"
    assert wrapping_key_label(BASE) == BASE + "/wrap"
    assert scope().base_label == BASE


@pytest.mark.parametrize(
    ("label", "generation"),
    [
        pytest.param(BASE, 0, id="own-first-key"),
        pytest.param(BASE + "/k1", 1, id="own-rotation-generation-1"),
        pytest.param(BASE + "/k42", 42, id="own-rotation-generation-42"),
    ],
)
def test_own_keys_are_in_scope_with_the_generation_of_their_label(label: str, generation: int) -> None:
    assert scope().signing_key(handle(label), "keyHandle")[1] == generation


@pytest.mark.parametrize(
    "label",
    [
        pytest.param("ti:ns/beta/ca/0f1e2d3c", id="another-namespace"),
        pytest.param("ti:cluster/ca/0f1e2d3c", id="a-cluster-issuer"),
        pytest.param("ti:ns/alpha/other/12345678", id="another-issuer-same-namespace"),
        pytest.param("ti:ns/alpha/ca/99999999", id="same-name-older-uid"),
        pytest.param(BASE + "/wrap", id="own-wrapping-key-as-signing-key"),
        pytest.param(BASE + "/k0", id="generation-zero-suffix"),
        pytest.param(BASE + "/k01", id="generation-leading-zero"),
        pytest.param(BASE + "/kx", id="generation-not-a-number"),
        pytest.param(BASE + "/k1/k2", id="two-suffixes"),
        pytest.param(BASE + "0", id="base-as-prefix-of-another-label"),
        pytest.param("", id="empty"),
    ],
)
def test_any_other_label_is_refused_as_out_of_scope(label: str) -> None:
    with pytest.raises(IssuerError) as refused:
        scope().signing_key(handle(label), "keyHandle")
    assert refused.value.reason == "KeyOutOfScope"
    assert "status.keyHandle" in refused.value.message
    assert repr(label) in refused.value.message


def test_a_cluster_issuer_owns_only_its_own_cluster_labels() -> None:
    cluster = scope("TrustedClusterIssuer", {"name": "ca", "uid": UID})
    assert cluster.signing_key(handle("ti:cluster/ca/0f1e2d3c/k2"), "keyHandle")[1] == 2
    for label in ("ti:ns/alpha/ca/0f1e2d3c", "ti:cluster/other/0f1e2d3c"):
        with pytest.raises(IssuerError, match="not this issuer's"):
            cluster.signing_key(handle(label), "keyHandle")


def test_an_adopting_issuer_owns_exactly_the_adopted_key_inside_its_scope() -> None:
    adopting = scope(adopt={"keyLabel": "ti:ns/alpha/shared"})
    assert adopting.check_adoptable() == "ti:ns/alpha/shared"
    assert adopting.signing_key(handle("ti:ns/alpha/shared"), "keyHandle")[1] == 0
    for label in (BASE, "ti:ns/alpha/shared/k1", "ti:ns/alpha/other"):
        with pytest.raises(IssuerError):
            adopting.signing_key(handle(label), "keyHandle")
    with pytest.raises(IssuerError) as refused:
        scope(adopt={"keyLabel": "ti:ns/beta/shared"}).check_adoptable()
    assert refused.value.reason == "KeyOutOfScope"


@pytest.mark.parametrize(
    ("status", "field"),
    [
        pytest.param({"keyHandle": handle("ti:ns/beta/ca/1")}, "status.keyHandle", id="keyHandle"),
        pytest.param(
            {"nextKey": {"keyHandle": handle("ti:ns/beta/ca/1"), "generation": 1}},
            "status.nextKey.keyHandle",
            id="nextKey",
        ),
        pytest.param(
            {"retiredKeys": [{"keyHandle": handle(BASE)}, {"keyHandle": handle("ti:cluster/x/1")}]},
            "status.retiredKeys[1].keyHandle",
            id="retiredKeys",
        ),
        pytest.param(
            {"wrappingKey": wrapping("ti:ns/beta/ca/1/wrap")}, "status.wrappingKey", id="wrappingKey"
        ),
        pytest.param(
            {"wrappingKey": wrapping(BASE)}, "status.wrappingKey", id="wrappingKey-own-signing-label"
        ),
        pytest.param(
            {"keyHandle": handle(BASE), "nextKey": {"keyHandle": handle(BASE + "/k1"), "generation": 2}},
            "status.nextKey.generation",
            id="nextKey-generation-not-its-labels",
        ),
        pytest.param(
            {"keyHandle": handle(BASE + "/k1"), "retiredKeys": [{"keyHandle": handle(BASE + "/k1")}]},
            "status.retiredKeys[0].keyHandle",
            id="retired-key-is-the-signing-key",
        ),
        pytest.param(
            {
                "nextKey": {"keyHandle": handle(BASE + "/k2"), "generation": 2},
                "retiredKeys": [{"keyHandle": handle(BASE + "/k2")}],
            },
            "status.retiredKeys[0].keyHandle",
            id="retired-key-is-the-next-key",
        ),
    ],
)
def test_a_status_naming_a_key_outside_the_scope_is_refused_whole(status: dict[str, Any], field: str) -> None:
    with pytest.raises(IssuerError) as refused:
        scope().check_status(status)
    assert refused.value.reason == "KeyOutOfScope"
    assert field in refused.value.message
    assert "nothing was signed or destroyed" in refused.value.message or "nothing was destroyed" in (
        refused.value.message
    )


@pytest.mark.parametrize(
    "status",
    [
        pytest.param({"keyHandle": "ti:ns/beta/ca/1"}, id="handle-is-a-string"),
        pytest.param({"keyHandle": {"keyLabel": BASE}}, id="handle-lacks-fields"),
        pytest.param({"keyHandle": {**handle(BASE), "algorithm": "dsa-1024"}}, id="unknown-algorithm"),
        pytest.param({"retiredKeys": "all"}, id="retired-keys-not-a-list"),
        pytest.param({"nextKey": ["x"]}, id="next-key-not-an-object"),
    ],
)
def test_a_malformed_handle_is_named_not_crashed_on(status: dict[str, Any]) -> None:
    with pytest.raises(IssuerError) as refused:
        scope().check_status(status)
    assert refused.value.reason == "KeyHandleInvalid"
    assert "status." in refused.value.message


def test_the_operators_own_status_passes() -> None:
    scope().check_status(
        {
            "keyHandle": handle(BASE + "/k2"),
            "keyGeneration": 2,
            "nextKey": {"keyHandle": handle(BASE + "/k3"), "generation": 3},
            "retiredKeys": [{"keyHandle": handle(BASE)}, {"keyHandle": handle(BASE + "/k1")}],
            "wrappingKey": wrapping(BASE + "/wrap"),
        }
    )
    scope().check_status({})


def test_destroyable_keys_are_the_issuers_own_and_out_of_scope_ones_come_back_as_errors() -> None:
    status = {
        "keyHandle": handle(BASE + "/k1"),
        "nextKey": {"keyHandle": handle(BASE + "/k2"), "generation": 2},
        "retiredKeys": [
            {"keyHandle": handle(BASE)},
            {"keyHandle": handle("ti:ns/beta/victim/12345678")},
            {"keyHandle": handle(BASE + "/k7"), "destroyedAt": "2031-01-01T00:00:00Z"},
        ],
    }
    found = list(scope().destroyable_keys(status))
    handles = [f.key_label for f in found if isinstance(f, KeyHandle)]
    errors = [f for f in found if isinstance(f, TrustedIssuerError)]
    assert handles == [BASE + "/k1", BASE + "/k2", BASE]
    assert [e.reason for e in errors] == ["KeyOutOfScope"]
    assert "ti:ns/beta/victim/12345678" in errors[0].message
    assert list(scope().destroyable_keys({})) == []
