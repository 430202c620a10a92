"""Provisioned CA keys through the running operator (issue 8): wrapped import of an RSA or ECDSA CA key,
an intermediate CA under an offline root, and every error an administrator can make, each ending in
Ready=False with a reason naming it and no key material anywhere.

The "offline" side (the administrator's CA key, the offline root) is software keys made here with
cryptography: that is what it is in real life too. The wrap runs the real `trusted-issuer provision wrap`
CLI; unwrapping, signing and the key checks run in the real SoftHSM2 token through the operator.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from issuer.controller.kubeapi import Credentials, KubeClient, NotFound
from issuer.errors import IssuerError
from issuer.signer.keys import KeyHandle, public_key_fingerprint
from issuer.signer.pool import SignerPool
from tests.conftest import TokenAbilities
from tests.csrs import make_csr
from tests.operator.conftest import Cluster, wait_until
from tests.operator.kube import (
    CLUSTER_ISSUER_PATH,
    CR_PATH,
    ISSUER_PATH,
    ApiFailure,
    certificate_request,
    condition,
    pem,
)
from tests.verifiers import openssl_verify

CLUSTER_RESOURCE_NAMESPACE = "trusted-issuer"  # as tests/operator/conftest.py configures the operator
PEM = serialization.Encoding.PEM
Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


# -- the offline side -----------------------------------------------------------------------------------


def software_key(kind: str) -> Key:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def ca_certificate(
    subject: str,
    key: Key,
    *,
    issuer: tuple[x509.Certificate, Key] | None = None,
    public: Any = None,
    is_ca: bool = True,
    path_length: int | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> x509.Certificate:
    """A CA certificate for ``public`` (default: ``key``'s), self-signed or signed by ``issuer``."""
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    signer_cert, signer_key = issuer if issuer else (None, key)
    subject_public = public or key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(signer_cert.subject if signer_cert else name)
        .public_key(subject_public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(minutes=5))
        .not_valid_after(not_after or now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=path_length if is_ca else None), True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_ca,
                crl_sign=is_ca,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_public), False)
    )
    if signer_cert is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_cert.public_key()),  # type: ignore[arg-type]
            False,
        )
    return builder.sign(signer_key, hashes.SHA256())


def wrap_with_cli(workdir: Path, wrapping_pem: str, key: Key) -> bytes:
    """`trusted-issuer provision wrap`, exactly as an administrator runs it. The expected fingerprint is
    taken from the PEM itself: these tests are about the operator's side of the import, and no one here
    swaps the key in status (the second channel, `hsm keys` on the node, is tested in
    tests/integration/test_provision.py)."""
    expected = public_key_fingerprint(
        serialization.load_pem_public_key(wrapping_pem.encode())  # type: ignore[arg-type]
    )
    tag = uuid.uuid4().hex[:8]
    wk, ca_key, out = workdir / f"wk-{tag}.pem", workdir / f"ca-{tag}.key", workdir / f"wrapped-{tag}.bin"
    wk.write_text(wrapping_pem)
    ca_key.write_bytes(
        key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    ca_key.chmod(0o600)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "issuer",
            "provision",
            "wrap",
            "--wrapping-key",
            str(wk),
            "--key",
            str(ca_key),
            "--out",
            str(out),
            "--expect-sha256",
            expected,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    ca_key.unlink()
    assert done.returncode == 0, done.stderr
    return out.read_bytes()


def pem_of(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(PEM) for c in certificates)


# -- the cluster side -----------------------------------------------------------------------------------


def _ns(cluster: Cluster, prefix: str) -> str:
    namespace = f"{prefix}-{uuid.uuid4().hex[:6]}"
    cluster.kube.namespace(namespace)
    return namespace


def put_secret(cluster: Cluster, namespace: str, name: str, data: dict[str, bytes]) -> None:
    """Create the Secret, or replace its data (as `kubectl apply` would)."""
    path = f"/api/v1/namespaces/{namespace}/secrets"
    encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
    try:
        cluster.kube.delete(f"{path}/{name}")
    except ApiFailure as err:
        if err.status != 404:
            raise
    cluster.kube.create(
        path, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": encoded}
    )


def import_issuer(name: str, secret: str, namespace: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": "trusted-issuer.dev/v1alpha1",
        "kind": "TrustedIssuer" if namespace else "TrustedClusterIssuer",
        "metadata": meta,
        "spec": {"tokenProfile": "dev", "key": {"import": {"secretName": secret}}},
    }


def intermediate_issuer(name: str, namespace: str, secret: str, **ca: Any) -> dict[str, Any]:
    return {
        "apiVersion": "trusted-issuer.dev/v1alpha1",
        "kind": "TrustedIssuer",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "tokenProfile": "dev",
            # The session token's algorithm: P-256, or RSA-2048 on opencryptoki (no EC).
            "key": {"algorithm": os.environ.get("TRUSTED_ISSUER_TEST_ALGORITHM", "ecdsa-p256")},
            "ca": {
                "intermediate": {"subject": f"CN={name} intermediate,O=tests", "secretName": secret, **ca}
            },
        },
    }


