"""The offline wrap (``issuer.signer.key_wrapping``), its envelope, and the attestation slot: pure code.

The round trips open each envelope in software with the wrapping private key, which is exactly what
the token does with C_UnwrapKey (RSA-OAEP, then AES-KWP); the integration tests do it in SoftHSM2.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import padding as block_padding
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding

from issuer import attestation
from issuer.attestation import Evidence, NoAttestation, report_data
from issuer.errors import ConfigurationError, IssuerError
from issuer.profiles import load_profiles
from issuer.settings import Settings
from issuer.signer import key_wrapping
from issuer.signer.keys import Algorithm, KeyHandle, WrappingKey, public_key_fingerprint


@cache
def wrapping_private() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 3072)


@cache
def ca_key(kind: str) -> key_wrapping.PrivateKey:
    if kind.startswith("rsa"):
        return rsa.generate_private_key(65537, int(kind.split("-")[1]))
    return ec.generate_private_key(ec.SECP384R1() if kind == "ecdsa-p384" else ec.SECP256R1())


def _der(key: key_wrapping.PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _open_in_software(blob: bytes) -> bytes:
    """What the token does: OAEP-decrypt the AES key, AES-KWP-unwrap the PKCS#8."""
    data = json.loads(blob)
    digest = key_wrapping.oaep_hash(data["oaepHash"])
    aes = wrapping_private().decrypt(
        base64.b64decode(data["wrappedAESKey"]),
        padding.OAEP(mgf=padding.MGF1(digest), algorithm=digest, label=None),
    )
    return aes_key_unwrap_with_padding(aes, base64.b64decode(data["wrappedKey"]))


KINDS = ["rsa-2048", "rsa-3072", "rsa-4096", "ecdsa-p256", "ecdsa-p384"]


@pytest.mark.parametrize("hash_name", key_wrapping.OAEP_HASHES)
@pytest.mark.parametrize("kind", KINDS)
def test_wrap_round_trip_and_envelope_names_everything(kind: str, hash_name: str) -> None:
    key = ca_key(kind)
    blob = key_wrapping.wrap_private_key(wrapping_private().public_key(), key, hash_name=hash_name)
    assert _open_in_software(blob) == _der(key)
    parsed = key_wrapping.parse_wrapped_key(blob)
    assert parsed.algorithm is Algorithm(kind)
    assert parsed.oaep_hash == hash_name
    assert parsed.wrapping_key_sha256 == public_key_fingerprint(wrapping_private().public_key())
    assert parsed.public_key_sha256 == public_key_fingerprint(key.public_key())
    assert parsed.parameter == f"RSA-OAEP-{hash_name.upper()}+AES-KWP-256"
    # No clear key in the envelope, in any encoding.
    der = _der(key)
    for encoding in (der, base64.b64encode(der), der.hex().encode()):
        assert encoding not in blob
    assert b"PRIVATE KEY" not in blob


def test_two_wraps_of_one_key_share_no_ciphertext() -> None:
    """A fresh AES key per wrap: the same CA key never gives the same bytes twice."""
    key = ca_key("ecdsa-p256")
    first = key_wrapping.parse_wrapped_key(
        key_wrapping.wrap_private_key(wrapping_private().public_key(), key)
    )
    second = key_wrapping.parse_wrapped_key(
        key_wrapping.wrap_private_key(wrapping_private().public_key(), key)
    )
    assert first.wrapped_aes_key != second.wrapped_aes_key
    assert first.wrapped_private_key != second.wrapped_private_key


def _pem(key: object, password: bytes | None = None) -> bytes:
    assert hasattr(key, "private_bytes")
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


UNSUPPORTED: list[tuple[str, Callable[[], object], str]] = [
    ("ed25519", ed25519.Ed25519PrivateKey.generate, "Ed25519"),
    ("ecdsa-p521", lambda: ec.generate_private_key(ec.SECP521R1()), "secp521r1"),
    ("ecdsa-secp256k1", lambda: ec.generate_private_key(ec.SECP256K1()), "secp256k1"),
    ("rsa-1024", lambda: rsa.generate_private_key(65537, 1024), "RSA-1024"),
    ("dsa-2048", lambda: dsa.generate_private_key(2048), "DSA"),
]


@pytest.mark.parametrize(("case", "make", "named"), UNSUPPORTED, ids=[u[0] for u in UNSUPPORTED])
def test_unsupported_ca_keys_are_refused_before_wrapping(
    case: str, make: Callable[[], object], named: str
) -> None:
    with pytest.raises(IssuerError) as caught:
        key_wrapping.load_ca_private_key(_pem(make()))
    assert caught.value.reason == "UnsupportedKeyType"
    assert named in caught.value.message
    assert "rsa-2048" in caught.value.message  # says what would be accepted


