"""The ``trusted-issuer`` command as a person runs it: real processes, real token, real openssl.

Bad input must end with exit status 2 and one clear line on stderr, never a traceback, never the PIN.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from issuer.signer.keys import Algorithm
from issuer.tokens import TokenConfig
from tests.conftest import TEST_TOKEN, TokenAbilities, unique_label
from tests.csrs import leaf_key, make_csr, pem_armour
from tests.verifiers import openssl_verify, pkilint_errors

CLI = [sys.executable, "-m", "issuer"]
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def run(token_config: TokenConfig) -> Run:
    env = {**os.environ, "TRUSTED_ISSUER_PKCS11_MODULE": token_config.module}
    if token_config.token_label:
        env["TRUSTED_ISSUER_TOKEN_LABEL"] = token_config.token_label
    if token_config.pin.file:
        env["TRUSTED_ISSUER_PIN_FILE"] = str(token_config.pin.file)

    def invoke(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args], env={**env, **(extra_env or {})}, capture_output=True, text=True, timeout=120
        )

    return invoke


def ca_algorithm(token_can: TokenAbilities) -> str:
    """The CLI root's algorithm: P-384, or the one the session token can do (opencryptoki has no EC)."""
    return "ecdsa-p384" if token_can(Algorithm.ECDSA_P384) else os.environ["TRUSTED_ISSUER_TEST_ALGORITHM"]