def wait_reason(cluster: Cluster, path: str, reason: str, timeout: float = 60) -> dict[str, Any]:
    return cluster.kube.wait(path, lambda o: condition(o).get("reason") == reason, timeout=timeout)


def assert_no_key_material(cluster: Cluster, obj: dict[str, Any]) -> None:
    text = str(obj)
    assert "PRIVATE KEY" not in text
    assert "wrappedKey" not in text and "wrappedAESKey" not in text
    log = cluster.operator.log()
    assert "PRIVATE KEY" not in log and "wrappedAESKey" not in log


def issue(cluster: Cluster, namespace: str, issuer: str, kind: str = "TrustedIssuer") -> dict[str, Any]:
    name = f"leaf-{uuid.uuid4().hex[:6]}"
    requests = CR_PATH.format(ns=namespace)
    body = certificate_request(name, make_csr(dns=[f"{name}.example.com"]), issuer=issuer, kind=kind)
    cluster.kube.create(requests, body)
    cluster.kube.approve(namespace, name)
    done = cluster.kube.wait(
        f"{requests}/{name}", lambda o: condition(o).get("reason") in ("Issued", "Failed"), timeout=60
    )
    assert condition(done)["reason"] == "Issued", condition(done)
    return done


def awaiting_import(cluster: Cluster, path: str) -> dict[str, Any]:
    waiting = wait_reason(cluster, path, "AwaitingWrappedKey")
    assert condition(waiting)["status"] == "False"
    assert "trusted-issuer provision wrap" in condition(waiting)["message"]
    return waiting


# -- wrapped import -------------------------------------------------------------------------------------


@pytest.fixture
def importing(token_can: TokenAbilities) -> None:
    """Imports need a token that unwraps (a TPM through tpm2-pkcs11 does not) and keeps the key
    protected (opencryptoki does not): elsewhere these skip, naming why."""
    token_can.require_import()


