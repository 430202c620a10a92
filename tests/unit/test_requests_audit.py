"""The audit line: every field of an issuance, one line whatever the names hold, and JSON fields under
kopf's JSON log format (the formatter ``trusted-issuer run --log-format json`` installs)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from kopf._core.actions.loggers import LogFormat, make_formatter

from issuer.controller.requests import audit
from issuer.signer.certificates import SigningRequest, issue_certificate
from issuer.signer.policy import Policy
from tests.unit.conftest import PKI


def _record(pki: PKI, requester: str = "system:serviceaccount:apps:web") -> audit.Issuance:
    ca = pki.ca()
    csr = pki.csr(
        common_name="web", dns=["web.apps.svc"], ips=["10.0.0.7"], uris=["spiffe://td/ns/apps/sa/web"]
    )
    bundle = issue_certificate(
        csr, SigningRequest(pki.pem(csr)), ca=ca.chain, ca_key=ca.key, policy=Policy(), now=pki.now
    )
    return audit.Issuance.of(
        bundle,
        kind="CertificateRequest",
        request="apps/web-1",
        issuer="TrustedIssuer apps/mesh",
        requester=requester,
        key_label="ti:ns/apps/mesh/0a1b2c3d",
        key_id="0a0b",
    )


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    audit.log.addHandler(handler)
    audit.log.setLevel(logging.INFO)
    try:
        yield stream, handler
    finally:
        audit.log.removeHandler(handler)


def test_issuance_record_describes_the_leaf(pki: PKI) -> None:
    record = _record(pki)
    assert record.subject == "CN=web"
    assert record.sans == ("DNS:web.apps.svc", "IP:10.0.0.7", "URI:spiffe://td/ns/apps/sa/web")
    assert record.requester == "system:serviceaccount:apps:web"
    assert int(record.serial, 16) > 0
    assert record.not_after.endswith("+00:00")


def test_json_format_carries_every_field(pki: PKI, captured: tuple[io.StringIO, logging.Handler]) -> None:
    stream, handler = captured
    handler.setFormatter(make_formatter(LogFormat.JSON))
    record = _record(pki)
    audit.issued(record)
    line = json.loads(stream.getvalue())
    fields = line["audit"]
    assert fields["event"] == "issued"
    assert fields["serial"] == record.serial
    assert fields["subject"] == "CN=web"
    assert fields["sans"] == list(record.sans)
    assert fields["requester"] == record.requester
    assert fields["request"] == "apps/web-1"
    assert fields["issuer"] == "TrustedIssuer apps/mesh"
    assert fields["not_after"] == record.not_after
    assert fields["key_id"] == "0a0b"
    assert line["severity"] == "info"


def test_unpublished_signature_says_why(pki: PKI, captured: tuple[io.StringIO, logging.Handler]) -> None:
    stream, handler = captured
    handler.setFormatter(make_formatter(LogFormat.JSON))
    record = _record(pki)
    audit.unpublished(record, "already-finished")
    fields = json.loads(stream.getvalue())["audit"]
    assert (fields["event"], fields["reason"], fields["serial"]) == (
        "unpublished",
        "already-finished",
        record.serial,
    )


def test_a_name_cannot_forge_a_second_line(pki: PKI, captured: tuple[io.StringIO, logging.Handler]) -> None:
    stream, handler = captured
    handler.setFormatter(logging.Formatter("%(message)s"))
    audit.issued(_record(pki, requester="alice\nissued serial='ff' requester='mallory'"))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("issued kind='CertificateRequest'")
    assert "requester=\"alice\\nissued serial='ff' requester='mallory'\"" in lines[0]


def test_refusal_is_recorded(captured: tuple[io.StringIO, logging.Handler]) -> None:
    stream, handler = captured
    handler.setFormatter(make_formatter(LogFormat.JSON))
    audit.refused(
        "CertificateRequest", "apps/bad", "TrustedIssuer apps/mesh", "bob", "failed", "CSR is not PEM"
    )
    fields = json.loads(stream.getvalue())["audit"]
    assert fields == {
        "event": "failed",
        "kind": "CertificateRequest",
        "request": "apps/bad",
        "issuer": "TrustedIssuer apps/mesh",
        "requester": "bob",
        "message": "CSR is not PEM",
    }
