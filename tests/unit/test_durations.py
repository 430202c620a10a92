"""Durations in Go's time.ParseDuration syntax, as cert-manager writes them, and back."""

from __future__ import annotations

from datetime import timedelta

import pytest

from issuer.durations import format_duration, parse_duration
from issuer.errors import PermanentError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2160h", timedelta(days=90), id="hours-cert-manager-default"),
        pytest.param("1h30m", timedelta(minutes=90), id="hours-and-minutes"),
        pytest.param("2160h0m0s", timedelta(days=90), id="go-printed-form"),
        pytest.param("90m", timedelta(minutes=90), id="minutes-over-an-hour"),
        pytest.param("1.5h", timedelta(minutes=90), id="fractional-hours"),
        pytest.param(".5h", timedelta(minutes=30), id="fraction-without-leading-digit"),
        pytest.param("300ms", timedelta(milliseconds=300), id="milliseconds"),
        pytest.param("1500us", timedelta(microseconds=1500), id="microseconds-ascii"),
        pytest.param("1500µs", timedelta(microseconds=1500), id="microseconds-micro-sign"),
        pytest.param("1h1m1s", timedelta(hours=1, minutes=1, seconds=1), id="every-large-unit"),
        pytest.param("0", timedelta(0), id="bare-zero"),
        pytest.param("-0", timedelta(0), id="negative-zero-is-zero"),
        pytest.param("+5m", timedelta(minutes=5), id="explicit-plus-sign"),
        pytest.param("876000h", timedelta(days=36500), id="exactly-one-hundred-years"),
    ],
)
def test_parses_go_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param("-1h", "negative", id="negative"),
        pytest.param("-1h30m", "negative", id="negative-compound"),
        pytest.param("abc", "not a Go duration", id="not-a-number"),
        pytest.param("10d", "not a Go duration", id="days-are-not-a-go-unit"),
        pytest.param("1h1", "not a Go duration", id="trailing-number-without-unit"),
        pytest.param("60", "not a Go duration", id="number-without-unit"),
        pytest.param("1H", "not a Go duration", id="units-are-case-sensitive"),
        pytest.param("1e3h", "not a Go duration", id="no-exponents"),
        pytest.param(".", "not a Go duration", id="lone-dot"),
        pytest.param("1h 30m", "not a Go duration", id="inner-space"),
        pytest.param("1000000h", "longer than 100 years", id="absurd-million-hours"),
        pytest.param("876001h", "longer than 100 years", id="just-over-one-hundred-years"),
    ],
)
def test_refuses_what_go_would_refuse(text: str, problem: str) -> None:
    with pytest.raises(PermanentError, match=problem) as caught:
        parse_duration(text)
    assert repr(text) in caught.value.message  # the message quotes the offending value


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="only-spaces"),
    ],
)
def test_refuses_empty_duration(text: str) -> None:
    with pytest.raises(PermanentError, match="empty"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(timedelta(days=90), "2160h0m0s", id="cert-manager-default"),
        pytest.param(timedelta(minutes=90), "1h30m0s", id="hour-and-a-half"),
        pytest.param(timedelta(seconds=59), "0h0m59s", id="under-a-minute"),
        pytest.param(timedelta(days=365, seconds=1), "8760h0m1s", id="year-and-a-second"),
        pytest.param(timedelta(0), "0h0m0s", id="zero"),
    ],
)
def test_formats_as_go_prints(value: timedelta, expected: str) -> None:
    assert format_duration(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(timedelta(days=90), id="days"),
        pytest.param(timedelta(hours=1, minutes=30), id="hours-minutes"),
        pytest.param(timedelta(hours=25, minutes=59, seconds=59), id="every-unit"),
        pytest.param(timedelta(seconds=1), id="one-second"),
        pytest.param(timedelta(0), id="zero"),
        pytest.param(timedelta(days=36500), id="one-hundred-years"),
    ],
)
def test_format_then_parse_round_trips(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value
