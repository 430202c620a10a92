"""Rotation decisions from spec and published status: publish before sign, generations only go up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from issuer.clock import rfc3339 as timestamp
from issuer.controller.issuers import rotation
from issuer.errors import PermanentError

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