@pytest.fixture(scope="module")
def ca(run: Run, tmp_path_factory: pytest.TempPathFactory, token_can: TokenAbilities) -> tuple[str, Path]:
    label = unique_label("cli-root")
    out = tmp_path_factory.mktemp("cli") / "ca.pem"
    done = run(
        "ca",
        "create",
        "--key-label",
        label,
        "--algorithm",
        ca_algorithm(token_can),
        "--subject",
        "CN=cli root,O=tests",
        "--duration",
        "8760h",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    return label, out


def _assert_one_clear_line(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    if TEST_TOKEN == "tpm":
        # tpm2-pkcs11 logs refused calls to stderr itself ("ERROR: ..."), and no setting silences
        # them; the one line that is ours is still checked whole.
        lines = [line for line in lines if not line.startswith(("ERROR:", "WARNING:"))]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert lines[0].startswith("trusted-issuer: error: ")
    for fragment in expected:
        assert fragment in lines[0], lines[0]
    assert done.stdout == ""


def test_create_ca_sign_and_verify_with_openssl(run: Run, ca: tuple[str, Path], tmp_path: Path) -> None:
    label, ca_pem = ca
    csr = tmp_path / "req.pem"
    csr.write_bytes(make_csr(common_name="api", dns=["api.example.com"]))
    done = run(
        "sign",
        "--key-label",
        label,
        "--ca-cert",
        str(ca_pem),
        "--csr",
        str(csr),
        "--duration",
        "24h",
        "--usage",
        "digital signature",
        "--usage",
        "server auth",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("BEGIN CERTIFICATE") == 1  # the leaf; a self-signed root is never in the chain
    openssl_verify(done.stdout.encode(), ca_pem.read_bytes(), purpose="sslserver")
    assert pkilint_errors(done.stdout.encode()) == []


def test_openssl_made_csr_is_signed(run: Run, ca: tuple[str, Path], tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed")
    key, csr = tmp_path / "k.pem", tmp_path / "r.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-subj",
            "/CN=legacy",
            "-addext",
            "subjectAltName=DNS:legacy.example.com",
            "-out",
            str(csr),
        ],
        check=True,
        capture_output=True,
    )
    done = run("sign", "--key-label", ca[0], "--ca-cert", str(ca[1]), "--csr", str(csr))
    assert done.returncode == 0, done.stderr
    openssl_verify(done.stdout.encode(), ca[1].read_bytes())


def test_keys_lists_handles_never_material(
    run: Run, ca: tuple[str, Path], token_config: TokenConfig, token_can: TokenAbilities
) -> None:
    done = run("hsm", "keys")
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith(ca[0]))
    assert ca_algorithm(token_can) in row and "True" in row
    assert "PRIVATE KEY" not in done.stdout
    if token_config.pin.file:
        assert token_config.pin.read() not in done.stdout + done.stderr


BAD_INPUTS: list[tuple[str, bytes, tuple[str, ...], tuple[str, ...]]] = [
    ("not-a-csr", b"hello world\n", (), ("not PEM",)),
    ("der-garbage", bytes(range(256)) * 4, (), ("not PEM",)),
    (
        "truncated-pem",
        make_csr(dns=["t.example.com"])[:200] + b"\n-----END CERTIFICATE REQUEST-----\n",
        (),
        ("cannot be parsed",),
    ),
    (
        "weak-rsa-1024",
        make_csr(key=rsa.generate_private_key(65537, 1024), dns=["w.example.com"]),
        (),
        ("RSA-1024",),
    ),
    (
        "is-ca-disagrees",
        make_csr(dns=["x.example.com"], extensions=[]),
        ("--is-ca",),
        ("CA",),
    ),
]


@pytest.mark.parametrize(
    ("csr_bytes", "flags", "expected"), [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS]
)
def test_bad_csr_exits_2_with_one_line(
    run: Run,
    ca: tuple[str, Path],
    tmp_path: Path,
    csr_bytes: bytes,
    flags: tuple[str, ...],
    expected: tuple[str, ...],
) -> None:
    csr = tmp_path / "bad.pem"
    csr.write_bytes(csr_bytes)
    policy = tmp_path / "policy.yaml"
    policy.write_text("allowCA: false\n")
    done = run(
        "sign",
        "--key-label",
        ca[0],
        "--ca-cert",
        str(ca[1]),
        "--csr",
        str(csr),
        "--policy",
        str(policy),
        *flags,
    )
    _assert_one_clear_line(done, *expected)


def test_csr_whose_signature_fails(run: Run, ca: tuple[str, Path], tmp_path: Path) -> None:
    der = bytearray(x509.load_pem_x509_csr(make_csr(dns=["tampered.example.com"])).public_bytes(Encoding.DER))
    der[-1] ^= 0x01  # the last byte of the DER is the last byte of the signature
    csr = tmp_path / "tampered.pem"
    csr.write_bytes(pem_armour("CERTIFICATE REQUEST", bytes(der)))
    done = run("sign", "--key-label", ca[0], "--ca-cert", str(ca[1]), "--csr", str(csr))
    _assert_one_clear_line(done, "signature does not verify")


def test_usages_disagreeing_with_the_csr(run: Run, ca: tuple[str, Path], tmp_path: Path) -> None:
    csr = tmp_path / "eku.pem"
    csr.write_bytes(
        make_csr(
            dns=["e.example.com"],
            extensions=[(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)],
        )
    )
    done = run(
        "sign", "--key-label", ca[0], "--ca-cert", str(ca[1]), "--csr", str(csr), "--usage", "server auth"
    )
    _assert_one_clear_line(done, "extended key usages")


def test_policy_violation_names_the_rule(run: Run, ca: tuple[str, Path], tmp_path: Path) -> None:
    csr = tmp_path / "r.pem"
    csr.write_bytes(make_csr(dns=["evilsvc.cluster.local"]))
    policy = tmp_path / "policy.yaml"
    policy.write_text("dnsDomains: [svc.cluster.local]\n")
    done = run(
        "sign", "--key-label", ca[0], "--ca-cert", str(ca[1]), "--csr", str(csr), "--policy", str(policy)
    )
    _assert_one_clear_line(done, "evilsvc.cluster.local", "policy.dnsDomains")


def test_unreadable_file(run: Run, ca: tuple[str, Path], tmp_path: Path) -> None:
    done = run("sign", "--key-label", ca[0], "--ca-cert", str(ca[1]), "--csr", str(tmp_path / "missing.pem"))
    _assert_one_clear_line(done, "cannot read CSR", "missing.pem")


def test_wrong_pin_is_refused_without_showing_any_pin(run: Run, ca: tuple[str, Path], tmp_path: Path) -> None:
    wrong = "wrong-pin-0123456789"
    pin_file = tmp_path / "wrong.pin"
    pin_file.write_text(wrong + "\n")
    csr = tmp_path / "r.pem"
    csr.write_bytes(make_csr(dns=["p.example.com"]))
    done = run(
        "sign", "--key-label", ca[0], "--ca-cert", str(ca[1]), "--csr", str(csr), "--pin-file", str(pin_file)
    )
    _assert_one_clear_line(done, "rejected the PIN")
    assert wrong not in done.stderr


def test_ca_certificate_of_another_key(
    run: Run, ca: tuple[str, Path], tmp_path: Path, token_can: TokenAbilities
) -> None:
    other = tmp_path / "other-ca.pem"
    made = run(
        "ca",
        "create",
        "--key-label",
        unique_label("cli-other"),
        "--algorithm",
        token_can.default.value,
        "--subject",
        "CN=other",
        "--out",
        str(other),
    )
    assert made.returncode == 0, made.stderr
    csr = tmp_path / "r.pem"
    csr.write_bytes(make_csr(dns=["m.example.com"]))
    done = run("sign", "--key-label", ca[0], "--ca-cert", str(other), "--csr", str(csr))
    _assert_one_clear_line(done, "not the token key")


def test_missing_token_names_it(run: Run, ca: tuple[str, Path], tmp_path: Path) -> None:
    done = run("hsm", "keys", "--token-label", "no-such-token")
    _assert_one_clear_line(done, "no-such-token")


def test_unknown_algorithm(run: Run, tmp_path: Path) -> None:
    done = run(
        "ca",
        "create",
        "--key-label",
        "x",
        "--algorithm",
        "dsa-1024",
        "--subject",
        "CN=x",
        "--out",
        str(tmp_path / "x"),
    )
    assert done.returncode == 2
    assert "dsa-1024" in done.stderr and "Traceback" not in done.stderr


def test_leaf_key_helper_is_deterministic_per_kind() -> None:
    assert leaf_key("ecdsa-p256") is leaf_key("ecdsa-p256")
