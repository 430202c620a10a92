"""End to end on a real Kubernetes: kind, a pinned cert-manager release, the image and the Helm chart.

A kind cluster is created, cert-manager installed, the image built and loaded, the CRDs and the chart
installed (softhsm backend, the token on a PersistentVolumeClaim), then a TrustedIssuer and a cert-manager
Certificate are created. The test waits for the Certificate's Secret, verifies it with ``openssl verify``
against the issuer's CA, checks that no Secret in the cluster holds the CA's private key and that no
PIN reached a log, and deletes the cluster.

Needs docker (with a running engine), kind, helm, kubectl, openssl and the internet; where one is
missing it skips and names it. ``make e2e`` runs it. Environment:

- ``E2E_CERT_MANAGER_VERSION`` (default below): the cert-manager release installed;
- ``E2E_KIND_NODE_IMAGE``: a kindest/node image (default: the one of the installed kind);
- ``E2E_KEEP_CLUSTER=1``: keep the cluster for debugging (its name and kubeconfig are printed).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import textwrap
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CERT_MANAGER_VERSION = os.environ.get("E2E_CERT_MANAGER_VERSION", "v1.19.2")
CERT_MANAGER_MANIFEST = (
    f"https://github.com/cert-manager/cert-manager/releases/download/{CERT_MANAGER_VERSION}/cert-manager.yaml"
)
IMAGE_REPOSITORY, IMAGE_TAG = "trusted-issuer", "e2e"
NAMESPACE = "trusted-issuer"
TOOLS = ("docker", "kind", "helm", "kubectl", "openssl")
_PRIVATE_KEY_PEM = re.compile(
    rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.+?-----END \1PRIVATE KEY-----", re.DOTALL
)


def _require_prerequisites() -> None:
    """Skip, naming exactly what is missing: a tool, the Docker engine, or the internet."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"e2e needs {', '.join(missing)} on PATH: not found")
    info = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"e2e needs a running Docker engine; `docker info` says: {reason}")
    try:
        with urllib.request.urlopen(urllib.request.Request(CERT_MANAGER_MANIFEST, method="HEAD"), timeout=15):
            pass
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        pytest.skip(f"e2e needs the internet: cannot reach {CERT_MANAGER_MANIFEST}: {err}")


@dataclass
class Kind:
    name: str
    kubeconfig: Path
    workdir: Path

    def run(self, *command: str, stdin: str | None = None, timeout: float = 600) -> str:
        """Run a command against the cluster; a failure carries the command's own output."""
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        done = subprocess.run(
            list(command), input=stdin, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            raise AssertionError(f"`{' '.join(command)}` exited {done.returncode}\n{output}")
        return done.stdout

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 600) -> str:
        return self.run("kubectl", *args, stdin=stdin, timeout=timeout)

    def diagnostics(self) -> str:
        """What a person debugging a failure would look at first."""
        parts = []
        for args in (
            ("get", "pods", "-A", "-o", "wide"),
            ("-n", NAMESPACE, "logs", "deployment/trusted-issuer", "--all-containers", "--tail=200"),
            ("get", "trustedissuers,certificaterequests,certificates", "-A", "-o", "yaml"),
            ("get", "events", "-A", "--sort-by=.lastTimestamp"),
        ):
            try:
                parts.append(f"$ kubectl {' '.join(args)}\n{self.kubectl(*args, timeout=60)[-6000:]}")
            except (AssertionError, subprocess.TimeoutExpired) as err:
                parts.append(f"$ kubectl {' '.join(args)}\n{err}")
        return "\n".join(parts)


@pytest.fixture(scope="module")
def kind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kind]:
    _require_prerequisites()
    workdir = tmp_path_factory.mktemp("kind")
    cluster = Kind(f"trusted-issuer-e2e-{uuid.uuid4().hex[:6]}", workdir / "kubeconfig", workdir)
    create = ["kind", "create", "cluster", "--name", cluster.name, "--kubeconfig", str(cluster.kubeconfig)]
    if os.environ.get("E2E_KIND_NODE_IMAGE"):
        create += ["--image", os.environ["E2E_KIND_NODE_IMAGE"]]
    cluster.run(*create, "--wait", "180s", timeout=900)
    try:
        yield cluster
    finally:
        if os.environ.get("E2E_KEEP_CLUSTER") == "1":
            print(f"kept kind cluster {cluster.name}; KUBECONFIG={cluster.kubeconfig}")
        else:
            subprocess.run(["kind", "delete", "cluster", "--name", cluster.name], timeout=300, check=False)


