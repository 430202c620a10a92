"""The signer's table of operations (``issuer.signer.operations``) and the fence that wraps it: no workers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import pickle
from collections.abc import Mapping
from typing import Any, TypeVar

import pytest

from issuer.controller.replica.election import FencedSigner, Leadership
from issuer.errors import RetryableError
from issuer.signer.api import Operation, Signer
from issuer.tokens import TokenConfig

R = TypeVar("R")
TOKEN = TokenConfig(module="/nonexistent.so", token_label="t")


class Recording(Signer):
    """Answers every operation at once with what it was asked."""

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


def entries() -> dict[str, Operation[Any, Any]]:
    return {name: value for name, value in vars(Signer).items() if isinstance(value, Operation)}


@pytest.mark.parametrize("name", sorted(entries()))
def test_every_entry_is_a_worker_task_that_pickles_by_name(name: str) -> None:
    task = entries()[name].task
    assert task.__module__ == "issuer.signer.worker"
    assert pickle.loads(pickle.dumps(task)) is task  # noqa: S301  # our own bytes


def test_awaited_and_blocking_forms_ask_the_same() -> None:
    signer = Recording()
    assert signer.find_key.blocking(TOKEN, "label") == "find_key"
    assert asyncio.run(_awaited(signer)) == "find_key"
    assert signer.asked == [("find_key", (TOKEN, "label"), {}), ("find_key", (TOKEN, "label"), {})]


async def _awaited(signer: Signer) -> Any:
    return await signer.find_key(TOKEN, "label")


def test_keyword_arguments_reach_the_signer() -> None:
    signer = Recording()
    signer.create_ca_csr.blocking(TOKEN, None, "CN=x", path_length=0, rsa_pss=True)  # type: ignore[arg-type]
    assert signer.asked[-1][2] == {"path_length": 0, "rsa_pss": True}


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
