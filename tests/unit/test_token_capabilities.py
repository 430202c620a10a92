"""Pure decisions on what a token says: the protection read-back of a new key, and which mechanism signs.

The read-back runs in a worker process against a real token, where a misbehaving token cannot be faked;
these tables exercise the decision itself. The token that motivated it (opencryptoki 3.8.1, whose
C_UnwrapKey ignores CKA_SENSITIVE/CKA_EXTRACTABLE) cannot be reproduced here without that token.
"""

from __future__ import annotations

import pytest

from issuer.errors import IssuerError, Reason
from issuer.signer.keys import Algorithm
from issuer.signer.token_capabilities import (
    GENERATED_ONLY,
    MechanismInfo,
    SigningPlan,
    TokenTraits,
    algorithm_support,
    check_private_key_protection,
    signing_plan,
    unwrap_offered,
)

TOKEN = "Example Corp Model X token 'ci'"
TEMPLATE = {"CKA_SENSITIVE": True, "CKA_EXTRACTABLE": False, "CKA_SIGN": True, "CKA_DECRYPT": False}
GENERATED = {**TEMPLATE, **GENERATED_ONLY}
GOOD = {
    "CKA_SENSITIVE": True,
    "CKA_EXTRACTABLE": False,
    "CKA_SIGN": True,
    "CKA_DECRYPT": False,
    "CKA_ALWAYS_SENSITIVE": True,
    "CKA_NEVER_EXTRACTABLE": True,
}


@pytest.mark.parametrize(
    ("flags", "asked"),
    [
        pytest.param(GOOD, GENERATED, id="generated-key-as-asked"),
        pytest.param(GOOD, TEMPLATE, id="unwrapped-key-as-asked"),
        pytest.param(
            {**GOOD, "CKA_ALWAYS_SENSITIVE": False, "CKA_NEVER_EXTRACTABLE": False},
            TEMPLATE,
            id="unwrapped-key-never-always-sensitive-is-expected",
        ),
        pytest.param(
            {**GOOD, "CKA_ALWAYS_SENSITIVE": None}, TEMPLATE, id="unwrapped-key-unreadable-unasked-flag"
        ),
    ],
)
def test_accepts_a_key_as_protected_as_asked(flags: dict[str, bool | None], asked: dict[str, bool]) -> None:
    check_private_key_protection(flags, asked, TOKEN, "ca")


@pytest.mark.parametrize(
    ("flags", "asked", "named"),
    [
        pytest.param({**GOOD, "CKA_EXTRACTABLE": True}, GENERATED, "CKA_EXTRACTABLE=true", id="extractable"),
        pytest.param({**GOOD, "CKA_SENSITIVE": False}, GENERATED, "CKA_SENSITIVE=false", id="not-sensitive"),
        pytest.param(
            {**GOOD, "CKA_ALWAYS_SENSITIVE": False},
            GENERATED,
            "CKA_ALWAYS_SENSITIVE=false",
            id="generated-not-always-sensitive",
        ),
        pytest.param(
            {**GOOD, "CKA_NEVER_EXTRACTABLE": False},
            GENERATED,
            "CKA_NEVER_EXTRACTABLE=false",
            id="generated-not-never-extractable",
        ),
        pytest.param(
            {**GOOD, "CKA_SENSITIVE": False, "CKA_EXTRACTABLE": True, "CKA_ALWAYS_SENSITIVE": False},
            TEMPLATE,
            "CKA_EXTRACTABLE=true (asked false), CKA_SENSITIVE=false",
            id="unwrapped-template-ignored-as-opencryptoki-does",
        ),
        pytest.param({**GOOD, "CKA_DECRYPT": True}, TEMPLATE, "CKA_DECRYPT=true", id="granted-decrypt"),
        pytest.param(
            {**GOOD, "CKA_SENSITIVE": None}, TEMPLATE, "CKA_SENSITIVE=unreadable", id="asked-flag-unreadable"
        ),
        pytest.param(
            {k: v for k, v in GOOD.items() if k != "CKA_NEVER_EXTRACTABLE"},
            GENERATED,
            "CKA_NEVER_EXTRACTABLE=unreadable",
            id="asked-flag-missing",
        ),
    ],
)
def test_refuses_a_key_weaker_than_asked_naming_token_and_attribute(
    flags: dict[str, bool | None], asked: dict[str, bool], named: str
) -> None:
    with pytest.raises(IssuerError) as raised:
        check_private_key_protection(flags, asked, TOKEN, "mesh-ca")
    assert raised.value.reason == Reason.KEY_PROTECTION_REFUSED
    assert TOKEN in raised.value.message
    assert "'mesh-ca'" in raised.value.message
    assert named in raised.value.message
    assert "destroyed" in raised.value.message


