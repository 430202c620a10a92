"""Each quirk of the table in ``issuer/signer/token_capabilities.py``, and each template adjustment made
from what a token says, shown on the token that has it; then that our code path copes.

One session runs on one token (TRUSTED_ISSUER_TEST_TOKEN), and `.ci/run` runs this file on all three:
a case for another token's module skips naming the token it needs. The raw PKCS#11 calls here are the
test process's own python-pkcs11 context, beside the signing workers' processes.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pkcs11
import pkcs11.exceptions as p11err
import pytest
from cryptography.hazmat.primitives import padding as block_padding
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.constants import DEFAULT
from pkcs11.util.ec import encode_named_curve_parameters

from issuer.errors import IssuerError
from issuer.signer import key_wrapping
from issuer.signer.hsm import PRIVATE_KEY_TEMPLATE, PUBLIC_KEY_TEMPLATE
from issuer.signer.keys import Algorithm
from issuer.signer.pool import SignerPool
from issuer.signer.token_capabilities import QUIRKS
from issuer.tokens import TokenConfig
from tests.conftest import TokenAbilities, unique_label

TPM2_PKCS11 = "tpm2-software.github.io"
OPENCRYPTOKI = "IBM"


@pytest.fixture(scope="module")
def raw(token_config: TokenConfig) -> Iterator[tuple[Any, str]]:
    """A logged-in session of the test process, and the module's manufacturer."""
    lib = pkcs11.lib(token_config.module)
    token = lib.get_token(token_label=token_config.token_label)
    with token.open(rw=True, user_pin=token_config.pin.read()) as session:
        yield session, str(lib.manufacturer_id).strip()


def _only_on(raw: tuple[Any, str], manufacturer: str, what: str) -> Any:
    session, found = raw
    if found != manufacturer:
        pytest.skip(f"{what} shows on the module by {manufacturer!r}; this session's is {found!r}")
    return session


def _ec_public(template: dict[Attribute, Any]) -> dict[Attribute, Any]:
    return {**template, Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}


def test_every_quirk_entry_names_its_module_and_says_why() -> None:
    assert set(QUIRKS) == {TPM2_PKCS11}
    for quirks in QUIRKS.values():
        assert quirks.note and any(
            (
                quirks.public_usage_left_to_token,
                quirks.serialize_object_creation,
                quirks.objects_loaded_at_initialize,
                quirks.secret_attributes_absent,
            )
        )


def test_tpm2_pkcs11_refuses_an_explicit_public_key_usage(
    raw: tuple[Any, str], pool: SignerPool, token_config: TokenConfig
) -> None:
    session = _only_on(raw, TPM2_PKCS11, "public_usage_left_to_token")
    label = unique_label("quirk-usage")
    with pytest.raises(p11err.GeneralError):  # "User specified and TPM specified attr mismatch"
        session.generate_keypair(
            KeyType.EC,
            0,
            mechanism=Mechanism.EC_KEY_PAIR_GEN,
            public_template=_ec_public({**PUBLIC_KEY_TEMPLATE, Attribute.LABEL: label}),
            private_template={**PRIVATE_KEY_TEMPLATE, Attribute.LABEL: label},
            store=True,
        )
    # Our template leaves the public key's usage to the token, and the private key is as asked.
    handle = pool.generate_key.blocking(token_config, Algorithm.ECDSA_P256, label)
    [report] = [r for r in pool.list_keys.blocking(token_config) if r.handle == handle]
    assert (
        report.sensitive and not report.extractable and report.always_sensitive and report.never_extractable
    )


def test_tpm2_pkcs11_loads_objects_once_per_process_and_our_workers_see_each_others_keys(
    raw: tuple[Any, str], pool: SignerPool, token_config: TokenConfig
) -> None:
    session = _only_on(raw, TPM2_PKCS11, "objects_loaded_at_initialize")
    label = unique_label("quirk-seen")
    handle = pool.generate_key.blocking(token_config, Algorithm.ECDSA_P256, label)
    # This process loaded the module before the key existed: it never sees it.
    assert list(session.get_objects({Attribute.LABEL: label})) == []
    # Both workers of the pool do: each answer comes from either, eight times over.
    for _ in range(8):
        assert pool.find_key.blocking(token_config, label) == handle
    pool.destroy_key.blocking(token_config, handle)
    for _ in range(8):
        assert pool.find_key_or_none.blocking(token_config, label) is None


def test_tpm2_pkcs11_key_creation_from_both_workers_at_once(
    raw: tuple[Any, str], pool: SignerPool, token_config: TokenConfig
) -> None:
    _only_on(raw, TPM2_PKCS11, "serialize_object_creation")

    async def make(count: int) -> list[Any]:
        return list(
            await asyncio.gather(
                *(
                    pool.generate_key(token_config, Algorithm.ECDSA_P256, unique_label("quirk-lock"))
                    for _ in range(count)
                )
            )
        )

    # Unserialised, its SQLite store answers "database is locked" to one of two writers.
    made = asyncio.run(make(6))
    assert len({h.key_id for h in made}) == 6
    listed = {r.handle.key_label for r in pool.list_keys.blocking(token_config)}
    assert {h.key_label for h in made} <= listed


