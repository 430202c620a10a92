"""Wrapped CA keys: the offline wrap (``trusted-issuer provision wrap``) and the envelope it writes.

The construction is the one cloud KMS key import uses: a fresh AES-256 key encrypted with RSA-OAEP
under the token's wrapping public key, and the CA key's PKCS#8 encoding wrapped under that AES key with
AES key wrap with padding (RFC 5649, ``CKM_AES_KEY_WRAP_PAD``), or, for a token without it, AES-CBC
with PKCS#7 padding (``CKM_AES_CBC_PAD``, a random IV in the envelope). Only the token holding the
wrapping private key can open it, and it opens it straight into a non-extractable key object.

The envelope is a small JSON document that also names the wrapping key's fingerprint, the OAEP hash,
the key algorithm and the CA key's *public* key, so a blob meant for another wrapping key or with a
parameter the token refuses is named before the token is touched, and the public half of an imported
EC key (which a token need not expose on the private object) is known. Pure code: no token here.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as block_padding
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

from issuer.errors import ConfigurationError, IssuerError
from issuer.signer.keys import (
    KEY_WRAPS,
    Algorithm,
    PublicKey,
    parse_wrap_parameter,
    public_key_fingerprint,
    wrap_parameter,
)

ENVELOPE_FORMAT = "trusted-issuer/wrapped-key"
ENVELOPE_VERSION = 1
#: Larger than any envelope of a supported key (an RSA-4096 one is under 5 KiB): bounds parsing.
MAX_ENVELOPE_BYTES = 64 * 1024
OAEP_HASHES = ("sha1", "sha256")
DEFAULT_OAEP_HASH = "sha1"
DEFAULT_KEY_WRAP = "aes-kwp"
_CBC_IV_BYTES = 16
#: CA key algorithms that can be imported. Ed25519 is not among them: SoftHSM2 2.6.1 answers
#: CKR_FUNCTION_FAILED to C_UnwrapKey of an Ed25519 PKCS#8 key (measured), so a wrapped Ed25519 key
#: could never be used; it is refused before anything is wrapped.
IMPORTABLE = (
    Algorithm.RSA_2048,
    Algorithm.RSA_3072,
    Algorithm.RSA_4096,
    Algorithm.ECDSA_P256,
    Algorithm.ECDSA_P384,
)
MIN_WRAPPING_RSA_BITS = 3072

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _unsupported(what: str) -> IssuerError:
    choices = ", ".join(a.value for a in IMPORTABLE)
    return IssuerError(f"{what} cannot be imported: supported CA keys are {choices}", "UnsupportedKeyType")


def oaep_hash(name: str) -> hashes.SHA1 | hashes.SHA256:
    """The cryptography hash for an OAEP hash name (``sha1`` or ``sha256``)."""
    if name == "sha1":
        return hashes.SHA1()  # noqa: S303  # OAEP's hash, not a signature: what SoftHSM2 2.6.1 unwraps
    if name == "sha256":
        return hashes.SHA256()
    raise ConfigurationError(f"unknown OAEP hash {name!r}: choose one of {', '.join(OAEP_HASHES)}")


def load_wrapping_public_key(pem: bytes) -> rsa.RSAPublicKey:
    """The wrapping public key (PEM SubjectPublicKeyInfo, as published in the issuer's status)."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise ConfigurationError("the wrapping key is not a PEM public key") from None
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_WRAPPING_RSA_BITS:
        raise ConfigurationError(
            f"the wrapping key must be an RSA public key of at least {MIN_WRAPPING_RSA_BITS} bits"
        )
    return key


def check_expected_wrapping_key(key: rsa.RSAPublicKey, expected_sha256: str | None) -> None:
    """Refuse to wrap unless the administrator named the wrapping key's SHA-256, learned through a
    channel other than the issuer's status, and it is this key's. The PEM comes from status, which
    anyone who may patch ``/status`` controls: a fingerprint read beside it proves nothing, so the
    check is mandatory, never a default taken from the same place."""
    fingerprint = public_key_fingerprint(key)
    if not expected_sha256 or not expected_sha256.strip():
        raise ConfigurationError(
            "--expect-sha256 is required: the wrapping key's SHA-256 as you learned it through a second "
            "channel, never from the issuer's status (whoever can write status can swap the key there "
            "and the fingerprint beside it): on the token's node, `trusted-issuer hsm keys` lists it as "
            "the PUBLIC-KEY-SHA256 of the issuer's wrapping key, labelled ti:ns/NAMESPACE/NAME/UID8/wrap "
            "or ti:cluster/NAME/UID8/wrap (UID8: the first 8 hex digits of the issuer's metadata.uid); "
            "attestation evidence names it too"
        )
    expected = expected_sha256.strip().lower()
    if expected != fingerprint:
        raise ConfigurationError(
            f"the wrapping key's SHA-256 is {fingerprint}, not the expected {expected}: do not wrap for it"
        )


def load_ca_private_key(data: bytes, password: bytes | None = None) -> PrivateKey:
    """A CA private key from PEM or DER (PKCS#8 or traditional), refused unless it can be imported.

    Errors never quote the input: it is key material.
    """
    loaded: Any = None
    for load in (serialization.load_pem_private_key, serialization.load_der_private_key):
        try:
            loaded = load(data, password)
            break
        except TypeError:
            if password is None:
                raise ConfigurationError(
                    "the CA key is encrypted: give its passphrase with --key-password-file"
                ) from None
            raise ConfigurationError("the CA key is not encrypted: omit --key-password-file") from None
        except ValueError:
            continue
        except Exception:  # cryptography raises UnsupportedAlgorithm for exotic keys
            raise _unsupported("this CA key") from None
    if loaded is None:
        raise ConfigurationError(
            "the CA key cannot be read (not a PEM or DER private key, or a wrong passphrase)"
        )
    if isinstance(loaded, ed25519.Ed25519PrivateKey):
        raise _unsupported("an Ed25519 key (SoftHSM2 2.6.1 cannot unwrap Ed25519)")
    if not isinstance(loaded, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise _unsupported(f"a {type(loaded).__name__.removeprefix('_')} key")
    try:
        algorithm = Algorithm.of_public_key(loaded.public_key())
    except ConfigurationError:
        if isinstance(loaded, rsa.RSAPrivateKey):
            raise _unsupported(f"an RSA-{loaded.key_size} key") from None
        raise _unsupported(f"an EC key on curve {loaded.curve.name}") from None
    if algorithm not in IMPORTABLE:
        raise _unsupported(f"a {algorithm.value} key")
    return loaded


@dataclass(frozen=True)
class WrappedKey:
    """A parsed envelope. Holds only ciphertext and public data."""

    wrapping_key_sha256: str
    oaep_hash: str
    algorithm: Algorithm
    public_key_pem: bytes
    public_key_sha256: str
    wrapped_aes_key: bytes
    wrapped_private_key: bytes
    key_wrap: str = DEFAULT_KEY_WRAP
    iv: bytes = b""

    @property
    def parameter(self) -> str:
        """The wrap construction, spelled as ``WrappingKey.parameters`` spells it."""
        return wrap_parameter(self.oaep_hash, self.key_wrap)

    @property
    def key_wrap_mechanism(self) -> str:
        """The PKCS#11 mechanism (name) that unwraps the CA key under the transport key."""
        return KEY_WRAPS[self.key_wrap][0]

    def public_key(self) -> PublicKey:
        key = serialization.load_pem_public_key(self.public_key_pem)
        assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
        return key


def wrap_private_key(
    wrapping_public: rsa.RSAPublicKey,
    private_key: PrivateKey,
    *,
    hash_name: str = DEFAULT_OAEP_HASH,
    key_wrap: str = DEFAULT_KEY_WRAP,
) -> bytes:
    """The envelope for ``private_key`` wrapped for ``wrapping_public`` (see the module docstring).

    The AES key and the PKCS#8 bytes exist only in this process's memory, never in a file.
    """
    algorithm = Algorithm.of_public_key(private_key.public_key())
    if algorithm not in IMPORTABLE:
        raise _unsupported(f"a {algorithm.value} key")
    digest = oaep_hash(hash_name)
    aes_key = secrets.token_bytes(32)
    wrapped_aes = wrapping_public.encrypt(
        aes_key, padding.OAEP(mgf=padding.MGF1(digest), algorithm=digest, label=None)
    )
    pkcs8 = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    iv = b""
    if key_wrap == "aes-kwp":
        wrapped_key = aes_key_wrap_with_padding(aes_key, pkcs8)
    elif key_wrap == "aes-cbc-pad":
        iv = secrets.token_bytes(_CBC_IV_BYTES)
        padder = block_padding.PKCS7(128).padder()
        encryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).encryptor()
        wrapped_key = encryptor.update(padder.update(pkcs8) + padder.finalize()) + encryptor.finalize()
    else:
        raise ConfigurationError(f"unknown key wrap {key_wrap!r}: choose one of {', '.join(KEY_WRAPS)}")
    del aes_key, pkcs8
    public = private_key.public_key()
    envelope = {
        "format": ENVELOPE_FORMAT,
        "version": ENVELOPE_VERSION,
        "wrappingKeySHA256": public_key_fingerprint(wrapping_public),
        "parameter": wrap_parameter(hash_name, key_wrap),
        "oaepHash": hash_name,
        "keyWrap": key_wrap,
        **({"iv": base64.b64encode(iv).decode()} if iv else {}),
        "algorithm": algorithm.value,
        "publicKey": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode(),
        "publicKeySHA256": public_key_fingerprint(public),
        "wrappedAESKey": base64.b64encode(wrapped_aes).decode(),
        "wrappedKey": base64.b64encode(wrapped_key).decode(),
    }
    return (json.dumps(envelope, indent=2, sort_keys=True) + "\n").encode()


def _invalid(what: str) -> IssuerError:
    return IssuerError(f"the wrapped key {what}", "WrappedKeyInvalid")


def parse_wrapped_key(blob: bytes) -> WrappedKey:
    """Read and check an envelope; every defect is ``IssuerError(reason="WrappedKeyInvalid")`` naming it,
    except a key type this version cannot import (``UnsupportedKeyType``)."""
    if len(blob) > MAX_ENVELOPE_BYTES:
        raise _invalid(f"is {len(blob)} bytes, more than any envelope ({MAX_ENVELOPE_BYTES})")
    try:
        data = json.loads(blob)
    except (ValueError, UnicodeDecodeError):
        raise _invalid("is not a trusted-issuer envelope (not JSON; truncated or corrupt?)") from None
    if not isinstance(data, dict) or data.get("format") != ENVELOPE_FORMAT:
        raise _invalid(f"is not a {ENVELOPE_FORMAT} envelope")
    if data.get("version") != ENVELOPE_VERSION:
        raise _invalid(f"has envelope version {data.get('version')!r}; this issuer reads {ENVELOPE_VERSION}")
    fields = (
        "wrappingKeySHA256",
        "oaepHash",
        "algorithm",
        "publicKey",
        "publicKeySHA256",
        "wrappedAESKey",
        "wrappedKey",
    )
    missing = [f for f in fields if not isinstance(data.get(f), str)]
    if missing:
        raise _invalid(f"lacks {', '.join(missing)}")
    if data["oaepHash"] not in OAEP_HASHES:
        raise _invalid(f"names an unknown OAEP hash {data['oaepHash']!r}")
    key_wrap = data.get("keyWrap", DEFAULT_KEY_WRAP)  # envelopes before CBC-PAD name none
    if key_wrap not in KEY_WRAPS:
        raise _invalid(f"names an unknown key wrap {key_wrap!r}")
    try:
        algorithm = Algorithm(data["algorithm"])
    except ValueError:
        raise _unsupported(f"a key of algorithm {data['algorithm']!r}") from None
    if algorithm not in IMPORTABLE:
        raise _unsupported(f"a {algorithm.value} key")
    try:
        wrapped_aes = base64.b64decode(data["wrappedAESKey"], validate=True)
        wrapped_key = base64.b64decode(data["wrappedKey"], validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("has a field that is not base64") from None
    iv = b""
    if key_wrap == "aes-kwp":
        if not wrapped_key or len(wrapped_key) % 8:
            raise _invalid("is truncated (its AES-KWP part is not a whole number of 8-byte blocks)")
    else:
        try:
            iv = base64.b64decode(str(data.get("iv", "")), validate=True)
        except (binascii.Error, ValueError):
            raise _invalid("has an iv that is not base64") from None
        if len(iv) != _CBC_IV_BYTES:
            raise _invalid(f"needs a {_CBC_IV_BYTES}-byte iv for AES-CBC-PAD")
        if not wrapped_key or len(wrapped_key) % 16:
            raise _invalid("is truncated (its AES-CBC part is not a whole number of 16-byte blocks)")
    try:
        public = serialization.load_pem_public_key(data["publicKey"].encode())
    except (ValueError, TypeError):
        raise _invalid("carries a public key that cannot be read") from None
    if not isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise _unsupported(f"a {type(public).__name__.removeprefix('_')} key")
    if Algorithm.of_public_key(public) is not algorithm:
        raise _invalid(f"says {algorithm.value} but carries another kind of public key")
    fingerprint = public_key_fingerprint(public)
    if fingerprint != data["publicKeySHA256"].lower():
        raise _invalid("carries a public key that does not match its recorded fingerprint")
    return WrappedKey(
        wrapping_key_sha256=data["wrappingKeySHA256"].lower(),
        oaep_hash=data["oaepHash"],
        algorithm=algorithm,
        public_key_pem=data["publicKey"].encode(),
        public_key_sha256=fingerprint,
        wrapped_aes_key=wrapped_aes,
        wrapped_private_key=wrapped_key,
        key_wrap=key_wrap,
        iv=iv,
    )


def check_wrapped_for(wrapped: WrappedKey, wrapping_sha256: str, parameters: tuple[str, ...] = ()) -> None:
    """Refuse an envelope made for another wrapping key (``WrappedForAnotherKey``), or with a wrap
    parameter the wrapping key does not accept (``WrapParameterNotSupported``) when ``parameters``
    are known, before the token is asked anything."""
    if wrapped.wrapping_key_sha256 != wrapping_sha256.lower():
        raise IssuerError(
            f"the wrapped key was made for wrapping key {wrapped.wrapping_key_sha256[:16]}…, not for this "
            f"issuer's wrapping key {wrapping_sha256[:16]}…: wrap it again with the public key in status",
            "WrappedForAnotherKey",
        )
    if parameters and wrapped.parameter not in parameters:
        raise IssuerError(
            f"the wrapped key uses {wrapped.parameter}, which this token does not accept "
            f"({', '.join(parameters)}): wrap it again with {rewrap_flags(parameters)}",
            "WrapParameterNotSupported",
        )


def rewrap_flags(parameters: tuple[str, ...]) -> str:
    """The `provision wrap` flags for the first of ``parameters`` this version can make."""
    for parameter in parameters:
        parsed = parse_wrap_parameter(parameter)
        if parsed is not None:
            return f"--oaep-hash {parsed[0]} --key-wrap {parsed[1]}"
    return "a parameter this token lists"