@pytest.mark.parametrize(
    ("algorithm", "cluster_scoped", "under_root"),
    [
        pytest.param("rsa", False, False, id="rsa-trustedissuer"),
        pytest.param("ec", True, False, id="ecdsa-clusterissuer"),
        pytest.param("ec", False, True, id="ecdsa-under-an-offline-root"),
    ],
)
def test_import_a_ca_key_end_to_end(
    importing: None,
    cluster: Cluster,
    pool: SignerPool,
    algorithm: str,
    cluster_scoped: bool,
    under_root: bool,
) -> None:
    kube = cluster.kube
    requester_ns = _ns(cluster, "imp")
    name = f"imported-{uuid.uuid4().hex[:6]}"
    if cluster_scoped:
        kube.namespace(CLUSTER_RESOURCE_NAMESPACE)
        secret_ns, path, base = (
            CLUSTER_RESOURCE_NAMESPACE,
            f"{CLUSTER_ISSUER_PATH}/{name}",
            CLUSTER_ISSUER_PATH,
        )
        kube.create(base, import_issuer(name, "ca-import", None))
    else:
        secret_ns, base = requester_ns, ISSUER_PATH.format(ns=requester_ns)
        path = f"{base}/{name}"
        kube.create(base, import_issuer(name, "ca-import", requester_ns))

    waiting = awaiting_import(cluster, path)
    wrapping = waiting["status"]["wrappingKey"]
    public = serialization.load_pem_public_key(wrapping["publicKeyPEM"].encode())
    assert public_key_fingerprint(public) == wrapping["publicKeySHA256"]  # type: ignore[arg-type]
    assert wrapping["attestation"]["provider"] == "none"
    assert f"-n {secret_ns}" in condition(waiting)["message"]

    ca_key = software_key(algorithm)
    blob = wrap_with_cli(cluster.workdir, wrapping["publicKeyPEM"], ca_key)
    if under_root:
        # An existing issuing CA: its key is imported, its certificate chains to an offline root.
        root_key = software_key("ec")
        root = ca_certificate(f"{name} offline root", root_key)
        issuing = ca_certificate(
            f"{name} issuing", root_key, issuer=(root, root_key), public=ca_key.public_key()
        )
        secret = {"wrapped-key.bin": blob, "tls.crt": pem_of(issuing), "ca.crt": pem_of(root)}
        above_leaf = [issuing]
    else:
        root = ca_certificate(f"{name} offline root", ca_key)
        secret = {"wrapped-key.bin": blob, "tls.crt": pem_of(root)}
        above_leaf = []
    put_secret(cluster, secret_ns, "ca-import", secret)

    ready = kube.wait(path, lambda o: condition(o).get("status") == "True")
    status = ready["status"]
    assert status["keyHandle"]["publicKeySHA256"] == public_key_fingerprint(ca_key.public_key())
    assert "can now be deleted" in condition(ready)["message"]
    assert "can now be deleted" in status["keyImport"]["message"]
    assert "wrappingKey" not in status
    assert status["ca"].encode() == pem_of(root)
    assert_no_key_material(cluster, ready)
    # The one-time wrapping key is gone from the token; the imported key is there, sign-only.
    with pytest.raises(IssuerError) as gone:
        pool.find_wrapping_key.blocking(cluster.token, wrapping["keyHandle"]["keyLabel"])
    assert gone.value.reason == "KeyNotFound"
    assert pool.find_key.blocking(cluster.token, status["keyHandle"]["keyLabel"]) == KeyHandle.from_status(
        status["keyHandle"]
    )

    issued = issue(cluster, requester_ns, name, "TrustedClusterIssuer" if cluster_scoped else "TrustedIssuer")
    chain, ca = pem(issued["status"]["certificate"]), pem(issued["status"]["ca"])
    assert ca == pem_of(root)
    openssl_verify(chain, pem_of(root))
    certificates = x509.load_pem_x509_certificates(chain)
    assert certificates[1:] == above_leaf  # leaf, then the issuing CA when it is not the root
    certificates[0].verify_directly_issued_by(above_leaf[0] if above_leaf else root)

    # The Secret may now go: the issuer keeps its key and chain.
    kube.delete(f"/api/v1/namespaces/{secret_ns}/secrets/ca-import")
    kube.call("PATCH", path, {"spec": {"policy": {"maxDuration": "48h"}}}, "application/merge-patch+json")
    kube.wait(path, lambda o: o["status"].get("observedGeneration") == o["metadata"]["generation"])
    assert condition(kube.get(path))["status"] == "True"