def _install(kind: Kind) -> tuple[str, str]:
    """cert-manager, the image, the PIN Secret, the CRDs and the chart; returns the two PINs."""
    kind.kubectl("apply", "-f", CERT_MANAGER_MANIFEST)
    kind.kubectl(
        "wait", "--for=condition=Available", "deployment", "--all", "-n", "cert-manager", "--timeout=300s"
    )

    image = f"{IMAGE_REPOSITORY}:{IMAGE_TAG}"
    kind.run("docker", "build", "-t", image, str(ROOT), timeout=1800)
    kind.run("kind", "load", "docker-image", image, "--name", kind.name, timeout=600)

    # The PINs go from files to the Secret: never on a command line, never in the chart's values.
    so_pin, user_pin = secrets.token_hex(12), secrets.token_hex(12)
    pins = kind.workdir / "pins"
    pins.mkdir(mode=0o700)
    for name, pin in (("so-pin", so_pin), ("user-pin", user_pin)):
        (pins / name).write_text(pin)
        (pins / name).chmod(0o600)
    kind.kubectl("create", "namespace", NAMESPACE)
    kind.kubectl(
        "-n", NAMESPACE, "create", "secret", "generic", "trusted-issuer-softhsm-pins",
        f"--from-file=so-pin={pins / 'so-pin'}", f"--from-file=user-pin={pins / 'user-pin'}",
    )  # fmt: skip

    # As docs/install.md says: the CRDs first (Helm installs crds/ only once and never upgrades them).
    kind.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    kind.run(
        "helm", "install", "trusted-issuer", str(ROOT / "charts" / "trusted-issuer"),
        "--namespace", NAMESPACE, "--kubeconfig", str(kind.kubeconfig),
        "--set", f"image.repository={IMAGE_REPOSITORY}", "--set", f"image.tag={IMAGE_TAG}",
        "--set", "image.pullPolicy=Never", "--wait", "--timeout", "5m",
        timeout=600,
    )  # fmt: skip
    return so_pin, user_pin


ISSUER_AND_CERTIFICATE = textwrap.dedent(
    """
    apiVersion: v1
    kind: Namespace
    metadata:
      name: demo
    ---
    apiVersion: trusted-issuer.dev/v1alpha1
    kind: TrustedIssuer
    metadata:
      name: mesh-ca
      namespace: demo
    spec:
      tokenProfile: default
      key:
        algorithm: ecdsa-p256
      ca:
        selfSigned:
          subject: "CN=e2e mesh root,O=trusted-issuer"
      policy:
        maxDuration: 720h
        dnsDomains: [svc.cluster.local]
    ---
    apiVersion: cert-manager.io/v1
    kind: Certificate
    metadata:
      name: web
      namespace: demo
    spec:
      secretName: web-tls
      duration: 24h
      privateKey:
        algorithm: ECDSA
        size: 256
      dnsNames: [web.demo.svc.cluster.local]
      usages: [digital signature, server auth]
      issuerRef:
        group: trusted-issuer.dev
        kind: TrustedIssuer
        name: mesh-ca
    """
)


def _private_keys(value: bytes) -> list[PrivateKeyTypes]:
    """Every private key a Secret value holds, PEM or DER."""
    keys: list[PrivateKeyTypes] = []
    for match in _PRIVATE_KEY_PEM.finditer(value):
        try:
            keys.append(serialization.load_pem_private_key(match.group(0), password=None))
        except (ValueError, TypeError):
            continue
    if not keys:
        with contextlib.suppress(ValueError, TypeError):
            keys.append(serialization.load_der_private_key(value, password=None))
    return keys


def _public_der(key: PrivateKeyTypes) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_certificate_issued_through_cert_manager_verifies_and_the_ca_key_is_in_no_secret(kind: Kind) -> None:
    so_pin, user_pin = _install(kind)
    try:
        kind.kubectl("apply", "-f", "-", stdin=ISSUER_AND_CERTIFICATE)
        kind.kubectl("-n", "demo", "wait", "--for=condition=Ready", "trustedissuer/mesh-ca", "--timeout=300s")
        kind.kubectl("-n", "demo", "wait", "--for=condition=Ready", "certificate/web", "--timeout=300s")
    except AssertionError as err:
        raise AssertionError(f"{err}\n{kind.diagnostics()}") from None

    issuer = json.loads(kind.kubectl("-n", "demo", "get", "trustedissuer/mesh-ca", "-o", "json"))
    root_pem = issuer["status"]["ca"].encode()
    secret = json.loads(kind.kubectl("-n", "demo", "get", "secret/web-tls", "-o", "json"))
    chain = base64.b64decode(secret["data"]["tls.crt"])
    assert base64.b64decode(secret["data"]["ca.crt"]) == root_pem
    (kind.workdir / "root.pem").write_bytes(root_pem)
    (kind.workdir / "chain.pem").write_bytes(chain)
    verified = kind.run(
        "openssl", "verify", "-purpose", "sslserver", "-CAfile", str(kind.workdir / "root.pem"),
        str(kind.workdir / "chain.pem"),
    )  # fmt: skip
    assert verified.strip().endswith(": OK"), verified

    # No Secret anywhere holds the CA's private key (the leaf's key in web-tls shows the scan finds keys).
    ca_public = (
        x509.load_pem_x509_certificate(root_pem)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    scanned = 0
    holders = []
    for item in json.loads(kind.kubectl("get", "secrets", "-A", "-o", "json"))["items"]:
        for key, value in (item.get("data") or {}).items():
            for private in _private_keys(base64.b64decode(value)):
                scanned += 1
                if _public_der(private) == ca_public:
                    holders.append(f"{item['metadata']['namespace']}/{item['metadata']['name']}:{key}")
    assert scanned >= 1, "the scan found no private key at all, not even the leaf's"
    assert holders == [], f"the CA private key is in Secrets: {holders}"

    logs = kind.kubectl("-n", NAMESPACE, "logs", "deployment/trusted-issuer", "--all-containers", "--tail=-1")
    assert so_pin not in logs and user_pin not in logs
