"""Durations in Go's ``time.ParseDuration`` syntax, what cert-manager and our CRDs write (2160h, 1h30m).

Shared by both rooms: settings, issuer specs and request kinds parse them; the signer's policy clamps
certificate lifetimes with them.
"""

from __future__ import annotations

import re
from datetime import timedelta

from issuer.errors import PermanentError

_GO_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
#: Longer than any CA could want; anything above is a typo or an attack, not a lifetime.
ABSURD_DURATION = timedelta(days=365 * 100)


def parse_duration(text: str) -> timedelta:
    """Parse a Go duration string (``"2160h"``, ``"1h30m"``, ``"2160h0m0s"``, ``"90m"``).

    Raises PermanentError for anything Go's ``time.ParseDuration`` would reject, and for negative or
    absurd (over 100 years) values.
    """
    original = text
    text = text.strip()
    sign = 1
    if text and text[0] in "+-":
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text == "0":
        return timedelta(0)
    if not text:
        raise PermanentError(f"duration {original!r} is empty")
    seconds = 0.0
    position = 0
    while position < len(text):
        match = _GO_PART.match(text, position)
        if match is None:
            raise PermanentError(
                f"duration {original!r} is not a Go duration "
                "(use units h, m, s, ms, us, ns as in 2160h or 1h30m)"
            )
        seconds += float(match.group(1)) * _GO_UNITS[match.group(2)]
        position = match.end()
    if sign < 0 and seconds:
        raise PermanentError(f"duration {original!r} is negative")
    if seconds > ABSURD_DURATION.total_seconds():
        raise PermanentError(f"duration {original!r} is longer than 100 years")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Format a duration the way Go prints one (``2160h0m0s``), to the second."""
    total = int(value.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes}m{seconds}s"