def _other_wrapping_blob(key: Key, workdir: Path) -> bytes:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=3072).public_key()
    return wrap_with_cli(
        workdir, stranger.public_bytes(PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(), key
    )


@pytest.mark.parametrize(
    "case",
    [
        "secret-lacks-wrapped-key",
        "blob-for-another-wrapping-key",
        "certificate-not-for-the-key",
        "not-a-ca",
        "expired",
        "chain-not-to-the-root",
        "corrupt-blob",
    ],
)
def test_import_errors_are_named_and_recoverable(
    importing: None, cluster: Cluster, pool: SignerPool, case: str
) -> None:
    kube = cluster.kube
    namespace = _ns(cluster, "imperr")
    path = f"{ISSUER_PATH.format(ns=namespace)}/ca"
    kube.create(ISSUER_PATH.format(ns=namespace), import_issuer("ca", "ca-import", namespace))
    wrapping = awaiting_import(cluster, path)["status"]["wrappingKey"]["publicKeyPEM"]

    ca_key = software_key("ec")
    root = ca_certificate("ca offline root", ca_key)
    blob = wrap_with_cli(cluster.workdir, wrapping, ca_key)
    good = {"wrapped-key.bin": blob, "tls.crt": pem_of(root)}
    now = datetime.now(UTC)
    if case == "secret-lacks-wrapped-key":
        data, reason = {"tls.crt": pem_of(root)}, "SecretIncomplete"
    elif case == "blob-for-another-wrapping-key":
        data, reason = (
            {**good, "wrapped-key.bin": _other_wrapping_blob(ca_key, cluster.workdir)},
            "WrappedForAnotherKey",
        )
    elif case == "certificate-not-for-the-key":
        other = software_key("ec")
        data, reason = {**good, "tls.crt": pem_of(ca_certificate("someone else", other))}, "CAKeyMismatch"
    elif case == "not-a-ca":
        data, reason = {**good, "tls.crt": pem_of(ca_certificate("leaf", ca_key, is_ca=False))}, "CANotCA"
    elif case == "expired":
        old = ca_certificate(
            "old", ca_key, not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)
        )
        data, reason = {**good, "tls.crt": pem_of(old)}, "CAExpired"
    elif case == "corrupt-blob":
        data, reason = {**good, "wrapped-key.bin": blob[: len(blob) // 2]}, "WrappedKeyInvalid"
    else:
        # The key's certificate was issued by one root, but another root is given as ca.crt.
        real_root_key, stranger_key = software_key("ec"), software_key("ec")
        real_root = ca_certificate("real root", real_root_key)
        stranger = ca_certificate("real root", stranger_key)  # same name, other key
        issued = ca_certificate(
            "ca", real_root_key, issuer=(real_root, real_root_key), public=ca_key.public_key()
        )
        data, reason = {**good, "tls.crt": pem_of(issued), "ca.crt": pem_of(stranger)}, "ChainUntrusted"
    put_secret(cluster, namespace, "ca-import", data)
    refused = wait_reason(cluster, path, reason)
    message = condition(refused)["message"]
    assert condition(refused)["status"] == "False"
    assert f"{namespace}/ca-import" in message, message
    assert "keyHandle" not in refused["status"]  # nothing imported
    assert refused["status"]["wrappingKey"]  # still waiting, still advertising the wrapping key
    assert_no_key_material(cluster, refused)
    assert cluster.operator.process is not None and cluster.operator.process.poll() is None  # no crash

    # The administrator fixes the Secret: the same issuer imports and becomes Ready, never crashed.
    put_secret(cluster, namespace, "ca-import", good)
    ready = kube.wait(path, lambda o: condition(o).get("status") == "True")
    assert ready["status"]["keyHandle"]["publicKeySHA256"] == public_key_fingerprint(ca_key.public_key())
    # A failed attempt left no stray key behind under the issuer's label (one key with it, the good one).
    labels = [r.handle.key_label for r in pool.list_keys.blocking(cluster.token)]
    assert labels.count(ready["status"]["keyHandle"]["keyLabel"]) == 1


# -- intermediate CA under an offline root ---------------------------------------------------------------


def sign_ca_csr(csr_pem: bytes, root: x509.Certificate, root_key: Key, **kwargs: Any) -> x509.Certificate:
    csr = x509.load_pem_x509_csr(csr_pem)
    assert csr.is_signature_valid
    constraints = csr.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca
    return ca_certificate(
        csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,  # type: ignore[arg-type]
        root_key,
        issuer=(root, root_key),
        public=csr.public_key(),
        path_length=constraints.path_length,
        **kwargs,
    )


def test_intermediate_ca_under_an_offline_root(cluster: Cluster) -> None:
    kube = cluster.kube
    namespace = _ns(cluster, "inter")
    path = f"{ISSUER_PATH.format(ns=namespace)}/sub"
    kube.create(
        ISSUER_PATH.format(ns=namespace), intermediate_issuer("sub", namespace, "sub-ca", pathLength=0)
    )
    waiting = wait_reason(cluster, path, "AwaitingCACertificate")
    assert "sub-ca" in condition(waiting)["message"]
    csr_pem = waiting["status"]["caCSR"].encode()
    csr = x509.load_pem_x509_csr(csr_pem)
    assert public_key_fingerprint(csr.public_key()) == waiting["status"]["keyHandle"]["publicKeySHA256"]  # type: ignore[arg-type]
    assert csr.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0

    root_key = software_key("ec")
    root = ca_certificate("offline root", root_key, path_length=1)
    # First a certificate under another root, with the real root as ca.crt: refused, named.
    other_key = software_key("ec")
    other_root = ca_certificate("offline root", other_key)
    wrong = sign_ca_csr(csr_pem, other_root, other_key)
    put_secret(cluster, namespace, "sub-ca", {"tls.crt": pem_of(wrong), "ca.crt": pem_of(root)})
    refused = wait_reason(cluster, path, "ChainUntrusted")
    assert f"{namespace}/sub-ca" in condition(refused)["message"]

    intermediate = sign_ca_csr(csr_pem, root, root_key)
    put_secret(cluster, namespace, "sub-ca", {"tls.crt": pem_of(intermediate), "ca.crt": pem_of(root)})
    ready = kube.wait(path, lambda o: condition(o).get("status") == "True")
    assert "caCSR" not in ready["status"]  # nothing to sign any more
    assert ready["status"]["ca"].encode() == pem_of(root)

    issued = issue(cluster, namespace, "sub")
    chain, ca = pem(issued["status"]["certificate"]), pem(issued["status"]["ca"])
    certificates = x509.load_pem_x509_certificates(chain)
    assert certificates[1:] == [intermediate]  # leaf + intermediate, never the root
    assert ca == pem_of(root)
    openssl_verify(chain, ca)


def test_intermediate_renewal_publishes_a_csr_for_the_same_key(cluster: Cluster) -> None:
    kube = cluster.kube
    namespace = _ns(cluster, "renew")
    path = f"{ISSUER_PATH.format(ns=namespace)}/sub"
    kube.create(
        ISSUER_PATH.format(ns=namespace), intermediate_issuer("sub", namespace, "sub-ca", renewBefore="720h")
    )
    first = wait_reason(cluster, path, "AwaitingCACertificate")["status"]
    root_key = software_key("ec")
    root = ca_certificate("offline root", root_key)
    # Valid for 10 more days: inside renewBefore (30 days), so still Ready, with a renewal CSR published.
    short = sign_ca_csr(
        first["caCSR"].encode(), root, root_key, not_after=datetime.now(UTC) + timedelta(days=10)
    )
    put_secret(cluster, namespace, "sub-ca", {"tls.crt": pem_of(short), "ca.crt": pem_of(root)})
    due = kube.wait(path, lambda o: condition(o).get("status") == "True" and bool(o["status"].get("caCSR")))
    assert "renewal CSR" in condition(due)["message"]
    renewal = x509.load_pem_x509_csr(due["status"]["caCSR"].encode())
    assert public_key_fingerprint(renewal.public_key()) == first["keyHandle"]["publicKeySHA256"]  # type: ignore[arg-type]

    longer = sign_ca_csr(due["status"]["caCSR"].encode(), root, root_key)
    put_secret(cluster, namespace, "sub-ca", {"tls.crt": pem_of(longer), "ca.crt": pem_of(root)})
    kube.call("PATCH", path, {"spec": {"policy": {"maxDuration": "48h"}}}, "application/merge-patch+json")
    renewed = kube.wait(path, lambda o: not o["status"].get("caCSR") and condition(o).get("status") == "True")
    assert renewed["status"]["keyHandle"] == first["keyHandle"]  # same key, new certificate
    assert renewed["status"]["caCertificates"][0]["serialNumber"] == format(longer.serial_number, "x")


# -- the operator's Secret read, against the sandbox ---------------------------------------------------------


def test_the_operator_reads_a_secret_by_name_and_sees_a_missing_one(cluster: Cluster) -> None:
    namespace = _ns(cluster, "secret")
    put_secret(cluster, namespace, "named", {"tls.crt": b"certificate bytes", "wrapped-key.bin": b"\x00\xff"})

    async def read() -> tuple[dict[str, bytes], bool]:
        credentials = Credentials.load(str(cluster.workdir / "kubeconfig"))
        async with KubeClient(credentials) as client:
            data = await client.get_secret(namespace, "named")
            try:
                await client.get_secret(namespace, "absent")
            except NotFound:
                return data, True
            return data, False

    data, missing_is_not_found = asyncio.run(read())
    assert data == {"tls.crt": b"certificate bytes", "wrapped-key.bin": b"\x00\xff"}
    assert missing_is_not_found


@pytest.mark.parametrize(
    "case", ["secret-lacks-tls-crt", "certificate-of-another-key", "not-a-ca", "expired"]
)
def test_intermediate_errors_are_named(cluster: Cluster, case: str) -> None:
    kube = cluster.kube
    namespace = _ns(cluster, "intererr")
    path = f"{ISSUER_PATH.format(ns=namespace)}/sub"
    kube.create(ISSUER_PATH.format(ns=namespace), intermediate_issuer("sub", namespace, "sub-ca"))
    csr_pem = wait_reason(cluster, path, "AwaitingCACertificate")["status"]["caCSR"].encode()
    root_key = software_key("ec")
    root = ca_certificate("offline root", root_key)
    csr = x509.load_pem_x509_csr(csr_pem)
    now = datetime.now(UTC)
    if case == "secret-lacks-tls-crt":
        data, reason = {"ca.crt": pem_of(root)}, "SecretIncomplete"
    elif case == "certificate-of-another-key":
        stranger = software_key("ec").public_key()
        data = {"tls.crt": pem_of(ca_certificate("sub", root_key, issuer=(root, root_key), public=stranger))}
        data, reason = {**data, "ca.crt": pem_of(root)}, "CAKeyMismatch"
    elif case == "not-a-ca":
        leaf = ca_certificate("sub", root_key, issuer=(root, root_key), public=csr.public_key(), is_ca=False)
        data, reason = {"tls.crt": pem_of(leaf), "ca.crt": pem_of(root)}, "CANotCA"
    else:
        old = sign_ca_csr(
            csr_pem, root, root_key, not_before=now - timedelta(days=9), not_after=now - timedelta(days=1)
        )
        data, reason = {"tls.crt": pem_of(old), "ca.crt": pem_of(root)}, "CAExpired"
    put_secret(cluster, namespace, "sub-ca", data)
    refused = wait_reason(cluster, path, reason)
    assert condition(refused)["status"] == "False"
    assert f"{namespace}/sub-ca" in condition(refused)["message"]
    assert refused["status"]["caCSR"] == csr_pem.decode()  # still asking for the same key's certificate
    assert_no_key_material(cluster, refused)
    assert cluster.operator.process is not None and cluster.operator.process.poll() is None


def test_waiting_for_an_administrator_is_quiet(importing: None, cluster: Cluster) -> None:
    # The issuer re-checks every second here (TRUSTED_ISSUER_PROVISIONING_RECHECK_INTERVAL); waiting is
    # its normal state, said once in status, not a warning or error (which kopf posts as Events) at
    # every look. Every message about this issuer names its namespace, so the shared log can be read.
    namespace = _ns(cluster, "quiet")
    path = f"{ISSUER_PATH.format(ns=namespace)}/ca"
    start = len(cluster.operator.log().splitlines())
    cluster.kube.create(ISSUER_PATH.format(ns=namespace), import_issuer("ca", "ca-import", namespace))
    awaiting_import(cluster, path)
    time.sleep(5)
    assert condition(cluster.kube.get(path))["reason"] == "AwaitingWrappedKey"

    def lines(level: str) -> list[str]:
        fresh = cluster.operator.log().splitlines()[start:]
        return [line for line in fresh if namespace in line and f"[{level}" in line]

    assert len(lines("INFO")) >= 3, "the issuer was not looked at again while waiting"
    assert lines("WARNING") == [] and lines("ERROR") == []
    # Whereas a real problem is said aloud, once, when it appears.
    put_secret(cluster, namespace, "ca-import", {"tls.crt": b"not yet"})
    wait_reason(cluster, path, "SecretIncomplete")
    wait_until(lambda: any("SecretIncomplete" in line for line in lines("WARNING")))


def test_a_vanished_wrapping_key_is_replaced_and_old_blobs_are_refused(
    importing: None, cluster: Cluster, pool: SignerPool
) -> None:
    kube = cluster.kube
    namespace = _ns(cluster, "rewrap")
    path = f"{ISSUER_PATH.format(ns=namespace)}/ca"
    kube.create(ISSUER_PATH.format(ns=namespace), import_issuer("ca", "ca-import", namespace))
    first = awaiting_import(cluster, path)["status"]["wrappingKey"]
    ca_key = software_key("ec")
    root = ca_certificate("ca root", ca_key)
    stale_blob = wrap_with_cli(cluster.workdir, first["publicKeyPEM"], ca_key)
    # Someone with token access deletes the advertised wrapping key before the import.
    pool.destroy_wrapping_key.blocking(cluster.token, KeyHandle.from_status(first["keyHandle"]))
    renewed = kube.wait(
        path,
        lambda o: (
            (o["status"].get("wrappingKey") or {}).get("publicKeySHA256", first["publicKeySHA256"])
            != first["publicKeySHA256"]
        ),
    )["status"]["wrappingKey"]
    put_secret(cluster, namespace, "ca-import", {"wrapped-key.bin": stale_blob, "tls.crt": pem_of(root)})
    refused = wait_reason(cluster, path, "WrappedForAnotherKey")
    assert "wrap it again" in condition(refused)["message"]
    blob = wrap_with_cli(cluster.workdir, renewed["publicKeyPEM"], ca_key)
    put_secret(cluster, namespace, "ca-import", {"wrapped-key.bin": blob, "tls.crt": pem_of(root)})
    ready = kube.wait(path, lambda o: condition(o).get("status") == "True")
    assert ready["status"]["keyHandle"]["publicKeySHA256"] == public_key_fingerprint(ca_key.public_key())