def test_private_key_formats_and_passphrases() -> None:
    key = ca_key("ecdsa-p256")
    der = _der(key)
    traditional = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    for data in (_pem(key), der, traditional):
        loaded = key_wrapping.load_ca_private_key(data)
        assert public_key_fingerprint(loaded.public_key()) == public_key_fingerprint(key.public_key())
    encrypted = _pem(key, b"correct horse")
    assert key_wrapping.load_ca_private_key(encrypted, b"correct horse") is not None
    with pytest.raises(ConfigurationError, match="encrypted"):
        key_wrapping.load_ca_private_key(encrypted)
    with pytest.raises(ConfigurationError, match="wrong passphrase"):
        key_wrapping.load_ca_private_key(encrypted, b"wrong")
    with pytest.raises(ConfigurationError, match="not encrypted"):
        key_wrapping.load_ca_private_key(_pem(key), b"unneeded")


def test_unreadable_key_is_refused_without_quoting_it() -> None:
    garbage = b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0IHNlY3JldCBzZWNyZXQ=\n-----END PRIVATE KEY-----\n"
    with pytest.raises(ConfigurationError) as caught:
        key_wrapping.load_ca_private_key(garbage)
    assert "c2VjcmV0" not in caught.value.message and "secret" not in caught.value.message


@pytest.mark.parametrize(
    ("case", "pem", "fragment"),
    [
        ("rsa-2048-too-small", lambda: rsa.generate_private_key(65537, 2048).public_key(), "at least 3072"),
        ("ec-not-rsa", lambda: ec.generate_private_key(ec.SECP256R1()).public_key(), "RSA public key"),
        ("not-pem", lambda: None, "not a PEM public key"),
    ],
    ids=["rsa-2048-too-small", "ec-not-rsa", "not-pem"],
)
def test_wrapping_key_is_checked(case: str, pem: Callable[[], object], fragment: str) -> None:
    public = pem()
    data = (
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined]
        if public is not None
        else b"nope"
    )
    with pytest.raises(ConfigurationError, match=fragment):
        key_wrapping.load_wrapping_public_key(data)


def _envelope(**changes: object) -> bytes:
    blob = key_wrapping.wrap_private_key(wrapping_private().public_key(), ca_key("ecdsa-p256"))
    data = json.loads(blob)
    for field, value in changes.items():
        if value is None:
            data.pop(field)
        else:
            data[field] = value
    return json.dumps(data).encode()


def _other_public_pem() -> str:
    other = ca_key("ecdsa-p384").public_key()
    return other.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


ENVELOPE_DEFECTS: list[tuple[str, Callable[[], bytes], str, str]] = [
    ("not-json", lambda: b"\x00\x01binary", "WrappedKeyInvalid", "not JSON"),
    ("truncated-json", lambda: _envelope()[:100], "WrappedKeyInvalid", "truncated"),
    ("another-format", lambda: _envelope(format="kms/v1"), "WrappedKeyInvalid", "not a trusted-issuer"),
    ("future-version", lambda: _envelope(version=2), "WrappedKeyInvalid", "version 2"),
    ("field-missing", lambda: _envelope(wrappedAESKey=None), "WrappedKeyInvalid", "lacks wrappedAESKey"),
    ("not-base64", lambda: _envelope(wrappedKey="@@@@"), "WrappedKeyInvalid", "not base64"),
    (
        "kwp-truncated",
        lambda: _envelope(wrappedKey=base64.b64encode(b"x" * 20).decode()),
        "WrappedKeyInvalid",
        "truncated",
    ),
    ("unknown-oaep-hash", lambda: _envelope(oaepHash="md5"), "WrappedKeyInvalid", "md5"),
    (
        "public-key-swapped",
        lambda: _envelope(publicKey=_other_public_pem()),
        "WrappedKeyInvalid",
        "another kind",
    ),
    (
        "fingerprint-wrong",
        lambda: _envelope(publicKeySHA256="00" * 32),
        "WrappedKeyInvalid",
        "does not match",
    ),
    ("ed25519", lambda: _envelope(algorithm="ed25519"), "UnsupportedKeyType", "ed25519"),
    ("unknown-algorithm", lambda: _envelope(algorithm="rsa-1024"), "UnsupportedKeyType", "rsa-1024"),
    ("too-large", lambda: b" " * (key_wrapping.MAX_ENVELOPE_BYTES + 1), "WrappedKeyInvalid", "more than any"),
]


@pytest.mark.parametrize(
    ("case", "blob", "reason", "fragment"), ENVELOPE_DEFECTS, ids=[d[0] for d in ENVELOPE_DEFECTS]
)
def test_envelope_defects_are_named(case: str, blob: Callable[[], bytes], reason: str, fragment: str) -> None:
    with pytest.raises(IssuerError) as caught:
        key_wrapping.parse_wrapped_key(blob())
    assert caught.value.reason == reason
    assert fragment in caught.value.message, caught.value.message


