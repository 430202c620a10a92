"""Pure pieces of provisioning and rotation: where Secrets live, the chain an issuer signs with, the
checks of an administrator's Secret, which CA certificate is current, which keys an issuer owns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from issuer.controller import kubeapi
from issuer.controller.conditions import ca_entry
from issuer.controller.issuers import provisioned_ca, rotation
from issuer.controller.issuers.spec import IssuerSpec
from issuer.errors import ConfigurationError, IssuerError
from issuer.settings import Settings
from issuer.signer.keys import Algorithm, KeyHandle, public_key_fingerprint

NOW = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)
PEM = serialization.Encoding.PEM


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    signer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    public: ec.EllipticCurvePublicKey | None = None,
    days: int = 365,
    path_length: int | None = None,
    issued_days_ago: int = 1,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_cert, issuer_key = signer if signer else (None, key)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_cert.subject if issuer_cert else name)
        .public_key(public or key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=issued_days_ago))
        .not_valid_after(NOW + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), True)
        .sign(issuer_key, hashes.SHA256())
    )


def _fp(key: ec.EllipticCurvePrivateKey) -> str:
    return public_key_fingerprint(key.public_key())


ROOT_KEY, SUB_KEY, OTHER_KEY = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
ROOT = _cert("root", ROOT_KEY, path_length=1)
SUB = _cert("sub", ROOT_KEY, signer=(ROOT, ROOT_KEY), public=SUB_KEY.public_key(), path_length=0)


def handle(fingerprint: str, label: str = "ti:cluster/x/1") -> KeyHandle:
    return KeyHandle("tok", "1", label, "01", Algorithm.ECDSA_P256, fingerprint)


# -- where Secrets live ------------------------------------------------------------------------------------


def test_a_trusted_issuers_secrets_live_in_its_namespace() -> None:
    assert provisioned_ca.secret_namespace("TrustedIssuer", "team-a", "ops") == "team-a"


def test_a_cluster_issuers_secrets_live_in_the_configured_namespace() -> None:
    assert provisioned_ca.secret_namespace("TrustedClusterIssuer", None, "ops") == "ops"


def test_a_cluster_issuer_falls_back_to_the_pods_namespace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    account = tmp_path / "namespace"
    monkeypatch.setattr(kubeapi, "SERVICE_ACCOUNT_NAMESPACE", account)
    with pytest.raises(IssuerError) as unknown:
        provisioned_ca.secret_namespace("TrustedClusterIssuer", None, None)
    assert unknown.value.reason == "ClusterResourceNamespaceUnknown"
    assert "TRUSTED_ISSUER_CLUSTER_RESOURCE_NAMESPACE" in unknown.value.message
    account.write_text("trusted-issuer\n")
    assert provisioned_ca.secret_namespace("TrustedClusterIssuer", None, None) == "trusted-issuer"
    monkeypatch.setenv("POD_NAMESPACE", "from-downward-api")
    assert provisioned_ca.secret_namespace("TrustedClusterIssuer", None, None) == "from-downward-api"


# -- the administrator's Secret ----------------------------------------------------------------------------


def test_chain_from_a_secret_is_issuing_then_root() -> None:
    data = {"tls.crt": SUB.public_bytes(PEM), "ca.crt": ROOT.public_bytes(PEM)}
    chain = provisioned_ca.check_secret_chain(data, _fp(SUB_KEY), NOW, path_length=0, where="ns/s")
    assert chain.pem == SUB.public_bytes(PEM) + ROOT.public_bytes(PEM)
    assert chain.root_pem == ROOT.public_bytes(PEM)


def test_a_self_signed_root_with_ca_crt_repeating_it_is_one_certificate() -> None:
    data = {"tls.crt": ROOT.public_bytes(PEM), "ca.crt": ROOT.public_bytes(PEM)}
    chain = provisioned_ca.check_secret_chain(data, _fp(ROOT_KEY), NOW, path_length=None, where="ns/s")
    assert chain.pem == ROOT.public_bytes(PEM)


@pytest.mark.parametrize(
    ("data", "fingerprint", "reason"),
    [
        pytest.param({"ca.crt": ROOT.public_bytes(PEM)}, _fp(SUB_KEY), "SecretIncomplete", id="no-tls-crt"),
        pytest.param(
            {"tls.crt": SUB.public_bytes(PEM), "ca.crt": ROOT.public_bytes(PEM)},
            _fp(OTHER_KEY),
            "CAKeyMismatch",
            id="certificate-of-another-key",
        ),
        pytest.param(
            {"tls.crt": SUB.public_bytes(PEM), "ca.crt": _cert("root", OTHER_KEY).public_bytes(PEM)},
            _fp(SUB_KEY),
            "ChainUntrusted",
            id="another-root",
        ),
        pytest.param({"tls.crt": b"garbage"}, _fp(SUB_KEY), "CAInvalid", id="not-pem"),
    ],
)
def test_secret_defects_keep_their_reason_and_name_the_secret(
    data: dict[str, bytes], fingerprint: str, reason: str
) -> None:
    with pytest.raises(IssuerError) as refused:
        provisioned_ca.check_secret_chain(data, fingerprint, NOW, path_length=None, where="team/ca-import")
    assert refused.value.reason == reason
    assert "team/ca-import" in refused.value.message


# -- the current CA certificate of a key -------------------------------------------------------------------


def _spec(**ca: Any) -> IssuerSpec:
    return IssuerSpec.parse(
        {"tokenProfile": "dev", "ca": {"selfSigned": {"subject": "CN=root", "renewBefore": "720h", **ca}}}
    )


def test_newest_valid_certificate_of_a_key_is_current() -> None:
    older = ca_entry(_cert("root", ROOT_KEY, days=3650, issued_days_ago=30).public_bytes(PEM))
    newer = ca_entry(_cert("root", ROOT_KEY, days=100, issued_days_ago=1).public_bytes(PEM))
    other = ca_entry(_cert("root", OTHER_KEY, issued_days_ago=0).public_bytes(PEM))
    entries = [older, other, newer]
    assert rotation.newest_for_key(entries, _fp(ROOT_KEY), NOW) == newer
    assert rotation.newest_for_key(entries, _fp(SUB_KEY), NOW) is None
    # Once the newer one expired, the older (still valid) one is all there is.
    assert rotation.newest_for_key(entries, _fp(ROOT_KEY), NOW + timedelta(days=200)) == older
    assert rotation.newest_for_key(entries, _fp(ROOT_KEY), NOW + timedelta(days=4000)) is None


@pytest.mark.parametrize(
    ("days", "subject", "renew"),
    [
        pytest.param(3650, "CN=root", False, id="fresh"),
        pytest.param(10, "CN=root", True, id="within-renew-before"),
        pytest.param(3650, "CN=renamed", True, id="subject-changed"),
    ],
)
def test_needs_new_ca(days: int, subject: str, renew: bool) -> None:
    cert = _cert("root", ROOT_KEY, days=days)
    spec = IssuerSpec.parse({"tokenProfile": "dev", "ca": {"selfSigned": {"subject": subject}}})
    assert rotation.needs_new_ca(ca_entry(cert.public_bytes(PEM)), handle(_fp(ROOT_KEY)), spec, NOW) is renew
    assert rotation.needs_new_ca(ca_entry(cert.public_bytes(PEM)), handle(_fp(OTHER_KEY)), spec, NOW)
    assert rotation.needs_new_ca(None, handle(_fp(ROOT_KEY)), _spec(), NOW)


# -- settings ----------------------------------------------------------------------------------------------


def test_provisioning_settings_from_the_environment() -> None:
    defaults = Settings.from_env({})
    assert (defaults.provisioning_recheck_interval, defaults.cluster_resource_namespace) == (5.0, None)
    chosen = Settings.from_env(
        {
            "TRUSTED_ISSUER_PROVISIONING_RECHECK_INTERVAL": "1500ms",
            "TRUSTED_ISSUER_CLUSTER_RESOURCE_NAMESPACE": "pki",
        }
    )
    assert (chosen.provisioning_recheck_interval, chosen.cluster_resource_namespace) == (1.5, "pki")
    with pytest.raises(ConfigurationError, match="PROVISIONING_RECHECK_INTERVAL"):
        Settings.from_env({"TRUSTED_ISSUER_PROVISIONING_RECHECK_INTERVAL": "0s"})


def test_issuer_recheck_interval_is_a_setting() -> None:
    assert Settings.from_env({}).issuer_recheck_interval == 60.0
    assert (
        Settings.from_env({"TRUSTED_ISSUER_ISSUER_RECHECK_INTERVAL": "2m30s"}).issuer_recheck_interval
        == 150.0
    )
    with pytest.raises(ConfigurationError, match="ISSUER_RECHECK_INTERVAL"):
        Settings.from_env({"TRUSTED_ISSUER_ISSUER_RECHECK_INTERVAL": "0s"})
