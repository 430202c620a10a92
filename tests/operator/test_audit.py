"""The audit trail, read from the running operator's log and the API server's Events."""

from __future__ import annotations

import re
import uuid

from cryptography import x509

from tests.csrs import make_csr
from tests.operator.conftest import Cluster, wait_until
from tests.operator.kube import CR_PATH, ISSUER_PATH, certificate_request, condition, issuer_body, pem


def _audit_lines(cluster: Cluster, event: str, request: str) -> list[str]:
    return [
        line
        for line in cluster.operator.log().splitlines()
        if "trusted-issuer.audit" in line and f"] {event} " in line and f"request='{request}'" in line
    ]


def _setup(cluster: Cluster) -> tuple[str, str]:
    kube = cluster.kube
    namespace = f"audit-{uuid.uuid4().hex[:8]}"
    kube.namespace(namespace)
    kube.create(ISSUER_PATH.format(ns=namespace), issuer_body("ca", namespace=namespace))
    kube.wait(f"{ISSUER_PATH.format(ns=namespace)}/ca", lambda o: condition(o).get("status") == "True")
    return namespace, CR_PATH.format(ns=namespace)


def _request(cluster: Cluster, namespace: str, name: str) -> None:
    body = certificate_request(
        name,
        make_csr(common_name="web", dns=["web.apps.svc"], uris=["spiffe://td/ns/apps/sa/web"]),
        issuer="ca",
    )
    # cert-manager's webhook stamps spec.username; the sandbox has no webhook, so the test stands in for it.
    body["spec"]["username"] = "system:serviceaccount:apps:web"
    cluster.kube.create(CR_PATH.format(ns=namespace), body)
    cluster.kube.approve(namespace, name)


def test_issuance_is_one_audit_line_and_an_event(cluster: Cluster) -> None:
    kube = cluster.kube
    namespace, requests = _setup(cluster)
    _request(cluster, namespace, "web")
    done = kube.wait(f"{requests}/web", lambda o: condition(o).get("reason") == "Issued")
    leaf = x509.load_pem_x509_certificate(pem(done["status"]["certificate"]))

    wait_until(lambda: _audit_lines(cluster, "issued", f"{namespace}/web"))
    (line,) = _audit_lines(cluster, "issued", f"{namespace}/web")
    expected = {
        "kind": "CertificateRequest",
        "issuer": f"TrustedIssuer {namespace}/ca",
        "requester": "system:serviceaccount:apps:web",
        "serial": f"{leaf.serial_number:x}",
        "subject": "CN=web",
        "not_after": leaf.not_valid_after_utc.isoformat(),
    }
    for field, value in expected.items():
        assert f"{field}={value!r}" in line, (field, line)
    assert "sans=('DNS:web.apps.svc', 'URI:spiffe://td/ns/apps/sa/web')" in line
    key_id = kube.get(f"{ISSUER_PATH.format(ns=namespace)}/ca")["status"]["keyHandle"]["keyID"]
    assert f"key_id={key_id!r}" in line
    assert "BEGIN" not in line  # no PEM of any kind: not the CSR, not the certificate

    def issued_event() -> list[dict]:
        events = kube.get(f"/api/v1/namespaces/{namespace}/events").get("items", [])
        return [e for e in events if e.get("reason") == "Issued" and e["involvedObject"]["name"] == "web"]

    wait_until(issued_event)
    assert f"serial {leaf.serial_number:x}" in issued_event()[0]["message"]


def test_signature_that_could_not_be_published_is_recorded(cluster: Cluster) -> None:
    kube, sandbox = cluster.kube, cluster.sandbox
    namespace = f"audit-{uuid.uuid4().hex[:8]}"
    kube.namespace(namespace)
    requests = CR_PATH.format(ns=namespace)
    # Approved before its issuer exists, so the approval is behind us when the faults start.
    _request(cluster, namespace, "web")
    kube.wait(f"{requests}/web", lambda o: condition(o).get("reason") == "Pending")
    # Every publish attempt of the first signature meets a conflict; the operator gives that signature
    # up (recorded as unpublished), signs again later and publishes the second.
    sandbox.faults.add(
        status=409, verbs={"patch"}, resources={"certificaterequests/status"}, namespaces={namespace}, times=5
    )
    kube.create(ISSUER_PATH.format(ns=namespace), issuer_body("ca", namespace=namespace))
    done = kube.wait(f"{requests}/web", lambda o: condition(o).get("reason") == "Issued")
    published = x509.load_pem_x509_certificate(pem(done["status"]["certificate"])).serial_number

    wait_until(lambda: _audit_lines(cluster, "issued", f"{namespace}/web"))
    (unpublished,) = _audit_lines(cluster, "unpublished", f"{namespace}/web")
    assert "reason='conflicts'" in unpublished
    serial = re.search(r"serial='([0-9a-f]+)'", unpublished)
    assert serial is not None and int(serial.group(1), 16) != published
    (issued,) = _audit_lines(cluster, "issued", f"{namespace}/web")
    assert f"serial='{published:x}'" in issued
