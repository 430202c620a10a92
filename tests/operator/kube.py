"""The tests' own Kubernetes client: plain HTTP to the sandbox API server, JSON in and out.

It is deliberately not trusted-issuer's client, so tests observe the operator from outside.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import requests

CR_PATH = "/apis/cert-manager.io/v1/namespaces/{ns}/certificaterequests"
ISSUER_PATH = "/apis/trusted-issuer.dev/v1alpha1/namespaces/{ns}/trustedissuers"
CLUSTER_ISSUER_PATH = "/apis/trusted-issuer.dev/v1alpha1/trustedclusterissuers"


class Kube:
    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")
        self.http = requests.Session()

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        response = self.http.request(
            method,
            self.base + path,
            data=None if body is None else json.dumps(body),
            headers={"Content-Type": content_type},
            timeout=30,
        )
        if response.status_code >= 300:
            raise ApiFailure(response.status_code, response.text)
        return response.json() if response.text else None

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.call("POST", path, body)

    def get(self, path: str) -> dict[str, Any]:
        return self.call("GET", path)

    def delete(self, path: str) -> None:
        self.call("DELETE", path)

    def merge_status(self, path: str, status: dict[str, Any]) -> dict[str, Any]:
        return self.call("PATCH", path + "/status", {"status": status}, "application/merge-patch+json")

    def namespace(self, name: str) -> None:
        try:
            self.create(
                "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            )
        except ApiFailure as err:
            if err.status != 409:
                raise

    def wait(
        self, path: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            last = self.get(path)
            if predicate(last):
                return last
            time.sleep(0.1)
        raise AssertionError(
            f"timed out waiting on {path}; last status: {json.dumps(last.get('status'))[:1500]}"
        )

    # -- cert-manager's approver, played by the tests ----------------------------------------------------

    def approve(self, namespace: str, name: str) -> dict[str, Any]:
        return self._decide(namespace, name, "Approved", "tests approve")

    def deny(self, namespace: str, name: str) -> dict[str, Any]:
        return self._decide(namespace, name, "Denied", "tests deny")

    def _decide(self, namespace: str, name: str, kind: str, message: str) -> dict[str, Any]:
        path = f"{CR_PATH.format(ns=namespace)}/{name}"
        for _ in range(10):
            current = self.get(path)
            conditions = [c for c in current.get("status", {}).get("conditions", []) if c["type"] != kind]
            conditions.append(
                {
                    "type": kind,
                    "status": "True",
                    "reason": "cert-manager.io",
                    "message": message,
                    "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
            )
            body = {
                "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
                "status": {"conditions": conditions},
            }
            try:
                return self.call("PATCH", path + "/status", body, "application/merge-patch+json")
            except ApiFailure as err:
                if err.status != 409:
                    raise
        raise AssertionError(f"could not set {kind} on {namespace}/{name}")

    def watch_events(
        self, path: str, stop: threading.Event, resource_version: str = ""
    ) -> Iterator[dict[str, Any]]:
        """Yield watch events until ``stop`` is set (resuming after server-side timeouts)."""
        while not stop.is_set():
            params = {"watch": "true", "timeoutSeconds": "5"}
            if resource_version:
                params["resourceVersion"] = resource_version
            with self.http.get(self.base + path, params=params, stream=True, timeout=30) as response:
                for line in response.iter_lines():
                    if not line:
                        continue
                    event = json.loads(line)
                    meta = event.get("object", {}).get("metadata", {})
                    resource_version = meta.get("resourceVersion", resource_version)
                    yield event
                    if stop.is_set():
                        return


class ApiFailure(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status}: {text[:500]}")
        self.status = status


def certificate_request(
    name: str,
    csr_pem: bytes,
    *,
    issuer: str,
    kind: str = "TrustedIssuer",
    group: str = "trusted-issuer.dev",
    duration: str | None = None,
    usages: list[str] | None = None,
    is_ca: bool = False,
    generate_name: bool = False,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "request": base64.b64encode(csr_pem).decode(),
        "issuerRef": {"name": issuer, "kind": kind, "group": group},
        "isCA": is_ca,
    }
    if duration:
        spec["duration"] = duration
    if usages:
        spec["usages"] = usages
    meta: dict[str, Any] = {"generateName": name} if generate_name else {"name": name}
    return {"apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest", "metadata": meta, "spec": spec}


def issuer_body(
    name: str,
    *,
    profile: str = "dev",
    algorithm: str | None = None,
    namespace: str | None = None,
    policy: dict[str, Any] | None = None,
    deletion_policy: str = "Retain",
) -> dict[str, Any]:
    """An issuer's body; its key algorithm defaults to the session token's (tests/conftest.py sets
    TRUSTED_ISSUER_TEST_ALGORITHM: ecdsa-p256 where the token can, else the first it can do)."""
    algorithm = algorithm or os.environ.get("TRUSTED_ISSUER_TEST_ALGORITHM", "ecdsa-p256")
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": "trusted-issuer.dev/v1alpha1",
        "kind": "TrustedIssuer" if namespace else "TrustedClusterIssuer",
        "metadata": meta,
        "spec": {
            "tokenProfile": profile,
            "key": {"algorithm": algorithm},
            "ca": {"selfSigned": {"subject": f"CN={name} root,O=trusted-issuer tests"}},
            "policy": policy or {},
            "deletionPolicy": deletion_policy,
        },
    }


def condition(obj: dict[str, Any], kind: str = "Ready") -> dict[str, Any]:
    for item in obj.get("status", {}).get("conditions", []) or []:
        if item.get("type") == kind:
            return dict(item)
    return {}


def pem(value: str | None) -> bytes:
    return base64.b64decode(value or "")
