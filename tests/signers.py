"""A signer with no workers behind it, for tests of what wraps or calls a ``Signer``."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Mapping
from typing import Any, TypeVar

from issuer.signer.api import Operation, Signer

R = TypeVar("R")


class RecordingSigner(Signer):
    """Answers every operation at once with its name, and remembers what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def dispatch(
        self, operation: Operation[Any, R], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> concurrent.futures.Future[R]:
        self.asked.append((operation.name, args, dict(kwargs)))
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()
        done.set_result(operation.name)
        return done

    def close(self) -> None:
        pass