def _info(low: int, high: int, *functions: str) -> MechanismInfo:
    return MechanismInfo(low, high, frozenset(functions))


# SoftHSM2 2.6.1's list, as `hsm probe` read it (the parts that matter here).
SOFTHSM2 = {
    "EC_KEY_PAIR_GEN": _info(112, 521, "generate_key_pair"),
    "ECDSA": _info(112, 521, "sign", "verify"),
    "RSA_PKCS_KEY_PAIR_GEN": _info(512, 16384, "generate_key_pair"),
    "RSA_PKCS": _info(512, 16384, "sign", "verify", "wrap", "unwrap"),
    "SHA256_RSA_PKCS": _info(512, 16384, "sign", "verify"),
    "RSA_PKCS_OAEP": _info(512, 16384, "wrap", "unwrap"),
    "AES_KEY_WRAP_PAD": _info(1, 2147483648, "wrap", "unwrap"),
    "EC_EDWARDS_KEY_PAIR_GEN": _info(256, 456, "generate_key_pair"),
    "EDDSA": _info(256, 456, "sign", "verify"),
}
# opencryptoki 3.8.1's soft token, as issue 17 reports it: RSA only, no hash-and-sign PKCS#1 v1.5.
OPENCRYPTOKI = {
    "RSA_PKCS_KEY_PAIR_GEN": _info(512, 4096, "generate_key_pair"),
    "RSA_PKCS": _info(512, 4096, "sign", "verify", "unwrap"),
    "RSA_PKCS_OAEP": _info(512, 4096, "unwrap"),
}
# A TPM through tpm2-pkcs11, as issue 17 reports it: hash-and-sign ECDSA, RSA up to 3072, no Ed25519.
TPM = {
    "EC_KEY_PAIR_GEN": _info(256, 384, "generate_key_pair"),
    "ECDSA": _info(256, 384, "sign"),
    "ECDSA_SHA256": _info(256, 384, "sign"),
    "RSA_PKCS_KEY_PAIR_GEN": _info(1024, 3072, "generate_key_pair"),
    "SHA256_RSA_PKCS": _info(1024, 3072, "sign"),
}


@pytest.mark.parametrize(
    ("mechanisms", "algorithm", "expected"),
    [
        pytest.param(SOFTHSM2, Algorithm.ECDSA_P256, ("ECDSA", True), id="softhsm2-p256-digest-here"),
        pytest.param(SOFTHSM2, Algorithm.ECDSA_P384, ("ECDSA", True), id="softhsm2-p384-digest-here"),
        pytest.param(
            SOFTHSM2, Algorithm.RSA_4096, ("SHA256_RSA_PKCS", False), id="softhsm2-rsa-hash-and-sign"
        ),
        pytest.param(SOFTHSM2, Algorithm.ED25519, ("EDDSA", False), id="softhsm2-ed25519"),
        pytest.param(TPM, Algorithm.ECDSA_P256, ("ECDSA_SHA256", False), id="tpm-prefers-hash-and-sign"),
        pytest.param(TPM, Algorithm.ECDSA_P384, ("ECDSA", True), id="tpm-p384-no-sha384-mechanism"),
        pytest.param(
            OPENCRYPTOKI, Algorithm.RSA_2048, ("RSA_PKCS", True), id="opencryptoki-rsa-over-digestinfo"
        ),
    ],
)
def test_chooses_the_signing_mechanism(
    mechanisms: dict[str, MechanismInfo], algorithm: Algorithm, expected: tuple[str, bool]
) -> None:
    support = algorithm_support(algorithm, mechanisms)
    assert support.usable, support.why_not
    assert (support.signing_mechanism, support.digest_here) == expected


