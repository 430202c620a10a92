"""A known CA private key, imported into the canary token by issue 8's wrapped import, never leaks.

The key is made here in software, so its every form is known; it is wrapped offline with
``trusted-issuer provision wrap`` for a wrapping key generated in the token, unwrapped into the token
under a label in namespace ``imported``'s scope, and adopted by a TrustedIssuer there (the operator
cannot yet import by itself: that controller part of issue 8 has not landed, so the import runs
through the signer pool, and the operator meets the key by adoption). Then requests are issued with
it, and every text is scanned for the PINs and for the key (PKCS#8 DER, PEM lines, base64, hex, the
raw private scalar). Its tests run after every other test of this package (``scans_the_whole_suite``,
see conftest.py), so the scan sees everything the suite produced, whatever the files are called.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from issuer.signer.keys import Algorithm
from issuer.signer.pool import SignerPool
from tests.csrs import make_csr
from tests.operator.kube import condition, issuer_body, pem
from tests.security.conftest import SecureCluster
from tests.security.scenario import create_issuer, finished, request
from tests.security.secret_forms import private_key_secret
from tests.security.test_secrets_never_leak import LISTED, _decoded_fields
from tests.verifiers import openssl_verify

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.scans_the_whole_suite
NAMESPACE = "imported"


@contextmanager
def canary_pool(secure: SecureCluster) -> Iterator[SignerPool]:
    """A signer pool on the canary token. Workers read SOFTHSM2_CONF when they start, so it is set only
    while this pool's workers start and live."""
    saved = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(secure.token.config_file)
    try:
        with SignerPool(1) as pool:
            yield pool
    finally:
        if saved is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = saved


@pytest.fixture(scope="module")
def imported(secure: SecureCluster) -> dict[str, Any]:
    workdir = secure.cluster.workdir / "import"
    workdir.mkdir()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    secure.scanner.add(private_key_secret("imported CA key", ca_key))
    key_file = workdir / "ca.key"
    key_file.write_bytes(
        ca_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    label = f"ti:ns/{NAMESPACE}/known-root"
    with canary_pool(secure) as pool:
        wrapping = pool.generate_wrapping_key.blocking(secure.cluster.token, f"wrap-{NAMESPACE}")
        wrapping_file = workdir / "wrapping.pem"
        wrapping_file.write_text(wrapping.public_pem)
        wrapped = workdir / "wrapped.bin"
        cli = subprocess.run(
            [
                sys.executable, "-m", "issuer", "provision", "wrap",
                "--wrapping-key", str(wrapping_file), "--key", str(key_file), "--out", str(wrapped),
                "--expect-sha256", wrapping.sha256,
            ],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert cli.returncode == 0, cli.stderr[-500:]
        handle = pool.unwrap_key.blocking(secure.cluster.token, wrapping.handle, wrapped.read_bytes(), label)
        pool.destroy_wrapping_key.blocking(secure.cluster.token, wrapping.handle)
    key_file.unlink()  # the clear key exists only in this test's memory from here on
    assert handle.algorithm is Algorithm.ECDSA_P256

    kube = secure.cluster.kube
    body = issuer_body("known-root", namespace=NAMESPACE)
    body["spec"]["key"]["adopt"] = {"keyLabel": label}
    issuer = kube.wait(
        create_issuer(kube, NAMESPACE, "known-root", body=body),
        lambda o: condition(o).get("status") == "True",
    )
    paths = [
        request(kube, NAMESPACE, f"r{i}", make_csr(dns=[f"i{i}.example.com"]), "known-root") for i in range(5)
    ]
    done = [kube.wait(path, finished) for path in paths]
    return {
        "key": ca_key,
        "issuer": issuer,
        "requests": done,
        "cli": f"{cli.stdout}\n{cli.stderr}",
    }


def test_the_imported_key_signs_for_the_operator(imported: dict[str, Any]) -> None:
    ca_key: ec.EllipticCurvePrivateKey = imported["key"]
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ca = x509.load_pem_x509_certificate(imported["issuer"]["status"]["caCertificates"][0]["pem"].encode())
    assert ca.public_key().public_bytes(*spki) == ca_key.public_key().public_bytes(*spki)
    for done in imported["requests"]:
        assert condition(done)["reason"] == "Issued", condition(done)
        openssl_verify(pem(done["status"]["certificate"]), pem(done["status"]["ca"]))


def test_neither_the_imported_key_nor_a_pin_appears_anywhere(
    secure: SecureCluster, imported: dict[str, Any]
) -> None:
    texts = [("provision wrap output", imported["cli"]), ("operator log", secure.cluster.operator.log())]
    for path in LISTED:
        try:
            items = secure.cluster.kube.get(path).get("items", [])
        except Exception as err:  # a kind the sandbox does not serve
            texts.append((path, str(err)))
            continue
        for item in items:
            where = (
                f"{item.get('kind', path)} {item['metadata'].get('namespace', '')}/{item['metadata']['name']}"
            )
            texts += [(where, json.dumps(item)), (f"{where} (decoded)", _decoded_fields(item))]
    leaks = secure.scanner.scan_all(texts)
    assert not leaks, [(leak.secret, leak.form, leak.where) for leak in leaks]
    assert any(s.name == "imported CA key" for s in secure.scanner.secrets)


def test_the_imported_key_cannot_be_read_back_from_the_token(
    secure: SecureCluster, imported: dict[str, Any]
) -> None:
    answer = subprocess.run(
        [sys.executable, "-m", "tests.security.token_probe", secure.token.label, str(secure.token.pin_file)],
        env={**os.environ, "SOFTHSM2_CONF": str(secure.token.config_file)},
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    keys = {k["label"]: k for k in json.loads(answer.stdout)["keys"]}
    key = keys[f"ti:ns/{NAMESPACE}/known-root"]
    assert key["SENSITIVE"] and not key["EXTRACTABLE"], key
    refusals = {action: outcome for action, outcome in key.items() if not action.isupper() and " " in action}
    assert refusals and all(outcome.startswith("refused") for outcome in refusals.values()), refusals
    assert not [label for label in keys if label.startswith("wrap-")], "the wrapping key was left behind"
