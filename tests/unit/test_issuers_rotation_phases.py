"""The clocks of a rotation's phases: distribution lasts at least one workload-certificate lifetime, and a
retired CA is trusted until the last certificate its key signed has expired, re-derived from what status
cannot rewrite (a rewritten retiredAt or trustUntil never drops an old CA early)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from issuer.clock import parse_rfc3339, rfc3339
from issuer.controller.issuers.rotation_phases import (
    checked_trust_until,
    distribution_time,
    longest_lifetime,
    trust_until,
)

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
CA_END = NOW + timedelta(days=365)
H, M = timedelta(hours=1), timedelta(minutes=1)


@pytest.mark.parametrize(
    ("overlap", "max_duration", "expected"),
    [
        pytest.param(24 * H, H, 24 * H, id="overlap-longer-than-lifetime-kept"),
        pytest.param(timedelta(0), H, H, id="zero-overlap-raised-to-one-lifetime"),
        pytest.param(10 * M, H, H, id="short-overlap-raised-to-one-lifetime"),
        pytest.param(H, None, CA_END - NOW, id="no-max-duration-waits-until-the-old-ca-expires"),
    ],
)
def test_distribution_lasts_at_least_one_certificate_lifetime(
    overlap: timedelta, max_duration: timedelta | None, expected: timedelta
) -> None:
    assert distribution_time(overlap, max_duration, CA_END, NOW) == expected


def test_longest_lifetime_is_capped_by_the_ca() -> None:
    assert longest_lifetime(H, NOW + 10 * M, NOW) == 10 * M
    assert longest_lifetime(H, NOW - M, NOW) == timedelta(0)


@pytest.mark.parametrize(
    ("started", "max_duration", "ca_end", "expected"),
    [
        pytest.param(NOW, H, CA_END, NOW + H, id="switch-plus-max-duration"),
        pytest.param(NOW, H, NOW + 10 * M, NOW + 10 * M, id="capped-at-old-ca-expiry"),
        pytest.param(NOW, None, CA_END, CA_END, id="no-max-duration-until-old-ca-expiry"),
        pytest.param(
            NOW + timedelta(microseconds=1), H, CA_END, NOW + H + timedelta(seconds=1), id="rounded-up"
        ),
    ],
)
def test_trust_until(
    started: datetime, max_duration: timedelta | None, ca_end: datetime, expected: datetime
) -> None:
    assert trust_until(started, max_duration, ca_end) == expected


def _record(**fields: Any) -> dict[str, Any]:
    return {"generation": 0, "retiredAt": rfc3339(NOW), **fields}


@pytest.mark.parametrize(
    ("record", "spec_max", "floor", "until", "drift"),
    [
        pytest.param(_record(trustUntil=rfc3339(NOW + H)), H, NOW - H, NOW + H, False, id="honest-record"),
        pytest.param(
            _record(trustUntil=rfc3339(NOW)), H, NOW - H, NOW + H, True, id="trust-until-rewritten-earlier"
        ),
        pytest.param(
            _record(retiredAt=rfc3339(NOW - 10 * H)),
            H,
            NOW - H,
            NOW,
            False,
            id="retired-at-rewritten-earlier-floored-at-the-signing-ca",
        ),
        pytest.param(
            _record(maxDurationSeconds=7200),
            H,
            NOW - H,
            NOW + 2 * H,
            False,
            id="recorded-longer-lifetime-kept",
        ),
        pytest.param(
            _record(maxDurationSeconds=60), H, NOW - H, NOW + H, False, id="recorded-shorter-lifetime-ignored"
        ),
        pytest.param(_record(), None, NOW - H, CA_END, False, id="no-max-duration-until-old-ca-expiry"),
        pytest.param({"generation": 0}, H, NOW, NOW + H, False, id="retired-at-missing-uses-the-floor"),
    ],
)
def test_trust_until_is_rederived_never_taken_from_status(
    record: dict[str, Any], spec_max: timedelta | None, floor: datetime, until: datetime, drift: bool
) -> None:
    checked = checked_trust_until(record, parse_rfc3339, spec_max, CA_END, floor)
    assert checked.until == until
    assert bool(checked.drift) is drift
