"""Certificates signed in the token, judged by openssl, pkilint and cryptography's verifier.

Every CA key type the token can hold x every leaf key type cert-manager can request, then the cases of
cert-manager's own issuer conformance suite that reach an issuer as CSRs.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

from issuer.signer.certificates import SigningRequest
from issuer.signer.keys import Algorithm, IssuerKey
from issuer.signer.policy import Policy
from issuer.signer.pool import SignerPool
from tests.conftest import CAFactory
from tests.csrs import LEAF_KEY_TYPES, leaf_key, make_csr
from tests.verifiers import openssl_verify, pkilint_errors, web_pki_verify

CA_ALGORITHMS = list(Algorithm)
SERVER_CLIENT = ("digital signature", "key encipherment", "server auth", "client auth")


def _issue(pool: SignerPool, cas: CAFactory, algorithm: Algorithm, request: SigningRequest, **policy: object):
    ca = cas.get(algorithm)
    issuer = IssuerKey(ca.token, ca.key, ca.pem, Policy(**policy))  # type: ignore[arg-type]
    bundle = pool.sign.blocking(issuer, request)
    leaf = x509.load_pem_x509_certificates(bundle.chain_pem)[0]
    return ca, bundle, leaf


@pytest.mark.parametrize("ca_algorithm", CA_ALGORITHMS, ids=[a.value for a in CA_ALGORITHMS])
def test_ca_certificate_is_rfc5280_clean_and_self_verifies(cas: CAFactory, ca_algorithm: Algorithm) -> None:
    ca = cas.get(ca_algorithm)
    assert pkilint_errors(ca.pem) == []
    openssl_verify(ca.pem, ca.pem)
    cert = x509.load_pem_x509_certificate(ca.pem)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature


@pytest.mark.parametrize("leaf_type", LEAF_KEY_TYPES)
@pytest.mark.parametrize("ca_algorithm", CA_ALGORITHMS, ids=[a.value for a in CA_ALGORITHMS])
def test_every_ca_key_signs_every_leaf_key(
    pool: SignerPool, cas: CAFactory, ca_algorithm: Algorithm, leaf_type: str
) -> None:
    host = "web.default.svc.cluster.local"
    csr = make_csr(key=leaf_key(leaf_type), common_name="web", dns=[host])
    ca, bundle, leaf = _issue(
        pool, cas, ca_algorithm, SigningRequest(csr, timedelta(hours=24), False, SERVER_CLIENT)
    )

    openssl_verify(bundle.chain_pem, bundle.ca_pem, purpose="sslserver")
    openssl_verify(bundle.chain_pem, bundle.ca_pem, purpose="sslclient")
    assert pkilint_errors(bundle.chain_pem) == []
    assert bundle.ca_pem == ca.pem
    if ca_algorithm is not Algorithm.ED25519 and leaf_type != "ed25519":
        # cryptography's Web PKI profile knows neither Ed25519 CAs nor leaves: it applies to the rest.
        now = datetime.now(UTC)
        web_pki_verify(bundle.chain_pem, bundle.ca_pem, dns_name=host, client=False, at=now)
        web_pki_verify(bundle.chain_pem, bundle.ca_pem, dns_name=None, client=True, at=now)
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    # RFC 5480 and RFC 8410 forbid key encipherment for EC and Ed25519 subject keys.
    assert usage.key_encipherment is leaf_type.startswith("rsa")


def test_signature_algorithms_match_the_ca_key(pool: SignerPool, cas: CAFactory) -> None:
    expected = {
        Algorithm.ECDSA_P256: SignatureAlgorithmOID.ECDSA_WITH_SHA256,
        Algorithm.ECDSA_P384: SignatureAlgorithmOID.ECDSA_WITH_SHA384,
        Algorithm.RSA_2048: SignatureAlgorithmOID.RSA_WITH_SHA256,
        Algorithm.ED25519: SignatureAlgorithmOID.ED25519,
    }
    for algorithm, oid in expected.items():
        _, _, leaf = _issue(pool, cas, algorithm, SigningRequest(make_csr(dns=["a.example.com"])))
        assert leaf.signature_algorithm_oid == oid


def test_rsa_pss_signatures_verify(pool: SignerPool, cas: CAFactory) -> None:
    ca = cas.get(Algorithm.RSA_3072)
    issuer = IssuerKey(ca.token, ca.key, ca.pem, Policy(), rsa_pss=True)
    bundle = pool.sign.blocking(
        issuer, SigningRequest(make_csr(dns=["pss.example.com"]), usages=SERVER_CLIENT)
    )
    leaf = x509.load_pem_x509_certificate(bundle.chain_pem)
    assert leaf.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS
    openssl_verify(bundle.chain_pem, bundle.ca_pem, purpose="sslserver")


def _sans(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


# cert-manager's conformance suite (test/e2e/suite/conformance/certificates) cases that reach an issuer.
LONG_LABEL = "a" * 63


@pytest.mark.parametrize("ca_algorithm", [Algorithm.ECDSA_P256, Algorithm.RSA_2048], ids=["ecdsa", "rsa"])
class TestCertManagerConformance:
    def test_dns_only(self, pool: SignerPool, cas: CAFactory, ca_algorithm: Algorithm) -> None:
        csr = make_csr(dns=["example.com", "www.example.com"])
        _, bundle, leaf = _issue(pool, cas, ca_algorithm, SigningRequest(csr))
        assert leaf.subject == x509.Name([])
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert san.critical  # RFC 5280 4.2.1.6: the SAN carries the identity of an empty subject
        assert san.value.get_values_for_type(x509.DNSName) == ["example.com", "www.example.com"]
        openssl_verify(bundle.chain_pem, bundle.ca_pem)
        assert pkilint_errors(bundle.chain_pem) == []

    def test_common_name_only(self, pool: SignerPool, cas: CAFactory, ca_algorithm: Algorithm) -> None:
        _, bundle, leaf = _issue(pool, cas, ca_algorithm, SigningRequest(make_csr(common_name="cn-only")))
        assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "cn-only"
        with pytest.raises(x509.ExtensionNotFound):
            _sans(leaf)
        openssl_verify(bundle.chain_pem, bundle.ca_pem)
        assert pkilint_errors(bundle.chain_pem) == []

    def test_ip_addresses(self, pool: SignerPool, cas: CAFactory, ca_algorithm: Algorithm) -> None:
        csr = make_csr(ips=["127.0.0.1", "::1", "10.0.0.7"])
        _, bundle, leaf = _issue(pool, cas, ca_algorithm, SigningRequest(csr))
        assert _sans(leaf).get_values_for_type(x509.IPAddress) == [
            ipaddress.ip_address("127.0.0.1"),
            ipaddress.ip_address("::1"),
            ipaddress.ip_address("10.0.0.7"),
        ]
        openssl_verify(bundle.chain_pem, bundle.ca_pem)
        assert pkilint_errors(bundle.chain_pem) == []

    def test_email_address(self, pool: SignerPool, cas: CAFactory, ca_algorithm: Algorithm) -> None:
        csr = make_csr(common_name="alice", emails=["alice@example.com"])
        _, bundle, leaf = _issue(
            pool, cas, ca_algorithm, SigningRequest(csr, usages=("digital signature", "email protection"))
        )
        assert _sans(leaf).get_values_for_type(x509.RFC822Name) == ["alice@example.com"]
        openssl_verify(bundle.chain_pem, bundle.ca_pem, purpose="smimesign")
        assert pkilint_errors(bundle.chain_pem) == []

    def test_uri_san_spiffe(self, pool: SignerPool, cas: CAFactory, ca_algorithm: Algorithm) -> None:
        spiffe = "spiffe://cluster.local/ns/sandbox/sa/default"
        csr = make_csr(uris=[spiffe])
        request = SigningRequest(csr, timedelta(hours=1), False, ("client auth", "server auth"))
        _, bundle, leaf = _issue(pool, cas, ca_algorithm, request)
        assert _sans(leaf).get_values_for_type(x509.UniformResourceIdentifier) == [spiffe]
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
        openssl_verify(bundle.chain_pem, bundle.ca_pem, purpose="sslclient")
        assert pkilint_errors(bundle.chain_pem) == []

    def test_wildcard_and_apex(self, pool: SignerPool, cas: CAFactory, ca_algorithm: Algorithm) -> None:
        csr = make_csr(dns=["*.example.com", "example.com"])
        _, bundle, leaf = _issue(pool, cas, ca_algorithm, SigningRequest(csr, usages=SERVER_CLIENT))
        assert _sans(leaf).get_values_for_type(x509.DNSName) == ["*.example.com", "example.com"]
        if ca_algorithm is not Algorithm.ED25519:
            web_pki_verify(
                bundle.chain_pem,
                bundle.ca_pem,
                dns_name="foo.example.com",
                client=False,
                at=datetime.now(UTC),
            )
        assert pkilint_errors(bundle.chain_pem) == []

    def test_long_domain(self, pool: SignerPool, cas: CAFactory, ca_algorithm: Algorithm) -> None:
        name = f"{LONG_LABEL}.{LONG_LABEL[:50]}.example.com"
        _, bundle, leaf = _issue(pool, cas, ca_algorithm, SigningRequest(make_csr(dns=[name])))
        assert _sans(leaf).get_values_for_type(x509.DNSName) == [name]
        openssl_verify(bundle.chain_pem, bundle.ca_pem)

    def test_explicit_usages(self, pool: SignerPool, cas: CAFactory, ca_algorithm: Algorithm) -> None:
        usages = ("signing", "data encipherment", "server auth", "client auth")
        csr = make_csr(key=leaf_key("rsa-2048"), dns=["usages.example.com"])
        _, bundle, leaf = _issue(pool, cas, ca_algorithm, SigningRequest(csr, usages=usages))
        ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        assert ku.digital_signature and ku.data_encipherment and not ku.key_encipherment
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        openssl_verify(bundle.chain_pem, bundle.ca_pem, purpose="sslserver")

    def test_explicit_duration(self, pool: SignerPool, cas: CAFactory, ca_algorithm: Algorithm) -> None:
        before = datetime.now(UTC).replace(microsecond=0)
        _, _, leaf = _issue(
            pool, cas, ca_algorithm, SigningRequest(make_csr(dns=["d.example.com"]), timedelta(hours=896))
        )
        lifetime = leaf.not_valid_after_utc - before
        assert timedelta(hours=896) <= lifetime <= timedelta(hours=896, seconds=5)
        assert leaf.not_valid_before_utc <= before

    def test_default_duration_is_cert_managers(
        self, pool: SignerPool, cas: CAFactory, ca_algorithm: Algorithm
    ) -> None:
        _, _, leaf = _issue(pool, cas, ca_algorithm, SigningRequest(make_csr(dns=["default.example.com"])))
        lifetime = leaf.not_valid_after_utc - datetime.now(UTC)
        assert timedelta(hours=2159) < lifetime <= timedelta(hours=2160)

    def test_is_ca(self, pool: SignerPool, cas: CAFactory, ca_algorithm: Algorithm) -> None:
        csr = make_csr(
            common_name="intermediate", extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)]
        )
        _, bundle, leaf = _issue(pool, cas, ca_algorithm, SigningRequest(csr, is_ca=True), allow_ca=True)
        constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
        assert constraints.critical and constraints.value.ca
        assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
        openssl_verify(bundle.chain_pem, bundle.ca_pem)
        assert pkilint_errors(bundle.chain_pem) == []

    def test_other_name_san_is_copied(
        self, pool: SignerPool, cas: CAFactory, ca_algorithm: Algorithm
    ) -> None:
        upn = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
        value = b"\x0c\x12user@example.local"  # DER UTF8String, 18 bytes
        csr = make_csr(
            common_name="someone", emails=["someone@example.com"], other_names=[x509.OtherName(upn, value)]
        )
        _, bundle, leaf = _issue(pool, cas, ca_algorithm, SigningRequest(csr))
        other = _sans(leaf).get_values_for_type(x509.OtherName)
        assert other == [x509.OtherName(upn, value)]
        openssl_verify(bundle.chain_pem, bundle.ca_pem)


def test_certificate_never_outlives_its_ca(pool: SignerPool, cas: CAFactory) -> None:
    short = cas.new(Algorithm.ECDSA_P256, duration=timedelta(hours=48))
    issuer = IssuerKey(short.token, short.key, short.pem, Policy())
    bundle = pool.sign.blocking(
        issuer, SigningRequest(make_csr(dns=["x.example.com"]), timedelta(hours=2160))
    )
    leaf = x509.load_pem_x509_certificate(bundle.chain_pem)
    ca = x509.load_pem_x509_certificate(short.pem)
    assert leaf.not_valid_after_utc == ca.not_valid_after_utc
    openssl_verify(bundle.chain_pem, bundle.ca_pem)


def test_serials_are_random_positive_and_large(pool: SignerPool, cas: CAFactory) -> None:
    ca = cas.get(Algorithm.ECDSA_P256)
    issuer = IssuerKey(ca.token, ca.key, ca.pem, Policy())
    csr = make_csr(dns=["serial.example.com"])
    serials = {pool.sign.blocking(issuer, SigningRequest(csr)).serial_number for _ in range(20)}
    assert len(serials) == 20
    assert all(0 < s < 2**159 for s in serials)
    assert sum(s.bit_length() >= 64 for s in serials) == 20