@pytest.mark.parametrize(
    ("mechanisms", "algorithm", "why"),
    [
        pytest.param(
            TPM, Algorithm.RSA_4096, "no CKM_RSA_PKCS_KEY_PAIR_GEN for 4096-bit", id="tpm-no-rsa-4096"
        ),
        pytest.param(TPM, Algorithm.ED25519, "no CKM_EC_EDWARDS_KEY_PAIR_GEN", id="tpm-no-ed25519"),
        pytest.param(
            OPENCRYPTOKI, Algorithm.ECDSA_P256, "no CKM_ECDSA_SHA256 or CKM_ECDSA", id="opencryptoki-no-ec"
        ),
        pytest.param(
            {"EC_KEY_PAIR_GEN": _info(256, 521, "generate_key_pair"), "ECDSA": _info(256, 521, "verify")},
            Algorithm.ECDSA_P256,
            "no CKM_ECDSA_SHA256 or CKM_ECDSA for 256-bit",
            id="ecdsa-listed-for-verify-only",
        ),
    ],
)
def test_names_what_the_token_lacks(
    mechanisms: dict[str, MechanismInfo], algorithm: Algorithm, why: str
) -> None:
    support = algorithm_support(algorithm, mechanisms)
    assert not support.usable
    assert why in support.why_not


@pytest.mark.parametrize(
    ("mechanisms", "name", "offered"),
    [
        pytest.param(SOFTHSM2, "AES_KEY_WRAP_PAD", True, id="softhsm2-kwp"),
        pytest.param(OPENCRYPTOKI, "AES_KEY_WRAP_PAD", False, id="opencryptoki-no-kwp"),
        pytest.param(TPM, "RSA_PKCS_OAEP", False, id="tpm-no-unwrap"),
    ],
)
def test_unwrap_offered(mechanisms: dict[str, MechanismInfo], name: str, offered: bool) -> None:
    assert unwrap_offered(mechanisms, name) is offered


# -- signing plans and one token's traits ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("mechanisms", "algorithm", "hash_name", "pss", "expected"),
    [
        pytest.param(
            {**SOFTHSM2, "SHA384_RSA_PKCS": _info(512, 16384, "sign")},
            Algorithm.RSA_2048,
            "sha384",
            False,
            SigningPlan("SHA384_RSA_PKCS"),
            id="rsa-sha384-hash-and-sign",
        ),
        pytest.param(
            OPENCRYPTOKI,
            Algorithm.RSA_3072,
            "sha256",
            False,
            SigningPlan("RSA_PKCS", digest_here=True, digest_info=True),
            id="opencryptoki-pkcs1-digest-info",
        ),
        pytest.param(
            {**OPENCRYPTOKI, "RSA_PKCS_PSS": _info(512, 4096, "sign")},
            Algorithm.RSA_3072,
            "sha256",
            True,
            SigningPlan("RSA_PKCS_PSS", digest_here=True),
            id="opencryptoki-pss-over-digest",
        ),
        pytest.param(
            {**TPM, "SHA256_RSA_PKCS_PSS": _info(1024, 3072, "sign")},
            Algorithm.RSA_2048,
            "sha256",
            True,
            SigningPlan("SHA256_RSA_PKCS_PSS"),
            id="tpm-pss-hash-and-sign",
        ),
        pytest.param(
            {"ECDSA": _info(32, 48, "sign")},
            Algorithm.ECDSA_P384,
            "sha384",
            False,
            SigningPlan("ECDSA", True),
            id="ec-sizes-in-bytes",
        ),
        pytest.param(
            {"ECDSA": _info(0, 0, "sign")},
            Algorithm.ECDSA_P256,
            "sha256",
            False,
            SigningPlan("ECDSA", True),
            id="no-sizes-given",
        ),
        pytest.param(OPENCRYPTOKI, Algorithm.RSA_2048, "sha256", True, None, id="no-pss-at-all"),
    ],
)
def test_signing_plan(
    mechanisms: dict[str, MechanismInfo],
    algorithm: Algorithm,
    hash_name: str,
    pss: bool,
    expected: SigningPlan | None,
) -> None:
    assert signing_plan(algorithm, hash_name, pss, mechanisms) == expected


