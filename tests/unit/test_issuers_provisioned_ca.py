"""Pure pieces of provisioning: where Secrets live, the chain an issuer signs with, the checks of an
administrator's Secret (which CA certificate is current: test_issuers_rotation.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from issuer.controller import kubeapi
from issuer.controller.issuers import provisioned_ca
from issuer.errors import ConfigurationError, IssuerError
from issuer.settings import Settings
from tests.ca_certificates import ca_certificate, fingerprint

NOW = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)
PEM = serialization.Encoding.PEM


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, **kwargs: Any) -> x509.Certificate:
    return ca_certificate(subject, key, NOW, **kwargs)


_fp = fingerprint


ROOT_KEY, SUB_KEY, OTHER_KEY = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
ROOT = _cert("root", ROOT_KEY, path_length=1)
SUB = _cert("sub", ROOT_KEY, signer=(ROOT, ROOT_KEY), public=SUB_KEY.public_key(), path_length=0)


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
