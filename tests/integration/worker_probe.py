"""Tasks that look inside a signing worker process. This module imports nothing itself, so running one
of its tasks leaves the worker's modules as they were."""

from __future__ import annotations

import sys


def loaded_modules() -> list[str]:
    """Every module the worker process has imported."""
    return sorted(sys.modules)
