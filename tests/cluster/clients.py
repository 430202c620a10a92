"""The real clients of the issuer as processes beside the control plane: cert-manager's own certificate
controllers (v1.21.1, built by ``scripts/client-bins.sh`` from the Go module proxy into a cache outside the
checkout, with cert-manager's CRDs of the same version kept beside the binary).

Where nothing is built and Go is absent the tests that need them skip, saying why (a failure under
``CI=true``), as the control plane's do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.cluster.controlplane import ROOT, Component

CLIENT_BINS_SCRIPT = ROOT / "scripts" / "client-bins.sh"
CERT_MANAGER_BINARY = "cert-manager-controllers"
#: The approver runs as its own process, so a test can turn it off and decide requests itself.
APPROVER = "certificaterequests-approver"
CERTIFICATE_CONTROLLERS = (
    "certificates-trigger",
    "certificates-key-manager",
    "certificates-request-manager",
    "certificates-issuing",
    "certificates-readiness",
    "certificates-revision-manager",
)


class ClientsMissing(Exception):
    """cert-manager's controllers are not built and cannot be (no Go toolchain)."""


def client_bins_dir(build: bool = True) -> Path:
    """The directory holding ``cert-manager-controllers`` and ``crds/``: ``TRUSTED_ISSUER_CLIENT_BIN_DIR``,
    else the cache of ``scripts/client-bins.sh``, built there first if Go is present and ``build``."""
    override = os.environ.get("TRUSTED_ISSUER_CLIENT_BIN_DIR")
    if override:
        found = Path(override)
        if not (found / CERT_MANAGER_BINARY).is_file():
            raise ClientsMissing(f"TRUSTED_ISSUER_CLIENT_BIN_DIR={found} lacks {CERT_MANAGER_BINARY}")
        return found
    printed = subprocess.run(
        [str(CLIENT_BINS_SCRIPT), "--print-dir"], check=True, capture_output=True, text=True
    ).stdout.strip()
    found = Path(printed)
    if (found / CERT_MANAGER_BINARY).is_file() and (found / "crds").is_dir():
        return found
    if shutil.which("go") is None:
        raise ClientsMissing(
            f"cert-manager's controllers are not built ({found}) and Go is not installed to build them "
            "(install Go >= 1.26, then `scripts/client-bins.sh`)"
        )
    if not build:
        raise ClientsMissing(
            f"cert-manager's controllers are not built in {found}: run scripts/client-bins.sh"
        )
    built = subprocess.run([str(CLIENT_BINS_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True)
    return Path(built.stdout.strip().splitlines()[-1])


def cert_manager_crds_of_module() -> list[Path]:
    """cert-manager's CRDs of the version the controllers are built from, if they are built; else []."""
    try:
        found = client_bins_dir(build=False)
    except (ClientsMissing, subprocess.CalledProcessError):
        return []
    return sorted((found / "crds").glob("cert-manager.io_*.yaml"))


def cert_manager_controllers(
    bins: Path, kubeconfig: Path, log_path: Path, controllers: tuple[str, ...], *extra: str
) -> Component:
    """A process running ``controllers`` of cert-manager (not started)."""
    return Component(
        f"cert-manager {','.join(controllers)}",
        [
            str(bins / CERT_MANAGER_BINARY),
            f"--kubeconfig={kubeconfig}",
            f"--controllers={','.join(controllers)}",
            "-v=2",
            *extra,
        ],
        log_path,
    )


#: cert-manager's webhook cannot run here; these admission policies of the API server itself stand in for
#: the part of it an issuer relies on: a CertificateRequest's spec.username/groups/uid are the creator's,
#: whatever the creator wrote (MutatingAdmissionPolicy, on CREATE); a written spec.extra is refused (the
#: webhook would copy the creator's; a JSON patch cannot) and the spec never changes afterwards
#: (ValidatingAdmissionPolicy). They do not stand in for the webhook's other checks
#: (the CSR matching the spec, approval only by who may approve for the signer, ...).
REQUESTER_IDENTITY_POLICIES: list[dict[str, object]] = [
    {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": "cert-manager-requester-identity"},
        "spec": {
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["cert-manager.io"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["certificaterequests"],
                    }
                ]
            },
            "failurePolicy": "Fail",
            "reinvocationPolicy": "Never",
            "mutations": [
                {
                    # JSONPatch, not ApplyConfiguration: spec.groups is an atomic list, which an apply
                    # configuration may not change. "add" replaces a member that is there (RFC 6902).
                    "patchType": "JSONPatch",
                    "jsonPatch": {
                        "expression": (
                            "["
                            'JSONPatch{op: "add", path: "/spec/username", value: request.userInfo.username}, '
                            'JSONPatch{op: "add", path: "/spec/groups", value: '
                            "has(request.userInfo.groups) ? request.userInfo.groups.map(g, string(g)) : []}, "
                            'JSONPatch{op: "add", path: "/spec/uid", value: '
                            "has(request.userInfo.uid) ? request.userInfo.uid : ''}"
                            "]"
                        )
                    },
                }
            ],
        },
    },
    {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": "cert-manager-requester-identity"},
        "spec": {"policyName": "cert-manager-requester-identity"},
    },
    {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "cert-manager-request-spec"},
        "spec": {
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["cert-manager.io"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["certificaterequests"],
                    }
                ]
            },
            "failurePolicy": "Fail",
            "validations": [
                {
                    # A JSON patch cannot write userInfo.extra (a map of lists does not convert), so a
                    # requester's own spec.extra is refused rather than trusted.
                    "expression": "request.operation != 'CREATE' || !has(object.spec.extra)",
                    "message": "spec.extra is the API server's to fill in; it may not be written",
                },
                {
                    "expression": "request.operation != 'UPDATE' || object.spec == oldObject.spec",
                    "message": "a CertificateRequest's spec is immutable (as cert-manager's webhook says)",
                },
            ],
        },
    },
    {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "cert-manager-request-spec"},
        "spec": {"policyName": "cert-manager-request-spec", "validationActions": ["Deny"]},
    },
]
