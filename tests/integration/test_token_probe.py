"""A real token's answers: the protection read-back after key generation, and ``hsm probe``.

The refusal side of the read-back is tested on its pure decision (tests/unit/test_token_capabilities.py):
SoftHSM2 honours every template, and a worker process's read-back cannot be faked from here. The bug that
motivated it (opencryptoki 3.8.1's C_UnwrapKey ignoring CKA_SENSITIVE/CKA_EXTRACTABLE) cannot be
reproduced here without that token.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from issuer.signer.pool import SignerPool
from issuer.tokens import TokenConfig
from tests.conftest import TokenAbilities, unique_label


def test_a_generated_key_passes_the_read_back_and_is_reported_protected(
    pool: SignerPool, token_config: TokenConfig, token_can: TokenAbilities
) -> None:
    handle = pool.generate_key.blocking(token_config, token_can.default, unique_label("readback"))
    try:
        [report] = [r for r in pool.list_keys.blocking(token_config) if r.handle == handle]
        assert report.sensitive and report.always_sensitive and report.never_extractable
        assert not report.extractable
    finally:
        pool.destroy_key.blocking(token_config, handle)


def test_a_generated_wrapping_key_passes_the_read_back(
    pool: SignerPool, token_config: TokenConfig, token_can: TokenAbilities
) -> None:
    token_can.require_import()
    wrapping = pool.generate_wrapping_key.blocking(token_config, unique_label("readback-wrap"))
    pool.destroy_wrapping_key.blocking(token_config, wrapping.handle)


def _object_labels(pool: SignerPool, token: TokenConfig) -> set[str]:
    return {r.handle.key_label for r in pool.list_keys.blocking(token)}


def test_probe_reports_what_softhsm2_can_do_and_leaves_nothing(
    pool: SignerPool, token_config: TokenConfig
) -> None:
    env = {**os.environ, "TRUSTED_ISSUER_PKCS11_MODULE": token_config.module}
    if token_config.token_label:
        env["TRUSTED_ISSUER_TOKEN_LABEL"] = token_config.token_label
    if token_config.pin.file:
        env["TRUSTED_ISSUER_PIN_FILE"] = str(token_config.pin.file)
    before = _object_labels(pool, token_config)
    done = subprocess.run(
        [sys.executable, "-m", "issuer", "hsm", "probe", "--json", "--seconds", "0.2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    probe = json.loads(done.stdout)
    assert _object_labels(pool, token_config) == before
    assert probe["objectsLeftBehind"] == 0
    if probe["token"]["manufacturer"] != "SoftHSM project":
        pytest.skip(f"the expected answers are SoftHSM2's; this token is {probe['token']['manufacturer']}")
    assert probe["token"]["model"] == "SoftHSM v2"
    assert probe["token"]["firmware"].startswith("2.")
    found = {a["algorithm"]: a for a in probe["algorithms"]}
    # SoftHSM2 2.6.1 lists no CKM_ECDSA_SHA256: the digest is computed here and CKM_ECDSA signs it.
    assert found["ecdsa-p256"]["signingMechanism"] == "ECDSA"
    assert found["ecdsa-p256"]["digestOutsideToken"] is True
    assert found["rsa-2048"]["signingMechanism"] == "SHA256_RSA_PKCS"
    if "EDDSA" in probe["mechanisms"]:
        assert found["ed25519"]["usable"] and found["ed25519"]["signingMechanism"] == "EDDSA"
    else:
        assert not found["ed25519"]["usable"]
    for algorithm in found.values():
        if algorithm["usable"]:
            assert algorithm["signaturesPerSecond"] > 0, algorithm
    assert probe["unwrap"] == {
        "rsaOAEP": True,
        "aesKeyWrapPad": True,
        "keyWraps": ["AES_KEY_WRAP_PAD"],  # SoftHSM2 2.6.1 lists CKM_AES_CBC_PAD without unwrap
        "importPossible": True,
    }
    assert probe["module"] == "SoftHSM (PKCS#11 2.40)"
    assert probe["sessionKeys"] is True


def test_probe_prints_a_table(token_config: TokenConfig) -> None:
    env = {**os.environ, "TRUSTED_ISSUER_PKCS11_MODULE": token_config.module}
    if token_config.token_label:
        env["TRUSTED_ISSUER_TOKEN_LABEL"] = token_config.token_label
    if token_config.pin.file:
        env["TRUSTED_ISSUER_PIN_FILE"] = str(token_config.pin.file)
    done = subprocess.run(
        [sys.executable, "-m", "issuer", "hsm", "probe", "--seconds", "0.05"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "ecdsa-p256" in done.stdout and "CKM_" in done.stdout
    assert "left behind: 0 objects" in done.stdout
