"""CA keys in a real token: generated sign-only and non-extractable, found again only by their handle.

The protection checks open the token with python-pkcs11 directly, not through trusted-issuer's code,
so they judge what the token itself enforces.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pkcs11
import pkcs11.exceptions as p11err
import pytest
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from issuer.errors import IssuerError, PermanentError
from issuer.signer import worker
from issuer.signer.keys import Algorithm, KeyHandle
from issuer.signer.pool import SignerPool
from issuer.signer.token_capabilities import QUIRKS, ModuleQuirks
from issuer.tokens import PinSource, TokenConfig
from tests.conftest import TokenAbilities, unique_label

ALGORITHMS = list(Algorithm)


@pytest.fixture(scope="module")
def generated(
    pool: SignerPool, token_config: TokenConfig, token_can: TokenAbilities
) -> dict[Algorithm, KeyHandle]:
    """One key per algorithm the token can do (each test of one it cannot skips, naming why)."""
    return {
        a: pool.generate_key.blocking(token_config, a, unique_label(f"keys-{a.value}"))
        for a in ALGORITHMS
        if token_can(a)
    }


@pytest.fixture(scope="module")
def direct_session(token_config: TokenConfig, generated: dict[Algorithm, KeyHandle]) -> Iterator[Any]:
    """A python-pkcs11 session of the test process itself (its own PKCS#11 context, separate from the
    workers' processes)."""
    lib = pkcs11.lib(token_config.module)
    token = lib.get_token(token_label=token_config.token_label)
    with token.open(user_pin=token_config.pin.read()) as session:
        yield session


def _module_manufacturer(token: TokenConfig) -> str:
    return str(pkcs11.lib(token.module).manufacturer_id).strip()


def _quirks(token: TokenConfig) -> ModuleQuirks:
    """The quirk table's entry for the session token's module (each quirk is asserted where it shows)."""
    return QUIRKS.get(_module_manufacturer(token), ModuleQuirks())


def _private(session: Any, handle: KeyHandle) -> Any:
    return session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=bytes.fromhex(handle.key_id))


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=[a.value for a in ALGORITHMS])
def test_generated_key_is_sign_only_sensitive_and_never_extractable(
    algorithm: Algorithm, generated: dict[Algorithm, KeyHandle], direct_session: Any
) -> None:
    key = _private(direct_session, generated[algorithm])
    assert key[Attribute.TOKEN] is True
    assert key[Attribute.PRIVATE] is True
    assert key[Attribute.SENSITIVE] is True
    assert key[Attribute.EXTRACTABLE] is False
    assert key[Attribute.ALWAYS_SENSITIVE] is True
    assert key[Attribute.NEVER_EXTRACTABLE] is True
    assert key[Attribute.SIGN] is True
    for capability in (Attribute.DECRYPT, Attribute.UNWRAP, Attribute.DERIVE):
        assert key[capability] is False, capability


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=[a.value for a in ALGORITHMS])
def test_token_refuses_to_reveal_private_key_material(
    algorithm: Algorithm,
    generated: dict[Algorithm, KeyHandle],
    direct_session: Any,
    token_config: TokenConfig,
) -> None:
    key = _private(direct_session, generated[algorithm])
    secret_attributes = (
        [Attribute.PRIVATE_EXPONENT, Attribute.PRIME_1, Attribute.PRIME_2, Attribute.COEFFICIENT]
        if algorithm.family == "rsa"
        else [Attribute.VALUE]
    )
    # The quirk table says how the token refuses: "sensitive", or (tpm2-pkcs11) no such attribute at
    # all, the secret living in the TPM; either way no value comes back.
    refusal = (
        (p11err.AttributeSensitive, p11err.AttributeTypeInvalid)
        if _quirks(token_config).secret_attributes_absent
        else p11err.AttributeSensitive
    )
    for attribute in secret_attributes:
        with pytest.raises(refusal):
            key[attribute]


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=[a.value for a in ALGORITHMS])
def test_token_refuses_to_wrap_the_key_out(
    algorithm: Algorithm,
    generated: dict[Algorithm, KeyHandle],
    direct_session: Any,
    token_config: TokenConfig,
) -> None:
    key = _private(direct_session, generated[algorithm])
    try:
        wrapper = direct_session.generate_key(
            KeyType.AES, 256, template={Attribute.TOKEN: False, Attribute.WRAP: True}
        )
    except p11err.FunctionNotSupported:
        # tpm2-pkcs11 1.9 has no C_GenerateKey: no key can be made to wrap anything out with, and
        # it has no C_WrapKey either (which the worker's attempt below shows).
        assert _module_manufacturer(token_config) == "tpm2-software.github.io"
        return
    offered = direct_session.token.slot.get_mechanisms()
    with pytest.raises((p11err.KeyUnextractable, p11err.KeyNotWrappable)):
        if Mechanism.AES_KEY_WRAP_PAD in offered:
            wrapper.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD)
        else:  # opencryptoki 3.8.1 lists no AES key wrap
            wrapper.wrap_key(key, mechanism=Mechanism.AES_CBC_PAD, mechanism_param=bytes(16))


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=[a.value for a in ALGORITHMS])
def test_key_cannot_be_granted_decrypt_or_made_extractable_later(
    algorithm: Algorithm, generated: dict[Algorithm, KeyHandle], direct_session: Any
) -> None:
    key = _private(direct_session, generated[algorithm])
    for attribute, value in (
        (Attribute.EXTRACTABLE, True),
        (Attribute.DECRYPT, True),
        (Attribute.SENSITIVE, False),
    ):
        with pytest.raises(p11err.PKCS11Error):
            key[attribute] = value
    with pytest.raises(p11err.PKCS11Error):
        key.copy({Attribute.EXTRACTABLE: True, Attribute.TOKEN: False})