def _traits(
    mechanisms: dict[str, MechanismInfo], module: str = "SoftHSM", version: tuple[int, int] = (2, 40)
) -> TokenTraits:
    return TokenTraits(module, version, "Example Corp Model X token 'ci'", mechanisms)


def test_traits_refuse_an_algorithm_naming_the_token_and_what_it_offers() -> None:
    with pytest.raises(IssuerError) as refused:
        _traits(OPENCRYPTOKI, "IBM", (2, 20)).require(Algorithm.ECDSA_P256)
    assert refused.value.reason == Reason.MECHANISM_NOT_SUPPORTED
    message = refused.value.message
    assert "Example Corp Model X token 'ci' cannot hold ecdsa-p256" in message
    assert "no CKM_EC_KEY_PAIR_GEN" in message and "(rsa-2048, rsa-3072, rsa-4096)" in message
    _traits(OPENCRYPTOKI, "IBM", (2, 20)).require(Algorithm.RSA_4096)


def test_traits_plan_refuses_what_no_mechanism_signs() -> None:
    with pytest.raises(IssuerError) as refused:
        _traits(OPENCRYPTOKI).plan(Algorithm.RSA_2048, "sha256", True)
    assert "RSA-PSS" in refused.value.message and refused.value.reason == Reason.MECHANISM_NOT_SUPPORTED


def test_a_2_20_module_gets_no_copyable_and_quirks_follow_the_module() -> None:
    assert _traits(SOFTHSM2).omitted_attributes == frozenset()
    assert _traits(OPENCRYPTOKI, "IBM", (2, 20)).omitted_attributes == {"CKA_COPYABLE"}
    assert _traits(TPM, "tpm2-software.github.io").quirks.public_usage_left_to_token
    assert not _traits(SOFTHSM2).quirks.public_usage_left_to_token


def test_key_wraps_best_first() -> None:
    both = {
        "AES_KEY_WRAP_PAD": _info(16, 32, "unwrap"),
        "AES_CBC_PAD": _info(16, 32, "encrypt", "unwrap"),
    }
    assert _traits(both).key_wraps() == ("AES_KEY_WRAP_PAD", "AES_CBC_PAD")
    assert _traits({"AES_CBC_PAD": _info(16, 32, "unwrap")}).key_wraps() == ("AES_CBC_PAD",)
    assert _traits({"AES_CBC_PAD": _info(16, 32, "encrypt")}).key_wraps() == ()


def test_mechanism_flags_beyond_32_bits_are_garbage_not_functions() -> None:
    # SoftHSM2 2.6.1's CKM_AES_CBC_PAD as read here on two runs: its flags are an unzeroed struct's.
    assert MechanismInfo.read(16, 32, 140726795996136).functions == frozenset()
    assert MechanismInfo.read(16, 32, 94467573122032).functions == frozenset()
    assert MechanismInfo.read(16, 32, 0x60000).functions == {"wrap", "unwrap"}
    assert MechanismInfo.read(256, 521, 0x1800 | 0x2000).functions == {"sign", "verify"}
