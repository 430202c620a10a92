"""The chart's tpm backend: tpm2-pkcs11 on the node's /dev/tpmrm0, its store on a volume of that node.

Keys are wrapped by one node's TPM and kept in a SQLite store that one process writes at a time, so
the render pins the pod to that node, runs one replica with one worker, reaches the device with the
least privilege the cluster allows, and refuses, with the reason, every value it cannot honour. The
other backends render exactly as before.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from issuer.settings import Settings
from tests.chart.rendering import (
    CHART,
    KUBE_VERSIONS,
    SCENARIOS,
    Rendered,
    helm_module,
    merged,
    render,
    validate_module,
)

TPM = SCENARIOS["tpm"]
MODULE = "/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so"
STORE = "/var/lib/trusted-issuer/tpm2-pkcs11"
#: The device from the host, opened by a privileged container; the store in a directory of that node.
ON_THE_HOST: dict[str, Any] = {
    "hsm": {
        "tpm": {"device": {"access": "hostPath", "privileged": True}},
        "tokenStorage": {"type": "hostPath", "hostPath": "/srv/tpm2-pkcs11"},
    }
}


def _render_error(values: dict[str, Any]) -> str:
    helm = helm_module()
    with pytest.raises(helm.HelmError) as caught:
        render(values)
    return str(caught.value)


def _env(rendered: Rendered) -> dict[str, str]:
    return {e["name"]: e["value"] for e in rendered.container()["env"] if "value" in e}


def _volumes(rendered: Rendered) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in rendered.pod()["volumes"]}


def _mounts(rendered: Rendered) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in rendered.container()["volumeMounts"]}


def test_tpm_through_a_device_plugin_needs_no_privilege() -> None:
    rendered = render(TPM)
    pod, container = rendered.pod(), rendered.container()
    assert "initContainers" not in pod  # the token is initialised once, by hand (docs/install.md)
    assert container["image"] == "registry.example.com/trusted-issuer-tpm:0.1.0"
    # The device plugin hands out /dev/tpmrm0 and opens the device cgroup for it.
    for kind in ("requests", "limits"):
        assert container["resources"][kind]["githedgehog.com/tpmrm"] == 1, kind
    assert container["resources"]["limits"]["memory"] == "512Mi"
    # The device's group, so the non-root operator may open it; nothing else about the pod changes.
    assert pod["securityContext"]["supplementalGroups"] == [112]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert "privileged" not in container["securityContext"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert [v["name"] for v in pod["volumes"] if "hostPath" in v] == []
    env = _env(rendered)
    assert env["TPM2_PKCS11_STORE"] == STORE
    assert env["TPM2_PKCS11_TCTI"] == "device:/dev/tpmrm0"
    assert "SOFTHSM2_CONF" not in env and "softhsm2.conf" not in rendered.config()
    assert Settings.from_env(env).workers == 1
    assert _mounts(rendered)["token"]["mountPath"] == STORE
    # Its own claim, kept on uninstall: the wrapped key blobs are in it.
    claim = rendered.one("PersistentVolumeClaim")
    assert claim["metadata"]["name"] == "trusted-issuer-tpm-token"
    assert claim["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert _volumes(rendered)["token"]["persistentVolumeClaim"] == {"claimName": "trusted-issuer-tpm-token"}
    profiles = yaml.safe_load(rendered.config()["profiles.yaml"])["profiles"]
    assert profiles["default"]["module"] == MODULE
    assert profiles["default"]["tokenLabel"] == "mesh"


def test_tpm_pod_is_pinned_to_the_tpms_node_alone() -> None:
    rendered = render(TPM)
    assert rendered.pod()["nodeSelector"] == {"kubernetes.io/hostname": "node-with-tpm"}
    deployment = rendered.deployment()
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # never two pods on the store
    assert "affinity" not in rendered.pod()
    # A nodeSelector naming the node is enough; the user's other labels stay.
    by_selector = merged(TPM, {"hsm": {"tpm": {"nodeName": ""}}})
    by_selector["nodeSelector"] = {"kubernetes.io/hostname": "node-b", "disk": "ssd"}
    assert render(by_selector).pod()["nodeSelector"] == {"kubernetes.io/hostname": "node-b", "disk": "ssd"}
    same = merged(TPM, {"nodeSelector": {"kubernetes.io/hostname": "node-with-tpm"}})
    assert render(same).pod()["nodeSelector"] == {"kubernetes.io/hostname": "node-with-tpm"}


def test_tpm_notes_state_the_limits() -> None:
    notes = render(TPM).notes
    assert "TPM of node node-with-tpm" in notes
    assert "cannot import a key" in notes
    assert "P-256/P-384 and RSA-2048/3072 only" in notes
    assert "not the loss of the node" not in notes  # that is the multi-replica text; tpm runs one


def test_tpm_device_and_store_from_the_host() -> None:
    rendered = render(merged(TPM, ON_THE_HOST))
    pod, container = rendered.pod(), rendered.container()
    volumes = _volumes(rendered)
    assert volumes["tpm-device"]["hostPath"] == {"path": "/dev/tpmrm0", "type": "CharDevice"}
    assert _mounts(rendered)["tpm-device"]["mountPath"] == "/dev/tpmrm0"
    # The store is a directory you created on that node; the chart never creates a root-owned one.
    assert volumes["token"]["hostPath"] == {"path": "/srv/tpm2-pkcs11", "type": "Directory"}
    assert _mounts(rendered)["token"]["mountPath"] == STORE
    assert rendered.of_kind("PersistentVolumeClaim") == []
    # Privileged only because the device cgroup demands it; still non-root, read-only, no capabilities.
    context = container["securityContext"]
    assert context["privileged"] is True
    assert "allowPrivilegeEscalation" not in context  # the API server refuses false with privileged
    assert context["runAsNonRoot"] is True and context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["supplementalGroups"] == [112]
    assert not any(k.startswith("githedgehog.com") for k in container["resources"]["limits"])


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_tpm_from_the_host_validates(version: str) -> None:
    validate = validate_module()
    rendered = render(merged(TPM, ON_THE_HOST))
    for obj in rendered.objects:
        validate.validate(obj, version, strict=True)


def test_tpm_keeps_the_users_supplemental_groups() -> None:
    rendered = render(merged(TPM, {"podSecurityContext": {"supplementalGroups": [2000, 112]}}))
    assert rendered.pod()["securityContext"]["supplementalGroups"] == [2000, 112]
    plugin = render(merged(TPM, {"hsm": {"tpm": {"device": {"resource": "squat.ai/tpmrm"}}}}))
    assert plugin.container()["resources"]["limits"]["squat.ai/tpmrm"] == 1
    assert "githedgehog.com/tpmrm" not in plugin.container()["resources"]["limits"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"hsm": {"tpm": {"nodeName": ""}}}, "hsm.backend=tpm needs hsm.tpm.nodeName"),
        ({"nodeSelector": {"kubernetes.io/hostname": "elsewhere"}}, "disagree"),
        ({"replicaCount": 2}, "hsm.backend=tpm needs replicaCount=1"),
        ({"hsm": {"tpm": {"device": {"group": None}}}}, "hsm.tpm.device.group is required"),
        (
            {"hsm": {"tpm": {"device": {"access": "hostPath"}}}},
            "access=hostPath needs hsm.tpm.device.privileged=true",
        ),
        ({"hsm": {"tpm": {"device": {"privileged": True}}}}, "privileged is for access=hostPath only"),
        ({"hsm": {"tpm": {"device": {"resource": ""}}}}, "hsm.tpm.device.resource is required"),
        ({"hsm": {"tpm": {"device": {"access": "cdi"}}}}, "access must be devicePlugin or hostPath"),
        ({"hsm": {"tokenStorage": {"type": "nfs"}}}, "must be pvc, hostPath or emptyDir"),
        (
            {"hsm": {"tokenStorage": {"type": "hostPath", "hostPath": ""}}},
            "hsm.tokenStorage.hostPath is required",
        ),
        ({"hsm": {"tokenProfiles": {"default": {"tokenLabel": ""}}}}, "set tokenLabel or tokenSerial"),
        ({"hsm": {"tpm": {"module": ""}}}, "hsm.tpm.module is required"),
    ],
    ids=[
        "no-node",
        "node-name-and-selector-disagree",
        "two-replicas",
        "no-device-group",
        "host-device-unprivileged",
        "privileged-with-a-device-plugin",
        "device-plugin-without-resource",
        "unknown-device-access",
        "unknown-store",
        "host-store-without-path",
        "no-token",
        "no-module",
    ],
)
def test_tpm_refuses_what_it_cannot_honour(values: dict[str, Any], message: str) -> None:
    assert message in _render_error(merged(TPM, values))


def test_a_host_directory_store_is_for_the_tpm_backend_only() -> None:
    error = _render_error({"hsm": {"tokenStorage": {"type": "hostPath"}}})
    assert "hostPath is for the tpm backend only" in error


@pytest.mark.parametrize("name", sorted(set(SCENARIOS) - {"tpm"}))
def test_other_backends_render_as_before(name: str) -> None:
    """Nothing of the tpm backend reaches another: the pod's and container's security contexts are the
    values' own, no TPM variable, device, resource or node pin appears."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rendered = render(SCENARIOS[name])
    pod = rendered.pod()
    assert pod["securityContext"] == values["podSecurityContext"]
    for container in rendered.containers():
        assert container["securityContext"] == values["securityContext"], container["name"]
    assert not {n for n in _env(rendered) if n.startswith("TPM2")}
    assert "tpm-device" not in _volumes(rendered)
    assert pod.get("nodeSelector") == SCENARIOS[name].get("nodeSelector")
    assert not [k for k in rendered.container()["resources"]["limits"] if "tpm" in k]
