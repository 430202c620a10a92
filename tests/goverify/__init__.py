"""Go's crypto/x509 as a second judge of chains, beside openssl: it enforces every name constraint form,
URI included (cryptography's verifier refuses URI constraints as unsupported, so it cannot judge them).

``main.go`` beside this file is built once per test run with the installed ``go`` (standard library
only, no module download). Without ``go`` the caller's test is skipped with the reason, except under
``CI=true``, where a missing judge is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.verifiers import openssl_verify

SOURCE = Path(__file__).parent


@cache
def _binary() -> Path | None:
    go = shutil.which("go")
    if go is None:
        return None
    out = Path(tempfile.mkdtemp(prefix="goverify-")) / "goverify"
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local", "GOPROXY": "off"}
    subprocess.run([go, "build", "-o", str(out), "."], cwd=SOURCE, env=env, check=True, timeout=600)
    return out


def go_binary() -> Path:
    """The built oracle; skips the test (fails under CI=true) when Go is not installed."""
    binary = _binary()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("go is not installed: CI needs Go's crypto/x509 to judge name constraints")
        pytest.skip("go is not installed: Go's crypto/x509 cannot judge name constraints here")
    return binary


@dataclass(frozen=True)
class Verdicts:
    """What openssl and Go said of one chain: ``None`` for accepted, else the verifier's words."""

    openssl: str | None
    go: str | None


def _pem(certs: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certs)


def go_verify(
    leaf: x509.Certificate, intermediates: list[x509.Certificate], root: x509.Certificate
) -> str | None:
    """Go's verdict on ``leaf`` through ``intermediates`` to ``root`` (any extended key usage, now)."""
    binary = go_binary()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for name, certs in (("root", [root]), ("intermediates", intermediates), ("leaf", [leaf])):
            (directory / f"{name}.pem").write_bytes(_pem(certs))
        done = subprocess.run(
            [binary, *(str(directory / f"{n}.pem") for n in ("root", "intermediates", "leaf"))],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    assert done.returncode in (0, 1), f"goverify failed to run: {done.stdout}{done.stderr}"
    return None if done.returncode == 0 else done.stdout.strip()


def openssl_verdict(
    leaf: x509.Certificate, intermediates: list[x509.Certificate], root: x509.Certificate
) -> str | None:
    """openssl's verdict (``verify -x509_strict``), ``None`` for accepted."""
    try:
        openssl_verify(_pem([leaf, *intermediates]), _pem([root]))
    except AssertionError as refused:
        return str(refused)
    return None


def both_verdicts(
    leaf: x509.Certificate, intermediates: list[x509.Certificate], root: x509.Certificate
) -> Verdicts:
    return Verdicts(openssl_verdict(leaf, intermediates, root), go_verify(leaf, intermediates, root))


def offline_leaf(
    sub_ca: x509.Certificate,
    sub_ca_key: ec.EllipticCurvePrivateKey,
    names: list[x509.GeneralName],
    *,
    common_name: str | None = None,
) -> x509.Certificate:
    """A TLS server/client leaf that a sub-CA's holder signs offline, outside any policy of ours: what an
    attacker holding a sub-CA key can make. Valid from a minute ago for a day."""
    now = datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else [])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(sub_ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(sub_ca_key.public_key()), critical=False
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=not common_name)
    )
    return builder.sign(sub_ca_key, hashes.SHA256())
