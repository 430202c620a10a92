"""Shared fixtures: a real PKCS#11 token for the whole test session and a signing worker pool on it.

By default the token is a fresh SoftHSM2 token in a temporary directory (its own SOFTHSM2_CONF). As in
python-pkcs11's own suite, set PKCS11_MODULE, PKCS11_TOKEN_LABEL and PKCS11_TOKEN_PIN to run the same
tests against another PKCS#11 module; cases needing a mechanism the token lacks then skip.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from issuer.settings import DEFAULT_PKCS11_MODULE
from issuer.signer.devtoken import init_dev_token
from issuer.signer.keys import Algorithm, KeyHandle
from issuer.signer.pool import SignerPool
from issuer.tokens import PinSource, TokenConfig


@pytest.fixture(scope="session")
def token_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenConfig]:
    if os.environ.get("PKCS11_MODULE"):
        yield TokenConfig(
            module=os.environ["PKCS11_MODULE"],
            token_label=os.environ.get("PKCS11_TOKEN_LABEL"),
            pin=PinSource(env="PKCS11_TOKEN_PIN"),
        )
        return
    if not Path(DEFAULT_PKCS11_MODULE).exists() or shutil.which("softhsm2-util") is None:
        pytest.fail("SoftHSM2 is not installed: run `make dev` (or apt-get install softhsm2)")
    token, _ = init_dev_token(tmp_path_factory.mktemp("softhsm"), "trusted-issuer-test")
    saved = {name: os.environ.get(name) for name in token.env()}
    # Spawned workers inherit the environment at start, so this must precede every pool.
    os.environ.update(token.env())
    yield TokenConfig(
        module=DEFAULT_PKCS11_MODULE, token_label=token.label, pin=PinSource(file=token.pin_file)
    )
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def pool(token_config: TokenConfig) -> Iterator[SignerPool]:
    with SignerPool(2) as running:
        yield running


@dataclass(frozen=True)
class TestCA:
    """A CA key generated in the token and its self-signed certificate."""

    token: TokenConfig
    key: KeyHandle
    pem: bytes


class CAFactory:
    """Makes (and caches per algorithm) CAs in the test token."""

    def __init__(self, pool: SignerPool, token: TokenConfig) -> None:
        self.pool = pool
        self.token = token
        self._made: dict[Algorithm, TestCA] = {}

    def new(
        self, algorithm: Algorithm, subject: str | None = None, duration: timedelta | None = None
    ) -> TestCA:
        label = f"test-{algorithm.value}-{uuid.uuid4().hex[:12]}"
        key = self.pool.generate_key.blocking(self.token, algorithm, label)
        pem = self.pool.create_self_signed_ca.blocking(
            self.token,
            key,
            subject or f"CN=test {algorithm.value} root,O=trusted-issuer tests",
            duration or timedelta(days=3650),
        )
        return TestCA(self.token, key, pem)

    def get(self, algorithm: Algorithm) -> TestCA:
        if algorithm not in self._made:
            self._made[algorithm] = self.new(algorithm)
        return self._made[algorithm]


@pytest.fixture(scope="session")
def cas(pool: SignerPool, token_config: TokenConfig) -> CAFactory:
    return CAFactory(pool, token_config)


def unique_label(prefix: str = "test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
