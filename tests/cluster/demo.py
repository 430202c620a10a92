"""``make demo-cluster``: the real thing on this machine. The control plane (kube-apiserver, etcd,
kube-controller-manager), our CRDs, cert-manager's CRDs and the chart applied; the operator as the chart's
ServiceAccount on the development token; cert-manager's own controllers; then ``examples/`` applied, and it
ends with the Certificate Ready, its Secret verified by openssl and the issuer's key handle printed.

``python -m tests.cluster.demo [--serve]``: with ``--serve`` everything keeps running until Ctrl-C.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from issuer.settings import DEFAULT_PKCS11_MODULE
from issuer.signer.devtoken import init_dev_token
from issuer.tokens import PinSource, TokenConfig
from tests.cluster.clients import (
    APPROVER,
    CERTIFICATE_CONTROLLERS,
    ClientsMissing,
    cert_manager_controllers,
    client_bins_dir,
)
from tests.cluster.conftest import start_operator
from tests.cluster.controlplane import ROOT, BinariesMissing, ControlPlane, binaries_dir
from tests.cluster.install import install

DEV_TOKEN_DIR = ROOT / ".dev" / "softhsm"


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def main() -> int:
    serve = "--serve" in sys.argv[1:]
    workdir = Path(os.environ.get("TRUSTED_ISSUER_CLUSTER_DIR") or ROOT / ".dev" / "demo-cluster")
    shutil.rmtree(workdir, ignore_errors=True)
    try:
        bins, clients = binaries_dir(), client_bins_dir()
    except (BinariesMissing, ClientsMissing) as err:
        print(f"demo-cluster: {err}", file=sys.stderr)
        return 1
    token, _ = init_dev_token(DEV_TOKEN_DIR)
    os.environ.update(token.env())
    config = TokenConfig(
        module=DEFAULT_PKCS11_MODULE, token_label=token.label, pin=PinSource(file=token.pin_file)
    )
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    step("starting etcd, kube-apiserver and kube-controller-manager; applying the CRDs and the chart")
    with ControlPlane(workdir, bins) as plane:
        install(plane)
        print(f"control plane {plane.get('/version')['gitVersion']} at {plane.server}", flush=True)
        step("the operator, as the chart's ServiceAccount (log: operator/operator.log)")
        operator = start_operator(plane, config, workdir / "operator")
        step("cert-manager's controllers (log: cert-manager.log)")
        cert_manager = cert_manager_controllers(
            clients,
            plane.admin_kubeconfig,
            workdir / "cert-manager.log",
            (APPROVER, *CERTIFICATE_CONTROLLERS),
        )
        cert_manager.start()
        try:
            kubectl = plane.kubectl
            step("kubectl apply -f examples/trustedissuer.yaml")
            print(kubectl("apply", "-f", str(ROOT / "examples" / "trustedissuer.yaml")), end="", flush=True)
            kubectl("wait", "--for=condition=Ready", "trustedissuer/mesh-ca", "-n", "demo", "--timeout=120s")
            print(kubectl("get", "trustedissuers", "-n", "demo"), end="", flush=True)
            step("kubectl apply -f examples/certificate.yaml (cert-manager makes the key and the request)")
            print(kubectl("apply", "-f", str(ROOT / "examples" / "certificate.yaml")), end="", flush=True)
            kubectl("wait", "--for=condition=Ready", "certificate/web", "-n", "demo", "--timeout=120s")
            print(kubectl("get", "certificate,certificaterequest", "-n", "demo"), end="", flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                for key in ("tls.crt", "ca.crt"):
                    field = key.replace(".", "\\.")
                    value = kubectl(
                        "get", "secret", "web-tls", "-n", "demo", "-o", f"jsonpath={{.data.{field}}}"
                    )
                    (Path(tmp) / key).write_bytes(base64.b64decode(value))
                subprocess.run(
                    [
                        "openssl",
                        "x509",
                        "-in",
                        f"{tmp}/tls.crt",
                        "-noout",
                        "-subject",
                        "-ext",
                        "subjectAltName",
                        "-issuer",
                        "-dates",
                    ],
                    check=True,
                )
                step("openssl verify -CAfile ca.crt tls.crt (the Secret cert-manager wrote)")
                subprocess.run(
                    [
                        "openssl",
                        "verify",
                        "-CAfile",
                        f"{tmp}/ca.crt",
                        "-purpose",
                        "sslserver",
                        f"{tmp}/tls.crt",
                    ],
                    check=True,
                )
            step("the issuer's key handle in status (never key material):")
            print(
                kubectl("get", "trustedissuer", "mesh-ca", "-n", "demo", "-o", "jsonpath={.status.keyHandle}")
            )
            if serve:
                print(f"export KUBECONFIG={plane.admin_kubeconfig}", flush=True)
                print(
                    "the control plane, the operator and cert-manager keep running; Ctrl-C stops them",
                    flush=True,
                )
                while (
                    not stopping
                    and cert_manager.alive()
                    and operator.process is not None
                    and operator.process.poll() is None
                ):
                    time.sleep(1)
        finally:
            cert_manager.stop()
            operator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
