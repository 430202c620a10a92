"""The chart, linted and rendered offline by Helm's own Go SDK (PyPI helm-python-sdk, pinned), and checked
against the Kubernetes OpenAPI schemas (PyPI kubernetes-validate, pinned).

Both are optional test tools: when one is missing or cannot load, the tests that need it skip and say
exactly why and what to install; they never pass without having run.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "trusted-issuer"
RELEASE = "trusted-issuer"
NAMESPACE = "trusted-issuer"

HELM_PIN = "helm-python-sdk==0.2.2"
VALIDATE_PIN = "kubernetes-validate==1.37.0"
#: The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest kubernetes-validate knows.
KUBE_VERSIONS = ("1.27.0", "1.37.0")

#: Values of each HSM backend as a user would write them; the PIN Secrets are only ever named.
SCENARIOS: dict[str, dict[str, Any]] = {
    "softhsm-pvc": {},
    "softhsm-emptydir": {"hsm": {"tokenStorage": {"type": "emptyDir"}}},
    "sgx": {
        "image": {"repository": "registry.example.com/trusted-issuer-sgx", "tag": "0.1.0-ctk"},
        "hsm": {
            "backend": "sgx",
            "tokenProfiles": {
                "default": {"tokenLabel": "mesh", "pinSecret": {"name": "sgx-token-pin", "key": "user-pin"}}
            },
        },
        "nodeSelector": {"intel.feature.node.kubernetes.io/sgx": "true"},
    },
    "tpm": {
        "image": {"repository": "registry.example.com/trusted-issuer-tpm", "tag": "0.1.0"},
        "hsm": {
            "backend": "tpm",
            "tpm": {"nodeName": "node-with-tpm", "device": {"group": 112}},
            "tokenProfiles": {
                "default": {"tokenLabel": "mesh", "pinSecret": {"name": "tpm-token-pin", "key": "user-pin"}}
            },
        },
        # The store takes one writer process at a time: one replica, one worker (the chart refuses more).
        "replicaCount": 1,
        "operator": {"workers": 1},
    },
    "pkcs11": {
        "hsm": {
            "backend": "pkcs11",
            "pkcs11": {
                "module": "/opt/pkcs11/lib/libvendor-pkcs11.so",
                "moduleVolume": {"persistentVolumeClaim": {"claimName": "hsm-client"}},
            },
            "tokenProfiles": {
                "default": {"tokenSerial": "1234567890", "pinSecret": {"name": "network-hsm-pin"}},
                "team-a": {
                    "tokenLabel": "team-a",
                    "pinSecret": {"name": "team-a-pin", "key": "pin"},
                    "namespaces": ["team-a"],
                    "clusterIssuers": False,
                },
            },
        },
        "operator": {"extraEnv": [{"name": "VENDOR_HSM_CONF", "value": "/opt/pkcs11/etc/client.conf"}]},
    },
    "everything-on": {
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
            "networkPolicy": {
                "enabled": True,
                "scrapers": [
                    {"namespace": "monitoring", "podLabels": {"app.kubernetes.io/name": "prometheus"}},
                    {"namespace": "observability"},
                ],
            },
        },
        "rbac": {
            "secretAccess": {
                "namespaces": ["team-a", {"namespace": "team-b", "secretNames": ["sub-ca"]}],
                "clusterIssuers": True,
            }
        },
        "podDisruptionBudget": {"minAvailable": 1},
        "operator": {"verbose": True},
    },
}


def helm_module() -> ModuleType:
    """helm_python, or a skip naming exactly what is missing."""
    try:
        import helm_python
    except ImportError:
        pytest.skip(f"helm-python-sdk is not installed (pip install '{HELM_PIN}')")
    except Exception as err:  # its native library loads at import: HelmLibraryError, OSError
        pytest.skip(f"helm-python-sdk is installed but cannot load Helm's library: {err}")
    return helm_python


def validate_module() -> ModuleType:
    """kubernetes_validate, or a skip naming exactly what is missing."""
    try:
        import kubernetes_validate
    except ImportError:
        pytest.skip(f"kubernetes-validate is not installed (pip install '{VALIDATE_PIN}')")
    return kubernetes_validate


def merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge, as Helm merges values: mappings merge, anything else replaces."""
    result = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


@dataclass
class Rendered:
    """One render of the chart: its objects (with the template each came from) and its NOTES.txt."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    notes: str = ""

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    def pod(self) -> dict[str, Any]:
        return self.deployment()["spec"]["template"]["spec"]

    def container(self, name: str = "operator") -> dict[str, Any]:
        return next(c for c in self.pod()["containers"] if c["name"] == name)

    def containers(self) -> Iterator[dict[str, Any]]:
        yield from self.pod().get("initContainers", [])
        yield from self.pod()["containers"]

    def config(self) -> dict[str, str]:
        return dict(self.one("ConfigMap")["data"])


def render(values: Mapping[str, Any] | None = None, namespace: str = NAMESPACE) -> Rendered:
    """Render the chart as ``helm template trusted-issuer charts/trusted-issuer -n NAMESPACE`` would."""
    helm = helm_module()
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(dict(values or {}), name=RELEASE, namespace=namespace, is_install=True)
    rendered = Rendered()
    for source, text in sorted(manifests.items()):
        if source.endswith("NOTES.txt"):
            rendered.notes = text
            continue
        for document in yaml.safe_load_all(text):
            if document:
                rendered.objects.append(document)
                rendered.sources.append(source)
    return rendered
