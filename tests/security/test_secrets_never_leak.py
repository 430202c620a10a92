"""Secrets never leak: after a scenario that exercises success and every kind of failure, no log line,
Event, status, stored object or CLI message carries a canary PIN in any form (raw, base64, hex).

The scanner takes a list of secrets (tests/security/secret_forms.py). Extension point for issue 8's
wrapped import: once an imported CA key can reach the operator, add ``private_key_secret("CA key",
known_key)`` to ``secure.scanner`` before the scenario, import the key, and this same scan covers its
PKCS#8 DER, PEM, base64 and raw private numbers; ``test_scanner_finds_a_known_private_key`` already
proves the key forms are found.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.csrs import make_csr
from tests.hostile_csrs import corpus
from tests.operator.kube import CLUSTER_ISSUER_PATH, issuer_body
from tests.security.conftest import SecureCluster
from tests.security.scenario import (
    create_issuer,
    finished,
    not_ready,
    ready_issuer,
    request,
)
from tests.security.secret_forms import SecretScanner, pin_secret, private_key_secret

ROOT = Path(__file__).resolve().parents[2]
#: Every kind of object the sandbox holds that the operator reads or writes, and Secrets.
LISTED = (
    "/api/v1/events",
    "/api/v1/secrets",
    "/api/v1/configmaps",
    "/apis/cert-manager.io/v1/certificaterequests",
    "/apis/certificates.k8s.io/v1/certificatesigningrequests",
    "/apis/trusted-issuer.dev/v1alpha1/trustedissuers",
    CLUSTER_ISSUER_PATH,
    "/apis/coordination.k8s.io/v1/leases",
    "/apis/events.k8s.io/v1/events",
)


def _cli(secure: SecureCluster, *args: str, pin_file: Path | None = None) -> str:
    """Run the CLI against the canary token; its whole output (stdout and stderr) is returned."""
    env = {
        **os.environ,
        "SOFTHSM2_CONF": str(secure.token.config_file),
        "TRUSTED_ISSUER_TOKEN_LABEL": secure.token.label,
        "TRUSTED_ISSUER_PIN_FILE": str(pin_file or secure.token.pin_file),
    }
    done = subprocess.run(
        [sys.executable, "-m", "issuer", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"


def _scenario(secure: SecureCluster) -> list[tuple[str, str]]:
    """Success and every kind of failure; returns the CLI's outputs, to be scanned with the rest."""
    kube, workdir = secure.cluster.kube, secure.cluster.workdir
    namespace = "leaks"
    issuer = ready_issuer(kube, namespace, "ca", policy={"dnsDomains": ["example.com"]})
    ready_issuer(kube, namespace, "rsa", algorithm="rsa-2048")
    not_ready(kube, create_issuer(kube, namespace, "wrong-pin", profile="badpin"))
    not_ready(kube, create_issuer(kube, namespace, "not-allowed", profile="team-a-only"))
    not_ready(kube, create_issuer(kube, namespace, "no-such-profile", profile="nope"))
    kube.create(CLUSTER_ISSUER_PATH, issuer_body("leaks-cluster"))
    paths = [
        request(kube, namespace, f"ok-{i}", make_csr(dns=[f"w{i}.example.com"]), "ca") for i in range(10)
    ]
    paths += [request(kube, namespace, "rsa-ok", make_csr(dns=["r.example.com"]), "rsa")]
    paths += [request(kube, namespace, "outside-policy", make_csr(dns=["evil.net"]), "ca")]
    denied = request(kube, namespace, "denied", make_csr(dns=["d.example.com"]), "ca", approve=False)
    kube.deny(namespace, "denied")
    paths.append(denied)
    for case in corpus()[:25]:
        if case.api_expect is None and case.raw_request is None:
            paths.append(
                request(kube, namespace, f"hostile-{case.id}", case.csr, "ca", duration=case.duration)
            )
    request(kube, namespace, "waits-for-wrong-pin", make_csr(dns=["p.example.com"]), "wrong-pin")
    for path in paths:
        kube.wait(path, finished, timeout=90)

    ca_file = workdir / "ca.pem"
    ca_file.write_text(issuer["status"]["caCertificates"][0]["pem"])
    csr_file, bad_csr = workdir / "leaf.csr", workdir / "bad.csr"
    csr_file.write_bytes(make_csr(dns=["cli.example.com"]))
    bad_csr.write_bytes(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
    wrong = workdir / "wrong-for-cli.pin"
    wrong.write_text(secure.wrong_pin + "\n")
    label = issuer["status"]["keyHandle"]["keyLabel"]
    sign = ("sign", "--key-label", label, "--ca-cert", str(ca_file))
    return [
        ("cli hsm keys", _cli(secure, "hsm", "keys", "--json")),
        ("cli hsm keys, wrong PIN", _cli(secure, "hsm", "keys", pin_file=wrong)),
        ("cli sign", _cli(secure, *sign, "--csr", str(csr_file))),
        ("cli sign, bad CSR", _cli(secure, *sign, "--csr", str(bad_csr))),
        ("cli sign, wrong PIN", _cli(secure, *sign, "--csr", str(csr_file), pin_file=wrong)),
        (
            "cli sign, missing key",
            _cli(secure, "sign", "--key-label", "ti:nope", "--ca-cert", str(ca_file), "--csr", str(csr_file)),
        ),
    ]


@pytest.fixture(scope="module")
def everything(secure: SecureCluster) -> list[tuple[str, str]]:
    """Every text the suite can see: operator log, CLI output, and every object (Events, statuses,
    Secrets) in the API server, both as JSON and with base64 fields decoded."""
    texts = _scenario(secure)
    texts.append(("operator log", secure.cluster.operator.log()))
    for path in LISTED:
        try:
            items = secure.cluster.kube.get(path).get("items", [])
        except Exception as err:  # a kind the sandbox does not serve
            texts.append((path, str(err)))
            continue
        for item in items:
            meta = item.get("metadata", {})
            where = f"{item.get('kind', path)} {meta.get('namespace', '')}/{meta.get('name', '')}"
            text = json.dumps(item)
            texts.append((where, text))
            texts.append((f"{where} (decoded)", _decoded_fields(item)))
    return texts


def _decoded_fields(obj: object) -> str:
    """Every string in ``obj`` that is valid base64, decoded: a leak could hide one layer down."""
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str) and len(value) >= 16:
            with contextlib.suppress(ValueError):
                found.append(base64.b64decode(value, validate=True).decode(errors="replace"))

    walk(obj)
    return "\n".join(found)