def test_a_pkcs11_2_20_module_gets_no_copyable_and_still_protected_keys(
    raw: tuple[Any, str], pool: SignerPool, token_config: TokenConfig
) -> None:
    session = _only_on(raw, OPENCRYPTOKI, "a PKCS#11 2.20 module (no CKA_COPYABLE)")
    label = unique_label("quirk-copyable")
    with pytest.raises(p11err.AttributeTypeInvalid):
        session.generate_keypair(
            KeyType.RSA,
            2048,
            mechanism=Mechanism.RSA_PKCS_KEY_PAIR_GEN,
            public_template={**PUBLIC_KEY_TEMPLATE, Attribute.PUBLIC_EXPONENT: b"\x01\x00\x01"},
            private_template={**PRIVATE_KEY_TEMPLATE, Attribute.LABEL: label},
            store=False,
        )
    handle = pool.generate_key.blocking(token_config, Algorithm.RSA_2048, label)
    [report] = [r for r in pool.list_keys.blocking(token_config) if r.handle == handle]
    assert (
        report.sensitive and not report.extractable and report.always_sensitive and report.never_extractable
    )


def test_opencryptoki_signs_pkcs1_through_the_raw_mechanism_over_a_digest_info(
    raw: tuple[Any, str], token_can: TokenAbilities
) -> None:
    _only_on(raw, OPENCRYPTOKI, "signing without CKM_SHA256_RSA_PKCS")
    rsa_2048 = token_can.support[Algorithm.RSA_2048]
    assert "SHA256_RSA_PKCS" not in token_can.probe.mechanisms
    assert rsa_2048.signing_mechanism == "RSA_PKCS" and rsa_2048.digest_here
    # test_issuance.py verifies the certificates so signed with openssl; here, the reason it must.


def _software_rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_opencryptoki_unwrap_ignores_protection_and_our_import_refuses_it(
    raw: tuple[Any, str], pool: SignerPool, token_config: TokenConfig
) -> None:
    session = _only_on(raw, OPENCRYPTOKI, "C_UnwrapKey ignoring CKA_SENSITIVE/CKA_EXTRACTABLE")
    # The bug, reproduced with the token alone: an AES key of known value unwraps a PKCS#8 RSA key
    # under a template asking SENSITIVE and not EXTRACTABLE, and the private exponent reads back.
    value, iv = secrets.token_bytes(32), secrets.token_bytes(16)
    software = _software_rsa()
    pkcs8 = software.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    padder = block_padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(value), modes.CBC(iv)).encryptor()
    blob = encryptor.update(padder.update(pkcs8) + padder.finalize()) + encryptor.finalize()
    aes = session.create_object(
        {
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.KEY_TYPE: KeyType.AES,
            Attribute.VALUE: value,
            Attribute.TOKEN: False,
            Attribute.UNWRAP: True,
        }
    )
    unwrapped = aes.unwrap_key(
        ObjectClass.PRIVATE_KEY,
        KeyType.RSA,
        blob,
        mechanism=Mechanism.AES_CBC_PAD,
        mechanism_param=iv,
        template={
            Attribute.TOKEN: False,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.SIGN: True,
            Attribute.ENCRYPT: DEFAULT,
            Attribute.VERIFY: DEFAULT,
            Attribute.WRAP: DEFAULT,
        },
    )
    try:
        exponent = int.from_bytes(bytes(unwrapped[Attribute.PRIVATE_EXPONENT]))
        assert exponent == software.private_numbers().d, "the token leaked a wrong exponent?"
        assert unwrapped[Attribute.SENSITIVE] is False
    finally:
        unwrapped.destroy()
        aes.destroy()

    # Our import reads the new key back and refuses it, leaving nothing under the label.
    wrapping = pool.generate_wrapping_key.blocking(token_config, unique_label("quirk-wrapping"))
    assert wrapping.parameters and all("AES-CBC-PAD" in p for p in wrapping.parameters), wrapping.parameters
    public = key_wrapping.load_wrapping_public_key(wrapping.public_pem.encode())
    envelope = key_wrapping.wrap_private_key(
        public, _software_rsa(), hash_name="sha256", key_wrap="aes-cbc-pad"
    )
    label = unique_label("quirk-import")
    with pytest.raises(IssuerError) as refused:
        pool.unwrap_key.blocking(token_config, wrapping.handle, envelope, label)
    assert refused.value.reason == "KeyProtectionRefused"
    assert "IBM" in refused.value.message and "CKA_SENSITIVE=false" in refused.value.message
    assert pool.find_key_or_none.blocking(token_config, label) is None
    pool.destroy_wrapping_key.blocking(token_config, wrapping.handle)


def test_an_algorithm_the_token_lacks_is_refused_naming_the_token(
    pool: SignerPool, token_config: TokenConfig, token_can: TokenAbilities
) -> None:
    lacking = [a for a in Algorithm if not token_can(a)]
    if not lacking:
        pytest.skip("this token does every algorithm we offer")
    with pytest.raises(IssuerError) as refused:
        pool.generate_key.blocking(token_config, lacking[0], unique_label("quirk-lacks"))
    assert refused.value.reason == "MechanismNotSupported"
    assert token_can.probe.model in refused.value.message and lacking[0].value in refused.value.message


def test_the_token_our_ci_names_is_the_one_under_test(raw: tuple[Any, str]) -> None:
    expected = {"softhsm": "SoftHSM", "tpm": TPM2_PKCS11, "opencryptoki": OPENCRYPTOKI}
    wanted = os.environ.get("TRUSTED_ISSUER_TEST_TOKEN", "softhsm")
    if os.environ.get("PKCS11_MODULE"):
        pytest.skip("PKCS11_MODULE names another module")
    assert raw[1] == expected[wanted]
