"""The one backoff of the operator: a delay that doubles with each failure in a row, up to a cap."""

from __future__ import annotations

#: Doublings beyond this change nothing but the size of the number (every cap is reached before).
MAX_DOUBLINGS = 10


def backoff(failures: int, *, first: float, cap: float) -> float:
    """``first`` after no failure yet, doubled for each failure in a row, never more than ``cap``."""
    return float(min(cap, first * 2 ** min(max(failures, 0), MAX_DOUBLINGS)))
