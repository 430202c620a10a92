"""A local sandbox Kubernetes API server, built on kmock 0.8, for tests, demos and benchmarks.

It is not a Kubernetes: no scheduler, no controllers but the few the API itself implies (namespace
and CRD cleanup), no authentication, plain http on 127.0.0.1. It is an API server that answers
kopf, the kubernetes client and kubectl the way kube-apiserver does: resourceVersions and 409s,
generation, status subresources, finalizers, watches that resume, expire (410) and bookmark,
CRD schemas that prune, default and validate.

In-process (pytest-asyncio, one event loop)::

    async with Sandbox(crds=[CERT_MANAGER_CRDS / "cert-manager.io_certificaterequests.yaml"]) as sandbox:
        sandbox.write_kubeconfig(tmp_path / "kubeconfig")

On a thread of its own (for synchronous code, and for kopf: see ``SandboxThread``)::

    with SandboxThread(crds=[...]) as sandbox: ...

Standalone: ``python -m trusted_issuer_sandbox --port 8001 --kubeconfig ./kubeconfig --crd FILE...``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from trusted_issuer_sandbox.authorization import AccessPolicy, AccessRequest, allow_rows, deny_all
from trusted_issuer_sandbox.errors import ApiError
from trusted_issuer_sandbox.faults import FaultInjector, FaultRule
from trusted_issuer_sandbox.resources import ResourceType
from trusted_issuer_sandbox.routing import ApiCall
from trusted_issuer_sandbox.server import Sandbox
from trusted_issuer_sandbox.threaded import SandboxThread

#: cert-manager's CRDs as shipped in this package (see its README.md for their origin).
CERT_MANAGER_CRDS = Path(str(files("trusted_issuer_sandbox") / "data" / "cert-manager"))
CERTIFICATE_REQUEST_CRD = CERT_MANAGER_CRDS / "cert-manager.io_certificaterequests.yaml"

__all__ = [
    "CERTIFICATE_REQUEST_CRD",
    "CERT_MANAGER_CRDS",
    "AccessPolicy",
    "AccessRequest",
    "ApiCall",
    "ApiError",
    "FaultInjector",
    "FaultRule",
    "ResourceType",
    "Sandbox",
    "SandboxThread",
    "allow_rows",
    "deny_all",
]
