"""What a cluster administrator installs: cert-manager's CRDs, our CRDs and the whole chart (rendered by
helm-python-sdk, applied server-side), and the credentials the operator runs with: a TokenRequest token of
the chart's own ServiceAccount, so the operator has exactly the chart's RBAC.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.chart.rendering import NAMESPACE, render
from tests.cluster.clients import cert_manager_crds_of_module
from tests.cluster.controlplane import ROOT, ControlPlane, write_kubeconfig

OUR_CRDS = sorted((ROOT / "crds").glob("*.yaml"))
FIELD_MANAGER = "trusted-issuer-tests"
SERVED = (
    "/apis/cert-manager.io/v1/certificaterequests",
    "/apis/trusted-issuer.dev/v1alpha1/trustedissuers",
    "/apis/trusted-issuer.dev/v1alpha1/trustedclusterissuers",
)
#: The one tenant namespace where the chart lets the operator read Secrets (an intermediate CA's, in the
#: RBAC test); the chart grants none anywhere else.
SECRETS_NAMESPACE = "tenant-secrets"
#: The chart's values for the control-plane tests: its defaults (the SoftHSM2 backend), with Secret access
#: opted into in one namespace.
CHART_VALUES: dict[str, Any] = {"rbac": {"secretAccess": {"namespaces": [SECRETS_NAMESPACE]}}}


def cert_manager_crds() -> list[Path]:
    """cert-manager's CRDs: ``TRUSTED_ISSUER_CERT_MANAGER_CRDS`` (a directory), else those of the version
    cert-manager's controllers are built from (``scripts/client-bins.sh`` keeps them beside the binary),
    else ``shared/cert-manager`` beside the checkout or one level further up (CI checks out next to
    ``shared/``)."""
    candidates = []
    if os.environ.get("TRUSTED_ISSUER_CERT_MANAGER_CRDS"):
        candidates.append(Path(os.environ["TRUSTED_ISSUER_CERT_MANAGER_CRDS"]))
    else:
        from_module = cert_manager_crds_of_module()
        if from_module:
            return from_module
    candidates += [parent / "shared" / "cert-manager" for parent in ROOT.parents]
    for directory in candidates:
        found = sorted(directory.glob("cert-manager.io_*.yaml"))
        if found:
            return found
    raise FileNotFoundError(
        "cert-manager's CRDs not found: set TRUSTED_ISSUER_CERT_MANAGER_CRDS to a directory holding "
        f"cert-manager.io_certificaterequests.yaml (looked in {[str(c) for c in candidates]})"
    )


def install(plane: ControlPlane, values: dict[str, Any] | None = None) -> None:
    """CRDs, then the chart, server-side as an administrator would; returns once the CRDs serve."""
    for crd in [*cert_manager_crds(), *OUR_CRDS]:
        plane.kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", str(crd))
    plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    # Established is not yet served: each new resource answers 429 while its storage initializes.
    for path in SERVED:
        deadline = time.monotonic() + 60
        while True:
            try:
                plane.get(f"{path}?limit=1")
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    rendered = render(CHART_VALUES if values is None else values)
    # The release namespace, and every namespace the chart puts a Role into (its Secret access).
    for namespace in sorted(
        {NAMESPACE}
        | {
            str(o["metadata"]["namespace"])
            for o in rendered.of_kind("Role")
            if o["metadata"].get("namespace")
        }
    ):
        plane.kubectl("create", "namespace", namespace)
    # kubectl applies one namespace at a time: the release's objects, then each Secret-access Role's.
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for obj in rendered.objects:
        by_namespace.setdefault(str(obj["metadata"].get("namespace") or NAMESPACE), []).append(obj)
    for namespace, objects in sorted(by_namespace.items(), key=lambda item: item[0] != NAMESPACE):
        plane.kubectl(
            "apply",
            "--server-side",
            f"--field-manager={FIELD_MANAGER}",
            "-n",
            namespace,
            "-f",
            "-",
            stdin=yaml.safe_dump_all(objects),
        )


def service_account_name() -> str:
    return str(render(CHART_VALUES).one("ServiceAccount")["metadata"]["name"])


def operator_kubeconfig(plane: ControlPlane, path: Path, hours: int = 24) -> Path:
    """A kubeconfig whose only credential is a TokenRequest token of the chart's ServiceAccount."""
    token = plane.kubectl(
        "create", "token", service_account_name(), "-n", NAMESPACE, f"--duration={hours}h"
    ).strip()
    return write_kubeconfig(path, plane.server, plane.pki.ca_file, user="trusted-issuer", token=token)


#: Paths inside the chart's pod: the test token's own configuration stands in for them.
POD_PATHS = ("SOFTHSM2_CONF",)


def chart_operator_args(values: dict[str, Any] | None = None) -> tuple[str, ...]:
    """The chart's arguments of ``trusted-issuer run`` (after ``run``)."""
    args = render(CHART_VALUES if values is None else values).container().get("args") or ["run"]
    assert args[0] == "run", args
    return tuple(str(a) for a in args[1:])


def chart_operator_env(values: dict[str, Any] | None = None) -> dict[str, str]:
    """The literal environment the chart gives the operator container (valueFrom entries and the pod's
    file paths left out)."""
    container = render(CHART_VALUES if values is None else values).container()
    return {
        e["name"]: str(e["value"])
        for e in container.get("env", [])
        if "value" in e and e["name"] not in POD_PATHS
    }
