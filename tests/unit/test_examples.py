"""Every example issuer manifest is valid against its CRD (nothing pruned, no violation) and parses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from trusted_issuer_sandbox.schema import ObjectSchema

from issuer.controller.issuers.spec import IssuerSpec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def _schemas() -> dict[str, ObjectSchema]:
    schemas = {}
    for crd in (ROOT / "crds").glob("*.yaml"):
        body = yaml.safe_load(crd.read_text())
        openapi = body["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        schemas[body["spec"]["names"]["kind"]] = ObjectSchema(openapi)
    return schemas


def _issuers() -> list[Any]:
    found = []
    for path in EXAMPLES:
        for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc and doc.get("kind") in ("TrustedIssuer", "TrustedClusterIssuer"):
                found.append(pytest.param(doc, id=f"{path.stem}-{index}"))
    return found


@pytest.mark.parametrize("manifest", _issuers())
def test_example_is_valid_and_parses(manifest: dict[str, Any]) -> None:
    schema = _schemas()[manifest["kind"]]
    obj = yaml.safe_load(yaml.safe_dump(manifest))
    assert schema.prune(obj) == []
    schema.apply_defaults(obj)
    assert schema.validate(obj) == []
    IssuerSpec.parse(obj["spec"])


def test_there_are_examples_of_every_source() -> None:
    sources = {IssuerSpec.parse(p.values[0]["spec"]).key_source for p in _issuers()}  # type: ignore[index]
    assert {"generate", "import"} <= {s.value for s in sources}
