"""The hostile corpus (tests/hostile_csrs.py) through the pure signing path, with a software CA.

The same cases go through the running operator in tests/operator/test_hostile_requests.py; here each is
judged in milliseconds, so a regression names its case before the slower test runs. A case the API
server refuses (``api_expect``) never reaches an issuer, yet the issuer must refuse it too (defence in
depth: another API server may not validate the schema).
"""

from __future__ import annotations

from typing import Any

import pytest

from issuer.controller.requests.request_kinds import CERTIFICATE_REQUESTS
from issuer.errors import PermanentError
from issuer.signer.certificates import check_csr, issue_checked_certificate
from issuer.signer.policy import Policy
from tests.csrs import make_csr
from tests.hostile_csrs import CORPUS_POLICY, VALID_DNS, HostileCase, corpus
from tests.unit.conftest import PKI

CASES = corpus()


def _body(case: HostileCase) -> dict[str, Any]:
    spec: dict[str, Any] = {"request": case.spec_request(), "isCA": case.is_ca, "usages": list(case.usages)}
    if case.duration is not None:
        spec["duration"] = case.duration
    return {"spec": spec}


def _sign(pki: PKI, body: dict[str, Any]) -> None:
    ca = pki.ca("ecdsa-p256")
    request = CERTIFICATE_REQUESTS.signing_request(body)
    checked = check_csr(request.csr_pem)
    issue_checked_certificate(
        checked, request, ca=ca.chain, ca_key=ca.key, policy=Policy.from_spec(CORPUS_POLICY), now=pki.now
    )


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.filterwarnings("ignore:Attribute's length must be")
def test_hostile_request_is_refused_with_its_cause(pki: PKI, case: HostileCase) -> None:
    with pytest.raises(PermanentError) as refused:
        _sign(pki, _body(case))
    assert case.expect in refused.value.message


def test_the_valid_control_request_is_issued(pki: PKI) -> None:
    # Proves the corpus's policy and CA are not simply refusing everything.
    control = HostileCase("control", "", csr=make_csr(common_name=VALID_DNS, dns=[VALID_DNS]))
    _sign(pki, _body(control))
