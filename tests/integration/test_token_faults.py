"""A SoftHSM2 token seen from several worker processes while its files change under them.

Each test has its own SoftHSM2 token (its own ``SOFTHSM2_CONF``, set before its pools spawn), because
it moves the token's files about. The races these tests stand for (another process rewriting
token.object, or creating a key while this process indexes the token) cannot be timed from outside
SoftHSM2, so each test moves files to leave exactly the state such a race leaves behind.
"""

from __future__ import annotations

import functools
import shutil
import types
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from issuer.errors import IssuerError
from issuer.settings import DEFAULT_PKCS11_MODULE
from issuer.signer import hsm, token_storage, worker
from issuer.signer.devtoken import DevToken, init_dev_token
from issuer.signer.keys import Algorithm
from issuer.signer.pool import SignerPool
from issuer.tokens import PinSource, TokenConfig


@pytest.fixture
def own_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token_config: TokenConfig
) -> Iterator[tuple[DevToken, TokenConfig]]:
    if not token_storage.is_softhsm2(token_config.module):
        pytest.skip("moves SoftHSM2's token files about")
    token, _ = init_dev_token(tmp_path / "softhsm", f"faults-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("SOFTHSM2_CONF", str(token.config_file))  # for the pools spawned in the test
    yield (
        token,
        TokenConfig(
            module=DEFAULT_PKCS11_MODULE, token_label=token.label, pin=PinSource(file=token.pin_file)
        ),
    )


def _token_subdirectory(token: DevToken) -> Path:
    (found,) = [p for p in token.token_dir.iterdir() if p.is_dir()]
    return found


def _labels(pool: SignerPool, config: TokenConfig) -> list[str]:
    return [report.handle.key_label for report in pool.list_keys.blocking(config)]


# -- tasks run inside a worker process ------------------------------------------------------------------


def list_keys_while_the_token_comes_back(config: TokenConfig, token_dir: str, aside: str) -> tuple[int, int]:
    """The token's directory is away when this worker first opens it and is back by its first pause:
    what another process rewriting token.object looks like. Returns (pauses taken, keys listed)."""
    shutil.move(token_dir, aside)
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        if not Path(token_dir).exists():
            shutil.move(aside, token_dir)

    saved = worker.time
    worker.time = types.SimpleNamespace(sleep=pause)  # type: ignore[assignment]
    try:
        listed = worker.list_keys(config)
        return len(pauses), len(listed)
    finally:
        worker.time = saved
        if not Path(token_dir).exists():
            shutil.move(aside, token_dir)


def module_state_across_a_rescan(config: TokenConfig) -> tuple[bool, bool]:
    """Whether the module is initialised just after a rescan, and again after the next task."""
    worker.list_keys(config)
    worker.forget(config, rescan=True)
    after_rescan = hsm._MODULES[config.module].initialized
    worker.list_keys(config)
    return after_rescan, hsm._MODULES[config.module].initialized


# -- tests --------------------------------------------------------------------------------------------


def test_a_rescan_finalizes_the_module_and_the_next_task_initialises_it(
    own_token: tuple[DevToken, TokenConfig],
) -> None:
    _, config = own_token
    with SignerPool(1) as own:
        assert own.call(module_state_across_a_rescan, config) == (False, True)


def test_a_token_that_only_seems_missing_is_opened_after_a_rescan(
    own_token: tuple[DevToken, TokenConfig], tmp_path: Path
) -> None:
    token, config = own_token
    with SignerPool(1) as own:
        own.generate_key.blocking(config, Algorithm.ECDSA_P256, "seems-missing")
    with SignerPool(1) as fresh:  # no session yet: the worker must open the token
        pauses, listed = fresh.call(
            list_keys_while_the_token_comes_back,
            config,
            str(_token_subdirectory(token)),
            str(tmp_path / "aside"),
        )
    assert (pauses, listed) == (1, 1)


def test_a_token_that_stays_missing_is_reported_after_the_retries(
    own_token: tuple[DevToken, TokenConfig], tmp_path: Path
) -> None:
    token, config = own_token
    shutil.move(_token_subdirectory(token), tmp_path / "aside")
    with SignerPool(1) as own, pytest.raises(IssuerError) as missing:
        own.list_keys.blocking(config)
    assert missing.value.reason == "TokenNotFound"  # the storage directory is there: not a storage fault


def test_missing_token_storage_is_named_and_the_token_is_found_when_it_returns(
    own_token: tuple[DevToken, TokenConfig], tmp_path: Path
) -> None:
    token, config = own_token
    aside = tmp_path / "aside"
    with SignerPool(1) as own:
        own.generate_key.blocking(config, Algorithm.ECDSA_P256, "storage")
        token.token_dir.rename(aside)
        with SignerPool(1) as fresh, pytest.raises(IssuerError) as never_started:
            fresh.list_keys.blocking(config)  # its module cannot even initialise
        assert never_started.value.reason == "TokenStorageMissing"
        assert str(token.token_dir) in never_started.value.message
        assert "missing" in never_started.value.message
        # The started worker's session dies as a failing task would drop it; its module, finalized,
        # cannot initialise again while the storage is gone, and says so.
        own.call(functools.partial(worker.forget, rescan=True), config)
        with pytest.raises(IssuerError) as gone:
            own.list_keys.blocking(config)
        assert gone.value.reason == "TokenStorageMissing"
        aside.rename(token.token_dir)
        assert _labels(own, config) == ["storage"]


def test_a_key_another_worker_just_created_is_destroyed_not_reported_missing(
    own_token: tuple[DevToken, TokenConfig], tmp_path: Path
) -> None:
    # SoftHSM2 re-indexes a token in a process only when the token's generation counter changed since
    # that process last looked. A process that looks while another is still writing a new key's object
    # files takes the new generation without the new key, and misses the key until the next change:
    # seen in CI as deletionPolicy=Destroy leaving the key in the token, because the delete handler
    # took KeyNotFound for "already destroyed". Hiding the new key's files while the first worker
    # looks leaves exactly that state.
    token, config = own_token
    subdirectory = _token_subdirectory(token)
    aside = tmp_path / "aside"
    aside.mkdir()
    with SignerPool(1) as first, SignerPool(1) as second:
        assert _labels(first, config) == []
        before = set(subdirectory.iterdir())
        handle = second.generate_key.blocking(config, Algorithm.ECDSA_P256, "made-by-the-second")
        new_objects = [p for p in set(subdirectory.iterdir()) - before if p.suffix == ".object"]
        assert len(new_objects) == 2  # the public and the private key
        for path in new_objects:
            path.rename(aside / path.name)
        assert _labels(first, config) == []  # the first worker now holds the new generation, no key
        for path in new_objects:
            (aside / path.name).rename(path)
        first.destroy_key.blocking(config, handle)
        assert _labels(second, config) == []
        with pytest.raises(IssuerError) as gone:
            first.destroy_key.blocking(config, handle)
        assert gone.value.reason == "KeyNotFound"
