"""The hostile corpus (tests/hostile_csrs.py) sent through the running operator as CertificateRequests.

Every case must end Ready=False with cert-manager's reason ``Failed`` and its specific cause in the
message; cases the API server's schema refuses (invalid base64, unknown usages) must be refused there
with a message naming the field. Afterwards the operator is still running and a valid request is issued.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.csrs import make_csr
from tests.hostile_csrs import CORPUS_POLICY, VALID_DNS, HostileCase, corpus
from tests.operator.conftest import Cluster
from tests.operator.kube import (
    CR_PATH,
    ISSUER_PATH,
    ApiFailure,
    certificate_request,
    condition,
    issuer_body,
    pem,
)
from tests.verifiers import openssl_verify

CASES = corpus()


def _body(case: HostileCase, name: str, issuer: str) -> dict[str, Any]:
    body = certificate_request(name, b"", issuer=issuer, duration=case.duration, is_ca=case.is_ca)
    body["spec"]["request"] = case.spec_request()
    if case.usages:
        body["spec"]["usages"] = list(case.usages)
    return body


def _finished(obj: dict[str, Any]) -> bool:
    ready = condition(obj)
    return ready.get("status") == "True" or ready.get("reason") in ("Failed", "Denied")


@pytest.fixture(scope="module")
def outcomes(cluster: Cluster) -> dict[str, tuple[dict[str, Any] | None, str]]:
    """Send the whole corpus at once (as an attacker would), then collect each request's final state."""
    kube = cluster.kube
    namespace = f"hostile-{uuid.uuid4().hex[:6]}"
    kube.namespace(namespace)
    issuers = ISSUER_PATH.format(ns=namespace)
    kube.create(issuers, issuer_body("corpus", namespace=namespace, policy=CORPUS_POLICY))
    kube.wait(f"{issuers}/corpus", lambda o: condition(o).get("status") == "True")
    path = CR_PATH.format(ns=namespace)
    refused: dict[str, str] = {}
    for case in CASES:
        try:
            kube.create(path, _body(case, case.id, "corpus"))
        except ApiFailure as err:
            refused[case.id] = str(err)
            continue
        kube.approve(namespace, case.id)
    results: dict[str, tuple[dict[str, Any] | None, str]] = {}
    deadline = time.monotonic() + 180
    for case in CASES:
        if case.id in refused:
            results[case.id] = (None, refused[case.id])
            continue
        remaining = max(5.0, deadline - time.monotonic())
        done = kube.wait(f"{path}/{case.id}", _finished, timeout=remaining)
        results[case.id] = (done, "")
    # The issuer is unharmed: a valid request sent after the corpus is issued and verifies.
    kube.create(path, certificate_request("after-corpus", make_csr(dns=[VALID_DNS]), issuer="corpus"))
    kube.approve(namespace, "after-corpus")
    results["after-corpus"] = (kube.wait(f"{path}/after-corpus", _finished, timeout=60), "")
    return results


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_request_fails_with_its_cause(
    outcomes: dict[str, tuple[dict[str, Any] | None, str]], case: HostileCase
) -> None:
    obj, api_refusal = outcomes[case.id]
    if case.api_expect is not None:
        # The API server's schema refuses the object; the operator never sees it.
        assert obj is None, f"the API server accepted {case.id}"
        assert "422" in api_refusal and case.api_expect in api_refusal, api_refusal
        return
    assert obj is not None, f"{case.id} was refused by the API server: {api_refusal}"
    ready = condition(obj)
    assert (ready["status"], ready["reason"]) == ("False", "Failed"), ready
    assert case.expect in ready["message"], ready["message"]
    assert obj["status"].get("failureTime")
    assert not obj["status"].get("certificate")


def test_operator_survives_and_still_issues(
    cluster: Cluster, outcomes: dict[str, tuple[dict[str, Any] | None, str]]
) -> None:
    assert cluster.operator.process is not None and cluster.operator.process.poll() is None
    done, _ = outcomes["after-corpus"]
    assert done is not None
    assert condition(done)["reason"] == "Issued", done.get("status")
    openssl_verify(pem(done["status"]["certificate"]), pem(done["status"]["ca"]))
    log = cluster.operator.log()
    # No request made the operator fall over into its catch-all for unexpected errors.
    assert "unexpected failure request=" not in log, log[-3000:]