def test_worker_refusal_is_reported_in_our_vocabulary(
    pool: SignerPool, token_config: TokenConfig, generated: dict[Algorithm, KeyHandle]
) -> None:
    handle = next(iter(generated.values()))
    with pytest.raises(PermanentError) as refused:
        pool.call(worker.try_wrap_out, token_config, handle)
    assert refused.value.reason == "KeyUnextractable"
    secret = "PRIVATE_EXPONENT" if handle.algorithm.family == "rsa" else "VALUE"
    with pytest.raises(PermanentError) as sensitive:
        pool.call(worker.private_key_attribute, token_config, handle, secret)
    assert sensitive.value.reason == "AttributeSensitive"


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=[a.value for a in ALGORITHMS])
def test_handle_describes_the_key_and_lists_it(
    algorithm: Algorithm, generated: dict[Algorithm, KeyHandle], pool: SignerPool, token_config: TokenConfig
) -> None:
    handle = generated[algorithm]
    assert handle.algorithm is algorithm
    assert handle.token_label == token_config.token_label
    assert len(handle.key_id) == 32 and int(handle.key_id, 16) >= 0
    assert len(handle.public_key_sha256) == 64
    listed = {r.handle.key_label: r for r in pool.list_keys.blocking(token_config)}
    report = listed[handle.key_label]
    assert report.handle == handle
    assert report.sensitive and not report.extractable and report.never_extractable
    assert pool.find_key.blocking(token_config, handle.key_label) == handle
    assert pool.call(worker.verify_key, token_config, handle) == handle


def test_key_whose_public_key_does_not_match_the_recorded_fingerprint_is_refused(
    pool: SignerPool, token_config: TokenConfig, generated: dict[Algorithm, KeyHandle]
) -> None:
    forged = replace(next(iter(generated.values())), public_key_sha256="00" * 32)
    with pytest.raises(IssuerError) as refused:
        pool.call(worker.verify_key, token_config, forged)
    assert refused.value.reason == "KeyMismatch"


def test_handle_naming_another_keys_id_is_refused(
    pool: SignerPool, token_config: TokenConfig, generated: dict[Algorithm, KeyHandle]
) -> None:
    # The label of one key with the id of another: no such pair exists, so nothing is signed with either.
    first, second = list(generated.values())[:2]
    mixed = replace(first, key_id=second.key_id)
    with pytest.raises(IssuerError) as refused:
        pool.call(worker.verify_key, token_config, mixed)
    assert refused.value.reason == "KeyNotFound"


def test_handle_from_another_token_is_refused(
    pool: SignerPool, token_config: TokenConfig, generated: dict[Algorithm, KeyHandle]
) -> None:
    mine = next(iter(generated.values()))
    other = "1" * 16 if mine.token_serial != "1" * 16 else "2" * 16  # swtpm's serial is 16 zeros
    elsewhere = replace(mine, token_serial=other)
    with pytest.raises(IssuerError) as refused:
        pool.call(worker.verify_key, token_config, elsewhere)
    assert refused.value.reason == "TokenMismatch"


def test_a_label_names_one_key(
    pool: SignerPool, token_config: TokenConfig, token_can: TokenAbilities
) -> None:
    label = unique_label("once")
    pool.generate_key.blocking(token_config, token_can.default, label)
    with pytest.raises(PermanentError, match="already holds a key labelled"):
        pool.generate_key.blocking(token_config, token_can.default, label)


@pytest.mark.parametrize("label", ["", " leading-space", "a" * 129, "evil\nlabel", "-dash-first"])
def test_unsafe_labels_are_refused(
    pool: SignerPool, token_config: TokenConfig, token_can: TokenAbilities, label: str
) -> None:
    with pytest.raises(PermanentError, match="key label"):
        pool.generate_key.blocking(token_config, token_can.default, label)


def test_destroyed_key_is_gone_for_good(
    pool: SignerPool, token_config: TokenConfig, token_can: TokenAbilities
) -> None:
    handle = pool.generate_key.blocking(token_config, token_can.default, unique_label("doomed"))
    pool.destroy_key.blocking(token_config, handle)
    with pytest.raises(IssuerError) as gone:
        pool.call(worker.verify_key, token_config, handle)
    assert gone.value.reason == "KeyNotFound"
    assert handle.key_label not in {r.handle.key_label for r in pool.list_keys.blocking(token_config)}


def test_a_rejected_pin_is_not_tried_again_until_it_changes(tmp_path, token_config: TokenConfig) -> None:
    # Real tokens lock the user PIN after a few failed logins: a retry loop must not burn them.
    pin_file = tmp_path / "pin"
    pin_file.write_text("wrong-pin-1\n")
    wrong = replace(token_config, pin=PinSource(file=pin_file))
    with SignerPool(1) as own:
        with pytest.raises(IssuerError) as first:
            own.list_keys.blocking(wrong)
        assert first.value.reason == "PINIncorrect" and "not retried" not in first.value.message
        with pytest.raises(IssuerError) as second:
            own.list_keys.blocking(wrong)
        assert (
            second.value.reason == "PINIncorrect" and "not retried until it changes" in second.value.message
        )
        if token_config.pin.file:
            pin_file.write_text(token_config.pin.read() + "\n")
            assert own.list_keys.blocking(wrong)  # the right PIN in the same file works at once
