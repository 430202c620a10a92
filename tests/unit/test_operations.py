"""The signer's table of operations (``issuer.signer.operations``): no workers."""

from __future__ import annotations

import asyncio
import pickle
from typing import Any

import pytest

from issuer.signer.api import Operation, Signer
from issuer.tokens import TokenConfig
from tests.signers import RecordingSigner as Recording

TOKEN = TokenConfig(module="/nonexistent.so", token_label="t")


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