def test_blob_for_another_wrapping_key_is_named() -> None:
    parsed = key_wrapping.parse_wrapped_key(_envelope())
    key_wrapping.check_wrapped_for(parsed, public_key_fingerprint(wrapping_private().public_key()))
    with pytest.raises(IssuerError) as caught:
        key_wrapping.check_wrapped_for(parsed, "ab" * 32)
    assert caught.value.reason == "WrappedForAnotherKey"
    assert "abababababababab" in caught.value.message
    with pytest.raises(IssuerError) as refused:
        key_wrapping.check_wrapped_for(
            key_wrapping.parse_wrapped_key(
                key_wrapping.wrap_private_key(
                    wrapping_private().public_key(), ca_key("ecdsa-p256"), hash_name="sha256"
                )
            ),
            public_key_fingerprint(wrapping_private().public_key()),
            ("RSA-OAEP-SHA1+AES-KWP-256",),
        )
    assert refused.value.reason == "WrapParameterNotSupported"
    assert "--oaep-hash sha1 --key-wrap aes-kwp" in refused.value.message


# -- attestation -------------------------------------------------------------------------------------


def test_none_provider_states_there_is_no_evidence() -> None:
    spki = (
        wrapping_private()
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    evidence = attestation.provider("none").evidence(spki, "cd" * 32)
    assert isinstance(attestation.provider("none"), NoAttestation)
    assert evidence.hardware is False
    assert evidence.data == ""
    assert evidence.format == "none"
    assert evidence.binds_sha256 == "cd" * 32
    assert evidence.statement.startswith("no hardware evidence")
    assert Evidence.from_status(evidence.to_status()) == evidence
    assert "data" not in evidence.to_status()


def test_report_data_binds_exactly_one_key() -> None:
    one = report_data(b"spki one")
    assert len(one) == 64 and one[32:] == bytes(32)
    assert one != report_data(b"spki two")
    assert one == report_data(b"spki one")


def test_provider_registry_refuses_unknown_and_duplicate_names() -> None:
    with pytest.raises(ConfigurationError, match="unknown attestation provider 'sgx-dcap'"):
        attestation.provider("sgx-dcap")
    with pytest.raises(ConfigurationError, match="already registered"):
        attestation.register_provider("none", NoAttestation)


def test_wrapping_key_status_round_trip() -> None:
    handle = KeyHandle("t", "s", "wk", "00" * 16, Algorithm.RSA_3072, "ef" * 32)
    evidence = NoAttestation().evidence(b"", "ef" * 32)
    wrapping = WrappingKey(handle, "PEM", "ef" * 32, ("RSA-OAEP-SHA1+AES-KWP-256",), evidence)
    status = wrapping.to_status()
    assert status["parameters"] == ["RSA-OAEP-SHA1+AES-KWP-256"]
    assert status["attestation"]["provider"] == "none"
    assert WrappingKey.from_status(json.loads(json.dumps(status))) == wrapping
    with pytest.raises(IssuerError):
        WrappingKey.from_status({"publicKeyPEM": "x"})


def test_profiles_carry_an_attestation_provider(tmp_path: Path) -> None:
    path = tmp_path / "profiles.yaml"
    path.write_text("profiles:\n  soft:\n    tokenLabel: t\n    pinFile: /p\n")
    profile = load_profiles(path, Settings.from_env()).get("soft")
    assert profile.attestation == "none" == profile.token.attestation
    path.write_text("profiles:\n  soft:\n    tokenLabel: t\n    pinFile: /p\n    attestation: sgx-dcap\n")
    with pytest.raises(ConfigurationError, match="profile 'soft': unknown attestation provider 'sgx-dcap'"):
        load_profiles(path, Settings.from_env())


# -- the CLI's --expect-sha256 is mandatory ----------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "fragment"),
    [
        (None, "--expect-sha256 is required"),
        ("  ", "second channel"),
        ("ab" * 32, "do not wrap for it"),
    ],
    ids=["absent", "blank", "another-key"],
)
def test_cli_wraps_only_for_a_fingerprint_from_a_second_channel(
    expected: str | None, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from issuer.__main__ import EXIT_BAD_INPUT, main

    wk = tmp_path / "wk.pem"
    wk.write_bytes(
        wrapping_private()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    key = tmp_path / "ca.key"
    key.write_bytes(
        ca_key("ecdsa-p256").private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    out = tmp_path / "wrapped-key.bin"
    flags = ["provision", "wrap", "--wrapping-key", str(wk), "--key", str(key), "--out", str(out)]
    if expected is not None:
        flags += ["--expect-sha256", expected]
    assert main(flags) == EXIT_BAD_INPUT
    printed = capsys.readouterr()
    lines = printed.err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], printed.err
    if expected is None or not expected.strip():
        # It says where the fingerprint must come from: the token's node, not the issuer's status.
        assert "`trusted-issuer hsm keys`" in lines[0] and "never from the issuer's status" in lines[0]
    assert printed.out == "" and not out.exists()
    # The right fingerprint, as `hsm keys` prints it (any case), wraps.
    right = public_key_fingerprint(wrapping_private().public_key()).upper()
    assert main([*flags[:8], "--expect-sha256", right]) == 0
    assert key_wrapping.parse_wrapped_key(out.read_bytes()).wrapping_key_sha256 == right.lower()


# -- AES-CBC-PAD, for tokens without AES key wrap (opencryptoki) ----------------------------------------


def _open_cbc_in_software(blob: bytes) -> bytes:
    """What a token does with an AES-CBC-PAD envelope, done here with the wrapping private key."""
    data = json.loads(blob)
    digest = key_wrapping.oaep_hash(data["oaepHash"])
    aes = wrapping_private().decrypt(
        base64.b64decode(data["wrappedAESKey"]),
        padding.OAEP(mgf=padding.MGF1(digest), algorithm=digest, label=None),
    )
    decryptor = Cipher(algorithms.AES(aes), modes.CBC(base64.b64decode(data["iv"]))).decryptor()
    padded = decryptor.update(base64.b64decode(data["wrappedKey"])) + decryptor.finalize()
    unpadder = block_padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


@pytest.mark.parametrize("kind", ["rsa-2048", "ecdsa-p256"])
def test_cbc_pad_round_trip_names_its_construction(kind: str) -> None:
    key = ca_key(kind)
    blob = key_wrapping.wrap_private_key(
        wrapping_private().public_key(), key, hash_name="sha256", key_wrap="aes-cbc-pad"
    )
    assert _open_cbc_in_software(blob) == _der(key)
    parsed = key_wrapping.parse_wrapped_key(blob)
    assert parsed.parameter == "RSA-OAEP-SHA256+AES-CBC-PAD-256"
    assert parsed.key_wrap_mechanism == "AES_CBC_PAD" and len(parsed.iv) == 16
    assert b"PRIVATE KEY" not in blob and _der(key) not in blob


def test_an_envelope_without_key_wrap_is_aes_kwp() -> None:
    # Envelopes written before AES-CBC-PAD existed name no key wrap: they are AES-KWP.
    data = json.loads(_envelope())
    del data["keyWrap"]
    parsed = key_wrapping.parse_wrapped_key(json.dumps(data).encode())
    assert parsed.key_wrap == "aes-kwp" and parsed.key_wrap_mechanism == "AES_KEY_WRAP_PAD"


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        pytest.param({"keyWrap": "des3-cbc"}, "unknown key wrap 'des3-cbc'", id="unknown-key-wrap"),
        pytest.param({"iv": None}, "needs a 16-byte iv", id="no-iv"),
        pytest.param({"iv": "AAAA"}, "needs a 16-byte iv", id="short-iv"),
        pytest.param({"iv": "not base64!"}, "iv that is not base64", id="iv-not-base64"),
        pytest.param({"wrappedKey": "AAAAAAAAAAA="}, "16-byte blocks", id="cbc-truncated"),
    ],
)
def test_cbc_pad_envelope_defects_are_named(change: dict[str, object], fragment: str) -> None:
    data = json.loads(
        key_wrapping.wrap_private_key(
            wrapping_private().public_key(), ca_key("rsa-2048"), key_wrap="aes-cbc-pad"
        )
    )
    for name, value in change.items():
        if value is None:
            del data[name]
        else:
            data[name] = value
    with pytest.raises(IssuerError) as caught:
        key_wrapping.parse_wrapped_key(json.dumps(data).encode())
    assert caught.value.reason == "WrappedKeyInvalid"
    assert fragment in caught.value.message


def test_a_refused_construction_names_the_flags_of_one_the_token_takes() -> None:
    parsed = key_wrapping.parse_wrapped_key(_envelope())  # sha1 + AES-KWP
    with pytest.raises(IssuerError) as refused:
        key_wrapping.check_wrapped_for(
            parsed,
            public_key_fingerprint(wrapping_private().public_key()),
            ("RSA-OAEP-SHA256+AES-CBC-PAD-256", "RSA-OAEP-SHA1+AES-CBC-PAD-256"),
        )
    assert refused.value.reason == "WrapParameterNotSupported"
    assert "--oaep-hash sha256 --key-wrap aes-cbc-pad" in refused.value.message
