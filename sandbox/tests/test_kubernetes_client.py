"""The kubernetes Python client against a sandbox on its own thread."""

from __future__ import annotations

import base64
import threading
import time

import kubernetes
import pytest
from kubernetes.client import (
    AuthorizationV1Api,
    CertificatesV1Api,
    CoordinationV1Api,
    CoreV1Api,
    CustomObjectsApi,
)
from kubernetes.client.exceptions import ApiException
from sandbox_clients import CertificateRequestFactory
from trusted_issuer_sandbox import Sandbox, allow_rows

CR = ("cert-manager.io", "v1", "default", "certificaterequests")


def test_custom_objects_round_trip(
    api_client: kubernetes.client.ApiClient, certificate_request: CertificateRequestFactory
) -> None:
    api = CustomObjectsApi(api_client)
    created = api.create_namespaced_custom_object(*CR, certificate_request())
    assert created is not None and created["metadata"]["uid"]  # kmock's 200 made this None
    approved = api.patch_namespaced_custom_object_status(
        *CR, "demo", {"status": {"conditions": [{"type": "Approved", "status": "True"}]}}
    )
    labelled = api.patch_namespaced_custom_object(*CR, "demo", {"metadata": {"labels": {"a": "b"}}})
    listed = api.list_cluster_custom_object("cert-manager.io", "v1", "certificaterequests")
    assert approved["status"]["conditions"][0]["type"] == "Approved"
    assert labelled["status"] == approved["status"]
    assert [i["metadata"]["name"] for i in listed["items"]] == ["demo"]
    with pytest.raises(ApiException) as conflict:
        api.create_namespaced_custom_object(*CR, certificate_request())
    assert conflict.value.status == 409
    api.delete_namespaced_custom_object(*CR, "demo")
    with pytest.raises(ApiException) as gone:
        api.get_namespaced_custom_object(*CR, "demo")
    assert gone.value.status == 404


def test_typed_builtins(api_client: kubernetes.client.ApiClient) -> None:
    core = CoreV1Api(api_client)
    namespace = core.create_namespace({"metadata": {"name": "typed"}})
    config_map = core.create_namespaced_config_map("typed", {"metadata": {"name": "c"}, "data": {"a": "1"}})
    event = core.create_namespaced_event(
        "typed", {"metadata": {"generateName": "e-"}, "involvedObject": {"name": "c"}, "reason": "R"}
    )
    lease = CoordinationV1Api(api_client).create_namespaced_lease(
        "typed", {"metadata": {"name": "l"}, "spec": {"holderIdentity": "me"}}
    )
    assert namespace.status.phase == "Active"
    assert config_map.data == {"a": "1"} and event.metadata.name.startswith("e-")
    assert lease.spec.holder_identity == "me"
    csrs = CertificatesV1Api(api_client)
    request = base64.b64encode(b"-----BEGIN CERTIFICATE REQUEST-----\n").decode()
    csr = csrs.create_certificate_signing_request(
        {
            "metadata": {"name": "x"},
            "spec": {"request": request, "signerName": "a/b", "usages": ["client auth"]},
        }
    )
    csr.status.conditions = [{"type": "Approved", "status": "True", "reason": "Test", "message": "ok"}]
    approved = csrs.replace_certificate_signing_request_approval("x", csr)
    assert approved.status.conditions[0].type == "Approved"


def test_subject_access_review(threaded_sandbox: Sandbox, api_client: kubernetes.client.ApiClient) -> None:
    threaded_sandbox.access_policy = allow_rows([("alice", "get", "secrets", "*")])
    review = {"spec": {"user": "alice", "resourceAttributes": {"verb": "get", "resource": "secrets"}}}
    answer = AuthorizationV1Api(api_client).create_subject_access_review(review)
    assert answer.status.allowed is True


def test_watch_resumes_and_expires(
    threaded_sandbox: Sandbox,
    api_client: kubernetes.client.ApiClient,
    certificate_request: CertificateRequestFactory,
) -> None:
    api = CustomObjectsApi(api_client)
    version = api.list_namespaced_custom_object(*CR)["metadata"]["resourceVersion"]

    def create_soon() -> None:
        time.sleep(0.3)
        threaded_sandbox.put_object(certificate_request("watched"))

    threading.Thread(target=create_soon).start()
    events = list(
        kubernetes.watch.Watch().stream(
            api.list_namespaced_custom_object, *CR, resource_version=version, timeout_seconds=1
        )
    )
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "watched")]
    threaded_sandbox.store.compact()
    with pytest.raises(ApiException) as expired:
        list(
            kubernetes.watch.Watch().stream(api.list_namespaced_custom_object, *CR, resource_version=version)
        )
    assert expired.value.status == 410
