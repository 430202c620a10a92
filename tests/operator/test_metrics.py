"""The operator's Prometheus metrics, scraped over HTTP after real work."""

from __future__ import annotations

import time
import uuid

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.csrs import make_csr
from tests.operator.conftest import Cluster, wait_until
from tests.operator.kube import CR_PATH, ISSUER_PATH, certificate_request, condition, issuer_body


def _scrape(cluster: Cluster) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    port = cluster.operator.env["TRUSTED_ISSUER_METRICS_PORT"]
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_report_issuance_failures_readiness_and_the_pool(cluster: Cluster) -> None:
    kube = cluster.kube
    namespace = f"metrics-{uuid.uuid4().hex[:6]}"
    kube.namespace(namespace)
    issuers = ISSUER_PATH.format(ns=namespace)
    kube.create(issuers, issuer_body("ca", namespace=namespace))
    kube.create(issuers, issuer_body("locked", namespace=namespace, profile="badpin"))
    kube.wait(f"{issuers}/ca", lambda o: condition(o).get("status") == "True")
    kube.wait(f"{issuers}/locked", lambda o: condition(o).get("status") == "False")
    path = CR_PATH.format(ns=namespace)
    kube.create(path, certificate_request("ok", make_csr(dns=["ok.example.com"]), issuer="ca"))
    kube.create(
        path, certificate_request("bad", make_csr(dns=["bad.example.com"]), issuer="ca", duration="1s")
    )
    kube.approve(namespace, "ok")
    kube.approve(namespace, "bad")
    kube.wait(f"{path}/ok", lambda o: condition(o).get("reason") == "Issued")
    kube.wait(f"{path}/bad", lambda o: condition(o).get("reason") == "Failed")

    label = f"TrustedIssuer/{namespace}/ca"
    wait_until(
        lambda: (
            ("trusted_issuer_certificates_issued_total", (("issuer", label), ("kind", "CertificateRequest")))
            in _scrape(cluster)
        )
    )
    samples = _scrape(cluster)
    assert (
        samples[
            ("trusted_issuer_certificates_issued_total", (("issuer", label), ("kind", "CertificateRequest")))
        ]
        == 1
    )
    failed = (
        "trusted_issuer_requests_failed_total",
        (("issuer", label), ("kind", "CertificateRequest"), ("reason", "Failed")),
    )
    assert samples[failed] == 1
    assert samples[("trusted_issuer_issuer_ready", (("issuer", label),))] == 1
    assert samples[("trusted_issuer_issuer_ready", (("issuer", f"TrustedIssuer/{namespace}/locked"),))] == 0
    not_after = samples[("trusted_issuer_ca_not_after_timestamp_seconds", (("issuer", label),))]
    assert not_after > time.time() + 86400 * 365
    assert samples[("trusted_issuer_token_login_failures_total", (("profile", "badpin"),))] >= 1
    assert samples[("trusted_issuer_signing_workers", ())] == 2
    assert samples[("trusted_issuer_leader", ())] == 1  # the package's only replica holds the Lease
    assert ("trusted_issuer_signing_worker_restarts_total", ()) in samples
    assert samples[("trusted_issuer_signing_duration_seconds_count", (("kind", "CertificateRequest"),))] >= 1
    assert samples[("trusted_issuer_token_operation_duration_seconds_count", (("operation", "sign"),))] >= 1
    assert ("trusted_issuer_queue_depth", ()) in samples
    assert ("trusted_issuer_requests_in_flight", ()) in samples
