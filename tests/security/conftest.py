"""A cluster whose token's PINs are canaries: random, distinctive strings the suite then hunts for.

The token is created here with ``softhsm2-util`` (the canaries are test data, so passing them in argv
is acceptable here, unlike in the product). The operator runs as a separate process against its own
sandbox API server, exactly as in tests/operator, with profiles:

- ``dev``: the canary token, any namespace;
- ``team-a-only``: the same token, only namespace ``team-a``, no cluster issuers;
- ``badpin``: the same token with a wrong PIN, itself a canary (a rejected PIN must not leak either);
- ``quota``: the same token with a key quota (test_key_quota.py).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from trusted_issuer_sandbox import CERTIFICATE_REQUEST_CRD, SandboxThread

from issuer.settings import DEFAULT_PKCS11_MODULE
from issuer.signer.devtoken import DevToken
from issuer.tokens import PinSource, TokenConfig
from tests.operator.conftest import OUR_CRDS, Cluster, Operator, operator_env
from tests.operator.kube import Kube
from tests.security.secret_forms import SecretScanner, pin_secret

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``scans_the_whole_suite`` run after every other test of this package (and still
    within it, so the package's cluster is not set up twice): their scans see everything the others
    produced, an order stated here rather than left to the sorting of file names."""

    def ours(item: pytest.Item) -> bool:
        return HERE in Path(str(item.path)).resolve().parents

    last = [i for i in items if ours(i) and i.get_closest_marker("scans_the_whole_suite")]
    if not last:
        return
    chosen = {id(i) for i in last}
    rest = [i for i in items if id(i) not in chosen]
    end = max((n for n, i in enumerate(rest) if ours(i)), default=len(rest) - 1)
    items[:] = [*rest[: end + 1], *last, *rest[end + 1 :]]


@dataclass
class SecureCluster:
    """The cluster, its canary token and the scanner. The PINs are kept out of ``repr`` so that a
    failing test, which prints its fixtures, does not itself leak them."""

    cluster: Cluster
    token: DevToken
    user_pin: str = field(repr=False)
    so_pin: str = field(repr=False)
    wrong_pin: str = field(repr=False)
    scanner: SecretScanner = field(repr=False)


class VerboseOperator(Operator):
    """The operator with debug logging: the most it ever says must still carry no secret."""

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "issuer", "run", "--verbose"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _canary(kind: str) -> str:
    return f"canary{kind}{secrets.token_hex(12)}"


def canary_token(directory: Path, label: str, user_pin: str, so_pin: str) -> DevToken:
    token = DevToken(directory.resolve(), label)
    token.token_dir.mkdir(parents=True)
    token.config_file.write_text(
        f"directories.tokendir = {token.token_dir}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    util = shutil.which("softhsm2-util")
    assert util, "softhsm2-util is not installed: run `make dev`"
    subprocess.run(
        [util, "--init-token", "--free", "--label", label, "--so-pin", so_pin, "--pin", user_pin],
        env={**os.environ, "SOFTHSM2_CONF": str(token.config_file)},
        check=True,
        capture_output=True,
        timeout=60,
    )
    token.pin_file.write_text(user_pin + "\n")
    token.pin_file.chmod(0o600)
    return token


@pytest.fixture(scope="package")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    workdir = tmp_path_factory.mktemp("security")
    user_pin, so_pin, wrong_pin = _canary("PIN"), _canary("SOPIN"), _canary("WRONGPIN")
    token = canary_token(workdir / "softhsm", "canary-token", user_pin, so_pin)
    wrong_pin_file = workdir / "wrong.pin"
    wrong_pin_file.write_text(wrong_pin + "\n")
    base = {"module": DEFAULT_PKCS11_MODULE, "tokenLabel": token.label}
    profiles = {
        "profiles": {
            "dev": {**base, "pinFile": str(token.pin_file)},
            "team-a-only": {
                **base,
                "pinFile": str(token.pin_file),
                "namespaces": ["team-a"],
                "clusterIssuers": False,
            },
            "badpin": {**base, "pinFile": str(wrong_pin_file)},
            # Two keys a namespace (one more only in quota-wide), none for cluster issuers: the key
            # quota tests (test_key_quota.py); namespaces each test makes afresh, so counts start at 0.
            "quota": {
                **base,
                "pinFile": str(token.pin_file),
                "keyQuota": {"perNamespace": 2, "namespaces": {"quota-wide": 3}, "clusterIssuers": 0},
            },
        }
    }
    profiles_file = workdir / "profiles.yaml"
    profiles_file.write_text(yaml.safe_dump(profiles))
    scanner = SecretScanner(
        [pin_secret("user PIN", user_pin), pin_secret("SO PIN", so_pin), pin_secret("wrong PIN", wrong_pin)]
    )
    with SandboxThread(crds=[CERTIFICATE_REQUEST_CRD, *OUR_CRDS]) as sandbox:
        env = operator_env(
            sandbox.write_kubeconfig(workdir / "kubeconfig"),
            profiles_file,
            SOFTHSM2_CONF=str(token.config_file),
        )
        for name in ("TRUSTED_ISSUER_PIN_FILE", "TRUSTED_ISSUER_PIN", "TRUSTED_ISSUER_TOKEN_LABEL"):
            env.pop(name, None)
        operator = VerboseOperator(env, workdir / "operator.log")
        operator.start()
        config = TokenConfig(
            module=DEFAULT_PKCS11_MODULE, token_label=token.label, pin=PinSource(file=token.pin_file)
        )
        cluster = Cluster(sandbox, Kube(str(sandbox.url)), operator, config, workdir)
        try:
            yield SecureCluster(cluster, token, user_pin, so_pin, wrong_pin, scanner)
        finally:
            operator.stop()
