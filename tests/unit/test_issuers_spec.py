"""Reading an issuer's spec: key and CA sources are one-of, rotation only where it can work, errors name
the field (the API server checks the same with CEL; the operator must not depend on it)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from issuer.controller.issuers.spec import CASource, IssuerSpec, KeySource
from issuer.errors import PermanentError

SELF_SIGNED = {"selfSigned": {"subject": "CN=root"}}


def spec(key: dict[str, Any] | None = None, ca: dict[str, Any] | None = SELF_SIGNED) -> dict[str, Any]:
    body: dict[str, Any] = {"tokenProfile": "dev", "key": key or {}}
    if ca is not None:
        body["ca"] = ca
    return body


@pytest.mark.parametrize(
    ("body", "key_source", "ca_source"),
    [
        pytest.param(spec(), KeySource.GENERATE, CASource.SELF_SIGNED, id="default-generate-self-signed"),
        pytest.param(
            spec({"adopt": {"keyLabel": "ti:cluster/x"}}), KeySource.ADOPT, CASource.SELF_SIGNED, id="adopt"
        ),
        pytest.param(
            spec({"import": {"secretName": "ca-import"}}, ca=None),
            KeySource.IMPORT,
            CASource.IMPORTED,
            id="import-brings-its-certificate",
        ),
        pytest.param(
            spec(ca={"intermediate": {"subject": "CN=mesh", "secretName": "mesh-ca", "pathLength": 0}}),
            KeySource.GENERATE,
            CASource.INTERMEDIATE,
            id="generate-under-intermediate",
        ),
    ],
)
def test_sources(body: dict[str, Any], key_source: KeySource, ca_source: CASource) -> None:
    parsed = IssuerSpec.parse(body)
    assert (parsed.key_source, parsed.ca_source) == (key_source, ca_source)


def test_import_and_intermediate_name_their_secrets() -> None:
    imported = IssuerSpec.parse(spec({"import": {"secretName": "wrapped"}}, ca=None))
    assert imported.import_secret == "wrapped"
    middle = IssuerSpec.parse(
        spec(ca={"intermediate": {"subject": "CN=mesh", "secretName": "signed", "pathLength": 1}})
    )
    assert (middle.ca_secret, middle.subject, middle.path_length) == ("signed", "CN=mesh", 1)


def test_rotation_defaults_and_values() -> None:
    assert IssuerSpec.parse(spec()).rotation.generation == 0
    rotation = IssuerSpec.parse(
        spec({"rotation": {"generation": 3, "overlap": "90s", "retiredKeyPolicy": "Destroy"}})
    ).rotation
    assert (rotation.generation, rotation.overlap, rotation.destroy_retired) == (
        3,
        timedelta(seconds=90),
        True,
    )
    assert not IssuerSpec.parse(spec({"rotation": {"generation": 1}})).rotation.destroy_retired


@pytest.mark.parametrize(
    ("body", "names"),
    [
        pytest.param(
            spec({"generate": {}, "adopt": {"keyLabel": "x"}}),
            "generate, adopt or import",
            id="two-key-sources",
        ),
        pytest.param(
            spec({"import": {"secretName": "s"}}), "spec.ca must be absent", id="import-with-a-ca-source"
        ),
        pytest.param(spec({"import": {}}, ca=None), "spec.key.import.secretName", id="import-without-secret"),
        pytest.param(spec(ca=None), "spec.ca needs one source", id="no-ca-source"),
        pytest.param(
            spec(ca={**SELF_SIGNED, "intermediate": {"subject": "CN=x", "secretName": "s"}}),
            "selfSigned or intermediate",
            id="two-ca-sources",
        ),
        pytest.param(
            spec(ca={"intermediate": {"subject": "CN=x"}}),
            "spec.ca.intermediate.secretName",
            id="intermediate-without-secret",
        ),
        pytest.param(
            spec(ca={"selfSigned": {}}), "spec.ca.selfSigned.subject", id="self-signed-without-subject"
        ),
        pytest.param(
            spec({"adopt": {"keyLabel": "x"}, "rotation": {"generation": 1}}),
            "spec.key.rotation",
            id="rotation-of-an-adopted-key",
        ),
        pytest.param(
            spec(
                {"rotation": {"generation": 1}},
                ca={"intermediate": {"subject": "CN=x", "secretName": "s"}},
            ),
            "spec.key.rotation",
            id="rotation-under-an-intermediate",
        ),
        pytest.param(
            spec({"rotation": {"generation": -1}}), "must not be negative", id="negative-generation"
        ),
        pytest.param(spec({"rotation": {"overlap": "soon"}}), "spec:", id="bad-overlap"),
        pytest.param({"key": {}, "ca": SELF_SIGNED}, "spec.tokenProfile", id="no-profile"),
        pytest.param(
            spec(ca={"selfSigned": {"subject": "CN=x", "duration": "1h", "renewBefore": "1h"}}),
            "renewBefore must be shorter",
            id="renew-before-not-shorter-than-duration",
        ),
    ],
)
def test_invalid_specs_name_the_field(body: dict[str, Any], names: str) -> None:
    with pytest.raises(PermanentError) as caught:
        IssuerSpec.parse(body)
    assert caught.value.reason == "InvalidSpec"
    assert names in caught.value.message
