"""A kubeconfig pointing at a sandbox, for kubectl, the kubernetes client and kopf."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CONTEXT = "sandbox"


def kubeconfig_document(server_url: str, *, namespace: str = "default") -> dict[str, Any]:
    """A kubeconfig with one cluster, user and context, all named ``sandbox``.

    Plain http needs no TLS fields, and the sandbox authenticates nobody, so the user is empty.
    """
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": server_url}}],
        "users": [{"name": CONTEXT, "user": {}}],
        "contexts": [
            {"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace}}
        ],
        "current-context": CONTEXT,
        "preferences": {},
    }


def write_kubeconfig(path: Path, server_url: str, *, namespace: str = "default") -> Path:
    """Write the kubeconfig (mode 0600, as kubectl expects of its configs) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(kubeconfig_document(server_url, namespace=namespace), sort_keys=False))
    path.chmod(0o600)
    return path
