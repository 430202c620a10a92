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

from issuer.errors import ConfigurationError
from issuer.settings import DEFAULT_PKCS11_MODULE
from issuer.signer.devtoken import BACKENDS, exported, init_dev_token
from issuer.signer.keys import Algorithm, KeyHandle
from issuer.signer.pool import SignerPool
from issuer.signer.token_capabilities import TokenProbe
from issuer.tokens import PinSource, TokenConfig

#: Which development token the session runs on (`.ci/run` runs the token suites on each).
TEST_TOKEN = os.environ.get("TRUSTED_ISSUER_TEST_TOKEN", "softhsm")
#: opencryptoki has one soft token per machine: its PIN files live in one place per machine, so a
#: later session finds the token it made (and wipes one that another label holds).
OPENCRYPTOKI_DIR = Path.home() / ".cache" / "trusted-issuer" / "opencryptoki-test"


@pytest.fixture(scope="session")
def token_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenConfig]:
    if os.environ.get("PKCS11_MODULE"):
        yield TokenConfig(
            module=os.environ["PKCS11_MODULE"],
            token_label=os.environ.get("PKCS11_TOKEN_LABEL"),
            pin=PinSource(env="PKCS11_TOKEN_PIN"),
        )
        return
    if TEST_TOKEN not in BACKENDS:
        pytest.fail(f"TRUSTED_ISSUER_TEST_TOKEN={TEST_TOKEN!r}: choose one of {', '.join(BACKENDS)}")
    if TEST_TOKEN == "softhsm" and (
        not Path(DEFAULT_PKCS11_MODULE).exists() or shutil.which("softhsm2-util") is None
    ):
        pytest.fail("SoftHSM2 is not installed: run `make dev` (or apt-get install softhsm2)")
    directory = OPENCRYPTOKI_DIR if TEST_TOKEN == "opencryptoki" else tmp_path_factory.mktemp(TEST_TOKEN)
    try:
        token, _ = init_dev_token(directory, "trusted-issuer-test", TEST_TOKEN, reset=True)
    except ConfigurationError as err:
        pytest.fail(f"the {TEST_TOKEN} test token cannot be set up: {err}")
    # Spawned workers inherit the environment at start, so this must precede every pool.
    with exported(token):
        yield TokenConfig(module=token.module, token_label=token.label, pin=PinSource(file=token.pin_file))
    token.stop()


@pytest.fixture(scope="session")
def pool(token_config: TokenConfig) -> Iterator[SignerPool]:
    with SignerPool(2) as running:
        yield running


@pytest.fixture(scope="session")
def token_can(pool: SignerPool, token_config: TokenConfig) -> TokenAbilities:
    """What the session's token can do, from its own mechanism list (no key is made to learn it).
    Exports TRUSTED_ISSUER_TEST_ALGORITHM, the algorithm issuers default to in the operator tests."""
    can = TokenAbilities(pool.probe_token.blocking(token_config, 0))
    os.environ["TRUSTED_ISSUER_TEST_ALGORITHM"] = can.default.value
    return can


@pytest.fixture(autouse=True)
def _the_token_can_do_the_algorithm(request: pytest.FixtureRequest) -> None:
    """A test parametrized by ``algorithm`` that uses the token skips, in the token's own words,
    where the session's token cannot do that algorithm (opencryptoki has no EC, a TPM no RSA-4096)."""
    if "algorithm" not in request.fixturenames or not {"pool", "token_config", "cas"} & set(
        request.fixturenames
    ):
        return
    value = request.getfixturevalue("algorithm")
    if isinstance(value, Algorithm | str):
        try:
            algorithm = Algorithm(value)
        except ValueError:
            return
        request.getfixturevalue("token_can").require(algorithm)


class TokenAbilities:
    """The session token's answers, and a skip in the token's own words for a case it cannot do."""

    def __init__(self, probe: TokenProbe) -> None:
        self.probe = probe
        self.support = {a.algorithm: a for a in probe.algorithms}

    def __call__(self, algorithm: Algorithm) -> bool:
        return self.support[algorithm].usable

    @property
    def default(self) -> Algorithm:
        """P-256 where the token can, else the first algorithm it can do (opencryptoki: RSA-2048)."""
        return next((a for a in (Algorithm.ECDSA_P256, *Algorithm) if self(a)), Algorithm.ECDSA_P256)

    def require(self, algorithm: Algorithm) -> None:
        if not self(algorithm):
            pytest.skip(
                f"{self.probe.manufacturer} {self.probe.model} cannot do {algorithm.value}: "
                f"{self.support[algorithm].why_not}"
            )

    def require_import(self) -> None:
        if TEST_TOKEN == "opencryptoki":
            pytest.skip(
                "opencryptoki 3.8.1's C_UnwrapKey ignores CKA_SENSITIVE/CKA_EXTRACTABLE, so every import "
                "there is refused (KeyProtectionRefused): tests/integration/test_token_quirks.py shows it"
            )
        if not self.probe.can_import:
            pytest.skip(
                f"{self.probe.manufacturer} {self.probe.model} cannot import a wrapped key: RSA-OAEP unwrap "
                f"{'offered' if self.probe.unwrap_rsa_oaep else 'not offered'}, key wraps "
                f"{', '.join(self.probe.key_wraps) or 'none'}"
            )


@dataclass(frozen=True)
class TestCA:
    """A CA key generated in the token and its self-signed certificate."""

    token: TokenConfig
    key: KeyHandle
    pem: bytes


class CAFactory:
    """Makes (and caches per algorithm) CAs in the test token."""

    def __init__(self, pool: SignerPool, token: TokenConfig, can: TokenAbilities) -> None:
        self.pool = pool
        self.token = token
        self.can = can
        self._made: dict[Algorithm, TestCA] = {}

    def new(
        self, algorithm: Algorithm, subject: str | None = None, duration: timedelta | None = None
    ) -> TestCA:
        self.can.require(algorithm)
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
def cas(pool: SignerPool, token_config: TokenConfig, token_can: TokenAbilities) -> CAFactory:
    return CAFactory(pool, token_config, token_can)


def unique_label(prefix: str = "test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
