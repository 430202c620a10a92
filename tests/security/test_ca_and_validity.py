"""A request for a CA certificate is refused unless the issuer's policy allows it, and no certificate
ever outlives the CA that signed it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509

from tests.csrs import make_csr
from tests.operator.kube import condition, issuer_body, pem
from tests.security.conftest import SecureCluster
from tests.security.scenario import finished, ready_issuer, request
from tests.verifiers import openssl_verify


def _ca_csr() -> bytes:
    return make_csr(common_name="sub-ca", extensions=[(x509.BasicConstraints(ca=True, path_length=0), True)])


def test_ca_request_refused_when_policy_does_not_allow_it(secure: SecureCluster) -> None:
    kube = secure.cluster.kube
    ready_issuer(kube, "ca-refused", "ca")  # allowCA defaults to false
    done = kube.wait(request(kube, "ca-refused", "subca", _ca_csr(), "ca", is_ca=True), finished)
    ready = condition(done)
    assert (ready["status"], ready["reason"]) == ("False", "Failed")
    assert "policy.allowCA is false" in ready["message"]
    assert not done["status"].get("certificate")


def test_ca_request_issued_when_policy_allows_it(secure: SecureCluster) -> None:
    kube = secure.cluster.kube
    ready_issuer(kube, "ca-allowed", "ca", policy={"allowCA": True})
    done = kube.wait(
        request(kube, "ca-allowed", "subca", _ca_csr(), "ca", is_ca=True, usages=["cert sign", "crl sign"]),
        finished,
    )
    assert condition(done)["reason"] == "Issued", condition(done)
    leaf = x509.load_pem_x509_certificates(pem(done["status"]["certificate"]))[0]
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is True
    openssl_verify(pem(done["status"]["certificate"]), pem(done["status"]["ca"]))


def test_an_allowed_ca_issuer_still_refuses_a_non_ca_request_whose_csr_claims_ca(
    secure: SecureCluster,
) -> None:
    kube = secure.cluster.kube
    ready_issuer(kube, "ca-lying", "ca", policy={"allowCA": True})
    done = kube.wait(request(kube, "ca-lying", "liar", _ca_csr(), "ca", is_ca=False), finished)
    assert condition(done)["reason"] == "Failed"
    assert "CSR asks for a CA certificate but spec.isCA is false" in condition(done)["message"]


def test_certificates_never_outlive_the_ca(secure: SecureCluster) -> None:
    kube = secure.cluster.kube
    body = issuer_body("short", namespace="short-ca")
    body["spec"]["ca"]["selfSigned"].update({"duration": "3h", "renewBefore": "30m"})
    issuer = ready_issuer(kube, "short-ca", "short", body=body)
    ca = x509.load_pem_x509_certificate(issuer["status"]["caCertificates"][0]["pem"].encode())
    assert ca.not_valid_after_utc - ca.not_valid_before_utc <= timedelta(hours=3, minutes=6)
    csr = make_csr(dns=["long.example.com"])
    paths = {
        "asks-90-days": request(kube, "short-ca", "asks-90-days", csr, "short", duration="2160h"),
        "asks-default": request(kube, "short-ca", "asks-default", csr, "short"),
        "asks-a-year-as-ca-would-not": request(
            kube, "short-ca", "asks-a-year", csr, "short", duration="8760h"
        ),
    }
    for name, path in paths.items():
        done = kube.wait(path, finished)
        assert condition(done)["reason"] == "Issued", (name, condition(done))
        leaf = x509.load_pem_x509_certificates(pem(done["status"]["certificate"]))[0]
        assert leaf.not_valid_after_utc <= ca.not_valid_after_utc, name
        assert leaf.not_valid_before_utc >= ca.not_valid_before_utc, name
        assert leaf.not_valid_after_utc <= datetime.now(UTC) + timedelta(hours=3), name
        openssl_verify(pem(done["status"]["certificate"]), pem(done["status"]["ca"]))
