"""The CA private keys the running operator made are never extractable or readable: checked against the
token itself with python-pkcs11, in a process of its own, not through trusted-issuer's code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.security.conftest import SecureCluster
from tests.security.scenario import ready_issuer

ROOT = Path(__file__).resolve().parents[2]
ALGORITHMS = ("ecdsa-p256", "ecdsa-p384", "rsa-2048", "ed25519")


@pytest.fixture(scope="module")
def probe(secure: SecureCluster) -> dict[str, Any]:
    kube = secure.cluster.kube
    for algorithm in ALGORITHMS:
        ready_issuer(kube, "keys", algorithm, algorithm=algorithm)
    answer = subprocess.run(
        [sys.executable, "-m", "tests.security.token_probe", secure.token.label, str(secure.token.pin_file)],
        env={**os.environ, "SOFTHSM2_CONF": str(secure.token.config_file)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return dict(json.loads(answer.stdout))


def test_no_private_key_is_visible_without_logging_in(probe: dict[str, Any]) -> None:
    assert probe["visible_without_login"] == 0


def test_every_operator_key_is_sensitive_and_never_extractable(probe: dict[str, Any]) -> None:
    ours = [k for k in probe["keys"] if k["label"].startswith("ti:ns/keys/")]
    assert len(ours) == len(ALGORITHMS), [k["label"] for k in probe["keys"]]
    for key in probe["keys"]:
        assert key["SENSITIVE"] and key["PRIVATE"] and not key["EXTRACTABLE"], key
    # Generated in the token, these keys have never been anything else (an imported key, by
    # definition, has been outside once, so the token reports it as not ALWAYS_SENSITIVE).
    for key in ours:
        assert key["ALWAYS_SENSITIVE"] and key["NEVER_EXTRACTABLE"], key


def test_the_token_refuses_every_way_out(probe: dict[str, Any]) -> None:
    attempts = 0
    for key in probe["keys"]:
        for action, outcome in key.items():
            if action in ("label", "family") or action.isupper():
                continue
            attempts += 1
            assert outcome.startswith("refused"), (key["label"], action, outcome)
    assert attempts >= 6 * len(probe["keys"])  # a value read, two wraps, two re-flags, a copy
