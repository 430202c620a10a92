"""Independent judges of issued certificates: openssl, pkilint and cryptography's X.509 verifier.

None of them reuses trusted-issuer's own code, so a test that passes here passes because real PKI
tools accept the result.
"""

from __future__ import annotations

import subprocess
import tempfile
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import DNSName
from cryptography.x509.verification import ClientVerifier, PolicyBuilder, ServerVerifier, Store
from pkilint import loader
from pkilint.pkix import certificate, extension, name
from pkilint.validation import ValidationFindingSeverity

_PKIX = certificate.create_pkix_certificate_validator_container(
    certificate.create_decoding_validators(name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS),
    [
        certificate.create_issuer_validator_container([]),
        certificate.create_validity_validator_container(),
        certificate.create_subject_validator_container([]),
        certificate.create_extensions_validator_container([]),
        certificate.create_spki_validator_container([]),
    ],
)


def openssl_verify(chain_pem: bytes, ca_pem: bytes, purpose: str | None = None) -> str:
    """Run ``openssl verify`` on the leaf (first certificate) with the rest as untrusted intermediates.

    Returns openssl's output; raises AssertionError with openssl's words when it refuses.
    """
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        certs = x509.load_pem_x509_certificates(chain_pem)
        leaf = directory / "leaf.pem"
        leaf.write_bytes(certs[0].public_bytes(_PEM))
        ca = directory / "ca.pem"
        ca.write_bytes(ca_pem)
        command = ["openssl", "verify", "-x509_strict", "-CAfile", str(ca)]
        if len(certs) > 1:
            untrusted = directory / "untrusted.pem"
            untrusted.write_bytes(b"".join(c.public_bytes(_PEM) for c in certs[1:]))
            command += ["-untrusted", str(untrusted)]
        if purpose:
            command += ["-purpose", purpose]
        done = subprocess.run([*command, str(leaf)], capture_output=True, text=True, check=False)
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 0, f"openssl verify refused: {output}"
    return output


def _pkilint_false_positive(code: str, message: str) -> bool:
    """pkilint 0.13.3 judges names with the ``validators`` package, which knows only a fixed list of URI
    schemes (not ``spiffe``, the scheme of every mesh identity; RFC 5280 4.2.1.6 admits any RFC 3986
    URI) and no wildcard labels (RFC 6125 wildcards, which cert-manager's conformance suite requests).
    Only those two findings, for exactly those names, are set aside."""
    if code == "pkix.invalid_uri_syntax":
        return message.startswith('Invalid URI syntax: "spiffe://')
    if code == "pkix.invalid_domain_name_syntax":
        return message.startswith('Invalid domain name syntax: "*.')
    return False


def pkilint_errors(cert_pem: bytes) -> list[str]:
    """pkilint's RFC 5280 findings of severity ERROR or worse for the first certificate in ``cert_pem``,
    as ``validator: code: message`` strings."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    document = loader.RFC5280CertificateDocumentLoader().load_der_document(cert.public_bytes(_DER), "leaf")
    results = _PKIX.validate(document.root)
    return [
        f"{result.validator}: {finding.finding.code}: {finding.message}"
        for result in results
        for finding in result.finding_descriptions
        if finding.finding.severity <= ValidationFindingSeverity.ERROR
        and not _pkilint_false_positive(finding.finding.code, finding.message or "")
    ]


def web_pki_verify(
    chain_pem: bytes, ca_pem: bytes, *, dns_name: str | None, client: bool, at: datetime
) -> None:
    """cryptography's Web PKI path validation (server profile with a DNS name, or client profile)."""
    certs = x509.load_pem_x509_certificates(chain_pem)
    store = Store(x509.load_pem_x509_certificates(ca_pem))
    builder = PolicyBuilder().store(store).time(at)
    if client:
        verifier: ClientVerifier | ServerVerifier = builder.build_client_verifier()
        verifier.verify(certs[0], certs[1:])
    else:
        assert dns_name is not None
        builder.build_server_verifier(DNSName(dns_name)).verify(certs[0], certs[1:])


_PEM = Encoding.PEM
_DER = Encoding.DER
