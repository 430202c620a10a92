"""Rotation decisions from spec and published status: publish before sign, generations only go up; and
which CA certificate of a key is current, and when it is renewed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from issuer.clock import rfc3339 as timestamp
from issuer.controller.conditions import ca_entry
from issuer.controller.issuers import rotation
from issuer.controller.issuers.spec import IssuerSpec
from issuer.errors import PermanentError
from issuer.signer.keys import Algorithm, KeyHandle
from tests.ca_certificates import ca_certificate, fingerprint

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def published(generation: int, sign_from: datetime) -> dict[str, object]:
    return {"keyHandle": {}, "generation": generation, "signFrom": timestamp(sign_from)}


@pytest.mark.parametrize(
    ("wanted", "signing", "next_key", "switch", "prepare"),
    [
        pytest.param(0, 0, None, False, None, id="no-rotation-asked"),
        pytest.param(1, 0, None, False, 1, id="asked-prepares-the-next-key"),
        pytest.param(1, 0, published(1, NOW + timedelta(hours=1)), False, None, id="overlap-not-over"),
        pytest.param(1, 0, published(1, NOW), True, None, id="overlap-over-switches"),
        pytest.param(1, 0, published(1, NOW - timedelta(days=1)), True, None, id="late-switch"),
        pytest.param(
            2, 0, published(1, NOW - timedelta(days=1)), True, None, id="raised-again-pending-signs-first"
        ),
        pytest.param(
            2, 0, published(1, NOW + timedelta(hours=1)), False, None, id="raised-again-waits-no-new-key"
        ),
        pytest.param(
            1, 0, published(2, NOW - timedelta(days=1)), False, None, id="lowered-never-switches-up"
        ),
        pytest.param(1, 1, None, False, None, id="rotation-done"),
    ],
)
def test_plan(
    wanted: int, signing: int, next_key: dict[str, object] | None, switch: bool, prepare: int | None
) -> None:
    plan = rotation.plan_rotation(wanted, signing, next_key, NOW)
    assert (plan.switch, plan.prepare) == (switch, prepare)


def test_a_key_is_never_used_before_it_was_published() -> None:
    # The plan only switches to a next key read back from status: with nothing published, even a zero
    # overlap prepares first.
    assert rotation.plan_rotation(1, 0, None, NOW) == rotation.RotationPlan(switch=False, prepare=1)


def test_generations_only_go_up() -> None:
    with pytest.raises(PermanentError, match="generations only go up"):
        rotation.plan_rotation(1, 2, None, NOW)


def test_rotation_labels_keep_the_first_key_and_stay_in_scope() -> None:
    base = "ti:ns/team/ca/1a2b3c4d"
    assert rotation.rotation_key_label(base, 0) == base
    assert rotation.rotation_key_label(base, 3) == base + "/k3"


@pytest.mark.parametrize(
    ("wanted", "pending", "refused"),
    [
        pytest.param(1, 1, False, id="the-pending-one-is-asked"),
        pytest.param(2, 1, True, id="raised-while-pending"),
        pytest.param(1, 2, True, id="lowered-while-pending"),
    ],
)
def test_a_new_rotation_while_one_is_pending_waits_and_says_why(
    wanted: int, pending: int, refused: bool
) -> None:
    plan = rotation.plan_rotation(wanted, 0, published(pending, NOW + timedelta(hours=1)), NOW)
    assert plan.prepare is None  # never a second new key while one is pending
    assert bool(plan.refused) is refused
    if refused:
        assert f"generation {pending} is pending" in str(plan.refused)


# -- the current CA certificate of a key -------------------------------------------------------------------

CA_NOW = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)
PEM = serialization.Encoding.PEM
ROOT_KEY, SUB_KEY, OTHER_KEY = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))


def _ca_cert(subject: str, key: ec.EllipticCurvePrivateKey, **kwargs: Any) -> bytes:
    return ca_certificate(subject, key, CA_NOW, **kwargs).public_bytes(PEM)


def handle(key_sha256: str, label: str = "ti:cluster/x/1") -> KeyHandle:
    return KeyHandle("tok", "1", label, "01", Algorithm.ECDSA_P256, key_sha256)


def _spec(**ca: Any) -> IssuerSpec:
    return IssuerSpec.parse(
        {"tokenProfile": "dev", "ca": {"selfSigned": {"subject": "CN=root", "renewBefore": "720h", **ca}}}
    )


def test_newest_valid_certificate_of_a_key_is_current() -> None:
    older = ca_entry(_ca_cert("root", ROOT_KEY, days=3650, issued_days_ago=30))
    newer = ca_entry(_ca_cert("root", ROOT_KEY, days=100, issued_days_ago=1))
    other = ca_entry(_ca_cert("root", OTHER_KEY, issued_days_ago=0))
    entries = [older, other, newer]
    assert rotation.newest_for_key(entries, fingerprint(ROOT_KEY), CA_NOW) == newer
    assert rotation.newest_for_key(entries, fingerprint(SUB_KEY), CA_NOW) is None
    # Once the newer one expired, the older (still valid) one is all there is.
    assert rotation.newest_for_key(entries, fingerprint(ROOT_KEY), CA_NOW + timedelta(days=200)) == older
    assert rotation.newest_for_key(entries, fingerprint(ROOT_KEY), CA_NOW + timedelta(days=4000)) is None


@pytest.mark.parametrize(
    ("days", "subject", "renew"),
    [
        pytest.param(3650, "CN=root", False, id="fresh"),
        pytest.param(10, "CN=root", True, id="within-renew-before"),
        pytest.param(3650, "CN=renamed", True, id="subject-changed"),
    ],
)
def test_needs_new_ca(days: int, subject: str, renew: bool) -> None:
    cert = _ca_cert("root", ROOT_KEY, days=days)
    spec = IssuerSpec.parse({"tokenProfile": "dev", "ca": {"selfSigned": {"subject": subject}}})
    assert rotation.needs_new_ca(ca_entry(cert), handle(fingerprint(ROOT_KEY)), spec, CA_NOW) is renew
    assert rotation.needs_new_ca(ca_entry(cert), handle(fingerprint(OTHER_KEY)), spec, CA_NOW)
    assert rotation.needs_new_ca(None, handle(fingerprint(ROOT_KEY)), _spec(), CA_NOW)