def test_the_scenario_really_ran(secure: SecureCluster, everything: list[tuple[str, str]]) -> None:
    """Guard against a vacuous scan: the texts include issued and failed requests, PIN failures,
    Events, the CLI's refusals, and a sizeable operator log at debug level."""
    joined = "\n".join(text for _, text in everything)
    log = secure.cluster.operator.log()
    assert len(log) > 20_000, len(log)
    assert "PINIncorrect" in joined and "ProfileNotAllowed" in joined
    assert (
        '"reason": "Issued"' in joined and '"reason": "Failed"' in joined and '"reason": "Denied"' in joined
    )
    assert any(where.startswith("Event") for where, _ in everything)
    cli = {where: text for where, text in everything if where.startswith("cli")}
    assert cli["cli sign"].startswith("exit 0") and "BEGIN CERTIFICATE" in cli["cli sign"]
    assert not cli["cli hsm keys, wrong PIN"].startswith("exit 0")
    assert not cli["cli sign, bad CSR"].startswith("exit 0")


def test_no_pin_in_any_form_anywhere(secure: SecureCluster, everything: list[tuple[str, str]]) -> None:
    leaks = secure.scanner.scan_all(everything)
    # The report names the place and the form's index, never the secret itself.
    assert not leaks, [(leak.secret, leak.form, leak.where) for leak in leaks]


def test_no_pin_in_the_operator_process_arguments_or_environment(secure: SecureCluster) -> None:
    """The PIN reaches the operator through a file, never argv or environment (both readable by
    other processes of the same user via /proc)."""
    process = secure.cluster.operator.process
    assert process is not None and process.poll() is None
    for pid in [process.pid, *_children(process.pid)]:
        for name in ("cmdline", "environ"):
            text = Path(f"/proc/{pid}/{name}").read_bytes().replace(b"\0", b"\n").decode(errors="replace")
            assert not secure.scanner.scan(text, f"/proc/{pid}/{name}"), f"/proc/{pid}/{name}"


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


# -- the scanner itself finds what it must (so a clean scan means something) --------------------------------


def test_scanner_finds_a_pin_in_every_form(secure: SecureCluster) -> None:
    pin = secure.user_pin
    planted = {
        "raw": f"login failed for pin={pin}",
        "base64": base64.b64encode(pin.encode()).decode(),
        "base64 of the file": base64.b64encode((pin + "\n").encode()).decode(),
        "url-safe base64, unpadded": base64.urlsafe_b64encode(pin.encode()).decode().rstrip("="),
        "hex": pin.encode().hex(),
        "upper-case hex": pin.encode().hex().upper(),
    }
    for form, text in planted.items():
        assert secure.scanner.scan(text, form), form
    assert secure.scanner.scan(secure.token.pin_file.read_text(), "the PIN file")


@pytest.mark.parametrize("kind", ["ecdsa-p256", "rsa-2048"])
def test_scanner_finds_a_known_private_key(kind: str) -> None:
    key = (
        ec.generate_private_key(ec.SECP256R1())
        if kind == "ecdsa-p256"
        else rsa.generate_private_key(65537, 2048)
    )
    scanner = SecretScanner([pin_secret("unrelated", "canaryUnrelated0123456789")])
    scanner.add(private_key_secret("CA key", key))
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    body = [line for line in pem.decode().splitlines() if not line.startswith("-----")]
    numbers = key.private_numbers()
    scalar = numbers.private_value if isinstance(numbers, ec.EllipticCurvePrivateNumbers) else numbers.d
    planted = {
        "PEM": pem.decode(),
        # A line of private parts (the EC scalar opens the body; RSA's d, p and q fill its middle).
        "one PEM line": body[0] if kind.startswith("ecdsa") else body[len(body) // 2],
        "DER base64": base64.b64encode(der).decode(),
        "DER hex": der.hex(),
        "private number, hex": format(scalar, "x"),
        "private number, decimal": str(scalar),
    }
    for form, text in planted.items():
        assert scanner.scan(f"... {text} ...", form), form
    assert not scanner.scan(
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
        "public key",
    )
