"""The fence (``issuer.controller.replica.election.FencedSigner``): a wrapper around a ``Signer`` that
refuses signatures once the Lease is lost. No workers, no API server."""

from __future__ import annotations

import pytest

from issuer.controller.replica.election import FencedSigner, Leadership
from issuer.errors import RetryableError
from issuer.tokens import TokenConfig
from tests.signers import RecordingSigner as Recording

TOKEN = TokenConfig(module="/nonexistent.so", token_label="t")


@pytest.mark.parametrize(
    ("holds", "fenced"),
    [pytest.param(True, False, id="leader-signs"), pytest.param(False, True, id="fenced-replica-refuses")],
)
def test_the_fence_stops_signatures_only(holds: bool, fenced: bool) -> None:
    inner = Recording()
    leadership = Leadership(clock=lambda: 10.0)
    if holds:
        leadership.renewed(attempt_started=9.0, renew_deadline=5.0)
    signer = FencedSigner(inner, leadership)
    if fenced:
        with pytest.raises(RetryableError) as refused:
            signer.sign.blocking(None, None)  # type: ignore[arg-type]
        assert refused.value.reason == "Fenced"
    else:
        assert signer.sign.blocking(None, None) == "sign"  # type: ignore[arg-type]
    # Everything but a signature goes through: a fenced replica still answers readiness checks.
    assert signer.list_keys.blocking(TOKEN) == "list_keys"
    assert [name for name, _, _ in inner.asked] == ([] if fenced else ["sign"]) + ["list_keys"]


def test_without_a_fence_it_only_delegates() -> None:
    inner = Recording()
    assert FencedSigner(inner).sign.blocking(None, None) == "sign"  # type: ignore[arg-type]
